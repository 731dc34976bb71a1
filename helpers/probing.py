"""Layer-wise linear probes with control tasks.

A probe is a multinomial logistic regression (scikit-learn, L-BFGS, features
standardised on the training split) that reads one attribute from the
residual stream at one layer. Its accuracy on held-out rows measures how
linearly decodable the attribute is there.

A control task (Hewitt and Liang, 2019) trains the same probe on labels
that mean nothing: every distinct *input type* gets one label drawn at
random from the attribute's empirical label distribution, fixed for the whole
run. Types recur between the training and test rows, so a probe can score
above chance on the control task only by memorising types. Selectivity is
accuracy minus control accuracy. A probe that is accurate but not selective
says more about its own capacity than about the representation.

The input type must be finer than the attribute: a control keyed on the
attribute's own value is a relabelling of the classes, which a multinomial
probe fits exactly as well, so selectivity would be 0 by construction. On
ShapesWorld the type is the one-object caption (all four attributes).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Hashable, Sequence

import numpy as np
import torch
from jaxtyping import Float, Int
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits
from tqdm import tqdm
from vit_prisma.models.base_vit import HookedViT

from .hooked_text import HookedTextTower

# Inverse L2 strength of the probes (scikit-learn's default).
PROBE_C = 1.0
PROBE_MAX_ITER = 2000


def split_indices(n: int, test_fraction: float = 1 / 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return disjoint, sorted train and test row indices from a seeded permutation of range(n)."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    n_test = int(round(n * test_fraction))
    if n_test < 1 or n_test >= n:
        raise ValueError(f"cannot split {n} rows with test_fraction={test_fraction}: each split needs a row")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def control_labels(keys: Sequence[Hashable], labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Return control-task labels: one random label per distinct key, drawn from the labels' distribution.

    Rows with label -1 (unknown) keep -1. Keys are visited in sorted order,
    so the mapping depends only on ``seed`` and the set of keys.
    """
    labels = np.asarray(labels)
    if len(keys) != len(labels):
        raise ValueError(f"got {len(keys)} keys for {len(labels)} labels")
    known = labels >= 0
    if not known.any():
        raise ValueError("no known labels (all are -1)")
    classes, counts = np.unique(labels[known], return_counts=True)
    rng = np.random.default_rng(seed)
    distinct = sorted({key for key, ok in zip(keys, known) if ok}, key=repr)
    mapping = dict(zip(distinct, rng.choice(classes, size=len(distinct), p=counts / counts.sum())))
    return np.array([mapping[key] if ok else -1 for key, ok in zip(keys, known)])


def control_keys(captions: Sequence[str], labels: dict[str, np.ndarray]) -> list[Hashable]:
    """Return the input type of each row for the control task.

    The caption is the type when the data has more distinct captions than
    classes of every attribute (ShapesWorld). Otherwise the caption is no
    finer than the label (digits: "a handwritten seven"), and each image is
    its own type. Such types never recur in the test split, so the control
    task measures only the chance level.
    """
    n_captions = len(set(captions))
    finest = max(len(np.unique(values[values >= 0])) for values in labels.values())
    if n_captions > finest:
        return list(captions)
    return list(range(len(captions)))


def probe_accuracy(
    train_features: Float[np.ndarray, "n_train d"],
    train_labels: Int[np.ndarray, " n_train"],
    test_features: Float[np.ndarray, "n_test d"],
    test_labels: Int[np.ndarray, " n_test"],
    c: float = PROBE_C,
) -> float:
    """Fit a standardised logistic-regression probe on the training rows and return its test accuracy.

    A training split with a single class gives the constant prediction of that class.
    """
    classes = np.unique(train_labels)
    if len(classes) == 1:
        return float(np.mean(test_labels == classes[0]))
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=PROBE_MAX_ITER))
    # Probes fit a few thousand rows at most, too little for BLAS threads to pay off, and
    # threads that wait on each other stall when other processes share the CPU.
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        # A probe that has not fully converged after PROBE_MAX_ITER steps is still a valid lower bound.
        warnings.simplefilter("ignore", ConvergenceWarning)
        probe.fit(train_features, train_labels)
        return float(probe.score(test_features, test_labels))


@dataclass
class ProbeResults:
    """Test accuracy of layer-wise probes for several attributes.

    Attributes:
        attributes: attribute names, the row order of the arrays.
        accuracy: probe accuracy, shape (n_attributes, n_layers).
        control: control-task accuracy, same shape.
        majority: accuracy of predicting the most frequent training label, per attribute.
        layer_names: names of the probed layers ("embeddings", "layer 1", ...).
    """

    attributes: list[str]
    accuracy: np.ndarray
    control: np.ndarray
    majority: np.ndarray
    layer_names: list[str]

    @property
    def selectivity(self) -> np.ndarray:
        """Accuracy minus control accuracy, shape (n_attributes, n_layers)."""
        return self.accuracy - self.control

    def best_layer(self, attribute: str) -> int:
        """Return the index of the layer with the highest accuracy for ``attribute`` (earliest on ties)."""
        return int(np.argmax(self.accuracy[self.attributes.index(attribute)]))


def layerwise_probes(
    features: Float[np.ndarray, "n layer d"],
    labels: dict[str, np.ndarray],
    keys: Sequence[Hashable],
    train: np.ndarray,
    test: np.ndarray,
    seed: int = 0,
    layer_names: Sequence[str] | None = None,
) -> ProbeResults:
    """Probe every attribute at every layer, with a control task per attribute.

    Rows whose label is -1 are left out. Each attribute's control labels come
    from :func:`control_labels` with ``keys`` and a seed derived from
    ``seed`` and the attribute's position.
    """
    features = np.asarray(features, dtype=np.float64)
    n_layers = features.shape[1]
    names = list(layer_names) if layer_names is not None else ["embeddings", *(f"layer {i}" for i in range(1, n_layers))]
    attributes = list(labels)
    accuracy = np.zeros((len(attributes), n_layers))
    control = np.zeros_like(accuracy)
    majority = np.zeros(len(attributes))
    jobs = [(a, layer) for a in range(len(attributes)) for layer in range(n_layers)]
    for a, layer in tqdm(jobs, desc="probes", leave=False, mininterval=2):
        y = np.asarray(labels[attributes[a]])
        y_control = control_labels(keys, y, seed=seed + 1000 * (a + 1))
        train_rows, test_rows = train[y[train] >= 0], test[y[test] >= 0]
        if layer == 0:
            values, counts = np.unique(y[train_rows], return_counts=True)
            majority[a] = np.mean(y[test_rows] == values[np.argmax(counts)])
        x = features[:, layer]
        accuracy[a, layer] = probe_accuracy(x[train_rows], y[train_rows], x[test_rows], y[test_rows])
        control[a, layer] = probe_accuracy(x[train_rows], y_control[train_rows], x[test_rows], y_control[test_rows])
    return ProbeResults(attributes, accuracy, control, majority, names)


@torch.no_grad()
def vision_residuals(
    hooked: HookedViT, pixels: Float[torch.Tensor, "n 3 size size"], batch_size: int = 256
) -> Float[np.ndarray, "n layer d_model"]:
    """Return the residual stream at the CLS token after the embeddings and after every layer.

    Index 0 is ``blocks.0.hook_resid_pre`` (embeddings after CLIP's pre-LayerNorm,
    Hugging Face's hidden_states[0]), and index l is ``blocks.{l-1}.hook_resid_post``.
    """
    names = ["blocks.0.hook_resid_pre", *(f"blocks.{layer}.hook_resid_post" for layer in range(hooked.cfg.n_layers))]
    chunks = []
    for start in tqdm(range(0, len(pixels), batch_size), desc="vision residuals", leave=False, mininterval=2):
        _, cache = hooked.run_with_cache(pixels[start : start + batch_size], names_filter=names)
        chunks.append(torch.stack([cache[name][:, 0] for name in names], dim=1).float().cpu())
    return torch.cat(chunks).numpy()


@torch.no_grad()
def text_residuals(
    tower: HookedTextTower,
    input_ids: Int[torch.Tensor, "n token"],
    attention_mask: Int[torch.Tensor, "n token"],
    batch_size: int = 512,
) -> Float[np.ndarray, "n layer d_model"]:
    """Return the residual stream at the end-of-text token after the embeddings and after every layer.

    Index 0 is ``blocks.0.hook_resid_pre`` (token + position embeddings),
    and index l is ``blocks.{l-1}.hook_resid_post``. The end-of-text token is where
    the text tower pools.
    """
    names = ["blocks.0.hook_resid_pre", *(f"blocks.{layer}.hook_resid_post" for layer in range(tower.n_layers))]
    chunks = []
    for start in range(0, len(input_ids), batch_size):
        ids, mask = input_ids[start : start + batch_size], attention_mask[start : start + batch_size]
        _, cache = tower.run_with_cache(ids, mask, names_filter=names)
        eot = tower.end_of_text_index(ids)
        rows = torch.arange(len(ids))
        chunks.append(torch.stack([cache[name][rows, eot] for name in names], dim=1).float().cpu())
    return torch.cat(chunks).numpy()
