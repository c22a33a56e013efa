"""Process-wide resources: how many CPU threads torch uses, how much memory caches may hold.

One place decides the number of torch threads (:func:`configure_threads`). In
order, the first that is set wins:

1. the ``threads`` argument (the CLI's ``--threads``);
2. ``A2LC_THREADS``, then ``OMP_NUM_THREADS``, then ``MKL_NUM_THREADS``;
3. the default: half the CPUs this process may run on (at least 1), lowered
   further by the load other processes put on the machine when it starts.

Why not all cores: torch's parallel regions wait for their slowest thread, so on
a machine where anything else runs, one descheduled thread stalls all of them
(measured on a 2-core machine under load: 4–5× slower than one thread). Half the
cores keeps most of the speed-up on an idle machine and stays out of that regime
on a shared one.

Results depend on the number of threads in their last bits (reductions are split
across threads), so a correction run records the count it started with and a
resumed run uses it again unless ``--threads`` or a variable says otherwise.

Tiny networks (the LCM MLP) run on one thread (:func:`torch_threads`): their
steps are a few µs of arithmetic each, and more threads only add dispatch and
synchronisation cost.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

from a2lc.errors import ConfigError

log = logging.getLogger(__name__)

THREAD_VARIABLES = ("A2LC_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
"""Environment variables that set the thread count, first one set wins."""
FEATURE_MEMORY_VARIABLE = "A2LC_FEATURE_MEMORY_MB"
"""Environment variable: MB of encoder features training may hold in memory."""
DEFAULT_FEATURE_MEMORY_MB = 4096
"""Cap of the in-memory feature budget (also at most a quarter of the machine's memory)."""
MAP_MEMORY_VARIABLE = "A2LC_MAP_MEMORY_MB"
"""Environment variable: MB of decoded maps a workspace may hold in memory."""
DEFAULT_MAP_MEMORY_MB = 1024
"""Cap of the decoded-map budget (also at most an eighth of the machine's memory)."""

RELEASE_EVERY = 64
"""Passes over the pool return the C heap's free pages after this many images
(:func:`releasing`): often enough that fragmentation cannot grow with the pool,
rarely enough that re-faulting those pages costs nothing measurable."""

_T = TypeVar("_T")

_requested: int | None = None
_configured: int | None = None
_origin: str = ""


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def default_threads(*, cpus: int | None = None, load: float | None = None) -> int:
    """Half of ``cpus`` (at least 1), and no more than the CPUs that ``load`` leaves idle."""
    cpus = available_cpus() if cpus is None else cpus
    if load is None:
        try:
            load = os.getloadavg()[0]
        except OSError:  # pragma: no cover - no load average on this OS
            load = 0.0
    idle = cpus - round(load)
    return max(1, min(cpus // 2, idle))


def threads_from_environment() -> tuple[int, str] | None:
    """``(threads, variable)`` from the first thread variable that is set, else None."""
    for name in THREAD_VARIABLES:
        raw = os.environ.get(name, "").strip()
        if not raw:
            continue
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not a whole number of threads") from None
        if value < 1:
            raise ConfigError(f"{name}={raw!r}: the number of threads must be at least 1")
        return value, name
    return None


def resolve_threads(threads: int | None = None) -> tuple[int, str]:
    """The thread count to use and where it came from (for the log)."""
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {threads}")
        return threads, "--threads"
    from_env = threads_from_environment()
    if from_env is not None:
        return from_env
    return default_threads(), f"default for {available_cpus()} CPUs"


def request_threads(threads: int | None) -> None:
    """Ask for ``threads`` (None: the default rules) without importing torch yet.

    The CLI calls this for ``--threads``; the next :func:`configure_threads`
    (made by every entry point that runs torch) applies it.
    """
    global _requested, _configured
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {threads}")
    _requested = threads
    _configured = None


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads once per process; returns the number in use.

    An explicit ``threads`` always applies. Without it, the number asked for by
    :func:`request_threads` or the environment applies at the first call, and
    later calls keep it, so every entry point that runs torch calls this.
    """
    global _configured, _origin
    if threads is None and _configured is not None:
        return _configured
    count, origin = resolve_threads(threads if threads is not None else _requested)
    _origin = origin
    import torch

    torch.set_num_threads(count)
    with contextlib.suppress(RuntimeError):  # only settable before the first parallel work
        torch.set_num_interop_threads(1)
    if _configured != count:
        log.debug("torch uses %d thread(s) (%s)", count, origin)
    _configured = count
    return count


def cpu_threads() -> int:
    """The number of threads torch uses (or would, before :func:`configure_threads`): the
    thread pools of numpy's BLAS and scikit-learn are held to it too, for the same
    reason (a shared machine stalls parallel regions)."""
    if _configured is not None:
        return _configured
    return resolve_threads(_requested)[0]


def threads_chosen_by_user() -> bool:
    """Whether the configured count came from ``--threads`` or a variable, not the default."""
    return _configured is not None and not _origin.startswith("default")


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` torch threads, then restore the previous number."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def feature_memory_budget() -> int:
    """Bytes of encoder features training may hold in memory (more are memory-mapped).

    ``A2LC_FEATURE_MEMORY_MB`` sets it; the default is a quarter of the machine's
    memory, at most :data:`DEFAULT_FEATURE_MEMORY_MB`.
    """
    return _memory_budget(FEATURE_MEMORY_VARIABLE, cap_mb=DEFAULT_FEATURE_MEMORY_MB, share=4)


def map_memory_budget() -> int:
    """Bytes of decoded segment, initial-label and ground-truth maps a workspace may hold.

    ``A2LC_MAP_MEMORY_MB`` sets it; the default is an eighth of the machine's memory,
    at most :data:`DEFAULT_MAP_MEMORY_MB`. Maps beyond it are decoded on every read.
    Under torchrun the processes of one machine (``LOCAL_WORLD_SIZE``) split it.
    """
    budget = _memory_budget(MAP_MEMORY_VARIABLE, cap_mb=DEFAULT_MAP_MEMORY_MB, share=8)
    try:
        processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        processes = 1
    return budget // processes


def _memory_budget(variable: str, *, cap_mb: int, share: int) -> int:
    """``variable`` in MB if set, else ``1/share`` of the machine's memory, at most ``cap_mb``."""
    raw = os.environ.get(variable, "").strip()
    if raw:
        try:
            megabytes = float(raw)
        except ValueError:
            raise ConfigError(f"{variable}={raw!r} is not a number of MB") from None
        if not megabytes >= 0:
            raise ConfigError(f"{variable}={raw!r} must be 0 or more")
        return int(megabytes * 2**20)
    default = cap_mb * 2**20
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return default
    return int(min(default, total // share))


_malloc_trim: object = None  # None: not looked up yet; False: not available


def release_free_memory() -> bool:
    """Return the C heap's free pages to the OS (glibc's ``malloc_trim(0)``).

    Passes over the pool allocate and free one image's arrays after another while
    small per-segment results stay alive between them; glibc then keeps the freed
    pages resident, and the process's memory grows with the pool although what it
    holds does not. Trimming between steps and every so many images of a pass keeps
    resident memory near what is live. Returns whether anything could be called
    (False off glibc, e.g. macOS, musl; with jemalloc preloaded the call is harmless
    and frees nothing).
    """
    global _malloc_trim
    if _malloc_trim is None:
        _malloc_trim = False
        with contextlib.suppress(OSError, AttributeError):
            import ctypes
            import ctypes.util

            name = ctypes.util.find_library("c")
            if name:
                function = ctypes.CDLL(name).malloc_trim
                function.argtypes = [ctypes.c_size_t]
                function.restype = ctypes.c_int
                _malloc_trim = function
    if _malloc_trim is False:
        return False
    _malloc_trim(0)  # type: ignore[operator]
    return True


def releasing(items: Iterable[_T], *, every: int = RELEASE_EVERY) -> Iterator[_T]:
    """``items``, returning free heap pages (:func:`release_free_memory`) after every
    ``every`` of them: for loops over the pool's images."""
    for count, item in enumerate(items, start=1):
        yield item
        if count % every == 0:
            release_free_memory()
