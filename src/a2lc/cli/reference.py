"""The CLI reference (``docs/cli.md``), generated from the parsers so it cannot drift.

    python -m a2lc.cli.reference --out docs/cli.md

A test compares the committed file with what this writes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

WIDTH = 88
"""Help text is wrapped at this width, whatever the terminal."""


@contextlib.contextmanager
def _columns(width: int) -> Iterator[None]:
    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)
    try:
        yield
    finally:
        if before is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = before


def reference_markdown() -> str:
    """``a2lc --help`` and every command's ``--help``, as one Markdown page."""
    from a2lc.cli import ALL, build_parser, command_parsers, commands

    with _columns(WIDTH):
        parser = build_parser(ALL)
        parsers = command_parsers(parser)
        parts = [
            "# CLI reference\n\n"
            "Generated from the parsers by `python -m a2lc.cli.reference --out docs/cli.md`; "
            "a test fails when this page is stale.\n\n",
            "## a2lc\n\n```text\n" + parser.format_help() + "```\n",
        ]
        for name, command in commands().items():
            parts.append(
                f"\n## a2lc {name}\n\n{command.summary[0].upper()}{command.summary[1:]}.\n\n"
                "```text\n" + parsers[name].format_help() + "```\n"
            )
    return "".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="write here (default: standard output)")
    args = parser.parse_args(argv)
    text = reference_markdown()
    if args.out is None:
        sys.stdout.write(text)
    else:
        from a2lc._atomic import atomic_write_text

        atomic_write_text(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
