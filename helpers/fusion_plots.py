"""Figures of the fusion-model tracing notebook (plotly)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .plotting import png_data_uri


def cross_attention_figure(image: np.ndarray, attention: np.ndarray, token: str, title: str | None = None) -> go.Figure:
    """Overlay one token's cross-attention over the image patches, one slider step per (layer, head).

    Args:
        image: RGB uint8 image (H, W, 3).
        attention: the token's cross-attention of shape (layer, head, 1 + n_patches);
            position 0 is the vision class token, which the overlay leaves out and the step title reports.
        token: the caption word, for the title.

    The patch grid is stretched over the image as shown, whatever size the model resized it to.
    """
    layers, heads, positions = attention.shape
    grid = int(round(np.sqrt(positions - 1)))
    patch_pixels = image.shape[0] / grid
    fig = go.Figure(go.Image(source=png_data_uri(image), hoverinfo="skip"))
    steps = []
    centres = (np.arange(grid) + 0.5) * patch_pixels - 0.5
    for layer in range(layers):
        for head in range(heads):
            weights = attention[layer, head, 1:].reshape(grid, grid)
            fig.add_trace(
                go.Heatmap(
                    z=weights,
                    x=centres,
                    y=centres,
                    zmin=0,
                    zmax=float(attention[:, :, 1:].max()),
                    colorscale="Inferno",
                    opacity=0.55,
                    visible=(layer == 0 and head == 0),
                    colorbar_title="attention",
                    hovertemplate="patch weight %{z:.3f}<extra></extra>",
                )
            )
            visible = [True] + [False] * (layers * heads)
            visible[1 + layer * heads + head] = True
            cls_weight = attention[layer, head, 0]
            steps.append(
                dict(
                    method="update",
                    label=f"L{layer} H{head}",
                    args=[{"visible": visible}, {"title": f"'{token}' attends to the image: layer {layer}, head {head} "
                                                         f"(class token weight {cls_weight:.2f})"}],
                )
            )
    fig.update_layout(
        title=title or f"'{token}' attends to the image: layer 0, head 0 (class token weight {attention[0, 0, 0]:.2f})",
        sliders=[dict(active=0, steps=steps, currentvalue=dict(prefix="cross-attention "), pad=dict(t=30))],
        height=480,
        xaxis=dict(visible=False),
        yaxis=dict(visible=False, scaleanchor="x"),
    )
    return fig


def residual_heatmaps(
    grids: dict[str, np.ndarray], row_labels: dict[str, Sequence[str]], column_labels: dict[str, Sequence[str]], title: str
) -> go.Figure:
    """Draw one (row, position) heatmap of normalised patching effects per stream, side by side.

    Each panel has its own colour range centred on 0, so the weaker stream stays readable.
    """
    names = list(grids)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, horizontal_spacing=0.12)
    for index, name in enumerate(names):
        fig.add_trace(
            go.Heatmap(
                z=grids[name],
                x=list(column_labels[name]),
                y=list(row_labels[name]),
                zmid=0,
                colorscale="RdBu",
                reversescale=True,
                colorbar=dict(title="effect", orientation="h", len=0.35, thickness=12, y=-0.45,
                              x=(index + 0.5) / len(names)),
                hovertemplate="%{y}, %{x}: %{z:.3f}<extra></extra>",
            ),
            row=1,
            col=index + 1,
        )
    fig.update_xaxes(tickangle=45, tickfont_size=9)
    fig.update_layout(title=title, height=460, margin=dict(b=120))
    return fig


def head_heatmaps(grids: dict[str, np.ndarray], row_labels: Sequence[str], title: str) -> go.Figure:
    """Draw one (component, head) heatmap of normalised patching effects per corruption, side by side."""
    names = list(grids)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, horizontal_spacing=0.12)
    for index, name in enumerate(names):
        grid = grids[name]
        fig.add_trace(
            go.Heatmap(
                z=grid,
                x=[f"head {h}" for h in range(grid.shape[1])],
                y=list(row_labels),
                zmin=-1,
                zmax=1,
                colorscale="RdBu",
                reversescale=True,
                colorbar_title="effect",
                text=np.round(grid, 2),
                texttemplate="%{text}",
                hovertemplate="%{y}, %{x}: %{z:.3f}<extra></extra>",
            ),
            row=1,
            col=index + 1,
        )
    fig.update_layout(title=title, height=420)
    return fig


def attribution_scatter(points: dict[str, tuple[np.ndarray, np.ndarray]], correlations: dict[str, float]) -> go.Figure:
    """Scatter attribution estimates against activation-patching effects, one colour per corruption."""
    fig = go.Figure()
    low, high = 0.0, 0.0
    for name, (exact, estimate) in points.items():
        fig.add_trace(
            go.Scattergl(x=exact, y=estimate, mode="markers", marker=dict(size=4, opacity=0.5),
                         name=f"{name} (Pearson r = {correlations[name]:.2f})")
        )
        low = min(low, float(np.min(exact)), float(np.min(estimate)))
        high = max(high, float(np.max(exact)), float(np.max(estimate)))
    fig.add_trace(go.Scatter(x=[low, high], y=[low, high], mode="lines", line=dict(color="gray", dash="dash"), name="y = x"))
    fig.update_layout(
        title="Attribution patching against activation patching (every patch of every pair)",
        xaxis_title="activation patching effect",
        yaxis_title="attribution patching estimate",
        height=450,
    )
    return fig


def layer_readout_figure(readouts: dict[str, np.ndarray], row_labels: Sequence[str]) -> go.Figure:
    """Plot the mean ITM read-out (match minus no-match logit) of each text layer, one line per run kind."""
    fig = go.Figure()
    for name, values in readouts.items():
        fig.add_trace(go.Scatter(x=list(row_labels), y=values, mode="lines+markers", name=name))
    fig.add_hline(y=0, line_color="gray", line_dash="dot")
    fig.update_layout(
        title="ITM head applied to the [CLS] position after each text layer",
        xaxis_title="text residual stream",
        yaxis_title="match minus no-match logit",
        height=380,
    )
    return fig
