"""The generalisation protocol's pieces: one video sequence as a pool, and the selection rule."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from a2lc.bench.harness import BenchConfig, pool_dataset
from a2lc.errors import DataError

PROTOCOL = Path(__file__).resolve().parents[1] / "benchmarks" / "protocol.py"


def _protocol() -> ModuleType:
    spec = importlib.util.spec_from_file_location("protocol", PROTOCOL)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pool_prefix_keeps_one_sequence(tmp_path: Path) -> None:
    from a2lc.data.synthetic import make_synthetic_dataset

    data = make_synthetic_dataset(tmp_path / "data", num_images=4, height=16, width=16, cell=8)
    every = pool_dataset(BenchConfig(data=data.root, out=tmp_path / "out"))
    first = every.samples[0].id
    one = pool_dataset(BenchConfig(data=data.root, out=tmp_path / "out", pool_prefix=first))
    assert [s.id for s in one.samples] == [first]
    assert one.classes == every.classes
    with pytest.raises(DataError, match="no image of split 'train' has an id starting with 'zz'"):
        pool_dataset(BenchConfig(data=data.root, out=tmp_path / "out", pool_prefix="zz"))


def _run(
    segments: str, pool: str, regime: str, strategy: str, seed: int, curve: list[float]
) -> dict[str, object]:
    return {
        "segments": segments,
        "pool": pool,
        "noise": regime,
        "strategy": strategy,
        "seed": seed,
        "rounds": [
            {"round": r, "budget_spent": r, "data_miou": v / 100} for r, v in enumerate(curve)
        ],
    }


def test_the_rule_needs_every_cell_and_never_below_alc(tmp_path: Path) -> None:
    protocol = _protocol()
    runs = []
    for segments, pool, regime in protocol.cells():
        runs.append(_run(segments, pool, regime, "alc", 1, [50, 52, 54]))
        runs.append(_run(segments, pool, regime, "good", 1, [50, 53, 56]))
        runs.append(_run(segments, pool, regime, "better", 1, [50, 53, 58]))
    # "better" falls below alc in one round of one cell: not eligible.
    runs[-1] = _run(*protocol.cells()[-1], "better", 1, [50, 51, 58])
    runs.append(_run("gt-proxy", "train", "seed", "partial", 1, [50, 60, 70]))
    rule = protocol.apply_rule(runs)
    assert rule["default_by_rule"] == "good"
    verdict = rule["strategies"]
    assert verdict["good"]["eligible"]
    assert verdict["good"]["complete"]
    assert verdict["good"]["mean_r5_gain_over_alc"] == pytest.approx(2.0)
    assert not verdict["better"]["eligible"]
    assert verdict["better"]["below_alc"] == ["superpixels/train/seed: rounds [1]"]
    assert verdict["partial"]["eligible"]
    assert not verdict["partial"]["complete"]
    summary = protocol.summarise(runs)
    assert {row["strategy"] for row in summary} == {"alc", "good", "better", "partial"}


def test_collect_merges_pieces_over_reused_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    protocol = _protocol()
    method = tmp_path / "method.json"
    method.write_text(
        json.dumps(
            {"runs": [
                {k: v for k, v in _run("gt-proxy", "train", "seed", "alc", 1, [40, 41]).items()
                 if k not in ("segments", "pool")},
                _run("gt-proxy", "train", "seed", "random", 1, [40, 40]),
            ]}
        )
    )  # fmt: skip
    monkeypatch.setattr(protocol, "METHOD", method)
    monkeypatch.setattr(protocol, "RESULTS", tmp_path / "committed")
    (tmp_path / "committed").mkdir()
    (tmp_path / "committed" / "results.json").write_text(
        json.dumps({"runs": [_run("gt-proxy", "0006R0", "seed", "alc", 1, [20, 21])]})
    )
    piece = tmp_path / "work" / "gt-proxy-0001TP-seed-s1"
    piece.mkdir(parents=True)
    (piece / "results.json").write_text(
        json.dumps({"runs": [_run("gt-proxy", "0001TP", "seed", "alc", 1, [30, 35])]})
    )
    merged = protocol.collect(tmp_path / "work")
    keys = [(r["pool"], r["strategy"], r.get("reused", False)) for r in merged["runs"]]
    # random is not reused; the earlier session's 0006R0 run is kept
    assert keys == [("0001TP", "alc", False), ("0006R0", "alc", False), ("train", "alc", True)]


def test_targets_report_efficiency_corrections_and_auroc() -> None:
    protocol = _protocol()
    runs = []
    for seed in (1, 2):
        runs.append(_run("gt-proxy", "train", "seed", "alc", seed, [50, 52, 54, 55, 56, 60]))
        ours = _run("gt-proxy", "train", "seed", "validated+proven", seed, [50, 55, 60, 61, 62, 63])
        for rec in ours["rounds"][1:]:  # type: ignore[attr-defined]
            rec["proven_changed"] = 0.5 * rec["round"] / rec["budget_spent"] * seed
            rec["proven_true_precision"] = 0.95 if seed == 1 else 0.9
            rec["learned_wrong_auroc"] = 0.6 + 0.05 * rec["round"] + 0.01 * seed
        runs.append(ours)
    table = protocol.targets(runs, "validated+proven")
    assert list(table) == ["gt-proxy/train/seed"]
    row = table["gt-proxy/train/seed"]
    assert row["seeds"] == [1, 2]
    assert row["r5_gain"] == pytest.approx(3.0)
    assert row["smallest_margin"] == pytest.approx(0.0)
    # alc's R5 (60) is reached at round 2: 2 of alc's 5 rounds of queries.
    assert row["efficiency"] == pytest.approx(2 / 5)
    # 0.5 changes per query for seed 1, 1.0 for seed 2, in rounds 2-5.
    assert row["auto_per_query"] == pytest.approx([0.75] * 4)
    assert row["auto_precision_lowest"] == pytest.approx(0.9)
    assert row["wrong_auroc"] == pytest.approx([0.665, 0.715, 0.765, 0.815, 0.865])
    assert "| gt-proxy/train/seed | 1,2 | +3.00 |" in protocol.targets_markdown(table)


def test_queries_to_reach_interpolates_and_says_when_never() -> None:
    protocol = _protocol()
    spent = np.asarray([0.0, 10.0, 20.0])
    assert protocol._queries_to_reach(spent, np.asarray([50.0, 54.0, 58.0]), 56.0) == 15.0
    assert protocol._queries_to_reach(spent, np.asarray([50.0, 54.0, 58.0]), 60.0) == float("inf")


def test_the_amended_rule_allows_half_a_point_in_round_1_only() -> None:
    protocol = _protocol()
    runs = []
    for segments, pool, regime in protocol.cells():
        runs.append(_run(segments, pool, regime, "alc", 1, [50, 52, 54, 55]))
        # 0.4 below in round 1, above later: eligible under the amendment only.
        runs.append(_run(segments, pool, regime, "explores", 1, [50, 51.6, 56, 58]))
        # 0.6 below in round 1: never eligible.
        runs.append(_run(segments, pool, regime, "too-low", 1, [50, 51.4, 56, 59]))
        # 0.1 below in round 2: the tolerance is for round 1 only.
        runs.append(_run(segments, pool, regime, "late-dip", 1, [50, 52, 53.9, 60]))
    amended = protocol.apply_rule(runs)
    assert amended["name"].startswith("amended")
    assert amended["round1_tolerance"] == 0.5
    assert amended["default_by_rule"] == "explores"
    assert amended["strategies"]["explores"]["smallest_round1_margin"] == pytest.approx(-0.4)
    assert amended["strategies"]["too-low"]["below_alc"][0].endswith("rounds [1]")
    assert amended["strategies"]["late-dip"]["below_alc"][0].endswith("rounds [2]")
    first = protocol.apply_rule(runs, round1_tolerance=0.0)
    assert first["name"].startswith("as fixed before")
    assert first["default_by_rule"] is None
