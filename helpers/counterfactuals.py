"""Counterfactual ShapesWorld scenes for causal tracing.

A semantic image pair keeps a scene's background and every object's shape,
size and place, and changes one object's colour. :func:`render_scene` paints
a list of objects over a background image, so re-rendering a scene with one
object replaced changes exactly the pixels of that object's mask. The
generator in ``helpers.shapes`` is not touched: its outputs stay the same.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

from . import shapes


def render_scene(objects: Sequence[shapes.ShapeObject], background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Paint ``objects`` in order over a copy of ``background`` (uint8, H x W x 3).

    Returns:
        The image and the object masks, of shape (len(objects), H, W).
    """
    if background.ndim != 3 or background.shape[0] != background.shape[1] or background.shape[2] != 3:
        raise ValueError(f"background must be a square RGB image (H, H, 3), got shape {background.shape}")
    image = background.copy()
    size = background.shape[0]
    masks = np.zeros((len(objects), size, size), dtype=bool)
    for index, obj in enumerate(objects):
        if obj.colour not in shapes.COLOURS:
            raise ValueError(f"unknown colour {obj.colour!r}; expected one of {tuple(shapes.COLOURS)}")
        masks[index] = shapes.shape_mask(obj.shape, obj.centre_x, obj.centre_y, obj.radius, size)
        image[masks[index]] = shapes.COLOURS[obj.colour]
    return image, masks


def recolour(
    data: shapes.ShapesDataset, index: int, new_colour: str, object_index: int = 0
) -> tuple[np.ndarray, tuple[shapes.ShapeObject, ...]]:
    """Re-render scene ``index`` of ``data`` with object ``object_index`` painted ``new_colour``.

    The scene's own image serves as background: outside the objects' masks
    it is the generator's background, and every mask is painted over again.

    Returns:
        The new image and the new objects.
    """
    scene = data.objects[index]
    if not 0 <= object_index < len(scene):
        raise ValueError(f"scene {index} has {len(scene)} object(s); object_index {object_index} is out of range")
    objects = list(scene)
    objects[object_index] = dataclasses.replace(objects[object_index], colour=new_colour)
    image, _ = render_scene(objects, data.images[index])
    return image, tuple(objects)


@dataclass
class ColourPair:
    """A clean scene, its true caption and the two colour corruptions of it.

    Attributes:
        clean_image: the generator's image.
        clean_caption: its true caption.
        corrupted_image: the same scene with the object recoloured to ``new_colour``
            (semantic image pair; the caption stays ``clean_caption``).
        corrupted_caption: the clean caption with the colour word replaced by
            ``new_colour`` (symmetric token replacement; the image stays ``clean_image``).
        mask: pixel mask of the recoloured object.
        colour, new_colour: the true and the replacement colour.
    """

    clean_image: np.ndarray
    clean_caption: str
    corrupted_image: np.ndarray
    corrupted_caption: str
    mask: np.ndarray
    colour: str
    new_colour: str


def colour_pairs(data: shapes.ShapesDataset, n: int, seed: int = 0) -> list[ColourPair]:
    """Build ``n`` colour counterfactual pairs from the one-object scenes of ``data``.

    The replacement colour is drawn uniformly from the other four colours.
    """
    single = np.flatnonzero(data.n_objects == 1)
    if n > len(single):
        raise ValueError(f"requested {n} pairs but the data set has only {len(single)} one-object scenes; generate more scenes")
    rng = np.random.default_rng(seed)
    pairs = []
    for index in single[:n]:
        obj = data.objects[index][0]
        others = [colour for colour in shapes.COLOURS if colour != obj.colour]
        new_colour = others[rng.integers(len(others))]
        image, _ = recolour(data, int(index), new_colour)
        caption = shapes.single_object_caption(obj.shape, new_colour, obj.size, obj.position)
        pairs.append(
            ColourPair(
                clean_image=data.images[index],
                clean_caption=data.captions[index],
                corrupted_image=image,
                corrupted_caption=caption,
                mask=data.masks[index, 0],
                colour=obj.colour,
                new_colour=new_colour,
            )
        )
    return pairs


def patch_overlap(mask: np.ndarray, patch_size: int, image_size: int | None = None) -> np.ndarray:
    """Return, for each image patch in row-major order, the share of its pixels inside ``mask``.

    Args:
        mask: boolean pixel mask of a square image.
        patch_size: side of a model patch, in pixels of the model's input.
        image_size: side of the model's input image; the mask is first resized
            to it (nearest neighbour) when it differs, as the image processor
            resizes the image. None keeps the mask's own size.
    """
    if image_size is not None and image_size != mask.shape[0]:
        resized = Image.fromarray(mask.astype(np.uint8) * 255).resize((image_size, image_size), Image.NEAREST)
        mask = np.asarray(resized) > 127
    size = mask.shape[0]
    if size % patch_size:
        raise ValueError(f"image side {size} is not a multiple of the patch size {patch_size}")
    grid = size // patch_size
    return mask.reshape(grid, patch_size, grid, patch_size).mean(axis=(1, 3)).reshape(-1)
