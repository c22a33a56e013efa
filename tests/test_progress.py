"""Off a terminal, long loops and rounds still tell a person what is happening."""

from __future__ import annotations

import logging

import pytest

from a2lc import _progress
from a2lc._progress import progress


def test_off_a_terminal_a_loop_logs_its_count_and_time(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_progress, "_on_terminal", lambda: False)
    caplog.set_level(logging.INFO, logger="a2lc")
    assert list(progress(range(3), desc="pool prediction", total=3)) == [0, 1, 2]
    (record,) = caplog.records
    assert record.getMessage().startswith("pool prediction: 3 img in ")
    caplog.clear()
    monkeypatch.setattr(_progress, "HEARTBEAT_SECONDS", 0.0)
    list(progress(range(2), desc="epoch 1/6", total=2, unit="batch", log_done=False))
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        "epoch 1/6: 1/2 batch so far",
        "epoch 1/6: 2/2 batch so far",
    ]
    caplog.clear()
    list(progress(range(2), desc="hidden", enabled=False))
    assert not caplog.records


def test_on_a_terminal_the_bar_replaces_the_log_lines(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_progress, "_on_terminal", lambda: True)
    caplog.set_level(logging.INFO, logger="a2lc")
    assert list(progress(range(3), desc="scoring")) == [0, 1, 2]
    assert not caplog.records


def test_many_short_loops_still_log_once_a_minute(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Six quiet epochs of ten seconds are one minute of silence: a line comes anyway."""
    clock = iter(float(t) for t in range(0, 10_000, 5))
    monkeypatch.setattr(_progress, "_on_terminal", lambda: False)
    monkeypatch.setattr(_progress.time, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(_progress, "_last_line", 0.0)
    caplog.set_level(logging.INFO, logger="a2lc")
    for epoch in range(6):  # each loop: 2 batches, 5 s apart
        list(progress(range(2), desc=f"epoch {epoch + 1}/6", unit="batch", log_done=False))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) >= 1
    assert lines[0].startswith("epoch ")
