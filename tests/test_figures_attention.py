import numpy as np

from helpers import figures_attention as figures


def test_overlay_has_one_step_per_head():
    images = np.zeros((3, 32, 32, 3), dtype=np.uint8)
    attention = np.random.default_rng(0).dirichlet(np.ones(16), size=(3, 2, 4))
    fig = figures.cls_attention_overlay(images, attention, grid=4, titles=["a", "b", "c"])
    steps = fig.layout.sliders[0].steps
    assert len(steps) == 2 * 4
    assert len(fig.data) == 3 + 3 * 2 * 4
    # Step 5 (layer 1, head 1) shows the three images and its own three maps.
    visible = steps[5].args[0]["visible"]
    assert sum(visible) == 6
    assert all(visible[:3])
    assert visible[3 + 5 * 3 : 3 + 6 * 3] == [True, True, True]
    np.testing.assert_allclose(fig.data[3 + 5 * 3 + 1].z, attention[1, 1, 1].reshape(4, 4))


def test_overlay_cells_cover_image():
    images = np.zeros((1, 32, 32, 3), dtype=np.uint8)
    fig = figures.cls_attention_overlay(images, np.full((1, 1, 1, 49), 1 / 49), grid=7, titles=["x"])
    heatmap = fig.data[1]
    # Seven cells of 32/7 pixels span the 32-pixel image, centred on the cells.
    assert heatmap.dx * 7 == 32
    assert heatmap.x0 == 32 / 7 / 2 - 0.5


def test_token_figure_labels_repeated_words_apart():
    patterns = np.eye(4)[None, None].repeat(2, axis=1)
    fig = figures.token_attention_figure(patterns, ["<s>", "a", "a", "</s>"], "a a")
    assert list(fig.data[0].x) == ["0 <s>", "1 a", "2 a", "3 </s>"]
    assert len(fig.layout.sliders[0].steps) == 2


def test_wrap_keeps_words():
    wrapped = figures._wrap("a large purple triangle on the left", width=12)
    assert wrapped.replace("<br>", " ") == "a large purple triangle on the left"
    assert all(len(line) <= 12 for line in wrapped.split("<br>"))


def test_model_view_undoes_normalisation():
    import torch

    images = np.random.default_rng(1).integers(0, 256, size=(2, 8, 8, 3)).astype(np.uint8)
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    pixels = (torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255 - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    np.testing.assert_array_equal(figures.model_view(pixels, mean, std), images)
