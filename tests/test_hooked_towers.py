import pytest
import torch

from helpers import encoding, load_clip, shapes
from helpers.hooked_text import HookedTextTower
from helpers.hooked_vision import hooked_vision_tower, quick_gelu

CAPTIONS = [
    "a small red circle on the left",
    "a large blue cross on the top",
    "a red circle and a blue square",
    "a handwritten seven",
]


@pytest.fixture(scope="module", params=["embedded", "quick_gelu_stand_in"])
def loaded(request, quick_gelu_clip_dir):
    spec = "shapes-clip" if request.param == "embedded" else str(quick_gelu_clip_dir)
    return load_clip(spec)


@pytest.fixture(scope="module")
def pixels(loaded):
    data = shapes.generate(12, seed=21, two_object_fraction=0.5)
    return encoding.pixel_values(loaded, data.images)


def test_vision_tower_matches_hugging_face(loaded, pixels):
    hooked = hooked_vision_tower(loaded)
    expected = encoding.image_embeddings(loaded, pixels, normalise=False)
    with torch.no_grad():
        actual = hooked(pixels)
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)


def test_vision_residual_stream_matches_hidden_states(loaded, pixels):
    hooked = hooked_vision_tower(loaded)
    with torch.no_grad():
        _, cache = hooked.run_with_cache(pixels)
        hidden = loaded.model.vision_model(pixel_values=pixels, output_hidden_states=True).hidden_states
    for layer in range(hooked.cfg.n_layers):
        torch.testing.assert_close(cache[f"blocks.{layer}.hook_resid_post"], hidden[layer + 1], atol=1e-5, rtol=0)


def test_vision_tower_uses_quick_gelu(loaded):
    hooked = hooked_vision_tower(loaded)
    assert hooked.cfg.activation_name == "quick_gelu"
    assert all(block.mlp.act_fn is quick_gelu for block in hooked.blocks)


def test_vision_head_has_model_projection_size(quick_gelu_clip_dir):
    loaded = load_clip(str(quick_gelu_clip_dir))
    assert loaded.model.config.vision_config.projection_dim != loaded.model.config.projection_dim
    hooked = hooked_vision_tower(loaded)
    assert hooked.head.W_H.shape == (loaded.model.config.vision_config.hidden_size, loaded.model.config.projection_dim)


def test_unsupported_activation_rejected(quick_gelu_clip_dir):
    loaded = load_clip(str(quick_gelu_clip_dir))
    loaded.model.config.vision_config.hidden_act = "mish"
    with pytest.raises(ValueError, match="'mish' is not supported"):
        hooked_vision_tower(loaded)


def test_text_tower_matches_hugging_face(loaded):
    tower = HookedTextTower(loaded)
    tokens = encoding.tokenize(loaded, CAPTIONS)
    expected = encoding.text_embeddings(loaded, CAPTIONS, normalise=False)
    with torch.no_grad():
        actual, cache = tower.run_with_cache(**tokens)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)
    assert set(cache) == set(tower.hook_names)


def test_text_residual_stream_matches_hidden_states(loaded):
    tower = HookedTextTower(loaded)
    tokens = encoding.tokenize(loaded, CAPTIONS)
    with torch.no_grad():
        _, cache = tower.run_with_cache(**tokens)
        hidden = loaded.model.text_model(**tokens, output_hidden_states=True).hidden_states
    torch.testing.assert_close(cache["blocks.0.hook_resid_pre"], hidden[0], atol=0, rtol=0)
    for layer in range(tower.n_layers):
        torch.testing.assert_close(cache[f"blocks.{layer}.hook_resid_post"], hidden[layer + 1], atol=0, rtol=0)


def test_text_cache_shapes(loaded):
    tower = HookedTextTower(loaded)
    tokens = encoding.tokenize(loaded, CAPTIONS)
    batch, length = tokens["input_ids"].shape
    with torch.no_grad():
        _, cache = tower.run_with_cache(**tokens)
    assert cache["blocks.0.attn.hook_pattern"].shape == (batch, tower.n_heads, length, length)
    assert cache["blocks.0.attn.hook_z"].shape == (batch, length, tower.n_heads, tower.d_head)
    pattern = cache["blocks.0.attn.hook_pattern"]
    torch.testing.assert_close(pattern.sum(-1), torch.ones(batch, tower.n_heads, length))
    # Causal mask: no token attends to a later one.
    assert torch.triu(pattern, diagonal=1).abs().max() == 0


def test_text_head_ablation_equals_weight_edit(loaded):
    tower = HookedTextTower(loaded)
    tokens = encoding.tokenize(loaded, CAPTIONS)
    layer, head = tower.n_layers - 1, 1

    def zero_head(z, hook):
        z = z.clone()
        z[:, :, head] = 0
        return z

    with torch.no_grad():
        hooked = tower.run_with_hooks(**tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", zero_head)])
        out_proj = loaded.model.text_model.encoder.layers[layer].self_attn.out_proj
        saved = out_proj.weight.clone()
        out_proj.weight[:, head * tower.d_head : (head + 1) * tower.d_head] = 0
        edited = tower(**tokens)
        out_proj.weight.copy_(saved)
        clean = tower(**tokens)
    torch.testing.assert_close(hooked, edited, atol=1e-6, rtol=0)
    assert (hooked - clean).abs().max() > 1e-4


def test_text_hooks_removed_after_run(loaded):
    tower = HookedTextTower(loaded)
    tokens = encoding.tokenize(loaded, CAPTIONS)
    with torch.no_grad():
        clean = tower(**tokens)
        tower.run_with_hooks(**tokens, fwd_hooks=[("blocks.0.hook_resid_post", lambda x, hook: x * 0)])
        after = tower(**tokens)
    torch.testing.assert_close(clean, after, atol=0, rtol=0)


def test_text_pattern_hook_is_read_only(loaded):
    tower = HookedTextTower(loaded)
    tokens = encoding.tokenize(loaded, CAPTIONS)
    with pytest.raises(ValueError, match="read-only"):
        tower.run_with_hooks(**tokens, fwd_hooks=[("blocks.0.attn.hook_pattern", lambda p, hook: p * 0)])


def test_text_unknown_hook_rejected(loaded):
    tower = HookedTextTower(loaded)
    tokens = encoding.tokenize(loaded, CAPTIONS)
    with pytest.raises(KeyError, match="unknown text hook"):
        tower.run_with_hooks(**tokens, fwd_hooks=[("blocks.99.hook_resid_post", lambda x, hook: None)])


def test_end_of_text_index_is_pooled_token(loaded):
    tower = HookedTextTower(loaded)
    tokens = encoding.tokenize(loaded, CAPTIONS)
    eos = tower.end_of_text_index(tokens["input_ids"])
    with torch.no_grad():
        _, cache = tower.run_with_cache(**tokens, names_filter=["ln_final.hook_normalized"])
        pooled = loaded.model.text_model(**tokens).pooler_output
    final = cache["ln_final.hook_normalized"]
    torch.testing.assert_close(final[torch.arange(len(eos)), eos], pooled, atol=0, rtol=0)
