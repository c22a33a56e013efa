"""Automatic correctors over a workspace: the reference LCM and the checked corrector.

The pure rules are in :mod:`a2lc.correction`; this module moves arrays between
them and the workspace. Every round that has a corrector saves, when it is
scored, each segment's features (:class:`RoundFeatures`: mean probabilities,
current label, size and, for the checked corrector, an encoder embedding) in
``rounds/round_NNN/lcm_features.npz``, before the round's queries are recorded,
so a recorded round always has them and a corrector can run in a later process.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from a2lc._atomic import atomic_write_arrays, atomic_write_text
from a2lc.correction.answer_model import fit_logistic
from a2lc.correction.checked import (
    CheckedConfig,
    allocate_audits,
    audit_evidence,
    design_matrix,
    group_ids,
    open_groups,
    propose,
)
from a2lc.correction.guarantees import bound_statement
from a2lc.correction.lcm import LCMConfig, fit_and_predict, select_relabels, tail_classes
from a2lc.data.sample import IGNORE_INDEX
from a2lc.data.segments import majority_labels
from a2lc.errors import WorkspaceError
from a2lc.runtime import releasing
from a2lc.workspace import Workspace
from a2lc.workspace.workspace import PoolSegments

log = logging.getLogger(__name__)

LCM_STATEMENT = (
    "no guarantee: the paper's LCM makes no estimate of its precision, and on our "
    "benchmark it often lowered label quality"
)


AUDIT_STREAM = 0xA0D1
"""Second seed word of the audit sample's random stream."""

ImageFeatures = tuple[str, np.ndarray, np.ndarray, np.ndarray | None]
"""(image id, segment ids ``(M,)``, mean probabilities ``(M, C)``, embeddings ``(M, E)`` or None)."""


def round_folder(ws: Workspace, round_index: int) -> Path:
    return ws.path / "rounds" / f"round_{round_index:03d}"


def features_path(ws: Workspace, round_index: int) -> Path:
    return round_folder(ws, round_index) / "lcm_features.npz"


def checked_plan_path(ws: Workspace, round_index: int) -> Path:
    return round_folder(ws, round_index) / "checked_plan.npz"


def checked_outcome_path(ws: Workspace, round_index: int) -> Path:
    return round_folder(ws, round_index) / "checked.json"


@dataclass(frozen=True)
class RoundFeatures:
    """Per-segment features saved when a round was scored, ``N`` rows."""

    image_ids: list[str]
    image: np.ndarray  # (N,) index into image_ids
    segment: np.ndarray  # (N,) segment id
    features: np.ndarray  # (N, C) float32 mean probabilities
    label: np.ndarray | None = None  # (N,) majority label when scored (None: older files)
    size: np.ndarray | None = None  # (N,) pixels
    embedding: np.ndarray | None = None  # (N, E) float32

    def key(self, row: int) -> tuple[str, int]:
        return self.image_ids[int(self.image[row])], int(self.segment[row])

    def pool_rows(self, ws: Workspace, segments: PoolSegments) -> np.ndarray:
        """``(N,)`` row of each feature row in ``segments`` (the pool's segment table)."""
        images = ws.dataset.positions(self.image_ids)
        return segments.rows(images[self.image], self.segment)


def save_round_features(
    path: Path, items: list[ImageFeatures], *, ws: Workspace, segments: PoolSegments
) -> RoundFeatures:
    """Write the scored features with each segment's current label and size; return them."""
    image = np.concatenate(
        [np.full(ids.size, i, dtype=np.int64) for i, (_, ids, _, _) in enumerate(items)]
    )
    segment = np.concatenate([ids for _, ids, _, _ in items]).astype(np.int64)
    image_ids = [image_id for image_id, _, _, _ in items]
    rows = segments.rows(ws.dataset.positions(image_ids)[image], segment)
    saved = RoundFeatures(
        image_ids=image_ids,
        image=image,
        segment=segment,
        features=np.concatenate([f for _, _, f, _ in items]),
        label=segments.label[rows],
        size=segments.pixel_count[rows],
        embedding=(
            np.concatenate([e for _, _, _, e in items if e is not None])
            if items and all(e is not None for _, _, _, e in items)
            else None
        ),
    )
    arrays: dict[str, Any] = {
        "image": saved.image,
        "segment": saved.segment,
        "features": saved.features,
        "image_ids": np.asarray(image_ids),
        "label": saved.label,
        "size": saved.size,
    }
    if saved.embedding is not None:
        arrays["embedding"] = saved.embedding
    atomic_write_arrays(path, **arrays)
    return saved


def load_round_features(path: Path) -> RoundFeatures:
    if not path.is_file():
        raise WorkspaceError(
            f"{path} is missing: the corrector needs the features saved when the round was scored"
        )
    with np.load(path) as archive:
        names = set(archive.files)
        return RoundFeatures(
            archive["image_ids"].tolist(),
            archive["image"].astype(np.int64),
            archive["segment"].astype(np.int64),
            archive["features"],
            archive["label"].astype(np.int64) if "label" in names else None,
            archive["size"].astype(np.int64) if "size" in names else None,
            archive["embedding"] if "embedding" in names else None,
        )


def _manual_answers(ws: Workspace, round_index: int) -> list[dict[str, Any]]:
    return [c for c in ws.corrections(round_index) if c["source"] == "manual"]


def _key_rows(ws: Workspace, segments: PoolSegments, keys: list[tuple[str, int]]) -> np.ndarray:
    """Rows in the pool's segment table of (image id, segment id) keys."""
    return segments.rows(
        ws.dataset.positions([i for i, _ in keys]),
        np.asarray([s for _, s in keys], dtype=np.int64),
    )


def feature_rows(
    ws: Workspace,
    segments: PoolSegments,
    rows: np.ndarray,
    keys: list[tuple[str, int]],
    path: Path,
) -> np.ndarray:
    """Feature rows of (image id, segment id) keys; every queried segment has one.

    ``rows``: the pool row of each feature row (:meth:`RoundFeatures.pool_rows`).
    """
    feature_row = np.full(segments.segment_id.size, -1, dtype=np.int64)
    feature_row[rows] = np.arange(rows.size)
    found: np.ndarray = feature_row[_key_rows(ws, segments, keys)]
    if (found < 0).any():
        raise WorkspaceError(
            f"{path} has no features for some queried segments: it was not written by this "
            "round's scoring"
        )
    return found


# ---------------------------------------------------------------------- reference LCM


def run_lcm(ws: Workspace, *, lcm: LCMConfig, seed: int, round_index: int) -> None:
    """Train LCM on this round's answers and record the relabelled segments (one transaction)."""
    r = round_index
    path = features_path(ws, r)
    saved = load_round_features(path)
    segments = ws.pool_segments()
    rows = saved.pool_rows(ws, segments)
    answers = _manual_answers(ws, r)
    after = np.asarray([c["after"] for c in answers], dtype=np.int64)
    labelled = [c for c in answers if c["after"] != IGNORE_INDEX]
    train_rows = feature_rows(
        ws, segments, rows, [(c["image_id"], c["segment_id"]) for c in labelled], path
    )
    train_targets = after[after != IGNORE_INDEX]
    tail = tail_classes(after, ws.num_classes, fraction=lcm.tail_fraction)
    threshold = lcm.threshold(r)
    if len(train_rows) == 0:
        ws.record_auto_corrections(r, [], metrics={"lcm_changed": 0.0})
        return
    prediction = fit_and_predict(
        saved.features[train_rows],
        train_targets,
        saved.features,
        num_classes=ws.num_classes,
        config=replace(lcm, seed=seed * 1000 + r),
    )
    chosen = select_relabels(
        segments.label[rows],
        prediction.predicted,
        prediction.confidence,
        eligible=~segments.manual[rows],
        tail=tail,
        threshold=threshold,
    )
    rejected = ws.rejected_changes()  # taken back by a revert: never again
    picked = [
        int(i)
        for i in np.flatnonzero(chosen)
        if (*saved.key(int(i)), int(prediction.predicted[i])) not in rejected
    ]
    changes = [(*saved.key(i), int(prediction.predicted[i])) for i in picked]
    values: dict[str, float] = {"lcm_changed": float(len(changes)), "lcm_threshold": threshold}
    precision = change_precision(ws, changes)
    if precision is not None:
        values["lcm_precision"] = precision
    ws.record_auto_corrections(
        r,
        changes,
        metrics=values,
        confidence=[float(prediction.confidence[i]) for i in picked],
        evidence={
            "sources": ["LCM: an MLP on this round's answered segments (the paper's)"],
            "guarantee": "none",
            "statement": LCM_STATEMENT,
            "threshold": threshold,
            "trained_on": len(train_rows),
        },
    )
    log.info(
        "round %d: LCM changed %d segments (τ = %.10g; unchecked: LCM has no precision estimate)",
        r,
        len(changes),
        threshold,
    )


def ground_truth_majority(ws: Workspace, keys: list[tuple[str, int]]) -> np.ndarray:
    """``(len(keys),)`` majority ground-truth value of each (image id, segment id)."""
    truth = np.empty(len(keys), dtype=np.int64)
    by_image: dict[str, list[int]] = {}
    for i, (image_id, _) in enumerate(keys):
        by_image.setdefault(image_id, []).append(i)
    for image_id, rows in releasing(by_image.items()):
        segment_ids = np.asarray([keys[i][1] for i in rows])
        truth[rows] = majority_labels(
            ws.read_ground_truth(image_id), ws.read_segments(image_id), segment_ids
        )
    return truth


def changes_right(
    ws: Workspace, changes: list[tuple[str, int, int]]
) -> tuple[np.ndarray, np.ndarray]:
    """``(judged, right)``, both ``(K,)`` bool for ``K`` changes ``(image id, segment id,
    class)``: whether ground truth can judge the change (its image has ground truth), and
    whether it gave the segment its majority ground-truth class (False where not judged)."""
    truth_ids = set(ws.ground_truth_ids)
    judged = np.asarray([change[0] in truth_ids for change in changes], dtype=bool)
    right = np.zeros(len(changes), dtype=bool)
    rows = np.flatnonzero(judged)
    if rows.size:
        majority = ground_truth_majority(ws, [changes[i][:2] for i in rows])
        right[rows] = majority == np.asarray([changes[i][2] for i in rows])
    return judged, right


def change_precision(ws: Workspace, changes: list[tuple[str, int, int]]) -> float | None:
    """Fraction of automatic changes that gave the segment its majority ground-truth class.

    Counted over the changes in images with ground truth; None when there are none.
    """
    judged, right = changes_right(ws, changes)
    return float(right[judged].mean()) if judged.any() else None


# ---------------------------------------------------------------------- checked corrector


def design_rows(saved: RoundFeatures, rows: np.ndarray | slice) -> np.ndarray:
    if saved.label is None or saved.size is None:
        raise WorkspaceError("features saved by an older a2lc lack labels and sizes")
    features = saved.features[rows]
    embedding = (
        saved.embedding[rows] if saved.embedding is not None else np.zeros((features.shape[0], 0))
    )
    return design_matrix(saved.label[rows], features, saved.size[rows], embedding)


def answer_training_set(ws: Workspace, round_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Every answer of rounds before ``round_index`` (255 excluded), with its round's features."""
    segments = ws.pool_segments()
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    for info in ws.rounds():
        if info.round >= round_index:
            continue
        path = features_path(ws, info.round)
        if not path.is_file():
            continue  # a round scored without a corrector: nothing to learn from there
        answers = [c for c in _manual_answers(ws, info.round) if c["after"] != IGNORE_INDEX]
        if not answers:
            continue
        saved = load_round_features(path)
        if saved.label is None:
            continue
        rows = feature_rows(
            ws,
            segments,
            saved.pool_rows(ws, segments),
            [(c["image_id"], c["segment_id"]) for c in answers],
            path,
        )
        xs.append(design_rows(saved, rows))
        ys.append(np.asarray([c["after"] for c in answers], dtype=np.int64))
    if not xs:
        return np.zeros((0, 0)), np.zeros(0, dtype=np.int64)
    return np.concatenate(xs), np.concatenate(ys)


def plan_checked(
    ws: Workspace,
    *,
    config: CheckedConfig,
    seed: int,
    round_index: int,
    ranked: list[tuple[str, int, float]],
    budget: int,
    saved: RoundFeatures,
) -> tuple[list[tuple[str, int, float]], dict[str, float]]:
    """This round's queries: the acquisition's best and a random audit of proposals.

    ``ranked``: the acquisition's queries, best first, at least ``budget`` of them
    (more are used where fewer audits are possible). Writes the plan (every
    proposal, which are audited) beside the round's features; records nothing.
    """
    r = round_index
    audit_budget = min(budget, round(config.audit_share * budget))
    acquired = ranked[: budget - audit_budget]
    x_train, y_train = answer_training_set(ws, r)
    segments = ws.pool_segments()
    rows = saved.pool_rows(ws, segments)
    num_classes = ws.num_classes
    empty = np.zeros(0, dtype=np.int64)
    proposal_rows, current, proposed, confidence, audited = empty, empty, empty, np.zeros(0), empty
    if y_train.size and np.unique(y_train).size >= 2:
        model = fit_logistic(x_train, y_train, num_classes=num_classes, l2=config.l2)
        probabilities = model.probabilities(design_rows(saved, slice(None)))
        taken = np.zeros(segments.segment_id.size, dtype=bool)
        taken[_key_rows(ws, segments, [(i, s) for i, s, _ in acquired])] = True
        eligible = ~segments.manual[rows] & ~taken[rows]
        assert saved.label is not None
        found = propose(
            probabilities,
            saved.label,
            eligible=eligible,
            min_confidence=config.min_proposal_confidence,
        )
        proposal_rows, current, proposed, confidence = found
        chosen = allocate_audits(
            group_ids(current, proposed, num_classes),
            budget=audit_budget,
            min_per_group=config.min_audits,
            rng=np.random.default_rng([seed, r, AUDIT_STREAM]),
        )
        audited = np.zeros(proposal_rows.size, dtype=np.int64)
        audited[chosen] = 1
    audits = [
        (*saved.key(int(proposal_rows[i])), float(confidence[i])) for i in np.flatnonzero(audited)
    ]
    audited_keys = {(i, s) for i, s, _ in audits}
    fill = [q for q in ranked[len(acquired) :] if (q[0], q[1]) not in audited_keys]
    queries = acquired + audits + fill[: budget - len(acquired) - len(audits)]
    if len(queries) < budget:
        raise WorkspaceError(f"only {len(queries)} segments could be queried, budget {budget}")
    atomic_write_arrays(
        checked_plan_path(ws, r),
        row=proposal_rows,
        current=current,
        proposed=proposed,
        confidence=confidence,
        audited=audited,
    )
    log.info(
        "round %d: checked corrector proposes %d changes from %d answers; auditing %d",
        r,
        proposal_rows.size,
        y_train.size,
        len(audits),
    )
    return queries, {
        "checked_training_answers": float(y_train.size),
        "checked_proposals": float(proposal_rows.size),
        "checked_audited": float(len(audits)),
    }


def apply_checked(ws: Workspace, *, config: CheckedConfig, round_index: int) -> dict[str, float]:
    """Apply the proposals of groups whose audited precision is proven; returns the metrics."""
    r = round_index
    saved = load_round_features(features_path(ws, r))
    with np.load(checked_plan_path(ws, r)) as plan:
        proposal_rows = plan["row"].astype(np.int64)
        current = plan["current"].astype(np.int64)
        proposed = plan["proposed"].astype(np.int64)
        confidence = plan["confidence"].astype(np.float64)
        audited = plan["audited"].astype(bool)
    num_classes = ws.num_classes
    answers = {
        (c["image_id"], int(c["segment_id"])): int(c["after"]) for c in _manual_answers(ws, r)
    }
    keys = [saved.key(int(i)) for i in proposal_rows]
    groups = group_ids(current, proposed, num_classes)
    audit_index = np.flatnonzero(audited)
    correct = np.asarray([answers.get(keys[i], -1) == proposed[i] for i in audit_index], dtype=bool)
    evidence = audit_evidence(groups[audit_index], correct, confidence=config.confidence)
    opened = open_groups(evidence, min_precision=config.min_precision)
    segments = ws.pool_segments()
    manual_now = segments.manual[saved.pool_rows(ws, segments)]
    open_set = set(opened.tolist())
    rejected = ws.rejected_changes()  # taken back by a revert: never again
    apply = [
        i
        for i in range(proposal_rows.size)
        if not audited[i]
        and groups[i] in open_set
        and keys[i] not in answers
        and not manual_now[proposal_rows[i]]
        and (*keys[i], int(proposed[i])) not in rejected
    ]
    changes = [(*keys[i], int(proposed[i])) for i in apply]
    is_open = np.isin(evidence.group, opened)
    values: dict[str, float] = {
        "checked_proposals": float(proposal_rows.size),
        "checked_audited": float(audit_index.size),
        "checked_audit_precision": float(correct.mean()) if correct.size else float("nan"),
        "checked_groups_audited": float(evidence.group.size),
        "checked_groups_open": float(opened.size),
        "checked_changed": float(len(changes)),
        "auto_changed": float(len(changes)),
    }
    if opened.size:
        values["checked_estimated_precision"] = float(
            evidence.correct[is_open].sum() / evidence.audited[is_open].sum()
        )
        values["checked_precision_lower"] = float(evidence.lower[is_open].min())
    precision = change_precision(ws, changes)
    if precision is not None:
        values["checked_true_precision"] = precision
    outcome = {
        "config": asdict(config),
        "groups": [
            {
                "from": ws.class_names[int(g) // num_classes],
                "to": ws.class_names[int(g) % num_classes],
                "proposals": int((groups == g).sum()),
                "audited": int(n),
                "correct": int(k),
                "estimate": float(e),
                "lower_bound": float(lo),
                "open": bool(o),
            }
            for g, n, k, e, lo, o in zip(
                evidence.group,
                evidence.audited,
                evidence.correct,
                evidence.estimate,
                evidence.lower,
                is_open,
                strict=True,
            )
        ],
        "mean_confidence": float(confidence.mean()) if confidence.size else None,
    }
    atomic_write_text(checked_outcome_path(ws, r), json.dumps(outcome, indent=1))
    by_group = {
        int(g): {"audited": int(n), "right": int(k), "lower_bound": float(lo)}
        for g, n, k, lo in zip(
            evidence.group, evidence.audited, evidence.correct, evidence.lower, strict=True
        )
    }
    ws.record_auto_corrections(
        r,
        changes,
        step="checked",
        metrics=values,
        confidence=[float(confidence[i]) for i in apply],
        evidence=[
            {
                "sources": ["answer model (logistic, every answer so far)"],
                "guarantee": "bound",
                "statement": bound_statement(config.min_precision, config.confidence),
                "group": f"{ws.class_names[int(current[i])]} → {ws.class_names[int(proposed[i])]}",
                **by_group[int(groups[i])],
            }
            for i in apply
        ],
    )
    log.info(
        "round %d: checked corrector: %d proposals, %d audited (%.0f%% right), %d of %d audited "
        "groups open, %d applied%s",
        r,
        proposal_rows.size,
        audit_index.size,
        100 * values["checked_audit_precision"] if correct.size else 0.0,
        opened.size,
        evidence.group.size,
        len(changes),
        (
            f", true precision {100 * values['checked_true_precision']:.1f}%"
            if "checked_true_precision" in values
            else ""
        ),
    )
    return values
