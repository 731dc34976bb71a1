import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from helpers import ModelLoadError, load_clip
from helpers.embedded import EMBEDDED_MODELS
from helpers.loading import save_clip


def test_embedded_model_loads():
    loaded = load_clip("shapes-clip")
    assert loaded.source == "embedded"
    assert loaded.image_size == 32
    assert not loaded.model.training


def test_local_folder_loads(quick_gelu_clip_dir):
    loaded = load_clip(str(quick_gelu_clip_dir))
    assert loaded.source == "local"
    assert loaded.model.config.vision_config.hidden_act == "quick_gelu"
    assert loaded.image_size == 224


def test_hub_id_offline_fails_in_one_line():
    with pytest.raises(ModelLoadError) as caught:
        load_clip("openai/clip-vit-base-patch32")
    message = str(caught.value)
    assert "\n" not in message
    assert "openai/clip-vit-base-patch32" in message
    assert all(name in message for name in EMBEDDED_MODELS)
    assert "folder" in message
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_unresolvable_name_names_embedded_models():
    with pytest.raises(ModelLoadError, match="shapes-clip"):
        load_clip("not a model")


def test_empty_name_rejected():
    with pytest.raises(ModelLoadError, match="non-empty"):
        load_clip("  ")


def test_other_architecture_rejected(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vilt"}))
    with pytest.raises(ModelLoadError, match="'vilt' model"):
        load_clip(str(tmp_path))


def test_pickle_checkpoint_rejected(tmp_path, quick_gelu_clip_dir):
    folder = tmp_path / "pickled"
    shutil.copytree(quick_gelu_clip_dir, folder)
    weights = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(weights, folder / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="pickle"):
        load_clip(str(folder))


def test_folder_without_config_rejected(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_clip(str(tmp_path))


def test_file_path_rejected(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="is a file"):
        load_clip(str(path))


def test_invalid_config_json_rejected(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        load_clip(str(tmp_path))


@pytest.mark.parametrize("config", ['{"hidden_size": 8}', "[1, 2]"])
def test_config_without_model_type_rejected(tmp_path, config):
    (tmp_path / "config.json").write_text(config)
    with pytest.raises(ModelLoadError, match="has no model_type; expected model_type 'clip'"):
        load_clip(str(tmp_path))


def test_save_replaces_folder_atomically(tmp_path, quick_gelu_clip_dir):
    loaded = load_clip(str(quick_gelu_clip_dir))
    target = tmp_path / "copy"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    save_clip(loaded.model, loaded.tokenizer, loaded.image_processor, target)
    assert not (target / "stale.txt").exists()
    assert (target / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]
    reloaded = load_clip(str(target))
    for (name, a), (_, b) in zip(loaded.model.state_dict().items(), reloaded.model.state_dict().items()):
        assert torch.equal(a, b), name
