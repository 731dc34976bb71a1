"""Image-text matching (ITM) training and evaluation of the fusion model on ShapesWorld.

The model learns to decide "is this caption true of this image?". Every
training image comes with its true caption (label match) and one hard
negative caption (label no match) that differs from the truth in exactly one
respect:

* one-object scenes: one attribute (colour, shape, size or position) is
  replaced by another value of that attribute;
* two-object scenes: the colours of the two objects are swapped ("a blue
  circle and a red square" for "a red circle and a blue square"), which only
  a model that binds each colour to its object can reject. When both objects
  share a colour, or with probability ``1 - swap_probability``, one object's
  colour or shape is replaced instead.

With probability ``easy_probability`` the negative is instead the caption of
another scene of the batch with the same number of objects. Such a caption
is always false of the image, because a batch never repeats a caption and a
caption fixes every attribute it names. These easier negatives let the
randomly initialised model find the cross-modal signal before the hard
negatives refine it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from . import shapes
from .fusion import MATCH, NO_MATCH, LoadedBLIP, itm_logits
from .training import (
    TrainingRecord,
    adamw_optimizer,
    clip_loss,
    sample_unique_caption_batch,
    warmup_cosine_learning_rate,
)


def changed_attribute_caption(obj: shapes.ShapeObject, attribute: str, rng: np.random.Generator) -> str:
    """Return the one-object caption of ``obj`` with ``attribute`` replaced by a random other value."""
    values = {name: obj.attribute(name) for name in shapes.ATTRIBUTES}
    others = [value for value in shapes.VALUES[attribute] if value != values[attribute]]
    values[attribute] = others[rng.integers(len(others))]
    return shapes.single_object_caption(values["shape"], values["colour"], values["size"], values["position"])


def colour_swap_caption(first: shapes.ShapeObject, second: shapes.ShapeObject) -> str | None:
    """Return the two-object caption with the objects' colours swapped, or None if they share a colour."""
    if first.colour == second.colour:
        return None
    return f"a {second.colour} {first.shape} and a {first.colour} {second.shape}"


def _changed_pair_caption(scene: tuple[shapes.ShapeObject, ...], rng: np.random.Generator) -> str:
    index = int(rng.integers(2))
    attribute = ("colour", "shape")[rng.integers(2)]
    others = [value for value in shapes.VALUES[attribute] if value != scene[index].attribute(attribute)]
    looks = [[obj.colour, obj.shape] for obj in scene]
    looks[index][0 if attribute == "colour" else 1] = others[rng.integers(len(others))]
    return f"a {looks[0][0]} {looks[0][1]} and a {looks[1][0]} {looks[1][1]}"


def hard_negative_caption(
    scene: tuple[shapes.ShapeObject, ...], rng: np.random.Generator, swap_probability: float = 0.5
) -> str:
    """Return a false caption that differs from the scene's true caption in exactly one respect."""
    if len(scene) == 1:
        attribute = shapes.ATTRIBUTES[rng.integers(len(shapes.ATTRIBUTES))]
        return changed_attribute_caption(scene[0], attribute, rng)
    swapped = colour_swap_caption(*scene)
    if swapped is not None and rng.random() < swap_probability:
        return swapped
    return _changed_pair_caption(scene, rng)


def _negative_captions(
    data: shapes.ShapesDataset,
    batch: np.ndarray,
    rng: np.random.Generator,
    swap_probability: float,
    easy_probability: float,
) -> list[str]:
    counts = data.n_objects[batch]
    negatives = []
    for row, index in enumerate(batch):
        scene = data.objects[index]
        same_count = np.flatnonzero((counts == len(scene)) & (np.arange(len(batch)) != row))
        if len(same_count) and rng.random() < easy_probability:
            negatives.append(data.captions[batch[same_count[rng.integers(len(same_count))]]])
        else:
            negatives.append(hard_negative_caption(scene, rng, swap_probability))
    return negatives


@dataclass
class ITMTrainingRecord(TrainingRecord):
    """Settings and measurements of an ITM training run, saved beside the checkpoint."""

    two_object_fraction: float = 0.0
    swap_probability: float = 0.0
    easy_probability: float = 0.0
    contrastive_weight: float = 0.0
    heldout_accuracy: dict[str, float] = field(default_factory=dict)


# Temperature of the contrastive loss, BLIP's initial value (0.07).
_ITC_LOGIT_SCALE = torch.tensor(1 / 0.07).log()


def _itm_and_itc_losses(
    model, pixels: torch.Tensor, tokens: dict[str, torch.Tensor], labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the ITM loss of all caption rows and the contrastive loss of the true (first) half.

    ``pixels`` contains one image per scene, and ``tokens`` the true captions
    followed by one negative caption per scene in the same order.
    """
    n = len(pixels)
    image_states = model.vision_model(pixel_values=pixels).last_hidden_state
    paired_images = torch.cat([image_states, image_states])
    image_mask = torch.ones(paired_images.shape[:-1], dtype=torch.long, device=pixels.device)
    fused = model.text_encoder(
        input_ids=tokens["input_ids"],
        attention_mask=tokens["attention_mask"],
        encoder_hidden_states=paired_images,
        encoder_attention_mask=image_mask,
    ).last_hidden_state
    itm_loss = F.cross_entropy(model.itm_head(fused[:, 0]), labels)

    text_only = model.text_encoder(
        input_ids=tokens["input_ids"][:n], attention_mask=tokens["attention_mask"][:n]
    ).last_hidden_state
    image_features = model.vision_proj(image_states[:, 0])
    text_features = model.text_proj(text_only[:, 0])
    itc_loss = clip_loss(image_features, text_features, _ITC_LOGIT_SCALE.to(pixels.device))
    return itm_loss, itc_loss


def train_itm(
    loaded: LoadedBLIP,
    data: shapes.ShapesDataset,
    steps: int,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    weight_decay: float = 0.05,
    warmup_steps: int = 100,
    swap_probability: float = 0.5,
    easy_probability: float = 0.25,
    contrastive_weight: float = 1.0,
    two_object_fraction: float = 0.0,
    seed: int = 0,
    progress: bool = True,
) -> ITMTrainingRecord:
    """Train ``loaded.model`` in place on ITM with one hard negative per image, plus BLIP's contrastive loss.

    Each step draws ``batch_size`` scenes whose captions are all different and
    scores ``2 * batch_size`` image-caption pairs (each scene with its true
    caption and with a negative) under a two-class cross-entropy loss. As in
    BLIP (Li et al. 2022), an image-text contrastive loss on the unimodal
    encoders (vision class token against the text encoder's ``[CLS]`` run
    without cross-attention) is added; it gives the vision encoder a dense
    signal from the first step, while the one-bit ITM signal alone leaves a
    model trained from scratch near chance for hundreds of steps.

    Args:
        loaded: the model, tokenizer and image processor.
        data: training scenes.
        steps: optimisation steps, at least 1.
        batch_size: scenes per step, at least 2.
        learning_rate: peak AdamW learning rate (linear warm-up, then cosine decay).
        weight_decay: AdamW weight decay of weight matrices.
        warmup_steps: steps of linear warm-up.
        swap_probability: share of two-object hard negatives that swap the colours.
        easy_probability: share of negatives taken from another scene of the batch.
        contrastive_weight: weight of the image-text contrastive (ITC) loss added to the ITM loss.
        two_object_fraction: recorded only; ``data`` fixes the actual share.
        seed: seed of PyTorch and of the batch and negative sampling.
        progress: show a progress bar.
    """
    if steps < 1 or batch_size < 2:
        raise ValueError(f"steps must be >= 1 and batch_size >= 2, got steps={steps}, batch_size={batch_size}")
    model = loaded.model
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    pixels = loaded.pixel_values(data.images)

    optimizer = adamw_optimizer(model, learning_rate, weight_decay)
    record = ITMTrainingRecord(
        steps=steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        warmup_steps=warmup_steps,
        seed=seed,
        n_train_images=len(data),
        torch_threads=torch.get_num_threads(),
        cpu_count=os.cpu_count() or 0,
        two_object_fraction=two_object_fraction,
        swap_probability=swap_probability,
        easy_probability=easy_probability,
        contrastive_weight=contrastive_weight,
    )
    labels = torch.cat([torch.full((batch_size,), MATCH), torch.full((batch_size,), NO_MATCH)]).to(loaded.device)

    model.train()
    start = time.perf_counter()
    # A long refresh interval keeps executed notebooks from storing thousands of progress lines.
    bar = tqdm(range(steps), desc="ITM training", disable=not progress, mininterval=15)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = warmup_cosine_learning_rate(step, steps, learning_rate, warmup_steps)
        batch = sample_unique_caption_batch(rng, data.captions, batch_size)
        positives = [data.captions[i] for i in batch]
        negatives = _negative_captions(data, batch, rng, swap_probability, easy_probability)
        itm_loss, itc_loss = _itm_and_itc_losses(
            model, pixels[torch.from_numpy(batch)], loaded.tokenize(positives + negatives), labels[: 2 * len(batch)]
        )
        loss = itm_loss + contrastive_weight * itc_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        record.losses.append(loss.item())
        if step % 25 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    record.wall_time_s = time.perf_counter() - start
    model.eval()
    return record


@torch.no_grad()
def match_logit_difference(
    loaded: LoadedBLIP, images: np.ndarray, captions: Sequence[str], batch_size: int = 256
) -> np.ndarray:
    """Return the ITM match-minus-no-match logit of each (image, caption) pair."""
    if len(images) != len(captions):
        raise ValueError(f"got {len(images)} images but {len(captions)} captions; they must pair up")
    differences = []
    for start in range(0, len(captions), batch_size):
        pixels = loaded.pixel_values(images[start : start + batch_size])
        tokens = loaded.tokenize(list(captions[start : start + batch_size]))
        logits = itm_logits(loaded.model, pixels, tokens["input_ids"], tokens["attention_mask"])
        differences.append((logits[:, MATCH] - logits[:, NO_MATCH]).cpu().numpy())
    return np.concatenate(differences)


@dataclass
class MatchingScores:
    """Held-out ITM accuracies; a pair counts as judged "match" when its logit difference is above 0.

    Attributes:
        single_attribute: balanced accuracy on one-object scenes, the mean of
            the accuracy on true captions and on negatives that change one attribute.
        per_attribute: accuracy on the negatives that change each attribute.
        single_positive: accuracy on true one-object captions.
        binding: balanced accuracy on two-object scenes with two colours, true
            captions against colour-swapped captions.
        binding_positive, binding_negative: its two halves.
        binding_ranking: share of those scenes whose true caption scores above the swapped one.
        n_single, n_binding: scenes behind each number.
    """

    single_attribute: float
    per_attribute: dict[str, float]
    single_positive: float
    binding: float
    binding_positive: float
    binding_negative: float
    binding_ranking: float
    n_single: int
    n_binding: int

    def as_dict(self) -> dict[str, float]:
        """Return the scores as a flat dict (for the training record)."""
        flat = {key: value for key, value in self.__dict__.items() if key != "per_attribute"}
        flat.update({f"negative_{name}": value for name, value in self.per_attribute.items()})
        return flat


def evaluate_matching(loaded: LoadedBLIP, heldout: shapes.ShapesDataset, seed: int = 0) -> MatchingScores:
    """Score ITM on held-out scenes: every one-object scene against one negative per attribute,
    every two-object scene with two colours against its colour swap."""
    rng = np.random.default_rng(seed)
    single = np.flatnonzero(heldout.n_objects == 1)
    images, captions, kinds = [], [], []
    for i in single:
        images.append(i)
        captions.append(heldout.captions[i])
        kinds.append("positive")
        for attribute in shapes.ATTRIBUTES:
            images.append(i)
            captions.append(changed_attribute_caption(heldout.objects[i][0], attribute, rng))
            kinds.append(attribute)
    pairs = [i for i in np.flatnonzero(heldout.n_objects == 2) if colour_swap_caption(*heldout.objects[i])]
    for i in pairs:
        images += [i, i]
        captions += [heldout.captions[i], colour_swap_caption(*heldout.objects[i])]
        kinds += ["pair positive", "swap"]

    difference = match_logit_difference(loaded, heldout.images[np.array(images, dtype=int)], captions)
    kinds = np.array(kinds)
    judged_match = difference > 0

    per_attribute = {name: float(np.mean(~judged_match[kinds == name])) for name in shapes.ATTRIBUTES}
    single_positive = float(np.mean(judged_match[kinds == "positive"]))
    negatives = float(np.mean(~judged_match[np.isin(kinds, shapes.ATTRIBUTES)]))
    nan = float("nan")
    binding_positive = float(np.mean(judged_match[kinds == "pair positive"])) if pairs else nan
    binding_negative = float(np.mean(~judged_match[kinds == "swap"])) if pairs else nan
    ranking = float(np.mean(difference[kinds == "pair positive"] > difference[kinds == "swap"])) if pairs else nan
    return MatchingScores(
        single_attribute=(single_positive + negatives) / 2,
        per_attribute=per_attribute,
        single_positive=single_positive,
        binding=(binding_positive + binding_negative) / 2,
        binding_positive=binding_positive,
        binding_negative=binding_negative,
        binding_ranking=ranking,
        n_single=len(single),
        n_binding=len(pairs),
    )
