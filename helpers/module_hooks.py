"""Named hook points on Hugging Face modules, with TransformerLens-style hook functions.

:class:`helpers.hooked_text.HookedTextTower` and
:class:`helpers.hooked_fusion.HookedBlipITM` expose activations of models
that vit-prisma does not cover. Both attach PyTorch forward hooks to the
Hugging Face modules through the functions here. A hook function has the
signature ``fn(activation, hook)``, where ``hook.name`` is the hook name.
Returning a tensor replaces the activation, and returning None leaves it.

:class:`HookRegistry` adds ``hooks`` (a context manager) and the name
selection of ``run_with_cache`` to a class that defines ``hook_names`` and
``_register(name, fn)``.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn

HookFunction = Callable[[torch.Tensor, Any], torch.Tensor | None]
NameFilter = Callable[[str], bool] | Iterable[str] | None


def first_output(output):
    """Return the first element of a module output that is a tuple, else the output itself."""
    return output[0] if isinstance(output, tuple) else output


def output_hook(module: nn.Module, point, fn: HookFunction) -> torch.utils.hooks.RemovableHandle:
    """Hook the output of ``module`` (its first element when the module returns a tuple)."""

    def hook(_module, _inputs, output):
        result = fn(first_output(output), point)
        if result is None:
            return None
        return (result, *output[1:]) if isinstance(output, tuple) else result

    return module.register_forward_hook(hook)


def input_hook(module: nn.Module, point, fn: HookFunction) -> torch.utils.hooks.RemovableHandle:
    """Hook the first input of ``module``, positional or keyword."""

    def hook(_module, args, kwargs):
        if args:
            result = fn(args[0], point)
            return None if result is None else ((result, *args[1:]), kwargs)
        key = next(iter(kwargs))
        result = fn(kwargs[key], point)
        return None if result is None else (args, {**kwargs, key: result})

    return module.register_forward_pre_hook(hook, with_kwargs=True)


def pattern_hook(attention: nn.Module, point, fn: HookFunction) -> torch.utils.hooks.RemovableHandle:
    """Hook the attention pattern, the second output of an eager attention module, read-only.

    The pattern is used inside the attention function, so replacing it after
    the fact would not change the output. A hook function that returns a
    tensor here raises ``ValueError``.
    """

    def hook(_module, _inputs, output):
        if fn(output[1], point) is not None:
            raise ValueError(
                f"{point.name} is read-only: the pattern is used inside the attention module, "
                "so patch the matching hook_z instead"
            )

    return attention.register_forward_hook(hook)


def head_split_hook(
    output_projection: nn.Module, point, fn: HookFunction, n_heads: int, d_head: int
) -> torch.utils.hooks.RemovableHandle:
    """Hook the input of an attention output projection as per-head values (``hook_z``).

    ``fn`` receives shape (batch, pos, head, d_head) and may return a tensor of
    that shape, which is merged back into (batch, pos, head * d_head).
    """

    def hook(_module, args):
        z = args[0]
        per_head = z.reshape(*z.shape[:-1], n_heads, d_head)
        result = fn(per_head, point)
        return None if result is None else (result.reshape(z.shape), *args[1:])

    return output_projection.register_forward_pre_hook(hook)


class HookRegistry:
    """Mixin that attaches hooks by name or name filter, given ``hook_names`` and ``_register``."""

    hook_names: list[str]

    def _register(self, name: str, fn: HookFunction) -> torch.utils.hooks.RemovableHandle:
        raise NotImplementedError

    def select_hook_names(self, names_filter: NameFilter = None) -> list[str]:
        """Return the hook names that ``names_filter`` selects: all for None, else a callable or a list."""
        if names_filter is None:
            return list(self.hook_names)
        if callable(names_filter):
            return [name for name in self.hook_names if names_filter(name)]
        return list(names_filter)

    @contextlib.contextmanager
    def hooks(self, fwd_hooks: Iterable[tuple[str | Callable[[str], bool], HookFunction]]) -> Iterator[None]:
        """Attach ``(name or name filter, fn)`` hooks for the duration of a ``with`` block."""
        handles = []
        try:
            for name, fn in fwd_hooks:
                names = self.select_hook_names(name) if callable(name) else [name]
                handles += [self._register(n, fn) for n in names]
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _caching_hooks(self, names_filter: NameFilter) -> tuple[dict[str, torch.Tensor], list[tuple[str, HookFunction]]]:
        """Return an empty cache and the hooks that fill it with detached activations."""
        cache: dict[str, torch.Tensor] = {}

        def store(activation: torch.Tensor, hook) -> None:
            cache[hook.name] = activation.detach()

        return cache, [(name, store) for name in self.select_hook_names(names_filter)]
