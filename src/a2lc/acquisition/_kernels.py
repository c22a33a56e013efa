"""Fused numba kernel for ABC/ALC and the LCM features: one sweep over the probabilities.

The score of segment m is ``Σ_x w[y_x] CIL_x cos(P_x, rep_m)``. Because
``cos(P_x, rep) = P_x·rep / (|P_x| |rep|)``, it factors into

    score_m = Σ_y w[y] (A_{m,y} · R_m) / |R_m|,   A_{m,y} = Σ_{x∈m, y_x=y} (CIL_x / |P_x|) P_x,

with ``R_m`` the sum (or mean: the scale cancels) of ``P_x`` over the pixels of
m that predict m's dominant class. The dominant class is only known once the
whole segment has been seen, so the sweep keeps ``R`` for every predicted class,
``R_{m,d} = Σ_{x∈m, pred_x=d} P_x``, and picks ``R_m = R_{m,dominant}`` at the
end; ``Σ_d R_{m,d}`` is the segment's probability sum (the LCM feature). Keeping
``A`` per label class ``y`` lets the class weight be applied afterwards, so it
can be computed from the same pass over the pool.

Per tile of pixels (in L2): argmax and norm per pixel (class-major,
vectorised), then runs of consecutive pixels with the same (segment, label,
prediction), and per class one contiguous (vectorised) sum per run into ``A``
and ``R``. The probabilities are read from memory once. Extra memory: 10 bytes
per tile pixel plus ``2·M·C·C`` float64 sums.
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
    ignore_index: int,
    acc_a: np.ndarray,  # (M, C, C) float64 out: [row, y, c] Σ CIL/|P| · P_c
    acc_r: np.ndarray,  # (M, C, C) float64 out: [row, pred, c] Σ P_c
    hist: np.ndarray,  # (M, C) int64 out: prediction histogram
) -> None:
    num_classes, num_pixels = probs.shape
    best = np.empty(TILE, dtype=np.float32)  # class id as float: one lane type
    best_value = np.empty(TILE, dtype=np.float32)
    squares = np.empty(TILE, dtype=np.float32)
    factor = np.empty(TILE, dtype=np.float32)
    run_start = np.empty(TILE + 1, dtype=np.int64)
    run_row = np.empty(TILE, dtype=np.int64)
    run_label = np.empty(TILE, dtype=np.int64)
    run_pred = np.empty(TILE, dtype=np.int64)
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
        runs = 0
        previous = (-2, -1, -1)
        for j in range(n):
            i = t0 + j
            row = index[segments[i]]
            pred = int(best[j])
            label = labels[i]
            target = pred if label == ignore_index else int(label)
            if row < 0:
                factor[j] = 0.0
                target = -1
                pred = -1
            else:
                norm = math.sqrt(squares[j])
                confidence = 1.0 - probs[target, i]
                factor[j] = 0.0 if norm == 0.0 else confidence / norm
                hist[row, pred] += 1
            key = (row, target, pred)
            if key != previous:
                run_start[runs] = j
                run_row[runs] = row
                run_label[runs] = target
                run_pred[runs] = pred
                runs += 1
                previous = key
        run_start[runs] = n
        weight_tile = factor[:n]
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
                sum_a = 0.0
                sum_r = 0.0
                for k in range(stop - start):
                    value = values[k]
                    sum_a += weights_run[k] * value
                    sum_r += value
                acc_a[row, run_label[r], c] += sum_a
                acc_r[row, run_pred[r], c] += sum_r


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


@njit(cache=True, nogil=True, fastmath=_FASTMATH)
def accumulate_cosine_mass(
    probs: np.ndarray,  # (C, N) float32, C-contiguous
    labels: np.ndarray,  # (N,) uint8
    segments: np.ndarray,  # (N,) int32 segment ids
    index: np.ndarray,  # (max id + 1,) int64: segment id -> row, -1 = skip
    rep: np.ndarray,  # (M, C) float64 unit representative vector per row (0 = none)
    ignore_index: int,
    acc_q: np.ndarray,  # (M, C, C) float64 out: [row, y, c] Σ cos(P_x, rep) · P_c
) -> None:
    """Second sweep (the representative must be known): cosine-weighted probability mass."""
    num_classes, num_pixels = probs.shape
    best = np.empty(TILE, dtype=np.float32)
    best_value = np.empty(TILE, dtype=np.float32)
    squares = np.empty(TILE, dtype=np.float64)
    dots = np.empty(TILE, dtype=np.float64)
    rows = np.empty(TILE, dtype=np.int64)
    cosine = np.empty(TILE, dtype=np.float64)
    run_start = np.empty(TILE + 1, dtype=np.int64)
    run_row = np.empty(TILE, dtype=np.int64)
    run_label = np.empty(TILE, dtype=np.int64)
    for t0 in range(0, num_pixels, TILE):
        n = min(TILE, num_pixels - t0)
        for j in range(n):
            rows[j] = index[segments[t0 + j]]
            best_value[j] = probs[0, t0 + j]
            best[j] = 0.0
            squares[j] = 0.0
            dots[j] = 0.0
        for c in range(num_classes):
            column = probs[c, t0 : t0 + n]
            as_float = np.float32(c)
            for j in range(n):
                value = column[j]
                squares[j] += value * value
                row = rows[j]
                if row >= 0:
                    dots[j] += value * rep[row, c]
                current = best_value[j]
                larger = value > current
                best_value[j] = value if larger else current
                best[j] = as_float if larger else best[j]
        runs = 0
        previous_row = -2
        previous_label = -1
        for j in range(n):
            row = rows[j]
            target = -1
            if row >= 0:
                label = labels[t0 + j]
                target = int(best[j]) if label == ignore_index else int(label)
                norm = math.sqrt(squares[j])
                cosine[j] = 0.0 if norm == 0.0 else dots[j] / norm
            else:
                cosine[j] = 0.0
            if row != previous_row or target != previous_label:
                run_start[runs] = j
                run_row[runs] = row
                run_label[runs] = target
                runs += 1
                previous_row = row
                previous_label = target
        run_start[runs] = n
        for c in range(num_classes):
            column = probs[c, t0 : t0 + n]
            for r in range(runs):
                row = run_row[r]
                if row < 0:
                    continue
                start = run_start[r]
                stop = run_start[r + 1]
                values = column[start:stop]
                weights_run = cosine[start:stop]
                total = 0.0
                for k in range(stop - start):
                    total += weights_run[k] * values[k]
                acc_q[row, run_label[r], c] += total
