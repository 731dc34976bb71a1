"""Tests of helpers.metrics against dense O(n^2) reference implementations.

The kNN references build the full n x n kernel and neighbour masks the way
``AlignmentMetrics`` in github.com/minyoungg/platonic-rep (``metrics.py``) does,
written here in float64.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import metrics


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _related_pair(n: int = 300, d_x: int = 24, d_y: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Return float64 representations where y is a noisy linear image of x."""
    generator = _generator(seed)
    x = torch.randn(n, d_x, generator=generator, dtype=torch.float64)
    mixing = torch.randn(d_x, d_y, generator=generator, dtype=torch.float64)
    y = x @ mixing + 3.0 * torch.randn(n, d_y, generator=generator, dtype=torch.float64)
    return x, y


def _random_rotation(d: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=_generator(seed), dtype=torch.float64))
    return q


# ---------------------------------------------------------------------------
# Dense references


def _biased_hsic(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    n = k.shape[0]
    centring = torch.eye(n, dtype=k.dtype) - 1.0 / n
    return torch.trace(k @ centring @ l @ centring)


def _unbiased_hsic(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    n = k.shape[0]
    k_tilde = k.clone().fill_diagonal_(0)
    l_tilde = l.clone().fill_diagonal_(0)
    trace = (k_tilde * l_tilde.T).sum()
    sums = k_tilde.sum() * l_tilde.sum() / ((n - 1) * (n - 2))
    cross = (k_tilde @ l_tilde).sum() * 2 / (n - 2)
    return (trace + sums - cross) / (n * (n - 3))


def _reference_cka(x: torch.Tensor, y: torch.Tensor, hsic) -> float:
    k, l = x @ x.T, y @ y.T
    return float(hsic(k, l) / torch.sqrt(hsic(k, k) * hsic(l, l)))


def _knn_mask(kernel: torch.Tensor, k: int) -> torch.Tensor:
    n = kernel.shape[0]
    masked = kernel.clone().fill_diagonal_(-math.inf)
    top = masked.topk(k, dim=1).indices
    return torch.zeros(n, n, dtype=kernel.dtype).scatter_(1, top, 1.0)


def _reference_mutual_knn(x: torch.Tensor, y: torch.Tensor, k: int) -> float:
    x, y = F.normalize(x, dim=1), F.normalize(y, dim=1)
    mask_x, mask_y = _knn_mask(x @ x.T, k), _knn_mask(y @ y.T, k)
    return float(((mask_x * mask_y).sum(dim=1) / k).mean())


def _reference_cknna(x: torch.Tensor, y: torch.Tensor, k: int) -> float:
    # Same steps as platonic-rep's cknna with unbiased=True, except that the
    # denominator has no + 1e-6 (helpers.metrics.cknna documents why).
    x, y = F.normalize(x, dim=1), F.normalize(y, dim=1)
    kernel_x, kernel_y = x @ x.T, y @ y.T

    def masked_hsic(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        mask = _knn_mask(a, k) * _knn_mask(b, k)
        return _unbiased_hsic(mask * a, mask * b)

    numerator = masked_hsic(kernel_x, kernel_y)
    return float(numerator / torch.sqrt(masked_hsic(kernel_x, kernel_x) * masked_hsic(kernel_y, kernel_y)))


def _reference_recall(similarity: torch.Tensor, k: int, relevance: torch.Tensor) -> float:
    hits = 0
    for query in range(similarity.shape[0]):
        ranked = similarity[query].argsort(descending=True)[:k]
        hits += bool(relevance[query, ranked].any())
    return hits / similarity.shape[0]


# ---------------------------------------------------------------------------
# CKA

CKA_FUNCTIONS = [metrics.linear_cka, metrics.debiased_cka]


@pytest.mark.parametrize("cka", CKA_FUNCTIONS)
def test_cka_self_is_one(cka):
    x, _ = _related_pair()
    assert cka(x, x) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("cka", CKA_FUNCTIONS)
def test_cka_rotation_invariant(cka):
    x, y = _related_pair()
    base = cka(x, y)
    assert cka(x @ _random_rotation(x.shape[1], seed=1), y) == pytest.approx(base, abs=1e-10)
    assert cka(x, y @ _random_rotation(y.shape[1], seed=2)) == pytest.approx(base, abs=1e-10)


@pytest.mark.parametrize("cka", CKA_FUNCTIONS)
def test_cka_isotropic_scaling_invariant(cka):
    x, y = _related_pair()
    base = cka(x, y)
    assert cka(7.5 * x, y) == pytest.approx(base, abs=1e-10)
    assert cka(x, 0.01 * y) == pytest.approx(base, abs=1e-10)


@pytest.mark.parametrize("cka", CKA_FUNCTIONS)
def test_cka_changes_under_general_linear_map(cka):
    x, _ = _related_pair()
    d = x.shape[1]
    # An invertible map with singular values from 1 to 1000 stretches a few directions.
    stretch = torch.logspace(0, 3, d, dtype=torch.float64)
    linear_map = _random_rotation(d, seed=3) @ torch.diag(stretch) @ _random_rotation(d, seed=4)
    assert torch.linalg.matrix_rank(linear_map) == d
    assert cka(x, x @ linear_map) < 0.8


@pytest.mark.parametrize("cka, hsic", [(metrics.linear_cka, _biased_hsic), (metrics.debiased_cka, _unbiased_hsic)])
def test_cka_matches_dense_reference(cka, hsic):
    x, y = _related_pair()
    assert cka(x, y) == pytest.approx(_reference_cka(x, y, hsic), abs=1e-10)


@pytest.mark.parametrize("cka, hsic", [(metrics.linear_cka, _biased_hsic), (metrics.debiased_cka, _unbiased_hsic)])
def test_cka_float32_matches_reference(cka, hsic):
    x, y = _related_pair()
    reference = _reference_cka(x, y, hsic)
    assert cka(x.float(), y.float()) == pytest.approx(reference, abs=1e-5)


def test_debiased_cka_shift_invariant():
    x, y = _related_pair()
    base = metrics.debiased_cka(x, y)
    shifted = metrics.debiased_cka(x + 5.0, y - torch.arange(y.shape[1], dtype=torch.float64))
    assert shifted == pytest.approx(base, abs=1e-10)


def test_debiased_cka_near_zero_when_independent():
    x, _ = _related_pair(seed=5)
    _, y = _related_pair(seed=6)
    # Linear CKA of independent data is biased upward, to about 0.06 here, while debiased CKA stays near 0.
    assert metrics.linear_cka(x, y) > 0.03
    assert abs(metrics.debiased_cka(x, y)) < 0.02


@pytest.mark.parametrize("cka", CKA_FUNCTIONS)
def test_cka_accepts_numpy(cka):
    x, y = _related_pair()
    assert cka(x.numpy(), y.numpy()) == pytest.approx(cka(x, y), abs=1e-12)


# ---------------------------------------------------------------------------
# Mutual kNN and CKNNA


def test_mutual_knn_self_is_one():
    x, _ = _related_pair()
    assert metrics.mutual_knn(x, x, k=10) == 1.0


def test_mutual_knn_independent_near_chance():
    n, k = 2000, 10
    generator = _generator(7)
    x = torch.randn(n, 16, generator=generator)
    y = torch.randn(n, 16, generator=generator)
    # Each row's overlap is hypergeometric: k draws from n - 1 with k marked.
    population = n - 1
    overlap_variance = k * (k / population) * ((population - k) / population) * ((population - k) / (population - 1))
    standard_error = math.sqrt(overlap_variance / n) / k
    expected = k / population
    assert metrics.mutual_knn(x, y, k) == pytest.approx(expected, abs=4 * standard_error)


@pytest.mark.parametrize("k", [1, 5, 20])
def test_mutual_knn_matches_dense_reference(k):
    x, y = _related_pair()
    assert metrics.mutual_knn(x, y, k) == pytest.approx(_reference_mutual_knn(x, y, k), abs=1e-12)


def test_cknna_self_is_one():
    x, _ = _related_pair()
    assert metrics.cknna(x, x, k=10) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("k", [2, 10, 40])
def test_cknna_matches_dense_reference(k):
    x, y = _related_pair()
    assert metrics.cknna(x, y, k) == pytest.approx(_reference_cknna(x, y, k), abs=1e-10)


def test_cknna_float32_matches_reference():
    x, y = _related_pair()
    assert metrics.cknna(x.float(), y.float(), 10) == pytest.approx(_reference_cknna(x, y, 10), abs=1e-5)


def test_cknna_all_neighbours_matches_reference():
    x, y = _related_pair(n=60)
    assert metrics.cknna(x, y, 59) == pytest.approx(_reference_cknna(x, y, 59), abs=1e-10)


def test_knn_metrics_ignore_row_scale():
    x, y = _related_pair()
    row_scale = torch.rand(x.shape[0], 1, generator=_generator(8), dtype=torch.float64) + 0.1
    assert metrics.mutual_knn(x * row_scale, y, 10) == metrics.mutual_knn(x, y, 10)
    assert metrics.cknna(x * row_scale, y, 10) == pytest.approx(metrics.cknna(x, y, 10), abs=1e-12)


def test_knn_alignment_matches_separate_calls():
    x, y = _related_pair()
    both = metrics.knn_alignment(x, y, 10)
    assert both.mutual_knn == metrics.mutual_knn(x, y, 10)
    assert both.cknna == metrics.cknna(x, y, 10)


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 299, 300, 5000])
def test_knn_chunked_matches_unchunked(chunk_size):
    x, y = _related_pair()
    n = x.shape[0]
    assert metrics.mutual_knn(x, y, 10, chunk_size=chunk_size) == metrics.mutual_knn(x, y, 10, chunk_size=n)
    chunked = metrics.cknna(x, y, 10, chunk_size=chunk_size)
    assert chunked == pytest.approx(metrics.cknna(x, y, 10, chunk_size=n), abs=1e-12)


def test_knn_accepts_numpy_float32():
    x, y = _related_pair()
    value = metrics.mutual_knn(x.float().numpy(), y.float().numpy(), 10)
    assert value == pytest.approx(_reference_mutual_knn(x, y, 10), abs=1e-12)


# ---------------------------------------------------------------------------
# Modality gap


def _spread_around(centre: torch.Tensor, offset: torch.Tensor, n_pairs: int) -> torch.Tensor:
    """Return rows centre ± offset with random positive row scales.

    For unit, orthogonal centre and offset the normalised rows average to
    centre / sqrt(1 + ‖offset‖²).
    """
    scales = torch.rand(2 * n_pairs, 1, generator=_generator(9), dtype=torch.float64) + 0.5
    rows = torch.cat([(centre + offset).expand(n_pairs, -1), (centre - offset).expand(n_pairs, -1)])
    return rows * scales


def test_modality_gap_closed_form():
    basis = torch.eye(4, dtype=torch.float64)
    image = _spread_around(basis[0], 0.5 * basis[2], n_pairs=30)
    text = _spread_around(basis[1], 2.0 * basis[3], n_pairs=20)
    image_centroid = basis[0] / math.sqrt(1 + 0.5**2)
    text_centroid = basis[1] / math.sqrt(1 + 2.0**2)

    gap_vector = metrics.modality_gap_vector(image, text)
    assert torch.allclose(gap_vector, image_centroid - text_centroid, atol=1e-12)
    expected = math.sqrt(1 / (1 + 0.5**2) + 1 / (1 + 2.0**2))
    assert metrics.modality_gap(image, text) == pytest.approx(expected, abs=1e-12)


def test_modality_gap_matches_dense_reference():
    generator = _generator(18)
    image = torch.randn(2500, 16, generator=generator) + 1.0
    text = torch.randn(1800, 16, generator=generator)
    expected = F.normalize(image.double(), dim=1).mean(dim=0) - F.normalize(text.double(), dim=1).mean(dim=0)
    assert torch.allclose(metrics.modality_gap_vector(image, text), expected, atol=1e-12)
    assert metrics.modality_gap(image.numpy(), text.numpy()) == pytest.approx(float(expected.norm()), abs=1e-12)


def test_modality_gap_same_cloud_is_zero():
    x, _ = _related_pair()
    assert metrics.modality_gap(x, 3.0 * x) == pytest.approx(0.0, abs=1e-12)


def test_modality_gap_zero_row_index_across_chunks():
    text = torch.ones(3000, 4)
    text[2500] = 0.0
    with pytest.raises(ValueError, match=r"text_embeds has a row of zero norm at index 2500\."):
        metrics.modality_gap(torch.ones(5, 4), text)


def test_modality_gap_opposite_points_is_two():
    image = torch.tensor([[0.0, 2.0]])
    text = torch.tensor([[0.0, -5.0]])
    assert metrics.modality_gap(image, text) == pytest.approx(2.0, abs=1e-12)


# ---------------------------------------------------------------------------
# Recall@k


def _retrieval_scores(n_queries: int = 120, n_candidates: int = 200, seed: int = 10) -> torch.Tensor:
    return torch.randn(n_queries, n_candidates, generator=_generator(seed))


@pytest.mark.parametrize("k", [1, 5, 50, 200])
def test_recall_targets_matches_reference(k):
    similarity = _retrieval_scores()
    targets = torch.randint(0, similarity.shape[1], (similarity.shape[0],), generator=_generator(11))
    relevance = F.one_hot(targets, similarity.shape[1]).bool()
    expected = _reference_recall(similarity, k, relevance)
    assert metrics.recall_at_k(similarity, k, targets) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("k", [1, 5, 20])
def test_recall_relevance_matches_reference(k):
    similarity = _retrieval_scores()
    relevance = torch.rand(similarity.shape, generator=_generator(12)) < 0.03
    relevance[:, 0] = True  # every query needs a relevant candidate
    expected = _reference_recall(similarity, k, relevance)
    assert metrics.recall_at_k(similarity, k, relevance=relevance) == pytest.approx(expected, abs=1e-12)


def test_recall_paired_embeddings_both_directions():
    generator = _generator(13)
    images = torch.randn(50, 8, generator=generator)
    texts = images + 0.01 * torch.randn(50, 8, generator=generator)
    similarity = F.normalize(images, dim=1) @ F.normalize(texts, dim=1).T
    diagonal = torch.arange(50)
    assert metrics.recall_at_k(similarity, 1, diagonal) == 1.0
    assert metrics.recall_at_k(similarity.T, 1, diagonal) == 1.0


def test_recall_ties_count_against_query():
    similarity = torch.zeros(10, 30)
    targets = torch.arange(10)
    assert metrics.recall_at_k(similarity, 1, targets) == 0.0
    assert metrics.recall_at_k(similarity, 30, targets) == 1.0


def test_recall_chunked_matches_unchunked():
    similarity = _retrieval_scores()
    targets = torch.randint(0, similarity.shape[1], (similarity.shape[0],), generator=_generator(14))
    whole = metrics.recall_at_k(similarity, 10, targets, chunk_size=similarity.shape[0])
    assert metrics.recall_at_k(similarity, 10, targets, chunk_size=7) == whole


def test_recall_accepts_numpy_and_lists():
    similarity = _retrieval_scores(n_queries=20, n_candidates=20)
    targets = list(range(20))
    expected = metrics.recall_at_k(similarity, 3, torch.arange(20))
    assert metrics.recall_at_k(similarity.numpy(), 3, targets) == expected
    assert metrics.recall_at_k(similarity.numpy(), 3, np.arange(20)) == expected


# ---------------------------------------------------------------------------
# Invalid input

_X = torch.randn(10, 3, generator=_generator(15))
_Y = torch.randn(10, 4, generator=_generator(16))
_WITH_NAN = _X.clone()
_WITH_NAN[2, 1] = math.nan
_WITH_ZERO_ROW = _X.clone()
_WITH_ZERO_ROW[4] = 0.0
_SIMILARITY = torch.randn(6, 8, generator=_generator(17))
_WITHOUT_RELEVANT = torch.eye(6, 8, dtype=torch.bool)
_WITHOUT_RELEVANT[2, 2] = False

INVALID_CALLS = [
    ("rows_mismatch", lambda: metrics.linear_cka(_X, _Y[:9]), r"same number of rows.*\(10, 3\).*\(9, 4\)"),
    ("one_dimensional", lambda: metrics.linear_cka(_X[:, 0], _Y), r"x must be a non-empty 2-D array.*\(10,\)"),
    ("three_dimensional", lambda: metrics.mutual_knn(_X, _Y[None], 2), r"y must be a non-empty 2-D.*\(1, 10, 4\)"),
    ("empty", lambda: metrics.debiased_cka(_X[:0], _Y[:0]), r"x must be a non-empty 2-D.*\(0, 3\)"),
    ("nan_x", lambda: metrics.debiased_cka(_WITH_NAN, _Y), r"x contains 1 NaN or infinite"),
    ("nan_y", lambda: metrics.cknna(_Y, _WITH_NAN, 3), r"y contains 1 NaN or infinite"),
    ("k_equals_n", lambda: metrics.mutual_knn(_X, _Y, 10), r"k must be an integer in \[1, 9\].*k=10"),
    ("k_zero", lambda: metrics.cknna(_X, _Y, 0), r"k must be an integer in \[1, 9\].*k=0"),
    ("k_float", lambda: metrics.mutual_knn(_X, _Y, 2.5), r"k must be an integer.*k=2\.5"),
    ("k_bool", lambda: metrics.mutual_knn(_X, _Y, True), r"k must be an integer.*k=True"),
    ("chunk_size_zero", lambda: metrics.mutual_knn(_X, _Y, 2, chunk_size=0), r"chunk_size must be a positive.*0"),
    ("debiased_small_n", lambda: metrics.debiased_cka(_X[:3], _Y[:3]), r"at least 4 samples.*n=3"),
    ("cknna_small_n", lambda: metrics.cknna(_X[:3], _Y[:3], 1), r"at least 4 samples.*n=3"),
    ("zero_row", lambda: metrics.mutual_knn(_WITH_ZERO_ROW, _Y, 2), r"x has a row of zero norm at index 4\."),
    ("constant_linear", lambda: metrics.linear_cka(torch.ones(10, 3), _Y), r"x has zero variance"),
    ("constant_debiased", lambda: metrics.debiased_cka(_X, torch.ones(10, 2)), r"y with itself is 0, not positive"),
    ("complex", lambda: metrics.linear_cka(_X.to(torch.complex64), _Y), r"x must have a real dtype"),
    ("gap_width", lambda: metrics.modality_gap(_X, _Y), r"same number of columns.*\(10, 3\).*\(10, 4\)"),
    ("gap_zero_row", lambda: metrics.modality_gap(_X, _WITH_ZERO_ROW), r"text_embeds has a row of zero norm at index 4"),
    ("recall_k_large", lambda: metrics.recall_at_k(_SIMILARITY, 9, torch.arange(6)), r"k must be.*\[1, 8\].*k=9"),
    ("recall_k_zero", lambda: metrics.recall_at_k(_SIMILARITY, 0, torch.arange(6)), r"k must be.*\[1, 8\].*k=0"),
    ("recall_not_2d", lambda: metrics.recall_at_k(_SIMILARITY[0], 1, [0]), r"similarity must be.*2-D.*\(8,\)"),
    ("recall_target_range", lambda: metrics.recall_at_k(_SIMILARITY, 1, torch.tensor([0, 1, 2, 3, 4, 8])), r"\[0, 7\].*targets\[5\]=8"),
    ("recall_target_shape", lambda: metrics.recall_at_k(_SIMILARITY, 1, torch.arange(5)), r"shape \(n_queries,\) = \(6,\).*\(5,\)"),
    ("recall_target_float", lambda: metrics.recall_at_k(_SIMILARITY, 1, torch.zeros(6)), r"integer candidate indices.*float32"),
    ("recall_neither", lambda: metrics.recall_at_k(_SIMILARITY, 1), r"exactly one of targets.*got neither"),
    ("recall_both", lambda: metrics.recall_at_k(_SIMILARITY, 1, torch.arange(6), relevance=torch.ones(6, 8, dtype=torch.bool)), r"exactly one of targets.*got both"),
    ("recall_relevance_empty_row", lambda: metrics.recall_at_k(_SIMILARITY, 1, relevance=_WITHOUT_RELEVANT), r"query 2 has none \(1 such queries in total\)"),
    ("recall_relevance_shape", lambda: metrics.recall_at_k(_SIMILARITY, 1, relevance=torch.ones(6, 7, dtype=torch.bool)), r"shape of similarity, \(6, 8\).*\(6, 7\)"),
    ("recall_relevance_dtype", lambda: metrics.recall_at_k(_SIMILARITY, 1, relevance=torch.ones(6, 8)), r"relevance must be a boolean.*float32"),
]


@pytest.mark.parametrize("call, message", [case[1:] for case in INVALID_CALLS], ids=[case[0] for case in INVALID_CALLS])
def test_invalid_input_raises(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_recall_nan_similarity_raises():
    similarity = _SIMILARITY.clone()
    similarity[3, 2] = math.nan
    with pytest.raises(ValueError, match=r"similarity contains NaN in rows 2 to 3"):
        metrics.recall_at_k(similarity, 1, torch.arange(6), chunk_size=2)


def test_list_input_raises_type_error():
    with pytest.raises(TypeError, match=r"x must be a torch.Tensor or numpy.ndarray, but got list"):
        metrics.linear_cka([[1.0, 2.0]] * 5, _Y[:5])
