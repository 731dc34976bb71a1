"""Helpers shared by the notebooks of the cross-modal interpretability book."""

from .loading import LoadedCLIP, ModelLoadError, load_clip

__all__ = ["LoadedCLIP", "ModelLoadError", "load_clip"]
