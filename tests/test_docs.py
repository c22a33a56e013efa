"""The README and docs/ stay true (issue #25): short README, current CLI reference,
every printed `a2lc` command valid for today's parser, every link pointing somewhere."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_the_readme_is_short() -> None:
    assert (ROOT / "README.md").read_text().count("\n") <= 250


def test_the_cli_reference_is_current() -> None:
    from a2lc.cli.reference import reference_markdown

    assert (ROOT / "docs" / "cli.md").read_text() == reference_markdown(), (
        "docs/cli.md is stale: python -m a2lc.cli.reference --out docs/cli.md"
    )


def printed_commands(page: Path) -> list[tuple[int, list[str]]]:
    """Every ``a2lc`` command in the page's shell code blocks: (line, words after ``a2lc``).

    Continuation lines are joined; ``[...]`` marks an optional part (dropped); a
    command may follow ``torchrun ... -m``, environment assignments, ``&&`` or ``|``.
    """
    found = []
    text = page.read_text()
    for block in re.finditer(r"```(?:bash|sh|console)\n(.*?)```", text, re.S):
        first_line = text[: block.start()].count("\n") + 2
        joined = block.group(1).replace("\\\n", " ")
        for offset, line in enumerate(joined.splitlines()):
            for part in re.split(r"&&|\|\||;|\|", line.split(" #")[0]):
                words = shlex.split(re.sub(r"\[[^\]]*\]", "", part), comments=True)
                if "a2lc" not in words:
                    continue
                start = words.index("a2lc")
                if start and not (words[start - 1] == "-m" or "=" in words[start - 1]):
                    continue  # `pip install a2lc`, `cd a2lc` and the like
                found.append((first_line + offset, words[start + 1 :]))
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_printed_command_parses(page: Path) -> None:
    from a2lc.cli import ALL, build_parser

    parser = build_parser(ALL)
    bad = []
    for line, words in printed_commands(page):
        try:
            parser.parse_args(words)
        except SystemExit as exc:
            if exc.code != 0:
                bad.append(f"{page.name}:{line}: a2lc {' '.join(words)}")
    assert bad == []


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_points_somewhere(page: Path) -> None:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    bad = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            bad.append(target)
        elif anchor and linked.suffix == ".md":
            prose = re.sub(r"```.*?```", "", linked.read_text(), flags=re.S)
            headings = re.findall(r"^#+ (.*)$", prose, re.M)
            if anchor not in {_anchor(h) for h in headings}:
                bad.append(target)
    assert bad == [], page.name
