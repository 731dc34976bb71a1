import numpy as np
import pytest
import torch

from helpers import alignment, load_clip, metrics
from helpers.datasets import load_dataset
from helpers.params import ParameterError


@pytest.fixture(scope="module")
def clip():
    return load_clip("shapes-clip")


@pytest.fixture(scope="module")
def data():
    return load_dataset("shapes", 120, seed=5)


def test_layer_representations_match_hidden_states(clip, data):
    layers = alignment.layer_representations(clip, data.images[:16], data.captions[:16], batch_size=7)
    n_layers = clip.model.config.vision_config.num_hidden_layers
    assert len(layers.vision) == len(layers.text) == n_layers
    from helpers import encoding

    pixels = encoding.pixel_values(clip, data.images[:16])
    tokens = encoding.tokenize(clip, data.captions[:16])
    with torch.no_grad():
        vision_hidden = clip.model.vision_model(pixel_values=pixels, output_hidden_states=True).hidden_states
        text_hidden = clip.model.text_model(**tokens, output_hidden_states=True).hidden_states
    eos = (tokens["input_ids"] == clip.tokenizer.eos_token_id).int().argmax(-1)
    for layer in range(n_layers):
        torch.testing.assert_close(layers.vision[layer], vision_hidden[layer + 1][:, 0], atol=1e-5, rtol=0)
        torch.testing.assert_close(layers.text[layer], text_hidden[layer + 1][torch.arange(16), eos], atol=1e-5, rtol=0)


def test_shuffled_baseline_far_below_aligned(clip, data):
    layers = alignment.layer_alignment(
        alignment.layer_representations(clip, data.images, data.captions), k=5, progress=False
    )
    shuffled = alignment.layer_alignment(
        alignment.layer_representations(clip, data.images, data.captions), k=5, shuffle_seed=3, progress=False
    )
    for name in alignment.METRICS:
        assert layers[name].shape == (3, 3)
        assert layers[name][-1, -1] > shuffled[name][-1, -1] + 0.3, name


def test_gap_shift_closes_gap_at_one():
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(200, 16, generator=generator) + 2.0
    texts = torch.randn(200, 16, generator=generator) - 2.0
    relevance = torch.eye(200, dtype=torch.bool)
    curve = alignment.gap_shift_curve(images, texts, relevance, [0.0, 1.0])
    assert curve[0]["gap"] == pytest.approx(metrics.modality_gap(images, texts), abs=1e-9)
    assert curve[1]["gap"] < 0.2 * curve[0]["gap"]


def test_caption_relevance_marks_equal_captions():
    relevance = alignment.caption_relevance(["a", "b", "a"])
    expected = torch.tensor([[True, False, True], [False, True, False], [True, False, True]])
    assert torch.equal(relevance, expected)


def test_attribute_accuracy_counts_label_matches():
    similarity = torch.tensor([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.0, 0.1, 0.9]])
    labels = {"colour": np.array([0, 1, 0]), "shape": np.array([2, 2, -1])}
    scores = alignment.attribute_accuracy(similarity, labels)
    assert scores["colour"] == pytest.approx(2 / 3)
    assert scores["shape"] == pytest.approx(1.0)


def test_bootstrap_intervals_cover_full_value():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(300, 8, generator=generator)
    y = x @ torch.randn(8, 8, generator=generator) + 0.5 * torch.randn(300, 8, generator=generator)
    intervals = alignment.bootstrap_intervals(x, y, k=5, n_resamples=30, seed=0)
    full = alignment.all_metrics(x, y, 5)
    for name, (low, high) in intervals.items():
        assert low <= full[name] <= high, (name, low, full[name], high)
        assert high - low < 0.3, name


def test_subset_alignment_skips_small_subsets():
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(60, 4, generator=generator)
    labels = {"colour": np.array([0] * 50 + [1] * 10)}
    rows = alignment.subset_alignment(x, x, labels, {"colour": ("red", "blue")}, k=5)
    assert [row["value"] for row in rows] == ["red"]
    assert rows[0]["pairs"] == 50
    assert rows[0]["linear CKA"] == pytest.approx(1.0)


@pytest.mark.parametrize("n", [16, 50, 200, 1000])
def test_largest_k_fits_interval_subsets(n):
    x, y = torch.randn(n, 8), torch.randn(n, 8)
    k = alignment.largest_k(n)
    assert alignment.check_neighbours(k, n) == k
    intervals = alignment.bootstrap_intervals(x, y, k, n_resamples=2)
    assert set(intervals) == set(alignment.METRICS)
    with pytest.raises(ValueError, match="too small"):
        alignment.bootstrap_intervals(x, y, k + 1, n_resamples=2)


def test_check_neighbours_names_limit():
    with pytest.raises(ParameterError, match="k=159 must be at most 158 for 200 image-caption pairs"):
        alignment.check_neighbours(159, 200)
    with pytest.raises(ParameterError, match="k=0 must be at least 1"):
        alignment.check_neighbours(0, 200)
