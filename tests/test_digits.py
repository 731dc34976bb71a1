import numpy as np
import pytest

from helpers.digits import digit_caption, load_digits_dataset


def test_digits_resized_and_captioned():
    data = load_digits_dataset(image_size=32, n=50, seed=0)
    assert data.images.shape == (50, 32, 32, 3)
    assert data.images.dtype == np.uint8
    assert (data.images[..., 0] == data.images[..., 2]).all()
    assert data.captions[0] == digit_caption(int(data.labels[0]))
    assert digit_caption(7) == "a handwritten seven"


def test_digits_full_set_and_determinism():
    assert len(load_digits_dataset()) == 1797
    first = load_digits_dataset(n=20, seed=3)
    second = load_digits_dataset(n=20, seed=3)
    assert np.array_equal(first.images, second.images)


def test_digits_reject_bad_count():
    with pytest.raises(ValueError, match="between 1 and 1797"):
        load_digits_dataset(n=5000)
