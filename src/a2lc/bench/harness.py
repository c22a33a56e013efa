"""Run noise regimes × strategies × seeds on one dataset and collect per-round results.

Each (regime, seed) gets its initial pseudo-labels once, shared by every
strategy; each (regime, seed, strategy) run is its own workspace under
``OUT/runs/REGIME/seedN/STRATEGY``, so an interrupted benchmark resumes where it
stopped. Results go to ``OUT/results.json``,
``OUT/results.csv``, PNG plots and ``OUT/report.html``.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import resource
import shutil
import sqlite3
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from a2lc._atomic import atomic_write_text
from a2lc.correction.lcm import LCMConfig
from a2lc.correction.learned import LearnedConfig
from a2lc.data.readers import load_dataset
from a2lc.data.sample import Dataset
from a2lc.errors import DataError, Problem
from a2lc.models.training import TrainConfig
from a2lc.rounds import RunConfig, default_budget, run_rounds
from a2lc.steps.pseudo_labels import (
    NoiseRegime,
    PseudoLabelConfig,
    SegmentSource,
    make_pseudo_labels,
)
from a2lc.strategies import DEFAULT_STRATEGY, resolve_strategy
from a2lc.workspace import Workspace
from a2lc.workspace.workspace import DB_NAME

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchConfig:
    data: Path
    out: Path
    pool_split: str = "train"
    pool_prefix: str = ""
    """Only the pool images whose id starts with this ("": all), e.g. one video sequence."""
    eval_split: str = "val"
    pseudo: SegmentSource = "gt-proxy"
    noises: tuple[NoiseRegime, ...] = ("seed",)
    noise_target: dict[str, float] | None = None
    """detector-like, correlated: class name → target initial IoU (%); None = the built-in one."""
    seed_images: int = 5
    rounds: int = 5
    budget: int | None = None
    strategies: tuple[str, ...] = (DEFAULT_STRATEGY, "alc", "a2lc")
    """The default strategy against ALC and the paper's method."""
    seeds: tuple[int, ...] = (1, 2, 3)
    epochs: int = 6
    lcm: LCMConfig = field(default_factory=LCMConfig)
    learned: LearnedConfig = field(default_factory=LearnedConfig)
    """Options of the learning acquisitions and the proven corrector (e.g. the answer model)."""


def pool_dataset(config: BenchConfig) -> Dataset:
    """The pool split, restricted to ``config.pool_prefix``; an empty pool is an error."""
    dataset = load_dataset(config.data, split=config.pool_split)
    if not config.pool_prefix:
        return dataset
    samples = tuple(s for s in dataset.samples if s.id.startswith(config.pool_prefix))
    if not samples:
        raise DataError(
            Problem(
                config.data,
                f"no image of split {config.pool_split!r} has an id starting with "
                f"{config.pool_prefix!r}",
            )
        )
    return replace(dataset, samples=samples)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _seed_dir(config: BenchConfig, noise: NoiseRegime, seed: int) -> Path:
    return config.out / "runs" / noise / f"seed{seed}"


def _initial_workspace(config: BenchConfig, noise: NoiseRegime, seed: int, cache: Path) -> Path:
    """The seed's workspace with initial pseudo-labels (made once, then copied per strategy)."""
    path = _seed_dir(config, noise, seed) / "initial"
    if (path / DB_NAME).exists():
        with Workspace.open(path) as ws:
            if ws.has_segments:
                return path
    # Not started, or interrupted before its labels were complete: start over.
    shutil.rmtree(path, ignore_errors=True)
    dataset = pool_dataset(config)
    with Workspace.create(path, dataset) as ws:
        started = time.perf_counter()
        pseudo = PseudoLabelConfig(
            source=config.pseudo,
            noise=noise,
            noise_target=config.noise_target if noise != "seed" else None,
            seed_images=config.seed_images,
            seed=seed,
        )
        make_pseudo_labels(ws, config=pseudo, cache_dir=cache)
        ws.set_meta({"seconds_pseudo_labels": f"{time.perf_counter() - started:.1f}"})
    return path


def _fork(source: Path, dest: Path) -> None:
    """Copy a workspace before its first correction round (database via SQLite's backup API)."""
    staging = dest.with_name(f".{dest.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(
        source, staging, ignore=shutil.ignore_patterns("a2lc.sqlite*", "cache", "rounds")
    )
    with (
        contextlib.closing(sqlite3.connect(source / "a2lc.sqlite")) as src,
        contextlib.closing(sqlite3.connect(staging / "a2lc.sqlite")) as dst,
    ):
        src.backup(dst)
    staging.rename(dest)


def run_benchmark(config: BenchConfig, *, show_progress: bool = True) -> dict[str, Any]:
    """Run (or resume) every regime × strategy × seed; write and return the results."""
    for name in config.strategies:
        resolve_strategy(name)
    cache = config.out / "cache"
    runs: list[dict[str, Any]] = []
    seed_seconds: dict[str, float] = {}
    for noise in config.noises:
        for seed in config.seeds:
            started = time.perf_counter()
            runs.extend(_run_seed(config, noise, seed, cache, show_progress=show_progress))
            seed_seconds[f"{noise}/seed{seed}"] = time.perf_counter() - started
    results = {
        "config": json.loads(json.dumps(asdict(config), default=str)),
        "peak_rss_mb": _peak_rss_mb(),
        "seconds_per_seed_this_call": seed_seconds,
        "runs": runs,
        "summary": {
            noise: summarise([run for run in runs if run["noise"] == noise])
            for noise in config.noises
        },
    }
    write_results(config.out, results)
    return results


def _run_seed(
    config: BenchConfig, noise: NoiseRegime, seed: int, cache: Path, *, show_progress: bool
) -> list[dict[str, Any]]:
    started = time.perf_counter()
    initial = _initial_workspace(config, noise, seed, cache)
    with Workspace.open(initial) as ws:
        budget = config.budget or default_budget(ws)
        pseudo_seconds = float(ws.meta("seconds_pseudo_labels") or 0.0)
        # θ_0 and its evaluation depend only on the initial labels and the seed: do
        # them once here; every strategy's copy resumes after round 0.
        paths = [_seed_dir(config, noise, seed) / s for s in config.strategies]
        if not all(p.exists() for p in paths):
            first = _run_config(config, config.strategies[0], seed, budget, rounds=0)
            run_rounds(ws, first, cache_dir=cache, show_progress=show_progress)
    log.info(
        "%s noise, seed %d: initial labels ready (%.0f s), budget %d per round",
        noise,
        seed,
        time.perf_counter() - started,
        budget,
    )
    runs = []
    for strategy in config.strategies:
        path = _seed_dir(config, noise, seed) / strategy
        if not path.exists():
            _fork(initial, path)
        run = _run_config(config, strategy, seed, budget, rounds=config.rounds)
        began = time.perf_counter()
        with Workspace.open(path) as ws:
            result = run_rounds(ws, run, cache_dir=cache, show_progress=show_progress)
            images = len(ws.samples)
        runs.append(
            {
                "noise": noise,
                "strategy": strategy,
                "seed": seed,
                "segments": config.pseudo,
                "pool": config.pool_prefix or config.pool_split,
                "images": images,
                "budget_per_round": budget,
                "seconds_pseudo_labels": pseudo_seconds,
                "seconds_this_call": time.perf_counter() - began,
                "rounds": [_round_record(r, m) for r, m in sorted(result.metrics.items())],
            }
        )
        log.info(
            "%s noise, seed %d, %s done; peak RSS %.0f MB", noise, seed, strategy, _peak_rss_mb()
        )
    return runs


def _run_config(
    config: BenchConfig, strategy: str, seed: int, budget: int, *, rounds: int
) -> RunConfig:
    return RunConfig(
        strategy=strategy,
        rounds=rounds,
        budget=budget,
        eval_split=config.eval_split,
        seed=seed,
        train=TrainConfig(epochs=config.epochs, seed=seed),
        lcm=config.lcm,
        learned=config.learned,
    )


def _round_record(r: int, m: dict[str, float]) -> dict[str, Any]:
    return {
        "round": r,
        "budget_spent": int(m.get("segments_queried", 0)),
        "data_miou": m.get("data_miou"),
        "data_miou_all": m.get("data_miou_all"),
        "model_miou": m.get("model_miou"),
        "lcm_changed": m.get("lcm_changed"),
        "lcm_precision": m.get("lcm_precision"),
        "auto_changed": m.get("auto_changed"),
        **{k: v for k, v in m.items() if k.startswith(("checked_", "proven_", "learned_"))},
        "data_iou": {k.split("/", 1)[1]: v for k, v in m.items() if k.startswith("data_iou/")},
        "model_iou": {k.split("/", 1)[1]: v for k, v in m.items() if k.startswith("model_iou/")},
        "seconds": {k.split("/", 1)[1]: v for k, v in m.items() if k.startswith("seconds/")},
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, list[float | None]]]]:
    """strategy → metric → {"mean": per round, "std": per round} over seeds (values in %)."""
    out: dict[str, dict[str, dict[str, list[float | None]]]] = {}
    for strategy in dict.fromkeys(run["strategy"] for run in runs):
        mine = [run for run in runs if run["strategy"] == strategy]
        out[strategy] = {}
        for metric in ("data_miou", "model_miou", "lcm_changed", "lcm_precision"):
            rounds = max(len(run["rounds"]) for run in mine)
            means: list[float | None] = []
            stds: list[float | None] = []
            for r in range(rounds):
                values = [
                    run["rounds"][r][metric]
                    for run in mine
                    if r < len(run["rounds"]) and run["rounds"][r][metric] is not None
                ]
                scale = 100.0 if metric in ("data_miou", "model_miou", "lcm_precision") else 1.0
                means.append(float(np.mean(values)) * scale if values else None)
                stds.append(float(np.std(values)) * scale if values else None)
            out[strategy][metric] = {"mean": means, "std": stds}
    return out


def write_results(out: Path, results: dict[str, Any]) -> None:
    from a2lc.bench.report import write_report

    atomic_write_text(out / "results.json", json.dumps(results, indent=1, default=float))
    with open(out / "results.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "noise",
                "strategy",
                "seed",
                "round",
                "budget_spent",
                "data_miou",
                "model_miou",
                "lcm_changed",
                "lcm_precision",
                "seconds_train",
                "seconds_predict_and_score",
                "seconds_lcm",
                "seconds_eval",
            ]
        )
        for run in results["runs"]:
            for rec in run["rounds"]:
                s = rec["seconds"]
                writer.writerow(
                    [
                        run["noise"],
                        run["strategy"],
                        run["seed"],
                        rec["round"],
                        rec["budget_spent"],
                        rec["data_miou"],
                        rec["model_miou"],
                        rec["lcm_changed"],
                        rec["lcm_precision"],
                        s.get("train"),
                        s.get("predict_and_score"),
                        s.get("lcm"),
                        s.get("eval"),
                    ]
                )
    write_report(out, results)
