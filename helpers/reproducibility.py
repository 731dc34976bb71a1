"""Seeding and a record of the software a run used."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import random

import numpy as np
import torch

# Packages whose versions the reproducibility page reports.
RECORDED_PACKAGES: tuple[str, ...] = (
    "torch", "torchvision", "transformers", "tokenizers", "safetensors", "vit-prisma",
    "numpy", "scipy", "scikit-learn", "scikit-image", "plotly", "papermill", "jupyter-book",
)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch, and make PyTorch pick deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def package_versions(packages: tuple[str, ...] = RECORDED_PACKAGES) -> dict[str, str]:
    """Return the installed version of each package ("not installed" when missing)."""
    versions = {"python": platform.python_version()}
    for name in packages:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def machine_summary() -> dict[str, str | int]:
    """Return the processor, core count and PyTorch thread count of this machine."""
    return {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_count": os.cpu_count() or 0,
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
    }
