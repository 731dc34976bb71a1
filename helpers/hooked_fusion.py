"""Named hook points on a BLIP image-text matching model.

:class:`HookedBlipITM` wraps ``transformers.BlipForImageTextRetrieval`` and
exposes its activations under names that follow ``helpers.hooked_text``
with a ``vision.`` or ``text.`` prefix, so patching and caching code can
address any activation of either encoder by name. Calling it maps a batch of
inputs to the ITM logits of shape (batch, 2).

Vision encoder (pre-LayerNorm ViT; position 0 is the class token, positions
1.. are the image patches in row-major order):

=========================================  ==========================================  ================
name                                       activation                                  shape
=========================================  ==========================================  ================
``vision.hook_embed``                      patch + position embeddings                 batch pos d_model
``vision.blocks.{l}.hook_resid_pre``       residual stream entering layer l            batch pos d_model
``vision.blocks.{l}.attn.hook_pattern``    self-attention pattern (read-only)          batch head query key
``vision.blocks.{l}.attn.hook_z``          per-head attention output before W_O        batch pos head d_head
``vision.blocks.{l}.hook_attn_out``        attention output added to the residual      batch pos d_model
``vision.blocks.{l}.hook_mlp_out``         MLP output added to the residual            batch pos d_model
``vision.blocks.{l}.hook_resid_post``      residual stream leaving layer l             batch pos d_model
``vision.ln_post.hook_normalized``         final LayerNorm output, read by the text    batch pos d_model
                                           encoder's cross-attention
=========================================  ==========================================  ================

Text encoder (post-LayerNorm BERT layers; position 0 is ``[CLS]``, where the ITM head reads):

=========================================  ==========================================  ================
``text.hook_embed``                        token + position embeddings, normalised     batch pos d_model
``text.blocks.{l}.hook_resid_pre``         residual stream entering layer l            batch pos d_model
``text.blocks.{l}.attn.hook_pattern``      self-attention pattern (read-only)          batch head query key
``text.blocks.{l}.attn.hook_z``            per-head self-attention output before W_O   batch pos head d_head
``text.blocks.{l}.hook_resid_mid``         stream after self-attention and LayerNorm   batch pos d_model
``text.blocks.{l}.crossattn.hook_pattern`` cross-attention from tokens to image        batch head token image_pos
                                           positions (read-only)
``text.blocks.{l}.crossattn.hook_z``       per-head cross-attention output before W_O  batch pos head d_head
``text.blocks.{l}.hook_resid_cross``       stream after cross-attention and LayerNorm  batch pos d_model
``text.blocks.{l}.mlp.hook_post``          MLP hidden activation                       batch pos d_mlp
``text.blocks.{l}.hook_resid_post``        residual stream leaving layer l             batch pos d_model
=========================================  ==========================================  ================

A hook function has the TransformerLens signature ``fn(activation, hook)``
and may return a replacement tensor of the same shape. Attention patterns
are computed inside the attention modules, so they are read-only: a hook
that returns a value there raises an error. The text encoder never attends
from image patches to text, so BLIP's ITM model has no text-to-image
cross-attention to hook.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from jaxtyping import Float
from torch import nn

from .fusion import MATCH, NO_MATCH, LoadedBLIP, itm_logits
from .module_hooks import HookFunction, HookRegistry, NameFilter, head_split_hook, input_hook, output_hook, pattern_hook

FusionInputs = dict[str, torch.Tensor]

_VISION_SUFFIXES = (
    "hook_resid_pre",
    "attn.hook_pattern",
    "attn.hook_z",
    "hook_attn_out",
    "hook_mlp_out",
    "hook_resid_post",
)
_TEXT_SUFFIXES = (
    "hook_resid_pre",
    "attn.hook_pattern",
    "attn.hook_z",
    "hook_resid_mid",
    "crossattn.hook_pattern",
    "crossattn.hook_z",
    "hook_resid_cross",
    "mlp.hook_post",
    "hook_resid_post",
)


@dataclass(frozen=True)
class HookPoint:
    """The context a hook function receives beside the activation: the hook name."""

    name: str

    @property
    def stream(self) -> str:
        """``"vision"`` or ``"text"``."""
        return self.name.split(".")[0]

    def layer(self) -> int | None:
        """Return the layer index of a ``{stream}.blocks.{layer}...`` hook, else None."""
        parts = self.name.split(".")
        return int(parts[2]) if len(parts) > 2 and parts[1] == "blocks" else None


class HookedBlipITM(HookRegistry, nn.Module):
    """A BLIP ITM model with named hook points in both encoders.

    ``model(inputs)`` takes a dict with ``pixel_values`` (batch, 3, H, W),
    ``input_ids`` and ``attention_mask`` (batch, token) and returns the ITM
    logits (batch, 2): index 0 is "no match", index 1 "match".
    """

    def __init__(self, loaded: LoadedBLIP):
        super().__init__()
        self.loaded = loaded
        self.model = loaded.model
        if self.model.config._attn_implementation != "eager":
            raise ValueError("load the model with helpers.fusion.load_blip, which selects eager attention")
        vision, text = self.model.config.vision_config, self.model.config.text_config
        self.n_layers = {"vision": vision.num_hidden_layers, "text": text.num_hidden_layers}
        self.n_heads = {"vision": vision.num_attention_heads, "text": text.num_attention_heads}
        self.d_head = {
            "vision": vision.hidden_size // vision.num_attention_heads,
            "text": text.hidden_size // text.num_attention_heads,
        }
        self.n_patches = (vision.image_size // vision.patch_size) ** 2

    # Hook registry ----------------------------------------------------------

    @property
    def hook_names(self) -> list[str]:
        """All hook names, in forward order (the vision encoder runs first)."""
        names = ["vision.hook_embed"]
        for layer in range(self.n_layers["vision"]):
            names += [f"vision.blocks.{layer}.{suffix}" for suffix in _VISION_SUFFIXES]
        names += ["vision.ln_post.hook_normalized", "text.hook_embed"]
        for layer in range(self.n_layers["text"]):
            names += [f"text.blocks.{layer}.{suffix}" for suffix in _TEXT_SUFFIXES]
        return names

    def _unknown(self, name: str) -> str:
        return f"unknown hook {name!r}; valid names look like {self.hook_names[:3]} (see .hook_names)"

    def _register(self, name: str, fn: HookFunction) -> torch.utils.hooks.RemovableHandle:
        point = HookPoint(name)
        vision_model, text_model = self.model.vision_model, self.model.text_encoder
        if name == "vision.hook_embed":
            return output_hook(vision_model.embeddings, point, fn)
        if name == "vision.ln_post.hook_normalized":
            return self._sequence_output_hook(vision_model.post_layernorm, point, fn)
        if name == "text.hook_embed":
            return output_hook(text_model.embeddings, point, fn)
        layer_index = point.layer() if name.split(".")[0] in ("vision", "text") else None
        if layer_index is None or layer_index >= self.n_layers[point.stream]:
            raise KeyError(self._unknown(name))
        suffix = ".".join(name.split(".")[3:])
        if point.stream == "vision":
            return self._register_vision(vision_model.encoder.layers[layer_index], suffix, point, fn)
        return self._register_text(text_model.encoder.layer[layer_index], suffix, point, fn)

    def _register_vision(self, layer: nn.Module, suffix: str, point: HookPoint, fn: HookFunction):
        if suffix == "hook_resid_pre":
            return input_hook(layer, point, fn)
        if suffix == "attn.hook_pattern":
            return pattern_hook(layer.self_attn, point, fn)
        if suffix == "attn.hook_z":
            return head_split_hook(layer.self_attn.projection, point, fn, self.n_heads["vision"], self.d_head["vision"])
        if suffix == "hook_attn_out":
            return output_hook(layer.self_attn, point, fn)
        if suffix == "hook_mlp_out":
            return output_hook(layer.mlp, point, fn)
        if suffix == "hook_resid_post":
            return output_hook(layer, point, fn)
        raise KeyError(self._unknown(point.name))

    def _register_text(self, layer: nn.Module, suffix: str, point: HookPoint, fn: HookFunction):
        if suffix == "hook_resid_pre":
            return input_hook(layer, point, fn)
        if suffix == "attn.hook_pattern":
            return pattern_hook(layer.attention.self, point, fn)
        if suffix == "attn.hook_z":
            return head_split_hook(layer.attention.output.dense, point, fn, self.n_heads["text"], self.d_head["text"])
        if suffix == "hook_resid_mid":
            return output_hook(layer.attention, point, fn)
        if suffix == "crossattn.hook_pattern":
            return pattern_hook(layer.crossattention.self, point, fn)
        if suffix == "crossattn.hook_z":
            return head_split_hook(layer.crossattention.output.dense, point, fn, self.n_heads["text"], self.d_head["text"])
        if suffix == "hook_resid_cross":
            return output_hook(layer.crossattention, point, fn)
        if suffix == "mlp.hook_post":
            return input_hook(layer.output.dense, point, fn)
        if suffix == "hook_resid_post":
            return output_hook(layer, point, fn)
        raise KeyError(self._unknown(point.name))

    @staticmethod
    def _sequence_output_hook(module: nn.Module, point: HookPoint, fn: HookFunction):
        # BlipVisionModel applies post_layernorm twice: to the whole sequence (read by the
        # text encoder) and again to the pooled class token (unused by the ITM head).
        # Only the first call, on a (batch, pos, d_model) tensor, is the hook point.
        def hook(_module, _inputs, output):
            return fn(output, point) if output.ndim == 3 else None

        return module.register_forward_hook(hook)

    # Forward passes -----------------------------------------------------------

    def forward(self, inputs: FusionInputs) -> Float[torch.Tensor, "batch 2"]:
        return itm_logits(self.model, inputs["pixel_values"], inputs["input_ids"], inputs["attention_mask"])

    def run_with_hooks(
        self, inputs: FusionInputs, fwd_hooks: Iterable[tuple[str | Callable[[str], bool], HookFunction]] = ()
    ) -> Float[torch.Tensor, "batch 2"]:
        """Run the model with ``fwd_hooks`` attached, then remove them."""
        with self.hooks(fwd_hooks):
            return self(inputs)

    def run_with_cache(
        self, inputs: FusionInputs, names_filter: NameFilter = None
    ) -> tuple[Float[torch.Tensor, "batch 2"], dict[str, torch.Tensor]]:
        """Run the model and store the activations of the selected hooks (all by default), detached."""
        cache, fwd_hooks = self._caching_hooks(names_filter)
        logits = self.run_with_hooks(inputs, fwd_hooks)
        return logits, cache

    def read_out(self, residual: Float[torch.Tensor, "batch pos d_model"]) -> Float[torch.Tensor, " batch"]:
        """Apply the ITM head to the ``[CLS]`` position of a text residual stream; return match minus no-match.

        On the last layer's ``hook_resid_post`` this is the model's own output.
        Text layers end in a LayerNorm, so every layer's output is on the scale the head expects.
        """
        logits = self.model.itm_head(residual[:, 0])
        return logits[:, MATCH] - logits[:, NO_MATCH]
