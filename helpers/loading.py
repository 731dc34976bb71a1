"""Load a CLIP dual encoder by embedded name, local folder or hub id.

One entry point, :func:`load_clip`, serves the notebooks whatever the
researcher points them at:

* an embedded model name (``"shapes-clip"``), shipped under ``data/models/``;
* a local folder in Hugging Face CLIP format (``config.json``,
  ``model.safetensors``, tokenizer and ``preprocessor_config.json``), for
  example a copy of ``openai/clip-vit-base-patch32`` saved with
  ``save_pretrained``;
* a hub id such as ``openai/clip-vit-base-patch32``, which needs network
  access or a copy in the local Hugging Face cache.

Weights load from safetensors only: pickle checkpoints (``.bin``, ``.pt``,
``.pth``, ``.ckpt``) are rejected, and no remote code is run.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel
from transformers.utils import logging as transformers_logging

from .embedded import EMBEDDED_MODELS, embedded_model_dir
from .folders import replace_folder

logger = logging.getLogger(__name__)
# Weight-loading progress bars of transformers only clutter notebook outputs.
transformers_logging.disable_progress_bar()

_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelLoadError(ValueError):
    """Raised when a model specification cannot be resolved or loaded."""


@dataclass
class LoadedCLIP:
    """A CLIP model with its tokenizer and image processor.

    Attributes:
        model: the ``transformers.CLIPModel``, in eval mode.
        tokenizer: the tokenizer saved with the model.
        image_processor: the image processor saved with the model; it resizes
            and normalises images of any size and mode.
        name: the specification it was loaded from.
        source: ``"embedded"``, ``"local"`` or ``"hub"``.
    """

    model: CLIPModel
    tokenizer: object
    image_processor: object
    name: str
    source: str

    @property
    def image_size(self) -> int:
        """Side of the square images the vision tower reads, in pixels."""
        return int(self.model.config.vision_config.image_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def _embedded_hint() -> str:
    return f"embedded models: {', '.join(sorted(EMBEDDED_MODELS))}"


def check_checkpoint_folder(
    path: Path,
    model_type: str = "clip",
    family: str = "CLIP",
    expected: str | None = None,
) -> None:
    """Check that ``path`` contains a Hugging Face checkpoint of ``model_type`` in safetensors.

    Args:
        path: the checkpoint folder.
        model_type: the ``model_type`` that config.json must name.
        family: the model family named in the message about a missing config.json.
        expected: what the message about a wrong ``model_type`` says the loader
            needs; by default a CLIP dual encoder and the embedded models.

    Raises:
        ModelLoadError: naming the folder and what is wrong with it.
    """
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelLoadError(
            f"folder {str(path)!r} has no config.json; expected a Hugging Face {family} checkpoint "
            "(config.json, model.safetensors, tokenizer files, preprocessor_config.json)"
        )
    try:
        config = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelLoadError(f"config.json in {str(path)!r} is not valid JSON: {error}") from None
    found_type = config.get("model_type") if isinstance(config, dict) else None
    if found_type is None:
        raise ModelLoadError(
            f"config.json in {str(path)!r} has no model_type; expected model_type {model_type!r} as "
            f"save_pretrained writes it for a Hugging Face {family} checkpoint"
        )
    if found_type != model_type:
        if expected is None:
            expected = f"a CLIP dual encoder (model_type 'clip'); {_embedded_hint()}"
        raise ModelLoadError(f"checkpoint {str(path)!r} is a {found_type!r} model; this loader needs {expected}")
    safetensors = list(path.glob("*.safetensors")) + list(path.glob("*.safetensors.index.json"))
    if not safetensors:
        pickles = sorted(p.name for p in path.iterdir() if p.suffix in _PICKLE_SUFFIXES)
        if pickles:
            raise ModelLoadError(
                f"checkpoint {str(path)!r} has only pickle weights ({', '.join(pickles)}); pickle files "
                "are never loaded because they can run code. Convert the weights to safetensors "
                "(model.save_pretrained(folder, safe_serialization=True)) in a trusted environment"
            )
        raise ModelLoadError(f"checkpoint {str(path)!r} has no model.safetensors")


def _load_folder(path: Path, name: str, source: str) -> LoadedCLIP:
    check_checkpoint_folder(path)
    model = CLIPModel.from_pretrained(path, use_safetensors=True, attn_implementation="eager")
    tokenizer = AutoTokenizer.from_pretrained(path)
    image_processor = AutoImageProcessor.from_pretrained(path)
    return LoadedCLIP(model.eval(), tokenizer, image_processor, name, source)


def _load_hub(model_id: str) -> LoadedCLIP:
    try:
        model = CLIPModel.from_pretrained(model_id, use_safetensors=True, attn_implementation="eager")
        tokenizer = AutoTokenizer.from_pretrained(model_id)
        image_processor = AutoImageProcessor.from_pretrained(model_id)
    except (OSError, ValueError, EnvironmentError) as error:
        logger.debug("hub load of %s failed: %r", model_id, error)
        raise ModelLoadError(
            f"cannot load hub model {model_id!r}: it is not in the local Hugging Face cache and the "
            f"hub is unreachable or refused it. Save a copy with save_pretrained on a machine with "
            f"network access and pass its folder path instead, or use an embedded model "
            f"({', '.join(sorted(EMBEDDED_MODELS))})"
        ) from None
    return LoadedCLIP(model.eval(), tokenizer, image_processor, model_id, "hub")


def load_clip(spec: str, device: str | torch.device = "cpu") -> LoadedCLIP:
    """Load a CLIP model from an embedded name, a local folder or a hub id.

    Args:
        spec: ``"shapes-clip"``, a folder path, or a hub id like
            ``"openai/clip-vit-base-patch32"``.
        device: where to put the model (``"cpu"``, ``"cuda"``, ...).

    Returns:
        A :class:`LoadedCLIP` in eval mode.

    Raises:
        ModelLoadError: with a one-line message that names ``spec`` and what to
            do, when it cannot be resolved or loaded.
    """
    if not isinstance(spec, (str, Path)) or not str(spec).strip():
        raise ModelLoadError(f"model must be a non-empty string, got {spec!r}; {_embedded_hint()}")
    spec = str(spec).strip()

    if spec in EMBEDDED_MODELS:
        folder = embedded_model_dir(spec)
        if not folder.is_dir():
            raise ModelLoadError(
                f"embedded model {spec!r} is missing from {str(folder)!r}; restore data/ from the "
                "repository or retrain it with notebooks/00_embedded_models.ipynb"
            )
        loaded = _load_folder(folder, spec, "embedded")
    elif Path(spec).expanduser().exists():
        folder = Path(spec).expanduser()
        if not folder.is_dir():
            raise ModelLoadError(
                f"model path {spec!r} is a file; pass the folder that contains config.json and model.safetensors"
            )
        loaded = _load_folder(folder, spec, "local")
    elif _HUB_ID.match(spec):
        loaded = _load_hub(spec)
    else:
        raise ModelLoadError(
            f"model {spec!r} is neither an embedded model, an existing folder, nor a hub id "
            f"of the form 'owner/name'; {_embedded_hint()}"
        )
    loaded.model.to(device)
    return loaded


def save_clip(model: CLIPModel, tokenizer, image_processor, folder: str | Path) -> Path:
    """Save a CLIP checkpoint (safetensors), tokenizer and image processor to ``folder``.

    Everything is written to a temporary sibling folder first and then renamed
    into place, so an interrupted save never leaves a half-written checkpoint.
    An existing ``folder`` is replaced.
    """

    def write(staging: Path) -> None:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        image_processor.save_pretrained(staging)

    return replace_folder(folder, write)
