"""``a2lc ls-backend --label-studio URL --project N``: the backend runs the rounds itself.

A background worker owns the rounds while annotators work in Label Studio:

1. it puts the open round's queries into the project as tasks with a2lc's prediction
   (the segment pre-filled with its current class, scored by rank; model version
   ``a2lc-round-R``), those Label Studio does not have yet;
2. answers arrive through the webhook and are recorded at once; the worker also
   reads the round's annotations from Label Studio's API (at start, every
   ``poll_seconds`` and when woken), so answers given while the backend was down
   are recorded too, each exactly once (an import of them is idempotent);
3. when every query of the round is answered (or on Label Studio's train action) it
   closes the round and runs the next one (train, score, correct) with the options
   the run started with (``a2lc run ... --oracle human``), then goes back to 1.

Every step is resumable as ``a2lc run`` is: killed at any point, the next start
resumes the round where the workspace says it is, pushes only the tasks Label
Studio lacks and records only the answers the workspace lacks.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from a2lc.errors import A2LCError, DataError
from a2lc.interop.label_studio import (
    LOCAL_FILES_PREFIX,
    import_answer_document,
    round_tasks,
    task_key,
)
from a2lc.interop.ls_api import LabelStudioAPI, LabelStudioError
from a2lc.rounds import RunConfig, RunResult, run_rounds, stored_run_config
from a2lc.workspace import Workspace

log = logging.getLogger(__name__)

POLL_SECONDS = 30.0


@dataclass(frozen=True)
class LoopSettings:
    """Where the rounds go: Label Studio (``api``), its ``project``, how tasks name images."""

    api: LabelStudioAPI
    project: int
    image_prefix: str = LOCAL_FILES_PREFIX
    image_root: Path | None = None
    poll_seconds: float = POLL_SECONDS


Runner = Callable[[Workspace, RunConfig], RunResult]


def _run(ws: Workspace, config: RunConfig) -> RunResult:
    return run_rounds(ws, config, show_progress=False)


class RoundLoop:
    """The worker: :meth:`step` does one pass; :meth:`start` runs passes in a thread.

    ``lock`` guards ``ws`` (one SQLite connection shared with the request threads).
    """

    def __init__(
        self,
        ws: Workspace,
        lock: threading.Lock,
        settings: LoopSettings,
        *,
        runner: Runner = _run,
    ) -> None:
        self.ws = ws
        self.lock = lock
        self.settings = settings
        self.runner = runner
        self.state = "starting"
        self.error: str | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._storage_checked = False
        self._reported: set[str] = set()

    # ------------------------------------------------------------------ thread

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="a2lc-rounds", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Look again now (an answer completed the round, or Label Studio asked to train)."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
                self.error = None
            except (A2LCError, OSError) as exc:
                self.error = str(exc)
                log.error("the rounds for Label Studio stopped: %s (retrying)", exc)
            except Exception as exc:  # a worker thread must never die unseen
                self.error = f"{type(exc).__name__}: {exc}"
                log.exception("the rounds for Label Studio stopped (retrying)")
            self._wake.wait(self.settings.poll_seconds)
            self._wake.clear()

    # ------------------------------------------------------------------ one pass

    def step(self) -> None:
        """Catch up on answers, run the next round if this one is done, push its tasks."""
        if not self._storage_checked:
            self._check_storage()
        with self.lock:
            current = self.ws.open_round()
        if current is not None:
            ls_tasks = self.settings.api.tasks(self.settings.project)
            self._catch_up(current.round, ls_tasks)
            with self.lock:
                left = self.ws.count_unanswered(current.round)
            if left:
                self._push(current.round, ls_tasks)
                self.state = f"round {current.round}: {left} queries open in Label Studio"
                return
        config = self._config()
        with self.lock:
            closed = [r for r in self.ws.rounds() if r.status == "closed"]
            if self.ws.open_round() is None and len(closed) >= config.rounds:
                self.state = f"finished: {len(closed)} rounds"
                return
            self.state = "running the next round (train, score, correct)"
            log.info("every query answered: running the next round")
            result = self.runner(self.ws, config)
        if result.waiting_round is None:
            self.state = f"finished: {config.rounds} rounds"
            return
        self._push(result.waiting_round, self.settings.api.tasks(self.settings.project))
        with self.lock:
            left = self.ws.count_unanswered(result.waiting_round)
        self.state = f"round {result.waiting_round}: {left} queries open in Label Studio"

    def _config(self) -> RunConfig:
        with self.lock:
            config = stored_run_config(self.ws)
        if config is None:
            raise A2LCError(
                "this workspace has no run yet: start it with `a2lc run -w W --oracle human "
                "[--strategy ...] [--rounds N]`; the backend continues it"
            )
        return replace(config, oracle="human")

    def _catch_up(self, round_index: int, ls_tasks: list[dict[str, Any]]) -> None:
        """Record the round's answers Label Studio has and the workspace lacks."""
        mine = [t for t in ls_tasks if _round_of(t) == round_index and t.get("annotations")]
        if not mine:
            return
        where = f"Label Studio project {self.settings.project}"
        with self.lock:
            try:
                outcomes = [import_answer_document(self.ws, mine, where=where)]
            except DataError:  # a task Label Studio holds is malformed: the others one by one
                outcomes = []
                for task in mine:
                    try:
                        outcomes.append(import_answer_document(self.ws, [task], where=where))
                    except DataError as exc:
                        self._report(str(exc))
        recorded = sum(o["answers"] for o in outcomes)
        if recorded:
            log.info("recorded %d answers from Label Studio", recorded)
        for outcome in outcomes:
            for problem in outcome["refused"]:
                self._report(str(problem))

    def _report(self, text: str) -> None:
        """Log a refused answer once (the worker sees it again at every pass)."""
        if text not in self._reported:
            self._reported.add(text)
            log.warning("not recorded: %s", text)

    def _push(self, round_index: int, ls_tasks: list[dict[str, Any]]) -> None:
        """Put the round's unanswered queries Label Studio lacks into the project."""
        there = {
            key
            for t in ls_tasks
            if _round_of(t) == round_index and (key := task_key(t)) is not None
        }
        with self.lock:
            wanted = {(q.image_id, q.segment_id) for q in self.ws.unanswered(round_index)}
            tasks = round_tasks(
                self.ws,
                image_prefix=self.settings.image_prefix,
                image_root=self.settings.image_root,
                keys=wanted - there,
            )
        if tasks:
            added = self.settings.api.import_tasks(self.settings.project, tasks)
            log.info("round %d: %d tasks put into Label Studio", round_index, added)

    def _check_storage(self) -> None:
        """Give the project a Local Storage for the images (else the editor shows 404s)."""
        self._storage_checked = True
        if self.settings.image_prefix != LOCAL_FILES_PREFIX:
            return
        with self.lock:
            folders = sorted({str(Path(s.image_path).resolve().parent) for s in self.ws.samples})
        api, project = self.settings.api, self.settings.project
        try:
            have = {str(s.get("path")) for s in api.local_storages(project)}
            for folder in folders:
                if folder not in have:
                    api.add_local_storage(project, folder)
                    log.info("Label Studio project %d: Local Storage added for %s", project, folder)
        except LabelStudioError as exc:
            log.warning(
                "could not add a Local Storage for the images (%s): start Label Studio with "
                "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and "
                "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT set to a folder above %s, or add it "
                "by hand (docs/interop.md)",
                exc,
                folders[0] if folders else "the images",
            )


def _round_of(task: dict[str, Any]) -> int | None:
    """The round of a query task; None for anything else (a review task of an automatic
    change, :mod:`a2lc.interop.ls_review`, carries a ``kind`` and is never a query)."""
    data = task.get("data")
    if isinstance(data, dict) and data.get("kind") is not None:
        return None
    value = data.get("round") if isinstance(data, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None
