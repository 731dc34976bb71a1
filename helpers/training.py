"""Contrastive training of a CLIP dual encoder on image-caption pairs."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float
from tqdm import tqdm
from transformers import CLIPModel


@dataclass
class TrainingRecord:
    """Settings and measurements of one training run, saved beside the checkpoint."""

    steps: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    warmup_steps: int
    seed: int
    n_train_images: int
    losses: list[float] = field(default_factory=list)
    wall_time_s: float = 0.0
    torch_threads: int = 0
    cpu_count: int = 0

    def save(self, path: str | Path) -> None:
        """Write the record as JSON (through a temporary file, then a rename)."""
        path = Path(path)
        temporary = path.with_suffix(path.suffix + ".tmp")
        temporary.write_text(json.dumps(asdict(self), indent=1))
        os.replace(temporary, path)

    @classmethod
    def load(cls, path: str | Path) -> "TrainingRecord":
        return cls(**json.loads(Path(path).read_text()))


def clip_loss(
    image_embeds: Float[torch.Tensor, "batch d_proj"],
    text_embeds: Float[torch.Tensor, "batch d_proj"],
    logit_scale: torch.Tensor,
) -> torch.Tensor:
    """Return the symmetric contrastive (InfoNCE) loss of CLIP (Radford et al. 2021).

    Row ``i`` of both inputs is a matching pair. Every other row of the batch
    is a negative, so a batch must not repeat a caption.
    """
    image_embeds = F.normalize(image_embeds, dim=-1)
    text_embeds = F.normalize(text_embeds, dim=-1)
    logits = logit_scale.exp() * image_embeds @ text_embeds.T
    targets = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def sample_unique_caption_batch(rng: np.random.Generator, captions: Sequence[str], batch_size: int) -> np.ndarray:
    """Draw indices of up to ``batch_size`` random pairs whose captions are all different."""
    chosen, seen = [], set()
    for index in rng.permutation(len(captions)):
        if captions[index] not in seen:
            seen.add(captions[index])
            chosen.append(index)
            if len(chosen) == batch_size:
                break
    return np.array(chosen)


def warmup_cosine_learning_rate(step: int, steps: int, peak: float, warmup: int) -> float:
    """Return the learning rate of ``step``: linear warm-up to ``peak`` over ``warmup`` steps, then cosine decay to 0."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * progress))


def adamw_optimizer(model: torch.nn.Module, learning_rate: float, weight_decay: float) -> torch.optim.AdamW:
    """Return AdamW (betas 0.9, 0.98) that decays weight matrices and leaves biases, norms and embeddings alone."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        is_matrix = parameter.ndim >= 2 and "embedding" not in name
        (decay if is_matrix else no_decay).append(parameter)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=learning_rate,
        betas=(0.9, 0.98),
    )


def train_clip(
    model: CLIPModel,
    tokenizer,
    pixels: Float[torch.Tensor, "n 3 size size"],
    captions: Sequence[str],
    steps: int,
    batch_size: int = 128,
    learning_rate: float = 2e-3,
    weight_decay: float = 0.1,
    warmup_steps: int = 100,
    seed: int = 0,
    progress: bool = True,
) -> TrainingRecord:
    """Train ``model`` with the CLIP loss, AdamW and a warm-up plus cosine schedule.

    Args:
        model: the ``CLIPModel`` to train in place.
        tokenizer: its tokenizer.
        pixels: preprocessed images, row ``i`` paired with ``captions[i]``.
        captions: one caption per image.
        steps: optimisation steps.
        batch_size: pairs per step, each with a different caption.
        learning_rate: peak learning rate.
        weight_decay: AdamW weight decay (not applied to biases, norms, embeddings or the logit scale).
        warmup_steps: steps of linear warm-up before the cosine decay.
        seed: seed of the batch sampler and of PyTorch.
        progress: show a progress bar.

    Returns:
        A :class:`TrainingRecord` with the loss of every step and the wall time.
    """
    if len(pixels) != len(captions):
        raise ValueError(f"got {len(pixels)} images but {len(captions)} captions; they must pair up")
    if steps < 1 or batch_size < 2:
        raise ValueError(f"steps must be >= 1 and batch_size >= 2, got steps={steps}, batch_size={batch_size}")

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    distinct = sorted(set(captions))
    token_table = tokenizer(distinct, padding=True, truncation=True, return_tensors="pt")
    caption_row = {caption: i for i, caption in enumerate(distinct)}
    rows = torch.tensor([caption_row[c] for c in captions])

    optimizer = adamw_optimizer(model, learning_rate, weight_decay)
    record = TrainingRecord(
        steps=steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        warmup_steps=warmup_steps,
        seed=seed,
        n_train_images=len(captions),
        torch_threads=torch.get_num_threads(),
        cpu_count=os.cpu_count() or 0,
    )
    model.train()
    start = time.perf_counter()
    # A long refresh interval keeps executed notebooks from storing thousands of progress lines.
    bar = tqdm(range(steps), desc="training", disable=not progress, mininterval=15)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = warmup_cosine_learning_rate(step, steps, learning_rate, warmup_steps)
        batch = torch.from_numpy(sample_unique_caption_batch(rng, captions, batch_size))
        token_rows = rows[batch]
        outputs = model(
            input_ids=token_table["input_ids"][token_rows],
            attention_mask=token_table["attention_mask"][token_rows],
            pixel_values=pixels[batch],
        )
        loss = clip_loss(outputs.image_embeds, outputs.text_embeds, model.logit_scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            # CLIP caps the temperature at 100 (log 100 = 4.6052).
            model.logit_scale.clamp_(0, math.log(100))
        record.losses.append(loss.item())
        if step % 25 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    record.wall_time_s = time.perf_counter() - start
    model.eval()
    return record
