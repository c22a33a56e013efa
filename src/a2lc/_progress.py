"""Progress bars for long loops (hidden automatically when stderr is not a terminal)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress(
    iterable: Iterable[T],
    *,
    desc: str,
    total: int | None = None,
    unit: str = "img",
    enabled: bool = True,
) -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm bar when ``enabled``; the bar hides itself off a TTY."""
    if not enabled:
        yield from iterable
        return
    from tqdm.auto import tqdm

    yield from tqdm(iterable, desc=desc, total=total, unit=unit, disable=None, leave=False)
