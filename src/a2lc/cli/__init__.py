"""The ``a2lc`` command line: one module per command group, assembled here.

``main(argv)`` is a plain function, so tests call the real CLI. Each group module
(:mod:`~a2lc.cli.workspace`, :mod:`~a2lc.cli.loop`, :mod:`~a2lc.cli.changes`,
:mod:`~a2lc.cli.annotation`,
:mod:`~a2lc.cli.exports`, :mod:`~a2lc.cli.bench`) lists its commands in ``COMMANDS``
(a one-line summary and an example each) and declares their options in
``register``, which imports the registries it offers as choices; handlers import
what they need when they run. As in pip, only the group of the command being run
builds its options, so ``a2lc --help`` imports no numpy.
"""

from __future__ import annotations

import argparse
import logging
import os
import sqlite3
import sys
from collections.abc import Callable, Sequence
from typing import Any

from a2lc._version import __version__
from a2lc.cli import annotation, bench, changes, exports, loop, workspace
from a2lc.cli._base import (
    EXAMPLE_HEADING,
    EXIT_ERROR,
    FILE_SYSTEM_ERRORS,
    Command,
    _HelpFormatter,
    _print_metrics,
    run_config_from_args,
    strategy_from_args,
)
from a2lc.errors import A2LCError, missing_extra

__all__ = [
    "_print_metrics",
    "build_parser",
    "command_parsers",
    "main",
    "run_config_from_args",
    "strategy_from_args",
]

GROUPS = (workspace, loop, changes, annotation, exports, bench)
"""The command groups, in the order ``a2lc --help`` lists them."""

ALL = "*"
"""``build_parser(ALL)``: every command's options (the CLI reference, tests)."""


def commands() -> dict[str, Command]:
    """Every command's summary and example, in ``a2lc --help``'s order."""
    return {name: command for group in GROUPS for name, command in group.COMMANDS.items()}


def _command_in(argv: Sequence[str]) -> str | None:
    """The command named in ``argv`` (after the global options), if any."""
    args = iter(argv)
    for arg in args:
        if arg == "--threads":
            next(args, None)
        elif not arg.startswith("-"):
            return arg
    return None


def build_parser(command: str | None = ALL) -> argparse.ArgumentParser:
    """The parser; only ``command``'s group gets its options (``ALL``: every group's)."""
    parser = argparse.ArgumentParser(
        prog="a2lc",
        description="Active and automated label correction for semantic segmentation.",
        epilog=f"{EXAMPLE_HEADING}\n  a2lc demo --temporary\n  a2lc run -w work --rounds 5 "
        "--oracle human\n\n`a2lc COMMAND --help` shows a command's options and an example.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"a2lc {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument(
        "--threads",
        type=int,
        help="CPU threads for torch (default: A2LC_THREADS or OMP_NUM_THREADS if set, else "
        "half the CPUs, fewer when the machine is busy)",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    summaries = commands()

    def add_command(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        summary, example = summaries[name]
        kwargs.setdefault("description", summary[0].upper() + summary[1:] + ".")
        sub = subparsers.add_parser(
            name,
            help=summary,
            epilog=EXAMPLE_HEADING + "\n" + "\n".join(f"  {line}" for line in example.splitlines()),
            formatter_class=_HelpFormatter,
            **kwargs,
        )
        # The global options also work after the command (`a2lc run ... --threads 2`).
        sub.add_argument(
            "-v",
            "--verbose",
            action="store_true",
            default=argparse.SUPPRESS,
            help="log debug messages",
        )
        sub.add_argument(
            "--threads",
            type=int,
            default=argparse.SUPPRESS,
            help="CPU threads for torch (as before the command)",
        )
        return sub

    for group in GROUPS:
        if command == ALL or command in group.COMMANDS:
            for name, handler in group.register(add_command).items():
                subparsers.choices[name].set_defaults(handler=handler)
        else:  # listed with its summary; its options are built only when it runs
            for name, (summary, _) in group.COMMANDS.items():
                subparsers.add_parser(name, help=summary)
    return parser


def command_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Each command's parser inside ``parser`` (as :func:`build_parser` made it), by name."""
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _parser() -> argparse.ArgumentParser:
    """Every command's parser (as :func:`build_parser` with ``ALL``)."""
    return build_parser(ALL)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 error, 2 usage)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_in(argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        from a2lc.runtime import request_threads

        request_threads(args.threads)
        handler: Callable[[argparse.Namespace], int] = args.handler
        code = handler(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handling below
        return code
    except A2LCError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except ModuleNotFoundError as exc:
        missing = missing_extra(exc)
        if missing is None:
            raise
        print(f"error: a2lc {args.command}: {missing}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        # The reader went away (`a2lc status --json | head`): stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
    except sqlite3.DatabaseError as exc:
        print(
            f"error: the workspace database failed ({exc}): is the disk full, the folder "
            "read-only, or the file damaged?",
            file=sys.stderr,
        )
        return EXIT_ERROR
    except OSError as exc:
        if exc.errno not in FILE_SYSTEM_ERRORS:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror}", file=sys.stderr)
        return EXIT_ERROR
