"""Commands that measure: bench, demo."""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

from a2lc.cli._base import (
    DEMO_SEED_IMAGES,
    Command,
    _print_metrics,
    _print_status,
    _strategy_options,
    _summary,
    strategy_from_args,
)
from a2lc.errors import A2LCError

COMMANDS = {
    "bench": Command(
        "benchmark strategies × seeds on a dataset, with a report",
        "a2lc bench --data camvid/ --noise seed --strategies a2lc,alc --seeds 1,2,3 --out bench/",
    ),
    "demo": Command(
        "run the whole loop on a small example and write a report", "a2lc demo --temporary"
    ),
}
"""This group's commands, as ``a2lc --help`` lists them."""


def register(
    add_command: Callable[..., argparse.ArgumentParser],
) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add this group's commands; returns their handlers by name."""
    from a2lc.strategies import DEFAULT_STRATEGY

    bench = add_command("bench")
    bench.add_argument("--data", type=Path, required=True, help="dataset root folder")
    bench.add_argument("--pool-split", default="train", help="split to correct")
    bench.add_argument(
        "--pool-prefix",
        default="",
        help="only the pool images whose id starts with this (e.g. one CamVid video sequence: "
        "0001TP)",
    )
    bench.add_argument("--eval-split", default="val", help="split for model mIoU")
    bench.add_argument(
        "--source",
        "--pseudo",
        dest="pseudo",
        choices=["gt-proxy", "superpixels"],
        default="gt-proxy",
        help="where the initial segments come from, as `a2lc pseudo-label --source` "
        "(--pseudo: the old name)",
    )
    bench.add_argument(
        "--noise",
        default="seed",
        help="noise regimes, comma-separated: seed, detector-like, correlated (see `a2lc "
        "pseudo-label`; default: seed)",
    )
    bench.add_argument(
        "--noise-target",
        type=Path,
        metavar="FILE.json",
        help="detector-like, correlated: class name → target initial IoU in %%",
    )
    bench.add_argument(
        "--seed-images", type=int, default=5, help="ground-truth images of the seed model"
    )
    bench.add_argument("--rounds", type=int, default=5, help="correction rounds")
    bench.add_argument("--budget", type=int, help="segments per round (default: 4%% of the pool)")
    bench.add_argument(
        "--strategies",
        default=f"{DEFAULT_STRATEGY},alc,a2lc",
        help="strategies, comma-separated (named or ACQUISITION+CORRECTOR; default: the "
        "default strategy, ALC and the paper's A²LC)",
    )
    bench.add_argument("--seeds", default="1,2,3", help="seeds, comma-separated")
    bench.add_argument("--epochs", type=int, default=6, help="training epochs per round")
    bench.add_argument(
        "--out", type=Path, required=True, help="results folder (a rerun resumes it)"
    )

    demo = add_command("demo")
    demo.add_argument(
        "--out",
        type=Path,
        default=Path("a2lc-demo"),
        help="output folder; a rerun resumes it",
    )
    demo.add_argument(
        "--temporary",
        action="store_true",
        help="write to a new temporary folder instead of --out (it is kept; its path is printed)",
    )
    demo.add_argument(
        "--data", type=Path, help="a dataset (e.g. the CamVid copy) instead of generated scenes"
    )
    demo.add_argument("--rounds", type=int, default=3, help="correction rounds")
    demo.add_argument("--budget", type=int, help="segments per round (default: 4%% of the pool)")
    demo.add_argument("--images", type=int, default=40, help="generated images (without --data)")
    demo.add_argument("--epochs", type=int, default=6, help="training epochs per round")
    _strategy_options(demo)
    return {
        "bench": _bench,
        "demo": _demo,
    }


def _bench(args: argparse.Namespace) -> int:
    from a2lc.bench import BenchConfig, run_benchmark
    from a2lc.bench.report import markdown_table
    from a2lc.data.readers import load_dataset
    from a2lc.pseudo_labels.noise import load_target
    from a2lc.steps.pseudo_labels import NOISE_REGIMES

    try:
        seeds = tuple(int(v) for v in args.seeds.split(","))
    except ValueError:
        raise A2LCError(
            f"--seeds must be integers separated by commas, got {args.seeds!r}"
        ) from None
    from a2lc.strategies import resolve_strategy

    strategies = tuple(v for v in args.strategies.split(",") if v)
    for name in strategies:
        resolve_strategy(name)
    noises = tuple(v for v in args.noise.split(",") if v)
    unknown = [v for v in noises if v not in NOISE_REGIMES]
    if unknown or not noises:
        raise A2LCError(
            f"--noise must list regimes among {', '.join(NOISE_REGIMES)}, got {args.noise!r}"
        )
    noise_target = None
    if args.noise_target is not None:
        noise_target = load_target(
            args.noise_target, load_dataset(args.data, split=args.pool_split).class_names
        )
    config = BenchConfig(
        data=args.data,
        out=args.out,
        pool_split=args.pool_split,
        pool_prefix=args.pool_prefix,
        eval_split=args.eval_split,
        pseudo=args.pseudo,
        noises=noises,
        noise_target=noise_target,
        seed_images=args.seed_images,
        rounds=args.rounds,
        budget=args.budget,
        strategies=strategies,
        seeds=seeds,
        epochs=args.epochs,
    )
    results = run_benchmark(config)
    for noise, summary in results["summary"].items():
        for metric in ("data_miou", "model_miou"):
            print(f"\n{noise} noise, {metric} (mean ± std over seeds {list(seeds)})")
            print(markdown_table(summary, metric))
    print(
        f"\npeak RSS {results['peak_rss_mb']:.0f} MB; results in {args.out}/results.json, report {args.out}/report.html"
    )
    return 0


def _demo(args: argparse.Namespace) -> int:
    from a2lc.correction.lcm import LCMConfig
    from a2lc.data.readers import load_dataset
    from a2lc.data.synthetic import make_synthetic_dataset
    from a2lc.models.training import TrainConfig
    from a2lc.report import workspace_report
    from a2lc.rounds import RunConfig, run_rounds
    from a2lc.workspace import Workspace

    out = Path(tempfile.mkdtemp(prefix="a2lc-demo-")) if args.temporary else args.out.resolve()
    print(f"demo: writing to {out} (workspace, data, report.html)", flush=True)
    workspace_dir = out / "workspace"
    if workspace_dir.exists():
        ws = Workspace.open(workspace_dir)
    elif args.data is None:
        data = make_synthetic_dataset(out / "data", num_images=args.images)
        make_synthetic_dataset(
            out / "data", num_images=max(4, args.images // 4), split="val", seed=1
        )
        dataset = load_dataset(data.root, split="train")
        ws = Workspace.create(
            workspace_dir,
            dataset,
            segments_dir=data.segments,
            labels_dir=data.pseudo,
            source="synthetic",
        )
    else:
        ws = Workspace.create(workspace_dir, load_dataset(args.data, split="train"))
    with ws:
        if not ws.has_segments:
            from a2lc.steps.pseudo_labels import PseudoLabelConfig, make_pseudo_labels

            make_pseudo_labels(
                ws, config=PseudoLabelConfig(source="gt-proxy", seed_images=DEMO_SEED_IMAGES)
            )
        config = RunConfig(
            strategy=strategy_from_args(args),
            rounds=args.rounds,
            budget=args.budget,
            eval_split="val",
            train=TrainConfig(epochs=args.epochs),
            lcm=LCMConfig(),
        )
        result = run_rounds(ws, config)
        _print_status(_summary(ws))
        print()
        _print_metrics(result.metrics, images=len(ws.samples))
        report = workspace_report(ws, out / "report.html")
    print(f"\nworkspace: {workspace_dir}\nreport:    {report}")
    return 0
