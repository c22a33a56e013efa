"""Commands on the automatic changes: revert (listing is in `a2lc status`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from a2lc.cli._base import WORKSPACE_HELP, Command
from a2lc.errors import A2LCError

if TYPE_CHECKING:
    from a2lc.workspace import Workspace

COMMANDS = {
    "revert": Command(
        "take back a round's automatic changes (or one corrector's, or one class pair's)",
        "a2lc revert -w work --round 3 --dry-run\n"
        "a2lc revert -w work --round 3 --corrector lcm --from-class Road --to-class Sidewalk",
    ),
}
"""This group's commands, as ``a2lc --help`` lists them."""


def register(
    add_command: Callable[..., argparse.ArgumentParser],
) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add this group's commands; returns their handlers by name."""
    revert = add_command("revert")
    revert.add_argument("--workspace", "-w", type=Path, required=True, help=WORKSPACE_HELP)
    revert.add_argument(
        "--round", type=int, required=True, help="the round whose changes to revert"
    )
    revert.add_argument(
        "--corrector", choices=("lcm", "checked", "proven"), help="only this corrector's changes"
    )
    revert.add_argument("--from-class", help="only changes from this class (name or index)")
    revert.add_argument("--to-class", help="only changes to this class (name or index)")
    revert.add_argument(
        "--dry-run", action="store_true", help="print what would be reverted; change nothing"
    )
    return {"revert": _revert}


def class_index(ws: Workspace, value: str | None, option: str) -> int | None:
    """A class by name (case-insensitive) or index; None stays None."""
    if value is None:
        return None
    names = list(ws.class_names)
    lowered = [n.lower() for n in names]
    if value.lower() in lowered:
        return lowered.index(value.lower())
    if value.isdigit() and int(value) < len(names):
        return int(value)
    raise A2LCError(f"{option} {value!r}: not a class of this workspace ({', '.join(names)})")


def _revert(args: argparse.Namespace) -> int:
    from a2lc.workspace import Workspace

    with Workspace.open(args.workspace, read_only=args.dry_run) as ws:
        names = [*ws.class_names]
        result = ws.revert_automatic_changes(
            args.round,
            corrector=args.corrector,
            from_class=class_index(ws, args.from_class, "--from-class"),
            to_class=class_index(ws, args.to_class, "--to-class"),
            dry_run=args.dry_run,
        )
    pairs: dict[tuple[str, str, str], int] = {}
    for change in result.reverted:
        key = (change.corrector, names[change.before], names[change.after])
        pairs[key] = pairs.get(key, 0) + 1
    verb = "would revert" if args.dry_run else "reverted"
    print(f"round {args.round}: {verb} {len(result.reverted)} automatic changes")
    for (corrector, before, after), count in sorted(pairs.items()):
        print(f"  {corrector:<8s} {before} → {after}: {count} (back to {before})")
    for change, reason in result.skipped:
        print(
            f"  kept {change.image_id}/{change.segment_id} ({names[change.before]} → "
            f"{names[change.after]}): {reason}"
        )
    if result.id is not None:
        print(
            f"recorded as revert {result.id}; these changes will not be proposed again, and the "
            "next round's model trains on the restored labels"
        )
    return 0
