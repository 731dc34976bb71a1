"""Configurations of the embedded models that the repository trains and ships."""

from __future__ import annotations

from transformers import CLIPConfig, PreTrainedTokenizerFast

from .paths import MODELS_DIR

# Embedded model name -> folder in Hugging Face format under data/models/.
EMBEDDED_MODELS: dict[str, str] = {
    "shapes-clip": "shapes-clip",
}


def embedded_model_dir(name: str):
    """Return the folder of embedded model ``name`` (which may not exist yet)."""
    if name not in EMBEDDED_MODELS:
        raise ValueError(f"unknown embedded model {name!r}; embedded models: {sorted(EMBEDDED_MODELS)}")
    return MODELS_DIR / EMBEDDED_MODELS[name]


def shapes_clip_config(
    tokenizer: PreTrainedTokenizerFast,
    width: int = 128,
    layers: int = 3,
    heads: int = 4,
    image_size: int = 32,
    patch_size: int = 8,
    projection_dim: int = 64,
) -> CLIPConfig:
    """Return the config of the small ShapesWorld CLIP (about 1.2 M parameters by default).

    Both towers use ``quick_gelu`` like OpenAI's CLIP. The text config takes
    its vocabulary size and special-token ids from ``tokenizer``: with
    CLIP's default end-of-text id (49407) the text tower would pool the wrong
    token and give every caption the same embedding.
    """
    text_config = dict(
        vocab_size=len(tokenizer),
        hidden_size=width,
        intermediate_size=4 * width,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=tokenizer.model_max_length,
        hidden_act="quick_gelu",
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        projection_dim=projection_dim,
    )
    vision_config = dict(
        hidden_size=width,
        intermediate_size=4 * width,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        image_size=image_size,
        patch_size=patch_size,
        hidden_act="quick_gelu",
        projection_dim=projection_dim,
    )
    return CLIPConfig(
        text_config=text_config,
        vision_config=vision_config,
        projection_dim=projection_dim,
        logit_scale_init_value=2.6592,
    )


def clip_image_processor(image_size: int):
    """Return a CLIP image processor that resizes and centre-crops to ``image_size``.

    It keeps OpenAI CLIP's mean and standard deviation, so embedded and hub
    models normalise pixels the same way.
    """
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
    )
