"""The CLIP vision tower as a vit-prisma ``HookedViT``.

vit-prisma 0.1.4 converts Hugging Face CLIP vision towers with
``HookedViT.from_pretrained(path, is_timm=False, is_clip=True)``, but two
gaps stop it from loading real OpenAI checkpoints faithfully:

* its MLP has no ``quick_gelu`` (x * sigmoid(1.702 x)), the activation of
  OpenAI CLIP, and raises on it;
* it sizes the output head from ``vision_config.projection_dim``, while
  ``CLIPModel`` projects to the top-level ``config.projection_dim``; the two
  differ in many saved configs.

:func:`hooked_vision_tower` loads through the library with a corrected copy
of the config and then puts ``quick_gelu`` back into every MLP. Layer norms
are not folded and writing weights are not centred, so
``blocks.{layer}.hook_resid_post`` equals the Hugging Face hidden state after
that layer, and the output equals ``CLIPModel.get_image_features``.

On the CPU, :func:`hooked_vision_tower` also calls
:func:`helpers.memory.retain_freed_memory` unless ``tune_allocator=False``.
A cache of every hook point then costs 1.03x to 1.08x a plain forward pass
on 2 cores instead of 1.18x to 1.34x (``benchmarks/README.md``).
"""

from __future__ import annotations

import contextlib
import copy
import io
import tempfile

import torch
from jaxtyping import Float
from vit_prisma.models.base_vit import HookedViT

from .loading import LoadedCLIP
from .memory import retain_freed_memory

# Activations vit-prisma 0.1.4 builds itself (Hugging Face name -> vit-prisma name).
_NATIVE_ACTIVATIONS = {"gelu": "gelu", "relu": "relu", "silu": "silu", "gelu_new": "gelu_new", "gelu_fast": "gelu_fast"}


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    """Apply OpenAI CLIP's activation, x * sigmoid(1.702 x)."""
    return x * torch.sigmoid(1.702 * x)


def hooked_vision_tower(loaded: LoadedCLIP, *, tune_allocator: bool = True) -> HookedViT:
    """Convert the vision tower and visual projection of ``loaded`` to a ``HookedViT``.

    The returned model maps ``pixel_values`` of shape (batch, 3, height, width)
    to unnormalised image embeddings of shape (batch, projection_dim), and
    exposes vit-prisma's hook points (``blocks.{layer}.attn.hook_pattern``,
    ``blocks.{layer}.hook_resid_post``, ...) through ``run_with_cache`` and
    ``run_with_hooks``.

    With ``tune_allocator`` and a model on the CPU, glibc keeps freed
    activation buffers for reuse (:func:`helpers.memory.retain_freed_memory`).
    The setting applies to the whole process and makes ``run_with_cache`` cheap.

    Raises:
        ValueError: if the vision tower uses an activation that neither
            vit-prisma nor this adapter implements.
    """
    config = copy.deepcopy(loaded.model.config)
    activation = config.vision_config.hidden_act
    if activation != "quick_gelu" and activation not in _NATIVE_ACTIVATIONS:
        raise ValueError(
            f"vision activation {activation!r} is not supported by the hooked vision tower; "
            f"supported: {sorted([*_NATIVE_ACTIVATIONS, 'quick_gelu'])}"
        )
    # vit-prisma builds its head from the vision config, so give it the model's projection size.
    config.vision_config.projection_dim = config.projection_dim
    if activation == "quick_gelu":
        # A placeholder that vit-prisma accepts; the real activation is set after loading.
        config.vision_config.hidden_act = "gelu"

    device = loaded.device
    with tempfile.TemporaryDirectory() as folder:
        config.save_pretrained(folder)
        # vit-prisma prints its whole config and a progress line; keep notebooks quiet.
        with contextlib.redirect_stdout(io.StringIO()):
            hooked = HookedViT.from_pretrained(
                folder,
                is_timm=False,
                is_clip=True,
                hf_model=loaded.model,
                fold_ln=False,
                center_writing_weights=False,
                fold_value_biases=False,
                device=device,
            )

    if activation == "quick_gelu":
        for block in hooked.blocks:
            block.mlp.act_fn = quick_gelu
        hooked.cfg.activation_name = "quick_gelu"
    hooked.cfg.model_name = loaded.name
    if tune_allocator and torch.device(device).type == "cpu":
        retain_freed_memory()
    return hooked.to(device).eval()


def image_embeddings(
    hooked: HookedViT, pixel_values: Float[torch.Tensor, "batch 3 height width"]
) -> Float[torch.Tensor, "batch d_proj"]:
    """Return the unnormalised image embeddings of the hooked vision tower."""
    with torch.no_grad():
        return hooked(pixel_values)
