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
