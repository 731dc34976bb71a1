"""How much more than chance an attention head looks at the object.

For one image and one head, with p_k the CLS query's attention to patch k and
f_k the fraction of patch k covered by the ground-truth object mask
(:func:`helpers.attention.mask_patch_fractions`), over the N patches:

    localisation = (sum_k p_k f_k / sum_k p_k) / (sum_k f_k / N)

The numerator is the share of the CLS token's attention to patches that lands
on the object, with attention to CLS itself left out and the rest
renormalised. The denominator is the object's share of the image. Uniform
attention over patches scores exactly 1 (chance), and attention only on
patches that the object covers fully scores 1 / area, the maximum.

The best head is chosen on one half of the images and scored on the other,
so its reported score is not inflated by the choice among many heads. Its
95 % interval is a percentile bootstrap over the held-out images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float


def localisation_score(
    cls_to_patches: Float[torch.Tensor, "batch *heads patches"], fractions: Float[torch.Tensor, "batch patches"]
) -> Float[torch.Tensor, "batch *heads"]:
    """Return the localisation score of every image and head (chance = 1).

    Images with an empty mask, and heads that give the patches no attention
    at all, get NaN.
    """
    fractions = torch.as_tensor(fractions).to(cls_to_patches)
    if fractions.shape[0] != cls_to_patches.shape[0] or fractions.shape[-1] != cls_to_patches.shape[-1]:
        raise ValueError(
            f"fractions of shape {tuple(fractions.shape)} do not match attention of shape "
            f"{tuple(cls_to_patches.shape)} (batch and patch dimensions must agree)"
        )
    area = fractions.mean(dim=-1)
    fractions = fractions.reshape(fractions.shape[0], *([1] * (cls_to_patches.ndim - 2)), -1)
    area = area.reshape(-1, *([1] * (cls_to_patches.ndim - 2)))
    patch_mass = cls_to_patches.sum(dim=-1)
    on_object = (cls_to_patches * fractions).sum(dim=-1) / patch_mass
    score = on_object / area
    return torch.where((area > 0) & (patch_mass > 0), score, torch.full_like(score, float("nan")))


@dataclass(frozen=True)
class Interval:
    """A mean with its percentile-bootstrap confidence interval."""

    mean: float
    low: float
    high: float
    level: float
    n: int


def bootstrap_mean(
    values: np.ndarray, n_resamples: int = 2000, level: float = 0.95, seed: int = 0
) -> Interval:
    """Return the mean of ``values`` with a percentile-bootstrap interval (NaNs are dropped).

    Each of ``n_resamples`` resamples draws len(values) values with
    replacement. The interval runs from the (1 - level) / 2 to the
    (1 + level) / 2 quantile of the resampled means.
    """
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        raise ValueError("no finite values to bootstrap")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(values), size=(n_resamples, len(values)))
    means = values[draws].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return Interval(float(values.mean()), float(low), float(high), level, len(values))


@dataclass(frozen=True)
class BestHead:
    """The head with the highest mean localisation on the selection half, scored on the other half.

    Attributes:
        layer, head: where the head sits.
        selection_mean: its mean score on the images it was chosen on.
        heldout: its mean score and bootstrap interval on the other images.
    """

    layer: int
    head: int
    selection_mean: float
    heldout: Interval


def best_localising_head(
    scores: Float[np.ndarray, "n layer head"], seed: int = 0, n_resamples: int = 2000, level: float = 0.95
) -> BestHead:
    """Choose the best-localising head on a random half of the images and score it on the rest."""
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 3 or len(scores) < 4:
        raise ValueError(f"scores must have shape (n_images >= 4, layer, head), got {scores.shape}")
    order = np.random.default_rng(seed).permutation(len(scores))
    selection, heldout = order[: len(order) // 2], order[len(order) // 2 :]
    selection_means = np.nanmean(scores[selection], axis=0)
    layer, head = np.unravel_index(np.nanargmax(selection_means), selection_means.shape)
    interval = bootstrap_mean(scores[heldout, layer, head], n_resamples=n_resamples, level=level, seed=seed)
    return BestHead(int(layer), int(head), float(selection_means[layer, head]), interval)


def head_intervals(
    scores: Float[np.ndarray, "n layer head"], n_resamples: int = 2000, level: float = 0.95, seed: int = 0
) -> list[list[Interval]]:
    """Return the mean and bootstrap interval over all images of every head, indexed [layer][head]."""
    scores = np.asarray(scores, dtype=float)
    return [
        [bootstrap_mean(scores[:, layer, head], n_resamples, level, seed) for head in range(scores.shape[2])]
        for layer in range(scores.shape[1])
    ]
