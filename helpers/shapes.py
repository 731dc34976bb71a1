"""ShapesWorld: synthetic scenes of coloured shapes with exact ground truth.

Every image contains one or two flat-coloured objects on a dark, slightly noisy
background. Each object has a shape, a colour, a size and a position, and the
generator returns, beside the RGB image and its caption, the attributes of
every object and its pixel mask. Interpretability methods are scored against
this ground truth in the later notebooks.

Generation is deterministic: the same seed, split and count always give the
same images, captions and masks.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from typing import Literal, Sequence

import numpy as np
from jaxtyping import Bool, UInt8

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 45, 45),
    "green": (45, 185, 70),
    "blue": (55, 100, 240),
    "yellow": (240, 210, 45),
    "purple": (165, 75, 215),
}
SIZES: tuple[str, ...] = ("small", "large")
POSITIONS: tuple[str, ...] = ("left", "right", "top", "bottom")
ATTRIBUTES: tuple[str, ...] = ("colour", "shape", "size", "position")

# Values of each attribute, in label order: label i of "colour" is VALUES["colour"][i].
VALUES: dict[str, tuple[str, ...]] = {
    "colour": tuple(COLOURS),
    "shape": SHAPES,
    "size": SIZES,
    "position": POSITIONS,
}

SPLITS: dict[str, int] = {"train": 0, "heldout": 1}

# Geometry on the 32-pixel reference canvas; other image sizes scale it.
_REFERENCE_SIZE = 32
_RADIUS = {"small": (3.2, 4.2), "large": (6.0, 7.2)}
_CENTRE = {
    "left": (8.0, 16.0),
    "right": (24.0, 16.0),
    "top": (16.0, 8.0),
    "bottom": (16.0, 24.0),
}
_JITTER_ALONG, _JITTER_ACROSS = 1.5, 3.0
_BACKGROUND = 28
_BACKGROUND_NOISE = 10
# Two-object scenes put their objects in opposite regions, so they never overlap.
_OPPOSITE_PAIRS = (("left", "right"), ("top", "bottom"))


@dataclass(frozen=True)
class ShapeObject:
    """One object of a scene: its attributes and where it was drawn (in pixels)."""

    shape: str
    colour: str
    size: str
    position: str
    centre_x: float
    centre_y: float
    radius: float

    def attribute(self, name: str) -> str:
        """Return the value of attribute ``name`` (one of ``ATTRIBUTES``)."""
        if name not in ATTRIBUTES:
            raise ValueError(f"unknown attribute {name!r}; expected one of {ATTRIBUTES}")
        return getattr(self, name)


def single_object_caption(shape: str, colour: str, size: str, position: str) -> str:
    """Return the caption template for a one-object scene, e.g. 'a small red circle on the left'."""
    return f"a {size} {colour} {shape} on the {position}"


def pair_caption(first: ShapeObject, second: ShapeObject) -> str:
    """Return the caption template for a two-object scene, e.g. 'a red circle and a blue square'."""
    return f"a {first.colour} {first.shape} and a {second.colour} {second.shape}"


def all_single_object_captions() -> list[str]:
    """Return every one-object caption, in the fixed order colour, shape, size, position."""
    return [
        single_object_caption(shape, colour, size, position)
        for colour, shape, size, position in product(COLOURS, SHAPES, SIZES, POSITIONS)
    ]


def caption_attributes(caption: str) -> dict[str, str]:
    """Parse a one-object caption back into its attributes.

    Raises:
        ValueError: if the caption is not of the one-object template.
    """
    words = caption.split()
    if len(words) != 7 or words[0] != "a" or words[4:6] != ["on", "the"]:
        raise ValueError(f"not a one-object ShapesWorld caption: {caption!r}")
    parsed = {"size": words[1], "colour": words[2], "shape": words[3], "position": words[6]}
    for name, value in parsed.items():
        if value not in VALUES[name]:
            raise ValueError(f"caption {caption!r} has unknown {name} {value!r}")
    return parsed


def shape_mask(
    shape: str, centre_x: float, centre_y: float, radius: float, image_size: int
) -> Bool[np.ndarray, "height width"]:
    """Rasterise one shape: True on the pixels whose centres fall inside it."""
    coords = np.arange(image_size) + 0.5
    x = coords[None, :] - centre_x
    y = coords[:, None] - centre_y
    if shape == "circle":
        return x**2 + y**2 <= radius**2
    if shape == "square":
        half = radius * 0.85
        return (np.abs(x) <= half) & (np.abs(y) <= half)
    if shape == "triangle":
        # Upward triangle with its apex at the top of the bounding box.
        top, bottom = -radius, radius * 0.8
        inside_rows = (y >= top) & (y <= bottom)
        half_width = (y - top) / (bottom - top) * radius
        return inside_rows & (np.abs(x) <= half_width)
    if shape == "cross":
        arm = radius / 3.0
        vertical = (np.abs(x) <= arm) & (np.abs(y) <= radius)
        horizontal = (np.abs(y) <= arm) & (np.abs(x) <= radius)
        return vertical | horizontal
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


@dataclass
class ShapesDataset:
    """A batch of ShapesWorld scenes with their ground truth.

    Attributes:
        images: RGB images of shape (n, height, width, 3), dtype uint8.
        masks: object masks of shape (n, 2, height, width); the second mask is
            empty for one-object scenes. Mask ``j`` belongs to ``objects[i][j]``.
        objects: the objects of each scene (one or two).
        captions: one caption per scene.
        seed, split: what generated the data set.
    """

    images: UInt8[np.ndarray, "n height width 3"]
    masks: Bool[np.ndarray, "n 2 height width"]
    objects: list[tuple[ShapeObject, ...]]
    captions: list[str]
    seed: int
    split: str

    def __len__(self) -> int:
        return len(self.captions)

    @property
    def image_size(self) -> int:
        """Side of the square images, in pixels."""
        return int(self.images.shape[1])

    @property
    def n_objects(self) -> np.ndarray:
        """Number of objects in each scene, shape (n,)."""
        return np.array([len(objs) for objs in self.objects])

    def subset(self, indices: Sequence[int] | np.ndarray) -> "ShapesDataset":
        """Return the scenes at ``indices`` as a new data set."""
        indices = np.asarray(indices, dtype=int)
        return ShapesDataset(
            images=self.images[indices],
            masks=self.masks[indices],
            objects=[self.objects[i] for i in indices],
            captions=[self.captions[i] for i in indices],
            seed=self.seed,
            split=self.split,
        )

    def single_object(self) -> "ShapesDataset":
        """Return the one-object scenes only."""
        return self.subset(np.flatnonzero(self.n_objects == 1))

    def labels(self, attribute: str, object_index: int = 0) -> np.ndarray:
        """Return integer labels of ``attribute`` for object ``object_index`` of every scene.

        Label ``i`` means ``VALUES[attribute][i]``; scenes without that object get -1.
        """
        if attribute not in VALUES:
            raise ValueError(f"unknown attribute {attribute!r}; expected one of {ATTRIBUTES}")
        lookup = {value: i for i, value in enumerate(VALUES[attribute])}
        return np.array(
            [
                lookup[objs[object_index].attribute(attribute)] if object_index < len(objs) else -1
                for objs in self.objects
            ]
        )


def _draw_object(
    rng: np.random.Generator, shape: str, colour: str, size: str, position: str, image_size: int
) -> ShapeObject:
    scale = image_size / _REFERENCE_SIZE
    centre_x, centre_y = _CENTRE[position]
    along, across = rng.uniform(-1, 1, size=2)
    if position in ("left", "right"):
        centre_x += along * _JITTER_ALONG
        centre_y += across * _JITTER_ACROSS
    else:
        centre_y += along * _JITTER_ALONG
        centre_x += across * _JITTER_ACROSS
    radius = rng.uniform(*_RADIUS[size])
    return ShapeObject(
        shape=shape,
        colour=colour,
        size=size,
        position=position,
        centre_x=float(centre_x * scale),
        centre_y=float(centre_y * scale),
        radius=float(radius * scale),
    )


def _random_attribute(rng: np.random.Generator, name: str) -> str:
    values = VALUES[name]
    return values[rng.integers(len(values))]


def generate(
    n: int,
    seed: int = 0,
    split: Literal["train", "heldout"] = "train",
    image_size: int = 32,
    two_object_fraction: float = 0.0,
) -> ShapesDataset:
    """Generate ``n`` ShapesWorld scenes.

    Args:
        n: number of scenes, at least 1.
        seed: base seed; with ``split`` it fixes every pixel and caption.
        split: ``"train"`` or ``"heldout"``; the two draw from independent
            random streams of the same seed, so they share no image.
        image_size: side of the square images in pixels, at least 16.
        two_object_fraction: share of scenes with two objects, in [0, 1].
            Their objects differ in colour or shape and sit in opposite regions
            (left/right or top/bottom); the caption names the left or top
            object first.

    Returns:
        A :class:`ShapesDataset`.

    Example:
        >>> data = generate(4, seed=1)
        >>> data.images.shape
        (4, 32, 32, 3)
    """
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {tuple(SPLITS)}")
    if not isinstance(image_size, (int, np.integer)) or image_size < 16:
        raise ValueError(f"image_size must be an integer of at least 16 pixels, got {image_size!r}")
    if not 0.0 <= two_object_fraction <= 1.0:
        raise ValueError(f"two_object_fraction must lie in [0, 1], got {two_object_fraction!r}")

    rng = np.random.default_rng([seed, SPLITS[split]])
    images = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    masks = np.zeros((n, 2, image_size, image_size), dtype=bool)
    objects: list[tuple[ShapeObject, ...]] = []
    captions: list[str] = []

    for i in range(n):
        noise = rng.integers(-_BACKGROUND_NOISE, _BACKGROUND_NOISE + 1, size=(image_size, image_size, 1))
        canvas = np.clip(_BACKGROUND + noise, 0, 255).repeat(3, axis=2).astype(np.uint8)

        if rng.random() < two_object_fraction:
            # The caption names the left (or top) object first, so every scene has one caption.
            positions = _OPPOSITE_PAIRS[rng.integers(len(_OPPOSITE_PAIRS))]
            first_look = (_random_attribute(rng, "shape"), _random_attribute(rng, "colour"))
            second_look = first_look
            while second_look == first_look:
                second_look = (_random_attribute(rng, "shape"), _random_attribute(rng, "colour"))
            scene = tuple(
                _draw_object(rng, shape, colour, _random_attribute(rng, "size"), position, image_size)
                for (shape, colour), position in zip((first_look, second_look), positions)
            )
            caption = pair_caption(*scene)
        else:
            obj = _draw_object(
                rng,
                _random_attribute(rng, "shape"),
                _random_attribute(rng, "colour"),
                _random_attribute(rng, "size"),
                _random_attribute(rng, "position"),
                image_size,
            )
            scene = (obj,)
            caption = single_object_caption(obj.shape, obj.colour, obj.size, obj.position)

        for j, obj in enumerate(scene):
            mask = shape_mask(obj.shape, obj.centre_x, obj.centre_y, obj.radius, image_size)
            canvas[mask] = COLOURS[obj.colour]
            masks[i, j] = mask
        images[i] = canvas
        objects.append(scene)
        captions.append(caption)

    return ShapesDataset(images=images, masks=masks, objects=objects, captions=captions, seed=seed, split=split)
