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


REVIEW_CHANGES = 12


@pytest.fixture
def with_changes(open_round: Path) -> Path:
    """``open_round`` with its queries answered (kept), round 1 closed, and
    ``REVIEW_CHANGES`` automatic changes of round 1 (each unqueried segment of the
    first images moved to the next class; confidence rising with the order made), as a
    corrector would record them."""
    from a2lc.workspace import Answer, Workspace

    with Workspace.open(open_round) as ws:
        queried = {(q.image_id, q.segment_id) for q in ws.queries(1)}
        ws.record_answers(1, [Answer(i, s, None, "alice") for i, s in sorted(queried)])
        ws.close_round(1)
        changes: list[tuple[str, int, int]] = []
        for sample in ws.samples:
            table = ws.segment_table(sample.id)
            for segment_id, label in zip(table.ids.tolist(), table.label.tolist(), strict=True):
                if (sample.id, segment_id) in queried or len(changes) == REVIEW_CHANGES:
                    continue
                changes.append((sample.id, int(segment_id), (int(label) + 1) % ws.num_classes))
        ws.record_auto_corrections(
            1,
            changes,
            step="proven",
            confidence=[0.5 + i / (2 * REVIEW_CHANGES) for i in range(len(changes))],
            evidence={
                "guarantee": "fdr",
                "statement": "on average at most 10% of the applied changes are wrong",
                "sources": ["answer voice"],
                "audited": 20,
                "right": 19,
            },
        )
    return open_round
