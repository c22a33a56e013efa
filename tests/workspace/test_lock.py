"""One writer at a time: a second writer is refused, readers are not, a dead holder's lock is free."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from a2lc.cli import main
from a2lc.errors import WorkspaceError
from a2lc.workspace import Workspace
from a2lc.workspace.workspace import DB_NAME

HOLD = """
import sys, time
from a2lc.workspace import Workspace
ws = Workspace.open(sys.argv[1])
print("holding", flush=True)
time.sleep(600)
"""


def hold(path: Path) -> subprocess.Popen[str]:
    """Another process that opens the workspace for writing and keeps it open."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "holding"
    return process


def test_a_second_writer_is_refused_and_readers_still_work(open_round: Path) -> None:
    holder = hold(open_round)
    try:
        with pytest.raises(
            WorkspaceError, match=rf"in use by another a2lc process \(pid {holder.pid}"
        ):
            Workspace.open(open_round)
        with Workspace.open(open_round, read_only=True) as ws:
            assert ws.read_only
            assert ws.open_round() is not None
        assert main(["status", "-w", str(open_round)]) == 0
        assert main(["export", "-w", str(open_round), "--out", str(open_round.parent / "x")]) == 0
        assert main(["correct", "-w", str(open_round)]) == 1  # a writer
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_of_a_killed_process_is_taken_over(open_round: Path) -> None:
    holder = hold(open_round)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with Workspace.open(open_round) as ws:  # at once: the kernel released it
        assert not ws.read_only
    assert main(["correct", "-w", str(open_round)]) == 0


def test_one_process_may_open_a_workspace_twice(open_round: Path) -> None:
    with Workspace.open(open_round) as a, Workspace.open(open_round) as b:
        assert a.open_round() == b.open_round()
    holder = hold(open_round)  # both closed: the lock is free again
    holder.kill()
    holder.wait()


def test_read_only_workspace_folder(open_round: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import a2lc.workspace.workspace as module

    for name in ("-wal", "-shm"):
        (open_round / f"{DB_NAME}{name}").unlink(missing_ok=True)
    before = sorted(p.name for p in open_round.iterdir())
    monkeypatch.setattr(module.os, "access", lambda path, mode: False)  # as a non-owner sees it
    with Workspace.open(open_round, read_only=True) as ws:
        assert ws.num_segments() > 0
    assert sorted(p.name for p in open_round.iterdir()) == before  # no -shm, no lock file


def test_two_runs_on_one_workspace(open_round: Path) -> None:
    """The adversarial case: a second `a2lc run` while one runs exits 1 and changes nothing."""
    holder = hold(open_round)
    try:
        assert main(["run", "-w", str(open_round), "--strategy", "alc", "--rounds", "1"]) == 1
    finally:
        holder.kill()
        holder.wait()
