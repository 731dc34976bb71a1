"""Causal tracing sweeps of the fusion model over colour counterfactual pairs.

One sweep patches, for one clean/corrupted pair, every position of the
residual stream after the embeddings and after every layer of both encoders,
and every attention head (vision self-attention, text self-attention, text
cross-attention). :func:`trace_pairs` runs it with activation patching and
with attribution patching over a list of pairs; the grid helpers turn the
flat result vectors into (layer, position) and (component, head) arrays.

Two corruptions of a clean pair (image, true caption) are traced:

* ``"image"``: semantic image pair, the object re-rendered in another colour,
  caption unchanged;
* ``"text"``: symmetric token replacement, the caption's colour word replaced
  by that other colour, image unchanged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from .counterfactuals import ColourPair, patch_overlap
from .hooked_fusion import HookedBlipITM
from .patching import Patch, activation_patching, attribution_patching, head_patches, position_patches

CORRUPTIONS: tuple[str, ...] = ("image", "text")
STREAMS: tuple[str, ...] = ("vision", "text")


def pair_inputs(hooked: HookedBlipITM, pair: ColourPair, corruption: str) -> tuple[dict, dict]:
    """Return the clean and corrupted model inputs of ``pair`` for ``corruption`` ("image" or "text")."""
    if corruption not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {corruption!r}; expected one of {CORRUPTIONS}")
    loaded = hooked.loaded

    def inputs(image: np.ndarray, caption: str) -> dict[str, torch.Tensor]:
        return {"pixel_values": loaded.pixel_values(image[None]), **loaded.tokenize([caption])}

    clean = inputs(pair.clean_image, pair.clean_caption)
    if corruption == "image":
        return clean, inputs(pair.corrupted_image, pair.clean_caption)
    return clean, inputs(pair.clean_image, pair.corrupted_caption)


def residual_hooks(hooked: HookedBlipITM, stream: str) -> list[str]:
    """Return the residual-stream hooks of ``stream``: the embeddings, then each layer's output."""
    return [f"{stream}.hook_embed"] + [f"{stream}.blocks.{l}.hook_resid_post" for l in range(hooked.n_layers[stream])]


def head_hooks(hooked: HookedBlipITM) -> list[str]:
    """Return the per-head ``hook_z`` names: vision self-attention, text self-attention, text cross-attention."""
    names = [f"vision.blocks.{l}.attn.hook_z" for l in range(hooked.n_layers["vision"])]
    names += [f"text.blocks.{l}.attn.hook_z" for l in range(hooked.n_layers["text"])]
    names += [f"text.blocks.{l}.crossattn.hook_z" for l in range(hooked.n_layers["text"])]
    return names


def row_label(hook_name: str) -> str:
    """Return a short plot label for a hook, e.g. "L1 cross" or "embed"."""
    parts = hook_name.split(".")
    if parts[1] == "hook_embed":
        return "embed"
    kind = {"hook_resid_post": "", "attn": " self", "crossattn": " cross"}[parts[3]]
    return f"L{parts[2]}{kind}"


@dataclass
class SweepLayout:
    """The patches of one full sweep and where each group sits in the result vector.

    Attributes:
        patches: every patch, residual positions first (vision, then text), then heads.
        residual: stream -> (hook names, positions per hook, slice into the result vector).
        heads: (hook names, heads per hook, slice into the result vector).
    """

    patches: list[Patch]
    residual: dict[str, tuple[list[str], int, slice]] = field(default_factory=dict)
    heads: tuple[list[str], int, slice] | None = None


def sweep_layout(hooked: HookedBlipITM, clean: dict[str, torch.Tensor]) -> SweepLayout:
    """Return the patches of the full per-position and per-head sweep for inputs shaped like ``clean``."""
    names = [n for stream in STREAMS for n in residual_hooks(hooked, stream)] + head_hooks(hooked)
    with torch.no_grad():
        _, cache = hooked.run_with_cache(clean, names)
    layout = SweepLayout(patches=[])
    for stream in STREAMS:
        rows = residual_hooks(hooked, stream)
        start = len(layout.patches)
        for name in rows:
            layout.patches += position_patches(name, cache[name].shape[1:])
        layout.residual[stream] = (rows, cache[rows[0]].shape[1], slice(start, len(layout.patches)))
    rows = head_hooks(hooked)
    start = len(layout.patches)
    for name in rows:
        layout.patches += head_patches(name, cache[name].shape[1:])
    layout.heads = (rows, cache[rows[0]].shape[2], slice(start, len(layout.patches)))
    return layout


def residual_grid(layout: SweepLayout, values: np.ndarray, stream: str) -> np.ndarray:
    """Reshape a sweep's values of ``stream`` to (residual row, position)."""
    rows, positions, where = layout.residual[stream]
    return np.asarray(values)[..., where].reshape(*np.shape(values)[:-1], len(rows), positions)


def head_grid(layout: SweepLayout, values: np.ndarray) -> np.ndarray:
    """Reshape a sweep's values of the heads to (component, head)."""
    rows, heads, where = layout.heads
    return np.asarray(values)[..., where].reshape(*np.shape(values)[:-1], len(rows), heads)


@dataclass
class PairTrace:
    """Activation and attribution patching of one pair under one corruption.

    Attributes:
        activation, attribution: normalised effect of every patch of the layout.
        clean_metric, corrupted_metric: ITM logit differences of the two runs.
        colour_token: position of the colour word in the caption.
        object_positions: vision positions (class token first) that overlap the recoloured object's mask.
        activation_passes: forward passes of the batched activation sweep.
        activation_seconds, attribution_seconds: wall time of each method.
    """

    activation: np.ndarray
    attribution: np.ndarray
    clean_metric: float
    corrupted_metric: float
    colour_token: int
    object_positions: np.ndarray
    activation_passes: int
    activation_seconds: float
    attribution_seconds: float


def colour_token_position(hooked: HookedBlipITM, pair: ColourPair) -> int:
    """Return the caption position whose token differs between the clean and the token-replaced caption."""
    ids = hooked.loaded.tokenize([pair.clean_caption, pair.corrupted_caption])["input_ids"]
    differing = torch.nonzero(ids[0] != ids[1]).flatten()
    if len(differing) != 1:
        raise ValueError(f"captions {pair.clean_caption!r} and {pair.corrupted_caption!r} differ in {len(differing)} tokens")
    return int(differing[0])


def trace_pairs(
    hooked: HookedBlipITM,
    pairs: Sequence[ColourPair],
    corruption: str,
    batch_size: int = 64,
    progress: bool = True,
) -> tuple[SweepLayout, list[PairTrace]]:
    """Run the full sweep with activation and attribution patching on every pair."""
    layout = None
    traces = []
    for pair in tqdm(pairs, desc=f"tracing ({corruption} corruption)", disable=not progress, mininterval=15):
        clean, corrupted = pair_inputs(hooked, pair, corruption)
        if layout is None:
            layout = sweep_layout(hooked, clean)
        start = time.perf_counter()
        exact = activation_patching(hooked, clean, corrupted, layout.patches, batch_size=batch_size)
        middle = time.perf_counter()
        estimate = attribution_patching(hooked, clean, corrupted, layout.patches)
        end = time.perf_counter()
        overlap = patch_overlap(pair.mask, hooked.loaded.patch_size, hooked.loaded.image_size)
        traces.append(
            PairTrace(
                activation=exact.values,
                attribution=estimate.values,
                clean_metric=exact.clean_metric,
                corrupted_metric=exact.corrupted_metric,
                colour_token=colour_token_position(hooked, pair),
                object_positions=np.concatenate([[False], overlap > 0]),
                activation_passes=exact.forward_passes,
                activation_seconds=middle - start,
                attribution_seconds=end - middle,
            )
        )
    return layout, traces


def located_shares(layout: SweepLayout, traces: Sequence[PairTrace], stream: str) -> tuple[np.ndarray, np.ndarray]:
    """Return, per residual row of ``stream``, the mean share of |effect| on the planted path and its chance level.

    The planted path is the colour word's token in the text stream and the
    positions that overlap the recoloured object in the vision stream. A
    random set of the same number of positions receives ``k / P`` of the
    effect in expectation; the second array averages that over the pairs.
    Rows whose effects are all zero (nothing to locate) are NaN.
    """
    shares, chance = [], []
    for trace in traces:
        grid = np.abs(residual_grid(layout, trace.activation, stream))
        if stream == "text":
            located = np.zeros(grid.shape[1], dtype=bool)
            located[trace.colour_token] = True
        else:
            located = trace.object_positions
        totals = grid.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            shares.append(np.where(totals > 1e-6, grid[:, located].sum(axis=1) / totals, np.nan))
        chance.append(located.sum() / located.size)
    shares = np.array(shares)
    located_rows = np.isfinite(shares).any(axis=0)
    mean_share = np.full(shares.shape[1], np.nan)
    mean_share[located_rows] = np.nanmean(shares[:, located_rows], axis=0)
    return mean_share, np.full(len(layout.residual[stream][0]), np.mean(chance))
