import numpy as np
import pytest

from helpers import shapes


def test_generate_is_deterministic():
    first = shapes.generate(40, seed=7, two_object_fraction=0.5)
    second = shapes.generate(40, seed=7, two_object_fraction=0.5)
    assert np.array_equal(first.images, second.images)
    assert np.array_equal(first.masks, second.masks)
    assert first.captions == second.captions
    assert first.objects == second.objects


def test_seeds_and_splits_differ():
    train = shapes.generate(20, seed=7, split="train")
    heldout = shapes.generate(20, seed=7, split="heldout")
    other_seed = shapes.generate(20, seed=8, split="train")
    assert not np.array_equal(train.images, heldout.images)
    assert not np.array_equal(train.images, other_seed.images)


def test_mask_pixels_have_object_colour():
    data = shapes.generate(60, seed=3, two_object_fraction=0.5)
    for image, masks, objects in zip(data.images, data.masks, data.objects):
        for j, obj in enumerate(objects):
            assert masks[j].sum() > 0
            colours = image[masks[j]]
            assert (colours == shapes.COLOURS[obj.colour]).all()
        if len(objects) == 1:
            assert masks[1].sum() == 0


def test_background_never_has_object_colour():
    data = shapes.generate(30, seed=4, two_object_fraction=0.5)
    background = ~data.masks.any(axis=1)
    pixels = data.images[background]
    for rgb in shapes.COLOURS.values():
        assert not (pixels == rgb).all(axis=1).any()


def test_two_object_masks_are_disjoint():
    data = shapes.generate(50, seed=5, two_object_fraction=1.0)
    assert (data.n_objects == 2).all()
    assert not (data.masks[:, 0] & data.masks[:, 1]).any()


def test_object_lies_in_its_region():
    data = shapes.generate(200, seed=6)
    size = data.image_size
    for masks, (obj,) in zip(data.masks, data.objects):
        ys, xs = np.nonzero(masks[0])
        centre_x, centre_y = xs.mean() + 0.5, ys.mean() + 0.5
        expected = {
            "left": centre_x < size / 2,
            "right": centre_x > size / 2,
            "top": centre_y < size / 2,
            "bottom": centre_y > size / 2,
        }
        assert expected[obj.position], (obj, centre_x, centre_y)


def test_large_objects_cover_more_pixels():
    data = shapes.generate(300, seed=8)
    area = data.masks[:, 0].sum(axis=(1, 2))
    sizes = data.labels("size")
    for shape in shapes.SHAPES:
        of_shape = data.labels("shape") == shapes.SHAPES.index(shape)
        small = area[of_shape & (sizes == 0)]
        large = area[of_shape & (sizes == 1)]
        assert small.max() < large.min(), shape


def test_captions_match_attributes():
    data = shapes.generate(100, seed=9, two_object_fraction=0.3)
    for caption, objects in zip(data.captions, data.objects):
        if len(objects) == 1:
            parsed = shapes.caption_attributes(caption)
            for name, value in parsed.items():
                assert objects[0].attribute(name) == value
        else:
            first, second = objects
            assert caption == f"a {first.colour} {first.shape} and a {second.colour} {second.shape}"
            assert first.position in ("left", "top")
            assert (first.shape, first.colour) != (second.shape, second.colour)


def test_single_object_caption_count():
    captions = shapes.all_single_object_captions()
    assert len(captions) == len(set(captions)) == 5 * 4 * 2 * 4


def test_labels_index_values():
    data = shapes.generate(30, seed=10, two_object_fraction=0.5)
    colour = data.labels("colour")
    for label, objects in zip(colour, data.objects):
        assert shapes.VALUES["colour"][label] == objects[0].colour
    second = data.labels("shape", object_index=1)
    assert ((second == -1) == (data.n_objects == 1)).all()


def test_mask_area_matches_geometry():
    # Areas in units of radius squared: a circle, a square of half-side 0.85 r,
    # a triangle of height 1.8 r and base 2 r, a cross of two 2r x 2r/3 arms.
    expected = {"circle": np.pi, "square": 1.7**2, "triangle": 1.8, "cross": 8 / 3 - 4 / 9}
    data = shapes.generate(200, seed=11, image_size=128)
    area = data.masks[:, 0].sum(axis=(1, 2))
    for shape, value in expected.items():
        objects = [(a, objs[0].radius) for a, objs in zip(area, data.objects) if objs[0].shape == shape]
        ratio = np.mean([a / r**2 for a, r in objects])
        assert abs(ratio - value) / value < 0.02, (shape, ratio, value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n": 0}, "n must be a positive integer"),
        ({"n": 5, "split": "test"}, "unknown split"),
        ({"n": 5, "image_size": 8}, "image_size"),
        ({"n": 5, "two_object_fraction": 1.5}, "two_object_fraction"),
    ],
)
def test_generate_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        shapes.generate(**kwargs)


def test_caption_parser_rejects_other_text():
    with pytest.raises(ValueError, match="not a one-object"):
        shapes.caption_attributes("a red circle and a blue square")
    with pytest.raises(ValueError, match="unknown colour"):
        shapes.caption_attributes("a small pink circle on the left")
