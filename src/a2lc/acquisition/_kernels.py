"""Fused numba kernel for ABC/ALC: two sweeps over the probabilities.

The score of segment m is ``Σ_x w[y_x] CIL_x cos(P_x, rep_m)``. Because
``cos(P_x, rep) = P_x·rep / (|P_x| |rep|)``, it factors into

    score_m = (A_m · R_m) / |R_m|,   A_m = Σ_x (w[y_x] CIL_x / |P_x|) P_x,

with ``R_m`` the sum (or mean: the scale cancels) of ``P_x`` over the pixels of
m that predict m's dominant class. So no per-pixel vector has to be kept:

1. sweep 1, tile by tile: argmax and norm per pixel (class-major, vectorised),
   then the per-pixel factor ``w[y] CIL / |P|`` and the prediction histogram of
   each segment → dominant class per segment;
2. sweep 2, tile by tile: runs of consecutive pixels of one segment; per class
   one contiguous (vectorised) sum per run into ``A`` and ``R``.

Extra memory: 5 bytes per pixel (prediction, factor) plus ``M×C`` sums.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

TILE = 4096
"""Pixels per tile: C rows of this many float32 stay in L2 for C up to ~60."""

# Reassociation lets LLVM vectorise the reductions; NaN/Inf semantics are kept.
_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}


@njit(cache=True, nogil=True, fastmath=_FASTMATH)
def accumulate(
    probs: np.ndarray,  # (C, N) float32, C-contiguous
    labels: np.ndarray,  # (N,) uint8
    segments: np.ndarray,  # (N,) int32 segment ids
    index: np.ndarray,  # (max id + 1,) int64: segment id -> row, -1 = skip
    weights: np.ndarray,  # (C,) float64
    ignore_index: int,
    acc_a: np.ndarray,  # (M, C) float64 out: Σ factor·P
    acc_r: np.ndarray,  # (M, C) float64 out: Σ P over pixels predicting the dominant class
    hist: np.ndarray,  # (M, C) int64 out: prediction histogram
    predicted: np.ndarray,  # (N,) uint8 scratch
    factor: np.ndarray,  # (N,) float32 scratch
) -> None:
    num_classes, num_pixels = probs.shape
    best = np.empty(TILE, dtype=np.float32)  # class id as float: one lane type
    best_value = np.empty(TILE, dtype=np.float32)
    squares = np.empty(TILE, dtype=np.float32)
    for t0 in range(0, num_pixels, TILE):
        n = min(TILE, num_pixels - t0)
        first = probs[0, t0 : t0 + n]
        for j in range(n):
            best_value[j] = first[j]
            best[j] = 0.0
            squares[j] = 0.0
        for c in range(num_classes):
            column = probs[c, t0 : t0 + n]
            as_float = np.float32(c)
            for j in range(n):
                value = column[j]
                squares[j] += value * value
                current = best_value[j]
                larger = value > current
                best_value[j] = value if larger else current
                best[j] = as_float if larger else best[j]
        for j in range(n):
            i = t0 + j
            row = index[segments[i]]
            pred = int(best[j])
            predicted[i] = pred
            if row < 0:
                factor[i] = 0.0
                continue
            label = labels[i]
            target = pred if label == ignore_index else label
            norm = math.sqrt(squares[j])
            confidence = 1.0 - probs[target, i]
            factor[i] = 0.0 if norm == 0.0 else weights[target] * confidence / norm
            hist[row, pred] += 1

    num_rows = hist.shape[0]
    dominant = np.zeros(num_rows, dtype=np.int64)
    for row in range(num_rows):
        top = hist[row, 0]
        for c in range(1, num_classes):
            if hist[row, c] > top:  # strict: ties go to the smallest class id
                top = hist[row, c]
                dominant[row] = c

    on_dominant = np.empty(TILE, dtype=np.float32)
    run_start = np.empty(TILE + 1, dtype=np.int64)
    run_row = np.empty(TILE, dtype=np.int64)
    for t0 in range(0, num_pixels, TILE):
        n = min(TILE, num_pixels - t0)
        runs = 0
        previous_row = -2
        for j in range(n):
            row = index[segments[t0 + j]]
            on_dominant[j] = 1.0 if row >= 0 and predicted[t0 + j] == dominant[row] else 0.0
            if row != previous_row:
                run_start[runs] = j
                run_row[runs] = row
                runs += 1
                previous_row = row
        run_start[runs] = n
        weight_tile = factor[t0 : t0 + n]
        for c in range(num_classes):
            column = probs[c, t0 : t0 + n]
            for r in range(runs):
                row = run_row[r]
                if row < 0:
                    continue
                start = run_start[r]
                stop = run_start[r + 1]
                # Slices keep the loop index provably non-negative, which lets
                # LLVM drop the negative-index check and vectorise.
                values = column[start:stop]
                weights_run = weight_tile[start:stop]
                dominant_run = on_dominant[start:stop]
                sum_a = 0.0
                sum_r = 0.0
                for k in range(stop - start):
                    value = values[k]
                    sum_a += weights_run[k] * value
                    sum_r += dominant_run[k] * value
                acc_a[row, c] += sum_a
                acc_r[row, c] += sum_r


@njit(cache=True, nogil=True)
def segment_rows(segments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Present segment ids ``(M,)`` (ascending, 0 excluded) and the id → row LUT (-1 = absent)."""
    top = 0
    for value in segments:
        top = max(top, value)
    present = np.zeros(top + 1, dtype=np.bool_)
    for value in segments:
        present[value] = True
    present[0] = False
    index = np.full(top + 1, -1, dtype=np.int64)
    ids = np.empty(int(present.sum()), dtype=np.int32)
    row = 0
    for value in range(top + 1):
        if present[value]:
            index[value] = row
            ids[row] = value
            row += 1
    return ids, index
