"""Helpers shared by the notebooks of the cross-modal interpretability book."""

import warnings

# transformers and vit-prisma import tqdm.auto, which warns inside a notebook
# when ipywidgets is missing and then draws text progress bars, the kind the
# helpers draw anyway. The book leaves ipywidgets out, since widget outputs
# would load their JavaScript from a CDN.
warnings.filterwarnings("ignore", message="IProgress not found", module="tqdm")

from .loading import LoadedCLIP, ModelLoadError, load_clip  # noqa: E402

__all__ = ["LoadedCLIP", "ModelLoadError", "load_clip"]
