from __future__ import annotations

from pathlib import Path

import pytest

from a2lc.cli import main
from a2lc.data.synthetic import SyntheticPaths

BUDGET = 6


@pytest.fixture
def open_round(synthetic: SyntheticPaths, tmp_path: Path) -> Path:
    """A workspace whose round 1 is open with ``BUDGET`` queries."""
    ws = tmp_path / "ws"
    init = ["init", "-w", str(ws), "--data", str(synthetic.root)]
    assert (
        main([*init, "--segments", str(synthetic.segments), "--labels", str(synthetic.pseudo)]) == 0
    )
    score = ["score", "-w", str(ws), "--probs", str(synthetic.probs), "--budget", str(BUDGET)]
    assert main(score) == 0
    return ws
