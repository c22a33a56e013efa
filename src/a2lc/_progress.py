"""Progress bars for long loops (hidden automatically when stderr is not a terminal)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress(
    iterable: Iterable[T], *, desc: str, total: int | None = None, unit: str = "img"
) -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm bar; ``disable=None`` hides it off a TTY."""
    from tqdm.auto import tqdm

    yield from tqdm(iterable, desc=desc, total=total, unit=unit, disable=None, leave=False)
