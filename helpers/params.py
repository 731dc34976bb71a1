"""Validation of notebook parameters.

Every notebook checks its ``parameters`` cell with these functions, so a bad
value passed through papermill stops the run at once with a message that
names the parameter, the value and what is allowed.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch


class ParameterError(ValueError):
    """Raised when a notebook parameter has the wrong type or value."""


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` if it is a bool, else raise ParameterError."""
    if not isinstance(value, bool):
        raise ParameterError(f"parameter {name}={value!r} must be True or False")
    return value


def check_int(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``value`` if it is an integer within [minimum, maximum], else raise ParameterError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParameterError(f"parameter {name}={value!r} must be an integer")
    if minimum is not None and value < minimum:
        raise ParameterError(f"parameter {name}={value!r} must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise ParameterError(f"parameter {name}={value!r} must be at most {maximum}")
    return value


def check_float(name: str, value: Any, minimum: float | None = None, maximum: float | None = None) -> float:
    """Return ``value`` as a float if it is a number within [minimum, maximum], else raise ParameterError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParameterError(f"parameter {name}={value!r} must be a number")
    if value != value:
        raise ParameterError(f"parameter {name} must be a number, got NaN")
    if minimum is not None and value < minimum:
        raise ParameterError(f"parameter {name}={value!r} must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise ParameterError(f"parameter {name}={value!r} must be at most {maximum}")
    return float(value)


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise ParameterError."""
    choices = tuple(choices)
    if value not in choices:
        raise ParameterError(f"parameter {name}={value!r} is not allowed; choose one of {choices}")
    return value


def check_str(name: str, value: Any, allow_empty: bool = False) -> str:
    """Return ``value`` if it is a string (non-empty unless ``allow_empty``), else raise ParameterError."""
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise ParameterError(f"parameter {name}={value!r} must be a non-empty string")
    return value


def resolve_device(value: Any) -> torch.device:
    """Return the torch device named by the ``device`` parameter.

    ``"auto"`` picks CUDA when available, else the CPU. Asking for CUDA on a
    machine without it raises instead of silently running elsewhere.
    """
    check_str("device", value)
    if value == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(value)
    except RuntimeError:
        raise ParameterError(f"parameter device={value!r} is not a torch device; use 'cpu', 'cuda' or 'auto'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError(
            f"parameter device={value!r} asks for a GPU, but PyTorch sees none on this machine; "
            "use device='cpu' or device='auto'"
        )
    if device.type not in ("cpu", "cuda"):
        raise ParameterError(f"parameter device={value!r} is not supported; use 'cpu', 'cuda' or 'auto'")
    return device
