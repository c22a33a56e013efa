from __future__ import annotations

import os
from pathlib import Path

import pytest

from a2lc.cli import main
from a2lc.data.synthetic import SyntheticPaths, make_synthetic_dataset

REPO = Path(__file__).resolve().parent.parent


def shared_dir() -> Path:
    """The read-only shared folder: ``$A2LC_SHARED`` or ``../shared`` beside the repo."""
    return Path(os.environ.get("A2LC_SHARED", REPO.parent / "shared"))


@pytest.fixture(autouse=True)
def _quiet_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TQDM_DISABLE", "1")


@pytest.fixture
def synthetic(tmp_path: Path) -> SyntheticPaths:
    return make_synthetic_dataset(tmp_path / "data", num_images=6, height=48, width=64, cell=16)


@pytest.fixture
def camvid() -> Path:
    root = shared_dir() / "data" / "camvid"
    if not root.is_dir():
        pytest.fail(f"the shared CamVid copy is missing at {root}")
    return root


OPEN_ROUND_BUDGET = 6


@pytest.fixture
def open_round(synthetic: SyntheticPaths, tmp_path: Path) -> Path:
    """A workspace whose round 1 is open with ``OPEN_ROUND_BUDGET`` queries."""
    ws = tmp_path / "ws"
    init = ["init", "-w", str(ws), "--data", str(synthetic.root)]
    assert (
        main([*init, "--segments", str(synthetic.segments), "--labels", str(synthetic.pseudo)]) == 0
    )
    budget = str(OPEN_ROUND_BUDGET)
    assert main(["score", "-w", str(ws), "--probs", str(synthetic.probs), "--budget", budget]) == 0
    return ws
