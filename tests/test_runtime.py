"""Thread and memory settings: one place decides, environment and --threads win."""

from __future__ import annotations

import pytest

from a2lc import runtime
from a2lc.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*runtime.THREAD_VARIABLES, runtime.FEATURE_MEMORY_VARIABLE):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("cpus", "load", "expected"),
    [(2, 0.0, 1), (16, 0.0, 8), (16, 12.0, 4), (16, 30.0, 1), (1, 0.0, 1), (64, 0.4, 32)],
)
def test_default_is_half_the_cpus_and_leaves_busy_ones_alone(
    cpus: int, load: float, expected: int
) -> None:
    assert runtime.default_threads(cpus=cpus, load=load) == expected


def test_explicit_threads_beat_the_environment_which_beats_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert runtime.resolve_threads(None)[1].startswith("default")
    monkeypatch.setenv("MKL_NUM_THREADS", "5")
    assert runtime.resolve_threads(None) == (5, "MKL_NUM_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert runtime.resolve_threads(None) == (4, "OMP_NUM_THREADS")
    monkeypatch.setenv("A2LC_THREADS", "3")
    assert runtime.resolve_threads(None) == (3, "A2LC_THREADS")
    assert runtime.resolve_threads(2) == (2, "--threads")


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_bad_thread_variables_are_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    with pytest.raises(ConfigError, match="OMP_NUM_THREADS"):
        runtime.resolve_threads(None)


def test_configure_threads_applies_once_unless_asked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    before = torch.get_num_threads()
    monkeypatch.setattr(runtime, "_configured", None)
    monkeypatch.setattr(runtime, "_requested", None)
    try:
        runtime.request_threads(2)
        assert runtime.configure_threads() == 2
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)  # someone else changed it: a plain call keeps the decision
        assert runtime.configure_threads() == 2
        assert runtime.configure_threads(1) == 1
        assert torch.get_num_threads() == 1
        with pytest.raises(ConfigError, match="--threads"):
            runtime.request_threads(0)
    finally:
        torch.set_num_threads(before)


def test_cli_threads_option_reaches_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    from a2lc.cli import main

    monkeypatch.setattr(runtime, "_configured", None)
    monkeypatch.setattr(runtime, "_requested", None)
    assert main(["--threads", "0", "status", "-w", "nowhere"]) == 1
    main(["--threads", "3", "status", "-w", "nowhere"])
    assert runtime._requested == 3


def test_feature_memory_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    assert 0 < runtime.feature_memory_budget() <= runtime.DEFAULT_FEATURE_MEMORY_MB * 2**20
    monkeypatch.setenv(runtime.FEATURE_MEMORY_VARIABLE, "1.5")
    assert runtime.feature_memory_budget() == int(1.5 * 2**20)
    monkeypatch.setenv(runtime.FEATURE_MEMORY_VARIABLE, "-3")
    with pytest.raises(ConfigError, match=runtime.FEATURE_MEMORY_VARIABLE):
        runtime.feature_memory_budget()


def test_map_memory_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(runtime.MAP_MEMORY_VARIABLE, raising=False)
    assert 0 < runtime.map_memory_budget() <= runtime.DEFAULT_MAP_MEMORY_MB * 2**20
    monkeypatch.setenv(runtime.MAP_MEMORY_VARIABLE, "0")
    assert runtime.map_memory_budget() == 0
    monkeypatch.setenv(runtime.MAP_MEMORY_VARIABLE, "100")
    assert runtime.map_memory_budget() == 100 * 2**20
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun: 4 processes on this machine
    assert runtime.map_memory_budget() == 25 * 2**20
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    monkeypatch.setenv(runtime.MAP_MEMORY_VARIABLE, "lots")
    with pytest.raises(ConfigError, match=runtime.MAP_MEMORY_VARIABLE):
        runtime.map_memory_budget()


def test_release_free_memory_calls_malloc_trim_on_glibc_and_nothing_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ctypes.util
    import platform

    monkeypatch.setattr(runtime, "_malloc_trim", None)
    on_glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert runtime.release_free_memory() is on_glibc
    calls: list[int] = []
    monkeypatch.setattr(runtime, "_malloc_trim", lambda pad: calls.append(pad) or 1)
    assert runtime.release_free_memory() is True
    assert calls == [0]
    # No C library to be found (e.g. a static build): a no-op, not an error.
    monkeypatch.setattr(runtime, "_malloc_trim", None)
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    assert runtime.release_free_memory() is False


def test_releasing_returns_free_pages_every_so_many_items(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    calls: list[int] = []
    monkeypatch.setattr(runtime, "release_free_memory", lambda: calls.append(len(seen)) or True)
    for item in runtime.releasing(range(10), every=4):
        seen.append(item)
    assert seen == list(range(10))
    assert calls == [4, 8]  # after the 4th and the 8th item's work, not before it
