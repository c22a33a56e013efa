"""Replace a set of workspace files together with a database change, atomically.

A step that rewrites many files (the initial segment and label maps) goes in
four phases:

1. **stage**: every new file is written under ``staging/swap-<token>/new/``,
   while the input is still being validated; nothing in the workspace changes;
2. **swap**: a journal is written, then each current file is moved to
   ``staging/swap-<token>/old/`` and its new version moved into place;
3. **commit**: the database change and the token (meta ``swap_committed``) are
   one transaction, the commit point;
4. **finish**: the staging folder is removed.

A failure raises after undoing phases 1–2. After a kill, :func:`recover` (run by
``Workspace.open``) looks at each staging folder: without a journal, or with a
token the database never committed, it moves the old files back (the workspace
is byte-for-byte what it was); with a committed token it completes the swap.
Each move is an ``os.replace`` within one file system.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

STAGING_DIR = "staging"
PREFIX = "swap-"
JOURNAL = "journal.json"
COMMIT_KEY = "swap_committed"
"""Meta key holding the token of the last swap whose database change committed."""


class FileSwap:
    """One swap of files under ``root`` (relative paths), see the module docstring."""

    def __init__(self, root: Path, token: str | None = None) -> None:
        self.root = Path(root)
        self.token = token or uuid.uuid4().hex
        self.folder = self.root / STAGING_DIR / f"{PREFIX}{self.token}"

    def staged(self, relative: str) -> Path:
        """Where to write the new version of ``relative`` (phase 1)."""
        path = self.folder / "new" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def swap(self, relatives: Sequence[str]) -> None:
        """Phase 2: journal, then move each current file aside and its new one in."""
        self.folder.mkdir(parents=True, exist_ok=True)
        journal = self.folder / JOURNAL
        tmp = journal.with_suffix(".tmp")
        tmp.write_text(json.dumps({"token": self.token, "files": list(relatives)}))
        _fsync(tmp)
        os.replace(tmp, journal)
        for relative in relatives:
            target = self.root / relative
            if target.exists():
                aside = self.folder / "old" / relative
                aside.parent.mkdir(parents=True, exist_ok=True)
                os.replace(target, aside)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.folder / "new" / relative, target)

    def finish(self) -> None:
        """Phase 4 (or completing a committed swap after a kill)."""
        for relative in self._journal_files():
            staged = self.folder / "new" / relative
            if staged.exists():  # killed mid-swap after the commit: finish the moves
                target = self.root / relative
                if target.exists() and not (self.folder / "old" / relative).exists():
                    aside = self.folder / "old" / relative
                    aside.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(target, aside)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged, target)
        self._remove()

    def rollback(self) -> None:
        """Undo phases 1–2: every file is back as it was before the swap."""
        for relative in self._journal_files():
            target = self.root / relative
            aside = self.folder / "old" / relative
            staged = self.folder / "new" / relative
            if aside.exists():
                os.replace(aside, target)
            elif not staged.exists() and target.exists():
                target.unlink()  # there was no file before: the new one goes
        self._remove()

    def _remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.folder.parent.rmdir()  # only when empty (other staging users keep theirs)

    def _journal_files(self) -> list[str]:
        journal = self.folder / JOURNAL
        if not journal.is_file():
            return []
        return [str(f) for f in json.loads(journal.read_text())["files"]]


def recover(root: Path, committed: Callable[[str], bool]) -> list[str]:
    """Roll back or complete every swap a killed process left; returns what was done."""
    staging = Path(root) / STAGING_DIR
    done: list[str] = []
    if not staging.is_dir():
        return done
    for folder in sorted(staging.glob(f"{PREFIX}*")):
        swap = FileSwap(root, folder.name[len(PREFIX) :])
        if committed(swap.token):
            swap.finish()
            done.append(f"completed {folder.name}")
        else:
            swap.rollback()
            done.append(f"rolled back {folder.name}")
        log.warning("workspace %s: an interrupted file swap was %s", root, done[-1].split()[0])
    return done


def _fsync(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())
