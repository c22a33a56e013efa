"""The ``a2lc`` command line. ``main(argv)`` is a plain function, so tests call the real CLI."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from a2lc import __version__
from a2lc.acquisition import ACQUISITIONS
from a2lc.data.readers import FORMATS, load_dataset
from a2lc.errors import A2LCError

log = logging.getLogger("a2lc")

EXIT_USAGE = 2
EXIT_ERROR = 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="a2lc",
        description="Active and automated label correction for semantic segmentation.",
    )
    parser.add_argument("--version", action="version", version=f"a2lc {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init = commands.add_parser("init", help="create a workspace from a dataset (and initial maps)")
    init.add_argument("--workspace", "-w", type=Path, required=True, help="new workspace folder")
    init.add_argument("--data", type=Path, required=True, help="dataset root folder")
    init.add_argument("--split", default="train", help="split to correct (default: train)")
    init.add_argument(
        "--format",
        default="auto",
        choices=["auto", *FORMATS.names()],
        help="dataset layout (default: auto)",
    )
    init.add_argument(
        "--segments", type=Path, help="folder of <image id>.png segment maps (0 = none)"
    )
    init.add_argument(
        "--labels", type=Path, help="folder of <image id>.png initial label maps (255 = none)"
    )
    init.add_argument(
        "--source", default="user", help="where the initial labels come from (recorded)"
    )

    status = commands.add_parser("status", help="summarise a workspace")
    status.add_argument("--workspace", "-w", type=Path, required=True)
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.add_argument(
        "--data-miou", action="store_true", help="also measure label quality (needs ground truth)"
    )

    score = commands.add_parser(
        "score", help="score the pool from saved probabilities and record the queries"
    )
    score.add_argument("--workspace", "-w", type=Path, required=True)
    score.add_argument(
        "--probs", type=Path, required=True, help="folder of <image id>.npy/.npz C×H×W maps"
    )
    score.add_argument("--budget", type=int, required=True, help="segments to query this round")
    score.add_argument(
        "--strategy",
        default="abc",
        choices=ACQUISITIONS.names(),
        help="acquisition function (default: abc)",
    )
    score.add_argument("--seed", type=int, default=0, help="seed for the random strategy")

    correct = commands.add_parser("correct", help="answer the open round's queries and close it")
    correct.add_argument("--workspace", "-w", type=Path, required=True)
    correct.add_argument(
        "--oracle", choices=["gt"], default="gt", help="gt: simulated annotator from ground truth"
    )

    demo = commands.add_parser("demo", help="run a small end-to-end example on generated data")
    demo.add_argument(
        "--out", type=Path, help="folder for the dataset and workspace (default: a temp folder)"
    )
    demo.add_argument("--rounds", type=int, default=3)
    demo.add_argument("--budget", type=int, default=40)
    demo.add_argument("--images", type=int, default=24)
    demo.add_argument("--strategy", default="abc", choices=ACQUISITIONS.names())
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 error, 2 usage)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s"
    )
    try:
        handler = _HANDLERS[args.command]
        return handler(args)
    except A2LCError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR


def _init(args: argparse.Namespace) -> int:
    from a2lc.workspace import Workspace

    dataset = load_dataset(args.data, split=args.split, format=args.format)
    with Workspace.create(
        args.workspace,
        dataset,
        segments_dir=args.segments,
        labels_dir=args.labels,
        source=args.source,
    ) as ws:
        print(
            f"created workspace {ws.path}: {len(ws.samples)} images, {ws.num_segments()} segments"
        )
        _print_status(ws.status())
    return 0


def _status(args: argparse.Namespace) -> int:
    from a2lc.loop import data_miou
    from a2lc.workspace import Workspace

    with Workspace.open(args.workspace) as ws:
        summary = ws.status()
        if args.data_miou:
            acc = data_miou(ws)
            summary["data_miou"] = acc.miou
            summary["data_iou"] = {
                c.name: float(v) for c, v in zip(ws.dataset.classes, acc.iou, strict=True)
            }
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        _print_status(summary)
    return 0


def _score(args: argparse.Namespace) -> int:
    from a2lc.loop import ScoreConfig, probability_folder_loader, score_round
    from a2lc.workspace import Workspace

    with Workspace.open(args.workspace) as ws:
        loader = probability_folder_loader(ws, args.probs)
        round_index = score_round(
            ws,
            loader,
            config=ScoreConfig(strategy=args.strategy, budget=args.budget, seed=args.seed),
        )
        queries = ws.queries(round_index)
        print(f"round {round_index}: recorded {len(queries)} queries ({args.strategy})")
        for query in queries[:10]:
            print(
                f"  #{query.rank:<4d} {query.image_id}/{query.segment_id}  score {query.score:.4g}"
            )
        if len(queries) > 10:
            print(f"  ... and {len(queries) - 10} more")
    return 0


def _correct(args: argparse.Namespace) -> int:
    from a2lc.loop import answer_with_oracle
    from a2lc.workspace import Workspace

    with Workspace.open(args.workspace) as ws:
        current = ws.open_round()
        if current is None:
            print("no open round: run `a2lc score` first", file=sys.stderr)
            return EXIT_ERROR
        transitions = answer_with_oracle(ws, current.round)
        ws.close_round(current.round)
        answered = sum(n for row in transitions.values() for n in row.values())
        changed = sum(n for b, row in transitions.items() for a, n in row.items() if a != b)
        print(f"round {current.round}: answered {answered} queries, {changed} changed class")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from a2lc.data.synthetic import make_synthetic_dataset
    from a2lc.loop import (
        ScoreConfig,
        answer_with_oracle,
        data_miou,
        probability_folder_loader,
        score_round,
    )
    from a2lc.workspace import Workspace

    out = args.out or Path(tempfile.mkdtemp(prefix="a2lc-demo-"))
    data = make_synthetic_dataset(out / "data", num_images=args.images)
    dataset = load_dataset(data.root, split=data.split)
    workspace_dir = out / "workspace"
    with Workspace.create(
        workspace_dir,
        dataset,
        segments_dir=data.segments,
        labels_dir=data.pseudo,
        source="synthetic",
    ) as ws:
        loader = probability_folder_loader(ws, data.probs)
        quality = [data_miou(ws).miou]
        ws.record_metrics(0, {"data_miou": quality[0]})
        for _ in range(args.rounds):
            round_index = score_round(
                ws, loader, config=ScoreConfig(strategy=args.strategy, budget=args.budget)
            )
            answer_with_oracle(ws, round_index)
            ws.close_round(round_index)
            quality.append(data_miou(ws).miou)
            ws.record_metrics(round_index, {"data_miou": quality[-1]})
        _print_status(ws.status())
    print()
    print("round  segments queried  data mIoU")
    for r, q in enumerate(quality):
        print(f"{r:>5d}  {r * args.budget:>16d}  {100 * q:8.2f}")
    print(f"\nworkspace: {workspace_dir}")
    return 0


def _print_status(summary: dict[str, Any]) -> None:
    dataset = summary["dataset"]
    segments = summary["segments"]
    print(f"workspace  {summary['workspace']}  (schema v{summary['schema_version']})")
    print(
        f"dataset    {dataset['format']} {dataset['root']} [{dataset['split']}]: "
        f"{dataset['images']} images, {len(dataset['classes'])} classes, "
        f"ground truth: {'yes' if dataset['ground_truth'] else 'no'}"
    )
    print(f"initial    {summary['initial_labels'] or 'none yet (init with --segments/--labels)'}")
    print(
        f"segments   {segments['total']} total: {segments['initial']} initial, "
        f"{segments['manual']} manual, {segments['auto']} auto"
    )
    if summary["rounds"]:
        print("round  status    strategy  budget  queried  answered  changed")
        for r in summary["rounds"]:
            print(
                f"{r['round']:>5d}  {r['status']:<8s}  {r['strategy']:<8s}  {r['budget']:>6d}  "
                f"{r['queried']:>7d}  {r['answered']:>8d}  {r['label_changed']:>7d}"
            )
    else:
        print("rounds     none yet")
    if "data_miou" in summary:
        print(f"data mIoU  {100 * summary['data_miou']:.2f}")


_HANDLERS = {"init": _init, "status": _status, "score": _score, "correct": _correct, "demo": _demo}


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
