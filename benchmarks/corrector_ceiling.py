"""How many corrections could any prover apply? The precision of the proposals by volume.

The proven corrector applies a slice of its most confident proposals only once a
random audit proves the slice's precision (95% lower bound ≥ 0.9). Whether that can
ever happen at a useful volume depends on how precise the proposals are in the
first place. This replays finished ``validated+proven`` runs round by round (their
saved features and answers, exactly as the loop saw them) and measures, with ground
truth, the true precision of the most confident ``v`` proposals for several ``v``:

* ``answer model``: what the corrector proposes (the model of every earlier answer,
  its ``P(wrong)`` shifted to the explored rate, most likely class ≠ label, most
  confident first);
* ``agreement``: the same proposals kept only where the 3 answered segments
  nearest in the encoder's embedding (cosine) were all given the proposed class (a
  second, independent view; the answers are the simulated annotator's, i.e. the
  ground-truth majority).

``ceiling`` is the largest ``v`` whose top-``v`` precision is still ≥ the target: an
upper bound on what a prover that knew the truth could apply (a real one needs the
precision to clear the target with margin, and pays audits for it).

``designs`` simulates the proof itself on the same proposals (or only those the
neighbours agree with), with the same audit budget (10% of the round's budget)
answered from ground truth, ``REPLICATES`` random draws per round:
``region_per_audit`` = 4 (today: audits drawn uniformly from the 4 × audits most
confident proposals) or 2 (denser audits at the top), with evidence from the round
itself (``round``) or pooled over the rounds replayed so far (``pooled``, today's
rule). It reports the unaudited changes a design applies per
query, their true precision and how often a design applied a slice whose true
precision was below the target. Each round is replayed as it happened (the changes
a design would have made do not feed the next rounds).

    python benchmarks/corrector_ceiling.py --runs WORK/runs/seed/seed2/validated+proven ... \
        --out benchmarks/results/corrector_ceiling.json

Ground truth is used for the measurement only; nothing is written to the workspaces
(opened read-only).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from a2lc._atomic import atomic_write_text
from a2lc.correction.answer_model import fit_logistic
from a2lc.correction.learned import (
    Evidence,
    LearnedConfig,
    match_rate,
    proven_threshold,
    ranked_proposals,
    recalibrate,
    uniform_sample,
    wrong_probability,
)
from a2lc.data.sample import IGNORE_INDEX
from a2lc.steps.correctors import (
    design_rows,
    features_path,
    ground_truth_majority,
    load_round_features,
)
from a2lc.steps.learning import answer_sets
from a2lc.workspace import Workspace

NEIGHBOURS = 3
REPLICATES = 50
DESIGNS = (
    ("model", 4, "pooled"),
    ("model", 4, "round"),
    ("model", 2, "pooled"),
    ("model", 2, "round"),
    ("agreement", 4, "round"),
    ("agreement", 2, "round"),
)
"""(proposals, region_per_audit, evidence) simulated; ("model", 4, "pooled") is today's."""


def top_precision(right: np.ndarray, volumes: list[int]) -> dict[str, float | None]:
    """Precision of the first ``v`` of ``(P,)`` outcomes (most confident first), per ``v``."""
    return {str(v): (float(right[:v].mean()) if right.size >= v else None) for v in volumes}


def ceiling(right: np.ndarray, target: float) -> int:
    """The largest ``v`` whose first ``v`` outcomes are right at least ``target`` of the time."""
    if right.size == 0:
        return 0
    running = np.cumsum(right) / np.arange(1, right.size + 1)
    passing = np.flatnonzero(running >= target)
    return int(passing[-1] + 1) if passing.size else 0


def simulate_design(
    confidence: np.ndarray,
    right: np.ndarray,
    *,
    audits: int,
    region_per_audit: int,
    earlier: Evidence,
    config: LearnedConfig,
    rng: np.random.Generator,
) -> tuple[int, int, Evidence]:
    """One draw of one proof design on ``(P,)`` proposals (most confident first) with
    ``(P,)`` outcomes: (unaudited changes applied, how many were right, this round's
    evidence)."""
    size = min(confidence.size, region_per_audit * audits)
    if size == 0 or audits == 0:
        return 0, 0, Evidence.empty()
    floor = float(confidence[size - 1])
    sampled = uniform_sample(np.arange(size), audits, rng)
    mine = Evidence(confidence[sampled], right[sampled], np.full(sampled.size, floor))
    chosen = proven_threshold(
        Evidence.concatenate([earlier, mine]),
        min_confidence=floor,
        min_precision=config.min_precision,
        confidence=config.confidence,
        first_test=config.first_test,
        growth=config.test_growth,
    )
    applied = np.flatnonzero(confidence[:size] >= chosen.threshold)
    applied = np.setdiff1d(applied, sampled)
    return int(applied.size), int(right[applied].sum()), mine


def replay(path: Path, *, target: float) -> list[dict[str, Any]]:
    config = LearnedConfig()
    out: list[dict[str, Any]] = []
    rng = np.random.default_rng(0)
    pooled: dict[tuple[str, int, str], list[Evidence]] = {
        design: [Evidence.empty()] * REPLICATES for design in DESIGNS
    }
    with Workspace.open(path, read_only=True) as ws:
        answered: set[tuple[str, int]] = set()
        for info in ws.rounds():
            r = info.round
            saved = load_round_features(features_path(ws, r))
            if saved.label is None or saved.embedding is None:
                raise SystemExit(f"{path}: round {r}'s features lack labels or embeddings")
            keys = [saved.key(i) for i in range(saved.segment.size)]
            truth = ground_truth_majority(ws, keys)
            labels = saved.label
            eligible = (
                np.fromiter((k not in answered for k in keys), bool, len(keys))
                & (labels != IGNORE_INDEX)
                & (truth != IGNORE_INDEX)
            )
            budget = int(info.budget)
            volumes = sorted({30, 100, budget // 4, budget // 2, budget})
            row: dict[str, Any] = {
                "round": r,
                "budget": budget,
                "eligible": int(eligible.sum()),
                "pool_wrong_rate": float(np.mean(truth[eligible] != labels[eligible])),
            }
            sets = answer_sets(ws, r)
            row["answers"] = int(sets.y.size)
            if sets.y.size >= config.min_answers and np.unique(sets.y).size >= 2:
                model = fit_logistic(sets.x, sets.y, num_classes=ws.num_classes, l2=config.l2)
                raw = model.probabilities(design_rows(saved, slice(None)))
                calibration = match_rate(
                    wrong_probability(raw, labels)[eligible], sets.explored_wrong
                )
                probabilities = recalibrate(raw, labels, calibration)
                proposals = ranked_proposals(probabilities, labels, eligible=eligible)
                right = truth[proposals.rows] == proposals.proposed
                # The nearest answered segments' answers, as a second view.
                unit = saved.embedding / np.maximum(
                    np.linalg.norm(saved.embedding, axis=1, keepdims=True), 1e-9
                )
                asked = np.flatnonzero(~np.fromiter((k not in answered for k in keys), bool))
                near = np.argsort(-(unit[proposals.rows] @ unit[asked].T), axis=1)[:, :NEIGHBOURS]
                given = truth[asked][near]
                agree = (given == proposals.proposed[:, None]).all(axis=1)
                row.update(
                    {
                        "proposals": int(proposals.rows.size),
                        "answer_model": top_precision(right, volumes),
                        "answer_model_ceiling": ceiling(right, target),
                        "agreement_proposals": int(agree.sum()),
                        "agreement": top_precision(right[agree], volumes),
                        "agreement_ceiling": ceiling(right[agree], target),
                    }
                )
                audits = round(config.audit_share * budget)
                designs = {}
                for design in DESIGNS:
                    proposer, region_per_audit, evidence = design
                    keep = agree if proposer == "agreement" else np.ones(agree.size, dtype=bool)
                    changed, correct, unsafe = [], [], 0
                    for k in range(REPLICATES):
                        earlier = pooled[design][k] if evidence == "pooled" else Evidence.empty()
                        n, good, mine = simulate_design(
                            proposals.confidence[keep],
                            right[keep],
                            audits=audits,
                            region_per_audit=region_per_audit,
                            earlier=earlier,
                            config=config,
                            rng=rng,
                        )
                        pooled[design][k] = Evidence.concatenate([pooled[design][k], mine])
                        changed.append(n)
                        correct.append(good)
                        unsafe += int(n > 0 and good / n < target)
                    total = sum(changed)
                    designs[f"{proposer}/{region_per_audit}x/{evidence}"] = {
                        "changed_per_query": float(np.mean(changed)) / budget,
                        "rounds_with_changes": float(np.mean(np.asarray(changed) > 0)),
                        "true_precision": sum(correct) / total if total else None,
                        "unsafe_share": unsafe / REPLICATES,
                    }
                row["designs"] = designs
            out.append(row)
            answered.update(
                (c["image_id"], int(c["segment_id"]))
                for c in ws.corrections(r)
                if c["source"] == "manual"
            )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="run workspaces")
    parser.add_argument("--target", type=float, default=0.9, help="precision target (0.9)")
    parser.add_argument("--out", type=Path, default=None, help="write the results here (JSON)")
    args = parser.parse_args(argv)
    results = []
    for path in args.runs:
        rounds = replay(path, target=args.target)
        results.append({"run": "/".join(path.parts[-5:]), "rounds": rounds})
        for row in rounds:
            if "answer_model" not in row:
                continue
            per_query = row["answer_model_ceiling"] / row["budget"]
            print(
                f"{'/'.join(path.parts[-4:])} R{row['round']}: pool wrong "
                f"{100 * row['pool_wrong_rate']:.1f}%, top-{row['budget'] // 4} precision "
                f"{row['answer_model'][str(row['budget'] // 4)]}, ceiling "
                f"{row['answer_model_ceiling']} ({per_query:.2f} per query), agreement ceiling "
                f"{row['agreement_ceiling']}",
                flush=True,
            )
            for name, design in row["designs"].items():
                precision = design["true_precision"]
                print(
                    f"    proof {name}: {design['changed_per_query']:.3f} changes per query, "
                    f"rounds with changes {design['rounds_with_changes']:.0%}, true precision "
                    f"{'–' if precision is None else f'{precision:.3f}'}, below target "
                    f"{design['unsafe_share']:.0%}",
                    flush=True,
                )
        if args.out:
            atomic_write_text(
                args.out, json.dumps({"target": args.target, "runs": results}, indent=1) + "\n"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
