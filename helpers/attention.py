"""Statistics of attention patterns, per head, in a vision transformer.

Every function takes attention patterns of shape (batch, *heads, query, key),
where ``*heads`` is any number of leading head dimensions (for example
layer and head). The rows are softmax distributions over keys. Token 0 is
the CLS token, followed by the patches of a ``grid`` x ``grid`` patch grid in
row-major order, the order of vit-prisma's and Hugging Face's patch
embeddings. With p(q, k) the attention of query q to key k:

* entropy of query q: H(q) = -sum_k p(q, k) log p(q, k), in nats (0 log 0 = 0);
* mean attention distance of patch query q: the expected Euclidean distance,
  in patches, from q to the patch keys, d(q) = sum_k p(q, k) |q - k| / sum_k p(q, k)
  with k over patches only, so attention to CLS is left out;
* CLS mass: p(q, CLS), averaged over patch queries;
* self mass: p(q, q), averaged over all queries;
* object mass: the CLS query's attention on the object, sum_k p(CLS, k) f_k,
  where f_k is the fraction of patch k covered by the object mask
  (:func:`mask_patch_fractions`).

:func:`vision_head_statistics` runs a ``HookedViT`` over a data set and
returns these numbers per image, layer and head, and :func:`head_kinds` sorts
heads into kinds by the thresholds below. For the text tower,
:func:`text_patterns` returns its causal patterns and
:func:`mean_end_of_text_attention` averages the row of the token it pools.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from tqdm import tqdm
from vit_prisma.models.base_vit import HookedViT

from .hooked_text import HookedTextTower
from .localisation import localisation_score

# Rules that sort vision heads into kinds. A head may be of several kinds.
# Local: patch queries look at patches at most this fraction of the uniform-attention distance away.
LOCAL_DISTANCE_FRACTION = 0.75
# Local, too: queries give themselves at least this much attention on average.
LOCAL_SELF_MASS = 0.3
# Global/diffuse: mean entropy at least this fraction of the maximum, log(number of tokens).
DIFFUSE_ENTROPY_FRACTION = 0.85
# CLS-sink: patch queries give the CLS token at least this much attention on average.
CLS_SINK_MASS = 0.3
# Object-localising: mean localisation score at least this many times chance.
OBJECT_LOCALISATION = 3.0


def patch_grid_side(hooked: HookedViT) -> int:
    """Return the number of patches along one side of the vision tower's input."""
    return int(hooked.cfg.image_size) // int(hooked.cfg.patch_size)


def _overlap_matrix(pixels: int, cells: int) -> np.ndarray:
    """Return A of shape (cells, pixels): the share of cell g's length that pixel y covers.

    Cell g spans [g * pixels / cells, (g + 1) * pixels / cells) in pixel units,
    so every row sums to 1 and cells need not align with pixel edges.
    """
    edges = np.arange(cells + 1) * pixels / cells
    pixel_start = np.arange(pixels)[None, :]
    overlap = np.minimum(edges[1:, None], pixel_start + 1) - np.maximum(edges[:-1, None], pixel_start)
    return np.clip(overlap, 0.0, None) / (pixels / cells)


def mask_patch_fractions(
    masks: Bool[np.ndarray, "n height width"], grid: int
) -> Float[np.ndarray, "n patches"]:
    """Downsample pixel masks to the patch grid: the fraction of each patch covered by the mask.

    The mask is first cropped to its central square, as CLIP's image
    processor does (resize the shortest edge, then centre-crop), and that
    square is divided into ``grid`` x ``grid`` equal cells. With A the
    pixel-to-cell overlap matrix of :func:`_overlap_matrix`, the fractions are
    F = A M A^T, exact even when the image side is not a multiple of
    ``grid``. The output is flattened row-major, patch index = row * grid + column.
    """
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must have shape (n, height, width), got {masks.shape}")
    if not isinstance(grid, (int, np.integer)) or grid < 1:
        raise ValueError(f"grid must be a positive integer, got {grid!r}")
    height, width = masks.shape[1:]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = masks[:, top : top + side, left : left + side].astype(np.float64)
    overlap = _overlap_matrix(side, grid)
    fractions = np.einsum("gy,nyx,hx->ngh", overlap, square, overlap)
    return fractions.reshape(len(masks), grid * grid)


def attention_entropy(pattern: Float[torch.Tensor, "batch *heads query key"]) -> Float[torch.Tensor, "batch *heads query"]:
    """Return the entropy of each query's attention, H(q) = -sum_k p(q, k) log p(q, k), in nats."""
    return -torch.special.xlogy(pattern, pattern).sum(dim=-1)


def patch_distances(grid: int) -> Float[torch.Tensor, "patches patches"]:
    """Return the Euclidean distance, in patches, between the centres of every two patches."""
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    centres = torch.stack([rows.flatten(), cols.flatten()], dim=1).float()
    return torch.cdist(centres, centres)


def mean_attention_distance(
    pattern: Float[torch.Tensor, "batch *heads query key"], grid: int
) -> Float[torch.Tensor, "batch *heads patches"]:
    """Return each patch query's expected distance to the patch keys it attends to, in patches.

    d(q) = sum_k p(q, k) |q - k| / sum_k p(q, k), with q and k over patches
    only: attention to CLS is left out and the rest renormalised.
    """
    _check_tokens(pattern, grid)
    patch_to_patch = pattern[..., 1:, 1:]
    distances = patch_distances(grid).to(pattern)
    weighted = (patch_to_patch * distances).sum(dim=-1)
    return weighted / patch_to_patch.sum(dim=-1).clamp_min(torch.finfo(pattern.dtype).tiny)


def uniform_attention_distance(grid: int) -> float:
    """Return the mean attention distance of a head that attends uniformly to all patches."""
    return float(patch_distances(grid).mean())


def cls_mass(pattern: Float[torch.Tensor, "batch *heads query key"]) -> Float[torch.Tensor, "batch *heads"]:
    """Return the attention that patch queries give the CLS token, p(q, CLS), averaged over patches."""
    return pattern[..., 1:, 0].mean(dim=-1)


def self_mass(pattern: Float[torch.Tensor, "batch *heads query key"]) -> Float[torch.Tensor, "batch *heads"]:
    """Return the attention each query gives itself, p(q, q), averaged over all queries."""
    return torch.diagonal(pattern, dim1=-2, dim2=-1).mean(dim=-1)


def object_mass(
    pattern: Float[torch.Tensor, "batch *heads query key"], fractions: Float[torch.Tensor, "batch patches"]
) -> Float[torch.Tensor, "batch *heads"]:
    """Return the CLS query's attention on the object, sum_k p(CLS, k) f_k (not renormalised)."""
    cls_row = pattern[..., 0, 1:]
    fractions = fractions.to(cls_row).reshape(fractions.shape[0], *([1] * (cls_row.ndim - 2)), -1)
    return (cls_row * fractions).sum(dim=-1)


def _check_tokens(pattern: torch.Tensor, grid: int) -> None:
    tokens = grid * grid + 1
    if pattern.shape[-1] != tokens or pattern.shape[-2] != tokens:
        raise ValueError(
            f"pattern has {tuple(pattern.shape[-2:])} query x key tokens; a {grid} x {grid} grid "
            f"with a CLS token needs {tokens} x {tokens}"
        )


@dataclass
class HeadStatistics:
    """Attention statistics of every vision head on every image.

    Each array has shape (n_images, n_layers, n_heads). ``object_mass`` and
    ``localisation`` are None when the data has no object masks.

    Attributes:
        entropy: mean over queries of H(q), in nats.
        distance: mean over patch queries of d(q), in patches.
        cls_mass: mean over patch queries of p(q, CLS).
        self_mass: mean over queries of p(q, q).
        object_mass: sum_k p(CLS, k) f_k.
        localisation: :func:`helpers.localisation.localisation_score`.
        grid: patches along one side of the image.
    """

    entropy: np.ndarray
    distance: np.ndarray
    cls_mass: np.ndarray
    self_mass: np.ndarray
    object_mass: np.ndarray | None
    localisation: np.ndarray | None
    grid: int

    def means(self) -> dict[str, np.ndarray]:
        """Return each statistic averaged over images, shape (n_layers, n_heads), skipping missing ones."""
        names = ("entropy", "distance", "cls_mass", "self_mass", "object_mass", "localisation")
        return {name: np.nanmean(getattr(self, name), axis=0) for name in names if getattr(self, name) is not None}


@torch.no_grad()
def vision_head_statistics(
    hooked: HookedViT,
    pixels: Float[torch.Tensor, "n 3 size size"],
    fractions: Float[np.ndarray, "n patches"] | None = None,
    batch_size: int = 256,
) -> HeadStatistics:
    """Run the vision tower over ``pixels`` and compute every head's attention statistics per image.

    Only the attention patterns are cached (one ``names_filter``), a batch at
    a time, so memory stays O(batch_size * layers * heads * tokens^2).
    ``fractions`` are the object masks on the patch grid. Without them the
    mask-based statistics are None.
    """
    grid = patch_grid_side(hooked)
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(hooked.cfg.n_layers)]
    parts: dict[str, list[torch.Tensor]] = {key: [] for key in ("entropy", "distance", "cls", "self", "object", "local")}
    for start in tqdm(range(0, len(pixels), batch_size), desc="attention statistics", leave=False, mininterval=2):
        _, cache = hooked.run_with_cache(pixels[start : start + batch_size], names_filter=names)
        pattern = torch.stack([cache[name] for name in names], dim=1).float().cpu()
        parts["entropy"].append(attention_entropy(pattern).mean(dim=-1))
        parts["distance"].append(mean_attention_distance(pattern, grid).mean(dim=-1))
        parts["cls"].append(cls_mass(pattern))
        parts["self"].append(self_mass(pattern))
        if fractions is not None:
            batch_fractions = torch.as_tensor(fractions[start : start + batch_size], dtype=torch.float32)
            parts["object"].append(object_mass(pattern, batch_fractions))
            parts["local"].append(localisation_score(pattern[..., 0, 1:], batch_fractions))

    def joined(key: str) -> np.ndarray | None:
        return torch.cat(parts[key]).numpy() if parts[key] else None

    return HeadStatistics(
        entropy=joined("entropy"),
        distance=joined("distance"),
        cls_mass=joined("cls"),
        self_mass=joined("self"),
        object_mass=joined("object"),
        localisation=joined("local"),
        grid=grid,
    )


@torch.no_grad()
def vision_patterns(
    hooked: HookedViT, pixels: Float[torch.Tensor, "n 3 size size"]
) -> Float[torch.Tensor, "n layer head query key"]:
    """Return the attention patterns of every layer and head for a few images."""
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(hooked.cfg.n_layers)]
    _, cache = hooked.run_with_cache(pixels, names_filter=names)
    return torch.stack([cache[name] for name in names], dim=1).float().cpu()


def head_kinds(means: dict[str, np.ndarray], grid: int) -> list[list[list[str]]]:
    """Sort every head into kinds by the rules above, from image-averaged statistics.

    ``means`` is :meth:`HeadStatistics.means`. Returns, indexed [layer][head],
    the list of kinds that apply ("local", "global/diffuse", "CLS-sink",
    "object-localising"), or ["mixed"] when none does. Object-localising
    needs the ``localisation`` statistic and is skipped without it.
    """
    n_tokens = grid * grid + 1
    uniform_distance = uniform_attention_distance(grid)
    n_layers, n_heads = means["entropy"].shape
    kinds = []
    for layer in range(n_layers):
        row = []
        for head in range(n_heads):
            found = []
            if (
                means["distance"][layer, head] <= LOCAL_DISTANCE_FRACTION * uniform_distance
                or means["self_mass"][layer, head] >= LOCAL_SELF_MASS
            ):
                found.append("local")
            if means["entropy"][layer, head] >= DIFFUSE_ENTROPY_FRACTION * np.log(n_tokens):
                found.append("global/diffuse")
            if means["cls_mass"][layer, head] >= CLS_SINK_MASS:
                found.append("CLS-sink")
            if "localisation" in means and means["localisation"][layer, head] >= OBJECT_LOCALISATION:
                found.append("object-localising")
            row.append(found or ["mixed"])
        kinds.append(row)
    return kinds


@torch.no_grad()
def text_patterns(
    tower: HookedTextTower,
    input_ids: Int[torch.Tensor, "n token"],
    attention_mask: Int[torch.Tensor, "n token"],
) -> Float[torch.Tensor, "n layer head query key"]:
    """Return the text tower's attention patterns of every layer and head."""
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(tower.n_layers)]
    _, cache = tower.run_with_cache(input_ids, attention_mask, names_filter=names)
    return torch.stack([cache[name] for name in names], dim=1).float().cpu()


def end_of_text_attention(
    patterns: Float[torch.Tensor, "n layer head query key"], end_of_text: Int[torch.Tensor, " n"]
) -> Float[torch.Tensor, "n layer head key"]:
    """Return the attention row of each caption's end-of-text token, the token the text tower pools."""
    rows = torch.arange(len(patterns))
    return patterns[rows, :, :, end_of_text]


@torch.no_grad()
def mean_end_of_text_attention(
    tower: HookedTextTower,
    input_ids: Int[torch.Tensor, "n token"],
    attention_mask: Int[torch.Tensor, "n token"],
) -> tuple[Float[np.ndarray, "layer head key"], Int[torch.Tensor, "m key"]]:
    """Average the end-of-text token's attention over the captions of the most common length.

    Captions of one length share token positions, so position k means the
    same slot in all of them (in ShapesWorld: size, colour, shape, position
    words). Returns the mean attention row per layer and head, and the token
    ids of the m captions averaged, to label the positions.
    """
    lengths = attention_mask.sum(dim=1)
    length = int(torch.mode(lengths).values)
    keep = lengths == length
    ids, mask = input_ids[keep][:, :length], attention_mask[keep][:, :length]
    patterns = text_patterns(tower, ids, mask)
    rows = end_of_text_attention(patterns, tower.end_of_text_index(ids))
    return rows.mean(dim=0).numpy(), ids
