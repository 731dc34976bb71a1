"""Plotly figures for attention heads: maps with a layer-and-head slider, layer x head grids, probes, ablations."""

from __future__ import annotations

import base64
import io
from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.subplots import make_subplots

from .localisation import Interval
from .probing import ProbeResults

_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")


def head_label(layer: int, head: int) -> str:
    """Return the short name of a head, e.g. 'L0H3' (layers and heads counted from 0)."""
    return f"L{layer}H{head}"


def _slider(
    labels: Sequence[str], visibility: list[list[bool]], titles: Sequence[str], prefix: str, pad_top: int = 40
) -> dict:
    steps = [
        dict(method="update", label=label, args=[{"visible": visible}, {"title.text": title}])
        for label, visible, title in zip(labels, visibility, titles)
    ]
    return dict(active=0, currentvalue=dict(prefix=prefix), pad=dict(t=pad_top), steps=steps)


def _wrap(text: str, width: int = 22) -> str:
    """Break ``text`` into lines of at most about ``width`` characters, joined with <br> for Plotly."""
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "<br>".join([*lines, line])


def _png_data_uri(image: np.ndarray) -> str:
    """Encode an RGB uint8 image as a PNG data URI, which a figure stores far more compactly than pixel lists."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# Transparent where a head gives a patch no attention, opaque cyan where it gives the most.
_OVERLAY_COLOURS = [[0.0, "rgba(0, 230, 255, 0)"], [1.0, "rgba(0, 230, 255, 0.75)"]]


def cls_attention_overlay(images: np.ndarray, cls_attention: np.ndarray, grid: int, titles: Sequence[str]) -> go.Figure:
    """Overlay the CLS token's attention to the patches on each image, one slider step per (layer, head).

    Patches are tinted cyan in proportion to their attention, from clear
    (none) to opaque (the largest value over the images of that head).

    Args:
        images: RGB uint8 images, shape (n_images, height, width, 3).
        cls_attention: attention of the CLS query to the patches, shape
            (n_images, n_layers, n_heads, grid * grid), patches row-major.
        grid: patches along one side.
        titles: one subplot title per image.
    """
    n_images, n_layers, n_heads, _ = cls_attention.shape
    height, width = images.shape[1:3]
    fig = make_subplots(rows=1, cols=n_images, subplot_titles=[_wrap(t) for t in titles], horizontal_spacing=0.02)
    for i, image in enumerate(images):
        fig.add_trace(go.Image(source=_png_data_uri(image), hoverinfo="skip"), row=1, col=i + 1)

    heads = [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
    for step, (layer, head) in enumerate(heads):
        maps = cls_attention[:, layer, head].reshape(n_images, grid, grid)
        for i in range(n_images):
            fig.add_trace(
                go.Heatmap(
                    z=maps[i], x0=width / grid / 2 - 0.5, dx=width / grid, y0=height / grid / 2 - 0.5, dy=height / grid,
                    zmin=0.0, zmax=max(float(maps.max()), 1e-6), colorscale=_OVERLAY_COLOURS, visible=step == 0,
                    showscale=i == 0, colorbar=dict(title="attention", len=0.8, x=1.02),
                    hovertemplate="attention %{z:.3f}<extra></extra>",
                ),
                row=1, col=i + 1,
            )
    visibility = [[True] * n_images + [s == step for s in range(len(heads)) for _ in range(n_images)] for step in range(len(heads))]
    titles_by_step = [f"CLS attention of head {head_label(*h)} (layer {h[0]}, head {h[1]})" for h in heads]
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(
        title=titles_by_step[0], height=380, margin=dict(l=10, r=90, t=100, b=10),
        sliders=[_slider([head_label(*h) for h in heads], visibility, titles_by_step, "head: ")],
    )
    return fig


def token_attention_figure(patterns: np.ndarray, tokens: Sequence[str], caption: str) -> go.Figure:
    """Show a caption's attention pattern (query x key) for every (layer, head), one slider step each.

    ``patterns`` has shape (n_layers, n_heads, n_tokens, n_tokens), and ``tokens``
    are the token strings, numbered on the axes so repeated words stay apart.
    """
    n_layers, n_heads = patterns.shape[:2]
    labels = [f"{i} {token}" for i, token in enumerate(tokens)]
    heads = [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
    fig = go.Figure()
    for step, (layer, head) in enumerate(heads):
        fig.add_trace(
            go.Heatmap(
                z=patterns[layer, head], x=labels, y=labels, zmin=0.0, zmax=1.0, colorscale="Viridis",
                visible=step == 0, colorbar=dict(title="attention"),
                hovertemplate="query %{y}<br>key %{x}<br>attention %{z:.3f}<extra></extra>",
            )
        )
    visibility = [[s == step for s in range(len(heads))] for step in range(len(heads))]
    titles = [f"Text attention of head {head_label(*h)} on '{caption}'" for h in heads]
    fig.update_yaxes(autorange="reversed", title="query token")
    fig.update_xaxes(title="key token", tickangle=40)
    fig.update_layout(
        title=titles[0], height=600, margin=dict(t=70, b=40),
        sliders=[_slider([head_label(*h) for h in heads], visibility, titles, "head: ", pad_top=110)],
    )
    return fig


def layer_head_heatmaps(panels: dict[str, np.ndarray], title: str, columns: int = 3, number_format: str = ".2f") -> go.Figure:
    """Draw one layer x head heatmap per statistic, with the value written in each cell."""
    names = list(panels)
    rows = int(np.ceil(len(names) / columns))
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=names, horizontal_spacing=0.08, vertical_spacing=0.18)
    for index, name in enumerate(names):
        values = np.asarray(panels[name], dtype=float)
        n_layers, n_heads = values.shape
        fig.add_trace(
            go.Heatmap(
                z=values, x=[f"H{h}" for h in range(n_heads)], y=[f"L{l}" for l in range(n_layers)],
                colorscale="Viridis", showscale=False, texttemplate=f"%{{z:{number_format}}}",
                hovertemplate=f"%{{y}}%{{x}}<br>{name}: %{{z:{number_format}}}<extra></extra>",
            ),
            row=index // columns + 1, col=index % columns + 1,
        )
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title=title, height=240 * rows + 80, margin=dict(t=90))
    return fig


def interval_bars(intervals: list[list[Interval]], title: str, y_title: str, chance: float | None = 1.0) -> go.Figure:
    """Plot one bar per head (its mean) with the bootstrap interval as an error bar."""
    labels, means, upper, lower = [], [], [], []
    for layer, row in enumerate(intervals):
        for head, interval in enumerate(row):
            labels.append(head_label(layer, head))
            means.append(interval.mean)
            upper.append(interval.high - interval.mean)
            lower.append(interval.mean - interval.low)
    fig = go.Figure(
        go.Bar(
            x=labels, y=means, error_y=dict(type="data", array=upper, arrayminus=lower), name="mean and 95 % interval",
            hovertemplate="%{x}: %{y:.2f}<extra></extra>",
        )
    )
    if chance is not None:
        fig.add_hline(y=chance, line_dash="dash", line_color="black", annotation_text="chance")
    fig.update_layout(title=title, xaxis_title="head (layer, head)", yaxis_title=y_title, height=380)
    return fig


def probe_figure(results: dict[str, ProbeResults], title: str) -> go.Figure:
    """Plot probe accuracy (solid) and control-task accuracy (dotted) by layer, one panel per tower."""
    towers = list(results)
    fig = make_subplots(rows=1, cols=len(towers), subplot_titles=[f"{tower} tower" for tower in towers], shared_yaxes=True)
    for column, tower in enumerate(towers, start=1):
        result = results[tower]
        for a, attribute in enumerate(result.attributes):
            colour = _COLOURS[a % len(_COLOURS)]
            fig.add_trace(
                go.Scatter(
                    x=result.layer_names, y=result.accuracy[a], mode="lines+markers", name=attribute,
                    line=dict(color=colour), legendgroup=attribute, showlegend=column == 1,
                ),
                row=1, col=column,
            )
            fig.add_trace(
                go.Scatter(
                    x=result.layer_names, y=result.control[a], mode="lines", name=f"{attribute} (control)",
                    line=dict(color=colour, dash="dot"), legendgroup=attribute, showlegend=column == 1,
                ),
                row=1, col=column,
            )
    fig.update_yaxes(range=[0, 1.05], title_text="held-out accuracy", row=1, col=1)
    fig.update_layout(title=title, height=420)
    return fig


def ablation_heatmaps(changes: dict[tuple[str, str], np.ndarray], title: str) -> go.Figure:
    """Draw the change in top-1 after ablating each head, one layer x head panel per (tower, mode)."""
    keys = list(changes)
    columns = 2
    rows = int(np.ceil(len(keys) / columns))
    limit = max(float(np.abs(change).max()) for change in changes.values()) or 1.0
    fig = make_subplots(
        rows=rows, cols=columns, subplot_titles=[f"{tower} tower, {mode}-ablation" for tower, mode in keys],
        horizontal_spacing=0.08, vertical_spacing=0.16,
    )
    for index, key in enumerate(keys):
        change = 100 * np.asarray(changes[key])
        n_layers, n_heads = change.shape
        fig.add_trace(
            go.Heatmap(
                z=change, x=[f"H{h}" for h in range(n_heads)], y=[f"L{l}" for l in range(n_layers)],
                zmin=-100 * limit, zmax=100 * limit, colorscale="RdBu", showscale=index == 0,
                colorbar=dict(title="Δ top-1 (points)"), texttemplate="%{z:.1f}",
                hovertemplate="%{y}%{x}<br>Δ top-1 %{z:.1f} points<extra></extra>",
            ),
            row=index // columns + 1, col=index % columns + 1,
        )
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title=title, height=260 * rows + 90, margin=dict(t=90))
    return fig


def eot_attention_figure(attention: np.ndarray, tokens: Sequence[str], title: str) -> go.Figure:
    """Draw the end-of-text query's mean attention to each token position, one row per (layer, head).

    ``attention`` has shape (n_layers, n_heads, n_tokens).
    """
    n_layers, n_heads, _ = attention.shape
    rows = [head_label(layer, head) for layer in range(n_layers) for head in range(n_heads)]
    labels = [f"{i} {token}" for i, token in enumerate(tokens)]
    fig = go.Figure(
        go.Heatmap(
            z=attention.reshape(len(rows), -1), x=labels, y=rows, zmin=0.0, zmax=1.0, colorscale="Viridis",
            texttemplate="%{z:.2f}", colorbar=dict(title="attention"),
            hovertemplate="%{y} -> %{x}: %{z:.3f}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed", title="text head")
    fig.update_xaxes(title="key token", tickangle=40)
    fig.update_layout(title=title, height=max(320, 26 * len(rows) + 140))
    return fig


def model_view(pixels, image_mean: Sequence[float], image_std: Sequence[float]) -> np.ndarray:
    """Undo the image processor's normalisation: the RGB uint8 images the model reads, shape (n, size, size, 3)."""
    mean = np.asarray(image_mean, dtype=np.float32)[None, :, None, None]
    std = np.asarray(image_std, dtype=np.float32)[None, :, None, None]
    images = np.asarray(pixels.detach().cpu(), dtype=np.float32) * std + mean
    return np.clip(np.round(images * 255), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
