"""The checked corrector: proposals, audit allocation, the precision bound, and the loop."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from a2lc.correction.answer_model import fit_logistic
from a2lc.correction.checked import (
    CheckedConfig,
    allocate_audits,
    audit_evidence,
    design_matrix,
    group_ids,
    open_groups,
    precision_lower_bound,
    propose,
)


def test_lower_bound_is_clopper_pearson() -> None:
    # All of n right: the one-sided 95% bound is 0.05 ** (1 / n).
    for n in (1, 10, 29, 30, 60):
        assert precision_lower_bound(n, n) == pytest.approx(0.05 ** (1 / n), rel=1e-9)
    assert precision_lower_bound(28, 28) < 0.9 < precision_lower_bound(29, 29)
    assert precision_lower_bound(0, 10) == 0.0
    assert precision_lower_bound(0, 0) == 0.0
    assert precision_lower_bound(45, 50) < 0.9  # 90% observed is not proof of 90%


def test_groups_open_only_with_proof() -> None:
    groups = np.array([5] * 30 + [7] * 30 + [9] * 10)
    correct = np.array([True] * 30 + [True] * 28 + [False] * 2 + [True] * 10)
    evidence = audit_evidence(groups, correct)
    assert evidence.group.tolist() == [5, 7, 9]
    assert evidence.audited.tolist() == [30, 30, 10]
    assert evidence.correct.tolist() == [30, 28, 10]
    assert open_groups(evidence, min_precision=0.9).tolist() == [5]


def test_audits_are_uniform_within_the_largest_groups() -> None:
    groups = np.array([1] * 500 + [2] * 200 + [3] * 40 + [4] * 5)
    picks = [
        allocate_audits(groups, budget=90, min_per_group=30, rng=np.random.default_rng(s))
        for s in range(200)
    ]
    for picked in picks[:3]:
        assert picked.size == 90
        assert np.unique(picked).size == 90
        assert set(np.unique(groups[picked]).tolist()) == {1, 2, 3}
        assert (np.bincount(groups[picked], minlength=5)[1:4] == 30).all()
    # Uniform within a group: every member of group 1 is drawn about equally often.
    hits = np.bincount(np.concatenate(picks), minlength=groups.size)[:500]
    assert hits.mean() == pytest.approx(200 * 30 / 500)
    assert hits.std() < 3 * np.sqrt(200 * 30 / 500)
    # A small group is exhausted and the rest goes to the others.
    small = allocate_audits(
        np.array([1] * 100 + [2] * 10), budget=60, min_per_group=30, rng=np.random.default_rng(0)
    )
    assert np.bincount(np.array([1] * 100 + [2] * 10)[small]).tolist() == [0, 50, 10]
    assert (
        allocate_audits(groups, budget=0, min_per_group=30, rng=np.random.default_rng(0)).size == 0
    )


def test_label_aware_model_proposes_where_label_and_look_disagree() -> None:
    # Class 1 segments that look like class 0 are truly 0 (a systematic error under label 1).
    rng = np.random.default_rng(0)
    n = 600
    truth = rng.integers(0, 3, n)
    looks = np.eye(3)[truth] * 0.8 + 0.1
    label = truth.copy()
    flipped = (truth == 0) & (rng.random(n) < 0.4)
    label[flipped] = 1
    x = design_matrix(label, looks, rng.integers(100, 1000, n), np.zeros((n, 0)))
    assert x.shape == (n, 2 * 3 + 3)
    model = fit_logistic(x[:400], truth[:400], num_classes=3)
    probabilities = model.probabilities(x[400:])
    found = propose(probabilities, label[400:], eligible=np.ones(200, bool))
    rows = found.rows
    assert set(rows.tolist()) == set(np.flatnonzero(flipped[400:]).tolist())
    assert (found.proposed == 0).all()
    assert (found.current == 1).all()
    assert group_ids(found.current, found.proposed, 3).tolist() == [3] * rows.size
    # Ineligible segments and void labels are never proposed.
    none = propose(probabilities, label[400:], eligible=np.zeros(200, bool))
    assert none.rows.size == 0


def test_fit_is_deterministic() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(100, 4))
    y = (x[:, 0] > 0).astype(int)
    a = fit_logistic(x, y, num_classes=2)
    b = fit_logistic(x, y, num_classes=2)
    np.testing.assert_array_equal(a.probabilities(x), b.probabilities(x))


def test_checked_strategy_in_the_loop(tmp_path: Path) -> None:
    from a2lc.rounds import RunConfig, run_rounds
    from tests.test_rounds import TINY_TRAIN, make_workspace

    checked = CheckedConfig(audit_share=0.5, min_audits=3, min_precision=0.0)
    config = RunConfig(
        strategy="alc+checked",
        rounds=3,
        budget=20,
        eval_split="val",
        train=TINY_TRAIN,
        checked=checked,
    )
    with make_workspace(tmp_path) as ws:
        result = run_rounds(ws, config, show_progress=False)
        assert result.finished
        metrics = result.metrics
        for r in (1, 2, 3):
            assert len(ws.queries(r)) == 20  # audits are part of the budget, never extra
            assert "checked_proposals" in metrics[r]
            assert ws.step_done(r, "checked")
        assert metrics[1]["checked_proposals"] == 0  # no answers yet to learn from
        assert metrics[2]["checked_training_answers"] > 0
        first_manual: dict[tuple[str, int], int] = {}
        for c in ws.corrections():
            if c["source"] == "manual":
                first_manual.setdefault((c["image_id"], c["segment_id"]), c["round"])
        auto = [c for c in ws.corrections() if c["source"] == "auto"]
        # Never on a segment answered in that round or before (later queries may revisit it).
        for c in auto:
            assert first_manual.get((c["image_id"], c["segment_id"]), 99) > c["round"]
        for r in (2, 3):
            outcome = json.loads((ws.path / f"rounds/round_{r:03d}/checked.json").read_text())
            opened = {(g["from"], g["to"]) for g in outcome["groups"] if g["open"]}
            for c in auto:
                if c["round"] == r:
                    assert (ws.class_names[c["before"]], ws.class_names[c["after"]]) in opened
            assert metrics[r]["checked_changed"] == sum(1 for c in auto if c["round"] == r)


def test_checked_round_without_an_open_group_changes_nothing(tmp_path: Path) -> None:
    from a2lc.rounds import RunConfig, run_rounds
    from tests.test_rounds import TINY_TRAIN, make_workspace

    config = RunConfig(
        strategy="alc+checked",
        rounds=2,
        budget=20,
        eval_split="val",
        train=TINY_TRAIN,
        checked=CheckedConfig(min_precision=1.0),  # a bound of 1 is never reached
    )
    with make_workspace(tmp_path) as ws:
        result = run_rounds(ws, config, show_progress=False)
        assert not [c for c in ws.corrections() if c["source"] == "auto"]
        assert result.metrics[2]["checked_changed"] == 0
