"""Plotly set-up and the figures shared by the notebooks.

:func:`use_book_renderer` makes every figure output carry two
representations: Plotly's JSON, which JupyterLab draws, and an HTML ``div``
without plotly.js, which the built book draws with the copy of plotly.js it
serves from its own static files. No figure loads anything from a CDN.
Figure ids derive from the figure's content, so re-executing a notebook
gives the same output.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from typing import Sequence

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from PIL import Image
from plotly.io._base_renderers import MimetypeRenderer, PlotlyRenderer
from plotly.subplots import make_subplots

BOOK_RENDERER = "book"


class BookRenderer(MimetypeRenderer):
    """Render figures as Plotly JSON plus an HTML div that expects plotly.js on the page."""

    def to_mimebundle(self, fig_dict):
        bundle = PlotlyRenderer(config={"responsive": True}).to_mimebundle(fig_dict)
        content = json.dumps(fig_dict, sort_keys=True, default=str).encode()
        div_id = "fig-" + hashlib.sha1(content).hexdigest()[:12]
        bundle["text/html"] = pio.to_html(
            fig_dict,
            include_plotlyjs=False,
            full_html=False,
            div_id=div_id,
            config={"responsive": True, "displaylogo": False},
            validate=False,
        )
        return bundle


def use_book_renderer() -> None:
    """Make the book renderer Plotly's default, with a plain white template."""
    pio.renderers[BOOK_RENDERER] = BookRenderer()
    pio.renderers.default = BOOK_RENDERER
    pio.templates.default = "plotly_white"


def png_data_uri(image: np.ndarray) -> str:
    """Encode an RGB uint8 image as a PNG data URI (far smaller in a notebook than a pixel list)."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def image_grid(
    images: np.ndarray, titles: Sequence[str], columns: int = 6, size: int = 130, title: str | None = None
) -> go.Figure:
    """Show RGB uint8 images of shape (n, height, width, 3) in a grid with one title each."""
    n = len(images)
    rows = int(np.ceil(n / columns))
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=list(titles), horizontal_spacing=0.01, vertical_spacing=0.08)
    for i, image in enumerate(images):
        fig.add_trace(go.Image(source=png_data_uri(image), hoverinfo="skip"), row=i // columns + 1, col=i % columns + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_annotations(font_size=9)
    # No fixed width: the figure fills the page column, whatever its size.
    fig.update_layout(
        height=rows * (size + 30) + 60,
        margin=dict(l=10, r=10, t=60 if title else 30, b=10),
        title=title,
    )
    return fig


def loss_curve(losses: Sequence[float], smoothing: int = 25, title: str = "Training loss") -> go.Figure:
    """Plot a per-step loss with its running mean over ``smoothing`` steps."""
    losses = np.asarray(losses, dtype=float)
    steps = np.arange(1, len(losses) + 1)
    kernel = np.ones(min(smoothing, len(losses))) / min(smoothing, len(losses))
    smooth = np.convolve(losses, kernel, mode="valid")
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=steps, y=losses, mode="lines", name="per step", line=dict(width=1, color="lightgray")))
    fig.add_trace(go.Scatter(x=steps[len(steps) - len(smooth):], y=smooth, mode="lines", name=f"mean of {len(kernel)} steps"))
    fig.update_layout(title=title, xaxis_title="step", yaxis_title="contrastive loss", height=350)
    return fig


def bar_chart(values: dict[str, float], title: str, y_title: str, chance: dict[str, float] | None = None) -> go.Figure:
    """Plot one bar per key, with an optional chance marker per bar."""
    fig = go.Figure(go.Bar(x=list(values), y=list(values.values()), text=[f"{v:.1%}" for v in values.values()], name="model"))
    if chance:
        fig.add_trace(go.Scatter(x=list(chance), y=list(chance.values()), mode="markers", marker=dict(symbol="line-ew-open", size=30, color="black"), name="chance"))
    fig.update_layout(title=title, yaxis_title=y_title, yaxis_range=[0, 1.05], height=350)
    return fig
