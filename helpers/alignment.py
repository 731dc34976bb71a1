"""Image-text alignment of a CLIP model: per layer, under a gap shift, and with intervals.

The metrics themselves live in :mod:`helpers.metrics`; this module extracts
the representations they compare and runs the experiments of the alignment
notebook.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from tqdm import tqdm

from . import encoding, metrics
from .hooked_text import HookedTextTower
from .hooked_vision import hooked_vision_tower
from .loading import LoadedCLIP
from .params import ParameterError, check_int

METRICS: tuple[str, ...] = ("linear CKA", "debiased CKA", "mutual kNN", "CKNNA")


@dataclass
class LayerRepresentations:
    """Residual streams of paired images and captions, one matrix per layer.

    Attributes:
        vision: per layer, the CLS residual stream after that block for every
            image, shape (n, d_vision).
        text: per layer, the residual stream after that block at each
            caption's end-of-text token (where CLIP pools), shape (n, d_text).

    The embeddings (before the first block) are left out: there the CLS token
    is the same for every image, and the end-of-text token differs only with
    the caption's length.
    """

    vision: list[torch.Tensor]
    text: list[torch.Tensor]


@torch.no_grad()
def layer_representations(
    loaded: LoadedCLIP, images: Sequence[np.ndarray], captions: Sequence[str], batch_size: int = 256
) -> LayerRepresentations:
    """Collect the CLS and end-of-text residual streams of every layer of both towers."""
    vision_tower = hooked_vision_tower(loaded)
    text_tower = HookedTextTower(loaded)
    n_layers_vision, n_layers_text = vision_tower.cfg.n_layers, text_tower.n_layers
    vision_names = [f"blocks.{layer}.hook_resid_post" for layer in range(n_layers_vision)]
    text_names = [f"blocks.{layer}.hook_resid_post" for layer in range(n_layers_text)]
    vision: list[list[torch.Tensor]] = [[] for _ in vision_names]
    text: list[list[torch.Tensor]] = [[] for _ in text_names]

    for start in range(0, len(captions), batch_size):
        pixels = encoding.pixel_values(loaded, images[start : start + batch_size])
        _, cache = vision_tower.run_with_cache(pixels, names_filter=lambda name: name in vision_names)
        for layer, name in enumerate(vision_names):
            vision[layer].append(cache[name][:, 0].cpu())

        tokens = encoding.tokenize(loaded, captions[start : start + batch_size])
        _, cache = text_tower.run_with_cache(**tokens, names_filter=text_names)
        rows = torch.arange(len(tokens["input_ids"]))
        end_of_text = text_tower.end_of_text_index(tokens["input_ids"])
        for layer, name in enumerate(text_names):
            text[layer].append(cache[name][rows, end_of_text].cpu())

    return LayerRepresentations([torch.cat(v) for v in vision], [torch.cat(t) for t in text])


def all_metrics(x: Float[torch.Tensor, "n d_x"], y: Float[torch.Tensor, "n d_y"], k: int) -> dict[str, float]:
    """Return linear CKA, debiased CKA, mutual kNN and CKNNA of one pair of representations."""
    knn = metrics.knn_alignment(x, y, k)
    return {
        "linear CKA": metrics.linear_cka(x, y),
        "debiased CKA": metrics.debiased_cka(x, y),
        "mutual kNN": knn.mutual_knn,
        "CKNNA": knn.cknna,
    }


def layer_alignment(
    layers: LayerRepresentations, k: int, shuffle_seed: int | None = None, progress: bool = True
) -> dict[str, np.ndarray]:
    """Compute every metric between every vision layer and every text layer.

    Args:
        layers: the paired representations.
        k: neighbours of the kNN metrics.
        shuffle_seed: when given, the text rows are permuted with this seed
            first, which breaks the pairing: the shuffled-pairs baseline.
        progress: show a progress bar over layer pairs.

    Returns:
        Metric name -> array of shape (vision layers, text layers).
    """
    text = layers.text
    if shuffle_seed is not None:
        order = torch.from_numpy(np.random.default_rng(shuffle_seed).permutation(len(text[0])))
        text = [t[order] for t in text]
    result = {name: np.zeros((len(layers.vision), len(text))) for name in METRICS}
    pairs = [(i, j) for i in range(len(layers.vision)) for j in range(len(text))]
    for i, j in tqdm(pairs, desc="layer pairs", disable=not progress, mininterval=5):
        for name, value in all_metrics(layers.vision[i], text[j], k).items():
            result[name][i, j] = value
    return result


def largest_k(n: int, subsample_fraction: float = 0.8) -> int:
    """Return the largest neighbour count ``k`` that every metric and :func:`bootstrap_intervals` accept for ``n`` pairs.

    The kNN intervals draw subsets of ``round(subsample_fraction * n)`` pairs,
    and a subset must hold more than ``k + 1`` of them.
    """
    return int(round(subsample_fraction * n)) - 2


def check_neighbours(k: int, n: int) -> int:
    """Return ``k`` if the metrics and their intervals accept it for ``n`` pairs, else raise ``ParameterError``."""
    check_int("k", k, minimum=1)
    largest = largest_k(n)
    if k > largest:
        raise ParameterError(
            f"parameter k={k} must be at most {largest} for {n} image-caption pairs: the interval subsets hold "
            f"80 % of the pairs and need more than k + 1; lower k or use more images"
        )
    return k


def bootstrap_intervals(
    x: Float[torch.Tensor, "n d_x"],
    y: Float[torch.Tensor, "n d_y"],
    k: int,
    n_resamples: int,
    seed: int = 0,
    level: float = 0.95,
    subsample_fraction: float = 0.8,
) -> dict[str, tuple[float, float]]:
    """Return ``level`` intervals of every metric over resampled pairs.

    CKA variants use the percentile bootstrap: pairs drawn with replacement.
    The kNN metrics cannot, because a pair drawn twice becomes its own
    nearest neighbour in both spaces and inflates them. They use subsampling
    instead: ``subsample_fraction`` of the pairs without replacement, and the
    interval is the full-data value plus the spread of the subsample values
    around their median.
    NOTE: subsample spread at 80 % of n is somewhat wider than the spread at
    n, so the kNN intervals are conservative approximations.
    """
    rng = np.random.default_rng(seed)
    n = len(x)
    size = int(round(subsample_fraction * n))
    if size <= k + 1:
        raise ValueError(f"subsets of {size} pairs are too small for k={k}; use more pairs or a smaller k")
    full = all_metrics(x, y, k)
    samples: dict[str, list[float]] = {name: [] for name in METRICS}
    for _ in range(n_resamples):
        with_replacement = torch.from_numpy(rng.integers(0, n, size=n))
        samples["linear CKA"].append(metrics.linear_cka(x[with_replacement], y[with_replacement]))
        samples["debiased CKA"].append(metrics.debiased_cka(x[with_replacement], y[with_replacement]))
        subset = torch.from_numpy(rng.choice(n, size=size, replace=False))
        knn = metrics.knn_alignment(x[subset], y[subset], k)
        samples["mutual kNN"].append(knn.mutual_knn)
        samples["CKNNA"].append(knn.cknna)

    tail = (1 - level) / 2 * 100
    intervals = {}
    for name, values in samples.items():
        low, high = np.percentile(values, [tail, 100 - tail])
        if name in ("mutual kNN", "CKNNA"):
            centre = np.median(values)
            low, high = full[name] + (low - centre), full[name] + (high - centre)
        intervals[name] = (float(low), float(high))
    return intervals


def caption_relevance(captions: Sequence[str]) -> Bool[torch.Tensor, "n n"]:
    """Return the matrix whose entry (i, j) is True when caption j describes image i (equal captions)."""
    codes = {caption: i for i, caption in enumerate(dict.fromkeys(captions))}
    index = torch.tensor([codes[c] for c in captions])
    return index[:, None] == index[None, :]


def retrieval_recalls(
    image_embeds: Float[torch.Tensor, "n d"],
    text_embeds: Float[torch.Tensor, "n d"],
    relevance: Bool[torch.Tensor, "n n"],
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """Return Recall@k in both directions for paired, L2-normalised embeddings."""
    similarity = image_embeds @ text_embeds.T
    result = {}
    for k in ks:
        result[f"image->text R@{k}"] = metrics.recall_at_k(similarity, k, relevance=relevance)
        result[f"text->image R@{k}"] = metrics.recall_at_k(similarity.T, k, relevance=relevance.T)
    return result


def gap_shift_curve(
    image_embeds: Float[torch.Tensor, "n d"],
    text_embeds: Float[torch.Tensor, "n d"],
    relevance: Bool[torch.Tensor, "n n"],
    lambdas: Sequence[float],
) -> list[dict[str, float]]:
    """Shift both modalities along the gap vector and measure the gap and Recall@1.

    Following Liang et al. (2022), with gap vector g = mean(image) - mean(text),
    images move to normalise(x - (lambda/2) g) and captions to
    normalise(t + (lambda/2) g): lambda = 0 leaves the embeddings alone and
    lambda = 1 makes the two centroids meet before renormalisation.
    """
    image_embeds = F.normalize(image_embeds.double(), dim=-1)
    text_embeds = F.normalize(text_embeds.double(), dim=-1)
    gap = metrics.modality_gap_vector(image_embeds, text_embeds)
    rows = []
    for lam in lambdas:
        shifted_images = F.normalize(image_embeds - lam / 2 * gap, dim=-1)
        shifted_texts = F.normalize(text_embeds + lam / 2 * gap, dim=-1)
        recalls = retrieval_recalls(shifted_images, shifted_texts, relevance, ks=(1,))
        rows.append({"lambda": float(lam), "gap": metrics.modality_gap(shifted_images, shifted_texts), **recalls})
    return rows


def attribute_accuracy(
    similarity: Float[torch.Tensor, "n n"], labels: dict[str, np.ndarray]
) -> dict[str, float]:
    """Return, per attribute, how often the best caption's item has the image's label.

    Row i of ``similarity`` scores image i against the captions of all n
    items, and ``labels[name][j]`` is item j's label (-1 when unknown).
    Images whose own label is unknown are left out.
    """
    best = similarity.argmax(dim=1).cpu().numpy()
    result = {}
    for name, values in labels.items():
        values = np.asarray(values)
        known = values >= 0
        if known.any():
            result[name] = float((values[best][known] == values[known]).mean())
    return result


def subset_alignment(
    x: Float[torch.Tensor, "n d_x"],
    y: Float[torch.Tensor, "n d_y"],
    labels: dict[str, np.ndarray],
    label_names: dict[str, Sequence[str]],
    k: int,
) -> list[dict[str, object]]:
    """Compute every metric on each subset of pairs that shares one attribute value.

    Subsets with fewer than 2k + 2 pairs are skipped, because the kNN metrics
    need more rows than neighbours.
    """
    rows = []
    for name, values in labels.items():
        values = np.asarray(values)
        for label, value_name in enumerate(label_names[name]):
            members = torch.from_numpy(np.flatnonzero(values == label))
            if len(members) < 2 * k + 2:
                continue
            scores = all_metrics(x[members], y[members], k)
            rows.append({"attribute": name, "value": value_name, "pairs": len(members), **scores})
    return rows
