"""The ``a2lc`` command line: one module per command group, assembled here.

``main(argv)`` is a plain function, so tests call the real CLI. Each group module
(:mod:`~a2lc.cli.workspace`, :mod:`~a2lc.cli.loop`, :mod:`~a2lc.cli.annotation`,
:mod:`~a2lc.cli.exports`, :mod:`~a2lc.cli.bench`) declares its commands' arguments in
``register`` and their handlers, which import what they need when they run.
"""

from __future__ import annotations

import argparse
import logging
import os
import sqlite3
import sys
from collections.abc import Callable, Sequence
from typing import Any

from a2lc import __version__
from a2lc.cli import annotation, bench, exports, loop, workspace
from a2lc.cli._base import (
    EXIT_ERROR,
    FILE_SYSTEM_ERRORS,
    _HelpFormatter,
    _print_metrics,
    run_config_from_args,
    strategy_from_args,
)
from a2lc.errors import A2LCError, missing_extra
from a2lc.runtime import request_threads

__all__ = ["_print_metrics", "main", "run_config_from_args", "strategy_from_args"]

GROUPS = (workspace, loop, annotation, exports, bench)
"""The command groups, in the order ``a2lc --help`` lists them."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="a2lc",
        description="Active and automated label correction for semantic segmentation.",
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
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add_command(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        if "description" not in kwargs and "help" in kwargs:
            text = str(kwargs["help"])
            kwargs["description"] = text[0].upper() + text[1:] + "."
        sub = commands.add_parser(name, formatter_class=_HelpFormatter, **kwargs)
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

    handlers: dict[str, Callable[[argparse.Namespace], int]] = {}
    for group in GROUPS:
        handlers.update(group.register(add_command))
    for name, handler in handlers.items():
        commands.choices[name].set_defaults(handler=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 error, 2 usage)."""
    parser = _parser()
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
