"""The proven corrector under the fdr guarantee, in the loop (issue #35).

The acquisition leaves the corrector's region to it, so what people answer inside
the region is the uniform audit and exploration only; every voice scores from
answers that are not the calibration's; the changes carry the guarantee's
statement and evidence; and the run survives SIGKILL at the corrector's steps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from a2lc.cli import main
from a2lc.correction.learned import LearnedConfig
from a2lc.rounds import RunConfig, run_rounds
from a2lc.steps.correctors import features_path, load_round_features
from a2lc.steps.learning import load_plan
from a2lc.steps.voiced import _earlier_evidence, voices_path
from a2lc.workspace import Workspace
from tests.test_default_strategy import check_equal, final_state
from tests.test_rounds import config, make_workspace, run_cli

VOICES = ("answer", "round", "neighbours", "image")
LEARNED = LearnedConfig(
    min_answers=5, audit_share=0.3, min_precision=0.01, guarantee="fdr", voices=VOICES
)
"""An answer model from round 2 on the tiny pool; a target so low that changes happen (its
proposals are rarely right)."""
ROUNDS = 3


def fdr_config() -> RunConfig:
    return config(strategy="validated+proven", rounds=ROUNDS, oracle="gt", learned=LEARNED)


DRIVER = """
import sys
from tests.test_fdr_corrector import fdr_config
from a2lc.rounds import run_rounds
from a2lc.workspace import Workspace
path, _oracle = sys.argv[1:]
with Workspace.open(path) as ws:
    run_rounds(ws, fdr_config(), show_progress=False)
"""

KILL_POINTS = (
    "SELECT 1 FROM steps WHERE round = 1 AND name = 'eval'",  # → plan round 2 (region)
    "SELECT 1 FROM corrections WHERE round = 2 AND source = 'manual'",  # → voices, selection
    "SELECT 1 FROM steps WHERE round = 2 AND name = 'proven'",  # → close, train θ_2
    "SELECT 1 FROM corrections WHERE round = 3 AND source = 'manual'",  # → combination
)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("fdr")
    with make_workspace(root) as ws:
        assert run_rounds(ws, fdr_config(), show_progress=False).finished
    return root / "ws", final_state(root / "ws")


def test_the_region_is_left_to_the_corrector_and_audited_uniformly(
    reference: tuple[Path, dict[str, Any]],
) -> None:
    path, _ = reference
    with Workspace.open(path, read_only=True) as ws:
        planned = 0
        for info in ws.rounds():
            plan = load_plan(ws, info.round)
            assert plan is not None
            if plan["region"].size == 0:
                continue
            planned += 1
            saved = load_round_features(features_path(ws, info.round))
            region = {saved.key(int(i)) for i in plan["region"]}
            sampled = {saved.key(int(i)) for i in np.union1d(plan["audits"], plan["explored"])}
            asked = {(q.image_id, q.segment_id) for q in ws.queries(info.round)}
            # Inside the region people answer only the uniform samples.
            assert asked & region <= sampled
            assert plan["region_probabilities"].shape == (plan["region"].size, ws.num_classes)
            with np.load(voices_path(ws, info.round)) as kept:
                assert kept["voices"].shape[1] == len(VOICES)
                assert kept["names"].tolist() == list(VOICES)
        assert planned >= 2


def test_changes_carry_the_fdr_statement_and_never_touch_answers(
    reference: tuple[Path, dict[str, Any]],
) -> None:
    path, _ = reference
    with Workspace.open(path, read_only=True) as ws:
        changes = ws.automatic_changes()
        assert changes, "the fdr corrector changed nothing on the tiny pool"
        answered = {
            (c["round"], c["image_id"], c["segment_id"])
            for c in ws.corrections()
            if c["source"] == "manual"
        }
        for change in changes:
            # never a segment a person had answered by then (later rounds may ask about it)
            assert not any(
                (r, change.image_id, change.segment_id) in answered
                for r in range(1, change.round + 1)
            )
            assert change.evidence["guarantee"] == "fdr"
            assert (
                "on average at most 99% of the applied changes are wrong"
                in (change.evidence["statement"])
            )
            assert change.evidence["sources"] == [f"{v} voice" for v in VOICES]
            assert change.evidence["audited"] > 0
        outcome = json.loads((path / "rounds" / "round_002" / "proven.json").read_text())
        assert outcome["config"]["guarantee"] == "fdr"
        metrics = ws.metrics()
        assert metrics[2]["proven_round_sampled"] > 0


def test_killed_at_the_corrector_steps_ends_as_an_uninterrupted_run(
    tmp_path: Path, reference: tuple[Path, dict[str, Any]]
) -> None:
    _, want = reference
    with make_workspace(tmp_path):
        pass
    path = tmp_path / "ws"
    for sql in KILL_POINTS:
        run_cli([str(path), "gt"], kill_when=(path / "a2lc.sqlite", sql), driver=DRIVER)
    assert run_cli([str(path), "gt"], driver=DRIVER) == 0
    check_equal(final_state(path), want)


def test_the_cli_takes_the_guarantee_and_the_voices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with make_workspace(tmp_path):
        pass
    code = main(
        [
            "run",
            "-w",
            str(tmp_path / "ws"),
            "--rounds",
            "0",
            "--guarantee",
            "fdr",
            "--voices",
            "answer,echo",
        ]
    )
    assert code != 0
    err = capsys.readouterr().err
    assert "unknown voice 'echo'; valid names: answer, image, neighbours, round" in err
    code = main(["run", "-w", str(tmp_path / "ws"), "--rounds", "0", "--voices", "answer,round"])
    assert code != 0
    assert "under the fdr guarantee only" in capsys.readouterr().err


def test_reviews_between_rounds_feed_the_next_round(tmp_path: Path) -> None:
    """People review round 2's changes in the app between runs; the run goes on, its
    answer model learns from the verdicts, and no corrector touches a reviewed segment."""
    from dataclasses import replace

    from a2lc.steps.learning import answer_sets
    from a2lc.workspace.review import ReviewDesk

    with make_workspace(tmp_path) as ws:
        assert run_rounds(ws, replace(fdr_config(), rounds=2), show_progress=False).finished
        desk = ReviewDesk(ws)
        answers_before = answer_sets(ws, 3).y.size
        reviewed = []
        for verdict in ("accept", "revert", "revert"):
            lease = desk.lease("rev")
            assert lease is not None, "round 2 made too few changes to review"
            desk.verdict("rev", lease.change.id, verdict)
            reviewed.append(lease.change)
        # The verdicts are answers of round 2: round 3's answer model learns from them,
        # and its combination of the voices too (reverted: a wrong change).
        assert answer_sets(ws, 3).y.size == answers_before + 3
        with np.load(voices_path(ws, 2)) as kept:
            audited = kept["right"].size
        training, right = _earlier_evidence(ws, 3, VOICES)
        assert training.shape == (audited + 3, len(VOICES))
        assert sorted(right[audited:].tolist()) == [False, False, True]  # 1 accepted
        assert run_rounds(ws, fdr_config(), show_progress=False).finished
        later = ws.automatic_changes(round_index=3)
        assert not {(c.image_id, c.segment_id) for c in later} & {
            (c.image_id, c.segment_id) for c in reviewed
        }
        for change in reviewed:
            row = ws.connection.execute(
                "SELECT origin FROM segments WHERE image_id = ? AND segment_id = ?",
                (change.image_id, change.segment_id),
            ).fetchone()
            assert row[0] == "manual"


def test_a_leftover_region_is_drawn_from_what_the_acquisition_left(tmp_path: Path) -> None:
    """``fdr_region="leftover"``: the acquisition chooses first, as without a corrector;
    the region is the most confident of the proposals it and the exploration left, its
    audit a uniform sample of it, and the rest the corrector's candidates."""
    from dataclasses import replace

    learned = replace(LEARNED, fdr_region="leftover", region_per_audit=2)
    run = config(strategy="validated+proven", rounds=ROUNDS, oracle="gt", learned=learned)
    with make_workspace(tmp_path) as ws:
        assert run_rounds(ws, run, show_progress=False).finished
        planned = 0
        for info in ws.rounds():
            plan = load_plan(ws, info.round)
            assert plan is not None
            asked = [(q.image_id, q.segment_id) for q in ws.queries(info.round)]
            assert len(asked) == len(set(asked)) == run.budget
            if plan["region"].size == 0:
                continue
            planned += 1
            saved = load_round_features(features_path(ws, info.round))
            region = {saved.key(int(i)) for i in plan["region"]}
            audits = {saved.key(int(i)) for i in plan["audits"]}
            explored = {saved.key(int(i)) for i in plan["explored"]}
            assert audits <= region
            assert not explored & region
            # Inside the region people answer the audit, and nothing the acquisition chose.
            assert set(asked) & region == audits
            assert len(audits) == round(learned.audit_share * run.budget)
            assert plan["region"].size <= learned.region_per_audit * len(audits)
            # The region holds the most confident of the proposals left.
            assert np.all(np.diff(plan["region_confidence"]) <= 0)
        assert planned >= 2
        changes = ws.automatic_changes()
        assert changes, "the fdr corrector changed nothing on the tiny pool"
        assert all(c.evidence["guarantee"] == "fdr" for c in changes)


def test_a_leftover_region_needs_the_fdr_guarantee() -> None:
    with pytest.raises(ValueError, match="under the fdr guarantee only"):
        LearnedConfig(fdr_region="leftover")
    with pytest.raises(ValueError, match="fdr_region must be one of"):
        LearnedConfig(guarantee="fdr", fdr_region="everywhere")  # type: ignore[arg-type]


def test_too_few_proposals_left_for_an_audit_still_fill_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With fewer proposals left than the audit asks for, the whole region is audited
    and the acquisition's next picks fill the budget, never twice the same segment."""
    from dataclasses import replace

    import a2lc.steps.learning as learning
    from a2lc.correction.learned import Proposals, ranked_proposals

    def few(*args: Any, **kwargs: Any) -> Proposals:
        found = ranked_proposals(*args, **kwargs)
        return Proposals(found.rows[:2], found.proposed[:2], found.confidence[:2])

    monkeypatch.setattr(learning, "ranked_proposals", few)
    learned = replace(LEARNED, fdr_region="leftover")
    run = config(strategy="validated+proven", rounds=ROUNDS, oracle="gt", learned=learned)
    with make_workspace(tmp_path) as ws:
        assert run_rounds(ws, run, show_progress=False).finished
        for info in ws.rounds():
            asked = [(q.image_id, q.segment_id) for q in ws.queries(info.round)]
            assert len(asked) == len(set(asked)) == run.budget
            plan = load_plan(ws, info.round)
            assert plan is not None
            if info.round >= 2:
                assert plan["region"].size == plan["audits"].size == 2
        assert not ws.automatic_changes()  # the region was all audited: nothing to judge


def test_a_void_answer_in_the_audit_counts_as_a_wrong_proposal() -> None:
    """A person answering void (the segment is mostly void) says the proposed class is
    wrong, as ground truth judges a change there; the calibration keeps it as wrong
    instead of dropping it, which would make the audit look more precise."""
    from a2lc.steps.voiced import calibration_outcomes

    proposed = np.array([3, 3, 1, 2, 0])
    calibration, right = calibration_outcomes(
        proposed,
        sampled=np.array([True, True, True, False, True]),
        answered=np.array([True, True, True, True, False]),
        after=np.array([3, 255, 2, 2, 255]),
    )
    assert calibration.tolist() == [0, 1, 2]  # sampled and answered; a void answer too
    assert right.tolist() == [True, False, False]
