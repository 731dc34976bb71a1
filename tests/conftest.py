"""Shared fixtures: a tiny random CLIP saved like a hub checkpoint, and offline settings."""

from __future__ import annotations

import os
import tempfile

# Notebook runs inside the tests write their outputs here, not into the repository.
os.environ.setdefault("BOOK_BUILD_DIR", tempfile.mkdtemp(prefix="book-tests-"))
# No test may reach the Hugging Face hub; set before transformers is imported.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402
from transformers import CLIPModel  # noqa: E402

from helpers.embedded import clip_image_processor, shapes_clip_config  # noqa: E402
from helpers.loading import save_clip  # noqa: E402
from helpers.vocabulary import build_tokenizer  # noqa: E402


@pytest.fixture(scope="session")
def quick_gelu_clip_dir(tmp_path_factory):
    """A randomly initialised quick_gelu CLIP saved in Hugging Face format.

    It replaces a real hub checkpoint such as openai/clip-vit-base-patch32:
    quick_gelu in both towers, 224-pixel images with 32-pixel patches, and a
    vision config whose projection_dim (512, the default) differs from the
    model's (48).
    """
    torch.manual_seed(1234)
    tokenizer = build_tokenizer()
    config = shapes_clip_config(tokenizer, width=64, layers=2, heads=2, image_size=224, patch_size=32, projection_dim=48)
    config.vision_config.projection_dim = 512
    model = CLIPModel(config)
    folder = tmp_path_factory.mktemp("clip-quick-gelu")
    save_clip(model, tokenizer, clip_image_processor(224), folder)
    return folder


def _tree_digest(folder):
    import hashlib

    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.fixture(scope="session")
def quick_book(tmp_path_factory):
    """Build the whole book once with every notebook in quick mode, in a temporary folder.

    Returns the build folder, the build's exit code and output, and digests of
    notebooks/ and data/ taken before the build.
    """
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    build = tmp_path_factory.mktemp("quick-book")
    before = {"sources_before": _tree_digest(repo / "notebooks"), "data_before": _tree_digest(repo / "data")}
    result = subprocess.run(
        [sys.executable, str(repo / "scripts" / "build_book.py"), "--quick"],
        cwd=repo,
        env={**os.environ, "BOOK_BUILD_DIR": str(build)},
        capture_output=True,
        text=True,
    )
    return {"build": build, "returncode": result.returncode, "output": result.stdout + result.stderr, **before}
