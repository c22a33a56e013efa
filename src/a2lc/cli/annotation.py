"""Commands for the people who answer: annotate, ls-backend, export-queries, import-answers."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from a2lc.cli._base import (
    MAX_LEASE_SECONDS,
    WORKSPACE_HELP,
    Command,
    _refuse_state,
    add_image_options,
    label_studio_token,
)
from a2lc.errors import A2LCError

if TYPE_CHECKING:
    from a2lc.interop.ls_loop import LoopSettings

COMMANDS = {
    "annotate": Command(
        "a local web app where people answer the open round's queries",
        "a2lc annotate -w work --port 8000    # open the URL it prints",
    ),
    "ls-backend": Command(
        "serve the open round to Label Studio as its ML backend (pre-filled queries in, "
        "answers recorded as they are submitted)",
        "a2lc ls-backend -w work --port 9090 --label-studio http://localhost:8080 --project 1",
    ),
    "export-queries": Command(
        "the open round's queries as Label Studio tasks", "a2lc export-queries -w work --out ls/"
    ),
    "import-answers": Command(
        "record answers from a Label Studio JSON export",
        "a2lc import-answers -w work --label-studio export.json",
    ),
}
"""This group's commands, as ``a2lc --help`` lists them."""


def register(
    add_command: Callable[..., argparse.ArgumentParser],
) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add this group's commands; returns their handlers by name."""
    from a2lc.workspace.annotation import DEFAULT_LEASE_SECONDS

    annotate = add_command("annotate")
    annotate.add_argument("--workspace", "-w", type=Path, required=True, help=WORKSPACE_HELP)
    annotate.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 exposes it)",
    )
    annotate.add_argument("--port", type=int, default=8000, help="TCP port (1..65535)")
    annotate.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="an address people open the app with (repeatable; needed with --host 0.0.0.0)",
    )
    annotate.add_argument(
        "--new-token",
        action="store_true",
        help="replace the app's secret token (the URL changes; links with the old one stop "
        "working): after a URL was shared too widely",
    )
    annotate.add_argument(
        "--lease-seconds",
        type=float,
        default=DEFAULT_LEASE_SECONDS,
        help="a query nobody answers within this goes back to the pool (a page that is "
        "closed or hidden gives its query back at once)",
    )

    backend = add_command("ls-backend")
    backend.add_argument("--workspace", "-w", type=Path, required=True, help=WORKSPACE_HELP)
    backend.add_argument(
        "--host", default="127.0.0.1", help="address to bind (127.0.0.1: this machine only)"
    )
    backend.add_argument("--port", type=int, default=9090, help="TCP port (1..65535)")
    backend.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="an address Label Studio reaches the backend by (repeatable; needed with --host "
        "0.0.0.0)",
    )
    backend.add_argument(
        "--basic-auth-user",
        metavar="NAME",
        help="require basic authentication as NAME, the password read from the "
        "A2LC_BACKEND_PASSWORD variable (Label Studio: the model's basic auth fields; "
        "required to listen beyond this machine)",
    )
    backend.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a browser origin (scheme://host:port) whose pages may call the backend "
        "(repeatable; by default every request from a web page is refused: Label Studio "
        "calls from its server)",
    )
    backend.add_argument(
        "--no-auth",
        action="store_true",
        help="listen beyond this machine without basic authentication (a network you trust)",
    )
    backend.add_argument(
        "--label-studio",
        metavar="URL",
        help="run the rounds for this Label Studio (with --project; its access token in the "
        "LABEL_STUDIO_API_KEY variable): each round's queries are put into the project as "
        "tasks, and when all are answered the next round runs",
    )
    backend.add_argument("--project", type=int, metavar="ID", help="the Label Studio project id")
    backend.add_argument(
        "--image-root",
        type=Path,
        help="with --label-studio: tasks name images relative to this folder (Label Studio's "
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT; default: absolute paths)",
    )
    backend.add_argument(
        "--poll-seconds",
        type=float,
        default=30.0,
        help="with --label-studio: how often to read the round's annotations from Label "
        "Studio (answers given while the backend was down)",
    )

    queries = add_command("export-queries")
    queries.add_argument("--workspace", "-w", type=Path, required=True, help=WORKSPACE_HELP)
    queries.add_argument(
        "--out", type=Path, required=True, help="folder for tasks.json and labeling_config.xml"
    )
    add_image_options(queries)

    answers = add_command("import-answers")
    answers.add_argument("--workspace", "-w", type=Path, required=True, help=WORKSPACE_HELP)
    answers.add_argument(
        "--label-studio",
        type=Path,
        required=True,
        metavar="EXPORT.json",
        help="Label Studio JSON or JSON_MIN export of the tasks from `a2lc export-queries`",
    )

    return {
        "annotate": _annotate,
        "ls-backend": _ls_backend,
        "export-queries": _export_queries,
        "import-answers": _import_answers,
    }


def _ls_backend(args: argparse.Namespace) -> int:
    from a2lc.workspace import Workspace

    if not 1 <= args.port <= 65535:
        raise A2LCError(f"--port must be 1..65535, got {args.port}")
    if (args.label_studio is None) != (args.project is None):
        raise A2LCError("--label-studio URL and --project ID go together")
    with Workspace.open(args.workspace, read_only=True) as ws:
        current = ws.open_round()
        if current is None and args.label_studio is None:
            raise A2LCError(
                f"{args.workspace} has no open round; start one with `a2lc run -w "
                f"{args.workspace} --oracle human`, then `a2lc export-queries` for Label "
                "Studio (or let the backend run the rounds: --label-studio URL --project ID)"
            )
        pending = ws.count_unanswered(current.round) if current else 0
    from a2lc.interop.ls_backend import (
        PASSWORD_VARIABLE,
        BackendAccess,
        check_exposure,
        serve_backend,
    )

    basic_auth = None
    if args.basic_auth_user is not None:
        password = os.environ.get(PASSWORD_VARIABLE, "")
        if not password:
            raise A2LCError(
                f"--basic-auth-user {args.basic_auth_user!r}: set its password in the "
                f"{PASSWORD_VARIABLE} variable (not on the command line, where others can read it)"
            )
        basic_auth = (args.basic_auth_user, password)
    for origin in args.allow_origin:
        if not re.fullmatch(r"https?://[^/\s]+", origin):
            raise A2LCError(f"--allow-origin {origin!r}: expected scheme://host[:port]")
    try:
        access = BackendAccess(origins=frozenset(args.allow_origin), basic_auth=basic_auth)
    except ValueError as exc:
        raise A2LCError(f"--basic-auth-user: {exc}") from None
    check_exposure(
        args.host, allow_hosts=tuple(args.allow_host), access=access, without_auth=args.no_auth
    )
    loop = _loop_settings(args)
    where = f"round {current.round}: {pending} queries open" if current else "no round open yet"
    runs = f"; it runs the rounds for project {args.project} at {args.label_studio}" if loop else ""
    print(
        f"{where}; Label Studio ML backend at http://{args.host}:{args.port} (Settings → "
        f"Model → Connect model){runs}. Ctrl-C stops it.",
        flush=True,
    )
    serve_backend(
        args.workspace,
        host=args.host,
        port=args.port,
        allow_hosts=tuple(args.allow_host),
        access=access,
        without_auth=args.no_auth,
        loop=loop,
    )
    return 0


def _loop_settings(args: argparse.Namespace) -> LoopSettings | None:
    """``--label-studio`` and ``--project``: the backend runs the rounds (checked first)."""
    if args.label_studio is None or args.project is None:
        return None
    if not args.poll_seconds > 0:
        raise A2LCError(f"--poll-seconds must be positive, got {args.poll_seconds}")
    token = label_studio_token()
    from a2lc.interop.ls_api import LabelStudioAPI
    from a2lc.interop.ls_loop import LoopSettings
    from a2lc.rounds import stored_run_config
    from a2lc.workspace import Workspace

    with Workspace.open(args.workspace, read_only=True) as ws:
        if stored_run_config(ws) is None:
            raise A2LCError(
                f"{args.workspace} has no run yet: start it with `a2lc run -w {args.workspace} "
                "--oracle human [--strategy S] [--rounds N]`; the backend continues it"
            )
    api = LabelStudioAPI(args.label_studio, token)
    api.project(args.project)  # reachable, the token valid, the project there
    return LoopSettings(
        api=api,
        project=args.project,
        image_root=args.image_root.resolve() if args.image_root else None,
        poll_seconds=args.poll_seconds,
    )


def _annotate(args: argparse.Namespace) -> int:
    from a2lc.workspace import Workspace
    from a2lc.workspace.review import ReviewDesk

    with Workspace.open(args.workspace) as ws:
        current = ws.open_round()
        to_review = ReviewDesk(ws).progress().left
        if current is None and not to_review:
            raise A2LCError(
                f"{args.workspace} has no open round and no automatic change to review; start "
                f"a round with `a2lc run -w {args.workspace} --oracle human` (it stops once the "
                "queries are recorded)"
            )
        pending = ws.count_unanswered(current.round) if current is not None else 0
    if not 0 < args.lease_seconds <= MAX_LEASE_SECONDS:  # also refuses nan and inf
        raise A2LCError(
            f"--lease-seconds must be a number of seconds in (0, {MAX_LEASE_SECONDS:.0f}], "
            f"got {args.lease_seconds}"
        )
    if not 1 <= args.port <= 65535:
        raise A2LCError(f"--port must be 1..65535, got {args.port}")
    from a2lc.web.access import LOOPBACK, WILDCARD, workspace_token
    from a2lc.web.app import serve

    if args.host in WILDCARD and not args.allow_host:
        raise A2LCError(
            f"--host {args.host} listens on every address: name the address people will open "
            "with --allow-host NAME (the app checks the Host header)"
        )
    with Workspace.open(args.workspace) as ws:
        token = workspace_token(ws, new=args.new_token)
    if args.new_token:
        print("a new token: URLs with the old one no longer work", file=sys.stderr)
    if args.host not in LOOPBACK:
        print(
            f"warning: binding {args.host}: other machines can reach this app; anyone with the "
            "URL below (its token) can answer queries",
            file=sys.stderr,
        )
    address = args.allow_host[0] if args.host in WILDCARD else args.host
    if current is not None:
        print(
            f"round {current.round}: {pending} queries to answer; open "
            f"http://{address}:{args.port}/?token={token} (Ctrl+C stops; answers are saved as "
            "they come)"
        )
    if to_review:
        print(
            f"{to_review} automatic changes to review; open "
            f"http://{address}:{args.port}/review?token={token}"
        )
    serve(
        args.workspace,
        host=args.host,
        port=args.port,
        lease_seconds=args.lease_seconds,
        allow_hosts=tuple(args.allow_host),
    )
    return 0


def _export_queries(args: argparse.Namespace) -> int:
    from a2lc.interop.label_studio import export_tasks
    from a2lc.workspace import Workspace

    _refuse_state(args.workspace, args.out, "--out")
    with Workspace.open(args.workspace, read_only=True) as ws:
        summary = export_tasks(
            ws, args.out, image_prefix=args.image_prefix, image_root=args.image_root
        )
    print(
        f"round {summary['round']}: {summary['tasks']} Label Studio tasks in {args.out}/tasks.json; "
        f"labeling config in {args.out}/labeling_config.xml"
    )
    return 0


def _import_answers(args: argparse.Namespace) -> int:
    from a2lc.interop.label_studio import import_answers
    from a2lc.workspace import Workspace

    with Workspace.open(args.workspace) as ws:
        summary = import_answers(ws, args.label_studio)
    print(
        f"round {summary['round']}: recorded {summary['answers']} answers; "
        f"{summary['unanswered']} queries still open"
        + (
            f"; {summary['already_recorded']} already recorded (skipped)"
            if summary["already_recorded"]
            else ""
        )
    )
    if summary.get("painted_outside_segments"):
        print(
            f"note: {summary['painted_outside_segments']} painted pixels were outside their "
            "segment and were left out (a2lc answers one segment at a time)",
            file=sys.stderr,
        )
    for problem in summary["refused"]:
        print(f"refused: {problem}", file=sys.stderr)
    return 0
