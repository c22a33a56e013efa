"""Replay: the voices and the guarantees on finished ``validated+proven`` rounds (issue #35).

A cheap first filter for corrector candidates, before full runs. For each round of
each finished run it takes the corrector's region as the loop planned it (the
answer model's most confident proposals, a uniform audit inside it, the uniform
exploration sample) and the answers as they were given, and replays:

* every voice of :mod:`a2lc.correction.voices` alone and :func:`combine`d (trained on
  the earlier rounds' audited proposals only): precision of the unaudited
  proposals at fixed volumes (top half, top quarter, by each score) and AUROC for
  "the proposal is right", measured with ground truth;
* the guarantees (:mod:`a2lc.correction.guarantees`): ``bound`` on this round's
  audit, ``fdr`` on this round's audit with the answer voice alone and with the
  combined voices; changes per query (unaudited proposals applied / the round's
  budget) and their true precision.

Calibration = the region's proposals answered through the audit or the exploration
(both uniform inside the region); candidates = the region's proposals nobody
answered. The voices that read answers see every answer except this round's
calibration. Each round is replayed as it happened (the changes do not feed later
rounds; in these runs the acquisition could pick region segments, which a
``fdr`` run leaves to the corrector). Ground truth measures only; workspaces are
opened read-only.

    python benchmarks/corrector_voices.py --runs WORK/runs/seed/seed1/validated+proven ... \
        --out benchmarks/results/corrector_voices.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from a2lc._atomic import atomic_write_text
from a2lc.correction.guarantees import select_bound, select_fdr
from a2lc.correction.learned import auroc
from a2lc.correction.voices import VOICES, VoiceInputs, combine, voice_matrix
from a2lc.data.sample import IGNORE_INDEX
from a2lc.steps.correctors import features_path, ground_truth_majority, load_round_features
from a2lc.steps.learning import plan_path
from a2lc.workspace import Workspace

TARGET = 0.9
TARGETS = (0.9, 0.95)
"""``fdr`` is replayed at the 0.9 target and at 0.95 (a margin for per-round precision)."""
ALL = ("answer", "round", "neighbours", "image")


def _precision_at(scores: np.ndarray, right: np.ndarray, share: float) -> float | None:
    count = round(share * scores.size)
    if count == 0:
        return None
    order = np.argsort(-scores, kind="stable")[:count]
    return float(right[order].mean())


def _guarantee(applied: np.ndarray, right: np.ndarray, budget: int) -> dict[str, Any]:
    n = int(applied.sum())
    return {
        "changes": n,
        "per_query": n / budget,
        "true_precision": float(right[applied].mean()) if n else None,
    }


def replay(path: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    training: list[np.ndarray] = []
    training_right: list[np.ndarray] = []
    with Workspace.open(path, read_only=True) as ws:
        segments = ws.pool_segments()
        for info in ws.rounds():
            r = info.round
            if not plan_path(ws, r).is_file():
                continue
            with np.load(plan_path(ws, r)) as archive:
                plan = {name: archive[name] for name in archive.files}
            region = plan["region"].astype(np.int64)
            if region.size == 0:
                continue
            saved = load_round_features(features_path(ws, r))
            assert saved.label is not None
            pool_rows = saved.pool_rows(ws, segments)
            row_of = np.full(segments.segment_id.size, -1, dtype=np.int64)
            row_of[pool_rows] = np.arange(pool_rows.size)
            answers = [
                c
                for c in ws.corrections()
                if c["source"] == "manual" and int(c["round"]) <= r and c["after"] != IGNORE_INDEX
            ]
            keys = [(c["image_id"], int(c["segment_id"])) for c in answers]
            rows = row_of[
                segments.rows(
                    ws.dataset.positions([k[0] for k in keys]),
                    np.asarray([k[1] for k in keys], dtype=np.int64),
                )
            ]
            answered_round = np.asarray([int(c["round"]) for c in answers])
            sampled = np.union1d(plan["audits"], plan["explored"])
            in_region = np.isin(region, sampled) & np.isin(region, rows[answered_round == r])
            calibration = region[in_region]
            candidates = region[~np.isin(region, rows)]
            calibration_set = set(calibration.tolist())
            donors = np.asarray(
                [
                    i
                    for i, row in enumerate(rows)
                    if not (answered_round[i] == r and int(row) in calibration_set)
                ],
                dtype=np.int64,
            )
            proposed_of = dict(zip(region.tolist(), plan["region_proposed"].tolist(), strict=True))
            confidence_of = dict(
                zip(region.tolist(), plan["region_confidence"].tolist(), strict=True)
            )
            judged = np.concatenate([calibration, candidates])
            proposed = np.asarray([proposed_of[int(i)] for i in judged], dtype=np.int64)
            answer_probabilities = np.zeros((judged.size, ws.num_classes))
            answer_probabilities[np.arange(judged.size), proposed] = [
                confidence_of[int(i)] for i in judged
            ]
            # The answer-reading voices search the answered segments' rows of this round.
            donor_rows = rows[donors]
            everything = np.concatenate([judged, donor_rows])
            inputs = VoiceInputs(
                labels=saved.label[everything],
                proposed=np.concatenate([proposed, np.zeros(donor_rows.size, dtype=np.int64)]),
                answer_probabilities=np.concatenate(
                    [answer_probabilities, np.zeros((donor_rows.size, ws.num_classes))]
                ),
                round_probabilities=saved.features[everything].astype(np.float64),
                embedding=(
                    saved.embedding[everything].astype(np.float64)
                    if saved.embedding is not None
                    else None
                ),
                image=saved.image[everything],
                answered=np.arange(judged.size, everything.size),
                answered_label=np.asarray([int(answers[i]["before"]) for i in donors]),
                answered_class=np.asarray([int(answers[i]["after"]) for i in donors]),
            )
            voices = voice_matrix(inputs, ALL)[: judged.size]
            truth = ground_truth_majority(ws, [saved.key(int(i)) for i in judged])
            right = truth == proposed
            calib = np.arange(calibration.size)
            test = np.arange(calibration.size, judged.size)
            # the answers of the calibration are the people's, which the simulated oracle
            # gives as the ground-truth majority
            combined = combine(
                voices[test],
                training=np.concatenate(training) if training else np.zeros((0, len(ALL))),
                training_right=(
                    np.concatenate(training_right) if training_right else np.zeros(0, bool)
                ),
            )
            combined_calib = combine(
                voices[calib],
                training=np.concatenate(training) if training else np.zeros((0, len(ALL))),
                training_right=(
                    np.concatenate(training_right) if training_right else np.zeros(0, bool)
                ),
            )
            budget = int(info.budget)
            row: dict[str, Any] = {
                "round": r,
                "budget": budget,
                "region": int(region.size),
                "calibration": int(calib.size),
                "calibration_precision": float(right[calib].mean()) if calib.size else None,
                "candidates": int(test.size),
                "candidates_precision": float(right[test].mean()) if test.size else None,
                "combined_learned": combined.learned,
                "combined_weights": combined.weights.tolist(),
                "voices": {},
            }
            scores = {name: voices[:, j] for j, name in enumerate(ALL)}
            for name, values in [*scores.items(), ("combined", None)]:
                t_scores = combined.scores if values is None else values[test]
                row["voices"][name] = {
                    "auroc": auroc(t_scores, right[test]),
                    "precision_top_half": _precision_at(t_scores, right[test], 0.5),
                    "precision_top_quarter": _precision_at(t_scores, right[test], 0.25),
                }
            answer = scores["answer"]
            row["bound"] = _guarantee(
                select_bound(answer[calib], right[calib], answer[test], target=TARGET).selected,
                right[test],
                budget,
            )
            for target in TARGETS:
                suffix = "" if target == TARGET else f"@{target}"
                row[f"fdr_answer{suffix}"] = _guarantee(
                    select_fdr(answer[calib], right[calib], answer[test], target=target).selected,
                    right[test],
                    budget,
                )
                row[f"fdr_combined{suffix}"] = _guarantee(
                    select_fdr(
                        combined_calib.scores, right[calib], combined.scores, target=target
                    ).selected,
                    right[test],
                    budget,
                )
            row["bound_combined"] = _guarantee(
                select_bound(
                    combined_calib.scores, right[calib], combined.scores, target=TARGET
                ).selected,
                right[test],
                budget,
            )
            out.append(row)
            training.append(voices[calib])
            training_right.append(right[calib])
            print(
                f"{path} round {r}: calib {calib.size} ({row['calibration_precision']}), "
                f"candidates {test.size} ({row['candidates_precision']}); "
                f"bound {row['bound']}; fdr answer {row['fdr_answer']}; "
                f"fdr combined {row['fdr_combined']}",
                flush=True,
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, nargs="+", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    assert tuple(VOICES.names()) == tuple(sorted(ALL))
    results = {str(path): replay(path) for path in args.runs}
    atomic_write_text(args.out, json.dumps({"target": TARGET, "runs": results}, indent=1))


if __name__ == "__main__":
    main()
