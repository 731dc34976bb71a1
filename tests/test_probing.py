import numpy as np
import pytest
import torch

from helpers import encoding, load_clip, probing, shapes
from helpers.hooked_text import HookedTextTower
from helpers.hooked_vision import hooked_vision_tower


def planted_data(n: int = 600, classes: int = 4, d: int = 32, noise: float = 0.3, seed: int = 0):
    """Features that encode the label along random directions, plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n)
    directions = rng.normal(size=(classes, d))
    features = directions[labels] + noise * rng.normal(size=(n, d))
    return features, labels


def test_probe_reads_planted_label():
    features, labels = planted_data()
    train, test = probing.split_indices(len(labels), seed=0)
    accuracy = probing.probe_accuracy(features[train], labels[train], features[test], labels[test])
    assert accuracy >= 0.98


def test_probe_on_random_labels_is_near_chance():
    features, _ = planted_data()
    random_labels = np.random.default_rng(5).integers(0, 4, size=len(features))
    train, test = probing.split_indices(len(features), seed=0)
    accuracy = probing.probe_accuracy(features[train], random_labels[train], features[test], random_labels[test])
    assert abs(accuracy - 0.25) < 0.08


def test_probe_is_deterministic():
    features, labels = planted_data(noise=3.0)
    train, test = probing.split_indices(len(labels), seed=0)
    first = probing.probe_accuracy(features[train], labels[train], features[test], labels[test])
    second = probing.probe_accuracy(features[train], labels[train], features[test], labels[test])
    assert first == second


def test_probe_single_class_predicts_it():
    features = np.random.default_rng(0).normal(size=(10, 3))
    accuracy = probing.probe_accuracy(features[:6], np.zeros(6, int), features[6:], np.array([0, 0, 1, 0]))
    assert accuracy == 0.75


def test_split_indices_disjoint_and_complete():
    train, test = probing.split_indices(30, test_fraction=1 / 3, seed=4)
    assert len(test) == 10
    assert set(train).isdisjoint(test)
    assert sorted([*train, *test]) == list(range(30))


def test_control_labels_fixed_per_key():
    keys = ["a", "b", "a", "c", "b", "a"]
    labels = np.array([0, 1, 0, 2, 1, 0])
    control = probing.control_labels(keys, labels, seed=3)
    assert control[0] == control[2] == control[5]
    assert control[1] == control[4]
    assert set(control) <= {0, 1, 2}
    np.testing.assert_array_equal(control, probing.control_labels(keys, labels, seed=3))


def test_control_labels_follow_label_distribution():
    rng = np.random.default_rng(0)
    labels = rng.choice(3, size=20000, p=[0.6, 0.3, 0.1])
    control = probing.control_labels(list(range(len(labels))), labels, seed=1)
    np.testing.assert_allclose(np.bincount(control) / len(control), [0.6, 0.3, 0.1], atol=0.02)


def test_control_labels_keep_unknown():
    control = probing.control_labels(["a", "b", "c"], np.array([0, -1, 1]), seed=0)
    assert control[1] == -1


def test_control_keys_use_caption_when_finer():
    labels = {"colour": np.array([0, 1, 0]), "shape": np.array([1, 1, 0])}
    assert probing.control_keys(["x", "y", "z"], labels) == ["x", "y", "z"]
    assert probing.control_keys(["x", "y", "x"], labels) == [0, 1, 2]


def test_control_on_memorisable_types_beats_relabelling():
    # 40 types, each a tight cluster; the attribute is a function of the type.
    rng = np.random.default_rng(0)
    types = rng.integers(0, 40, size=1200)
    centres = rng.normal(size=(40, 60))
    features = centres[types] + 0.05 * rng.normal(size=(1200, 60))
    attribute = types % 4
    keys = [int(t) for t in types]
    train, test = probing.split_indices(len(types), seed=0)
    result = probing.layerwise_probes(features[:, None], {"attribute": attribute}, keys, train, test, seed=0)
    # The probe memorises the type clusters: the control task scores well above chance (0.25).
    assert result.control[0, 0] > 0.8
    assert result.accuracy[0, 0] > 0.95
    # Keyed on the attribute value itself, the control is a relabelling and its accuracy equals the probe's.
    relabelled = np.array([2, 0, 3, 1])[attribute]
    same = probing.probe_accuracy(features[train], relabelled[train], features[test], relabelled[test])
    assert same == pytest.approx(result.accuracy[0, 0])


def test_layerwise_probes_shapes_and_selectivity():
    features, labels = planted_data(n=300)
    noise = np.random.default_rng(1).normal(size=features.shape)
    stacked = np.stack([noise, features], axis=1)
    keys = list(range(len(labels)))  # every row its own type: the control cannot be memorised
    train, test = probing.split_indices(len(labels), seed=0)
    result = probing.layerwise_probes(stacked, {"label": labels}, keys, train, test, seed=0)
    assert result.accuracy.shape == (1, 2)
    assert result.layer_names == ["embeddings", "layer 1"]
    assert result.accuracy[0, 0] < 0.45
    assert result.accuracy[0, 1] >= 0.98
    np.testing.assert_allclose(result.selectivity, result.accuracy - result.control)
    assert result.selectivity[0, 1] > 0.5
    assert result.best_layer("label") == 1


def test_layerwise_probes_skip_unknown_labels():
    features, labels = planted_data(n=300)
    labels = labels.copy()
    labels[::3] = -1
    train, test = probing.split_indices(len(labels), seed=0)
    result = probing.layerwise_probes(features[:, None], {"label": labels}, list(range(len(labels))), train, test)
    assert result.accuracy[0, 0] >= 0.95


# Residual streams of the real towers -------------------------------------------


@pytest.fixture(scope="module")
def loaded():
    return load_clip("shapes-clip")


def test_vision_residuals_match_hidden_states_at_cls(loaded):
    data = shapes.generate(6, seed=2)
    pixels = encoding.pixel_values(loaded, data.images)
    features = probing.vision_residuals(hooked_vision_tower(loaded), pixels, batch_size=4)
    with torch.no_grad():
        hidden = loaded.model.vision_model(pixel_values=pixels, output_hidden_states=True).hidden_states
    expected = torch.stack([h[:, 0] for h in hidden], dim=1).numpy()
    assert features.shape == expected.shape
    np.testing.assert_allclose(features, expected, atol=1e-5)


def test_text_residuals_read_end_of_text(loaded):
    captions = ["a small red circle on the left", "a red circle and a blue square"]
    tokens = encoding.tokenize(loaded, captions)
    tower = HookedTextTower(loaded)
    features = probing.text_residuals(tower, **tokens, batch_size=1)
    with torch.no_grad():
        hidden = loaded.model.text_model(**tokens, output_hidden_states=True).hidden_states
    eot = tower.end_of_text_index(tokens["input_ids"])
    expected = torch.stack([h[torch.arange(2), eot] for h in hidden], dim=1).numpy()
    np.testing.assert_allclose(features, expected, atol=2e-5)
