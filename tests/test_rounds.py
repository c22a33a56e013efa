"""The correction loop on tiny generated data: results, resume, human answers, bad input."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from a2lc.cli import main
from a2lc.correction.lcm import LCMConfig
from a2lc.data import load_dataset
from a2lc.data.synthetic import SyntheticPaths, make_synthetic_dataset
from a2lc.errors import WorkspaceError
from a2lc.models.config import ModelConfig
from a2lc.models.training import TrainConfig
from a2lc.rounds import RunConfig, run_rounds
from a2lc.workspace import Answer, Workspace

TINY_TRAIN = TrainConfig(epochs=2, batch_size=4)
TINY_LCM = LCMConfig(epochs=3, thresholds=(0.3,))  # low τ so that LCM acts on tiny data


def make_data(root: Path) -> SyntheticPaths:
    paths = make_synthetic_dataset(root, num_images=10, height=48, width=64, cell=16)
    make_synthetic_dataset(root, num_images=3, height=48, width=64, cell=16, split="val", seed=1)
    return paths


def make_workspace(tmp_path: Path) -> Workspace:
    data = make_data(tmp_path / "data")
    dataset = load_dataset(data.root, split="train")
    return Workspace.create(
        tmp_path / "ws",
        dataset,
        segments_dir=data.segments,
        labels_dir=data.pseudo,
        show_progress=False,
    )


def config(**overrides: object) -> RunConfig:
    base = RunConfig(
        strategy="a2lc", rounds=2, budget=20, eval_split="val", train=TINY_TRAIN, lcm=TINY_LCM
    )
    return RunConfig(**{**base.__dict__, **overrides})  # type: ignore[arg-type]


def test_a2lc_rounds_record_everything(tmp_path: Path) -> None:
    with make_workspace(tmp_path) as ws:
        result = run_rounds(ws, config(), show_progress=False)
        assert result.finished
        metrics = result.metrics
        assert sorted(metrics) == [0, 1, 2]
        for r in (0, 1, 2):
            assert 0 < metrics[r]["data_miou"] <= 1
            assert 0 <= metrics[r]["model_miou"] <= 1
            assert metrics[r]["segments_queried"] == 20 * r
            assert (ws.path / f"models/round_{r:03d}/weights.pt").is_file()
            assert (ws.path / f"models/round_{r:03d}/config.json").is_file()
        assert "lcm_changed" in metrics[1]
        corrections = ws.corrections()
        manual = {(c["image_id"], c["segment_id"]) for c in corrections if c["source"] == "manual"}
        auto = [c for c in corrections if c["source"] == "auto"]
        assert len(manual) == 40
        assert all(
            (c["image_id"], c["segment_id"]) not in manual for c in auto
        )  # LCM never touches queried segments
        if auto:
            assert "lcm_precision" in metrics[min(c["round"] for c in auto)]


def test_rerun_after_finish_changes_nothing(tmp_path: Path) -> None:
    with make_workspace(tmp_path) as ws:
        first = run_rounds(ws, config(), show_progress=False).metrics
        again = run_rounds(ws, config(), show_progress=False).metrics
        assert again == first


def test_human_oracle_stops_and_continues(tmp_path: Path) -> None:
    with make_workspace(tmp_path) as ws:
        result = run_rounds(ws, config(oracle="human", rounds=1), show_progress=False)
        assert not result.finished
        assert result.waiting_round == 1
        assert ws.count_unanswered(1) == 20
        # People answer (here: confirm every label as it is) in another process, later.
        ws.record_answers(
            1, [Answer(q.image_id, q.segment_id, None, "ann") for q in ws.unanswered(1)]
        )
        result = run_rounds(ws, config(oracle="human", rounds=1), show_progress=False)
        assert result.finished
        assert ws.rounds()[0].status == "closed"


def test_strategies_without_lcm_make_no_auto_corrections(tmp_path: Path) -> None:
    with make_workspace(tmp_path) as ws:
        run_rounds(ws, config(strategy="alc", rounds=1), show_progress=False)
        assert [c for c in ws.corrections() if c["source"] == "auto"] == []
        assert ws.rounds()[0].strategy == "alc"
        assert ws.rounds()[0].config["acquisition"] == "alc"


# ------------------------------------------------------------------ bad input


def test_class_count_mismatch(tmp_path: Path) -> None:
    with (
        make_workspace(tmp_path) as ws,
        pytest.raises(WorkspaceError, match="configured for 5 classes but the workspace has 8"),
    ):
        run_rounds(ws, config(model=ModelConfig(num_classes=5)), show_progress=False)


def test_budget_larger_than_unqueried_segments(tmp_path: Path) -> None:
    with make_workspace(tmp_path) as ws:
        with pytest.raises(WorkspaceError, match="budget 100000 is larger than the"):
            run_rounds(ws, config(budget=100_000), show_progress=False)
        assert ws.rounds() == []


def test_resume_needs_the_same_options(tmp_path: Path) -> None:
    with make_workspace(tmp_path) as ws:
        run_rounds(ws, config(rounds=1), show_progress=False)
        with pytest.raises(WorkspaceError, match="started with other options"):
            run_rounds(ws, config(rounds=1, strategy="alc"), show_progress=False)


def test_options_that_do_not_touch_finished_work_may_change(tmp_path: Path) -> None:
    with make_workspace(tmp_path) as ws:
        run_rounds(ws, config(rounds=0), show_progress=False)  # θ_0 only
        run_rounds(ws, config(rounds=1, strategy="alc", budget=10), show_progress=False)
        run_rounds(
            ws, config(rounds=2, strategy="alc", budget=10), show_progress=False
        )  # more rounds
        assert [r.strategy for r in ws.rounds()] == ["alc", "alc"]
        with pytest.raises(WorkspaceError, match="'seed'"):
            run_rounds(ws, config(rounds=2, strategy="alc", budget=10, seed=5), show_progress=False)


def test_missing_seed_image_ground_truth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_data(tmp_path / "data")
    for label in (data.root / "labels" / "train").iterdir():
        label.unlink()
    (data.root / "labels" / "train").rmdir()
    assert main(["init", "-w", str(tmp_path / "ws"), "--data", str(data.root)]) == 0
    code = main(
        [
            "pseudo-label",
            "-w",
            str(tmp_path / "ws"),
            "--source",
            "superpixels",
            "--seed-images",
            "2",
        ]
    )
    assert code == 1
    assert "needs ground truth for its seed images" in capsys.readouterr().err
    code = main(["pseudo-label", "-w", str(tmp_path / "ws"), "--source", "gt-proxy"])
    assert code == 1
    assert "gt-proxy segments are derived from ground truth" in capsys.readouterr().err


DRIVER = """
import sys
from a2lc.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_cli(
    args: list[str],
    *,
    kill_when: tuple[Path, str] | None = None,
    driver: str = DRIVER,
    must_reach: bool = True,
) -> int | None:
    """Run the CLI (or another ``driver`` program) in a subprocess; with
    ``kill_when=(db, sql)``, SIGKILL it as soon as ``sql`` returns a row in the workspace
    database (i.e. right after that step committed). A run that ends before that fails
    the test, unless ``must_reach`` is False: then its exit code is returned."""
    env = {**os.environ, "TQDM_DISABLE": "1"}
    process = subprocess.Popen([sys.executable, "-c", driver, *args], env=env)
    if kill_when is None:
        return process.wait(timeout=600)
    db_path, sql = kill_when
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        if db_path.exists():
            with (
                contextlib.closing(sqlite3.connect(db_path, timeout=5)) as db,
                contextlib.suppress(sqlite3.OperationalError),
            ):
                if db.execute(sql).fetchone():
                    process.send_signal(signal.SIGKILL)
                    break
        time.sleep(0.01)
    process.wait(timeout=60)
    if not must_reach and process.returncode != -signal.SIGKILL:
        return process.returncode
    assert process.returncode == -signal.SIGKILL, f"the run ended before reaching: {sql}"
    return None


# Kill right after these commits, i.e. in the middle of the step that follows.
KILL_POINTS = (
    "SELECT 1 FROM steps WHERE round = 0 AND name = 'eval'",  # → scoring round 1
    "SELECT 1 FROM rounds WHERE round = 1",  # → simulated annotator, LCM
    "SELECT 1 FROM steps WHERE round = 1 AND name = 'lcm'",  # → closing, training θ_1
    "SELECT 1 FROM steps WHERE round = 1 AND name = 'train'",  # → evaluating θ_1
)


def test_killed_run_resumes_to_identical_results(tmp_path: Path) -> None:
    """Kill a real `a2lc run` inside four different steps; the resumed run ends as the uninterrupted one."""
    data = make_data(tmp_path / "data")
    args = [
        "--strategy",
        "a2lc",
        "--rounds",
        "2",
        "--budget",
        "20",
        "--eval-split",
        "val",
        "--epochs",
        "2",
        "--thresholds",
        "0.3",
    ]
    for name in ("reference", "killed"):
        assert (
            run_cli(
                [
                    "init",
                    "-w",
                    str(tmp_path / name),
                    "--data",
                    str(data.root),
                    "--segments",
                    str(data.segments),
                    "--labels",
                    str(data.pseudo),
                ]
            )
            == 0
        )
    assert run_cli(["run", "-w", str(tmp_path / "reference"), *args]) == 0
    db = tmp_path / "killed" / "a2lc.sqlite"
    for sql in KILL_POINTS:
        run_cli(["run", "-w", str(tmp_path / "killed"), *args], kill_when=(db, sql))
        with Workspace.open(tmp_path / "killed") as ws:
            assert sum(r.status != "closed" for r in ws.rounds()) <= 1
    assert run_cli(["run", "-w", str(tmp_path / "killed"), *args]) == 0
    with Workspace.open(tmp_path / "reference") as a, Workspace.open(tmp_path / "killed") as b:
        assert [[(q.image_id, q.segment_id) for q in a.queries(r)] for r in (1, 2)] == [
            [(q.image_id, q.segment_id) for q in b.queries(r)] for r in (1, 2)
        ]
        assert [
            (c["image_id"], c["segment_id"], c["after"], c["source"]) for c in a.corrections()
        ] == [(c["image_id"], c["segment_id"], c["after"], c["source"]) for c in b.corrections()]
        for sample in a.samples:
            np.testing.assert_array_equal(a.read_labels(sample.id), b.read_labels(sample.id))
        ma, mb = a.metrics(), b.metrics()
        for r in ma:
            for key in ("data_miou", "model_miou", "train_loss"):
                assert ma[r][key] == pytest.approx(mb[r][key], rel=1e-6), (r, key)


def test_each_round_logs_a_summary(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="a2lc")
    with make_workspace(tmp_path) as ws:
        run_rounds(ws, config(rounds=1), show_progress=False)
    lines = [r.getMessage() for r in caplog.records if " done: " in r.getMessage()]
    assert [line.split(":")[0] for line in lines] == ["round 0 done", "round 1 done"]
    assert lines[1].startswith("round 1 done: 20 segments queried in all; data mIoU ")
    assert "model mIoU" in lines[1]
    assert "(estimated precision: unchecked)" in lines[1]


def test_a_frozen_encoder_on_the_fly_writes_no_cache_and_trains_the_head(tmp_path: Path) -> None:
    import torch

    from a2lc.rounds import model_dir

    with make_workspace(tmp_path) as ws:
        result = run_rounds(ws, config(rounds=1, feature_cache=False), show_progress=False)
        assert result.finished
        assert not (ws.path / "cache").exists() or not any((ws.path / "cache").rglob("*.npy"))
        # Only the head is checkpointed and it differs between rounds; the encoder is the
        # untouched initial one (the same seed rebuilds it exactly).
        first = torch.load(model_dir(ws, 0) / "weights.pt", weights_only=True)
        second = torch.load(model_dir(ws, 1) / "weights.pt", weights_only=True)
        assert first.keys() == second.keys()
        assert not any("encoder" in k for k in first)  # a head-only checkpoint
        assert any(not torch.equal(first[k], second[k]) for k in first)
        assert 0 < result.metrics[1]["model_miou"] <= 1
