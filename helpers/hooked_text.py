"""The CLIP text tower with hook points named like vit-prisma's vision tower.

vit-prisma has no text tower, so :class:`HookedTextTower` puts PyTorch
forward hooks on the Hugging Face modules and exposes them under the same
names as the vision side:

==================================  ==========================================  =========
hook name                           activation                                  shape
==================================  ==========================================  =========
``hook_embed``                      token + position embeddings                 batch token d_model
``blocks.{layer}.hook_resid_pre``   residual stream entering the layer          batch token d_model
``blocks.{layer}.ln1.hook_normalized``  input of the attention, after LayerNorm  batch token d_model
``blocks.{layer}.attn.hook_pattern``  attention pattern (read-only)             batch head query key
``blocks.{layer}.attn.hook_z``      per-head attention output before W_O        batch token head d_head
``blocks.{layer}.hook_attn_out``    attention output written to the residual    batch token d_model
``blocks.{layer}.mlp.hook_post``    MLP hidden activation                       batch token d_mlp
``blocks.{layer}.hook_mlp_out``     MLP output written to the residual          batch token d_model
``blocks.{layer}.hook_resid_post``  residual stream leaving the layer            batch token d_model
``ln_final.hook_normalized``        final LayerNorm output                      batch token d_model
==================================  ==========================================  =========

A hook function has the TransformerLens signature ``fn(activation, hook)``;
``hook.name`` is the hook name. Returning a tensor replaces the activation
(for ``hook_z``, a tensor of the same per-head shape). The attention pattern
is computed inside the attention function, so editing it would not change
the output: a hook that returns a value there raises an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from jaxtyping import Float, Int
from torch import nn

from .loading import LoadedCLIP
from .module_hooks import HookFunction, HookRegistry, NameFilter, head_split_hook, input_hook, output_hook, pattern_hook

_READ_ONLY = ("attn.hook_pattern",)


@dataclass(frozen=True)
class HookContext:
    """The context a hook function receives beside the activation: the hook name."""

    name: str

    def layer(self) -> int | None:
        """Return the layer index of a ``blocks.{layer}...`` hook, else None."""
        parts = self.name.split(".")
        return int(parts[1]) if parts[0] == "blocks" else None


class HookedTextTower(HookRegistry, nn.Module):
    """The text tower and text projection of a ``CLIPModel``, with named hook points.

    Calling it maps ``input_ids`` and ``attention_mask`` of shape
    (batch, token) to unnormalised text embeddings of shape
    (batch, projection_dim), equal to ``CLIPModel.get_text_features``.
    """

    def __init__(self, loaded: LoadedCLIP):
        super().__init__()
        self.loaded_name = loaded.name
        self.text_model = loaded.model.text_model
        self.text_projection = loaded.model.text_projection
        config = loaded.model.config.text_config
        self.n_layers = config.num_hidden_layers
        self.n_heads = config.num_attention_heads
        self.d_model = config.hidden_size
        self.d_head = config.hidden_size // config.num_attention_heads
        if self.text_model.config._attn_implementation != "eager":
            raise ValueError(
                "the text tower must use eager attention to expose attention patterns; "
                "load the model with helpers.load_clip (attn_implementation='eager')"
            )

    # Hook registry --------------------------------------------------------

    @property
    def hook_names(self) -> list[str]:
        """All hook names, in forward order."""
        names = ["hook_embed"]
        for layer in range(self.n_layers):
            names += [
                f"blocks.{layer}.{suffix}"
                for suffix in (
                    "hook_resid_pre",
                    "ln1.hook_normalized",
                    "attn.hook_pattern",
                    "attn.hook_z",
                    "hook_attn_out",
                    "mlp.hook_post",
                    "hook_mlp_out",
                    "hook_resid_post",
                )
            ]
        return names + ["ln_final.hook_normalized"]

    def _register(self, name: str, fn: HookFunction) -> torch.utils.hooks.RemovableHandle:
        context = HookContext(name)
        if name == "hook_embed":
            return output_hook(self.text_model.embeddings, context, fn)
        if name == "ln_final.hook_normalized":
            return output_hook(self.text_model.final_layer_norm, context, fn)
        parts = name.split(".")
        if parts[0] != "blocks" or len(parts) < 3 or not parts[1].isdigit():
            raise KeyError(self._unknown(name))
        layer_index, suffix = int(parts[1]), ".".join(parts[2:])
        if layer_index >= self.n_layers:
            raise KeyError(self._unknown(name))
        layer = self.text_model.encoder.layers[layer_index]

        if suffix == "hook_resid_pre":
            return input_hook(layer, context, fn)
        if suffix == "ln1.hook_normalized":
            return output_hook(layer.layer_norm1, context, fn)
        if suffix == "attn.hook_pattern":
            return pattern_hook(layer.self_attn, context, fn)
        if suffix == "attn.hook_z":
            return head_split_hook(layer.self_attn.out_proj, context, fn, self.n_heads, self.d_head)
        if suffix == "hook_attn_out":
            return output_hook(layer.self_attn, context, fn)
        if suffix == "mlp.hook_post":
            return input_hook(layer.mlp.fc2, context, fn)
        if suffix == "hook_mlp_out":
            return output_hook(layer.mlp, context, fn)
        if suffix == "hook_resid_post":
            return output_hook(layer, context, fn)
        raise KeyError(self._unknown(name))

    def _unknown(self, name: str) -> str:
        return f"unknown text hook {name!r}; valid names look like {self.hook_names[:4]} (see .hook_names)"

    # Forward passes ---------------------------------------------------------

    def forward(
        self,
        input_ids: Int[torch.Tensor, "batch token"],
        attention_mask: Int[torch.Tensor, "batch token"] | None = None,
    ) -> Float[torch.Tensor, "batch d_proj"]:
        outputs = self.text_model(input_ids=input_ids, attention_mask=attention_mask)
        return self.text_projection(outputs.pooler_output)

    def run_with_hooks(
        self,
        input_ids: Int[torch.Tensor, "batch token"],
        attention_mask: Int[torch.Tensor, "batch token"] | None = None,
        fwd_hooks: Iterable[tuple[str | Callable[[str], bool], HookFunction]] = (),
    ) -> Float[torch.Tensor, "batch d_proj"]:
        """Run the tower with ``fwd_hooks`` attached, then remove them."""
        with self.hooks(fwd_hooks):
            return self(input_ids, attention_mask)

    def run_with_cache(
        self,
        input_ids: Int[torch.Tensor, "batch token"],
        attention_mask: Int[torch.Tensor, "batch token"] | None = None,
        names_filter: NameFilter = None,
    ) -> tuple[Float[torch.Tensor, "batch d_proj"], dict[str, torch.Tensor]]:
        """Run the tower and store the activations of the selected hooks (all by default).

        Returns:
            The embeddings and a dict from hook name to a detached activation.
        """
        cache, fwd_hooks = self._caching_hooks(names_filter)
        output = self.run_with_hooks(input_ids, attention_mask, fwd_hooks)
        return output, cache

    def end_of_text_index(self, input_ids: Int[torch.Tensor, "batch token"]) -> Int[torch.Tensor, " batch"]:
        """Return the position of each caption's end-of-text token, where the tower pools."""
        eos = self.text_model.config.eos_token_id
        if eos == 2:
            # Legacy configs (eos_token_id 2): CLIPTextModel pools at the largest token id.
            return input_ids.argmax(dim=-1)
        return (input_ids == eos).int().argmax(dim=-1)
