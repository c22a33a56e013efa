"""Scoring sharded over 2 gloo processes (real torchrun, real collectives) selects exactly
the queries one process selects, from the same probabilities (a fixed model's)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from a2lc.data.readers import load_dataset
from a2lc.data.synthetic import SyntheticPaths
from a2lc.steps.scoring import ScoreConfig, probability_folder_loader, select_queries
from a2lc.workspace import Workspace
from tests.distributed.launch import torchrun

WORKER = Path(__file__).with_name("score_worker.py")


@pytest.mark.parametrize("strategy", ["alc", "eg", "abc"])
def test_two_processes_select_what_one_selects(
    synthetic: SyntheticPaths, tmp_path: Path, strategy: str
) -> None:
    ws_path = tmp_path / "ws"
    dataset = load_dataset(synthetic.root, split="train")
    Workspace.create(
        ws_path, dataset, segments_dir=synthetic.segments, labels_dir=synthetic.pseudo
    ).close()
    budget = 25
    with Workspace.open(ws_path, read_only=True) as ws:
        single = select_queries(
            ws,
            probability_folder_loader(ws, synthetic.probs),
            config=ScoreConfig(strategy=strategy, budget=budget),
            show_progress=False,
            keep_features=True,
        )
    out = tmp_path / "out"
    out.mkdir()
    torchrun(str(WORKER), str(ws_path), str(synthetic.probs), strategy, str(budget), str(out))
    expected = [[i, s, score] for i, s, score in single.queries]
    features = sorted((f[0], f[1].tolist(), f[2].round(6).tolist()) for f in single.features or [])
    for rank in (0, 1):
        got = json.loads((out / f"rank{rank}.json").read_text())
        assert got["queries"] == expected  # same segments, same order, same scores (exactly)
        assert [tuple(f) for f in got["features"]] == [(a, b, c) for a, b, c in features]


def test_torchrun_score_records_the_round_one_process_records(
    synthetic: SyntheticPaths, tmp_path: Path
) -> None:
    from a2lc.cli import main

    dataset = load_dataset(synthetic.root, split="train")
    for name in ("one", "two"):
        Workspace.create(
            tmp_path / name, dataset, segments_dir=synthetic.segments, labels_dir=synthetic.pseudo
        ).close()
    args = ["--probs", str(synthetic.probs), "--budget", "20", "--strategy", "eg"]
    assert main(["score", "-w", str(tmp_path / "one"), *args]) == 0
    result = torchrun("-m", "a2lc", "score", "-w", str(tmp_path / "two"), *args)
    assert result.stdout.count("recorded 20 queries") == 1  # rank 0 alone writes and reports
    with Workspace.open(tmp_path / "one") as a, Workspace.open(tmp_path / "two") as b:
        assert b.queries(1) == a.queries(1)
        assert [r.round for r in b.rounds()] == [1]
