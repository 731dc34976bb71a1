"""One entry point for the image-caption data a notebook reads.

:func:`load_dataset` turns the ``dataset`` parameter of a notebook into an
:class:`ImageTextDataset`: images, one caption each, integer labels per
attribute where the data has them, and object masks where the data has them
(ShapesWorld only). Besides the built-in data sets it reads a folder of
images with captions (see :mod:`helpers.image_folders` for the formats).
:func:`check_dataset` validates the parameter itself, before any loading.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import shapes
from .digits import load_digits_dataset
from .image_folders import DatasetError, DatasetWarning, load_image_folder, resolve_path
from .params import ParameterError
from .vocabulary import DIGIT_NAMES

BUILT_IN_DATASETS: tuple[str, ...] = ("shapes", "digits")
# Number of handwritten digits that scikit-learn ships.
DIGITS_AVAILABLE = 1797


@dataclass
class ImageTextDataset:
    """Images with captions and optional ground truth.

    Attributes:
        name: the dataset specification it came from.
        images: RGB uint8 arrays of shape (height, width, 3); sizes may differ
            between images from a folder.
        captions: one caption per image.
        labels: attribute name -> integer label per image (-1 where unknown).
        label_names: attribute name -> the value that each label stands for.
        masks: for ShapesWorld, the mask of each scene's first object, shape
            (n, height, width); None for other data.
        scenes: for ShapesWorld, the full :class:`shapes.ShapesDataset`.
        skipped: files left out while loading, with the reason
            ("missing", or the decoding error).
        files: for a folder, each image's path relative to the image folder;
            empty for built-in data.
    """

    name: str
    images: Sequence[np.ndarray]
    captions: list[str]
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    label_names: dict[str, tuple[str, ...]] = field(default_factory=dict)
    masks: np.ndarray | None = None
    scenes: shapes.ShapesDataset | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.captions)


def shapes_dataset(n: int, seed: int, image_size: int = 32, split: str = "heldout") -> ImageTextDataset:
    """Return ``n`` one-object ShapesWorld scenes as an :class:`ImageTextDataset`."""
    scenes = shapes.generate(n, seed=seed, split=split, image_size=image_size)
    return ImageTextDataset(
        name="shapes",
        images=scenes.images,
        captions=scenes.captions,
        labels={attribute: scenes.labels(attribute) for attribute in shapes.ATTRIBUTES},
        label_names=dict(shapes.VALUES),
        masks=scenes.masks[:, 0],
        scenes=scenes,
    )


def digits_dataset(n: int, seed: int, image_size: int = 32) -> ImageTextDataset:
    """Return ``n`` of scikit-learn's handwritten digits as an :class:`ImageTextDataset`.

    scikit-learn has 1 797 digits; a larger ``n`` gives all of them, with a warning.
    """
    if n > DIGITS_AVAILABLE:
        warnings.warn(
            f"dataset 'digits' has {DIGITS_AVAILABLE} images, fewer than the {n} requested; using all {DIGITS_AVAILABLE}",
            DatasetWarning,
            stacklevel=3,
        )
    digits = load_digits_dataset(image_size=image_size, n=min(n, DIGITS_AVAILABLE), seed=seed)
    return ImageTextDataset(
        name="digits",
        images=digits.images,
        captions=digits.captions,
        labels={"digit": digits.labels},
        label_names={"digit": DIGIT_NAMES},
    )


def folder_dataset(spec: str, n: int, seed: int) -> ImageTextDataset:
    """Return up to ``n`` images of an image folder or captions file as an :class:`ImageTextDataset`."""
    folder = load_image_folder(spec, n=n, seed=seed)
    return ImageTextDataset(
        name=str(spec),
        images=folder.images,
        captions=folder.captions,
        labels=folder.labels,
        label_names=folder.label_names,
        skipped=folder.skipped,
        files=folder.files,
    )


_UNKNOWN_DATASET = (
    f"is neither a built-in data set {BUILT_IN_DATASETS} nor an existing folder or captions file "
    "(relative paths are looked up in the current folder, then in the repository root); pass "
    "'shapes', 'digits', or a folder of images with captions.csv or a COCO captions*.json"
)


def check_dataset(name: str, value: Any) -> str:
    """Return ``value`` if it names a built-in data set or an existing path, else raise ParameterError.

    It only checks that the path exists; :func:`load_dataset` reads it.
    """
    if not isinstance(value, str) or not value.strip():
        raise ParameterError(f"parameter {name}={value!r} must be a non-empty string")
    if value not in BUILT_IN_DATASETS and resolve_path(value) is None:
        raise ParameterError(f"parameter {name}={value!r} {_UNKNOWN_DATASET}")
    return value


def load_dataset(spec: str, n: int, seed: int = 0, image_size: int = 32) -> ImageTextDataset:
    """Load the data named by a notebook's ``dataset`` parameter.

    Args:
        spec: ``"shapes"`` (held-out one-object ShapesWorld scenes),
            ``"digits"`` (scikit-learn's handwritten digits), or the path of
            an image folder or captions file (see :mod:`helpers.image_folders`).
        n: number of images wanted, at least 1. A folder with fewer images
            gives all of them, with a warning; digits give at most 1 797.
        seed: seed of generation or sampling.
        image_size: side in pixels of generated images; the model's image
            processor resizes them anyway. Folder images keep their own size.

    Raises:
        ValueError: for ``n`` below 1.
        DatasetError: (a ValueError) for an unknown ``spec`` or a folder that
            cannot be read; :class:`helpers.image_folders.CaptionFileError`
            for a malformed captions file.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if spec == "shapes":
        return shapes_dataset(n, seed, image_size)
    if spec == "digits":
        return digits_dataset(n, seed, image_size)
    if not isinstance(spec, (str, Path)) or resolve_path(spec) is None:
        raise DatasetError(f"unknown dataset {str(spec)!r}: it {_UNKNOWN_DATASET}")
    return folder_dataset(str(spec), int(n), seed)
