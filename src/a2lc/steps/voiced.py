"""The proven corrector under the ``fdr`` guarantee: voices, their combination, the selection.

A thin composition of pure rules over a workspace. When the round was planned
(:func:`a2lc.steps.learning.plan_learned` with ``guarantee="fdr"``) the answer model's
most confident proposals became the corrector's *region*: the acquisition asked
elsewhere, and people answered a uniform audit of it (plus the uniform exploration
sample wherever it fell inside). Once the answers are in, :func:`apply_voiced`:

1. splits the region into the *calibration* (its proposals people answered in this
   round's audit or exploration) and the *candidates* (those nobody answered);
2. lets each voice of :mod:`a2lc.correction.voices` score both, from every answer
   except the calibration's;
3. combines the voices by a model of earlier rounds' calibrations and of the earlier
   changes people reviewed (never this round's audit: a proposal is not judged by a
   model that saw its own audit);
4. selects by :func:`a2lc.correction.guarantees.select_fdr` (conformal p-values from
   the calibration, Benjamini–Hochberg) and records the changes with the sources,
   the guarantee and its evidence (one transaction).

The calibration's voices are kept (``rounds/round_NNN/voices.npz``) for the later
rounds' combinations. Evidence is never pooled across rounds for the selection
itself: each round's proposals come from another answer model, so only its own
audit is exchangeable with its candidates.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from a2lc._atomic import atomic_write_arrays, atomic_write_text
from a2lc.correction.guarantees import GUARANTEES
from a2lc.correction.learned import LearnedConfig
from a2lc.correction.voices import VoiceInputs, combine, voice_matrix
from a2lc.data.sample import IGNORE_INDEX
from a2lc.errors import WorkspaceError
from a2lc.steps.correctors import RoundFeatures, change_precision, round_folder
from a2lc.steps.learning import load_plan, outcome_path, plan_path
from a2lc.workspace import Workspace
from a2lc.workspace.review import ReviewDesk

log = logging.getLogger(__name__)


def voices_path(ws: Workspace, round_index: int) -> Path:
    return round_folder(ws, round_index) / "voices.npz"


def _earlier_evidence(
    ws: Workspace, round_index: int, names: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """``(T, V)`` voices and ``(T,)`` outcomes to fit the combination on: the calibrations
    of earlier rounds scored by the same ``names`` voices, and the changes of those rounds
    people reviewed in the app or Label Studio (accepted: right; reverted: wrong)."""
    verdicts = ReviewDesk(ws).verdicts()
    by_segment = {
        (c.round, c.image_id, c.segment_id): verdicts[c.id]
        for c in ws.automatic_changes(include_reverted=True, corrector="proven")
        if c.id in verdicts
    }
    voices, right = [np.zeros((0, len(names)))], [np.zeros(0, dtype=bool)]
    for info in ws.rounds():
        path = voices_path(ws, info.round)
        if info.round >= round_index or not path.is_file():
            continue
        with np.load(path) as archive:
            if tuple(archive["names"].tolist()) != names:
                continue  # scored with other voices: not comparable
            voices.append(archive["voices"])
            right.append(archive["right"].astype(bool))
            if "applied_voices" in archive.files and by_segment:
                keys = zip(
                    archive["applied_image"].tolist(),
                    archive["applied_segment"].tolist(),
                    strict=True,
                )
                found = [
                    (i, by_segment[(info.round, str(image), int(segment))])
                    for i, (image, segment) in enumerate(keys)
                    if (info.round, str(image), int(segment)) in by_segment
                ]
                if found:
                    voices.append(archive["applied_voices"][[i for i, _ in found]])
                    right.append(np.asarray([v == "accept" for _, v in found], dtype=bool))
    return np.concatenate(voices), np.concatenate(right)


def _answers(ws: Workspace, round_index: int, saved: RoundFeatures) -> dict[str, np.ndarray]:
    """Every non-void answer of rounds ≤ ``round_index``: feature row, round, before, after."""
    segments = ws.pool_segments()
    row_of = np.full(segments.segment_id.size, -1, dtype=np.int64)
    row_of[saved.pool_rows(ws, segments)] = np.arange(saved.segment.size)
    answers = sorted(
        (
            c
            for c in ws.corrections()
            if c["source"] == "manual"
            and int(c["round"]) <= round_index
            and c["after"] != IGNORE_INDEX
        ),
        key=lambda c: (int(c["round"]), str(c["image_id"]), int(c["segment_id"])),
    )
    if not answers:
        empty = np.zeros(0, dtype=np.int64)
        return {"row": empty, "round": empty, "before": empty, "after": empty}
    rows = row_of[
        segments.rows(
            ws.dataset.positions([str(c["image_id"]) for c in answers]),
            np.asarray([int(c["segment_id"]) for c in answers], dtype=np.int64),
        )
    ]
    keep = rows >= 0
    return {
        "row": rows[keep],
        "round": np.asarray([int(c["round"]) for c in answers])[keep],
        "before": np.asarray([int(c["before"]) for c in answers])[keep],
        "after": np.asarray([int(c["after"]) for c in answers])[keep],
    }


def calibration_outcomes(
    proposed: np.ndarray, *, sampled: np.ndarray, answered: np.ndarray, after: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(calibration, right)`` of a region of ``K`` proposals: the indices of those people
    answered this round inside its uniform samples, and whether each answer is the
    proposed class.

    ``proposed``, ``after``: ``(K,)`` classes (``after``: the answer, where ``answered``);
    ``sampled``, ``answered``: ``(K,)`` bool. A void answer (255: the segment is mostly
    void) counts as a wrong proposal, as ground truth counts a change to such a segment;
    dropping it would make the audit look more precise than the proposals it stands for.
    """
    calibration = np.flatnonzero(np.asarray(sampled, dtype=bool) & np.asarray(answered, bool))
    right = np.asarray(after, dtype=np.int64)[calibration] == np.asarray(proposed)[calibration]
    return calibration, right


def apply_voiced(
    ws: Workspace, *, config: LearnedConfig, round_index: int, saved: RoundFeatures
) -> dict[str, float]:
    """Select and record the round's changes under ``fdr``; returns (and records) the metrics."""
    r = round_index
    plan = load_plan(ws, r)
    if plan is None:
        raise WorkspaceError(f"{plan_path(ws, r)} is missing: round {r} was not planned")
    if saved.label is None:
        raise WorkspaceError("features saved by an older a2lc lack labels")
    region = plan["region"].astype(np.int64)
    if region.size and "region_probabilities" not in plan:
        raise WorkspaceError(
            f"{plan_path(ws, r)} was planned for the bound guarantee, not fdr: finish the "
            "round with the options it started with"
        )
    probabilities_of_region = plan.get(
        "region_probabilities", np.zeros((region.size, ws.num_classes))
    )
    proposed = plan["region_proposed"].astype(np.int64)
    answers = _answers(ws, r, saved)
    answered_now = {
        (str(c["image_id"]), int(c["segment_id"])): int(c["after"])
        for c in ws.corrections(r)
        if c["source"] == "manual"
    }
    keys = [saved.key(int(i)) for i in region]
    calibration, right = calibration_outcomes(
        proposed,
        sampled=np.isin(region, np.union1d(plan["audits"], plan["explored"])),
        answered=np.asarray([k in answered_now for k in keys], dtype=bool),
        after=np.asarray([answered_now.get(k, IGNORE_INDEX) for k in keys], dtype=np.int64),
    )
    segments = ws.pool_segments()
    manual_now = segments.manual[saved.pool_rows(ws, segments)]
    rejected = ws.rejected_changes()  # taken back by a revert: never again
    candidate = ~np.isin(region, answers["row"]) & ~manual_now[region]
    candidate &= np.asarray(
        [
            (*saved.key(int(i)), int(p)) not in rejected
            for i, p in zip(region, proposed, strict=True)
        ],
        dtype=bool,
    )
    candidates = np.flatnonzero(candidate & ~np.isin(np.arange(region.size), calibration))
    judged = np.concatenate([calibration, candidates])
    # The voices that read answers read every answer but the calibration's.
    donor = ~((answers["round"] == r) & np.isin(answers["row"], region[calibration]))
    donors = answers["row"][donor]
    rows = np.concatenate([region[judged], donors])
    probabilities = np.zeros((rows.size, ws.num_classes))
    probabilities[: judged.size] = probabilities_of_region[judged]
    inputs = VoiceInputs(
        labels=saved.label[rows],
        proposed=np.concatenate([proposed[judged], np.zeros(donors.size, dtype=np.int64)]),
        answer_probabilities=probabilities,
        round_probabilities=saved.features[rows].astype(np.float64),
        embedding=saved.embedding[rows] if saved.embedding is not None else None,
        image=saved.image[rows],
        answered=np.arange(judged.size, rows.size),
        answered_label=answers["before"][donor],
        answered_class=answers["after"][donor],
    )
    voices = voice_matrix(inputs, config.voices)[: judged.size]
    training, training_right = _earlier_evidence(ws, r, config.voices)
    scored = combine(voices, training=training, training_right=training_right)
    calibration_scores = scored.scores[: calibration.size]
    candidate_scores = scored.scores[calibration.size :]
    applied = GUARANTEES.get("fdr")(
        calibration_scores, right, candidate_scores, target=config.min_precision
    )
    chosen = candidates[applied.selected]
    changes = [(*saved.key(int(region[i])), int(proposed[i])) for i in chosen]
    applied_rows = region[chosen]
    atomic_write_arrays(
        voices_path(ws, r),
        voices=voices[: calibration.size],
        right=right,
        names=np.asarray(config.voices),
        # the applied changes' voices, so that reviews of them can teach later rounds
        applied_voices=voices[calibration.size :][applied.selected],
        applied_image=np.asarray([saved.key(int(i))[0] for i in applied_rows], dtype=str),
        applied_segment=np.asarray([saved.key(int(i))[1] for i in applied_rows], dtype=np.int64),
    )
    values: dict[str, float] = {
        "proven_changed": float(len(changes)),
        "auto_changed": float(len(changes)),
        "proven_round_sampled": float(calibration.size),
        "proven_candidates": float(candidates.size),
        "proven_combined": float(scored.learned),
        "proven_sampled": float(calibration.size),
        "proven_correct": float(right.sum()),
    }
    if calibration.size:
        values["proven_round_precision"] = float(right.mean())
    precision = change_precision(ws, changes)
    if precision is not None:
        values["proven_true_precision"] = precision
    evidence: dict[str, Any] = {
        **applied.evidence,
        "sources": [f"{name} voice" for name in config.voices],
        "statement": applied.statement,
        "combined": scored.learned,
        "weights": scored.weights.tolist(),
    }
    outcome = {
        "config": asdict(config),
        "region": int(region.size),
        "calibration": int(calibration.size),
        "candidates": int(candidates.size),
        "changed": len(changes),
        "evidence": evidence,
    }
    atomic_write_text(outcome_path(ws, r), json.dumps(outcome, indent=1))
    ws.record_auto_corrections(
        r,
        changes,
        step="proven",
        metrics=values,
        confidence=[float(s) for s in candidate_scores[applied.selected]],
        evidence=evidence,
    )
    log.info(
        "round %d: fdr corrector: %d of %d region proposals audited (%d right), %d candidates, "
        "%d applied%s",
        r,
        calibration.size,
        region.size,
        int(right.sum()),
        candidates.size,
        len(changes),
        (
            f", true precision {100 * values['proven_true_precision']:.1f}%"
            if "proven_true_precision" in values
            else ""
        ),
    )
    return values
