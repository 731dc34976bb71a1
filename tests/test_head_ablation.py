import numpy as np
import pytest
import torch

from helpers import ablation, encoding, load_clip, shapes
from helpers.hooked_text import HookedTextTower
from helpers.hooked_vision import hooked_vision_tower

CAPTIONS = ["a small red circle on the left", "a large blue cross on the top", "a handwritten seven"]


@pytest.fixture(scope="module", params=["embedded", "quick_gelu_stand_in"])
def loaded(request, quick_gelu_clip_dir):
    spec = "shapes-clip" if request.param == "embedded" else str(quick_gelu_clip_dir)
    return load_clip(spec)


@pytest.fixture(scope="module")
def pixels(loaded):
    return encoding.pixel_values(loaded, shapes.generate(8, seed=11).images)


def edited_out_proj(attention_module, head: int, d_head: int, bias_shift: torch.Tensor | None = None):
    """Zero head ``head``'s input columns of out_proj (W_O[head]) in place; return a function that restores them."""
    out_proj = attention_module.out_proj
    weight, bias = out_proj.weight.detach().clone(), out_proj.bias.detach().clone()
    columns = slice(head * d_head, (head + 1) * d_head)
    with torch.no_grad():
        if bias_shift is not None:
            out_proj.bias += bias_shift
        out_proj.weight[:, columns] = 0.0

    def restore():
        with torch.no_grad():
            out_proj.weight.copy_(weight)
            out_proj.bias.copy_(bias)

    return restore


def test_vision_zero_ablation_equals_weight_edit(loaded, pixels):
    hooked = hooked_vision_tower(loaded)
    layer, head = hooked.cfg.n_layers - 1, 1
    hooks = [(ablation.z_hook_name(layer), ablation.head_ablation_hook(head, "zero"))]
    with torch.no_grad():
        ablated = hooked.run_with_hooks(pixels, fwd_hooks=hooks)
        clean = hooked(pixels)
    restore = edited_out_proj(loaded.model.vision_model.encoder.layers[layer].self_attn, head, hooked.cfg.d_head)
    try:
        edited = encoding.image_embeddings(loaded, pixels, normalise=False)
    finally:
        restore()
    torch.testing.assert_close(ablated, edited, atol=1e-5, rtol=0)
    assert (ablated - clean).abs().max() > 1e-4


def test_vision_mean_ablation_equals_bias_edit(loaded, pixels):
    # With a mean that is the same at every token, mean-ablation is a weight edit:
    # W_O[head] -> 0 and b_O -> b_O + W_O[head] mean.
    hooked = hooked_vision_tower(loaded)
    layer, head, d_head = 0, 0, hooked.cfg.d_head
    per_token = ablation.vision_mean_z(hooked, pixels)[layer]
    constant = per_token.mean(dim=0, keepdim=True).expand_as(per_token).clone()
    hooks = [(ablation.z_hook_name(layer), ablation.head_ablation_hook(head, "mean", constant))]
    with torch.no_grad():
        ablated = hooked.run_with_hooks(pixels, fwd_hooks=hooks)
    attention_module = loaded.model.vision_model.encoder.layers[layer].self_attn
    shift = attention_module.out_proj.weight[:, head * d_head : (head + 1) * d_head].detach() @ constant[0, head]
    restore = edited_out_proj(attention_module, head, d_head, bias_shift=shift)
    try:
        edited = encoding.image_embeddings(loaded, pixels, normalise=False)
    finally:
        restore()
    torch.testing.assert_close(ablated, edited, atol=1e-5, rtol=0)


def test_text_zero_ablation_equals_weight_edit(loaded):
    tower = HookedTextTower(loaded)
    tokens = encoding.tokenize(loaded, CAPTIONS)
    layer, head = 0, tower.n_heads - 1
    hooks = [(ablation.z_hook_name(layer), ablation.head_ablation_hook(head, "zero"))]
    with torch.no_grad():
        ablated = tower.run_with_hooks(**tokens, fwd_hooks=hooks)
        clean = tower(**tokens)
    restore = edited_out_proj(loaded.model.text_model.encoder.layers[layer].self_attn, head, tower.d_head)
    try:
        edited = encoding.text_embeddings(loaded, CAPTIONS, normalise=False)
    finally:
        restore()
    torch.testing.assert_close(ablated, edited, atol=1e-5, rtol=0)
    assert (ablated - clean).abs().max() > 1e-4


def test_mean_ablation_writes_the_mean(loaded, pixels):
    hooked = hooked_vision_tower(loaded)
    means = ablation.vision_mean_z(hooked, pixels, batch_size=3)
    layer = hooked.cfg.n_layers - 1
    name = ablation.z_hook_name(layer)
    seen = {}

    def record(z, hook):
        seen["z"] = z.clone()

    with torch.no_grad():
        _, cache = hooked.run_with_cache(pixels, names_filter=[name])
        torch.testing.assert_close(means[layer], cache[name].mean(dim=0), atol=1e-6, rtol=0)
        hooked.run_with_hooks(pixels, fwd_hooks=[(name, ablation.head_ablation_hook(0, "mean", means[layer])), (name, record)])
    z = seen["z"]
    torch.testing.assert_close(z[:, :, 0], means[layer][None, :, 0].expand_as(z[:, :, 0]))
    torch.testing.assert_close(z[:, :, 1:], cache[name][:, :, 1:])


def test_text_mean_skips_padding(loaded):
    tower = HookedTextTower(loaded)
    tokens = encoding.tokenize(loaded, ["a red circle", "a small red circle on the left"])
    means = ablation.text_mean_z(tower, **tokens)
    with torch.no_grad():
        _, cache = tower.run_with_cache(**tokens, names_filter=[ablation.z_hook_name(0)])
    z = cache[ablation.z_hook_name(0)]
    short_length = int(tokens["attention_mask"][0].sum())
    # Past the short caption's end, the mean is the long caption's z alone.
    torch.testing.assert_close(means[0][short_length:], z[1, short_length:])
    torch.testing.assert_close(means[0][:short_length], z[:, :short_length].mean(dim=0))


def test_ablation_hook_rejects_bad_mode():
    with pytest.raises(ValueError, match="unknown ablation mode"):
        ablation.head_ablation_hook(0, "random")
    with pytest.raises(ValueError, match="needs mean_z"):
        ablation.head_ablation_hook(0, "mean")


def test_top1_of_hand_made_embeddings():
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])
    texts = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert ablation.image_to_text_top1(images, texts, torch.tensor([0, 1, 1])) == pytest.approx(2 / 3)


def test_sweep_baseline_matches_hugging_face():
    loaded = load_clip("shapes-clip")
    data = shapes.generate(40, seed=5)
    pixels = encoding.pixel_values(loaded, data.images)
    captions = shapes.all_single_object_captions()
    tokens = encoding.tokenize(loaded, captions)
    truth = torch.tensor([captions.index(c) for c in data.captions])
    sweep = ablation.ablation_sweep(
        hooked_vision_tower(loaded), HookedTextTower(loaded), pixels, tokens["input_ids"], tokens["attention_mask"], truth
    )
    similarity = encoding.image_embeddings(loaded, pixels) @ encoding.text_embeddings(loaded, captions).T
    expected = float((similarity.argmax(dim=1) == truth).float().mean())
    assert sweep.baseline == pytest.approx(expected)
    assert set(sweep.top1) == {(t, m) for t in ("vision", "text") for m in ("zero", "mean")}
    assert sweep.top1[("vision", "zero")].shape == (3, 4)
    worst = sweep.costliest(2)
    assert min(worst[0][3].values()) <= min(worst[1][3].values())
    largest_drop = min(float(sweep.change(tower, mode).min()) for tower, mode in sweep.top1)
    assert min(worst[0][3].values()) == pytest.approx(largest_drop)
