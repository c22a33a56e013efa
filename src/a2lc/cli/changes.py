"""Commands on the automatic changes: revert, and review them in Label Studio (listing is
in `a2lc status`; the annotation app reviews them at /review)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from a2lc.cli._base import (
    WORKSPACE_HELP,
    Command,
    _refuse_state,
    add_image_options,
    label_studio_token,
)
from a2lc.errors import A2LCError

if TYPE_CHECKING:
    from a2lc.interop.ls_api import LabelStudioAPI
    from a2lc.workspace import Workspace

COMMANDS = {
    "revert": Command(
        "take back a round's automatic changes (or one corrector's, or one class pair's)",
        "a2lc revert -w work --round 3 --dry-run\n"
        "a2lc revert -w work --round 3 --corrector lcm --from-class Road --to-class Sidewalk",
    ),
    "export-changes": Command(
        "automatic changes waiting for review as Label Studio tasks (the change as a "
        "prediction with its confidence)",
        "a2lc export-changes -w work --out ls-review/\n"
        "a2lc export-changes -w work --label-studio http://localhost:8080 --project 2",
    ),
    "import-reviews": Command(
        "record the verdicts of a Label Studio export of review tasks (accept, or revert to "
        "the class the reviewer gave)",
        "a2lc import-reviews -w work --label-studio export.json\n"
        "a2lc import-reviews -w work --label-studio http://localhost:8080 --project 2",
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
    export = add_command("export-changes")
    export.add_argument("--workspace", "-w", type=Path, required=True, help=WORKSPACE_HELP)
    export.add_argument("--out", type=Path, help="folder for tasks.json and labeling_config.xml")
    export.add_argument(
        "--label-studio",
        metavar="URL",
        help="instead of --out: add the tasks to --project of the Label Studio at URL (token "
        "in LABEL_STUDIO_API_KEY); changes the project already has are not added twice",
    )
    export.add_argument("--project", type=int, help="the Label Studio project id")
    export.add_argument("--round", type=int, help="only this round's changes")
    add_image_options(export)
    reviews = add_command("import-reviews")
    reviews.add_argument("--workspace", "-w", type=Path, required=True, help=WORKSPACE_HELP)
    reviews.add_argument(
        "--label-studio",
        required=True,
        metavar="EXPORT.json|URL",
        help="Label Studio JSON or JSON_MIN export of the tasks from `a2lc export-changes`, "
        "or the URL of a running Label Studio (with --project; token in LABEL_STUDIO_API_KEY)",
    )
    reviews.add_argument("--project", type=int, help="with a URL: the Label Studio project id")
    return {"revert": _revert, "export-changes": _export_changes, "import-reviews": _import}


def _label_studio(url: str, project: int | None) -> tuple[LabelStudioAPI, int]:
    """The API of the Label Studio at ``url`` (token from the environment), project checked."""
    from a2lc.interop.ls_api import LabelStudioAPI

    if project is None:
        raise A2LCError("a Label Studio URL needs --project ID")
    token = label_studio_token()
    api = LabelStudioAPI(url, token)
    api.project(project)  # reachable, the token valid, the project there
    return api, project


def _is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


def _export_changes(args: argparse.Namespace) -> int:
    from a2lc.interop.ls_review import export_review_tasks, push_review_tasks
    from a2lc.workspace import Workspace

    if (args.out is None) == (args.label_studio is None):
        raise A2LCError("give --out FOLDER or --label-studio URL --project ID (one of them)")
    if args.label_studio is not None:
        if not _is_url(args.label_studio):
            raise A2LCError(f"--label-studio {args.label_studio!r}: an http(s) URL")
        api, project = _label_studio(args.label_studio, args.project)
        with Workspace.open(args.workspace, read_only=True) as ws:
            pushed = push_review_tasks(
                ws,
                api,
                project,
                image_prefix=args.image_prefix,
                image_root=args.image_root,
                round_index=args.round,
            )
        print(
            f"project {project}: added {pushed['added']} review tasks "
            f"({pushed['already_there']} already there)"
        )
        return 0
    _refuse_state(args.workspace, args.out, "--out")
    with Workspace.open(args.workspace, read_only=True) as ws:
        summary = export_review_tasks(
            ws,
            args.out,
            image_prefix=args.image_prefix,
            image_root=args.image_root,
            round_index=args.round,
        )
    print(
        f"{summary['tasks']} review tasks in {args.out}/tasks.json (in the review queue's "
        f"random order); labeling config in {args.out}/labeling_config.xml"
    )
    return 0


def _import(args: argparse.Namespace) -> int:
    from a2lc.interop.ls_review import import_reviews, pull_reviews
    from a2lc.workspace import Workspace

    if _is_url(args.label_studio):
        api, project = _label_studio(args.label_studio, args.project)
        with Workspace.open(args.workspace) as ws:
            summary = pull_reviews(ws, api, project)
    else:
        if args.project is not None:
            raise A2LCError("--project goes with a Label Studio URL, not an export file")
        with Workspace.open(args.workspace) as ws:
            summary = import_reviews(ws, Path(args.label_studio))
    print(
        f"recorded {summary['recorded']} verdicts ({summary['accepted']} accepted, "
        f"{summary['reverted']} reverted in Label Studio)"
        + (
            f"; {summary['already_recorded']} already recorded (skipped)"
            if summary["already_recorded"]
            else ""
        )
    )
    return 0


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
