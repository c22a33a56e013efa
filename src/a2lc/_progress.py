"""Progress for long loops: a bar on a terminal, log lines everywhere else.

On a TTY a tqdm bar shows the loop as it goes. Off one (nohup, CI, a notebook's
captured stderr, a log file) the bar hides itself, so the loop logs instead: a
line every :data:`HEARTBEAT_SECONDS` for a long loop, and one line when it ends
with its count and elapsed time.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

log = logging.getLogger("a2lc.progress")

HEARTBEAT_SECONDS = 60.0
"""Off a terminal, a loop logs how far it is when no progress line was logged for this long
(by any loop: a stage made of many short loops, such as training epochs, logs too)."""

_last_line = time.perf_counter()
"""When the last progress line was logged (any loop)."""


def _on_terminal() -> bool:
    stream = sys.stderr
    return bool(getattr(stream, "isatty", None)) and stream.isatty()


def progress(
    iterable: Iterable[T],
    *,
    desc: str,
    total: int | None = None,
    unit: str = "img",
    enabled: bool = True,
    log_done: bool = True,
) -> Iterator[T]:
    """Wrap ``iterable``: a tqdm bar on a terminal, log lines off one (see the module doc).

    ``enabled=False`` shows nothing at all; ``log_done=False`` skips the closing log
    line (for loops a caller summarises itself, such as training epochs).
    """
    if not enabled:
        yield from iterable
        return
    if _on_terminal():
        from tqdm.auto import tqdm

        yield from tqdm(iterable, desc=desc, total=total, unit=unit, leave=False)
        return
    global _last_line
    started = time.perf_counter()
    count = 0
    of = f"/{total}" if total is not None else ""
    for item in iterable:
        yield item
        count += 1
        now = time.perf_counter()
        if now - _last_line >= HEARTBEAT_SECONDS:
            log.info("%s: %d%s %s so far (%.0f s)", desc, count, of, unit, now - started)
            _last_line = now
    if log_done and count:  # an empty loop (nothing left to compute) is not a stage
        log.info("%s: %d %s in %.1f s", desc, count, unit, time.perf_counter() - started)
        _last_line = time.perf_counter()
