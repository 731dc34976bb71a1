"""Batched activation patching and attribution patching over named hooks.

Both methods compare a clean run (an image and its true caption) with a
corrupted run (one colour changed in the image or in the caption) and ask
how much of the clean behaviour comes back when part of the clean run's
activations is copied into the corrupted run (denoising). The metric is the
ITM logit difference, match minus no-match, normalised so that the corrupted
run scores 0 and the clean run scores 1.

A :class:`Patch` names one hook and a boolean mask over that hook's
activation (without the batch dimension): a token position, an image patch,
an attention head. :func:`activation_patching` stacks one corrupted copy of
the inputs per patch along the batch dimension, so a sweep over P patches
costs about ``P / batch_size`` forward passes; patches on different hooks
share a batch. :func:`attribution_patching` estimates every patch at once
from one clean forward pass and one corrupted forward and backward pass,
with the first-order approximation used by Syed et al. (2024, "Attribution Patching
Outperforms Automated Circuit Discovery")::

    metric(patched) - metric(corrupted) ~ sum over the mask of (clean - corrupted) * d metric / d activation

The models these functions take follow the hook protocol of
:class:`helpers.hooked_fusion.HookedBlipITM`: ``model(inputs)`` returns
logits, ``model.hooks(fwd_hooks)`` attaches ``(name, fn)`` hooks in a
``with`` block, and ``model.run_with_cache(inputs, names)`` returns the
logits and a dict of activations. ``inputs`` is a dict of tensors with a
batch dimension of 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from jaxtyping import Bool, Float

from .fusion import MATCH, NO_MATCH

Metric = Callable[[torch.Tensor], torch.Tensor]


def logit_difference(logits: Float[torch.Tensor, "batch 2"]) -> Float[torch.Tensor, " batch"]:
    """Return the ITM match-minus-no-match logit of each row."""
    return logits[:, MATCH] - logits[:, NO_MATCH]


@dataclass(frozen=True)
class Patch:
    """A place to copy clean activations into: a hook name and a mask over its activation (no batch dimension).

    Attributes:
        hook_name: a hook of the model, e.g. ``"text.blocks.0.hook_resid_post"``.
        mask: True where the clean activation replaces the corrupted one.
        label: a short description for plots, e.g. ``"layer 0, token 3"``.
    """

    hook_name: str
    mask: torch.Tensor
    label: str = ""


@dataclass
class PatchingResult:
    """Normalised effects of a list of patches and what computing them cost.

    Attributes:
        values: one normalised effect per patch, in patch order (0 = corrupted, 1 = clean).
        clean_metric, corrupted_metric: the unnormalised metric of the two runs.
        forward_passes, backward_passes: model passes run, baselines included.
    """

    values: np.ndarray
    clean_metric: float
    corrupted_metric: float
    forward_passes: int
    backward_passes: int = 0


def position_patches(
    hook_name: str, shape: Sequence[int], positions: Sequence[int] | None = None, label: str = "position"
) -> list[Patch]:
    """Return one patch per position (dimension 0 of ``shape``) of the hook, all features included."""
    positions = range(shape[0]) if positions is None else positions
    patches = []
    for position in positions:
        mask = torch.zeros(tuple(shape), dtype=torch.bool)
        mask[position] = True
        patches.append(Patch(hook_name, mask, f"{hook_name} {label} {position}"))
    return patches


def head_patches(hook_name: str, shape: Sequence[int]) -> list[Patch]:
    """Return one patch per attention head of a ``hook_z`` activation of shape (pos, head, d_head)."""
    if len(shape) != 3:
        raise ValueError(f"{hook_name} has shape {tuple(shape)}; per-head patches need (pos, head, d_head)")
    patches = []
    for head in range(shape[1]):
        mask = torch.zeros(tuple(shape), dtype=torch.bool)
        mask[:, head] = True
        patches.append(Patch(hook_name, mask, f"{hook_name} head {head}"))
    return patches


def _metric_value(model, inputs, metric: Metric) -> float:
    with torch.no_grad():
        return float(metric(model(inputs))[0])


def _repeat(inputs: dict[str, torch.Tensor], copies: int) -> dict[str, torch.Tensor]:
    return {key: value.expand(copies, *value.shape[1:]) for key, value in inputs.items()}


def _check_single(inputs: dict[str, torch.Tensor], role: str) -> None:
    for key, value in inputs.items():
        if value.shape[0] != 1:
            raise ValueError(f"{role} input {key!r} has batch size {value.shape[0]}; patching takes one example")


def _normalise(raw: np.ndarray, clean: float, corrupted: float) -> np.ndarray:
    gap = clean - corrupted
    if gap == 0:
        raise ValueError(
            f"the clean and corrupted runs have the same metric ({clean:.6g}), so effects cannot be normalised; "
            "choose a corruption that changes the model's output"
        )
    return (raw - corrupted) / gap


def _stack(inputs: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    keys = inputs[0].keys()
    for key in keys:
        shapes_seen = {tuple(item[key].shape[1:]) for item in inputs}
        if len(shapes_seen) > 1:
            raise ValueError(
                f"input {key!r} has different shapes across runs ({sorted(shapes_seen)}); "
                "clean and corrupted runs must have the same number of tokens and pixels"
            )
    return {key: torch.cat([item[key] for item in inputs]) for key in keys}


def patched_metrics(
    model,
    target: dict[str, torch.Tensor],
    source_cache: dict[str, torch.Tensor],
    patches: Sequence[Patch],
    metric: Metric = logit_difference,
    batch_size: int = 64,
    reference_runs: Sequence[dict[str, torch.Tensor]] = (),
) -> tuple[np.ndarray, np.ndarray, int]:
    """Run ``target`` once per patch with the source activations copied in where the patch's mask is True.

    Patches are stacked ``batch_size`` at a time along the batch dimension, and
    rows in one batch may patch different hooks. Every forward pass also runs
    the unpatched ``reference_runs`` as extra rows, so patched and reference
    metrics come from the same batched computation: on the CPU, the same row
    can give slightly different floats in batches of different sizes.

    Returns:
        The raw metric of each patched run, the metric of each reference run in
        each forward pass (shape (passes, len(reference_runs))), and the number of forward passes.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    _check_single(target, "target")
    values, references, passes = [], [], 0
    for start in range(0, len(patches), batch_size):
        chunk = patches[start : start + batch_size]
        rows_by_hook: dict[str, list[int]] = {}
        for row, patch in enumerate(chunk):
            rows_by_hook.setdefault(patch.hook_name, []).append(row)

        def make_hook(rows: list[int]):
            row_index = torch.tensor(rows)
            masks = torch.stack([chunk[row].mask for row in rows])

            def hook(activation: torch.Tensor, point) -> torch.Tensor:
                source = source_cache[point.name].to(activation.dtype)
                patched = activation.clone()
                mask = masks.to(activation.device)
                patched[row_index] = torch.where(mask, source.expand_as(mask), activation[row_index])
                return patched

            return hook

        fwd_hooks = [(name, make_hook(rows)) for name, rows in rows_by_hook.items()]
        batch = _stack([_repeat(target, len(chunk)), *reference_runs])
        with torch.no_grad(), model.hooks(fwd_hooks):
            output = metric(model(batch)).double().cpu().numpy()
        values.append(output[: len(chunk)])
        references.append(output[len(chunk) :])
        passes += 1
    raw = np.concatenate(values) if values else np.zeros(0)
    return raw, np.array(references).reshape(passes, len(reference_runs)), passes


def activation_patching(
    model,
    clean: dict[str, torch.Tensor],
    corrupted: dict[str, torch.Tensor],
    patches: Sequence[Patch],
    metric: Metric = logit_difference,
    batch_size: int = 64,
    target: dict[str, torch.Tensor] | None = None,
) -> PatchingResult:
    """Patch clean activations into the corrupted run, one patch at a time, batched.

    Args:
        model: a hooked model (see the module docstring).
        clean, corrupted: the two runs' inputs, batch size 1 each, with equal shapes.
        patches: where to patch.
        metric: maps logits (batch, 2) to one number per row.
        batch_size: patched runs per forward pass; 1 gives one forward pass per patch.
        target: the run to patch into; the corrupted run by default. Passing
            the clean inputs patches a clean run with its own activations.

    Returns:
        A :class:`PatchingResult` normalised so the corrupted run is 0 and the
        clean run 1. The clean and corrupted runs ride along as two extra rows
        of every forward pass, and each patched value is normalised by the two
        rows of its own pass.
    """
    _check_single(clean, "clean")
    _check_single(corrupted, "corrupted")
    names = sorted({patch.hook_name for patch in patches})
    with torch.no_grad():
        clean_logits, cache = model.run_with_cache(clean, names)
    if not patches:
        corrupted_metric = _metric_value(model, corrupted, metric)
        return PatchingResult(np.zeros(0), float(metric(clean_logits)[0]), corrupted_metric, forward_passes=2)
    raw, references, passes = patched_metrics(
        model, corrupted if target is None else target, cache, patches, metric, batch_size, [clean, corrupted]
    )
    pass_of_patch = np.arange(len(patches)) // batch_size
    clean_rows, corrupted_rows = references[pass_of_patch, 0], references[pass_of_patch, 1]
    gap = clean_rows - corrupted_rows
    if np.any(gap == 0):
        raise ValueError(
            f"the clean and corrupted runs have the same metric ({references[0, 0]:.6g}), so effects cannot be "
            "normalised; choose a corruption that changes the model's output"
        )
    return PatchingResult(
        values=(raw - corrupted_rows) / gap,
        clean_metric=float(references[0, 0]),
        corrupted_metric=float(references[0, 1]),
        forward_passes=passes + 1,
    )


def attribution_patching(
    model,
    clean: dict[str, torch.Tensor],
    corrupted: dict[str, torch.Tensor],
    patches: Sequence[Patch],
    metric: Metric = logit_difference,
) -> PatchingResult:
    """Estimate every patch's normalised effect to first order from one backward pass.

    The estimate of a patch is the sum, over its mask, of the clean-minus-corrupted
    activation times the gradient of the metric on the corrupted run. It is exact
    when the metric is linear in the patched activation.
    """
    _check_single(clean, "clean")
    _check_single(corrupted, "corrupted")
    names = sorted({patch.hook_name for patch in patches})
    with torch.no_grad():
        clean_logits, clean_cache = model.run_with_cache(clean, names)
    clean_metric = float(metric(clean_logits)[0])

    corrupted_activations: dict[str, torch.Tensor] = {}

    def keep(activation: torch.Tensor, point) -> torch.Tensor:
        # Returning the activation itself keeps per-head views (hook_z) in the graph.
        # An activation that needs no gradient (frozen weights upstream) becomes a leaf;
        # nothing upstream of it is differentiated then, so no gradient path is cut.
        if not activation.requires_grad:
            activation = activation.detach().requires_grad_(True)
        corrupted_activations[point.name] = activation
        return activation

    with torch.enable_grad(), model.hooks([(name, keep) for name in names]):
        corrupted_value = metric(model(corrupted))[0]
        gradients = torch.autograd.grad(corrupted_value, [corrupted_activations[name] for name in names])
    gradient_by_name = dict(zip(names, gradients))
    corrupted_metric = float(corrupted_value.detach())

    estimates = []
    for patch in patches:
        difference = clean_cache[patch.hook_name][0] - corrupted_activations[patch.hook_name][0].detach()
        contribution = difference * gradient_by_name[patch.hook_name][0]
        estimates.append(float(contribution[patch.mask.to(contribution.device)].sum()))
    raw_change = np.array(estimates)
    return PatchingResult(
        values=_normalise(raw_change + corrupted_metric, clean_metric, corrupted_metric),
        clean_metric=clean_metric,
        corrupted_metric=corrupted_metric,
        forward_passes=2,
        backward_passes=1,
    )


def located_share(effects: np.ndarray, located: np.ndarray) -> float:
    """Return the share of the total absolute effect that falls on the ``located`` positions.

    A set of ``k`` positions drawn at random from ``P`` receives ``k / P`` in expectation.
    """
    effects = np.abs(np.asarray(effects, dtype=float))
    located = np.asarray(located, dtype=bool)
    if effects.shape != located.shape:
        raise ValueError(f"effects have shape {effects.shape} but the location mask has {located.shape}")
    total = effects.sum()
    return float(effects[located].sum() / total) if total > 0 else float("nan")


def random_share(effects: np.ndarray, size: int, draws: int = 1000, seed: int = 0) -> float:
    """Return the mean :func:`located_share` of ``draws`` random position sets of ``size`` positions."""
    rng = np.random.default_rng(seed)
    effects = np.asarray(effects, dtype=float)
    shares = []
    for _ in range(draws):
        chosen = np.zeros(effects.shape, dtype=bool)
        chosen[rng.choice(effects.size, size=size, replace=False)] = True
        shares.append(located_share(effects, chosen))
    return float(np.mean(shares))
