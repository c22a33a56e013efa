"""Speed of ABC scoring for one image, against the memory-bound floor.

Prints a Markdown table: ms per image (median and best of the repeats),
pixels per second, the ratio to one numpy pass over the same probability array
(``probs.sum()``, timed the same way), and the extra memory the call allocates
relative to the probability array. Single-threaded.

    python benchmarks/acquisition.py [--repeats 7]

Inputs are synthetic but shaped like a model's output: spatially coherent
predictions over ~100 (CamVid size) or ~150 (Cityscapes size) segments.
"""

from __future__ import annotations

import os

for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

from a2lc.acquisition import abc  # noqa: E402


@dataclass(frozen=True)
class Case:
    name: str
    num_classes: int
    height: int
    width: int
    num_segments: int


CASES = (
    Case("CamVid 480×360", 11, 360, 480, 100),
    Case("Cityscapes 2048×1024", 19, 1024, 2048, 150),
)


def make_inputs(case: Case, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Probabilities ``C×H×W`` float32, labels ``H×W`` uint8, segments ``H×W`` int32."""
    rng = np.random.default_rng(seed)
    c, h, w = case.num_classes, case.height, case.width
    step = 8  # Voronoi cells on a coarse grid, upsampled: blocky, SAM-like segments
    cy, cx = rng.integers(0, h, case.num_segments), rng.integers(0, w, case.num_segments)
    yy, xx = np.mgrid[0:h:step, 0:w:step]
    coarse = ((yy[..., None] - cy) ** 2 + (xx[..., None] - cx) ** 2).argmin(-1) + 1
    segments = np.kron(coarse, np.ones((step, step), dtype=np.int64))[:h, :w].astype(np.int32)
    segment_class = rng.integers(0, c, case.num_segments + 1)
    truth = segment_class[segments]
    noise = ndimage.zoom(rng.normal(0, 1.5, (c, h // 16 + 1, w // 16 + 1)), (1, 16, 16), order=1)
    logits = noise[:, :h, :w].astype(np.float32)
    np.put_along_axis(logits, truth[None], np.take_along_axis(logits, truth[None], 0) + 3.0, 0)
    probs = np.exp(logits - logits.max(axis=0, keepdims=True))
    probs /= probs.sum(axis=0, keepdims=True)
    flips = rng.random(case.num_segments + 1) < 0.2
    noisy_class = np.where(flips, rng.integers(0, c, case.num_segments + 1), segment_class)
    labels = noisy_class[segments].astype(np.uint8)
    return probs.astype(np.float32), labels, segments


def timings(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(median, best) seconds over ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def extra_memory(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    rows = []
    for case in CASES:
        probs, labels, segments = make_inputs(case)
        weight = np.linspace(0.2, 1.0, case.num_classes)
        floor = timings(lambda p=probs: p.sum(), args.repeats)
        results = {}
        for backend in ("numba", "numpy"):

            def run(
                b: str = backend,
                p: np.ndarray = probs,
                lab: np.ndarray = labels,
                seg: np.ndarray = segments,
                w: np.ndarray = weight,
            ) -> object:
                return abc(p, lab, seg, class_weight=w, backend=b)  # type: ignore[arg-type]

            results[backend] = run()  # warm-up (JIT from cache)
            repeats = args.repeats if backend == "numba" else max(1, args.repeats // 3)
            rows.append(
                (case, backend, timings(run, repeats), floor, extra_memory(run) / probs.nbytes)
            )
        drift = np.max(
            np.abs(results["numba"].scores - results["numpy"].scores)
            / np.abs(results["numpy"].scores)
        )
        print(
            f"{case.name}: {np.unique(segments[segments > 0]).size} segments, "
            f"numba vs numpy max relative difference {drift:.1e}, "
            f"floor (probs.sum()) median {1000 * floor[0]:.2f} ms, best {1000 * floor[1]:.2f} ms"
        )
    print()
    print(
        "| image | backend | ms / image (median) | ms (best) | Mpixel/s (median) "
        "| × floor (median) | × floor (best) | extra memory × probs |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for case, backend, (median, best), (floor_median, floor_best), memory in rows:
        pixels = case.height * case.width
        print(
            f"| {case.name}, C={case.num_classes} | {backend} | {1000 * median:.1f} | "
            f"{1000 * best:.1f} | {pixels / median / 1e6:.1f} | {median / floor_median:.1f} | "
            f"{best / floor_best:.1f} | {memory:.2f} |"
        )


if __name__ == "__main__":
    main()
