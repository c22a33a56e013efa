"""What the piecewise whole-pool benchmarks share: one piece is one resumable
``a2lc bench`` run (CamVid's whole train pool, 5 rounds, evaluated on val), and the
command line that runs pieces and merges them after each."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from a2lc._atomic import atomic_write_text
from a2lc.bench.harness import BenchConfig, run_benchmark
from a2lc.correction.learned import LearnedConfig

ROOT = Path(__file__).resolve().parents[1]


def run_whole_pool(
    *,
    data: Path,
    out: Path,
    pseudo: str,
    regime: str,
    strategy: str,
    seed: int,
    learned: LearnedConfig,
) -> None:
    """One piece: ``strategy`` on the whole train pool for 5 rounds (resumes in ``out``)."""
    config = BenchConfig(
        data=data,
        out=out,
        pool_split="train",
        eval_split="val",
        pseudo=pseudo,  # type: ignore[arg-type]
        noises=(regime,),  # type: ignore[arg-type]
        rounds=5,
        strategies=(strategy,),
        seeds=(seed,),
        learned=learned,
    )
    run_benchmark(config, show_progress=False)


def pieces_main(
    argv: list[str] | None,
    *,
    description: str,
    piece_help: str,
    run_piece: Callable[[Path, Path, str], None],
    collect: Callable[[Path], dict[str, Any]],
    out: Path,
) -> int:
    """``run --work W --pieces P,Q`` (resumable; merged into ``out`` after each piece) and
    ``collect --work W``; prints the merged ``rule``."""
    parser = argparse.ArgumentParser(description=description)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help=f"run pieces {piece_help} (resumable), collecting after each")
    run.add_argument("--work", type=Path, required=True)
    run.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "camvid")
    run.add_argument("--pieces", required=True)
    col = sub.add_parser("collect", help="merge the pieces and apply the rule")
    col.add_argument("--work", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "run":
        for piece in args.pieces.split(","):
            run_piece(args.work, args.data, piece)
            atomic_write_text(out, json.dumps(collect(args.work), indent=1))
            print(f"piece {piece} done", flush=True)
    merged = collect(args.work)
    atomic_write_text(out, json.dumps(merged, indent=1))
    print(json.dumps(merged["rule"], indent=1))
    return 0
