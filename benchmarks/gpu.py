"""What a round costs on a GPU: one prepared script (issue #26).

Measures, on the machine it runs on (CUDA when present, else CPU), and writes
``--out`` (JSON, default ``benchmarks/results/gpu.json``) plus a printed table:

1. ``a2lc``'s loop on CamVid (``--data``; bring the copy into the working tree on a
   machine that only gets the tree), the default strategy, 2 rounds: per-stage wall
   time, peak GPU memory, data and model mIoU; the same with the encoder fine-tuned
   (``--fine-tune``) on the same initial labels;
2. the paper's model (``deeplabv3plus-resnet101``, random initialisation: no weights
   are downloaded) at crop 768, batch 8: training iterations/s and peak memory over
   50 iterations (after 3 warm-up ones); prediction of 2048×1024 images: images/s;
3. the scoring sweep (segment statistics + expected-gain parts) at 2048×1024, 19
   classes, on the CPU with every core;
4. the derived figure: one Cityscapes-size round (2,975 images) with the paper's
   schedule (30k iterations at batch 8) and with a2lc's default (the frozen encoder's
   head, 6 epochs), in minutes, with the assumptions stated in the JSON.

``--tiny`` runs every part at toy sizes (a few images, a few iterations) so the test
suite keeps the script working on a CPU:

    python benchmarks/gpu.py --data data/camvid                       # the GPU run
    python benchmarks/gpu.py --data DATA --tiny --out /tmp/gpu.json   # the CPU check
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CITYSCAPES_IMAGES = 2975
CITYSCAPES_SIZE = (1024, 2048)
PAPER_ITERATIONS = 30_000
PAPER_BATCH = 8
DEFAULT_EPOCHS = 6


@dataclass(frozen=True)
class Sizes:
    """Everything the tiny mode shrinks."""

    pool_images: int | None  # None: the whole train split
    rounds: int
    epochs: int
    seed_epochs: int
    min_confidence: float  # of the seed model's labels (a toy seed model is never sure)
    crop: int
    batch: int
    iterations: int
    warmup: int
    predict_size: tuple[int, int]
    predict_images: int
    sweep_size: tuple[int, int]
    sweep_repeats: int


FULL = Sizes(
    None, 2, DEFAULT_EPOCHS, 40, 0.5, 768, 8, 50, 3, CITYSCAPES_SIZE, 10, CITYSCAPES_SIZE, 5
)
TINY = Sizes(6, 1, 1, 2, 0.0, 32, 2, 2, 1, (64, 128), 2, (64, 128), 2)


def _device() -> Any:
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _synchronise() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _reset_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def _peak_mb() -> float | None:
    import torch

    if torch.cuda.is_available():
        return float(torch.cuda.max_memory_allocated()) / 2**20
    return None


def machine() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_cores": os.cpu_count(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_gb"] = torch.cuda.get_device_properties(0).total_memory / 2**30
    return info


# ----------------------------------------------------------------------- 1. the loop


def _initial_workspace(data: Path, work: Path, sizes: Sizes) -> Path:
    from a2lc.data.readers import load_dataset
    from a2lc.steps.pseudo_labels import PseudoLabelConfig, make_pseudo_labels
    from a2lc.workspace import Workspace

    dataset = load_dataset(data, split="train")
    if sizes.pool_images is not None:
        dataset = replace(dataset, samples=dataset.samples[: sizes.pool_images])
    path = work / "initial"
    with Workspace.create(path, dataset, show_progress=False) as ws:
        config = PseudoLabelConfig(
            source="gt-proxy",
            noise="seed",
            seed_images=min(5, len(dataset.samples) - 1),
            seed=1,
            seed_epochs=sizes.seed_epochs,
            min_confidence=sizes.min_confidence,
        )
        make_pseudo_labels(ws, config=config, cache_dir=work / "cache", show_progress=False)
    return path


def _has_split(data: Path, split: str) -> bool:
    from a2lc.data.readers import load_dataset
    from a2lc.errors import A2LCError

    try:
        return bool(load_dataset(data, split=split).samples)
    except A2LCError:
        return False


def run_loop(
    data: Path,
    work: Path,
    initial: Path,
    *,
    fine_tune: bool,
    sizes: Sizes,
    device: str = "auto",
    rounds: int | None = None,
) -> dict[str, Any]:
    """The default strategy's loop; wall time of every step (``rN/step``)."""
    import shutil

    from a2lc.models.config import ModelConfig
    from a2lc.models.training import TrainConfig
    from a2lc.rounds import RunConfig, run_rounds
    from a2lc.strategies import DEFAULT_STRATEGY
    from a2lc.workspace import Workspace

    path = work / f"{'fine-tune' if fine_tune else 'frozen'}-{device}"
    shutil.copytree(initial, path)
    eval_split = "val" if _has_split(data, "val") else None
    config = RunConfig(
        strategy=DEFAULT_STRATEGY,
        rounds=rounds if rounds is not None else sizes.rounds,
        eval_split=eval_split,
        seed=1,
        model=ModelConfig(frozen_encoder=not fine_tune),
        train=TrainConfig(epochs=sizes.epochs, seed=1, device=device),
    )
    stages: dict[str, float] = {}
    last = [time.perf_counter()]

    def on_step(round_index: int, name: str) -> None:
        _synchronise()
        now = time.perf_counter()
        stages[f"r{round_index}/{name}"] = round(now - last[0], 3)
        last[0] = now

    _reset_peak()
    started = time.perf_counter()
    with Workspace.open(path) as ws:
        result = run_rounds(
            ws, config, cache_dir=work / "cache", show_progress=False, on_step=on_step
        )
    total = time.perf_counter() - started
    metrics = result.metrics
    return {
        "fine_tune": fine_tune,
        "device": device,
        "strategy": DEFAULT_STRATEGY,
        "rounds": config.rounds,
        "seconds_total": round(total, 2),
        "seconds_per_step": stages,
        "peak_gpu_memory_mb": _peak_mb(),
        "data_miou": [metrics[r].get("data_miou") for r in sorted(metrics)],
        "model_miou": [metrics[r].get("model_miou") for r in sorted(metrics)],
    }


# ----------------------------------------------------------------- 2. the paper's model


def paper_model(sizes: Sizes) -> dict[str, Any]:
    """DeepLabV3+ ResNet-101, random init: training it/s and peak memory; prediction images/s."""
    import torch

    from a2lc.models.config import ModelConfig
    from a2lc.models.zoo import build_model

    device = _device()
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(
            name="deeplabv3plus-resnet101", num_classes=19, weights="none", frozen_encoder=False
        )
    ).to(device)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    images = torch.randn(sizes.batch, 3, sizes.crop, sizes.crop, device=device)
    target = torch.randint(0, 19, (sizes.batch, sizes.crop, sizes.crop), device=device)
    model.train()

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        logits = model(images)
        loss = torch.nn.functional.cross_entropy(logits, target, ignore_index=255)
        loss.backward()
        optimiser.step()

    for _ in range(sizes.warmup):
        step()
    _synchronise()
    _reset_peak()
    started = time.perf_counter()
    for _ in range(sizes.iterations):
        step()
    _synchronise()
    train_seconds = time.perf_counter() - started
    train_peak = _peak_mb()
    model.eval()
    height, width = sizes.predict_size
    image = torch.randn(1, 3, height, width, device=device)
    with torch.no_grad():
        model(image).softmax(dim=1)  # warm-up
        _synchronise()
        _reset_peak()
        started = time.perf_counter()
        for _ in range(sizes.predict_images):
            model(image).softmax(dim=1)
        _synchronise()
    predict_seconds = time.perf_counter() - started
    return {
        "model": "deeplabv3plus-resnet101",
        "crop": sizes.crop,
        "batch": sizes.batch,
        "iterations": sizes.iterations,
        "train_iterations_per_s": sizes.iterations / train_seconds,
        "train_peak_gpu_memory_mb": train_peak,
        "predict_size": [height, width],
        "predict_images_per_s": sizes.predict_images / predict_seconds,
        "predict_peak_gpu_memory_mb": _peak_mb(),
    }


# ---------------------------------------------------------------------- 3. the sweep


def scoring_sweep(sizes: Sizes) -> dict[str, Any]:
    """Seconds per image of the one sweep (statistics + expected-gain parts), every CPU core."""
    from a2lc.acquisition.statistics import other_class_mass, segment_statistics

    rng = np.random.default_rng(0)
    height, width = sizes.sweep_size
    logits = rng.normal(size=(19, height, width)).astype(np.float32)
    probs = np.exp(logits - logits.max(axis=0))
    probs /= probs.sum(axis=0)
    labels = rng.integers(0, 19, size=(height, width)).astype(np.uint8)
    cell = max(8, height // 32)
    rows, cols = np.indices((height, width))
    segments = (rows // cell * ((width + cell - 1) // cell) + cols // cell + 1).astype(np.int32)
    stats = segment_statistics(probs, labels, segments)  # compile
    other_class_mass(probs, labels, segments, stats)
    started = time.perf_counter()
    for _ in range(sizes.sweep_repeats):
        stats = segment_statistics(probs, labels, segments)
        other_class_mass(probs, labels, segments, stats)
    seconds = (time.perf_counter() - started) / sizes.sweep_repeats
    return {
        "size": [height, width],
        "classes": 19,
        "segments": int(segments.max()),
        "cpu_cores": os.cpu_count(),
        "seconds_per_image": seconds,
    }


# ---------------------------------------------------------------------- 4. derived


def speedup(gpu: dict[str, Any], cpu: dict[str, Any]) -> dict[str, float]:
    """CPU seconds / this device's seconds for round 0's training and round 1's steps."""

    def parts(loop: dict[str, Any]) -> tuple[float, float]:
        steps = loop["seconds_per_step"]
        return (
            sum(v for k, v in steps.items() if k == "r0/train"),
            sum(v for k, v in steps.items() if k.startswith("r1/")),
        )

    (gpu_train, gpu_round), (cpu_train, cpu_round) = parts(gpu), parts(cpu)
    return {
        "round0_train": cpu_train / gpu_train if gpu_train else float("nan"),
        "round1": cpu_round / gpu_round if gpu_round else float("nan"),
    }


def derived(
    loop: dict[str, Any],
    paper: dict[str, Any],
    sweep: dict[str, Any],
    *,
    camvid_pixels: int,
    pool: int,
) -> dict[str, Any]:
    """One Cityscapes-size round in minutes, from the measurements above (assumptions stated)."""
    scale = CITYSCAPES_SIZE[0] * CITYSCAPES_SIZE[1] / camvid_pixels
    steps = loop["seconds_per_step"]
    train = sum(v for k, v in steps.items() if k.endswith("/train") and not k.startswith("r0/"))
    queries = sum(v for k, v in steps.items() if k.endswith("/queries"))
    rounds = max(1, loop["rounds"])
    per_image_train = train / rounds / pool
    per_image_queries = queries / rounds / pool
    predict = CITYSCAPES_IMAGES / paper["predict_images_per_s"]
    sweep_total = CITYSCAPES_IMAGES * sweep["seconds_per_image"]
    paper_train = PAPER_ITERATIONS / paper["train_iterations_per_s"]
    default_train = per_image_train * scale * CITYSCAPES_IMAGES
    default_queries = per_image_queries * scale * CITYSCAPES_IMAGES
    return {
        "paper_schedule_minutes": (paper_train + predict + sweep_total) / 60,
        "paper_parts_minutes": {
            "train_30k_iterations": paper_train / 60,
            "predict_pool": predict / 60,
            "score_pool_cpu": sweep_total / 60,
        },
        "a2lc_default_minutes": (default_train + default_queries) / 60,
        "a2lc_default_parts_minutes": {
            "train_head_6_epochs": default_train / 60,
            "predict_and_score_pool": default_queries / 60,
        },
        "assumptions": (
            "paper: 30k iterations at the measured crop-768 batch-8 rate, the pool predicted at "
            "2048x1024 by the same model, the sweep on the CPU per image; a2lc default: the CamVid "
            f"round's per-image training and predict+score time (rounds 1..{rounds}) scaled by the "
            f"pixel ratio {scale:.1f} to 2,975 images; encoder-feature caching not counted"
        ),
    }


def table(results: dict[str, Any]) -> str:
    lines = ["| measurement | value |", "|---|---|"]
    for loop in [*results["loop"], results["loop_cpu"]]:
        name = "fine-tuned encoder" if loop["fine_tune"] else "frozen encoder (default)"
        name += f", {loop['device']}"
        peak = loop["peak_gpu_memory_mb"]
        data = [f"{100 * v:.2f}" for v in loop["data_miou"] if v is not None]
        lines.append(
            f"| CamVid loop, {name}, {loop['rounds']} rounds | {loop['seconds_total']:.1f} s, "
            f"peak GPU {peak if peak is None else f'{peak:.0f} MB'}, data mIoU {' → '.join(data)} |"
        )
    ratio = results["round_speedup_vs_cpu"]
    lines.append(
        f"| round 1 on this device vs the CPU cores | {ratio['round1']:.1f}× "
        f"(round 0 training {ratio['round0_train']:.1f}×) |"
    )
    paper = results["paper_model"]
    lines.append(
        f"| DeepLabV3+ R101 training, crop {paper['crop']}, batch {paper['batch']} | "
        f"{paper['train_iterations_per_s']:.2f} it/s, peak {paper['train_peak_gpu_memory_mb']} MB |"
    )
    lines.append(
        f"| DeepLabV3+ R101 prediction {paper['predict_size'][1]}×{paper['predict_size'][0]} | "
        f"{paper['predict_images_per_s']:.2f} images/s |"
    )
    sweep = results["sweep"]
    lines.append(
        f"| scoring sweep {sweep['size'][1]}×{sweep['size'][0]}, 19 classes, "
        f"{sweep['cpu_cores']} cores | {sweep['seconds_per_image']:.3f} s/image |"
    )
    city = results["cityscapes_round"]
    lines.append(f"| Cityscapes round, paper schedule | {city['paper_schedule_minutes']:.1f} min |")
    lines.append(f"| Cityscapes round, a2lc default | {city['a2lc_default_minutes']:.1f} min |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="CamVid (train and val splits)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu.json")
    parser.add_argument("--tiny", action="store_true", help="toy sizes (the CPU check)")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    args = parser.parse_args(argv)
    sizes = TINY if args.tiny else FULL
    from a2lc.runtime import configure_threads

    configure_threads()  # every core unless A2LC_THREADS says otherwise
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="a2lc-gpu-") as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        initial = _initial_workspace(args.data, work, sizes)
        loops = [
            run_loop(args.data, work, initial, fine_tune=fine_tune, sizes=sizes)
            for fine_tune in (False, True)
        ]
        # The same round on the machine's CPU cores (round 0 and 1), for the speed-up.
        cpu = run_loop(
            args.data, work, initial, fine_tune=False, sizes=sizes, device="cpu", rounds=1
        )
        from a2lc.workspace import Workspace

        with Workspace.open(initial, read_only=True) as ws:
            pool = len(ws.samples)
            height, width = ws.samples[0].shape
    paper = paper_model(sizes)
    sweep = scoring_sweep(sizes)
    results: dict[str, Any] = {
        "machine": machine(),
        "tiny": args.tiny,
        "loop": loops,
        "loop_cpu": cpu,
        "round_speedup_vs_cpu": speedup(loops[0], cpu),
        "paper_model": paper,
        "sweep": sweep,
        "cityscapes_round": derived(
            loops[0], paper, sweep, camvid_pixels=height * width, pool=pool
        ),
    }
    results["seconds_script"] = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(table(results))
    print(f"written {args.out} in {results['seconds_script']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
