"""The answer model on scikit-learn (issue #34): logistic and boosting on the whole-pool cells.

Runs ``validated+proven`` on the protocol's whole-pool ``gt-proxy`` cells (CamVid
train, regimes ``seed``, ``detector-like``, ``correlated``; 5 rounds) with the
answer model of :mod:`a2lc.correction.answer_model` (``logistic``: scikit-learn's
``LogisticRegression``, the same penalised likelihood the hand-written L-BFGS fit
minimised; ``boosting``: ``HistGradientBoostingClassifier``) and compares every round
with the committed protocol run of the same cell and seed, made with the
hand-written fit (``benchmarks/results/protocol/results.json``). Each piece is an
``a2lc bench`` folder under ``--work`` (resumable); the merged comparison is
written to ``benchmarks/results/answer_model.json`` after each piece.

    A2LC_THREADS=1 python benchmarks/answer_model.py run --work ~/a2lc-answer \\
        --pieces logistic/seed/1,logistic/detector-like/1,logistic/correlated/1
    python benchmarks/answer_model.py collect --work ~/a2lc-answer

The rule (docs/benchmark.md, written before these runs):

* scikit-learn's logistic model replaces the hand-written fit if, over the cells
  run, its mean data mIoU is at most 0.25 points below the hand-written fit's at
  every round and its mean "is wrong" AUROC over rounds 2–5 at most 0.01 below;
* ``boosting`` becomes the default answer model only if its mean R5 data mIoU is at
  least 0.5 points above the logistic model's (scikit-learn) and its mean AUROC over
  rounds 2–5 is higher.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from _pieces import pieces_main, run_whole_pool
from a2lc.correction.learned import LearnedConfig

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = ROOT / "benchmarks" / "results" / "protocol" / "results.json"
OUT = ROOT / "benchmarks" / "results" / "answer_model.json"
STRATEGY = "validated+proven"
KINDS = ("logistic", "boosting")
REGIMES = ("seed", "detector-like", "correlated")
IDENTICAL_WITHIN = 0.25
"""Points of mean data mIoU by which the scikit-learn fit may trail the hand-written one."""
AUROC_WITHIN = 0.01
BOOSTING_MARGIN = 0.5
"""Points of mean R5 data mIoU by which boosting must lead to become the default."""


def piece_folder(work: Path, kind: str, regime: str, seed: int) -> Path:
    return work / f"{kind}-{regime}-s{seed}"


def run_piece(work: Path, data: Path, piece: str) -> None:
    kind, regime, seed = piece.split("/")
    if kind not in KINDS or regime not in REGIMES:
        raise SystemExit(
            f"piece {piece!r}: KIND/REGIME/SEED with KIND in {KINDS}, REGIME in {REGIMES}"
        )
    run_whole_pool(
        data=data,
        out=piece_folder(work, kind, regime, int(seed)),
        pseudo="gt-proxy",
        regime=regime,
        strategy=STRATEGY,
        seed=int(seed),
        learned=LearnedConfig(answer_model=kind),  # type: ignore[arg-type]
    )


def _curve(run: dict[str, Any], key: str, scale: float = 1.0) -> list[float | None]:
    out: list[float | None] = []
    for rec in run["rounds"]:
        value = rec.get(key)
        if key == "data_miou_all" and value is None:
            value = rec.get("data_miou")
        out.append(None if value is None else round(scale * float(value), 4))
    return out


def collect(work: Path) -> dict[str, Any]:
    reference = {
        (r["noise"], int(r["seed"])): r
        for r in json.loads(PROTOCOL.read_text())["runs"]
        if r["strategy"] == STRATEGY and r.get("segments", "gt-proxy") == "gt-proxy"
        and r.get("pool", "train") == "train"
    }  # fmt: skip
    pieces: list[dict[str, Any]] = []
    for kind in KINDS:
        for regime in REGIMES:
            for path in sorted(work.glob(f"{kind}-{regime}-s*/results.json")):
                for run in json.loads(path.read_text())["runs"]:
                    seed = int(run["seed"])
                    if len(run["rounds"]) < 6:
                        continue  # unfinished
                    before = reference.get((regime, seed))
                    pieces.append(
                        {
                            "kind": kind,
                            "regime": regime,
                            "seed": seed,
                            "data_miou": _curve(run, "data_miou_all", 100),
                            "wrong_auroc": _curve(run, "learned_wrong_auroc"),
                            "handover_weight": _curve(run, "learned_handover_weight"),
                            "handwritten_data_miou": None
                            if before is None
                            else _curve(before, "data_miou_all", 100),
                            "handwritten_wrong_auroc": None
                            if before is None
                            else _curve(before, "learned_wrong_auroc"),
                        }
                    )
    return {"strategy": STRATEGY, "pieces": pieces, "rule": apply_rule(pieces)}


def _mean_curve(rows: list[list[float | None]]) -> np.ndarray:
    return np.asarray([[np.nan if v is None else v for v in row] for row in rows]).mean(axis=0)


def apply_rule(pieces: list[dict[str, Any]]) -> dict[str, Any]:
    """The rule of the module docstring, over the (regime, seed) cells every kind ran."""
    cells = {
        kind: {(p["regime"], p["seed"]) for p in pieces if p["kind"] == kind} for kind in KINDS
    }
    shared = sorted(cells["logistic"] & {(p["regime"], p["seed"]) for p in pieces
                                         if p["handwritten_data_miou"] is not None})  # fmt: skip
    verdict: dict[str, Any] = {"cells": [f"{r}/s{s}" for r, s in shared]}
    if shared:
        mine = [p for p in pieces if p["kind"] == "logistic" and (p["regime"], p["seed"]) in shared]
        ours = _mean_curve([p["data_miou"] for p in mine])
        theirs = _mean_curve([p["handwritten_data_miou"] for p in mine])
        auroc_ours = float(np.nanmean(_mean_curve([p["wrong_auroc"] for p in mine])[2:]))
        auroc_theirs = float(
            np.nanmean(_mean_curve([p["handwritten_wrong_auroc"] for p in mine])[2:])
        )
        verdict["sklearn_minus_handwritten"] = (ours - theirs).round(3).tolist()
        verdict["auroc_r2_r5"] = {"sklearn": auroc_ours, "handwritten": auroc_theirs}
        verdict["sklearn_replaces_handwritten"] = bool(
            (ours - theirs >= -IDENTICAL_WITHIN).all() and auroc_ours >= auroc_theirs - AUROC_WITHIN
        )
    both = sorted(cells["logistic"] & cells["boosting"])
    verdict["boosting_cells"] = [f"{r}/s{s}" for r, s in both]
    if both:
        by = {
            kind: [p for p in pieces if p["kind"] == kind and (p["regime"], p["seed"]) in both]
            for kind in KINDS
        }
        r5 = {k: float(_mean_curve([p["data_miou"] for p in v])[-1]) for k, v in by.items()}
        auroc = {
            k: float(np.nanmean(_mean_curve([p["wrong_auroc"] for p in v])[2:]))
            for k, v in by.items()
        }
        verdict["r5"] = r5
        verdict["auroc_r2_r5_by_kind"] = auroc
        verdict["boosting_becomes_default"] = bool(
            r5["boosting"] >= r5["logistic"] + BOOSTING_MARGIN
            and auroc["boosting"] > auroc["logistic"]
        )
    return verdict


def main(argv: list[str] | None = None) -> int:
    return pieces_main(
        argv,
        description=__doc__.split("\n")[0],
        piece_help="KIND/REGIME/SEED",
        run_piece=run_piece,
        collect=collect,
        out=OUT,
    )


if __name__ == "__main__":
    sys.exit(main())
