"""LCM, the Label Correction Module, exactly as the reference code does it.

Each round an MLP (C→256→128→64→C, ReLU, softmax output) learns, from this
round's queried segments, to map a segment's mean probability vector to the
class the annotator gave it. It then relabels unqueried segments it is very
sure about, with guards for rare classes. The pure rules
(:func:`class_balanced_weights`, :func:`tail_classes`, :func:`select_relabels`)
work on arrays; the MLP is in :class:`LCMNet`.

Reference quirk kept on purpose (see the method spec): the cross-entropy is
applied on top of the softmax output (a double softmax), which keeps the loss
from saturating and drives confidences towards 1; the per-round thresholds
(up to 0.9999999) are calibrated to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from a2lc.data.sample import IGNORE_INDEX
from a2lc.data.segments import id_lookup, segment_sizes

CITYSCAPES_THRESHOLDS = (0.99, 0.99, 0.999, 0.9999, 0.9999999)
VOC_THRESHOLDS = (0.99,)
TAIL_FRACTION = 0.5
"""⌊TAIL_FRACTION · C⌋ classes count as tail classes."""


@dataclass(frozen=True)
class LCMConfig:
    """LCM options; the defaults are the reference values (Cityscapes thresholds)."""

    thresholds: tuple[float, ...] = CITYSCAPES_THRESHOLDS
    epochs: int = 100
    batch_size: int = 8
    lr: float = 1e-4
    hidden: tuple[int, ...] = (256, 128, 64)
    tail_fraction: float = TAIL_FRACTION
    seed: int = 0

    def threshold(self, round_index: int) -> float:
        """τ_r for round r ≥ 1; the last value repeats for later rounds."""
        return self.thresholds[min(round_index, len(self.thresholds)) - 1]


def segment_features(probs: np.ndarray, segments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean probability vector of each segment: ids ``(M,)`` and features ``(M, C)`` float32.

    ``probs``: ``C×H×W``; ``segments``: ``H×W`` (0 = none).
    """
    num_classes = probs.shape[0]
    ids, sizes = segment_sizes(segments)
    rows = id_lookup(segments, ids)
    covered = rows >= 0
    flat = probs.reshape(num_classes, -1)
    sums = np.stack(
        [
            np.bincount(rows[covered], weights=flat[c, covered], minlength=ids.size)
            for c in range(num_classes)
        ],
        axis=1,
    )
    return ids, (sums / sizes[:, None]).astype(np.float32)


def class_balanced_weights(targets: np.ndarray, num_classes: int) -> np.ndarray:
    """``u_c ∝ N / n_c`` normalised to sum 1 (0 where ``n_c = 0``); ``(C,)`` float32."""
    counts = np.bincount(np.asarray(targets, dtype=np.int64), minlength=num_classes)[:num_classes]
    weight = np.zeros(num_classes, dtype=np.float64)
    seen = counts > 0
    weight[seen] = counts.sum() / counts[seen]
    total = weight.sum()
    return (weight / total if total > 0 else weight).astype(np.float32)


def tail_classes(
    after_labels: np.ndarray, num_classes: int, *, fraction: float = TAIL_FRACTION
) -> np.ndarray:
    """The ⌊fraction·C⌋ classes with the fewest queried segments (ties: smaller id first).

    ``after_labels``: ``(Q,)`` label of each segment queried this round after
    correction (255 is not a class and is not counted). Element 0 is the rarest class c*.
    """
    labels = np.asarray(after_labels, dtype=np.int64)
    labels = labels[labels != IGNORE_INDEX]
    counts = np.bincount(labels, minlength=num_classes)[:num_classes]
    order = np.lexsort((np.arange(num_classes), counts))
    return order[: int(np.floor(fraction * num_classes))]


def select_relabels(
    current: np.ndarray,
    predicted: np.ndarray,
    confidence: np.ndarray,
    *,
    eligible: np.ndarray,
    tail: np.ndarray,
    threshold: float,
) -> np.ndarray:
    """Which segments LCM relabels to ``predicted``; all arrays ``(M,)``.

    Rule: ``ŷ ≠ y``, ``q ≥ τ``, ``ŷ ∉ T``, ``y ≠ c*`` (the rarest class, ``tail[0]``),
    and the segment is eligible (never queried, in this or any earlier round).
    """
    current = np.asarray(current)
    predicted = np.asarray(predicted)
    rarest = tail[0] if len(tail) else -1
    return np.asarray(
        eligible
        & (predicted != current)
        & (confidence >= threshold)
        & ~np.isin(predicted, tail)
        & (current != rarest)
    )


class LCMPrediction(NamedTuple):
    """``predicted``: ``(M,)`` class; ``confidence``: ``(M,)`` max of the softmax output."""

    predicted: np.ndarray
    confidence: np.ndarray


PREDICT_CHUNK = 32_768
"""LCM predicts the pool's segments this many at a time, so that the MLP's activations
(a few KB per segment) do not grow with the pool; a CamVid pool (22k segments) is one
chunk."""


def fit_and_predict(
    train_features: np.ndarray,
    train_targets: np.ndarray,
    features: np.ndarray,
    *,
    num_classes: int,
    config: LCMConfig,
) -> LCMPrediction:
    """Train a fresh LCM MLP on ``(Q, C)`` features / ``(Q,)`` targets, predict ``(M, C)`` features.

    Always on the CPU with one thread: a step is about 2 MFLOP, so more threads or
    an accelerator only add dispatch and synchronisation cost. The optimiser is
    :class:`FlatAdam`, the arithmetic of ``torch.optim.Adam`` on one flat buffer, and
    gradients come from :meth:`LCMNet.accumulate_gradients`, autograd's kernels
    without its graph (bit-identical results, a fraction of the per-step overhead).
    """
    import torch

    from a2lc.correction.lcm_net import FlatAdam, LCMNet
    from a2lc.runtime import torch_threads

    with torch_threads(1):
        torch.manual_seed(config.seed)
        net = LCMNet(num_classes, hidden=config.hidden)
        optimizer = FlatAdam(net, lr=config.lr)
        x = torch.from_numpy(np.asarray(train_features, dtype=np.float32))
        y = torch.from_numpy(np.asarray(train_targets, dtype=np.int64))
        weight = torch.from_numpy(class_balanced_weights(train_targets, num_classes))
        generator = torch.Generator().manual_seed(config.seed)
        net.train()
        for _ in range(config.epochs):
            order = torch.randperm(len(x), generator=generator)
            x_epoch, y_epoch = x[order], y[order]  # one gather per epoch; batches are views
            for start in range(0, len(x), config.batch_size):
                stop = start + config.batch_size
                optimizer.zero_grad()
                # cross_entropy on the softmax output (the reference's double softmax),
                # backward without autograd's bookkeeping: the same bits.
                net.accumulate_gradients(x_epoch[start:stop], y_epoch[start:stop], weight)
                optimizer.step()
        net.eval()
        inputs = torch.from_numpy(np.asarray(features, dtype=np.float32))
        confidences, predictions = [], []
        with torch.no_grad():
            for start in range(0, max(len(inputs), 1), PREDICT_CHUNK):
                confidence, predicted = net(inputs[start : start + PREDICT_CHUNK]).max(dim=1)
                confidences.append(confidence)
                predictions.append(predicted)
    return LCMPrediction(
        torch.cat(predictions).numpy().astype(np.int64),
        torch.cat(confidences).numpy().astype(np.float64),
    )
