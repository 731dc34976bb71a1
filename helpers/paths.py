"""Locations of shipped data, checkpoints and build outputs in the repository."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data"
MODELS_DIR = DATA_DIR / "models"


def build_dir() -> Path:
    """Return the folder for run outputs (executed notebooks, caches, fresh checkpoints).

    ``$BOOK_BUILD_DIR`` overrides the default ``<repo>/_build``. Runs write
    here, never into ``notebooks/`` or ``data/``.
    """
    return Path(os.environ.get("BOOK_BUILD_DIR", REPO_ROOT / "_build")).resolve()
