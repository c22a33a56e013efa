"""Commands of the correction loop: score, correct, run."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from a2lc.cli._base import (
    EXIT_ERROR,
    WORKSPACE_HELP,
    Command,
    _distributed,
    _print_metrics,
    _rank_workspace,
    _refuse_state,
    _strategy_options,
    run_config_from_args,
)

if TYPE_CHECKING:
    from a2lc.distributed import Shard
    from a2lc.rounds import RunConfig
    from a2lc.workspace import Workspace

COMMANDS = {
    "score": Command(
        "score the pool from saved probabilities and record the queries",
        "a2lc score -w work --probs probs/ --budget 500 --acquisition abc",
    ),
    "correct": Command(
        "answer the open round's queries and close it", "a2lc correct -w work --oracle gt"
    ),
    "run": Command(
        "run or resume the correction loop",
        "a2lc run -w work --rounds 5 --oracle human --report work/report.html\n"
        "torchrun --nproc-per-node 8 -m a2lc run -w work --rounds 5",
    ),
}
"""This group's commands, as ``a2lc --help`` lists them."""


def register(
    add_command: Callable[..., argparse.ArgumentParser],
) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add this group's commands; returns their handlers by name."""
    from a2lc.acquisition import ACQUISITIONS
    from a2lc.models.zoo import MODELS
    from a2lc.strategies import PRESETS

    score = add_command("score")
    score.add_argument("--workspace", "-w", type=Path, required=True, help=WORKSPACE_HELP)
    score.add_argument(
        "--probs", type=Path, required=True, help="folder of <image id>.npy/.npz C×H×W maps"
    )
    score.add_argument("--budget", type=int, required=True, help="segments to query this round")
    score.add_argument(
        "--acquisition",
        "--strategy",
        dest="strategy",
        default="abc",
        choices=ACQUISITIONS.names(),
        help="acquisition function, as `a2lc run --acquisition` (--strategy: the old name "
        "here; in `run` a strategy is an acquisition and a corrector) (default: abc)",
    )
    score.add_argument("--seed", type=int, default=0, help="seed for the random strategy")

    correct = add_command("correct")
    correct.add_argument("--workspace", "-w", type=Path, required=True, help=WORKSPACE_HELP)
    correct.add_argument(
        "--oracle", choices=["gt"], default="gt", help="gt: simulated annotator from ground truth"
    )

    run = add_command(
        "run",
        description="Run or resume the correction loop. Under torchrun "
        "(`torchrun --nproc-per-node N -m a2lc run ...`) the ranks share prediction, "
        "scoring and training (DDP); rank 0 alone writes the workspace.",
    )
    run.add_argument("--workspace", "-w", type=Path, required=True, help=WORKSPACE_HELP)
    _strategy_options(run)
    run.add_argument(
        "--preset", choices=PRESETS.names(), help="the paper's budget, rounds and LCM thresholds"
    )
    run.add_argument("--rounds", type=int, help="rounds (default 5)")
    run.add_argument(
        "--budget",
        type=int,
        help="segments queried per round (default: 4%% of the pool's segments, printed "
        "before the first round)",
    )
    run.add_argument("--thresholds", help="LCM confidence thresholds per round, comma-separated")
    run.add_argument(
        "--oracle",
        choices=["gt", "human"],
        default="gt",
        help="gt: simulated annotator; human: stop for people's answers",
    )
    run.add_argument(
        "--exact-answers",
        action="store_true",
        help="--oracle gt: the simulated annotator also paints the pixels its majority answer "
        "leaves wrong, as a person splitting mixed segments in the app (default: majority rule)",
    )
    run.add_argument("--eval-split", help="split for model mIoU (e.g. val)")
    run.add_argument("--seed", type=int, default=0, help="seed of training, LCM and random scores")
    run.add_argument("--epochs", type=int, default=6, help="training epochs per round")
    run.add_argument(
        "--model",
        default="efficientnet-lite0",
        choices=MODELS.names(),
        help="segmentation model",
    )
    run.add_argument(
        "--weights", default="imagenet", help="imagenet, none, or a path to encoder weights"
    )
    run.add_argument("--fine-tune", action="store_true", help="train the encoder too (slow on CPU)")
    run.add_argument(
        "--no-feature-cache",
        action="store_true",
        help="run the frozen encoder on every batch instead of caching its features (no cache "
        "files; cheaper on a GPU than reading them back)",
    )
    run.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    run.add_argument(
        "--cache", type=Path, help="folder for cached encoder features (default: in the workspace)"
    )
    run.add_argument("--report", type=Path, help="write an HTML report here when the run stops")
    run.add_argument(
        "--min-precision",
        type=float,
        default=0.9,
        help="proven corrector: apply only a slice whose precision's 95%% lower bound reaches "
        "this (default: 0.9)",
    )
    run.add_argument(
        "--explore-share",
        type=float,
        default=0.05,
        help="learned acquisition: share of each round's budget drawn uniformly at random "
        "(default: 0.05)",
    )
    run.add_argument(
        "--answer-model",
        choices=("logistic", "boosting"),
        default="logistic",
        help="learned acquisition and proven corrector: the model of the answers "
        "(scikit-learn's logistic regression, or histogram gradient boosting; default: logistic)",
    )
    run.add_argument(
        "--guarantee",
        choices=("bound", "fdr"),
        default="bound",
        help="proven corrector: what the applied changes promise. bound: the chance that "
        "fewer than --min-precision of them are right is at most 5%% (audits pooled over "
        "rounds); fdr: on average at most 1 - --min-precision of them are wrong (conformal "
        "selection on the round's own audit of the corrector's region, see --fdr-region) "
        "(default: bound)",
    )
    run.add_argument(
        "--fdr-region",
        choices=("reserved", "leftover"),
        default="reserved",
        help="proven corrector with --guarantee fdr: where its region comes from. reserved: "
        "the most confident proposals, which the acquisition then leaves to it; leftover: "
        "the most confident of those the acquisition left, so that where the corrector "
        "abstains only the audit's share of the budget is spent on it (default: reserved)",
    )
    run.add_argument(
        "--voices",
        default="answer",
        metavar="NAMES",
        help="proven corrector with --guarantee fdr: comma-separated voices that score the "
        "proposals, combined by a model of earlier audits: answer, round, neighbours, image "
        "(default: answer)",
    )

    return {
        "score": _distributed(_score),
        "correct": _correct,
        "run": _distributed(_run),
    }


def _score(args: argparse.Namespace, shard: Shard | None) -> int:
    """Under torchrun every rank scores its share of the images; rank 0 alone writes."""
    from a2lc.steps.scoring import ScoreConfig, probability_folder_loader, score_round

    writer = shard is None or shard.writer
    with _rank_workspace(args.workspace, shard) as ws:
        loader = probability_folder_loader(ws, args.probs)
        round_index = score_round(
            ws,
            loader,
            config=ScoreConfig(strategy=args.strategy, budget=args.budget, seed=args.seed),
            show_progress=writer,
            shard=shard,
        )
        if round_index is None:
            return 0
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
    from a2lc.steps.answers import answer_with_oracle
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


def _run(args: argparse.Namespace, shard: Shard | None) -> int:
    """Under torchrun every rank runs the loop; rank 0 alone writes and reports."""
    from a2lc.rounds import run_rounds

    if args.report is not None:
        _refuse_state(args.workspace, args.report, "--report")
    config = run_config_from_args(args)
    with _rank_workspace(args.workspace, shard) as ws:
        if shard is not None and not shard.writer:
            run_rounds(ws, config, cache_dir=args.cache, shard=shard)
            return 0
        return _run_and_report(args, ws, config, shard)


def _run_and_report(
    args: argparse.Namespace, ws: Workspace, config: RunConfig, shard: Shard | None
) -> int:
    from a2lc.report import workspace_report
    from a2lc.rounds import run_rounds

    result = run_rounds(ws, config, cache_dir=args.cache, shard=shard)
    _print_metrics(result.metrics, images=len(ws.samples))
    if args.report:
        workspace_report(ws, args.report)
        print(f"report: {args.report}")
    if not result.finished:
        print(
            f"round {result.waiting_round}: {ws.count_unanswered(result.waiting_round or 0)} queries "
            f"wait for answers (`a2lc annotate -w {args.workspace}`, or Label Studio via "
            "`a2lc export-queries`); rerun this command when they are in"
        )
    return 0
