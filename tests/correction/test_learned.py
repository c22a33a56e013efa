"""The learned acquisition and the proven corrector: rules, statistics and the loop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from a2lc.correction.checked import precision_lower_bound
from a2lc.correction.learned import (
    Calibration,
    Evidence,
    LearnedConfig,
    auroc,
    expected_gain,
    match_rate,
    proven_threshold,
    ranked_proposals,
    recalibrate,
    size_aware_rank,
    uniform_sample,
    wrong_probability,
)

TESTS = {"min_precision": 0.9, "confidence": 0.95, "first_test": 30, "growth": 1.5}


def test_wrong_probability_and_expected_gain() -> None:
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.5, 0.5, 0.0]])
    labels = np.array([0, 0, 255])
    np.testing.assert_allclose(wrong_probability(p, labels), [0.3, 0.9, 1.0])
    sizes = np.array([10, 10, 4])
    u = np.array([100.0, 10.0, 1000.0])
    gain = expected_gain(p, labels, sizes, u)
    np.testing.assert_allclose(
        gain,
        [10 * (0.2 / 10 + 0.1 / 1000), 10 * (0.1 / 10 + 0.8 / 1000), 4 * (0.5 / 100 + 0.5 / 10)],
    )
    # Twice the size, twice the gain; all mass on the label, no gain.
    assert expected_gain(p[:1], labels[:1], sizes[:1] * 2, u)[0] == pytest.approx(2 * gain[0])
    assert expected_gain(np.array([[1.0, 0, 0]]), np.array([0]), np.array([5]), u)[0] == 0.0


def test_the_pool_rate_puts_p_wrong_back_on_scale() -> None:
    # The model says 60% of the pool is wrong; a uniform sample found 9 of 98 wrong.
    rng = np.random.default_rng(0)
    p_wrong = np.clip(rng.normal(0.6, 0.2, 1000), 0.01, 0.99)
    found = np.zeros(98, bool)
    found[:9] = True
    calibration = match_rate(p_wrong, found)
    shifted = 1 / (1 + np.exp(-(np.log(p_wrong / (1 - p_wrong)) + calibration.shift)))
    assert shifted.mean() == pytest.approx(10 / 100, abs=1e-6)
    assert calibration.scale == 1.0
    assert calibration.samples == 98
    # The order is kept; without samples nothing changes.
    assert (np.argsort(shifted, kind="stable") == np.argsort(p_wrong, kind="stable")).all()
    assert match_rate(p_wrong, np.zeros(0, bool)) == Calibration()


def test_recalibrate_keeps_the_other_classes_shares() -> None:
    p = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6], [0.5, 0.25, 0.25]])
    labels = np.array([0, 2, 255])
    out = recalibrate(p, labels, Calibration(1.0, np.log(1 / 3) - np.log(0.4 / 0.6)))
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    assert out[0, 0] == pytest.approx(0.75)  # P(wrong) 0.4 → 0.25
    assert out[0, 1] / out[0, 2] == pytest.approx(3.0)
    np.testing.assert_allclose(out[2], p[2])  # no label: unchanged
    np.testing.assert_allclose(recalibrate(p, labels, Calibration()), p)


def test_proposals_are_ranked_by_confidence_and_respect_eligibility() -> None:
    p = np.array([[0.1, 0.9], [0.4, 0.6], [0.05, 0.95], [0.9, 0.1], [0.2, 0.8]])
    labels = np.array([0, 0, 0, 0, 255])
    eligible = np.array([True, True, False, True, True])
    found = ranked_proposals(p, labels, eligible=eligible)
    assert found.rows.tolist() == [0, 1]  # 2: not eligible, 3: agrees, 4: no label
    assert found.proposed.tolist() == [1, 1]
    np.testing.assert_allclose(found.confidence, [0.9, 0.6])


def test_uniform_sample_is_seeded_and_bounded() -> None:
    a = uniform_sample(np.arange(100), 10, np.random.default_rng(1))
    b = uniform_sample(np.arange(100), 10, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    assert np.unique(a).size == 10
    assert uniform_sample(np.arange(3), 10, np.random.default_rng(0)).tolist() == [0, 1, 2]
    assert uniform_sample(np.arange(3), 0, np.random.default_rng(0)).size == 0


def _evidence(conf: list[float], correct: list[bool], floor: float = 0.0) -> Evidence:
    return Evidence(np.asarray(conf), np.asarray(correct), np.full(len(conf), floor))


def test_a_precise_top_slice_is_proven_and_a_worse_tail_is_not() -> None:
    # 100 sampled answers: the 60 most confident are all right, the rest half right.
    conf = np.linspace(0.99, 0.5, 100).tolist()
    correct = [True] * 60 + [i % 2 == 0 for i in range(40)]
    chosen = proven_threshold(_evidence(conf, correct), min_confidence=0.0, **TESTS)
    # Tests at 30, 45 and 67 sampled answers: the third (64/67 right) fails, so the
    # slice of the 45 most confident is accepted.
    assert chosen.threshold == pytest.approx(conf[44])
    assert (chosen.sampled, chosen.correct, chosen.tests) == (45, 45, 3)
    assert chosen.lower >= 0.9
    assert chosen.lower == pytest.approx(precision_lower_bound(chosen.correct, chosen.sampled))


def test_nothing_is_proven_without_enough_evidence_or_with_an_early_error() -> None:
    few = proven_threshold(_evidence([0.9] * 20, [True] * 20), min_confidence=0.0, **TESTS)
    assert not np.isfinite(few.threshold)
    assert few.tests == 0
    # One error among the 30 most confident: 29/30 bounds at 0.85, the sequence stops.
    conf = np.linspace(0.99, 0.6, 200).tolist()
    correct = [True] * 200
    correct[5] = False
    early = proven_threshold(_evidence(conf, correct), min_confidence=0.0, **TESTS)
    assert not np.isfinite(early.threshold)
    assert early.tests == 1


def test_evidence_from_a_round_whose_region_did_not_reach_the_slice_is_left_out() -> None:
    # Old evidence sampled only above 0.95: it says nothing about a slice down to 0.8.
    old = _evidence([0.99] * 40, [True] * 40, floor=0.95)
    new = _evidence(np.linspace(0.94, 0.8, 10).tolist(), [True] * 10, floor=0.8)
    pooled = Evidence.concatenate([old, new])
    chosen = proven_threshold(pooled, min_confidence=0.8, **TESTS)
    assert chosen.threshold == pytest.approx(0.99)  # the tests below 0.95 lack evidence
    assert chosen.sampled == 40


def test_fixed_sequence_keeps_the_error_rate() -> None:
    # Proposals whose true precision is 0.85 everywhere: accepting any slice is an error;
    # it may happen at most about 5% of the time.
    rng = np.random.default_rng(0)
    errors = 0
    trials = 400
    for _ in range(trials):
        conf = np.sort(rng.random(150))[::-1]
        correct = rng.random(150) < 0.85
        chosen = proven_threshold(
            _evidence(conf.tolist(), correct.tolist()), min_confidence=0.0, **TESTS
        )
        errors += bool(np.isfinite(chosen.threshold))
    assert errors / trials <= 0.07


def test_auroc() -> None:
    assert auroc(np.array([0.1, 0.2, 0.3, 0.4]), np.array([0, 0, 1, 1], dtype=bool)) == 1.0
    assert auroc(np.array([0.4, 0.3, 0.2, 0.1]), np.array([0, 0, 1, 1], dtype=bool)) == 0.0
    assert auroc(np.array([1.0, 1.0]), np.array([0, 1], dtype=bool)) == 0.5
    assert np.isnan(auroc(np.array([1.0, 2.0]), np.array([1, 1], dtype=bool)))


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="explore_share"):
        LearnedConfig(explore_share=1.5)
    with pytest.raises(ValueError, match="leave part of the budget"):
        LearnedConfig(explore_share=0.5, audit_share=0.5)
    with pytest.raises(ValueError, match="min_precision"):
        LearnedConfig(min_precision=1.0)


def test_learned_strategy_in_the_loop(tmp_path: Path) -> None:
    from a2lc.rounds import RunConfig, run_rounds
    from tests.test_rounds import TINY_TRAIN, make_workspace

    learned = LearnedConfig(explore_share=0.2, audit_share=0.2, min_answers=5, first_test=3)
    config = RunConfig(
        strategy="learned+proven",
        rounds=3,
        budget=20,
        eval_split="val",
        train=TINY_TRAIN,
        learned=learned,
    )
    with make_workspace(tmp_path) as ws:
        result = run_rounds(ws, config, show_progress=False)
        assert result.finished
        metrics = result.metrics
        for r in (1, 2, 3):
            queries = ws.queries(r)
            assert len(queries) == 20  # exploration and audits are part of the budget
            assert len({(q.image_id, q.segment_id) for q in queries}) == 20
            assert ws.step_done(r, "proven")
            assert metrics[r]["learned_explored"] == 4
            assert "learned_wrong_auroc" in metrics[r]
        assert metrics[1]["learned_model"] == 0  # no answers yet: the prior ranks
        assert metrics[2]["learned_model"] == 1
        assert metrics[2]["learned_training_answers"] >= 5
        first_manual: dict[tuple[str, int], int] = {}
        for c in ws.corrections():
            if c["source"] == "manual":
                first_manual.setdefault((c["image_id"], c["segment_id"]), c["round"])
        auto = [c for c in ws.corrections() if c["source"] == "auto"]
        for c in auto:
            assert first_manual.get((c["image_id"], c["segment_id"]), 99) > c["round"]
        for r in (2, 3):
            outcome = json.loads((ws.path / f"rounds/round_{r:03d}/proven.json").read_text())
            assert outcome["changed"] == metrics[r]["proven_changed"]
            assert metrics[r]["proven_changed"] == sum(1 for c in auto if c["round"] == r)
            if outcome["changed"]:
                assert outcome["slice"]["lower_bound"] >= 0.9


def test_the_validated_acquisition_runs_with_the_papers_lcm(tmp_path: Path) -> None:
    """``validated+lcm``: the corrector protocol's LCM baseline (issue #35)."""
    from a2lc.correction.lcm import LCMConfig
    from a2lc.rounds import RunConfig, run_rounds
    from tests.test_rounds import TINY_TRAIN, make_workspace

    config = RunConfig(
        strategy="validated+lcm",
        rounds=2,
        budget=20,
        eval_split="val",
        train=TINY_TRAIN,
        learned=LearnedConfig(min_answers=5),
        lcm=LCMConfig(epochs=5, thresholds=(0.0,)),
    )
    with make_workspace(tmp_path) as ws:
        result = run_rounds(ws, config, show_progress=False)
        assert result.finished
        for r in (1, 2):
            assert ws.step_done(r, "lcm")
            assert "lcm_changed" in result.metrics[r]
            assert result.metrics[r]["learned_explored"] == 1
        assert result.metrics[2]["learned_model"] == 1


def test_learned_strategy_is_resumable_and_deterministic(tmp_path: Path) -> None:
    from a2lc.rounds import RunConfig, run_rounds
    from tests.test_rounds import TINY_TRAIN, make_workspace

    config = RunConfig(
        strategy="learned+proven",
        rounds=2,
        budget=20,
        train=TINY_TRAIN,
        learned=LearnedConfig(min_answers=5, first_test=3),
    )
    outcomes = []
    for name in ("a", "b"):
        with make_workspace(tmp_path / name) as ws:
            if name == "b":
                run_rounds(ws, RunConfig(**{**config.__dict__, "rounds": 1}), show_progress=False)
            run_rounds(ws, config, show_progress=False)
            outcomes.append(
                (
                    [(q.image_id, q.segment_id) for r in (1, 2) for q in ws.queries(r)],
                    [(c["image_id"], c["segment_id"], c["after"]) for c in ws.corrections()],
                )
            )
    assert outcomes[0] == outcomes[1]


def test_learned_acquisition_refuses_another_corrector() -> None:
    from a2lc.errors import UnknownNameError
    from a2lc.strategies import resolve_strategy

    with pytest.raises(UnknownNameError, match="'none', 'proven' or 'lcm'"):
        resolve_strategy("learned+checked")
    assert resolve_strategy("validated+lcm").lcm  # the corrector protocol's paper baseline
    assert resolve_strategy("learned+proven").learns
    assert resolve_strategy("eg+proven").learns
    assert not resolve_strategy("eg+checked").learns


def test_the_cli_sets_the_precision_target(tmp_path: Path) -> None:
    import argparse

    from a2lc.cli import _parser, run_config_from_args
    from a2lc.errors import A2LCError

    parser = _parser()
    args = parser.parse_args(["run", "-w", str(tmp_path), "--min-precision", "0.95"])
    config = run_config_from_args(args)
    assert config.learned.min_precision == 0.95
    assert config.learned.explore_share == 0.05
    bad = parser.parse_args(["run", "-w", str(tmp_path), "--min-precision", "1.5"])
    assert isinstance(bad, argparse.Namespace)
    with pytest.raises(A2LCError, match="min_precision must be in"):
        run_config_from_args(bad)


def test_blended_rank_and_the_hedged_strategy(tmp_path: Path) -> None:
    from a2lc.rounds import RunConfig, run_rounds
    from a2lc.steps.learning import blended_rank
    from tests.test_rounds import TINY_TRAIN, make_workspace

    ranks = blended_rank(np.array([5.0, 1.0, 3.0, 9.0]), np.array([True, True, True, False]))
    np.testing.assert_allclose(ranks, [1.0, 0.0, 0.5, 0.0])
    config = RunConfig(
        strategy="hedged+proven",
        rounds=2,
        budget=20,
        train=TINY_TRAIN,
        learned=LearnedConfig(min_answers=5),
    )
    with make_workspace(tmp_path) as ws:
        metrics = run_rounds(ws, config, show_progress=False).metrics
        assert "learned_blend_weight" not in metrics[1]  # no answers: the prior alone
        weight = metrics[2]["learned_blend_weight"]
        assert 0.0 < weight < 1.0  # 20 answers are fewer than 10 per feature
        assert len(ws.queries(2)) == 20


def _handover_answers(rng: np.random.Generator, *, learnable: bool) -> tuple[np.ndarray, ...]:
    """200 answered segments of 3 classes; wrong labels are seen by x or by the prior."""
    count = 200
    labels = rng.integers(0, 3, count)
    wrong = rng.random(count) < 0.4
    answers = np.where(wrong, (labels + 1 + rng.integers(0, 2, count)) % 3, labels)
    signal = np.eye(3)[answers] * 3.0
    x = np.concatenate([np.eye(3)[labels], rng.normal(size=(count, 3))], axis=1)
    prior = np.full((count, 3), 1 / 3)
    if learnable:
        x[:, 3:] += signal  # the evidence shows the true class; the prior is blind
        prior[np.arange(count), labels] = rng.uniform(0.4, 0.9, count)
    else:  # the prior sees the errors; the evidence is noise
        prior[np.arange(count), labels] = np.where(wrong, 0.2, 0.9) + rng.uniform(0, 0.05, count)
    prior /= prior.sum(axis=1, keepdims=True)
    return x, answers, labels, prior


def test_the_handover_trusts_the_ranking_that_separates_the_answers() -> None:
    from a2lc.correction.learned import handover_weight

    options: dict[str, Any] = {"num_classes": 3, "l2": 1e-2, "folds": 5}
    for learnable in (True, False):
        x, answers, labels, prior = _handover_answers(np.random.default_rng(3), learnable=learnable)
        trust = handover_weight(x, answers, labels, prior, rng=np.random.default_rng(0), **options)
        if learnable:
            assert trust.weight >= 0.8
            assert trust.learned_auroc > trust.prior_auroc
        else:
            assert trust.weight <= 0.2
            assert trust.prior_auroc > trust.learned_auroc
    # No wrong label among the answers: nothing to judge by, the prior ranks.
    none_wrong = handover_weight(x, labels, labels, prior, rng=np.random.default_rng(0), **options)
    assert none_wrong.weight == 0.0
    with pytest.raises(ValueError, match="same 200 answers"):
        handover_weight(x, answers, labels[:-1], prior, rng=np.random.default_rng(0), **options)


def test_mixed_rank() -> None:
    from a2lc.correction.learned import mixed_rank

    np.testing.assert_allclose(mixed_rank(np.array([3.0, 1.0, 2.0]), np.zeros(3), 1.0), [1, 0, 0.5])
    np.testing.assert_allclose(
        mixed_rank(np.array([3.0, 1.0, 2.0]), np.array([0.0, 2.0, 1.0]), 0.5), [0.5, 0.5, 0.5]
    )


def test_the_validated_strategy_starts_as_alc_and_hands_over(tmp_path: Path) -> None:
    from a2lc.rounds import RunConfig, run_rounds
    from tests.test_rounds import TINY_TRAIN, make_workspace

    common = {"rounds": 2, "budget": 20, "train": TINY_TRAIN}
    learned = LearnedConfig(min_answers=5, explore_share=0.1)
    with make_workspace(tmp_path / "alc") as ws:
        run_rounds(ws, RunConfig(strategy="alc", **common), show_progress=False)  # type: ignore[arg-type]
        alc_first = [(q.image_id, q.segment_id) for q in ws.queries(1)]
    with make_workspace(tmp_path / "validated") as ws:
        config = RunConfig(strategy="validated+proven", learned=learned, **common)  # type: ignore[arg-type]
        metrics = run_rounds(ws, config, show_progress=False).metrics
        first = [(q.image_id, q.segment_id) for q in ws.queries(1)]
        # Round 1 has no answers: ALC's best, less the exploration share (2 of 20).
        assert first[:18] == [key for key in alc_first if key in set(first)][:18]
        assert len(set(first[:18]) & set(alc_first)) == 18
        assert "learned_handover_weight" not in metrics[1]
        assert 0.0 <= metrics[2]["learned_handover_weight"] <= 1.0
        assert len(ws.queries(2)) == 20
        assert ws.step_done(2, "proven")


def test_size_aware_rank_puts_small_doubted_segments_first() -> None:
    p_wrong = np.asarray([0.4, 0.4, 0.01, 0.01, 0.9])
    sizes = np.asarray([2, 500, 2, 500, 5000])
    ranked = size_aware_rank(p_wrong, sizes)
    assert ranked.shape == (5,)
    assert np.argmax(ranked) == 0  # small and doubted
    assert ranked[0] > ranked[1]  # same doubt: smaller first
    assert ranked[2] > ranked[3]
    assert ranked[0] > ranked[2]  # same size: more doubted first
    assert ranked.min() >= 0.0
    assert ranked.max() <= 1.0
    # weight 1 is the model alone, weight 0 size alone
    assert np.argmax(size_aware_rank(p_wrong, sizes, weight=1.0)) == 4
    assert size_aware_rank(p_wrong, sizes, weight=0.0)[4] == 0.0
    with pytest.raises(ValueError, match="weight must be in"):
        size_aware_rank(p_wrong, sizes, weight=1.5)
    with pytest.raises(ValueError, match="must be equal"):
        size_aware_rank(p_wrong, sizes[:3])
