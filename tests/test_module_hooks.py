"""Forward-hook adapters shared by the hooked text tower and the hooked BLIP model."""

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from helpers.module_hooks import HookRegistry, head_split_hook, input_hook, output_hook


@dataclass(frozen=True)
class Point:
    name: str


class TwoLayers(HookRegistry, nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.first = nn.Linear(4, 4)
        self.second = nn.Linear(4, 4)
        self.hook_names = ["first.hook_out", "second.hook_in", "second.hook_z"]

    def _register(self, name, fn):
        if name == "first.hook_out":
            return output_hook(self.first, Point(name), fn)
        if name == "second.hook_in":
            return input_hook(self.second, Point(name), fn)
        if name == "second.hook_z":
            return head_split_hook(self.second, Point(name), fn, n_heads=2, d_head=2)
        raise KeyError(name)

    def forward(self, x):
        return self.second(self.first(x))


def test_select_hook_names_by_filter():
    model = TwoLayers()
    assert model.select_hook_names() == model.hook_names
    assert model.select_hook_names(lambda name: name.startswith("second")) == ["second.hook_in", "second.hook_z"]
    assert model.select_hook_names(["first.hook_out"]) == ["first.hook_out"]


def test_replacing_output_changes_result():
    model = TwoLayers()
    x = torch.randn(3, 4)
    with model.hooks([("first.hook_out", lambda activation, hook: torch.zeros_like(activation))]):
        patched = model(x)
    torch.testing.assert_close(patched, model.second(torch.zeros(3, 4)))


def test_head_split_shows_heads():
    model = TwoLayers()
    shapes = []
    with model.hooks([("second.hook_z", lambda activation, hook: shapes.append(activation.shape))]):
        model(torch.randn(3, 5, 4))
    assert shapes == [torch.Size([3, 5, 2, 2])]


def test_hooks_removed_after_error():
    model = TwoLayers()
    x = torch.randn(3, 4)
    expected = model(x)

    def fail(activation, hook):
        raise RuntimeError("hook failed")

    with pytest.raises(RuntimeError, match="hook failed"):
        with model.hooks([("second.hook_in", fail)]):
            model(x)
    torch.testing.assert_close(model(x), expected)


def test_cache_stores_detached_activations():
    model = TwoLayers()
    cache, fwd_hooks = model._caching_hooks(lambda name: name != "second.hook_z")
    with model.hooks(fwd_hooks):
        model(torch.randn(3, 4))
    assert sorted(cache) == ["first.hook_out", "second.hook_in"]
    assert not cache["first.hook_out"].requires_grad
    torch.testing.assert_close(cache["first.hook_out"], cache["second.hook_in"])
