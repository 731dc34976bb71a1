"""Tests of the embedded fusion model: config, tokenizer, loading, ITM negatives and counterfactual scenes."""

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoImageProcessor, AutoTokenizer

from helpers import ModelLoadError, load_clip, shapes
from helpers.counterfactuals import colour_pairs, patch_overlap, recolour, render_scene
from helpers.fusion import (
    EMBEDDED_FUSION_MODELS,
    build_fusion_tokenizer,
    embedded_fusion_dir,
    itm_logits,
    load_blip,
    new_shapes_blip,
    save_blip,
)
from helpers.itm_training import (
    changed_attribute_caption,
    colour_swap_caption,
    evaluate_matching,
    hard_negative_caption,
    train_itm,
)


@pytest.fixture(scope="module")
def tiny_blip_dir(tmp_path_factory):
    loaded = new_shapes_blip(seed=2, width=32, layers=2, heads=2)
    return save_blip(loaded, tmp_path_factory.mktemp("blip") / "tiny"), loaded


def test_tokenizer_reloads_offline(tmp_path):
    tokenizer = build_fusion_tokenizer()
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    caption = "a small red circle on the left"
    assert reloaded(caption)["input_ids"] == tokenizer(caption)["input_ids"]
    tokens = reloaded.convert_ids_to_tokens(reloaded(caption)["input_ids"])
    assert tokens == ["[CLS]", "a", "small", "red", "circle", "on", "the", "left", "[SEP]"]
    assert reloaded("a mauve circle")["input_ids"][2] == reloaded.unk_token_id


def test_vision_position_embeddings_start_nonzero():
    model = new_shapes_blip(seed=0, width=32, layers=1, heads=2).model
    assert model.config.vision_config.initializer_range == 0.02
    assert model.vision_model.embeddings.position_embedding.std() > 0.01


def test_saved_folder_reloads_identically(tiny_blip_dir):
    folder, original = tiny_blip_dir
    loaded = load_blip(str(folder))
    assert loaded.source == "local"
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json",
    ]
    assert type(AutoImageProcessor.from_pretrained(folder)).__name__.startswith("BlipImageProcessor")
    data = shapes.generate(4, seed=1)
    inputs = dict(pixel_values=loaded.pixel_values(data.images), **loaded.tokenize(data.captions))
    with torch.no_grad():
        expected = original.model(**inputs).itm_score
        actual = loaded.model(**inputs).itm_score
    torch.testing.assert_close(actual, expected)


def test_itm_logits_match_model_forward(tiny_blip_dir):
    loaded = tiny_blip_dir[1]
    data = shapes.generate(6, seed=9, two_object_fraction=0.5)
    tokens = loaded.tokenize(data.captions)
    pixels = loaded.pixel_values(data.images)
    with torch.no_grad():
        expected = loaded.model(pixel_values=pixels, **tokens).itm_score
        actual = itm_logits(loaded.model, pixels, tokens["input_ids"], tokens["attention_mask"])
    torch.testing.assert_close(actual, expected)


def test_pickle_only_checkpoint_rejected(tiny_blip_dir, tmp_path):
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_blip_dir[0], folder)
    weights = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(weights, folder / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="pickle"):
        load_blip(str(folder))


def test_clip_checkpoint_rejected(quick_gelu_clip_dir):
    with pytest.raises(ModelLoadError, match="'clip' model"):
        load_blip(str(quick_gelu_clip_dir))


def test_blip_checkpoint_rejected_by_load_clip(tiny_blip_dir):
    with pytest.raises(ModelLoadError, match="'blip' model"):
        load_clip(str(tiny_blip_dir[0]))


def test_bad_specs_rejected(tmp_path):
    with pytest.raises(ModelLoadError, match="non-empty"):
        load_blip(" ")
    with pytest.raises(ModelLoadError, match="shapes-blip"):
        load_blip("not a model")
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_blip(str(tmp_path))
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        load_blip(str(tmp_path))


def test_hub_id_offline_fails_in_one_line():
    with pytest.raises(ModelLoadError) as caught:
        load_blip("Salesforce/blip-itm-base-coco")
    assert "\n" not in str(caught.value)
    assert "Salesforce/blip-itm-base-coco" in str(caught.value)


def test_embedded_model_loads():
    assert "shapes-blip" in EMBEDDED_FUSION_MODELS
    record = json.loads((embedded_fusion_dir() / "training_record.json").read_text())
    loaded = load_blip("shapes-blip")
    assert loaded.source == "embedded"
    assert loaded.image_size == 32
    assert loaded.patch_size == 8
    assert not loaded.model.training
    assert record["heldout_accuracy"]["single_attribute"] > 0.5


def test_changed_attribute_changes_one_word():
    rng = np.random.default_rng(0)
    data = shapes.generate(30, seed=3)
    for scene in data.objects:
        truth = shapes.single_object_caption(scene[0].shape, scene[0].colour, scene[0].size, scene[0].position)
        for attribute in shapes.ATTRIBUTES:
            negative = changed_attribute_caption(scene[0], attribute, rng)
            parsed, true_parsed = shapes.caption_attributes(negative), shapes.caption_attributes(truth)
            assert [name for name in parsed if parsed[name] != true_parsed[name]] == [attribute]


def test_colour_swap_caption():
    data = shapes.generate(200, seed=4, two_object_fraction=1.0)
    rng = np.random.default_rng(0)
    for caption, scene in zip(data.captions, data.objects):
        swapped = colour_swap_caption(*scene)
        if scene[0].colour == scene[1].colour:
            assert swapped is None
            continue
        words, swapped_words = caption.split(), swapped.split()
        assert (swapped_words[1], swapped_words[5]) == (words[5], words[1])
        assert (swapped_words[2], swapped_words[6]) == (words[2], words[6])
        assert hard_negative_caption(scene, rng, swap_probability=1.0) == swapped
        assert hard_negative_caption(scene, rng, swap_probability=0.0) != caption


def test_train_itm_runs_and_records(tiny_blip_dir):
    loaded = new_shapes_blip(seed=1, width=32, layers=1, heads=2)
    data = shapes.generate(64, seed=0, two_object_fraction=0.5)
    before = [p.detach().clone() for p in loaded.model.parameters()]
    record = train_itm(loaded, data, steps=3, batch_size=8, warmup_steps=1, progress=False)
    assert len(record.losses) == 3
    assert all(np.isfinite(record.losses))
    assert any(not torch.equal(a, b) for a, b in zip(before, loaded.model.parameters()))
    assert not loaded.model.training
    scores = evaluate_matching(loaded, shapes.generate(40, seed=0, split="heldout", two_object_fraction=0.5))
    assert 0.0 <= scores.single_attribute <= 1.0
    assert scores.n_single + scores.n_binding <= 40


def test_render_scene_reproduces_generator():
    data = shapes.generate(10, seed=6, two_object_fraction=0.5)
    for i in range(len(data)):
        image, masks = render_scene(data.objects[i], data.images[i])
        np.testing.assert_array_equal(image, data.images[i])
        np.testing.assert_array_equal(masks, data.masks[i, : len(data.objects[i])])


def test_recolour_changes_only_the_mask():
    data = shapes.generate(10, seed=7)
    image, objects = recolour(data, 2, "purple" if data.objects[2][0].colour != "purple" else "red")
    changed = np.any(image != data.images[2], axis=-1)
    np.testing.assert_array_equal(changed, data.masks[2, 0])
    assert objects[0].shape == data.objects[2][0].shape
    with pytest.raises(ValueError, match="out of range"):
        recolour(data, 2, "red", object_index=1)
    with pytest.raises(ValueError, match="unknown colour"):
        recolour(data, 2, "mauve")


def test_colour_pairs():
    data = shapes.generate(40, seed=8, two_object_fraction=0.5)
    pairs = colour_pairs(data, 5, seed=1)
    for pair in pairs:
        assert pair.new_colour != pair.colour
        assert pair.clean_caption.split()[2] == pair.colour
        assert pair.corrupted_caption.split()[2] == pair.new_colour
        assert pair.clean_caption.split()[:2] + pair.clean_caption.split()[3:] == \
            pair.corrupted_caption.split()[:2] + pair.corrupted_caption.split()[3:]
    with pytest.raises(ValueError, match="one-object scenes"):
        colour_pairs(data, 40)


def test_patch_overlap():
    mask = np.zeros((32, 32), dtype=bool)
    mask[0:4, 0:8] = True
    overlap = patch_overlap(mask, 8)
    assert overlap.shape == (16,)
    assert overlap[0] == 0.5
    assert overlap[1:].sum() == 0
    with pytest.raises(ValueError, match="multiple"):
        patch_overlap(mask, 5)


def test_patch_overlap_resizes_mask():
    mask = np.zeros((32, 32), dtype=bool)
    mask[0:4, 0:8] = True
    overlap = patch_overlap(mask, 16, image_size=64)
    assert overlap.shape == (16,)
    assert overlap[0] == 0.5
    assert overlap[1:].sum() == 0


@pytest.mark.parametrize(
    "parameters, message",
    [
        ({"n_pairs": 0}, "n_pairs=0 must be at least 1"),
        ({"threads": -1}, "threads=-1 must be at least 0"),
        ({"patch_batch": "big"}, "patch_batch='big' must be an integer"),
    ],
)
def test_notebook_rejects_bad_parameter(tmp_path, parameters, message):
    import papermill

    from helpers.paths import REPO_ROOT

    notebook = REPO_ROOT / "notebooks" / "03_fusion_tracing.ipynb"
    with pytest.raises(papermill.PapermillExecutionError) as caught:
        papermill.execute_notebook(
            str(notebook), str(tmp_path / "out.ipynb"), parameters={"quick": True, **parameters},
            cwd=str(REPO_ROOT), progress_bar=False,
        )
    assert caught.value.ename == "ParameterError"
    assert message in caught.value.evalue
