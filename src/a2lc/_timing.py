"""Wall and CPU seconds of the parts of a step, for the metrics and the round profile."""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Iterator


class Stopwatch:
    """Accumulates wall seconds and process CPU seconds (all threads) per named part."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def part(self, name: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall[name] += time.perf_counter() - wall
            self.cpu[name] += time.process_time() - cpu

    def metrics(self) -> dict[str, float]:
        """``seconds/<part>`` (wall) and ``seconds/cpu/<part>`` for every part timed."""
        return {
            **{f"seconds/{k}": v for k, v in self.wall.items()},
            **{f"seconds/cpu/{k}": v for k, v in self.cpu.items()},
        }
