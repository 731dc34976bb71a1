import math

import numpy as np
import pytest
import torch

from helpers import attention, localisation


def uniform_pattern(tokens: int, batch: int = 1) -> torch.Tensor:
    return torch.full((batch, 1, tokens, tokens), 1.0 / tokens)


# Entropy -------------------------------------------------------------------


def test_entropy_of_uniform_is_log_tokens():
    entropy = attention.attention_entropy(uniform_pattern(17))
    torch.testing.assert_close(entropy, torch.full((1, 1, 17), math.log(17)))


def test_entropy_of_one_hot_is_zero():
    pattern = torch.eye(5)[None, None]
    assert attention.attention_entropy(pattern).abs().max() == 0


def test_entropy_of_hand_made_row():
    pattern = torch.tensor([[[[0.5, 0.25, 0.25, 0.0]]]])
    expected = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    assert attention.attention_entropy(pattern).item() == pytest.approx(expected, abs=1e-6)
    assert attention.attention_entropy(pattern).item() == pytest.approx(1.5 * math.log(2), abs=1e-6)


# Distance ------------------------------------------------------------------


def two_by_two_pattern(rows: dict[int, list[float]]) -> torch.Tensor:
    """A (1, 1, 5, 5) pattern on a 2 x 2 grid; unspecified rows attend to CLS only."""
    pattern = torch.zeros(1, 1, 5, 5)
    pattern[..., 0] = 1.0
    for query, row in rows.items():
        pattern[0, 0, query] = torch.tensor(row)
    return pattern


def test_distance_of_hand_made_patterns():
    # Patches 1..4 sit at (0,0), (0,1), (1,0), (1,1).
    pattern = two_by_two_pattern({
        1: [0.0, 0.0, 0.0, 0.0, 1.0],  # patch (0,0) looks at (1,1): distance sqrt(2)
        2: [0.0, 0.5, 0.5, 0.0, 0.0],  # patch (0,1) splits between (0,0) and itself: 0.5
        3: [0.5, 0.0, 0.0, 0.5, 0.0],  # half to CLS, half to itself: CLS is left out, 0
        4: [0.0, 0.25, 0.25, 0.25, 0.25],  # patch (1,1) uniform: (sqrt(2) + 1 + 1 + 0) / 4
    })
    distance = attention.mean_attention_distance(pattern, grid=2)[0, 0]
    expected = torch.tensor([math.sqrt(2), 0.5, 0.0, (math.sqrt(2) + 2) / 4])
    torch.testing.assert_close(distance, expected)


def test_uniform_distance_matches_uniform_pattern():
    grid = 4
    distance = attention.mean_attention_distance(uniform_pattern(grid * grid + 1), grid).mean()
    assert distance.item() == pytest.approx(attention.uniform_attention_distance(grid), abs=1e-6)


def test_distance_rejects_wrong_token_count():
    with pytest.raises(ValueError, match="needs 17 x 17"):
        attention.mean_attention_distance(uniform_pattern(10), grid=4)


# CLS, self and object mass ---------------------------------------------------


def test_cls_and_self_mass_of_hand_made_pattern():
    pattern = two_by_two_pattern({
        1: [0.4, 0.6, 0.0, 0.0, 0.0],
        2: [0.2, 0.0, 0.8, 0.0, 0.0],
        3: [1.0, 0.0, 0.0, 0.0, 0.0],
        4: [0.0, 0.0, 0.0, 0.0, 1.0],
    })
    # Rows 1..4 give CLS 0.4, 0.2, 1.0, 0.0; the CLS row (row 0) gives itself 1.0.
    assert attention.cls_mass(pattern).item() == pytest.approx((0.4 + 0.2 + 1.0 + 0.0) / 4)
    assert attention.self_mass(pattern).item() == pytest.approx((1.0 + 0.6 + 0.8 + 0.0 + 1.0) / 5)


def test_object_mass_weights_patches_by_coverage():
    pattern = two_by_two_pattern({})
    pattern[0, 0, 0] = torch.tensor([0.2, 0.4, 0.2, 0.1, 0.1])
    fractions = torch.tensor([[1.0, 0.5, 0.0, 0.0]])
    assert attention.object_mass(pattern, fractions).item() == pytest.approx(0.4 * 1.0 + 0.2 * 0.5)


# Mask downsampling -------------------------------------------------------------


def test_mask_fractions_on_aligned_grid():
    mask = np.zeros((1, 4, 4), dtype=bool)
    mask[0, :2, :2] = True  # top-left patch fully covered
    mask[0, 2, 2] = True  # one pixel of the bottom-right patch
    fractions = attention.mask_patch_fractions(mask, grid=2)
    np.testing.assert_allclose(fractions, [[1.0, 0.0, 0.0, 0.25]])


def test_mask_fractions_when_cells_cut_pixels():
    # A 3-pixel side on a 2 x 2 grid: each cell is 1.5 x 1.5 pixels.
    mask = np.zeros((1, 3, 3), dtype=bool)
    mask[0, 0, 0] = True
    fractions = attention.mask_patch_fractions(mask, grid=2)
    np.testing.assert_allclose(fractions, [[1 / 2.25, 0.0, 0.0, 0.0]])
    full = attention.mask_patch_fractions(np.ones((1, 3, 3), dtype=bool), grid=2)
    np.testing.assert_allclose(full, np.ones((1, 4)))


def test_mask_fractions_crop_central_square():
    # A 2 x 6 mask: the processor keeps columns 2..3, the central square.
    mask = np.zeros((1, 2, 6), dtype=bool)
    mask[0, :, 0] = True  # cropped away
    mask[0, 0, 2] = True  # top-left pixel of the square
    fractions = attention.mask_patch_fractions(mask, grid=2)
    np.testing.assert_allclose(fractions, [[1.0, 0.0, 0.0, 0.0]])


def test_mask_fractions_match_coverage_on_shapes_grid():
    from helpers import shapes

    data = shapes.generate(5, seed=3)
    fractions = attention.mask_patch_fractions(data.masks[:, 0], grid=4)
    # Each 8 x 8 patch: fraction = covered pixels / 64.
    blocks = data.masks[:, 0].reshape(5, 4, 8, 4, 8).mean(axis=(2, 4)).reshape(5, 16)
    np.testing.assert_allclose(fractions, blocks)
    np.testing.assert_allclose(fractions.mean(axis=1), data.masks[:, 0].mean(axis=(1, 2)))


# Localisation score ----------------------------------------------------------


def test_localisation_all_mass_on_mask_is_inverse_area():
    fractions = torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])  # area 2/9
    cls_row = torch.tensor([[[0.1, 0.4, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]]])  # (batch, head, patches)
    score = localisation.localisation_score(cls_row, fractions)
    assert score.item() == pytest.approx(9 / 2)


def test_localisation_uniform_attention_is_chance():
    rng = np.random.default_rng(0)
    fractions = torch.as_tensor(rng.uniform(0, 1, size=(3, 16)) * (rng.uniform(size=(3, 16)) > 0.5), dtype=torch.float32)
    cls_row = torch.full((3, 2, 16), 1 / 17)  # the rest goes to CLS, which the score leaves out
    torch.testing.assert_close(localisation.localisation_score(cls_row, fractions), torch.ones(3, 2))


def test_localisation_of_pattern_from_statistics():
    # The statistics pass scores the CLS row of a full pattern: attention to CLS itself is left out.
    pattern = two_by_two_pattern({})
    pattern[0, 0, 0] = torch.tensor([0.5, 0.5, 0.0, 0.0, 0.0])
    score = localisation.localisation_score(pattern[..., 0, 1:], torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    assert score.item() == pytest.approx(4.0)


def test_localisation_empty_mask_is_nan():
    score = localisation.localisation_score(torch.full((1, 1, 4), 0.25), torch.zeros(1, 4))
    assert torch.isnan(score).all()


def test_localisation_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="do not match"):
        localisation.localisation_score(torch.full((2, 1, 4), 0.25), torch.ones(2, 9))


def test_bootstrap_interval_brackets_mean_and_shrinks():
    rng = np.random.default_rng(1)
    small = localisation.bootstrap_mean(rng.normal(3.0, 1.0, 50), seed=0)
    large = localisation.bootstrap_mean(rng.normal(3.0, 1.0, 5000), seed=0)
    assert small.low < small.mean < small.high
    assert large.high - large.low < (small.high - small.low) / 5
    assert large.low < 3.0 < large.high


def test_bootstrap_drops_nan():
    interval = localisation.bootstrap_mean(np.array([1.0, np.nan, 3.0]), seed=0)
    assert interval.n == 2
    assert interval.mean == 2.0


def test_best_head_found_and_scored_on_other_half():
    rng = np.random.default_rng(2)
    scores = rng.normal(1.0, 0.2, size=(200, 3, 4))
    scores[:, 2, 1] += 2.0
    best = localisation.best_localising_head(scores, seed=0, n_resamples=500)
    assert (best.layer, best.head) == (2, 1)
    assert best.heldout.n == 100
    assert best.heldout.low < 3.0 < best.heldout.high


# Head kinds -------------------------------------------------------------------


def test_head_kinds_follow_rules():
    grid = 4
    log_tokens = math.log(grid * grid + 1)
    uniform = attention.uniform_attention_distance(grid)
    means = {
        "entropy": np.array([[0.2 * log_tokens, 0.95 * log_tokens, 0.5 * log_tokens, 0.5 * log_tokens]]),
        "distance": np.array([[0.5 * uniform, uniform, uniform, uniform]]),
        "cls_mass": np.array([[0.0, 0.0, 0.6, 0.0]]),
        "self_mass": np.array([[0.1, 0.0, 0.0, 0.0]]),
        "localisation": np.array([[1.0, 1.0, 1.0, 4.0]]),
    }
    kinds = attention.head_kinds(means, grid)
    assert kinds[0][0] == ["local"]
    assert kinds[0][1] == ["global/diffuse"]
    assert kinds[0][2] == ["CLS-sink"]
    assert kinds[0][3] == ["object-localising"]
    means["localisation"] = np.array([[1.0, 1.0, 1.0, 1.0]])
    assert attention.head_kinds(means, grid)[0][3] == ["mixed"]
