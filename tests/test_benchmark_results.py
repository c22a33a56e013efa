"""The default strategy is what the selection rule picks from the committed results (issue #34).

Applies the protocol's rule, as amended by the project's owner (round 1 may trail
``alc`` by up to 0.5 points, every later round at or above it, mean over seeds, every
cell; then the best mean R5 gain), by code, to the committed
``benchmarks/results/protocol/results.json``. Changing the default, or results that
no longer support it, fails here; so does a committed ``rule`` that is not what the
runs beside it give.
"""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from a2lc.strategies import DEFAULT_STRATEGY, resolve_strategy

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "protocol" / "results.json"


def _protocol() -> ModuleType:
    spec = importlib.util.spec_from_file_location("protocol", ROOT / "benchmarks" / "protocol.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_default_is_what_the_amended_rule_picks() -> None:
    protocol = _protocol()
    runs = json.loads(RESULTS.read_text())["runs"]
    rule = protocol.apply_rule(runs)
    assert rule["round1_tolerance"] == 0.5
    assert rule["default_by_rule"] == resolve_strategy(DEFAULT_STRATEGY).name, (
        f"the amended rule picks {rule['default_by_rule']}, the default is {DEFAULT_STRATEGY}"
    )
    verdict = rule["strategies"][DEFAULT_STRATEGY]
    assert verdict["complete"], "the default must have run in every protocol cell"
    assert verdict["below_alc"] == []
    assert verdict["smallest_round1_margin"] >= -0.5


def test_the_committed_rule_is_what_the_committed_runs_give() -> None:
    protocol = _protocol()
    merged = json.loads(RESULTS.read_text())
    assert merged["rule"] == json.loads(json.dumps(protocol.apply_rule(merged["runs"])))
    assert "amended" in merged["rule"]["name"]
    first = protocol.apply_rule(merged["runs"], round1_tolerance=0.0)
    assert merged["rule_as_first_written"] == json.loads(json.dumps(first))


def test_the_csv_carries_the_numbers_the_rule_reads() -> None:
    # data_miou_all (seed images counted) is what the rule compares; the CSV has it
    # for every round, equal to the JSON's.
    merged = json.loads(RESULTS.read_text())
    expected = {
        (r.get("segments"), r.get("pool"), r["noise"], r["strategy"], str(r["seed"]), str(rec["round"])):
        rec.get("data_miou_all") or rec["data_miou"]
        for r in merged["runs"] for rec in r["rounds"]
    }  # fmt: skip
    with (RESULTS.parent / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(expected)
    for row in rows:
        key = (
            row["segments"],
            row["pool"],
            row["regime"],
            row["strategy"],
            row["seed"],
            row["round"],
        )
        assert float(row["data_miou_all"]) == pytest.approx(expected[key], abs=1e-12)


CORRECTORS = ROOT / "benchmarks" / "results" / "corrector_protocol.json"


def test_the_default_corrector_is_what_the_corrector_rule_leaves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue #35's rule over the committed corrector runs: the committed verdict is what the
    pieces give, and while no candidate passes the default corrector stays ``proven``
    under ``bound`` (a candidate that passes would have to become the default)."""
    from a2lc.correction.learned import LearnedConfig

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(
        "corrector_protocol", ROOT / "benchmarks" / "corrector_protocol.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    merged = json.loads(CORRECTORS.read_text())
    rule = module.apply_rule(merged["pieces"])
    assert merged["rule"] == json.loads(json.dumps(rule))
    default = LearnedConfig()
    assert resolve_strategy(DEFAULT_STRATEGY).name == "validated+proven"
    if rule["default_by_rule"] is None:
        assert (default.guarantee, default.voices, default.fdr_region) == (
            "bound",
            ("answer",),
            "reserved",
        )
    else:
        strategy, config = module.VARIANTS[rule["default_by_rule"]]
        assert (strategy, default) == ("validated+proven", config)
