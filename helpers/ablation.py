"""Zero- and mean-ablation of single attention heads, and retrieval under ablation.

Both towers expose ``blocks.{layer}.attn.hook_z``, the per-head attention
output z of shape (batch, token, head, d_head) before the output projection
W_O. The attention output is sum_h z_h W_O[h] + b_O, so

* zero-ablation (z_h = 0) removes head h's write to the residual stream,
  exactly as zeroing the d_head columns of head h in Hugging Face's
  ``out_proj.weight`` (W_O[h] in vit-prisma) would.
* mean-ablation replaces z_h with its mean over a data set at the same token
  position, E[z_h(position)], keeping the average write and removing what
  depends on the input.

:func:`ablation_sweep` ablates every head of both towers in turn and
records the change in image-to-text top-1 retrieval, with embeddings from
the hooked towers on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from tqdm import tqdm
from vit_prisma.models.base_vit import HookedViT

from .hooked_text import HookedTextTower

AblationMode = Literal["zero", "mean"]
ABLATION_MODES: tuple[str, ...] = ("zero", "mean")


def z_hook_name(layer: int) -> str:
    """Return the name of the per-head attention output hook of ``layer``."""
    return f"blocks.{layer}.attn.hook_z"


def head_ablation_hook(
    head: int, mode: AblationMode, mean_z: Float[torch.Tensor, "token head d_head"] | None = None
) -> Callable[[torch.Tensor, object], torch.Tensor]:
    """Return a ``hook_z`` function that ablates ``head`` and passes the other heads through unchanged.

    ``mean_z`` (required for ``mode="mean"``) is the data-set mean of z at
    each token position. A batch with fewer tokens uses its first rows.
    """
    if mode not in ABLATION_MODES:
        raise ValueError(f"unknown ablation mode {mode!r}; expected one of {ABLATION_MODES}")
    if mode == "mean" and mean_z is None:
        raise ValueError("mean-ablation needs mean_z, the data-set mean of hook_z")

    def ablate(z: torch.Tensor, hook) -> torch.Tensor:
        z = z.clone()
        if mode == "zero":
            z[:, :, head] = 0.0
        else:
            z[:, :, head] = mean_z[: z.shape[1], head].to(z)
        return z

    return ablate


@torch.no_grad()
def vision_mean_z(
    hooked: HookedViT, pixels: Float[torch.Tensor, "n 3 size size"], batch_size: int = 256
) -> list[Float[torch.Tensor, "token head d_head"]]:
    """Return, per layer, the mean of ``hook_z`` over the images at every token position."""
    names = [z_hook_name(layer) for layer in range(hooked.cfg.n_layers)]
    totals: list[torch.Tensor] | None = None
    for start in range(0, len(pixels), batch_size):
        _, cache = hooked.run_with_cache(pixels[start : start + batch_size], names_filter=names)
        sums = [cache[name].double().sum(dim=0) for name in names]
        totals = sums if totals is None else [t + s for t, s in zip(totals, sums)]
    return [(total / len(pixels)).float() for total in totals]


@torch.no_grad()
def text_mean_z(
    tower: HookedTextTower, input_ids: Int[torch.Tensor, "n token"], attention_mask: Int[torch.Tensor, "n token"]
) -> list[Float[torch.Tensor, "token head d_head"]]:
    """Return, per layer, the mean of ``hook_z`` over the captions at every token position.

    Padding positions are left out of the mean, and a position that no caption
    reaches gets zeros.
    """
    names = [z_hook_name(layer) for layer in range(tower.n_layers)]
    _, cache = tower.run_with_cache(input_ids, attention_mask, names_filter=names)
    weights = attention_mask.to(torch.float64)[:, :, None, None]
    counts = weights.sum(dim=0).clamp_min(1.0)
    return [((cache[name].double() * weights).sum(dim=0) / counts).float() for name in names]


@torch.no_grad()
def hooked_image_embeddings(
    hooked: HookedViT,
    pixels: Float[torch.Tensor, "n 3 size size"],
    fwd_hooks: list[tuple[str, Callable]] = (),
    batch_size: int = 256,
) -> Float[torch.Tensor, "n d_proj"]:
    """Return L2-normalised image embeddings of the hooked vision tower with ``fwd_hooks`` attached."""
    chunks = [
        hooked.run_with_hooks(pixels[start : start + batch_size], fwd_hooks=list(fwd_hooks))
        for start in range(0, len(pixels), batch_size)
    ]
    return F.normalize(torch.cat(chunks), dim=-1)


@torch.no_grad()
def hooked_text_embeddings(
    tower: HookedTextTower,
    input_ids: Int[torch.Tensor, "n token"],
    attention_mask: Int[torch.Tensor, "n token"],
    fwd_hooks: list[tuple[str, Callable]] = (),
) -> Float[torch.Tensor, "n d_proj"]:
    """Return L2-normalised text embeddings of the hooked text tower with ``fwd_hooks`` attached."""
    return F.normalize(tower.run_with_hooks(input_ids, attention_mask, fwd_hooks=list(fwd_hooks)), dim=-1)


def image_to_text_top1(
    image_embeddings: Float[torch.Tensor, "n d"], text_embeddings: Float[torch.Tensor, "c d"], truth: Int[torch.Tensor, " n"]
) -> float:
    """Return the share of images whose most similar caption (cosine) is caption ``truth[i]``."""
    predicted = (image_embeddings @ text_embeddings.T).argmax(dim=1)
    return float((predicted.cpu() == torch.as_tensor(truth).cpu()).float().mean())


@dataclass
class AblationSweep:
    """Retrieval top-1 after ablating each head of each tower, one head at a time.

    Attributes:
        baseline: image-to-text top-1 without ablation.
        top1: (tower, mode) -> top-1 after ablating each head, shape (n_layers, n_heads);
            tower is "vision" or "text", mode "zero" or "mean".
    """

    baseline: float
    top1: dict[tuple[str, str], np.ndarray]

    def change(self, tower: str, mode: str) -> np.ndarray:
        """Return top-1 after ablation minus the baseline, shape (n_layers, n_heads)."""
        return self.top1[(tower, mode)] - self.baseline

    def costliest(self, k: int = 3) -> list[tuple[str, int, int, dict[str, float]]]:
        """Return the ``k`` heads whose ablation lowers top-1 most, worst first.

        Each entry is (tower, layer, head, {mode: change}). Heads are ranked by
        their most negative change over the ablation modes.
        """
        heads = {
            (tower, layer, head)
            for (tower, _mode) in self.top1
            for layer, head in np.ndindex(self.top1[(tower, _mode)].shape)
        }
        entries = []
        for tower, layer, head in heads:
            changes = {mode: float(self.change(tower, mode)[layer, head]) for (name, mode) in self.top1 if name == tower}
            entries.append((tower, layer, head, changes))
        return sorted(entries, key=lambda entry: (min(entry[3].values()), entry[0], entry[1], entry[2]))[:k]


def ablation_sweep(
    hooked: HookedViT,
    tower: HookedTextTower,
    pixels: Float[torch.Tensor, "n 3 size size"],
    input_ids: Int[torch.Tensor, "c token"],
    attention_mask: Int[torch.Tensor, "c token"],
    truth: Int[torch.Tensor, " n"],
    modes: tuple[str, ...] = ABLATION_MODES,
    batch_size: int = 256,
) -> AblationSweep:
    """Ablate every head of both towers in turn and score image-to-text top-1 each time.

    Images are ``pixels``, candidate captions are the rows of ``input_ids``, and
    ``truth[i]`` is the index of image i's caption. Mean-ablation uses the
    mean of z over these images (vision) or these captions (text). While one
    tower is ablated, the other tower's clean embeddings are used.
    """
    clean_images = hooked_image_embeddings(hooked, pixels, batch_size=batch_size)
    clean_texts = hooked_text_embeddings(tower, input_ids, attention_mask)
    baseline = image_to_text_top1(clean_images, clean_texts, truth)
    means = {
        "vision": vision_mean_z(hooked, pixels, batch_size) if "mean" in modes else None,
        "text": text_mean_z(tower, input_ids, attention_mask) if "mean" in modes else None,
    }
    shapes = {"vision": (hooked.cfg.n_layers, hooked.cfg.n_heads), "text": (tower.n_layers, tower.n_heads)}
    top1 = {(name, mode): np.zeros(shapes[name]) for name in shapes for mode in modes}

    jobs = [(name, mode, layer, head) for name in shapes for mode in modes for layer, head in np.ndindex(shapes[name])]
    for name, mode, layer, head in tqdm(jobs, desc="head ablations", leave=False, mininterval=2):
        mean_z = means[name][layer] if mode == "mean" else None
        hooks = [(z_hook_name(layer), head_ablation_hook(head, mode, mean_z))]
        if name == "vision":
            images = hooked_image_embeddings(hooked, pixels, hooks, batch_size)
            top1[(name, mode)][layer, head] = image_to_text_top1(images, clean_texts, truth)
        else:
            texts = hooked_text_embeddings(tower, input_ids, attention_mask, hooks)
            top1[(name, mode)][layer, head] = image_to_text_top1(clean_images, texts, truth)
    return AblationSweep(baseline, top1)
