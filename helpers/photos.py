"""Retrieval among a data set's own captions, tokenizer coverage, and photo figures.

These serve ``notebooks/04_real_photographs.ipynb`` but take any
:class:`~helpers.datasets.ImageTextDataset`, so they work on folders,
ShapesWorld and digits alike.
"""

from __future__ import annotations

import base64
import io
import textwrap
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.subplots import make_subplots
from scipy.stats import binom

from . import encoding
from .datasets import ImageTextDataset
from .loading import LoadedCLIP
from .metrics import recall_at_k


@dataclass
class CaptionRetrieval:
    """Image-to-caption and caption-to-image retrieval among a data set's own captions.

    A caption counts as correct for an image when its text equals the
    image's caption, so repeated captions are all correct. A wrong candidate
    that ties with the best correct one counts as ranked above it, so
    captions that a tokenizer reads identically cannot be distinguished.

    Attributes:
        similarity: image x caption cosine similarities, shape (n_images, n_images);
            column j is the caption of image j.
        image_to_text_top1: share of images whose most similar caption is correct.
        text_to_image_top1: share of captions whose most similar image is one they describe.
        chance_top1: expected top-1 score of random similarities, the mean share
            of correct candidates per query.
        image_to_text_p_value: probability of at least as many image-to-text hits
            under chance, from a binomial with ``chance_top1`` per image.
        best_caption: index of the most similar caption of each image.
        image_embeddings: L2-normalised image embeddings, shape (n_images, d_proj).
        text_embeddings: L2-normalised caption embeddings, shape (n_images, d_proj).
    """

    similarity: np.ndarray
    image_to_text_top1: float
    text_to_image_top1: float
    chance_top1: float
    image_to_text_p_value: float
    best_caption: list[int]
    image_embeddings: np.ndarray
    text_embeddings: np.ndarray

    @property
    def n_images(self) -> int:
        return len(self.best_caption)

    @property
    def image_to_text_hits(self) -> int:
        return round(self.image_to_text_top1 * self.n_images)


def caption_retrieval(loaded: LoadedCLIP, data: ImageTextDataset) -> CaptionRetrieval:
    """Embed every image and caption of ``data`` and score retrieval among its own captions."""
    image_emb = encoding.image_embeddings(loaded, encoding.pixel_values(loaded, list(data.images))).cpu().numpy()
    text_emb = encoding.text_embeddings(loaded, data.captions).cpu().numpy()
    similarity = image_emb @ text_emb.T
    captions = np.array(data.captions, dtype=object)
    relevance = captions[:, None] == captions[None, :]
    image_to_text = recall_at_k(similarity, 1, relevance=relevance)
    text_to_image = recall_at_k(similarity.T, 1, relevance=relevance.T)
    chance = float(relevance.mean())
    n = len(captions)
    hits = round(image_to_text * n)
    return CaptionRetrieval(
        similarity=similarity,
        image_to_text_top1=image_to_text,
        text_to_image_top1=text_to_image,
        chance_top1=chance,
        image_to_text_p_value=float(binom.sf(hits - 1, n, chance)),
        best_caption=similarity.argmax(axis=1).tolist(),
        image_embeddings=image_emb,
        text_embeddings=text_emb,
    )


def mean_pairwise_cosine(embeddings: np.ndarray) -> float:
    """Return the mean cosine similarity between distinct rows of L2-normalised ``embeddings``."""
    n = len(embeddings)
    if n < 2:
        raise ValueError(f"mean_pairwise_cosine needs at least 2 rows, got {n}")
    gram = embeddings @ embeddings.T
    return float((gram.sum() - np.trace(gram)) / (n * (n - 1)))


@dataclass
class VocabularyCoverage:
    """How much of a set of captions a tokenizer can represent.

    Attributes:
        n_captions: captions examined.
        n_tokens: content tokens over all captions (start, end and padding excluded).
        n_unknown: content tokens that are the tokenizer's unknown token.
        n_all_unknown: captions whose content tokens are all unknown.
        n_truncated: captions longer than the tokenizer's maximum length, start
            and end tokens included; the model reads only their beginning.
        n_distinct_inputs: distinct token sequences after truncation, i.e. how
            many different captions the text tower can tell apart at most.
        max_length: the tokenizer's maximum length in tokens.
        known_tokens: content tokens that are not unknown, with their counts, most frequent first.
    """

    n_captions: int
    n_tokens: int
    n_unknown: int
    n_all_unknown: int
    n_truncated: int
    n_distinct_inputs: int
    max_length: int
    known_tokens: list[tuple[str, int]]

    @property
    def unknown_share(self) -> float:
        return self.n_unknown / self.n_tokens if self.n_tokens else 0.0


def vocabulary_coverage(tokenizer, captions: Sequence[str]) -> VocabularyCoverage:
    """Count how many caption tokens ``tokenizer`` maps to its unknown token, and what truncation drops.

    CLIP's byte-level BPE tokenizer maps every byte of text to some token, so
    its unknown share should be 0.

    NOTE: checked only with the word-level tokenizer of the embedded models,
    because no CLIP tokenizer files are available offline here.
    """
    content = tokenizer(list(captions), add_special_tokens=False)["input_ids"]
    full = tokenizer(list(captions))["input_ids"]
    read = tokenizer(list(captions), truncation=True)["input_ids"]
    unk = tokenizer.unk_token_id
    known = Counter()
    n_unknown = n_all_unknown = 0
    for ids in content:
        unknown_here = sum(token == unk for token in ids)
        n_unknown += unknown_here
        n_all_unknown += bool(ids) and unknown_here == len(ids)
        known.update(tokenizer.convert_ids_to_tokens([token for token in ids if token != unk]))
    return VocabularyCoverage(
        n_captions=len(captions),
        n_tokens=sum(len(ids) for ids in content),
        n_unknown=n_unknown,
        n_all_unknown=n_all_unknown,
        n_truncated=sum(len(ids) > tokenizer.model_max_length for ids in full),
        n_distinct_inputs=len({tuple(ids) for ids in read}),
        max_length=int(tokenizer.model_max_length),
        known_tokens=sorted(known.items(), key=lambda item: (-item[1], item[0])),
    )


def caption_as_read(tokenizer, caption: str) -> str:
    """Return ``caption`` as the model reads it: its tokens after truncation, joined by spaces.

    Start, end and padding tokens are left out; the unknown token stays.
    """
    ids = tokenizer(caption, truncation=True)["input_ids"]
    hidden = set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}
    return " ".join(tokenizer.convert_ids_to_tokens([token for token in ids if token not in hidden]))


def nearest_captions(loaded: LoadedCLIP, image_embeddings: np.ndarray, candidates: Sequence[str]) -> list[str]:
    """Return, for each L2-normalised image embedding, the most similar of ``candidates``."""
    text_emb = encoding.text_embeddings(loaded, list(candidates)).cpu().numpy()
    return [candidates[i] for i in (image_embeddings @ text_emb.T).argmax(axis=1)]


def _thumbnail_uri(image: np.ndarray, height: int) -> tuple[str, int]:
    """Return a JPEG data URI of ``image`` scaled to ``height`` pixels, and the scaled width."""
    picture = Image.fromarray(np.asarray(image, dtype=np.uint8))
    width = max(1, round(picture.width * height / picture.height))
    resample = Image.Resampling.LANCZOS if picture.height > height else Image.Resampling.NEAREST
    picture = picture.resize((width, height), resample)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"), width


def photo_grid(
    images: Sequence[np.ndarray], titles: Sequence[str], columns: int = 4, height: int = 110, title: str | None = None
) -> go.Figure:
    """Show RGB uint8 images of any size as JPEG thumbnails ``height`` pixels high, with wrapped titles.

    The thumbnails are embedded as data URIs, about 10 kB per image, where a
    pixel array of the same thumbnail would take a few hundred kB of JSON.
    Each grid cell is 1.6 times as wide as it is high, so landscape photos fit.
    """
    n = len(images)
    rows = int(np.ceil(n / columns))
    title_space = 45  # pixels above each row for a caption of up to three lines
    plot_height = rows * (height + title_space)
    wrapped = ["<br>".join(textwrap.wrap(text, 26)) for text in titles]
    fig = make_subplots(
        rows=rows, cols=columns, subplot_titles=wrapped, horizontal_spacing=0.02,
        vertical_spacing=title_space / plot_height if rows > 1 else 0.0,
    )
    for i, image in enumerate(images):
        uri, _ = _thumbnail_uri(image, height)
        fig.add_trace(go.Image(source=uri, hoverinfo="skip"), row=i // columns + 1, col=i % columns + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_annotations(font_size=10)
    top = title_space + (40 if title else 0)
    fig.update_layout(
        height=plot_height + top,
        width=columns * round(1.6 * height + 10) + 40,
        margin=dict(l=10, r=10, t=top, b=10),
        title=dict(text=title, y=1.0, yanchor="top", pad=dict(t=10)) if title else None,
    )
    return fig


def similarity_heatmap(
    similarity: np.ndarray, image_labels: Sequence[str], caption_labels: Sequence[str], best_caption: Sequence[int], title: str
) -> go.Figure:
    """Plot image x caption cosine similarity with a marker on each image's most similar caption."""
    # Numbered labels stay distinct when captions or file names repeat.
    columns = [f"{j + 1}. " + (text if len(text) <= 40 else text[:39] + "…") for j, text in enumerate(caption_labels)]
    rows = [f"{i + 1}. {text}" for i, text in enumerate(image_labels)]
    fig = go.Figure(go.Heatmap(z=similarity, x=columns, y=rows, colorscale="Viridis", colorbar_title="cosine"))
    fig.add_trace(
        go.Scatter(
            x=[columns[j] for j in best_caption],
            y=rows,
            mode="markers",
            marker=dict(symbol="x", size=9, color="white", line=dict(width=1, color="black")),
            name="most similar caption",
        )
    )
    side = 160 + 28 * len(image_labels)
    fig.update_layout(
        title=title,
        height=side + 220,
        width=max(600, side + 300),
        xaxis_tickangle=45,
        yaxis_autorange="reversed",
        legend=dict(orientation="h", y=1.02, yanchor="bottom"),
    )
    return fig
