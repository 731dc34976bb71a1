"""Tests of batched activation patching and attribution patching on a small random BLIP ITM model."""

import numpy as np
import pytest
import torch

from helpers import shapes
from helpers.counterfactuals import colour_pairs
from helpers.fusion import new_shapes_blip
from helpers.hooked_fusion import HookedBlipITM
from helpers.patching import (
    Patch,
    activation_patching,
    attribution_patching,
    head_patches,
    located_share,
    logit_difference,
    position_patches,
    random_share,
)


@pytest.fixture(scope="module")
def hooked():
    loaded = new_shapes_blip(seed=3, width=32, layers=2, heads=2)
    return HookedBlipITM(loaded)


@pytest.fixture(scope="module")
def runs(hooked):
    """Clean inputs and the two colour corruptions of one scene."""
    loaded = hooked.loaded
    pair = colour_pairs(shapes.generate(10, seed=5), 1, seed=5)[0]

    def inputs(image, caption):
        return {"pixel_values": loaded.pixel_values(image[None]), **loaded.tokenize([caption])}

    return {
        "clean": inputs(pair.clean_image, pair.clean_caption),
        "image": inputs(pair.corrupted_image, pair.clean_caption),
        "text": inputs(pair.clean_image, pair.corrupted_caption),
    }


def _shape(hooked, inputs, name):
    _, cache = hooked.run_with_cache(inputs, [name])
    return cache[name].shape[1:]


def _sweep(hooked, inputs):
    patches = []
    for layer in range(2):
        for stream in ("vision", "text"):
            name = f"{stream}.blocks.{layer}.hook_resid_post"
            patches += position_patches(name, _shape(hooked, inputs, name))
            name = f"{stream}.blocks.{layer}.attn.hook_z"
            patches += head_patches(name, _shape(hooked, inputs, name))
        name = f"text.blocks.{layer}.crossattn.hook_z"
        patches += head_patches(name, _shape(hooked, inputs, name))
    return patches


@pytest.mark.parametrize("corruption", ["image", "text"])
def test_clean_into_clean_is_one(hooked, runs, corruption):
    patches = _sweep(hooked, runs["clean"])
    result = activation_patching(hooked, runs["clean"], runs[corruption], patches, target=runs["clean"])
    np.testing.assert_array_equal(result.values, 1.0)


@pytest.mark.parametrize(
    "corruption, name",
    [
        ("image", "vision.blocks.0.hook_resid_post"),
        ("image", "vision.blocks.1.hook_resid_post"),
        ("image", "vision.ln_post.hook_normalized"),
        ("text", "text.hook_embed"),
        ("text", "text.blocks.0.hook_resid_post"),
        ("text", "text.blocks.1.hook_resid_cross"),
    ],
)
def test_all_positions_restore_clean(hooked, runs, corruption, name):
    shape = _shape(hooked, runs["clean"], name)
    everything = Patch(name, torch.ones(tuple(shape), dtype=torch.bool), "all")
    result = activation_patching(hooked, runs["clean"], runs[corruption], [everything])
    assert result.values[0] == 1.0


def test_unchanged_positions_have_no_effect(hooked, runs):
    # Token replacement changes one token; patching the embedding elsewhere changes nothing.
    name = "text.hook_embed"
    patches = position_patches(name, _shape(hooked, runs["clean"], name))
    result = activation_patching(hooked, runs["clean"], runs["text"], patches)
    changed = (runs["clean"]["input_ids"] != runs["text"]["input_ids"])[0].numpy()
    assert changed.sum() == 1
    np.testing.assert_allclose(result.values[~changed], 0.0, atol=1e-5)
    assert abs(result.values[changed][0]) > 1e-3


@pytest.mark.parametrize("corruption", ["image", "text"])
def test_batched_equals_one_per_patch(hooked, runs, corruption):
    patches = _sweep(hooked, runs["clean"])
    batched = activation_patching(hooked, runs["clean"], runs[corruption], patches, batch_size=32)
    looped = activation_patching(hooked, runs["clean"], runs[corruption], patches, batch_size=1)
    np.testing.assert_allclose(batched.values, looped.values, atol=1e-4)
    assert looped.forward_passes == len(patches) + 1
    assert batched.forward_passes == -(-len(patches) // 32) + 1


@pytest.mark.parametrize("corruption", ["image", "text"])
def test_attribution_exact_when_linear(hooked, runs, corruption):
    # The ITM head is linear in the last text layer's output, so the first-order estimate is exact there.
    name = "text.blocks.1.hook_resid_post"
    patches = position_patches(name, _shape(hooked, runs["clean"], name))
    exact = activation_patching(hooked, runs["clean"], runs[corruption], patches)
    estimate = attribution_patching(hooked, runs["clean"], runs[corruption], patches)
    np.testing.assert_allclose(estimate.values, exact.values, atol=1e-4)
    assert estimate.values[0] == pytest.approx(1.0, abs=1e-4)
    assert estimate.forward_passes == 2
    assert estimate.backward_passes == 1


def test_attribution_differs_when_nonlinear(hooked, runs):
    patches = _sweep(hooked, runs["clean"])
    exact = activation_patching(hooked, runs["clean"], runs["image"], patches)
    estimate = attribution_patching(hooked, runs["clean"], runs["image"], patches)
    assert np.abs(estimate.values - exact.values).max() > 1e-3


def test_patching_rejects_batched_inputs(hooked, runs):
    doubled = {key: torch.cat([value, value]) for key, value in runs["clean"].items()}
    with pytest.raises(ValueError, match="batch size 2"):
        activation_patching(hooked, doubled, runs["image"], [])


def test_equal_runs_cannot_be_normalised(hooked, runs):
    name = "text.hook_embed"
    patches = position_patches(name, _shape(hooked, runs["clean"], name))
    with pytest.raises(ValueError, match="same metric"):
        activation_patching(hooked, runs["clean"], runs["clean"], patches)


def test_head_patches_need_per_head_shape():
    with pytest.raises(ValueError, match="per-head"):
        head_patches("text.blocks.0.hook_resid_post", (9, 128))


def test_located_share():
    effects = np.array([1.0, -3.0, 0.0, 4.0])
    assert located_share(effects, np.array([True, True, False, False])) == pytest.approx(0.5)
    assert random_share(effects, 1, draws=4000) == pytest.approx(0.25, abs=0.03)
    with pytest.raises(ValueError, match="shape"):
        located_share(effects, np.array([True]))


def test_metric_is_match_minus_no_match():
    logits = torch.tensor([[1.0, 3.0], [2.0, -1.0]])
    assert logit_difference(logits).tolist() == [2.0, -3.0]


def test_unknown_hook_rejected(hooked, runs):
    with pytest.raises(KeyError, match="unknown hook"):
        hooked.run_with_cache(runs["clean"], ["text.blocks.7.hook_resid_post"])
    with pytest.raises(KeyError, match="unknown hook"):
        hooked.run_with_cache(runs["clean"], ["vision.blocks.0.nothing"])


def test_pattern_hooks_are_read_only(hooked, runs):
    with pytest.raises(ValueError, match="read-only"):
        hooked.run_with_hooks(runs["clean"], [("text.blocks.0.crossattn.hook_pattern", lambda a, h: a * 0)])


def test_cross_attention_pattern_covers_image(hooked, runs):
    _, cache = hooked.run_with_cache(runs["clean"], ["text.blocks.0.crossattn.hook_pattern"])
    pattern = cache["text.blocks.0.crossattn.hook_pattern"]
    assert pattern.shape == (1, 2, runs["clean"]["input_ids"].shape[1], hooked.n_patches + 1)
    torch.testing.assert_close(pattern.sum(-1), torch.ones(pattern.shape[:-1]))


def test_read_out_of_last_layer_is_output(hooked, runs):
    logits, cache = hooked.run_with_cache(runs["clean"], ["text.blocks.1.hook_resid_post"])
    torch.testing.assert_close(hooked.read_out(cache["text.blocks.1.hook_resid_post"]), logit_difference(logits))
