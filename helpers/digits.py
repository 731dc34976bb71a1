"""scikit-learn's handwritten digits as a small real-image set with captions.

The 1 797 digits (8 x 8 greyscale scans, UCI) ship with scikit-learn, so they
load offline. Each becomes a white-on-black RGB image resized to the model's
image size, captioned "a handwritten seven".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from jaxtyping import UInt8
from PIL import Image
from sklearn.datasets import load_digits

from .vocabulary import DIGIT_NAMES


def digit_caption(label: int) -> str:
    """Return the caption of digit ``label``, e.g. 'a handwritten seven'."""
    return f"a handwritten {DIGIT_NAMES[label]}"


@dataclass
class DigitsDataset:
    """Handwritten digits as RGB images with captions.

    Attributes:
        images: uint8 array of shape (n, image_size, image_size, 3).
        labels: the digit of each image, shape (n,).
        captions: one caption per image.
    """

    images: UInt8[np.ndarray, "n height width 3"]
    labels: np.ndarray
    captions: list[str]

    def __len__(self) -> int:
        return len(self.labels)


def load_digits_dataset(image_size: int = 32, n: int | None = None, seed: int = 0) -> DigitsDataset:
    """Load scikit-learn's digits, resized to ``image_size`` pixels with bilinear filtering.

    Args:
        image_size: side of the square output images, at least 8.
        n: number of digits to return, drawn without replacement with
            ``seed``; all 1 797 when None.
        seed: seed of that draw.
    """
    if not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size must be an integer of at least 8 pixels, got {image_size!r}")
    bunch = load_digits()
    total = len(bunch.target)
    if n is None:
        order = np.arange(total)
    else:
        if not isinstance(n, int) or not 1 <= n <= total:
            raise ValueError(f"n must be an integer between 1 and {total}, got {n!r}")
        order = np.sort(np.random.default_rng(seed).choice(total, size=n, replace=False))

    # Pixel values run from 0 to 16 in the original scans.
    grey = (bunch.images[order] / 16.0 * 255.0).round().astype(np.uint8)
    images = np.stack(
        [np.asarray(Image.fromarray(g).resize((image_size, image_size), Image.BILINEAR)) for g in grey]
    )
    rgb = np.repeat(images[..., None], 3, axis=-1)
    labels = bunch.target[order].astype(int)
    return DigitsDataset(images=rgb, labels=labels, captions=[digit_caption(int(d)) for d in labels])
