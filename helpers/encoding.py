"""Turn images and captions into model inputs and CLIP embeddings."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from jaxtyping import Float, UInt8
from PIL import Image

from .loading import LoadedCLIP


def _features(output) -> torch.Tensor:
    # transformers 5 may return an output object whose pooler_output is the projected embedding.
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def pixel_values(
    loaded: LoadedCLIP,
    images: UInt8[np.ndarray, "n height width 3"] | Sequence[Image.Image],
    batch_size: int = 512,
) -> Float[torch.Tensor, "n 3 size size"]:
    """Resize and normalise images with the model's own image processor.

    ``images`` is an RGB uint8 array or a list of PIL images of any size and mode.
    """
    batches = []
    for start in range(0, len(images), batch_size):
        chunk = list(images[start : start + batch_size])
        batches.append(loaded.image_processor(images=chunk, return_tensors="pt")["pixel_values"])
    return torch.cat(batches).to(loaded.device)


def tokenize(loaded: LoadedCLIP, captions: Sequence[str]) -> dict[str, torch.Tensor]:
    """Tokenize captions with padding and truncation; returns ``input_ids`` and ``attention_mask``."""
    encoded = loaded.tokenizer(list(captions), padding=True, truncation=True, return_tensors="pt")
    return {"input_ids": encoded["input_ids"].to(loaded.device), "attention_mask": encoded["attention_mask"].to(loaded.device)}


@torch.no_grad()
def image_embeddings(
    loaded: LoadedCLIP, pixels: Float[torch.Tensor, "n 3 size size"], batch_size: int = 512, normalise: bool = True
) -> Float[torch.Tensor, "n d_proj"]:
    """Return the image embeddings of ``CLIPModel.get_image_features``, L2-normalised by default."""
    chunks = [
        _features(loaded.model.get_image_features(pixel_values=pixels[start : start + batch_size]))
        for start in range(0, len(pixels), batch_size)
    ]
    embeddings = torch.cat(chunks)
    return torch.nn.functional.normalize(embeddings, dim=-1) if normalise else embeddings


@torch.no_grad()
def text_embeddings(
    loaded: LoadedCLIP, captions: Sequence[str], batch_size: int = 512, normalise: bool = True
) -> Float[torch.Tensor, "n d_proj"]:
    """Return the text embeddings of ``CLIPModel.get_text_features``, L2-normalised by default."""
    chunks = []
    for start in range(0, len(captions), batch_size):
        tokens = tokenize(loaded, captions[start : start + batch_size])
        chunks.append(_features(loaded.model.get_text_features(**tokens)))
    embeddings = torch.cat(chunks)
    return torch.nn.functional.normalize(embeddings, dim=-1) if normalise else embeddings
