"""CPU and wall time of every stage of one correction round, peak RSS, and scaling over N.

For each pool size N (the first N images of the pool split) a fresh worker process

1. builds a workspace with gt-proxy segments whose labels are the ground-truth
   majority with a fixed share of segments flipped to another class (cheap and
   deterministic: no seed model, so only the round itself is measured);
2. runs round 0 (θ_0: encoder features cached, head trained, evaluated);
3. runs round 1, the steady-state round (``--round K``: rounds 1 … K−1 untimed, then
   round K, for strategies that learn from earlier rounds' answers), and records each
   stage's CPU seconds (``time.process_time``: all threads of the process) and wall
   seconds, and the CPU seconds the loop logs for learning from the answers
   (``learn``: the answer model and the plan; ``proven``: the corrector; the
   ground-truth measurement is logged apart and is not part of a user's round).

``--busy K`` repeats the measurement of the largest N (or ``--busy-sizes``) with K
CPU-bound processes spinning beside it, and reports the wall-time ratio loaded /
idle measured in the same run.
Results go to ``--out`` (JSON, one entry per N and load) and are printed as a table
with a linear projection of every stage and of peak RSS to ``--project`` images.

    python benchmarks/round.py --data ../shared/data/camvid --sizes 46,92,184,367 --busy 2

The encoder-feature cache (``--cache``) is shared between the workers, so
encoding happens once per image; it is not part of any round's time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from _workspaces import flipped_gt_proxy_maps

STAGES = ("queries", "answers", "lcm", "checked", "close", "train", "eval")
"""The steps of a round as :func:`a2lc.rounds.run_rounds` reports them."""
STAGE_NAMES = {
    "queries": "predict + score (+ LCM features)",
    "answers": "simulated annotator",
    "lcm": "LCM",
    "checked": "checked corrector",
    "close": "close round",
    "train": "head training",
    "eval": "data + model mIoU",
}
PARTS = {
    "queries": ("read_maps", "predict", "score", "embed"),
    "eval": ("data_miou", "model_miou"),
}
"""Parts of a stage that the loop times itself (metrics ``seconds/<part>``), where it does."""
PART_NAMES = {
    "read_maps": "decode segment and label maps",
    "predict": "predict probabilities",
    "score": "sweep(s): scores + LCM features",
    "embed": "segment embeddings (checked corrector)",
    "data_miou": "data mIoU (pool)",
    "model_miou": "model mIoU (val)",
}


class _MemorySampler:
    """Peak resident memory split into anonymous and file-backed pages, per phase.

    ``ru_maxrss`` counts memory-mapped file pages (the feature cache in
    ``A2LC_FEATURE_MEMORY_MB=0`` mode) as if they were the process's own; the kernel
    drops those under pressure, so the anonymous peak is what the job needs.
    Samples ``/proc/self/status`` every ``interval`` seconds (Linux; elsewhere empty),
    which can miss a short peak; ``hwm_mb`` is the kernel's exact high-water mark of
    the whole resident set (anonymous + file) over the phase (``VmHWM``, reset at each
    phase through ``/proc/self/clear_refs``), without sampling noise.
    """

    def __init__(self, interval: float = 0.02) -> None:
        import threading

        self.phase = "setup"
        self.peaks: dict[str, dict[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        try:
            lines = Path("/proc/self/status").read_text().splitlines()
        except OSError:
            return
        values = {
            key: float(rest.split()[0]) / 1024
            for key, _, rest in (line.partition(":") for line in lines)
            if key in ("RssAnon", "RssFile")
        }
        peaks = self.peaks.setdefault(self.phase, {"anon_mb": 0.0, "file_mb": 0.0})
        peaks["anon_mb"] = max(peaks["anon_mb"], values.get("RssAnon", 0.0))
        peaks["file_mb"] = max(peaks["file_mb"], values.get("RssFile", 0.0))

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self._sample()

    def _close_phase(self) -> None:
        self._sample()
        try:
            status = Path("/proc/self/status").read_text().splitlines()
        except OSError:
            return
        for line in status:
            if line.startswith("VmHWM:"):
                peaks = self.peaks.setdefault(self.phase, {"anon_mb": 0.0, "file_mb": 0.0})
                peaks["hwm_mb"] = float(line.split()[1]) / 1024
        with contextlib.suppress(OSError):  # "5": reset the peak resident set (Linux 4.0+)
            Path("/proc/self/clear_refs").write_text("5")

    def enter(self, phase: str) -> None:
        self._close_phase()
        self.phase = phase

    def stop(self) -> dict[str, dict[str, float]]:
        self._close_phase()
        self._stop.set()
        self._thread.join()
        return self.peaks


def _spin(stop: Any) -> None:  # pragma: no cover - a busy process
    x = 0
    while not stop.is_set():
        x = (x * 1103515245 + 12345) % 2147483648


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """One pool size: build, rounds 0 … K−1, timed round K; returns the measurements."""
    from a2lc.correction.learned import LearnedConfig
    from a2lc.data.readers import load_dataset
    from a2lc.models.config import ModelConfig
    from a2lc.rounds import RunConfig, run_rounds
    from a2lc.workspace import Workspace

    memory = _MemorySampler()
    dataset = load_dataset(Path(args.data), split=args.split)
    dataset = replace(dataset, samples=dataset.samples[: args.size])
    marks: list[tuple[int, str, float, float]] = []
    timed = args.round

    def on_step(round_index: int, name: str) -> None:
        marks.append((round_index, name, time.process_time(), time.perf_counter()))
        if round_index == timed:
            memory.enter(f"round{timed} after {name}")  # the peaks of the round's next step

    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        ws = Workspace.create(Path(tmp) / "ws", dataset)
        with ws:
            flipped_gt_proxy_maps(ws, seed=args.seed)
            learned = LearnedConfig(
                guarantee=args.guarantee,
                voices=tuple(v for v in args.voices.split(",") if v),
            )
            config = RunConfig(
                strategy=args.strategy,
                model=ModelConfig(name=args.model),
                rounds=timed - 1,
                eval_split=args.eval_split,
                learned=learned,
            )
            started = time.perf_counter()
            memory.enter("round0")
            run_rounds(ws, config, cache_dir=Path(args.cache), show_progress=False)
            round0 = time.perf_counter() - started
            busy: list[multiprocessing.Process] = []
            stop = multiprocessing.Event()
            for _ in range(args.busy):
                process = multiprocessing.Process(target=_spin, args=(stop,), daemon=True)
                process.start()
                busy.append(process)
            try:
                memory.enter(f"round{timed}")
                cpu0, wall0 = time.process_time(), time.perf_counter()
                run_rounds(
                    ws,
                    replace(config, rounds=timed),
                    cache_dir=Path(args.cache),
                    show_progress=False,
                    on_step=on_step,
                )
                cpu1, wall1 = time.process_time(), time.perf_counter()
                memory.enter("after")
            finally:
                stop.set()
                for process in busy:
                    process.join()
            metrics = ws.metrics()
            segments = ws.num_segments()
            held_maps_mb = ws.maps.held_bytes / 2**20
    by_phase = memory.stop()
    stages: dict[str, dict[str, float]] = {}
    previous = (cpu0, wall0)
    for round_index, name, cpu, wall in marks:
        if round_index == timed:
            stages[name] = {"cpu": cpu - previous[0], "wall": wall - previous[1]}
            previous = (cpu, wall)
    round_metrics = metrics.get(timed, {})
    parts = {
        name: {
            "cpu": round_metrics[f"seconds/cpu/{name}"],
            "wall": round_metrics[f"seconds/{name}"],
        }
        for names in PARTS.values()
        for name in names
        if f"seconds/cpu/{name}" in round_metrics
    }
    return {
        "size": args.size,
        "strategy": args.strategy,
        "guarantee": args.guarantee,
        "voices": args.voices,
        "model": args.model,
        "timed_round": timed,
        "learning_cpu": {
            name: round_metrics[f"cpu_seconds/{name}"]
            for name in ("learn", "proven", "learn_measurement")
            if f"cpu_seconds/{name}" in round_metrics
        },
        "parts": parts,
        "busy": args.busy,
        "segments": segments,
        "threads": _threads(),
        "stages": stages,
        "round": {"cpu": cpu1 - cpu0, "wall": wall1 - wall0},
        "round0_wall": round0,
        "peak_rss_mb": _peak_rss_mb(by_phase),
        "peak_memory_by_phase": by_phase,
        "held_maps_mb": held_maps_mb,
        "features_memory_mapped": _feature_budget_is_zero(),
        "data_miou": round_metrics.get("data_miou"),
        "lcm_changed": round_metrics.get("lcm_changed"),
    }


def _peak_rss_mb(by_phase: dict[str, dict[str, float]]) -> float:
    """The process's peak resident set: the largest per-phase high-water mark (resetting
    it per phase also resets ``ru_maxrss``, which is used where there is none)."""
    marks = [p["hwm_mb"] for p in by_phase.values() if "hwm_mb" in p]
    if marks:
        return max(marks)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _feature_budget_is_zero() -> bool:
    from a2lc.runtime import feature_memory_budget

    return feature_memory_budget() == 0


def _threads() -> int:
    import torch

    return int(torch.get_num_threads())


def _run_worker(args: argparse.Namespace, size: int, busy: int) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--worker",
        "--size",
        str(size),
        "--busy",
        str(busy),
        *(
            f"--{k.replace('_', '-')}={v}"
            for k, v in vars(args).items()
            if k
            in (
                "data",
                "split",
                "eval_split",
                "cache",
                "seed",
                "strategy",
                "tmp",
                "round",
                "guarantee",
                "voices",
                "model",
            )
            and v is not None
        ),
    ]
    env = dict(os.environ)
    if args.feature_memory_mb is not None:
        env["A2LC_FEATURE_MEMORY_MB"] = str(args.feature_memory_mb)
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"worker for N={size} failed (exit code {done.returncode})")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _fit(xs: list[float], ys: list[float], at: float) -> float:
    """Least-squares line through (xs, ys), evaluated at ``at``."""
    if len(xs) < 2:
        return ys[0] * at / xs[0]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )
    return my + slope * (at - mx)


def _exponent(xs: list[float], ys: list[float]) -> str:
    """Slope of log(y) over log(x) from the smallest to the largest x (1: linear)."""
    if ys[0] <= 0 or ys[-1] <= 0:
        return "–"
    return f"{math.log(ys[-1] / ys[0]) / math.log(xs[-1] / xs[0]):.2f}"


def _learning(result: dict[str, Any]) -> float:
    """CPU seconds of a round spent learning from the answers (not the ground-truth
    measurement, which only a simulation does)."""
    learning = result.get("learning_cpu", {})
    total = learning.get("learn", 0.0) + learning.get("proven", 0.0)
    return float(total - learning.get("learn_measurement", 0.0))


def print_tables(results: list[dict[str, Any]], project: int) -> None:
    idle = sorted((r for r in results if r["busy"] == 0), key=lambda r: r["size"])
    timed = idle[0].get("timed_round", 1) if idle else 1
    threads = idle[0]["threads"] if idle else "?"
    print(f"\nOne steady-state round (round {timed}), threads = {threads}:\n")
    print("| stage | " + " | ".join(f"N={r['size']} CPU s / wall s" for r in idle) + " |")
    print("|---|" + "---:|" * len(idle))
    for stage in STAGES:
        cells = [
            f"{r['stages'][stage]['cpu']:.1f} / {r['stages'][stage]['wall']:.1f}"
            if stage in r["stages"]
            else "–"
            for r in idle
        ]
        print(f"| {STAGE_NAMES[stage]} | " + " | ".join(cells) + " |")
        for part in PARTS.get(stage, ()):
            if all(part in r.get("parts", {}) for r in idle):
                cells = [
                    f"{r['parts'][part]['cpu']:.1f} / {r['parts'][part]['wall']:.1f}" for r in idle
                ]
                print(f"| &nbsp;&nbsp;{PART_NAMES[part]} | " + " | ".join(cells) + " |")
    print(
        "| **round** | "
        + " | ".join(f"{r['round']['cpu']:.1f} / {r['round']['wall']:.1f}" for r in idle)
        + " |"
    )
    print(
        "| not head training (CPU share) | "
        + " | ".join(
            f"{100 * (1 - r['stages'].get('train', {'cpu': 0})['cpu'] / r['round']['cpu']):.1f}%"
            for r in idle
        )
        + " |"
    )
    if any(r.get("learning_cpu") for r in idle):
        print(
            "| learning from the answers: CPU s (share) | "
            + " | ".join(
                f"{_learning(r):.1f} ({100 * _learning(r) / r['round']['cpu']:.1f}%)" for r in idle
            )
            + " |"
        )
    print("| peak RSS (MB) | " + " | ".join(f"{r['peak_rss_mb']:.0f}" for r in idle) + " |")
    if len(idle) >= 2:
        sizes = [float(r["size"]) for r in idle]
        print(
            f"\nLinear projection to N = {project:,} images (least squares over the sizes above):\n"
        )
        print(
            "| stage | CPU s per image (largest N) | growth exponent (1 = linear) | "
            "projected CPU s |"
        )
        print("|---|---:|---:|---:|")
        for stage in STAGES:
            if all(stage in r["stages"] for r in idle):
                ys = [r["stages"][stage]["cpu"] for r in idle]
                print(
                    f"| {STAGE_NAMES[stage]} | {ys[-1] / sizes[-1]:.3f} | "
                    f"{_exponent(sizes, ys)} | {_fit(sizes, ys, project):,.0f} |"
                )
        # Decoded maps are held up to a fixed budget, so they do not grow past it:
        # projected without them, their cap added by the reader.
        held = [r.get("held_maps_mb", 0.0) for r in idle]
        rss = [r["peak_rss_mb"] - h for r, h in zip(idle, held, strict=True)]
        print(
            f"| peak RSS less held maps (MB) | {rss[-1] / sizes[-1]:.2f} | "
            f"{_exponent(sizes, rss)} | {_fit(sizes, rss, project):,.0f} |"
        )
        if not all(r.get("features_memory_mapped") for r in idle):
            print(
                "\nEncoder features were held in memory (0.49 MB per CamVid image) in some of "
                "these runs; beyond A2LC_FEATURE_MEMORY_MB they are memory-mapped, so project "
                "peak memory from a --feature-memory-mb 0 run."
            )
        if any(held):
            print(
                f"\nDecoded maps held in memory: {held[-1]:.0f} MB at N = {sizes[-1]:.0f}; they "
                "stop at A2LC_MAP_MEMORY_MB (default at most 1,024 MB), which a projection adds."
            )
    loaded = {r["size"]: r for r in results if r["busy"] > 0}
    if loaded:
        print("\nWall time with CPU-bound processes beside it (same run):\n")
        print("| N | busy processes | idle wall s | loaded wall s | ratio |")
        print("|---:|---:|---:|---:|---:|")
        for r in idle:
            if r["size"] in loaded:
                other = loaded[r["size"]]
                print(
                    f"| {r['size']} | {other['busy']} | {r['round']['wall']:.1f} | "
                    f"{other['round']['wall']:.1f} | {other['round']['wall'] / r['round']['wall']:.2f} |"
                )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("A2LC_CAMVID", "../shared/data/camvid"))
    parser.add_argument("--split", default="train", help="pool split (default: train)")
    parser.add_argument("--eval-split", default="val", help="model mIoU split (default: val)")
    parser.add_argument(
        "--sizes", default="46,92,184,367", help="pool sizes N (default: 46,92,184,367)"
    )
    parser.add_argument("--busy", type=int, default=0, help="also measure with K busy processes")
    parser.add_argument(
        "--busy-sizes", default=None, help="sizes measured with --busy (default: the largest)"
    )
    parser.add_argument("--strategy", default="a2lc", help="strategy (default: a2lc, has LCM)")
    parser.add_argument("--seed", type=int, default=0, help="initial-label seed (default: 0)")
    parser.add_argument(
        "--guarantee", default="bound", help="proven corrector's guarantee (bound or fdr)"
    )
    parser.add_argument(
        "--voices", default="answer", help="with --guarantee fdr: comma-separated voices"
    )
    parser.add_argument(
        "--model",
        default="efficientnet-lite0",
        help="segmentation model (default: efficientnet-lite0; efficientnet-lite2 needs "
        "a2lc[lite2]); give each model its own --cache, or round 0 reuses another's features",
    )
    parser.add_argument(
        "--round", type=int, default=1, help="the round timed (default: 1; earlier ones untimed)"
    )
    parser.add_argument("--cache", default="bench-cache/features", help="encoder feature cache")
    parser.add_argument("--tmp", default=None, help="where the workspaces go (default: system tmp)")
    parser.add_argument("--out", default=None, help="write the measurements here (JSON)")
    parser.add_argument(
        "--feature-memory-mb",
        default=None,
        help="A2LC_FEATURE_MEMORY_MB for the workers (0: memory-map every feature file)",
    )
    parser.add_argument("--project", type=int, default=100_000, help="project to this N")
    parser.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--from-json", default=None, help="only print the tables of this JSON")
    args = parser.parse_args(argv)
    if args.round < 1:
        parser.error(f"--round must be at least 1, got {args.round}")
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    if args.from_json:
        results = json.loads(Path(args.from_json).read_text())["results"]
        print_tables(results, args.project)
        return 0
    Path(args.cache).mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    sizes = [int(s) for s in args.sizes.split(",")]
    busy_sizes = {int(s) for s in args.busy_sizes.split(",")} if args.busy_sizes else {max(sizes)}
    for size in sizes:
        for busy in sorted({0, args.busy if size in busy_sizes else 0}):
            result = _run_worker(args, size, busy)
            results.append(result)
            print(
                f"N={size} busy={busy}: round {result['round']['cpu']:.1f} CPU s, "
                f"{result['round']['wall']:.1f} wall s, peak RSS {result['peak_rss_mb']:.0f} MB",
                flush=True,
            )
            if args.out:
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                Path(args.out).write_text(json.dumps({"results": results}, indent=1))
    print_tables(results, args.project)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
