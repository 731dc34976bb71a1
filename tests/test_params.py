import pytest
import torch

from helpers.params import (
    ParameterError,
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_str,
    resolve_device,
)


def test_int_accepts_range():
    assert check_int("n", 5, minimum=1, maximum=5) == 5


@pytest.mark.parametrize("value", [0, -3])
def test_int_below_minimum_names_parameter(value):
    with pytest.raises(ParameterError, match=rf"n_images={value} must be at least 1"):
        check_int("n_images", value, minimum=1)


@pytest.mark.parametrize("value", ["5", 5.0, True, None])
def test_int_rejects_other_types(value):
    with pytest.raises(ParameterError, match="must be an integer"):
        check_int("n_images", value)


def test_int_above_maximum():
    with pytest.raises(ParameterError, match="at most 10"):
        check_int("k", 11, maximum=10)


def test_bool_rejects_strings():
    with pytest.raises(ParameterError, match="quick='yes' must be True or False"):
        check_bool("quick", "yes")


def test_float_rejects_nan():
    with pytest.raises(ParameterError, match="NaN"):
        check_float("lr", float("nan"))


def test_choice_lists_allowed():
    with pytest.raises(ParameterError, match=r"choose one of \('shapes', 'digits'\)"):
        check_choice("dataset", "imagenet", ("shapes", "digits"))


def test_str_rejects_empty():
    with pytest.raises(ParameterError, match="non-empty string"):
        check_str("model", "")
    assert check_str("output_dir", "", allow_empty=True) == ""


def test_device_cpu():
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_device_cuda_without_gpu_raises():
    with pytest.raises(ParameterError, match="asks for a GPU"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")


def test_device_rejects_nonsense():
    with pytest.raises(ParameterError, match="not a torch device"):
        resolve_device("gpu0")
