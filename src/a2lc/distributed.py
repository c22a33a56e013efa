"""Sharding work across processes started by ``torchrun`` (torch.distributed).

A :class:`Shard` says which pool images this process handles (image ``i`` goes
to rank ``i mod world``) and how to gather per-image results from every rank
(``gather``) or on rank 0 only (``to_writer``). Results are merged in pool order,
so a sharded step computes exactly what one process computes. Rank 0 is the only
writer (:func:`is_writer`); :func:`synchronise` is the barrier between its writes
and the other ranks' reads, :func:`from_writer` hands its result to every rank.
Without torchrun there is no shard and everything runs in one process, as before.
Data-parallel training is :func:`a2lc.models.training.train` with a shard.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from a2lc.errors import ConfigError

T = TypeVar("T")


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class Shard:
    """This process's part of a sharded pass: ``rank`` of ``world``; ``gather`` returns,
    on every rank, the list of every rank's object (rank order); ``barrier`` waits
    until every rank has reached it; ``local_world``: processes on this machine
    (they share its memory)."""

    rank: int
    world: int
    gather: Callable[[Any], list[Any]]
    barrier: Callable[[], None] = _nothing
    local_world: int = 1
    collect: Callable[[Any], list[Any] | None] | None = None
    """Like ``gather`` but only rank 0 receives the list (None elsewhere): what only
    rank 0 needs is not held on every rank. Defaults to ``gather``."""

    def to_writer(self, value: Any) -> list[Any] | None:
        """Every rank's ``value`` (rank order) on rank 0; None on the others."""
        if self.collect is not None:
            return self.collect(value)
        found = self.gather(value)
        return found if self.writer else None

    def owns(self, index: int) -> bool:
        """Whether pool image ``index`` is this process's."""
        return index % self.world == self.rank

    @property
    def writer(self) -> bool:
        """Rank 0 alone writes the workspace and checkpoints."""
        return self.rank == 0


def torch_shard() -> Shard | None:
    """The shard of an initialised torch.distributed process group (None without one)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return None

    def gather(value: Any) -> list[Any]:
        found: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(found, value)
        return found

    def collect(value: Any) -> list[Any] | None:
        writer = dist.get_rank() == 0
        found: list[Any] | None = [None] * dist.get_world_size() if writer else None
        dist.gather_object(value, found, dst=0)
        return found

    local = int(os.environ.get("LOCAL_WORLD_SIZE", dist.get_world_size()))
    return Shard(
        dist.get_rank(), dist.get_world_size(), gather, dist.barrier, max(1, local), collect
    )


def init_from_environment() -> Shard | None:
    """Join the process group ``torchrun`` describes in the environment (gloo on CPU,
    NCCL with CUDA); None when not started by torchrun or with one process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        if torch.cuda.is_available():
            # One GPU per process on each machine; "cuda" then means this rank's GPU.
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group(backend="nccl", timeout=_timeout())
        else:
            dist.init_process_group(backend="gloo", timeout=_timeout())
    return torch_shard()


TIMEOUT_VARIABLE = "A2LC_DISTRIBUTED_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 7200
"""How long a rank waits for the others at a collective. The other ranks wait while
rank 0 alone works (LCM, the checked corrector, writing a round, the flip regimes'
pool-wide solve), so the default is longer than torch's 30 minutes. A rank that
dies does not make the others wait that long: torchrun stops them."""


def _timeout() -> Any:
    from datetime import timedelta

    raw = os.environ.get(TIMEOUT_VARIABLE, "").strip()
    try:
        seconds = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        raise ConfigError(f"{TIMEOUT_VARIABLE}={raw!r} is not a number of seconds") from None
    if seconds <= 0:
        raise ConfigError(f"{TIMEOUT_VARIABLE}={raw!r} must be positive")
    return timedelta(seconds=seconds)


def share(items: Sequence[T], shard: Shard | None) -> list[T]:
    """The items this process handles: item ``i`` is rank ``i mod world``'s (all of
    them without a shard)."""
    return [item for i, item in enumerate(items) if shard is None or shard.owns(i)]


def is_writer(shard: Shard | None) -> bool:
    """Whether this process writes (one process, or rank 0 of several)."""
    return shard is None or shard.writer


def synchronise(shard: Shard | None) -> None:
    """Wait for every rank (nothing without a shard): after rank 0 writes, before others read."""
    if shard is not None:
        shard.barrier()


def from_writer(shard: Shard | None, value: Any) -> Any:
    """Rank 0's ``value`` on every rank (a collective, so every rank waits for rank 0;
    the others pass anything, e.g. None). Without a shard: ``value``."""
    return value if shard is None else shard.gather(value)[0]


def shutdown(shard: Shard | None) -> None:
    """Leave the process group cleanly: wait for every rank, then destroy it (a rank that
    exits while another still talks to the store aborts the run)."""
    if shard is None:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
