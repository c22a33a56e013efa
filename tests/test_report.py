"""The HTML report shows automatic changes with their precision, or says they are unchecked."""

from __future__ import annotations

from pathlib import Path

from a2lc.report import workspace_report
from tests.test_rounds import make_workspace


def test_report_marks_lcm_changes_as_unchecked_and_shows_checked_estimates(
    tmp_path: Path,
) -> None:
    with make_workspace(tmp_path) as ws:
        ws.record_metrics(1, {"segments_queried": 20, "lcm_changed": 7, "lcm_precision": 0.5})
        html = workspace_report(ws, tmp_path / "lcm.html").read_text()
        assert "unchecked" in html
        assert "benchmark" in html
        ws.record_metrics(
            2,
            {
                "segments_queried": 40,
                "checked_changed": 3,
                "checked_estimated_precision": 1.0,
                "checked_precision_lower": 0.905,
            },
        )
        html = workspace_report(ws, tmp_path / "both.html").read_text()
        assert "100.00 (≥ 90.50)" in html


def test_an_open_round_shows_its_queries(open_round: Path, tmp_path: Path) -> None:
    from a2lc.cli import main
    from a2lc.workspace import Workspace
    from tests.conftest import OPEN_ROUND_BUDGET

    with Workspace.open(open_round) as ws:
        assert ws.open_round() is not None
        assert ws.metrics()[1]["segments_queried"] == OPEN_ROUND_BUDGET
        html = workspace_report(ws, tmp_path / "open.html").read_text()
    assert f"<tr><td>1</td><td>{OPEN_ROUND_BUDGET}</td>" in html
    assert main(["report", "-w", str(open_round), "--out", str(tmp_path / "cli.html")]) == 0
