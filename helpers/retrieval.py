"""Zero-shot retrieval scores of a CLIP model on ShapesWorld."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import encoding, shapes
from .loading import LoadedCLIP


@dataclass
class ShapesRetrieval:
    """Retrieval results on the one-object scenes of a ShapesWorld data set.

    Attributes:
        image_to_text_top1: share of images whose most similar caption, among
            every one-object caption, is their own.
        text_to_image_top1: share of distinct captions in the data whose most
            similar image carries that caption.
        attribute_accuracy: for each attribute, the share of images whose
            most similar caption has the right value of it.
        predicted_captions: the most similar caption of each image.
        similarity: image x caption cosine similarities, shape (n_images, n_captions).
        captions: the candidate captions, in column order.
        n_images: number of one-object images scored.
    """

    image_to_text_top1: float
    text_to_image_top1: float
    attribute_accuracy: dict[str, float]
    predicted_captions: list[str]
    similarity: np.ndarray
    captions: list[str]
    n_images: int


def shapes_retrieval(loaded: LoadedCLIP, data: shapes.ShapesDataset) -> ShapesRetrieval:
    """Score image-to-text and text-to-image retrieval on the one-object scenes of ``data``.

    The candidate captions are all one-object captions of ShapesWorld
    (``shapes.all_single_object_captions()``), so chance is 1 / 160.
    """
    single = data.single_object()
    if len(single) == 0:
        raise ValueError("the data set has no one-object scenes to score retrieval on")
    captions = shapes.all_single_object_captions()
    image_emb = encoding.image_embeddings(loaded, encoding.pixel_values(loaded, single.images))
    text_emb = encoding.text_embeddings(loaded, captions)
    similarity = (image_emb @ text_emb.T).cpu()

    caption_index = {caption: i for i, caption in enumerate(captions)}
    truth = torch.tensor([caption_index[c] for c in single.captions])
    predicted = similarity.argmax(dim=1)
    image_to_text = (predicted == truth).float().mean().item()

    # Text to image: each distinct caption present queries the images.
    present = sorted(set(truth.tolist()))
    best_image = similarity[:, present].argmax(dim=0)
    text_to_image = (truth[best_image] == torch.tensor(present)).float().mean().item()

    predicted_captions = [captions[i] for i in predicted.tolist()]
    attribute_accuracy = {}
    for attribute in shapes.ATTRIBUTES:
        hits = [
            shapes.caption_attributes(guess)[attribute] == objs[0].attribute(attribute)
            for guess, objs in zip(predicted_captions, single.objects)
        ]
        attribute_accuracy[attribute] = float(np.mean(hits))

    return ShapesRetrieval(
        image_to_text_top1=image_to_text,
        text_to_image_top1=text_to_image,
        attribute_accuracy=attribute_accuracy,
        predicted_captions=predicted_captions,
        similarity=similarity.numpy(),
        captions=captions,
        n_images=len(single),
    )
