import numpy as np
import pytest
import torch
from transformers import CLIPModel

from helpers import encoding, shapes
from helpers.embedded import clip_image_processor, shapes_clip_config
from helpers.loading import LoadedCLIP
from helpers.training import (
    TrainingRecord,
    adamw_optimizer,
    clip_loss,
    sample_unique_caption_batch,
    train_clip,
    warmup_cosine_learning_rate,
)
from helpers.vocabulary import build_tokenizer


def test_batches_never_repeat_a_caption():
    rng = np.random.default_rng(0)
    captions = [f"caption {i % 30}" for i in range(300)]
    for _ in range(20):
        batch = sample_unique_caption_batch(rng, captions, batch_size=25)
        assert len(batch) == 25
        assert len({captions[i] for i in batch}) == 25


def test_batch_shrinks_to_distinct_captions():
    rng = np.random.default_rng(0)
    batch = sample_unique_caption_batch(rng, ["a", "b", "a", "b"], batch_size=4)
    assert sorted(batch.tolist()) in ([0, 1], [0, 3], [1, 2], [2, 3])


def test_clip_loss_matches_transformers():
    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    model = CLIPModel(shapes_clip_config(tokenizer, width=32, layers=1, heads=2))
    data = shapes.generate(8, seed=1)
    tokens = tokenizer(data.captions, padding=True, return_tensors="pt")
    loaded = LoadedCLIP(model, tokenizer, clip_image_processor(32), "test", "local")
    pixels = encoding.pixel_values(loaded, data.images)
    outputs = model(**tokens, pixel_values=pixels, return_loss=True)
    ours = clip_loss(outputs.image_embeds, outputs.text_embeds, model.logit_scale)
    torch.testing.assert_close(ours, outputs.loss, atol=1e-5, rtol=0)


def test_short_training_lowers_loss(tmp_path):
    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    model = CLIPModel(shapes_clip_config(tokenizer, width=32, layers=1, heads=2))
    data = shapes.generate(400, seed=2)
    loaded = LoadedCLIP(model, tokenizer, clip_image_processor(32), "test", "local")
    record = train_clip(model, tokenizer, encoding.pixel_values(loaded, data.images), data.captions,
                        steps=60, batch_size=32, warmup_steps=10, progress=False)
    assert len(record.losses) == 60
    assert np.mean(record.losses[-10:]) < np.mean(record.losses[:10]) - 0.3
    assert not model.training
    record.save(tmp_path / "record.json")
    assert TrainingRecord.load(tmp_path / "record.json") == record


def test_training_rejects_unpaired_inputs():
    tokenizer = build_tokenizer()
    model = CLIPModel(shapes_clip_config(tokenizer, width=32, layers=1, heads=2))
    with pytest.raises(ValueError, match="pair up"):
        train_clip(model, tokenizer, torch.zeros(3, 3, 32, 32), ["a", "b"], steps=1, progress=False)


def test_schedule_warms_up_then_decays():
    rates = [warmup_cosine_learning_rate(step, 110, 1.0, 10) for step in range(110)]
    assert rates[0] == pytest.approx(0.1)
    assert rates[9] == pytest.approx(1.0)
    assert rates[10] == pytest.approx(1.0)
    assert rates[60] == pytest.approx(0.5)
    assert rates[-1] == pytest.approx(0.5 * (1 + np.cos(np.pi * 99 / 100)))
    assert all(later <= earlier for earlier, later in zip(rates[9:], rates[10:]))


def test_optimizer_decays_only_weight_matrices():
    model = CLIPModel(shapes_clip_config(build_tokenizer(), width=32, layers=1, heads=2))
    optimizer = adamw_optimizer(model, learning_rate=1e-3, weight_decay=0.1)
    decayed, undecayed = optimizer.param_groups
    names = {id(parameter): name for name, parameter in model.named_parameters()}
    assert decayed["weight_decay"] == 0.1
    assert undecayed["weight_decay"] == 0.0
    assert all(parameter.ndim >= 2 for parameter in decayed["params"])
    assert not any("embedding" in names[id(parameter)] for parameter in decayed["params"])
    assert any(names[id(parameter)] == "logit_scale" for parameter in undecayed["params"])
    assert len(decayed["params"]) + len(undecayed["params"]) == len(names)
