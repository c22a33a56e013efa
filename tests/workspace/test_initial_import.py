"""Replacing the initial maps is atomic: a failure or a kill at any point leaves the
workspace byte-for-byte as it was, or (after the commit point) completely imported."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from a2lc.data.synthetic import SyntheticPaths
from a2lc.errors import DataError, Problem
from a2lc.workspace import Workspace
from a2lc.workspace.lock import LOCK_NAME
from a2lc.workspace.workspace import DB_NAME
from tests.workspace.test_workspace import create


def snapshot(path: Path) -> dict[str, str]:
    """Every file's bytes (hashed) and the database's logical content (not the lock's holder)."""
    files = {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file() and not p.name.startswith(DB_NAME) and p.name != LOCK_NAME
    }
    with sqlite3.connect(path / DB_NAME) as db:
        dump = "\n".join(line for line in db.iterdump() if "'swap_committed'" not in line)
    files["<database>"] = hashlib.sha256(dump.encode()).hexdigest()
    return files


def new_maps(
    ws: Workspace, *, fail_at: int | None = None
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    for index, sample in enumerate(ws.samples):
        if index == fail_at:
            raise DataError(Problem(sample.id, "a bad map, found after the first ones were staged"))
        segments = ws.read_segments(sample.id)
        labels = ws.read_initial_labels(sample.id)
        # Every labelled pixel moves to the next class: a different, valid state.
        shifted = np.where(labels == 255, 255, (labels.astype(int) + 1) % ws.num_classes)
        yield sample.id, segments, shifted.astype(np.uint8)


def test_a_failed_import_changes_nothing(synthetic: SyntheticPaths, tmp_path: Path) -> None:
    with create(synthetic, tmp_path / "ws") as ws:
        before = snapshot(ws.path)
        with pytest.raises(DataError, match="a bad map"):
            ws.set_initial_maps(new_maps(ws, fail_at=3), source="test")
        assert snapshot(ws.path) == before
        assert not (ws.path / "staging").exists()


def _import_and_die(target: Path, kill: int) -> bool:
    """Run the import in a child killed at its ``kill``-th file move; True if it was."""
    pid = os.fork()
    if pid == 0:
        calls = [0]
        real = os.replace

        def dying_replace(src: object, dst: object) -> None:
            calls[0] += 1
            if calls[0] == kill:
                os._exit(9)
            real(src, dst)  # type: ignore[arg-type]

        os.replace = dying_replace  # type: ignore[assignment]  # only in the child
        try:
            with Workspace.open(target) as ws:
                ws.set_initial_maps(new_maps(ws), source="test")
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WEXITSTATUS(status) == 9


def test_a_kill_at_any_point_rolls_back_or_completes(
    synthetic: SyntheticPaths, tmp_path: Path
) -> None:
    with create(synthetic, tmp_path / "ws") as ws:
        before = snapshot(ws.path)
    shutil.copytree(tmp_path / "ws", tmp_path / "complete")
    with Workspace.open(tmp_path / "complete") as ws:
        ws.set_initial_maps(new_maps(ws), source="test")
        after = snapshot(ws.path)
    assert after != before
    outcomes = set()
    kill = 1
    while True:
        target = tmp_path / f"kill{kill}"
        shutil.copytree(tmp_path / "ws", target)
        killed = _import_and_die(target, kill)
        with Workspace.open(target) as ws:  # recovers
            assert not (ws.path / "staging").exists()
            state = snapshot(ws.path)
        assert state in (before, after), f"kill at file move {kill}: a mixed state"
        outcomes.add("before" if state == before else "after")
        if not killed:
            break
        kill += 1
    assert kill > 10  # the import really was interrupted at many points
    assert outcomes == {"before", "after"}
