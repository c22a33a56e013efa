"""The learned acquisition and the proven corrector over a workspace.

The rules are in :mod:`a2lc.correction.learned`; this module moves arrays between
them and the workspace. When a round is scored (:func:`plan_learned`, before its
queries are recorded) a model of every earlier answer ranks the segments by
expected gain, proposes corrections, and the round's queries are drawn: a uniform
exploration sample, a uniform audit of the corrector's region and the best of
the rest. The plan is written beside the round's features
(``rounds/round_NNN/learned_plan.npz``). Once the answers are in,
:func:`apply_proven` pools the sampled answers of every round so far, finds the
proven slice and records its corrections (one transaction).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from a2lc._atomic import atomic_write_arrays, atomic_write_text
from a2lc.correction.answer_model import fit_answer_model
from a2lc.correction.guarantees import bound_statement
from a2lc.correction.learned import (
    Calibration,
    Evidence,
    LearnedConfig,
    auroc,
    expected_gain,
    handover_weight,
    match_rate,
    mixed_rank,
    proven_threshold,
    ranked_proposals,
    recalibrate,
    uniform_sample,
    wrong_probability,
)
from a2lc.data.sample import IGNORE_INDEX
from a2lc.errors import WorkspaceError
from a2lc.runtime import releasing
from a2lc.steps.correctors import (
    RoundFeatures,
    change_precision,
    design_rows,
    feature_rows,
    features_path,
    load_round_features,
    round_folder,
)
from a2lc.workspace import Workspace

log = logging.getLogger(__name__)

LEARN_STREAM = 0x1EA2
"""Second seed word of the exploration and audit samples' random stream."""

HANDOVER_STREAM = 0x4A0D
"""Second seed word of the hand-over's cross-validation folds."""

Query = tuple[str, int, float]

BLEND_ANSWERS_PER_FEATURE = 10
"""``hedged``: the answer model ranks alone once it has this many answers per input feature."""


def blended_rank(scores: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """``(N,)`` rank of each score among the eligible ones, scaled to [0, 1] (ties: mean rank)."""
    out = np.zeros(scores.size)
    out[eligible] = mixed_rank(scores[eligible], scores[eligible], 1.0)
    return out


def plan_path(ws: Workspace, round_index: int) -> Path:
    return round_folder(ws, round_index) / "learned_plan.npz"


def outcome_path(ws: Workspace, round_index: int) -> Path:
    return round_folder(ws, round_index) / "proven.json"


def segment_error_fraction(ws: Workspace, saved: RoundFeatures) -> np.ndarray:
    """``(N,)`` share of each feature row's pixels whose current label differs from ground truth.

    Pixels void in the ground truth are not counted; a segment with none gets 0.
    Only for metrics (needs ground truth for every image).
    """
    out = np.zeros(saved.segment.size)
    for i, image_id in enumerate(releasing(saved.image_ids)):
        mine = np.flatnonzero(saved.image == i)
        segments = ws.read_segments(image_id).ravel()
        truth = ws.read_ground_truth(image_id).ravel()
        labels = ws.read_labels(image_id).ravel()
        valid = (truth != IGNORE_INDEX) & (segments > 0)
        length = int(segments.max(initial=0)) + 1
        total = np.bincount(segments[valid], minlength=length)
        wrong = np.bincount(segments[valid & (labels != truth)], minlength=length)
        ids = saved.segment[mine]
        inside = ids < length
        fraction = np.zeros(ids.size)
        denominator = np.maximum(total[ids[inside]], 1)
        fraction[inside] = wrong[ids[inside]] / denominator
        out[mine] = fraction
    return out


class AnswerSets(NamedTuple):
    """Answers of earlier rounds with their rounds' features: ``x``, ``y`` ``(A, D)`` /
    ``(A,)`` what the model learns from (every answer); ``explored_wrong``: ``(S,)``
    whether each exploration answer (a uniform sample of the pool) found the label
    wrong; ``label``, ``prior``: ``(A,)`` / ``(A, C)`` each answered segment's label and
    the trained model's mean probabilities when it was asked."""

    x: np.ndarray
    y: np.ndarray
    explored_wrong: np.ndarray
    label: np.ndarray
    prior: np.ndarray


def answer_sets(ws: Workspace, round_index: int) -> AnswerSets:
    """Every answer of rounds before ``round_index`` (void answers left out)."""
    segments = ws.pool_segments()
    xs, ys, explored_wrong, labels, priors = [], [], [], [], []
    for info in ws.rounds():
        if info.round >= round_index or not features_path(ws, info.round).is_file():
            continue
        # In segment order, not answer order: people answer in any order (several at
        # once), and the answer model and its folds must not depend on it.
        answers = sorted(
            (
                c
                for c in ws.corrections(info.round)
                if c["source"] == "manual" and c["after"] != IGNORE_INDEX
            ),
            key=lambda c: (str(c["image_id"]), int(c["segment_id"])),
        )
        if not answers:
            continue
        saved = load_round_features(features_path(ws, info.round))
        if saved.label is None:
            continue
        rows = feature_rows(
            ws,
            segments,
            saved.pool_rows(ws, segments),
            [(c["image_id"], int(c["segment_id"])) for c in answers],
            features_path(ws, info.round),
        )
        after = np.asarray([c["after"] for c in answers], dtype=np.int64)
        plan = load_plan(ws, info.round)
        if plan is not None:
            explored = np.isin(rows, plan["explored"])
            explored_wrong.append(after[explored] != saved.label[rows[explored]])
        xs.append(design_rows(saved, rows))
        ys.append(after)
        labels.append(saved.label[rows])
        priors.append(saved.features[rows])
    if not xs:
        return AnswerSets(
            np.zeros((0, 0)),
            np.zeros(0, np.int64),
            np.zeros(0, bool),
            np.zeros(0, np.int64),
            np.zeros((0, ws.num_classes)),
        )
    return AnswerSets(
        np.concatenate(xs),
        np.concatenate(ys),
        np.concatenate(explored_wrong).astype(bool) if explored_wrong else np.zeros(0, bool),
        np.concatenate(labels).astype(np.int64),
        np.concatenate(priors),
    )


def plan_learned(
    ws: Workspace,
    *,
    config: LearnedConfig,
    learn_acquisition: bool,
    blend: bool = False,
    handover: bool = False,
    propose_corrections: bool,
    seed: int,
    round_index: int,
    ranked: list[Query],
    budget: int,
    saved: RoundFeatures,
    class_sizes: np.ndarray | None,
) -> tuple[list[Query], dict[str, float]]:
    """This round's queries: exploration, audits of the corrector's region, the best of the rest.

    ``ranked``: the round-1 prior's queries (the ``eg`` sweep), best first, at least
    ``budget`` of them plus the sampled share. ``learn_acquisition``: rank by the
    answer model's expected gain once it can be fitted (else by ``ranked``);
    ``blend``: rank by a mix of the answer model's and the prior's ranks, the
    answer model's weight growing with the answers (``hedged``); ``handover``: rank
    by a mix of the answer model's and the prior's ranks, the answer model's weight
    chosen by cross-validation on the answers (``validated``: ``ranked`` then holds
    every segment that can be queried).
    ``propose_corrections``: plan the proven corrector's audits. Writes the plan
    beside the round's features; records nothing in the database.
    """
    r = round_index
    if saved.label is None or saved.size is None:
        raise WorkspaceError("features saved by an older a2lc lack labels and sizes")
    segments = ws.pool_segments()
    pool_rows = saved.pool_rows(ws, segments)
    labels = saved.label
    eligible = ~segments.manual[pool_rows]
    sets = answer_sets(ws, r)
    y_train = sets.y
    fitted = y_train.size >= config.min_answers and np.unique(y_train).size >= 2
    probabilities: np.ndarray | None = None
    raw: np.ndarray | None = None
    calibration = Calibration()
    if fitted:
        model = fit_answer_model(
            sets.x,
            y_train,
            num_classes=ws.num_classes,
            kind=config.answer_model,
            l2=config.l2,
            seed=seed,
        )
        raw = model.probabilities(design_rows(saved, slice(None)))
        calibration = match_rate(wrong_probability(raw, labels)[eligible], sets.explored_wrong)
        probabilities = recalibrate(raw, labels, calibration)
        p_wrong = wrong_probability(probabilities, labels)
    else:
        p_wrong = wrong_probability(saved.features, labels)  # the prior: the model's own view
    rng = np.random.default_rng([seed, r, LEARN_STREAM])
    metrics: dict[str, float] = {
        "learned_training_answers": float(y_train.size),
        "learned_model": float(fitted),
        "learned_calibration_samples": float(calibration.samples),
        "learned_calibration_shift": calibration.shift,
    }
    # The corrector's region: the most confident proposals, audited uniformly. Under
    # fdr with a leftover region it is drawn after the acquisition, from what that left.
    empty = np.zeros(0, dtype=np.int64)
    region, region_proposed, region_confidence = empty, empty, np.zeros(0)
    audits = empty
    floor = float("inf")
    expected_auto = np.zeros(labels.size, dtype=bool)
    extra_arrays: dict[str, np.ndarray] = {}
    correcting = propose_corrections and probabilities is not None
    leftover = correcting and config.guarantee == "fdr" and config.fdr_region == "leftover"
    audit_count = round(config.audit_share * budget) if correcting else 0
    region_size = config.region_per_audit * audit_count
    if correcting and not leftover:
        assert probabilities is not None
        proposals = ranked_proposals(probabilities, labels, eligible=eligible)
        region = proposals.rows[:region_size]
        region_proposed = proposals.proposed[:region_size]
        region_confidence = proposals.confidence[:region_size]
        audits = uniform_sample(region, audit_count, rng)
        if config.guarantee == "fdr":
            # The whole region is the corrector's: the acquisition asks elsewhere, so what
            # people answer inside it is the audit and the exploration, both uniform.
            expected_auto[region] = True
            extra_arrays["region_probabilities"] = probabilities[region]
        else:
            # Proposals the evidence so far would already apply are left to the corrector.
            before = proven_threshold(pooled_evidence(ws, r), min_confidence=0.0, **_tests(config))
            expected_auto[proposals.rows[proposals.confidence >= before.threshold]] = True
        expected_auto[audits] = False
        metrics["proven_proposals"] = float(proposals.rows.size)
    taken = np.zeros(labels.size, dtype=bool)
    taken[audits] = True
    explore_count = round(config.explore_share * budget)
    explored = uniform_sample(np.flatnonzero(eligible & ~taken), explore_count, rng)
    taken[explored] = True
    needed = budget - (audit_count if leftover else audits.size) - explored.size
    scores: np.ndarray | None = None
    if learn_acquisition and probabilities is not None:
        assert class_sizes is not None
        # validated: the answer model's own probabilities. Shifted to the explored rate
        # (a handful of samples early on), its P(wrong) spans orders of magnitude and
        # outweighs size: on CamVid's small pools that ranking fixed a fifth of the IoU
        # the unshifted one did in round 2 (docs/benchmark.md, "the protocol").
        ranking = raw if handover and raw is not None else probabilities
        scores = expected_gain(ranking, labels, saved.size, class_sizes)
        if blend:
            # Hand over from the prior (the model's own expected gain) to the answer
            # model as the answers grow: 10 answers per feature of the model = all learned.
            weight = min(1.0, y_train.size / (BLEND_ANSWERS_PER_FEATURE * sets.x.shape[1]))
            prior = expected_gain(saved.features, labels, saved.size, class_sizes)
            scores = weight * blended_rank(scores, eligible) + (1 - weight) * blended_rank(
                prior, eligible
            )
            metrics["learned_blend_weight"] = weight
        elif handover:
            trust = handover_weight(
                sets.x,
                sets.y,
                sets.label,
                sets.prior,
                num_classes=ws.num_classes,
                l2=config.l2,
                folds=config.handover_folds,
                rng=np.random.default_rng([seed, r, HANDOVER_STREAM]),
                kind=config.answer_model,
            )
            prior = np.full(labels.size, -np.inf)
            prior_rows = feature_rows(
                ws, segments, pool_rows, [(i, s) for i, s, _ in ranked], features_path(ws, r)
            )
            prior[prior_rows] = [score for _, _, score in ranked]
            # Segments outside the prior's list rank below every listed one.
            prior = np.where(np.isfinite(prior), prior, np.min(prior[prior_rows], initial=0) - 1)
            mixed = np.zeros(labels.size)
            mixed[eligible] = mixed_rank(scores[eligible], prior[eligible], trust.weight)
            scores = mixed
            metrics["learned_handover_weight"] = trust.weight
            metrics["learned_handover_learned_auroc"] = trust.learned_auroc
            metrics["learned_handover_prior_auroc"] = trust.prior_auroc
        order = np.argsort(-scores, kind="stable")
        order = order[(eligible & ~taken & ~expected_auto)[order]]
        order_scores = scores[order]
    else:
        rows_of = feature_rows(
            ws, segments, pool_rows, [(i, s) for i, s, _ in ranked], features_path(ws, r)
        )
        keep = ~(taken[rows_of] | expected_auto[rows_of])
        order = rows_of[keep]
        order_scores = np.asarray([score for _, _, score in ranked], dtype=np.float64)[keep]
    chosen = np.arange(min(needed, order.size))
    if leftover:
        assert probabilities is not None
        left = eligible & ~taken
        left[order[chosen]] = False
        proposals = ranked_proposals(probabilities, labels, eligible=left)
        region = proposals.rows[:region_size]
        region_proposed = proposals.proposed[:region_size]
        region_confidence = proposals.confidence[:region_size]
        audits = uniform_sample(region, audit_count, rng)
        expected_auto[region] = True
        expected_auto[audits] = False
        extra_arrays["region_probabilities"] = probabilities[region]
        metrics["proven_proposals"] = float(proposals.rows.size)
        # Too few proposals left for a whole audit: the acquisition's next picks fill the
        # budget (the region is then all audited, so nothing is left to judge).
        shortfall = audit_count - audits.size
        if shortfall:
            later = np.flatnonzero(~np.isin(order, audits))
            chosen = later[: needed + shortfall]
    if correcting:
        if region.size:
            floor = float(region_confidence[-1])
            metrics["proven_region_floor"] = floor
        metrics.update(
            {
                "proven_region": float(region.size),
                "proven_audited": float(audits.size),
                "proven_expected_auto": float(expected_auto.sum()),
            }
        )
    acquired = [(*saved.key(int(order[i])), float(order_scores[i])) for i in chosen.tolist()]
    sampled = [(*saved.key(int(i)), float(p_wrong[i])) for i in np.concatenate([audits, explored])]
    queries = acquired + sampled
    if len(queries) < budget or len({(i, s) for i, s, _ in queries}) != len(queries):
        raise WorkspaceError(f"only {len(queries)} segments could be queried, budget {budget}")
    metrics["learned_explored"] = float(explored.size)
    if ws.has_ground_truth:  # measurement only, timed apart from the learning
        measuring = time.process_time()
        wrong = segment_error_fraction(ws, saved) > 0.5
        metrics["learned_wrong_auroc"] = auroc(p_wrong[eligible], wrong[eligible])
        if scores is not None:
            metrics["learned_gain_auroc"] = auroc(scores[eligible], wrong[eligible])
        metrics["cpu_seconds/learn_measurement"] = time.process_time() - measuring
    atomic_write_arrays(
        plan_path(ws, r),
        region=region,
        region_proposed=region_proposed,
        region_confidence=region_confidence,
        floor=np.asarray(floor),
        audits=audits,
        explored=explored,
        p_wrong=p_wrong,
        **extra_arrays,
    )
    log.info(
        "round %d: %s from %d answers; %d explored, %d audited in a region of %d proposals",
        r,
        "answer model fitted" if fitted else "no answer model yet (prior ranking)",
        y_train.size,
        explored.size,
        audits.size,
        region.size,
    )
    return queries, metrics


def _tests(config: LearnedConfig) -> dict[str, Any]:
    return {
        "min_precision": config.min_precision,
        "confidence": config.confidence,
        "first_test": config.first_test,
        "growth": config.test_growth,
    }


def load_plan(ws: Workspace, round_index: int) -> dict[str, np.ndarray] | None:
    path = plan_path(ws, round_index)
    if not path.is_file():
        return None
    with np.load(path) as archive:
        return {name: archive[name] for name in archive.files}


def _round_evidence(ws: Workspace, round_index: int, saved: RoundFeatures) -> Evidence:
    """Answers drawn uniformly inside round ``round_index``'s region (audits, exploration)."""
    plan = load_plan(ws, round_index)
    if plan is None or plan["region"].size == 0:
        return Evidence.empty()
    answers = {
        (c["image_id"], int(c["segment_id"])): int(c["after"])
        for c in ws.corrections(round_index)
        if c["source"] == "manual"
    }
    sampled = set(plan["audits"].tolist()) | set(plan["explored"].tolist())
    confidence, correct = [], []
    for row, proposed, conf in zip(
        plan["region"], plan["region_proposed"], plan["region_confidence"], strict=True
    ):
        if int(row) not in sampled:
            continue
        answer = answers.get(saved.key(int(row)))
        if answer is None:
            continue  # not answered (yet)
        confidence.append(float(conf))
        correct.append(answer == int(proposed))
    floor = float(plan["floor"])
    return Evidence(
        np.asarray(confidence), np.asarray(correct, dtype=bool), np.full(len(confidence), floor)
    )


def pooled_evidence(ws: Workspace, before_round: int, *, include: int | None = None) -> Evidence:
    """Evidence of every round before ``before_round`` (and round ``include``)."""
    parts = []
    for info in ws.rounds():
        if info.round < before_round or info.round == include:
            if not plan_path(ws, info.round).is_file():
                continue
            saved = load_round_features(features_path(ws, info.round))
            parts.append(_round_evidence(ws, info.round, saved))
    return Evidence.concatenate(parts)


def apply_proven(
    ws: Workspace, *, config: LearnedConfig, round_index: int, saved: RoundFeatures
) -> dict[str, float]:
    """Apply the round's proposals in the proven slice; returns (and records) the metrics."""
    r = round_index
    plan = load_plan(ws, r)
    if plan is None:
        raise WorkspaceError(f"{plan_path(ws, r)} is missing: round {r} was not planned")
    floor = float(plan["floor"])
    evidence = pooled_evidence(ws, r, include=r)
    mine = _round_evidence(ws, r, saved)
    chosen = proven_threshold(evidence, min_confidence=floor, **_tests(config))
    answered = {
        (c["image_id"], int(c["segment_id"])) for c in ws.corrections(r) if c["source"] == "manual"
    }
    segments = ws.pool_segments()
    manual_now = segments.manual[saved.pool_rows(ws, segments)]
    rejected = ws.rejected_changes()  # taken back by a revert: never again
    changes = []
    confidences = []
    for row, proposed, conf in zip(
        plan["region"], plan["region_proposed"], plan["region_confidence"], strict=True
    ):
        key = saved.key(int(row))
        if (
            conf >= chosen.threshold
            and key not in answered
            and not manual_now[int(row)]
            and (*key, int(proposed)) not in rejected
        ):
            changes.append((*key, int(proposed)))
            confidences.append(float(conf))
    values: dict[str, float] = {
        "proven_changed": float(len(changes)),
        "auto_changed": float(len(changes)),
        "proven_evidence": float(evidence.correct.size),
        "proven_round_sampled": float(mine.correct.size),
        "proven_tests": float(chosen.tests),
        "proven_sampled": float(chosen.sampled),
        "proven_correct": float(chosen.correct),
        "proven_precision_lower": chosen.lower,
    }
    if mine.correct.size:
        values["proven_round_precision"] = float(mine.correct.mean())
    if chosen.sampled:
        values["proven_estimated_precision"] = chosen.estimate
    if np.isfinite(chosen.threshold):
        values["proven_threshold"] = chosen.threshold
    precision = change_precision(ws, changes)
    if precision is not None:
        values["proven_true_precision"] = precision
    outcome = {
        "config": asdict(config),
        "region": int(plan["region"].size),
        "region_floor": floor if np.isfinite(floor) else None,
        "slice": {
            "threshold": chosen.threshold if np.isfinite(chosen.threshold) else None,
            "sampled": chosen.sampled,
            "correct": chosen.correct,
            "lower_bound": chosen.lower,
            "tests": chosen.tests,
        },
        "evidence_pooled": int(evidence.correct.size),
        "changed": len(changes),
    }
    atomic_write_text(outcome_path(ws, r), json.dumps(outcome, indent=1))
    ws.record_auto_corrections(
        r,
        changes,
        step="proven",
        metrics=values,
        confidence=confidences,
        evidence={
            "sources": [f"answer model ({config.answer_model}, every answer so far)"],
            "guarantee": "bound",
            "statement": bound_statement(config.min_precision, config.confidence),
            "audited": chosen.sampled,
            "right": chosen.correct,
            "lower_bound": chosen.lower,
            "threshold": chosen.threshold if np.isfinite(chosen.threshold) else None,
            "evidence_pooled": int(evidence.correct.size),
        },
    )
    log.info(
        "round %d: proven corrector: %d sampled answers pooled, slice %s (%d/%d right, lower "
        "bound %.3f), %d applied%s",
        r,
        evidence.correct.size,
        f"≥ {chosen.threshold:.4f}" if np.isfinite(chosen.threshold) else "none proven",
        chosen.correct,
        chosen.sampled,
        chosen.lower,
        len(changes),
        (
            f", true precision {100 * values['proven_true_precision']:.1f}%"
            if "proven_true_precision" in values
            else ""
        ),
    )
    return values
