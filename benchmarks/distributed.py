"""Speed-up of torch.distributed processes over one: training, prediction, scoring.

The parent prepares one workspace (the first ``--size`` images of the pool split,
gt-proxy segments with a share of their labels flipped, as in ``round.py``) and
encodes its frozen-encoder features once, so encoding is not measured. Then, in
the same run, it starts ``torchrun --nproc-per-node W`` workers for every W in
``--worlds`` (gloo on CPU), one torch thread each, and each measures, between
barriers (wall seconds of the slowest rank):

- training: the head for ``--epochs`` epochs on cached features (DDP for W > 1);
- prediction: the pool's probabilities with the trained model, sharded by image;
- scoring: ``select_queries`` (decode maps, one sweep, gather, merge, top-B) on
  those probabilities, sharded by image.

Training runs ``--train-repeats`` times, prediction and scoring ``--repeats`` times
(the median is reported).

    python benchmarks/distributed.py --data ../shared/data/camvid --size 184 \\
        --out benchmarks/results/distributed.json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from _workspaces import flipped_gt_proxy_maps

PHASES = ("training", "prediction", "scoring")


def prepare(args: argparse.Namespace, folder: Path) -> Path:
    """The workspace, with every pool image's encoder features in the cache."""
    from a2lc.data.readers import load_dataset
    from a2lc.workspace import Workspace

    dataset = load_dataset(Path(args.data), split=args.split)
    dataset = replace(dataset, samples=dataset.samples[: args.size])
    ws_path = folder / "ws"
    with Workspace.create(ws_path, dataset, show_progress=False) as ws:
        flipped_gt_proxy_maps(ws, seed=0)
        runner = _runner(ws, args)
        model = runner.build(seed=0)
        cache = runner.cache_for(model)
        assert cache is not None
        cache.fill([s.id for s in ws.samples], show_progress=True)
    return ws_path


def _runner(ws: Any, args: argparse.Namespace) -> Any:
    from a2lc.models.config import ModelConfig
    from a2lc.models.runner import ModelRunner
    from a2lc.models.training import TrainConfig

    return ModelRunner(
        model_config=ModelConfig(num_classes=ws.num_classes),
        train_config=TrainConfig(epochs=args.epochs),
        samples={s.id: s for s in ws.samples},
        cache_dir=Path(args.cache),
        show_progress=False,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """One rank: the three phases between barriers; rank 0 returns the timings."""
    import numpy as np

    from a2lc.distributed import init_from_environment, shutdown, synchronise
    from a2lc.runtime import configure_threads
    from a2lc.steps.scoring import ScoreConfig, select_queries
    from a2lc.workspace import Workspace

    configure_threads(1)
    shard = init_from_environment()
    seconds: dict[str, list[float]] = {phase: [] for phase in PHASES}

    def timed(phase: str, work: Any) -> Any:
        synchronise(shard)
        started = time.perf_counter()
        result = work()
        synchronise(shard)
        seconds[phase].append(time.perf_counter() - started)
        return result

    with Workspace.open(args.workspace, read_only=True) as ws:
        runner = _runner(ws, args)
        pool = [s.id for s in ws.samples]
        for _ in range(args.train_repeats):
            model, _ = timed(
                "training", lambda: runner.fit(pool, ws.read_labels, seed=0, shard=shard)
            )
        mine = [i for k, i in enumerate(pool) if shard is None or shard.owns(k)]
        probs: dict[str, np.ndarray] = {}
        for _ in range(args.repeats):
            probs = timed("prediction", lambda: {i: runner.predict(model, i) for i in mine})
        budget = max(1, round(0.04 * ws.num_segments()))
        config = ScoreConfig(strategy=args.strategy, budget=budget)
        for _ in range(args.repeats):
            timed(
                "scoring",
                lambda: select_queries(
                    ws, probs.__getitem__, config=config, show_progress=False, shard=shard
                ),
            )
    world = 1 if shard is None else shard.world
    writer = shard is None or shard.writer
    shutdown(shard)
    return {"world": world, "seconds": seconds} if writer else {}


def _launch(args: argparse.Namespace, workspace: Path, world: int) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "A2LC_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        str(world),
        "--master-port",
        str(_free_port()),
        __file__,
        "--worker",
        "--workspace",
        str(workspace),
        *(
            f"--{k.replace('_', '-')}={v}"
            for k, v in vars(args).items()
            if k in ("cache", "epochs", "repeats", "train_repeats", "strategy")
        ),
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
        raise SystemExit(f"the {world}-process run failed (exit code {done.returncode})")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{") and "world" in line]
    return dict(json.loads(lines[-1]))


def print_table(results: list[dict[str, Any]]) -> None:
    base = next(r for r in results if r["world"] == 1)
    worlds = [r for r in results if r["world"] != 1]
    print(
        "\n| phase | 1 process (s) | "
        + " | ".join(f"{r['world']} processes (s) | speed-up" for r in worlds)
        + " |"
    )
    print("|---|---:|" + "---:|---:|" * len(worlds))
    for phase in PHASES:
        one = statistics.median(base["seconds"][phase])
        cells = []
        for r in worlds:
            many = statistics.median(r["seconds"][phase])
            cells.append(f"{many:.2f} | {one / many:.2f}×")
        print(f"| {phase} | {one:.2f} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("A2LC_CAMVID", "../shared/data/camvid"))
    parser.add_argument("--split", default="train", help="pool split (default: train)")
    parser.add_argument("--size", type=int, default=184, help="pool images (default: 184)")
    parser.add_argument("--worlds", default="1,2", help="process counts (default: 1,2)")
    parser.add_argument("--epochs", type=int, default=3, help="head epochs (default: 3)")
    parser.add_argument("--repeats", type=int, default=3, help="prediction/scoring repeats")
    parser.add_argument("--train-repeats", type=int, default=2, help="training repeats")
    parser.add_argument("--strategy", default="eg", help="acquisition for scoring (default: eg)")
    parser.add_argument("--cache", default=None, help="feature cache (default: a temporary one)")
    parser.add_argument("--out", default=None, help="write the measurements here (JSON)")
    parser.add_argument("--workspace", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)), flush=True)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        if args.cache is None:
            args.cache = str(Path(tmp) / "cache")
        workspace = prepare(args, Path(tmp))
        results = []
        for world in (int(w) for w in args.worlds.split(",")):
            results.append(_launch(args, workspace, world))
            print(f"{world} process(es): {json.dumps(results[-1]['seconds'])}", flush=True)
    payload = {"size": args.size, "epochs": args.epochs, "cpus": os.cpu_count(), "results": results}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(payload, indent=1))
    print_table(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
