"""Representational alignment and cross-modal retrieval metrics.

Every metric takes paired samples as rows (row i of ``x`` and row i of ``y`` describe
the same input) and returns a Python float. Inputs may be torch tensors or numpy
arrays. The CKA variants work in feature space at O(n d^2) cost, and the
nearest-neighbour metrics search neighbours in strips of rows, so no function builds
an n x n matrix. Memory of the neighbour search is O(chunk_size * n + n * k).

Sources:

- Kornblith, Norouzi, Lee and Hinton (2019), "Similarity of Neural Network
  Representations Revisited", ICML: linear CKA.
- Song, Smola, Gretton, Bedo and Borgwardt (2012), "Feature Selection via Dependence
  Maximization", JMLR 13: the unbiased HSIC estimator behind debiased CKA.
- Huh, Cheung, Wang and Isola (2024), "The Platonic Representation Hypothesis", ICML:
  mutual k-nearest-neighbour alignment and CKNNA. The kNN metrics here match the
  authors' code (github.com/minyoungg/platonic-rep, ``metrics.py``).
- Liang, Zhang, Kwon, Yeung and Zou (2022), "Mind the Gap: Understanding the Modality
  Gap in Multi-modal Contrastive Representation Learning", NeurIPS: modality gap.
"""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Bool, Float, Int

__all__ = [
    "KnnAlignment",
    "cknna",
    "debiased_cka",
    "knn_alignment",
    "linear_cka",
    "modality_gap",
    "modality_gap_vector",
    "mutual_knn",
    "recall_at_k",
]

Array = torch.Tensor | np.ndarray

DEFAULT_CHUNK_SIZE = 1024


# ---------------------------------------------------------------------------
# Input checks


def _as_tensor(name: str, value: object) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        with warnings.catch_warnings():
            # No metric writes to its inputs, so sharing a read-only array's memory is safe.
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            value = torch.as_tensor(value)
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, but got {type(value).__name__}")
    if value.is_complex():
        raise ValueError(f"{name} must have a real dtype, but got {value.dtype}")
    return value.detach()


def _as_matrix(name: str, value: object) -> torch.Tensor:
    """Return ``value`` as a 2-D tensor of finite values, or raise ValueError naming ``name``."""
    matrix = _as_tensor(name, value)
    if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ValueError(
            f"{name} must be a non-empty 2-D array of shape (n_samples, n_features), "
            f"but got shape {tuple(matrix.shape)}"
        )
    non_finite = int((~torch.isfinite(matrix)).sum()) if matrix.is_floating_point() else 0
    if non_finite:
        raise ValueError(
            f"{name} contains {non_finite} NaN or infinite values. Remove or impute them first."
        )
    return matrix


def _as_pair(x: object, y: object) -> tuple[torch.Tensor, torch.Tensor]:
    x_matrix, y_matrix = _as_matrix("x", x), _as_matrix("y", y)
    if x_matrix.shape[0] != y_matrix.shape[0]:
        raise ValueError(
            "x and y must have the same number of rows (one row per sample), "
            f"but got x of shape {tuple(x_matrix.shape)} and y of shape {tuple(y_matrix.shape)}"
        )
    return x_matrix, y_matrix


def _check_integer(name: str, value: object, low: int, high: int, context: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}] {context}, but got {name}={value!r}")
    return int(value)


def _check_k(k: object, n: int) -> int:
    return _check_integer("k", k, 1, n - 1, f"for n={n} samples, because a sample is never its own neighbour")


def _check_chunk_size(chunk_size: object) -> int:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, but got chunk_size={chunk_size!r}")
    return int(chunk_size)


def _check_unbiased_sample_count(n: int, metric: str) -> None:
    if n < 4:
        raise ValueError(
            f"{metric} needs at least 4 samples because the unbiased HSIC estimator "
            f"divides by n(n - 3), but got n={n}"
        )


def _unit_rows(name: str, matrix: torch.Tensor, first_row: int = 0) -> torch.Tensor:
    """Return the rows of ``matrix`` scaled to unit L2 norm, in float32 or wider.

    ``first_row`` is the index of the first row in the caller's input, for the error message.
    """
    dtype = torch.promote_types(matrix.dtype, torch.float32)
    matrix = matrix.to(dtype)
    norms = torch.linalg.vector_norm(matrix, dim=1, keepdim=True)
    zero_rows = torch.nonzero(norms[:, 0] == 0).flatten()
    if zero_rows.numel():
        raise ValueError(
            f"{name} has a row of zero norm at index {first_row + int(zero_rows[0])}. "
            "The cosine similarity of a zero vector is undefined, so drop such rows."
        )
    return matrix / norms


# ---------------------------------------------------------------------------
# CKA


def _centred_float64(matrix: torch.Tensor) -> torch.Tensor:
    centred = matrix.to(torch.float64, copy=True)
    return centred.sub_(centred.mean(dim=0, keepdim=True))


def _linear_unbiased_hsic(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Return the unbiased HSIC of the linear kernels K = x xᵀ and L = y yᵀ without forming them.

    With K̃ = K - diag(a), a_i = ‖x_i‖², L̃ = L - diag(b), b_i = ‖y_i‖², column sums
    s_x = xᵀ1 and s_y = yᵀ1, the terms of the estimator are
    tr(K̃L̃) = ‖xᵀy‖²_F - Σ a_i b_i, 1ᵀK̃1 = ‖s_x‖² - Σ a_i, and
    1ᵀK̃L̃1 = (x s_x - a)ᵀ(y s_y - b).
    """
    n = x.shape[0]
    a = torch.linalg.vector_norm(x, dim=1).square()
    b = torch.linalg.vector_norm(y, dim=1).square()
    s_x = x.sum(dim=0)
    s_y = y.sum(dim=0)

    trace = torch.linalg.matrix_norm(x.T @ y) ** 2 - a @ b
    kernel_sums = (s_x @ s_x - a.sum()) * (s_y @ s_y - b.sum()) / ((n - 1) * (n - 2))
    row_sums = (x @ s_x - a) @ (y @ s_y - b)
    return (trace + kernel_sums - 2.0 * row_sums / (n - 2)) / (n * (n - 3))


def linear_cka(
    x: Float[Array, "n d_x"],
    y: Float[Array, "n d_y"],
) -> float:
    """Compute linear centred kernel alignment (CKA) between two representations.

    With column-centred Xc and Yc,
    CKA = ‖Ycᵀ Xc‖²_F / (‖Xcᵀ Xc‖_F ‖Ycᵀ Yc‖_F),
    which equals the biased HSIC form tr(KHLH) / sqrt(tr(KHKH) tr(LHLH)) for the
    linear kernels K = X Xᵀ and L = Y Yᵀ and centring matrix H. The feature-space
    form costs O(n d²) in float64 and never builds an n x n matrix. CKA is invariant
    to orthogonal transforms and isotropic scaling of either side, but not to
    general invertible linear maps.

    Source: Kornblith, Norouzi, Lee and Hinton (2019), "Similarity of Neural Network
    Representations Revisited".

    Raises:
        ValueError: on invalid input, or when x or y has zero variance.
    """
    x, y = _as_pair(x, y)
    xc, yc = _centred_float64(x), _centred_float64(y)
    norm_xx = torch.linalg.matrix_norm(xc.T @ xc)
    norm_yy = torch.linalg.matrix_norm(yc.T @ yc)
    for name, norm in (("x", norm_xx), ("y", norm_yy)):
        if norm == 0:
            raise ValueError(f"{name} has zero variance in every feature, so CKA is undefined")
    cross = torch.linalg.matrix_norm(yc.T @ xc) ** 2
    return float(cross / (norm_xx * norm_yy))


def debiased_cka(
    x: Float[Array, "n d_x"],
    y: Float[Array, "n d_y"],
) -> float:
    """Compute debiased linear CKA from the unbiased HSIC estimator.

    CKA = HSIC₁(K, L) / sqrt(HSIC₁(K, K) HSIC₁(L, L)) for linear kernels K = X Xᵀ and
    L = Y Yᵀ, where, with K̃ and L̃ the kernels with zeroed diagonal,
    HSIC₁(K, L) = [tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1) / ((n-1)(n-2)) - 2/(n-2) 1ᵀK̃L̃1] / (n(n-3)).
    Each term is evaluated from feature-space products, row norms and column sums
    (see ``_linear_unbiased_hsic``), so the cost is O(n d²) in float64. The estimator
    does not change when columns are shifted, so the inputs are centred first for
    numerical accuracy. Unlike linear CKA, the value can be slightly negative.

    Sources: Song, Smola, Gretton, Bedo and Borgwardt (2012), "Feature Selection via
    Dependence Maximization" (the estimator HSIC₁), and Nguyen, Raghu and Kornblith
    (2021), "Do Wide and Deep Networks Learn the Same Things?" (its use in CKA).

    Raises:
        ValueError: on invalid input, when n < 4, or when the estimate for x or y
            with itself is not positive, for example for constant features.
    """
    x, y = _as_pair(x, y)
    _check_unbiased_sample_count(x.shape[0], "debiased_cka")
    xc, yc = _centred_float64(x), _centred_float64(y)
    hsic_xx = _linear_unbiased_hsic(xc, xc)
    hsic_yy = _linear_unbiased_hsic(yc, yc)
    for name, value in (("x", hsic_xx), ("y", hsic_yy)):
        if value <= 0:
            raise ValueError(
                f"the unbiased HSIC of {name} with itself is {float(value):.3g}, not positive, "
                f"so debiased CKA is undefined. This happens when {name} is constant or nearly so."
            )
    return float(_linear_unbiased_hsic(xc, yc) / torch.sqrt(hsic_xx * hsic_yy))


# ---------------------------------------------------------------------------
# Nearest-neighbour alignment


def _nearest_neighbours(
    unit: torch.Tensor, k: int, chunk_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the cosine similarities and indices of each row's k nearest other rows.

    Both outputs have shape (n, k), sorted by decreasing similarity. The similarity
    matrix is symmetric, so each strip of ``chunk_size`` rows is multiplied only with
    the rows from its own first row on. Its rows get their candidates along dim 1,
    and the later rows get the strip's rows as candidates along dim 0. This halves
    the multiplications, and at most one strip of chunk_size x n exists at a time.
    """
    n = unit.shape[0]
    best_values = unit.new_full((n, k), -torch.inf)
    best_indices = torch.zeros((n, k), dtype=torch.long, device=unit.device)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        strip = unit[start:stop] @ unit[start:].T
        strip[:, : stop - start].fill_diagonal_(-torch.inf)  # a sample is not its own neighbour

        values, columns = strip.topk(min(k, n - start), dim=1)
        _merge_top_k(best_values, best_indices, start, values, columns + start)
        if stop < n:
            values, rows = strip[:, stop - start :].topk(min(k, stop - start), dim=0)
            _merge_top_k(best_values, best_indices, stop, values.T, rows.T + start)
    return best_values, best_indices


def _merge_top_k(
    best_values: torch.Tensor,
    best_indices: torch.Tensor,
    first_row: int,
    values: torch.Tensor,
    indices: torch.Tensor,
) -> None:
    """Merge candidate neighbours into the running top-k lists of rows from ``first_row`` on, in place."""
    rows = slice(first_row, first_row + values.shape[0])
    merged_values = torch.cat([best_values[rows], values], dim=1)
    merged_indices = torch.cat([best_indices[rows], indices], dim=1)
    top_values, position = merged_values.topk(best_values.shape[1], dim=1)
    best_values[rows] = top_values
    best_indices[rows] = merged_indices.gather(1, position)


def _find_shared(
    indices_x: torch.Tensor, indices_y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Match each row's neighbour lists.

    Returns ``shared``, a boolean (n, k) mask over ``indices_y`` that marks neighbours
    also in the same row of ``indices_x``, and, for each entry of ``indices_y``, the
    column of the matching entry of ``indices_x`` (valid where ``shared`` is true).
    """
    sorted_x, order_x = indices_x.sort(dim=1)
    position = torch.searchsorted(sorted_x, indices_y).clamp_(max=indices_x.shape[1] - 1)
    shared = sorted_x.gather(1, position) == indices_y
    return shared, order_x.gather(1, position)


def _masked_unbiased_hsic(
    rows: torch.Tensor, cols: torch.Tensor, p: torch.Tensor, q: torch.Tensor, n: int
) -> torch.Tensor:
    """Return the unbiased HSIC of n x n kernels P and Q that are zero outside (rows, cols).

    P and Q are given by their values ``p`` and ``q`` at the entries (rows[m], cols[m]),
    which must be distinct and off the diagonal. P and Q need not be symmetric, and
    tr(PQ) = Σ P_ij Q_ji pairs each entry with its transposed entry, where one exists.
    """
    p, q = p.to(torch.float64), q.to(torch.float64)
    if p.numel() == 0:
        return p.new_zeros(())

    keys = rows * n + cols
    sorted_keys, order = keys.sort()
    transposed_keys = cols * n + rows
    position = torch.searchsorted(sorted_keys, transposed_keys).clamp_(max=keys.numel() - 1)
    has_transposed = sorted_keys[position] == transposed_keys
    trace = (p * q[order[position]])[has_transposed].sum()

    kernel_sums = p.sum() * q.sum() / ((n - 1) * (n - 2))
    column_sums_p = p.new_zeros(n).index_add_(0, cols, p)
    row_sums_q = q.new_zeros(n).index_add_(0, rows, q)
    return (trace + kernel_sums - 2.0 * (column_sums_p @ row_sums_q) / (n - 2)) / (n * (n - 3))


def _mutual_knn_score(indices_x: torch.Tensor, indices_y: torch.Tensor) -> float:
    shared, _ = _find_shared(indices_x, indices_y)
    return float(shared.sum(dtype=torch.float64) / shared.numel())


def _cknna_score(
    neighbours_x: tuple[torch.Tensor, torch.Tensor],
    neighbours_y: tuple[torch.Tensor, torch.Tensor],
) -> float:
    values_x, indices_x = neighbours_x
    values_y, indices_y = neighbours_y
    n, k = indices_x.shape
    all_rows = torch.arange(n, device=indices_x.device).repeat_interleave(k)

    hsic_xx = _masked_unbiased_hsic(all_rows, indices_x.flatten(), values_x.flatten(), values_x.flatten(), n)
    hsic_yy = _masked_unbiased_hsic(all_rows, indices_y.flatten(), values_y.flatten(), values_y.flatten(), n)
    for name, value in (("x", hsic_xx), ("y", hsic_yy)):
        if value <= 0:
            raise ValueError(
                f"the unbiased HSIC of {name} with itself over its {k}-nearest-neighbour pairs "
                f"is {float(value):.3g}, not positive, so CKNNA is undefined. Try a larger k."
            )

    shared, column_in_x = _find_shared(indices_x, indices_y)
    rows = all_rows.view(n, k)[shared]
    cols = indices_y[shared]
    kernel_x = values_x.gather(1, column_in_x)[shared]
    kernel_y = values_y[shared]
    hsic_xy = _masked_unbiased_hsic(rows, cols, kernel_x, kernel_y, n)
    return float(hsic_xy / torch.sqrt(hsic_xx * hsic_yy))


def _neighbours_of_pair(
    x: torch.Tensor, y: torch.Tensor, k: object, chunk_size: object
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    k = _check_k(k, x.shape[0])
    chunk_size = _check_chunk_size(chunk_size)
    neighbours_x = _nearest_neighbours(_unit_rows("x", x), k, chunk_size)
    neighbours_y = _nearest_neighbours(_unit_rows("y", y), k, chunk_size)
    return neighbours_x, neighbours_y


def mutual_knn(
    x: Float[Array, "n d_x"],
    y: Float[Array, "n d_y"],
    k: int,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> float:
    """Compute the mutual k-nearest-neighbour alignment of two representations.

    score = (1/n) Σ_i |N_k^X(i) ∩ N_k^Y(i)| / k, where N_k^X(i) is the set of the k
    rows of x with the highest cosine similarity to row i, excluding i itself. The
    score is 1 for identical neighbourhoods and k/(n-1) in expectation for
    independent representations. Similarities are computed in float32, or float64
    for float64 input, ``chunk_size`` rows at a time. Ties between equal
    similarities are broken arbitrarily.

    Source: Huh, Cheung, Wang and Isola (2024), "The Platonic Representation
    Hypothesis". The platonic-rep code L2-normalises rows before this metric as well.

    Raises:
        ValueError: on invalid input, k outside [1, n-1], or a zero row.
    """
    x, y = _as_pair(x, y)
    neighbours_x, neighbours_y = _neighbours_of_pair(x, y, k, chunk_size)
    return _mutual_knn_score(neighbours_x[1], neighbours_y[1])


def cknna(
    x: Float[Array, "n d_x"],
    y: Float[Array, "n d_y"],
    k: int,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> float:
    """Compute CKNNA, centred kernel nearest-neighbour alignment, of two representations.

    Rows are L2-normalised, and K and L are their cosine-similarity kernels. A mask M
    keeps the pairs (i, j), i ≠ j, where j is among the k nearest neighbours of i in
    both spaces. Then CKNNA = A(K, L) / sqrt(A(K, K) A(L, L)), where A is the unbiased
    HSIC estimator (as in ``debiased_cka``) of the masked kernels M∘K and M∘L. For
    A(K, K) the mask keeps K's own k nearest neighbours, and likewise for L. The
    masked kernels are not symmetric, and the trace term tr(PQ) = Σ P_ij Q_ji of the
    estimator only counts pairs that are neighbours in both directions.

    This follows ``AlignmentMetrics.cknna`` of the authors' code (platonic-rep) with
    its default ``unbiased=True``, which centres through the HSIC estimator rather
    than by subtracting row means as the paper's formula for Align_knn does. Only the
    n·k neighbour similarities are kept, so memory is O(chunk_size · n + n · k).

    NOTE: the platonic-rep code divides by sqrt(A(K, K) A(L, L)) + 1e-6, which
    lowers its values by a relative amount of about 1e-6 / sqrt(A(K, K) A(L, L)).
    A(K, K) shrinks as n grows. For random data with n = 10 000, d = 512 and k = 10
    it is about 2e-5, and that code's value is 4.6 % lower than this function's
    (benchmarks/bench_metrics.py). This function divides without the constant.

    Source: Huh, Cheung, Wang and Isola (2024), "The Platonic Representation
    Hypothesis".

    Raises:
        ValueError: on invalid input, n < 4, k outside [1, n-1], a zero row, or a
            non-positive self-alignment A(K, K) or A(L, L).
    """
    x, y = _as_pair(x, y)
    _check_unbiased_sample_count(x.shape[0], "cknna")
    neighbours_x, neighbours_y = _neighbours_of_pair(x, y, k, chunk_size)
    return _cknna_score(neighbours_x, neighbours_y)


@dataclass(frozen=True)
class KnnAlignment:
    """Mutual kNN alignment and CKNNA of one pair of representations."""

    mutual_knn: float
    cknna: float


def knn_alignment(
    x: Float[Array, "n d_x"],
    y: Float[Array, "n d_y"],
    k: int,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> KnnAlignment:
    """Compute ``mutual_knn`` and ``cknna`` from one neighbour search.

    The neighbour search dominates the cost of both metrics, so this takes about half
    the time of calling them one after the other, and returns the same values.

    Source: Huh, Cheung, Wang and Isola (2024), "The Platonic Representation
    Hypothesis".

    Raises:
        ValueError: as ``cknna`` does.
    """
    x, y = _as_pair(x, y)
    _check_unbiased_sample_count(x.shape[0], "knn_alignment")
    neighbours_x, neighbours_y = _neighbours_of_pair(x, y, k, chunk_size)
    return KnnAlignment(
        mutual_knn=_mutual_knn_score(neighbours_x[1], neighbours_y[1]),
        cknna=_cknna_score(neighbours_x, neighbours_y),
    )


# ---------------------------------------------------------------------------
# Modality gap


def _mean_unit_row(name: str, matrix: torch.Tensor) -> torch.Tensor:
    """Return the float64 mean of the L2-normalised rows, normalising one chunk at a time."""
    total = torch.zeros(matrix.shape[1], dtype=torch.float64, device=matrix.device)
    for start in range(0, matrix.shape[0], DEFAULT_CHUNK_SIZE):
        block = matrix[start : start + DEFAULT_CHUNK_SIZE].to(torch.float64)
        total += _unit_rows(name, block, first_row=start).sum(dim=0)
    return total / matrix.shape[0]


def modality_gap_vector(
    image_embeds: Float[Array, "n_images d"],
    text_embeds: Float[Array, "n_texts d"],
) -> Float[torch.Tensor, " d"]:
    """Return the modality gap vector, mean(normalise(image)) - mean(normalise(text)).

    Each embedding is L2-normalised before the means are taken. The two sets need not
    have the same size or be paired. The result is a float64 tensor.

    Source: Liang, Zhang, Kwon, Yeung and Zou (2022), "Mind the Gap: Understanding the
    Modality Gap in Multi-modal Contrastive Representation Learning".

    Raises:
        ValueError: on invalid input, a zero row, or a different embedding width.
    """
    image = _as_matrix("image_embeds", image_embeds)
    text = _as_matrix("text_embeds", text_embeds)
    if image.shape[1] != text.shape[1]:
        raise ValueError(
            "image_embeds and text_embeds must have the same number of columns (embedding width), "
            f"but got shapes {tuple(image.shape)} and {tuple(text.shape)}"
        )
    return _mean_unit_row("image_embeds", image) - _mean_unit_row("text_embeds", text)


def modality_gap(
    image_embeds: Float[Array, "n_images d"],
    text_embeds: Float[Array, "n_texts d"],
) -> float:
    """Compute the modality gap ‖mean(normalise(image)) - mean(normalise(text))‖₂.

    The gap is the Euclidean distance between the centroids of the L2-normalised
    image and text embeddings. It lies in [0, 2].

    Source: Liang, Zhang, Kwon, Yeung and Zou (2022), "Mind the Gap: Understanding the
    Modality Gap in Multi-modal Contrastive Representation Learning".

    Raises:
        ValueError: as ``modality_gap_vector`` does.
    """
    return float(torch.linalg.vector_norm(modality_gap_vector(image_embeds, text_embeds)))


# ---------------------------------------------------------------------------
# Retrieval


def _as_targets(targets: object, n_queries: int, n_candidates: int) -> torch.Tensor:
    if isinstance(targets, (list, tuple)):
        targets = np.asarray(targets)
    target_tensor = _as_tensor("targets", targets)
    if target_tensor.is_floating_point() or target_tensor.dtype == torch.bool:
        raise ValueError(f"targets must contain integer candidate indices, but got dtype {target_tensor.dtype}")
    if target_tensor.shape != (n_queries,):
        raise ValueError(
            f"targets must have shape (n_queries,) = ({n_queries},), one candidate index per query, "
            f"but got shape {tuple(target_tensor.shape)}"
        )
    out_of_range = (target_tensor < 0) | (target_tensor >= n_candidates)
    if out_of_range.any():
        first = int(torch.nonzero(out_of_range)[0])
        raise ValueError(
            f"targets must be candidate indices in [0, {n_candidates - 1}], "
            f"but got targets[{first}]={int(target_tensor[first])}"
        )
    return target_tensor.to(torch.long)


def _as_relevance(relevance: object, shape: tuple[int, int]) -> torch.Tensor:
    relevance_tensor = _as_tensor("relevance", relevance)
    if relevance_tensor.dtype != torch.bool:
        raise ValueError(f"relevance must be a boolean matrix, but got dtype {relevance_tensor.dtype}")
    if tuple(relevance_tensor.shape) != shape:
        raise ValueError(
            f"relevance must have the shape of similarity, {shape}, but got shape {tuple(relevance_tensor.shape)}"
        )
    without_relevant = torch.nonzero(~relevance_tensor.any(dim=1)).flatten()
    if without_relevant.numel():
        raise ValueError(
            "every query needs at least one relevant candidate, but query "
            f"{int(without_relevant[0])} has none ({without_relevant.numel()} such queries in total)"
        )
    return relevance_tensor


def _hits_in_chunk(
    scores: torch.Tensor, k: int, targets: torch.Tensor | None, relevance: torch.Tensor | None
) -> torch.Tensor:
    """Return, per query row, whether a relevant candidate ranks within the top k."""
    if targets is not None:
        best_relevant = scores.gather(1, targets[:, None])
        # The target itself is among the candidates scoring >= its own score.
        outranking = (scores >= best_relevant).sum(dim=1) - 1
    else:
        best_relevant = scores.masked_fill(~relevance, -torch.inf).amax(dim=1, keepdim=True)
        outranking = ((scores >= best_relevant) & ~relevance).sum(dim=1)
    return outranking < k


def recall_at_k(
    similarity: Float[Array, "n_queries n_candidates"],
    k: int,
    targets: Int[Array, " n_queries"] | list[int] | None = None,
    *,
    relevance: Bool[Array, "n_queries n_candidates"] | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> float:
    """Compute Recall@k, the share of queries with a relevant candidate in their top k.

    Recall@k = (1/n_q) Σ_q 1[rank of the best-ranked relevant candidate of q ≤ k],
    the hit-rate form used for image-text retrieval. Give either ``targets``, the one
    correct candidate index of each query, or ``relevance``, a boolean matrix that
    marks every correct candidate (for example the five captions of each image).
    A candidate that ties with the best relevant one counts as ranked above it, so
    constant scores give no hits. For the other retrieval direction, pass
    ``similarity.T`` and ``relevance.T``. Queries are processed ``chunk_size`` rows
    at a time, so the extra memory is O(chunk_size · n_candidates).

    Source: Hodosh, Young and Hockenmaier (2013), "Framing Image Description as a
    Ranking Task: Data, Models and Evaluation Metrics", JAIR 47, which introduced
    Recall@k for image-caption ranking.

    Raises:
        ValueError: on a non-2-D or NaN similarity, k outside [1, n_candidates],
            invalid targets or relevance, or when both or neither are given.
    """
    scores = _as_tensor("similarity", similarity)
    if scores.ndim != 2 or scores.shape[0] == 0 or scores.shape[1] == 0:
        raise ValueError(
            "similarity must be a non-empty 2-D array of shape (n_queries, n_candidates), "
            f"but got shape {tuple(scores.shape)}"
        )
    n_queries, n_candidates = scores.shape
    k = _check_integer("k", k, 1, n_candidates, f"for {n_candidates} candidates")
    chunk_size = _check_chunk_size(chunk_size)
    if (targets is None) == (relevance is None):
        received = "neither" if targets is None else "both"
        raise ValueError(
            "recall_at_k needs exactly one of targets (one candidate index per query) "
            f"or relevance (a boolean matrix), but got {received}"
        )
    target_tensor = relevance_tensor = None
    if targets is not None:
        target_tensor = _as_targets(targets, n_queries, n_candidates).to(scores.device)
    else:
        relevance_tensor = _as_relevance(relevance, (n_queries, n_candidates)).to(scores.device)

    hits = 0
    for start in range(0, n_queries, chunk_size):
        rows = slice(start, start + chunk_size)
        chunk = scores[rows]
        if torch.isnan(chunk).any():
            raise ValueError(
                f"similarity contains NaN in rows {start} to {start + chunk.shape[0] - 1}. "
                "Replace NaN scores, for example with -inf to rank a candidate last."
            )
        chunk_targets = target_tensor[rows] if target_tensor is not None else None
        chunk_relevance = relevance_tensor[rows] if relevance_tensor is not None else None
        hits += int(_hits_in_chunk(chunk, k, chunk_targets, chunk_relevance).sum())
    return hits / n_queries
