"""The embedded fusion model: a small BLIP image-text matching (ITM) model.

BLIP's ITM model (``transformers.BlipForImageTextRetrieval``) runs a ViT on
the image, then a BERT-style text encoder whose every layer cross-attends
from the caption tokens to the image patches. A linear head on the first
text token returns two logits, index 0 "no match" and index 1 "match".

This module builds the small configuration trained on ShapesWorld, its
word-level tokenizer and image processor, and loads or saves checkpoints.
:func:`load_blip` takes the embedded name ``"shapes-blip"``, a local folder
in Hugging Face format (for example a copy of ``Salesforce/blip-itm-base-coco``
saved with ``save_pretrained``) or a hub id. Weights load from safetensors
only, and no remote code is run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import (
    AutoImageProcessor,
    AutoTokenizer,
    BlipConfig,
    BlipForImageTextRetrieval,
    BlipImageProcessor,
    PreTrainedTokenizerFast,
)

from .folders import replace_folder
from .loading import _HUB_ID, ModelLoadError, check_checkpoint_folder
from .paths import MODELS_DIR
from .vocabulary import caption_words

logger = logging.getLogger(__name__)

# Embedded fusion model name -> folder in Hugging Face format under data/models/.
EMBEDDED_FUSION_MODELS: dict[str, str] = {"shapes-blip": "shapes-blip"}

# ITM head output indices (BLIP's convention).
NO_MATCH, MATCH = 0, 1

PAD, UNK, CLS, SEP = "[PAD]", "[UNK]", "[CLS]", "[SEP]"
# Maximum caption length in tokens, [CLS] and [SEP] included.
MAX_LENGTH = 16


@dataclass
class LoadedBLIP:
    """A BLIP image-text matching model with its tokenizer and image processor.

    Attributes:
        model: the ``transformers.BlipForImageTextRetrieval``, in eval mode.
        tokenizer: the tokenizer saved with the model.
        image_processor: the image processor saved with the model.
        name: the specification it was loaded from.
        source: ``"embedded"``, ``"local"``, ``"hub"`` or ``"new"`` (built in memory).
    """

    model: BlipForImageTextRetrieval
    tokenizer: object
    image_processor: object
    name: str
    source: str

    @property
    def image_size(self) -> int:
        """Side of the square images the vision encoder reads, in pixels."""
        return int(self.model.config.vision_config.image_size)

    @property
    def patch_size(self) -> int:
        """Side of one image patch, in pixels."""
        return int(self.model.config.vision_config.patch_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def pixel_values(self, images: np.ndarray, batch_size: int = 512) -> torch.Tensor:
        """Preprocess uint8 RGB images of shape (n, H, W, 3) into model input on the model's device."""
        chunks = [
            self.image_processor(images=list(images[start : start + batch_size]), return_tensors="pt")["pixel_values"]
            for start in range(0, len(images), batch_size)
        ]
        return torch.cat(chunks).to(self.device)

    def tokenize(self, captions: list[str]) -> dict[str, torch.Tensor]:
        """Tokenize captions, padded to the longest one, on the model's device."""
        tokens = self.tokenizer(list(captions), padding=True, truncation=True, return_tensors="pt")
        return {"input_ids": tokens["input_ids"].to(self.device), "attention_mask": tokens["attention_mask"].to(self.device)}


def itm_logits(
    model: BlipForImageTextRetrieval,
    pixel_values: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
) -> torch.Tensor:
    """Return the ITM logits (batch, 2) of ``model``, computed like its own forward pass.

    ``BlipForImageTextRetrieval.forward`` (transformers 5.25) builds the image
    attention mask on the CPU whatever the model's device; this builds it
    beside the image states, so the same call works on a GPU.
    """
    image_states = model.vision_model(pixel_values=pixel_values).last_hidden_state
    image_mask = torch.ones(image_states.shape[:-1], dtype=torch.long, device=image_states.device)
    text_states = model.text_encoder(
        input_ids=input_ids,
        attention_mask=attention_mask,
        encoder_hidden_states=image_states,
        encoder_attention_mask=image_mask,
    ).last_hidden_state
    return model.itm_head(text_states[:, 0])


def build_fusion_tokenizer(words: list[str] | None = None) -> PreTrainedTokenizerFast:
    """Build the word-level caption tokenizer of the embedded fusion model.

    Each caption becomes ``[CLS] words... [SEP]``, padded on the right with
    ``[PAD]``; the ITM head reads the ``[CLS]`` position. Text is lower-cased
    and split on whitespace and punctuation, and unknown words map to ``[UNK]``.
    """
    vocab = {token: i for i, token in enumerate((PAD, UNK, CLS, SEP))}
    for word in words if words is not None else caption_words():
        vocab.setdefault(word, len(vocab))

    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A {SEP}", special_tokens=[(CLS, vocab[CLS]), (SEP, vocab[SEP])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        cls_token=CLS,
        sep_token=SEP,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=MAX_LENGTH,
        padding_side="right",
    )


def fusion_image_processor(image_size: int = 32) -> BlipImageProcessor:
    """Return a BLIP image processor that resizes to ``image_size`` and normalises like OpenAI CLIP."""
    return BlipImageProcessor(size={"height": image_size, "width": image_size})


def shapes_blip_config(
    tokenizer: PreTrainedTokenizerFast,
    width: int = 64,
    layers: int = 3,
    heads: int = 4,
    image_size: int = 32,
    patch_size: int = 8,
) -> BlipConfig:
    """Return the config of the small ShapesWorld BLIP ITM model.

    Both encoders have ``layers`` layers of width ``width`` with ``heads``
    heads. The vision ``initializer_range`` is set to 0.02: BLIP's default
    (1e-10) starts the position and class embeddings at about zero, and a
    small model trained from scratch then never learns where a patch is.
    """
    vision_config = dict(
        hidden_size=width,
        intermediate_size=4 * width,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        image_size=image_size,
        patch_size=patch_size,
        initializer_range=0.02,
    )
    text_config = dict(
        vocab_size=len(tokenizer),
        hidden_size=width,
        encoder_hidden_size=width,
        intermediate_size=4 * width,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=tokenizer.model_max_length,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        sep_token_id=tokenizer.sep_token_id,
        is_decoder=True,  # BlipTextLayer builds its cross-attention only when is_decoder is set.
    )
    return BlipConfig(text_config=text_config, vision_config=vision_config, image_text_hidden_size=width // 2)


def new_shapes_blip(seed: int = 0, **config_overrides) -> LoadedBLIP:
    """Build a randomly initialised ShapesWorld BLIP ITM model with its tokenizer and processor."""
    tokenizer = build_fusion_tokenizer()
    config = shapes_blip_config(tokenizer, **config_overrides)
    torch.manual_seed(seed)
    model = BlipForImageTextRetrieval(config)
    model.config._attn_implementation = "eager"
    processor = fusion_image_processor(config.vision_config.image_size)
    return LoadedBLIP(model.eval(), tokenizer, processor, "new shapes-blip", "new")


def embedded_fusion_dir(name: str = "shapes-blip") -> Path:
    """Return the folder of embedded fusion model ``name`` (which may not exist yet)."""
    if name not in EMBEDDED_FUSION_MODELS:
        raise ValueError(f"unknown embedded fusion model {name!r}; embedded: {sorted(EMBEDDED_FUSION_MODELS)}")
    return MODELS_DIR / EMBEDDED_FUSION_MODELS[name]


def check_blip_folder(path: Path) -> None:
    """Check that ``path`` contains a BLIP checkpoint in Hugging Face format with safetensors weights.

    Raises:
        ModelLoadError: naming the folder and what is wrong with it.
    """
    check_checkpoint_folder(
        path,
        model_type="blip",
        family="BLIP",
        expected="a BLIP image-text matching model (model_type 'blip'), for example a saved copy of "
        "Salesforce/blip-itm-base-coco",
    )


def _load_pretrained(source: str | Path, name: str, kind: str) -> LoadedBLIP:
    model = BlipForImageTextRetrieval.from_pretrained(source, use_safetensors=True, attn_implementation="eager")
    tokenizer = AutoTokenizer.from_pretrained(source)
    image_processor = AutoImageProcessor.from_pretrained(source)
    return LoadedBLIP(model.eval(), tokenizer, image_processor, name, kind)


def load_blip(spec: str, device: str | torch.device = "cpu") -> LoadedBLIP:
    """Load a BLIP image-text matching model from an embedded name, a local folder or a hub id.

    Args:
        spec: ``"shapes-blip"``, a folder path, or a hub id like ``"Salesforce/blip-itm-base-coco"``.
        device: where to put the model.

    Raises:
        ModelLoadError: with a one-line message naming ``spec`` and what to do.

    NOTE: the tests load the embedded model and small random BLIP checkpoints;
    a saved copy of Salesforce/blip-itm-base-coco was not available offline to test against.
    """
    hint = f"embedded fusion models: {', '.join(sorted(EMBEDDED_FUSION_MODELS))}"
    if not isinstance(spec, (str, Path)) or not str(spec).strip():
        raise ModelLoadError(f"model must be a non-empty string, got {spec!r}; {hint}")
    spec = str(spec).strip()

    if spec in EMBEDDED_FUSION_MODELS:
        folder = embedded_fusion_dir(spec)
        if not folder.is_dir():
            raise ModelLoadError(
                f"embedded model {spec!r} is missing from {str(folder)!r}; restore data/ from the repository "
                "or retrain it with notebooks/03_fusion_tracing.ipynb (train=True)"
            )
        check_blip_folder(folder)
        loaded = _load_pretrained(folder, spec, "embedded")
    elif Path(spec).expanduser().exists():
        folder = Path(spec).expanduser()
        if not folder.is_dir():
            raise ModelLoadError(f"model path {spec!r} is a file; pass the folder that contains config.json")
        check_blip_folder(folder)
        loaded = _load_pretrained(folder, spec, "local")
    elif _HUB_ID.match(spec):
        try:
            loaded = _load_pretrained(spec, spec, "hub")
        except (OSError, ValueError) as error:
            logger.debug("hub load of %s failed: %r", spec, error)
            raise ModelLoadError(
                f"cannot load hub model {spec!r}: it is not in the local Hugging Face cache and the hub is "
                f"unreachable or rejected it. Save a copy with save_pretrained and pass its folder; {hint}"
            ) from None
    else:
        raise ModelLoadError(
            f"model {spec!r} is neither an embedded model, an existing folder, nor a hub id 'owner/name'; {hint}"
        )
    loaded.model.to(device)
    return loaded


def save_blip(loaded: LoadedBLIP, folder: str | Path) -> Path:
    """Save a BLIP checkpoint (safetensors), tokenizer and image processor to ``folder``.

    Files are written to a temporary sibling folder and renamed into place, so
    an interrupted save never leaves a half-written checkpoint. An existing
    ``folder`` is replaced.
    """

    def write(staging: Path) -> None:
        loaded.model.save_pretrained(staging, safe_serialization=True)
        loaded.tokenizer.save_pretrained(staging)
        loaded.image_processor.save_pretrained(staging)

    return replace_folder(folder, write)
