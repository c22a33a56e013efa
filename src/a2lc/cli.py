"""The ``a2lc`` command line. ``main(argv)`` is a plain function, so tests call the real CLI."""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import re
import sqlite3
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from a2lc import __version__
from a2lc.acquisition import ACQUISITIONS
from a2lc.data.readers import FORMATS, load_dataset
from a2lc.distributed import Shard, share
from a2lc.errors import A2LCError, missing_extra
from a2lc.models.config import MODELS
from a2lc.pseudo_labels.grounded_sam import (
    DEFAULT_BOX_BATCH,
    DEFAULT_TEXT_THRESHOLD,
    PAPER_BOX_THRESHOLD,
)
from a2lc.runtime import request_threads
from a2lc.strategies import CORRECTORS, DEFAULT_STRATEGY, PRESETS, STRATEGIES
from a2lc.workspace.annotation import DEFAULT_LEASE_SECONDS

if TYPE_CHECKING:
    from a2lc.correction.learned import LearnedConfig
    from a2lc.interop.ls_loop import LoopSettings
    from a2lc.rounds import RunConfig
    from a2lc.workspace import Workspace

log = logging.getLogger("a2lc")

FILE_SYSTEM_ERRORS = {
    errno.ENOSPC,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.EDQUOT,
    errno.EFBIG,  # a file-size limit (ulimit -f) below what is written
}
"""OSErrors that are the machine's state, not a bug: reported in one line."""
MAX_LEASE_SECONDS = 86_400.0
"""A lease longer than a day would lock a query away for good."""
EXIT_USAGE = 2
EXIT_ERROR = 1


WORKSPACE_HELP = "the workspace folder"
DEMO_SEED_IMAGES = 5
"""Ground-truth images of the demo's seed model on a real dataset (as the benchmarks)."""
MAX_ID_LIST_BYTES = 16 * 1024 * 1024
"""An @FILE of image ids larger than this is refused before it is read."""


def _seed_images(text: str) -> int | tuple[str, ...] | None:
    """``--seed-images``: a count, comma-separated ids, or ``@FILE`` (one id per line)."""
    from a2lc.data.sample import unsafe_id_reason
    from a2lc.pseudo_labels.pipeline import parse_seed_images

    if text.startswith("@"):
        path = Path(text[1:])
        try:
            if path.stat().st_size > MAX_ID_LIST_BYTES:
                raise argparse.ArgumentTypeError(
                    f"{path}: larger than {MAX_ID_LIST_BYTES // 2**20} MiB, not a list of image ids"
                )
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise argparse.ArgumentTypeError(f"{path}: cannot read the id list ({exc})") from None
        # One id per line; every line is an id, even one that looks like a number.
        lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1)]
        ids = tuple(line for _, line in lines if line)
        if not ids:
            raise argparse.ArgumentTypeError(f"{path}: no image ids in the file")
        bad = [n for n, line in lines if line and unsafe_id_reason(line) is not None]
        if bad:  # (its content is not repeated: the file may not be an id list at all)
            raise argparse.ArgumentTypeError(
                f"{path}: line {bad[0]} is not an image id (a path separator or a control "
                f"character; {len(bad)} such line(s)): one image id per line"
            )
        return ids
    value = parse_seed_images(text)
    if value is None:
        raise argparse.ArgumentTypeError(
            "empty: give a count, ID,ID,... or @FILE (leave the option out for the default)"
        )
    if value == 0:
        raise argparse.ArgumentTypeError("a count of seed images must be at least 1")
    return value


class _HelpFormatter(argparse.HelpFormatter):
    """Shows every option's default, unless its help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" not in text.lower()
            and action.option_strings
            and not (default is None or default is False or default == argparse.SUPPRESS)
            and default != []
            and not action.required
        ):
            text += " (default: %(default)s)"
        return text


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

    init = add_command("init", help="create a workspace from a dataset (and initial maps)")
    init.add_argument("--workspace", "-w", type=Path, required=True, help="new workspace folder")
    init.add_argument("--data", type=Path, required=True, help="dataset root folder")
    init.add_argument("--split", default="train", help="split to correct (default: train)")
    init.add_argument(
        "--format",
        default="auto",
        choices=["auto", *FORMATS.names()],
        help="dataset layout (default: auto)",
    )
    init.add_argument(
        "--segments", type=Path, help="folder of <image id>.png segment maps (0 = none)"
    )
    init.add_argument(
        "--labels",
        type=Path,
        help="folder of <image id>.png initial label maps (255 = none); without --segments, "
        "each region of one label becomes a segment (cut where large)",
    )
    init.add_argument(
        "--source", default="user", help="where the initial labels come from (recorded)"
    )

    status = add_command("status", help="summarise a workspace")
    status.add_argument("--workspace", "-w", type=Path, required=True, help=WORKSPACE_HELP)
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.add_argument(
        "--data-miou", action="store_true", help="also measure label quality (needs ground truth)"
    )

    score = add_command(
        "score", help="score the pool from saved probabilities and record the queries"
    )
    score.add_argument("--workspace", "-w", type=Path, required=True, help=WORKSPACE_HELP)
    score.add_argument(
        "--probs", type=Path, required=True, help="folder of <image id>.npy/.npz C×H×W maps"
    )
    score.add_argument("--budget", type=int, required=True, help="segments to query this round")
    score.add_argument(
        "--acquisition",
        "--strategy",
        dest="strategy",
        default="abc",
        choices=ACQUISITIONS.names(),
        help="acquisition function, as `a2lc run --acquisition` (--strategy: the old name "
        "here; in `run` a strategy is an acquisition and a corrector) (default: abc)",
    )
    score.add_argument("--seed", type=int, default=0, help="seed for the random strategy")

    correct = add_command("correct", help="answer the open round's queries and close it")
    correct.add_argument("--workspace", "-w", type=Path, required=True, help=WORKSPACE_HELP)
    correct.add_argument(
        "--oracle", choices=["gt"], default="gt", help="gt: simulated annotator from ground truth"
    )

    pseudo = add_command(
        "pseudo-label",
        help="make initial segments and labels (Grounded SAM, or offline sources with a seed model)",
    )
    pseudo.add_argument(
        "--workspace",
        "-w",
        type=Path,
        help="write the result into this workspace as initial labels",
    )
    pseudo.add_argument(
        "--data", type=Path, help="grounded-sam without a workspace: the dataset folder ..."
    )
    pseudo.add_argument("--split", default="train", help="... its split ...")
    pseudo.add_argument(
        "--out", type=Path, help="... and where segments/ and labels/ go (for `a2lc init`)"
    )
    pseudo.add_argument(
        "--source",
        choices=["grounded-sam", "gt-proxy", "superpixels"],
        default="superpixels",
        help="grounded-sam: Grounding DINO boxes + SAM masks (the paper's); gt-proxy: from "
        "ground truth (benchmarks only); superpixels: SLIC",
    )
    sam = pseudo.add_argument_group("grounded-sam")
    sam.add_argument(
        "--detector", type=Path, help="local Grounding DINO folder (transformers format)"
    )
    sam.add_argument("--segmenter", type=Path, help="local SAM folder (transformers format)")
    sam.add_argument(
        "--box-threshold", type=float, default=PAPER_BOX_THRESHOLD, help="(paper: 0.2)"
    )
    sam.add_argument(
        "--text-threshold",
        type=float,
        default=DEFAULT_TEXT_THRESHOLD,
        help="minimum token probability of the matched phrase",
    )
    sam.add_argument(
        "--prompts",
        type=Path,
        metavar="FILE.json",
        help='class name → prompt phrase, e.g. {"traffic_light": "traffic light"}',
    )
    sam.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    sam.add_argument(
        "--box-batch", type=int, default=DEFAULT_BOX_BATCH, help="boxes per SAM decoder call"
    )
    pseudo.add_argument(
        "--noise",
        choices=["seed", "detector-like", "correlated"],
        default="seed",
        help="seed: labels from the seed model's predictions; detector-like (gt-proxy only): "
        "ground-truth classes flipped to confusable ones at rates solved for a target initial "
        "IoU; correlated (gt-proxy only): the same rates, but segments that look like another "
        "class are flipped to it (default: seed)",
    )
    pseudo.add_argument(
        "--noise-target",
        type=Path,
        metavar="FILE.json",
        help="detector-like, correlated: class name → target initial IoU in %% (default: the "
        "paper's Grounded SAM IoUs, for CamVid's classes)",
    )
    pseudo.add_argument(
        "--seed-images",
        type=_seed_images,
        default=None,
        metavar="N|ID,ID|@FILE",
        help="the seed model's ground-truth images: a count (drawn by --seed), image ids, or "
        "@FILE with one id per line (default: every pool image that has ground truth)",
    )
    pseudo.add_argument("--seed", type=int, default=0, help="seed of the seed images and noise")
    pseudo.add_argument(
        "--min-confidence",
        type=float,
        default=0.5,
        help="segments the seed model is less sure about stay uncovered",
    )
    pseudo.add_argument(
        "--seed-epochs", type=int, default=40, help="training epochs of the seed model"
    )
    pseudo.add_argument(
        "--superpixels",
        type=int,
        default=150,
        help="superpixels: SLIC superpixels per image (250: purer segments, about 1.6× as many)",
    )
    pseudo.add_argument(
        "--no-adaptive",
        action="store_true",
        help="superpixels: keep SLIC's superpixels whole (default: cut each where the seed "
        "model's predicted class changes, and cut again finer where it is unsure)",
    )
    pseudo.add_argument(
        "--refine-below",
        type=float,
        default=0.8,
        help="superpixels: a segment whose mean seed-model confidence is below this is cut "
        "again, finer (0: never)",
    )
    pseudo.add_argument(
        "--refine-factor",
        type=float,
        default=3.5,
        help="superpixels: ... into parts this many times smaller than a superpixel",
    )
    pseudo.add_argument(
        "--cache", type=Path, help="folder for cached encoder features (default: in the workspace)"
    )

    run = add_command(
        "run",
        help="run or resume the correction loop",
        description="Run or resume the correction loop. Under torchrun "
        "(`torchrun --nproc-per-node N -m a2lc run ...`) the ranks share prediction, "
        "scoring and training (DDP); rank 0 alone writes the workspace.",
    )
    run.add_argument("--workspace", "-w", type=Path, required=True, help=WORKSPACE_HELP)
    _strategy_options(run)
    run.add_argument(
        "--preset", choices=PRESETS.names(), help="the paper's budget, rounds and LCM thresholds"
    )
    run.add_argument("--rounds", type=int, help="rounds (default 5)")
    run.add_argument(
        "--budget",
        type=int,
        help="segments queried per round (default: 4%% of the pool's segments, printed "
        "before the first round)",
    )
    run.add_argument("--thresholds", help="LCM confidence thresholds per round, comma-separated")
    run.add_argument(
        "--oracle",
        choices=["gt", "human"],
        default="gt",
        help="gt: simulated annotator; human: stop for people's answers",
    )
    run.add_argument(
        "--exact-answers",
        action="store_true",
        help="--oracle gt: the simulated annotator also paints the pixels its majority answer "
        "leaves wrong, as a person splitting mixed segments in the app (default: majority rule)",
    )
    run.add_argument("--eval-split", help="split for model mIoU (e.g. val)")
    run.add_argument("--seed", type=int, default=0, help="seed of training, LCM and random scores")
    run.add_argument("--epochs", type=int, default=6, help="training epochs per round")
    run.add_argument(
        "--model",
        default="efficientnet-lite0",
        choices=MODELS.names(),
        help="segmentation model",
    )
    run.add_argument(
        "--weights", default="imagenet", help="imagenet, none, or a path to encoder weights"
    )
    run.add_argument("--fine-tune", action="store_true", help="train the encoder too (slow on CPU)")
    run.add_argument(
        "--no-feature-cache",
        action="store_true",
        help="run the frozen encoder on every batch instead of caching its features (no cache "
        "files; cheaper on a GPU than reading them back)",
    )
    run.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    run.add_argument(
        "--cache", type=Path, help="folder for cached encoder features (default: in the workspace)"
    )
    run.add_argument("--report", type=Path, help="write an HTML report here when the run stops")
    run.add_argument(
        "--min-precision",
        type=float,
        default=0.9,
        help="proven corrector: apply only a slice whose precision's 95%% lower bound reaches "
        "this (default: 0.9)",
    )
    run.add_argument(
        "--explore-share",
        type=float,
        default=0.05,
        help="learned acquisition: share of each round's budget drawn uniformly at random "
        "(default: 0.05)",
    )

    annotate = add_command(
        "annotate", help="a local web app where people answer the open round's queries"
    )
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

    backend = add_command(
        "ls-backend",
        help="serve the open round to Label Studio as its ML backend (pre-filled queries in, "
        "answers recorded as they are submitted)",
    )
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

    export = add_command(
        "export", help="write the corrected dataset: palette PNGs, CVAT masks or COCO panoptic"
    )
    export.add_argument("--workspace", "-w", type=Path, required=True, help=WORKSPACE_HELP)
    export.add_argument("--out", type=Path, required=True, help="folder for the exported labels")
    export.add_argument(
        "--format",
        choices=["png", "cvat", "coco-panoptic", "fiftyone"],
        default="png",
        help="png: palette PNGs + classes.json; cvat: Segmentation mask 1.1 (the folder, its "
        "upload zip and CVAT for images 1.1 XML with masks); coco-panoptic: PNG + "
        "segments_info JSON; fiftyone: ImageSegmentationDirectory (class-id PNGs + "
        "mask_targets.json)",
    )
    export.add_argument(
        "--scores",
        action="store_true",
        help="fiftyone: also each segment's probability that its label is wrong, from the "
        "latest model (1 − its mean probability of the label), as heatmaps + scores.json",
    )
    export.add_argument(
        "--panoptic-segments",
        choices=["standard", "segments"],
        default="standard",
        help="coco-panoptic: standard (the default) merges each stuff class into one segment "
        "and splits thing classes into connected regions, as panoptic metrics expect; "
        "segments writes one panoptic segment per a2lc segment",
    )

    queries = add_command("export-queries", help="the open round's queries as Label Studio tasks")
    queries.add_argument("--workspace", "-w", type=Path, required=True, help=WORKSPACE_HELP)
    queries.add_argument(
        "--out", type=Path, required=True, help="folder for tasks.json and labeling_config.xml"
    )
    queries.add_argument(
        "--image-prefix",
        default="/data/local-files/?d=",
        help="put before each image's path to form its URL (default: Label Studio local files)",
    )
    queries.add_argument(
        "--image-root",
        type=Path,
        help="write image paths relative to this folder: Label Studio's "
        "LOCAL_FILES_DOCUMENT_ROOT (default: absolute paths)",
    )

    answers = add_command("import-answers", help="record answers from a Label Studio JSON export")
    answers.add_argument("--workspace", "-w", type=Path, required=True, help=WORKSPACE_HELP)
    answers.add_argument(
        "--label-studio",
        type=Path,
        required=True,
        metavar="EXPORT.json",
        help="Label Studio JSON or JSON_MIN export of the tasks from `a2lc export-queries`",
    )

    labels = add_command(
        "import-labels", help="initial segments and labels from CVAT masks or COCO panoptic"
    )
    labels.add_argument("--workspace", "-w", type=Path, required=True, help=WORKSPACE_HELP)
    source = labels.add_mutually_exclusive_group(required=True)
    source.add_argument("--cvat", type=Path, metavar="DIR", help="a Segmentation mask 1.1 export")
    source.add_argument(
        "--coco-panoptic", type=Path, metavar="FILE.json", help="a COCO panoptic JSON"
    )

    report = add_command("report", help="write an HTML report of a workspace")
    report.add_argument("--workspace", "-w", type=Path, required=True, help=WORKSPACE_HELP)
    report.add_argument("--out", type=Path, required=True, help="the HTML file to write")

    bench = add_command("bench", help="benchmark strategies × seeds on a dataset, with a report")
    bench.add_argument("--data", type=Path, required=True, help="dataset root folder")
    bench.add_argument("--pool-split", default="train", help="split to correct")
    bench.add_argument(
        "--pool-prefix",
        default="",
        help="only the pool images whose id starts with this (e.g. one CamVid video sequence: "
        "0001TP)",
    )
    bench.add_argument("--eval-split", default="val", help="split for model mIoU")
    bench.add_argument(
        "--source",
        "--pseudo",
        dest="pseudo",
        choices=["gt-proxy", "superpixels"],
        default="gt-proxy",
        help="where the initial segments come from, as `a2lc pseudo-label --source` "
        "(--pseudo: the old name)",
    )
    bench.add_argument(
        "--noise",
        default="seed",
        help="noise regimes, comma-separated: seed, detector-like, correlated (see `a2lc "
        "pseudo-label`; default: seed)",
    )
    bench.add_argument(
        "--noise-target",
        type=Path,
        metavar="FILE.json",
        help="detector-like, correlated: class name → target initial IoU in %%",
    )
    bench.add_argument(
        "--seed-images", type=int, default=5, help="ground-truth images of the seed model"
    )
    bench.add_argument("--rounds", type=int, default=5, help="correction rounds")
    bench.add_argument("--budget", type=int, help="segments per round (default: 4%% of the pool)")
    bench.add_argument(
        "--strategies",
        default="a2lc,alc,random",
        help="strategies, comma-separated (named or ACQUISITION+CORRECTOR)",
    )
    bench.add_argument("--seeds", default="1,2,3", help="seeds, comma-separated")
    bench.add_argument("--epochs", type=int, default=6, help="training epochs per round")
    bench.add_argument(
        "--out", type=Path, required=True, help="results folder (a rerun resumes it)"
    )

    demo = add_command("demo", help="run the whole loop on a small example and write a report")
    demo.add_argument(
        "--out",
        type=Path,
        default=Path("a2lc-demo"),
        help="output folder; a rerun resumes it",
    )
    demo.add_argument(
        "--temporary",
        action="store_true",
        help="write to a new temporary folder instead of --out (it is kept; its path is printed)",
    )
    demo.add_argument(
        "--data", type=Path, help="a dataset (e.g. the CamVid copy) instead of generated scenes"
    )
    demo.add_argument("--rounds", type=int, default=3, help="correction rounds")
    demo.add_argument("--budget", type=int, help="segments per round (default: 4%% of the pool)")
    demo.add_argument("--images", type=int, default=40, help="generated images (without --data)")
    demo.add_argument("--epochs", type=int, default=6, help="training epochs per round")
    _strategy_options(demo)
    return parser


def _strategy_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--strategy",
        default=DEFAULT_STRATEGY,
        help=f"a named strategy ({', '.join(STRATEGIES.names())}) or ACQUISITION+CORRECTOR "
        f"(default: {DEFAULT_STRATEGY}, see the README's benchmark)",
    )
    parser.add_argument(
        "--acquisition",
        help=f"acquisition function, overriding the strategy's ({', '.join(ACQUISITIONS.names())})",
    )
    parser.add_argument(
        "--corrector",
        help=f"automatic corrector, overriding the strategy's ({', '.join(CORRECTORS.names())})",
    )


def strategy_from_args(args: argparse.Namespace) -> str:
    """The strategy name from ``--strategy`` and the ``--acquisition``/``--corrector`` overrides."""
    from a2lc.strategies import compose, resolve_strategy

    strategy = resolve_strategy(args.strategy)
    if args.acquisition is None and args.corrector is None:
        return strategy.name
    name = compose(args.acquisition or strategy.acquisition, args.corrector or strategy.corrector)
    return resolve_strategy(name).name


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
        handler = _HANDLERS[args.command]
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


def _init(args: argparse.Namespace) -> int:
    from a2lc.workspace import Workspace

    dataset = load_dataset(args.data, split=args.split, format=args.format, strict=False)
    with Workspace.create(
        args.workspace,
        dataset,
        segments_dir=args.segments,
        labels_dir=args.labels,
        source=args.source,
    ) as ws:
        print(
            f"created workspace {ws.path}: {len(ws.samples)} images, {ws.num_segments()} segments"
        )
        _print_status(_summary(ws))
    return 0


@contextlib.contextmanager
def _rank_workspace(path: Path, shard: Shard | None) -> Iterator[Workspace]:
    """The workspace as this rank of a torchrun job sees it: rank 0 (or a single
    process) opens it for writing, first, since it may roll back an interrupted
    import; the other ranks then open it read-only."""
    from a2lc.distributed import synchronise
    from a2lc.workspace import Workspace

    if shard is None or shard.writer:
        with Workspace.open(path) as ws:
            synchronise(shard)
            yield ws
        return
    logging.getLogger("a2lc").setLevel(logging.WARNING)  # rank 0 reports
    synchronise(shard)
    with Workspace.open(path, read_only=True) as ws:
        yield ws


def _distributed(
    command: Callable[[argparse.Namespace, Shard | None], int],
) -> Callable[[argparse.Namespace], int]:
    """Run ``command`` as one rank of a torchrun job (joins the process group the
    environment describes; a single process without torchrun), leaving it cleanly."""

    def run(args: argparse.Namespace) -> int:
        from a2lc.distributed import init_from_environment, shutdown

        shard = init_from_environment()
        try:
            return command(args, shard)
        finally:
            shutdown(shard)

    return run


def _status(args: argparse.Namespace) -> int:
    from a2lc.steps import data_miou
    from a2lc.workspace import Workspace

    with Workspace.open(args.workspace, read_only=True) as ws:
        summary = _summary(ws)
        if args.data_miou and not ws.measured_ids and ws.ground_truth_ids:
            from a2lc.report import NO_MEASURE_NOTE

            summary["data_miou_note"] = NO_MEASURE_NOTE
        elif args.data_miou:
            acc = data_miou(ws)
            summary["data_miou"] = acc.miou
            summary["data_miou_images"] = len(ws.measured_ids)
            summary["data_iou"] = {
                c.name: float(v) for c, v in zip(ws.dataset.classes, acc.iou, strict=True)
            }
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        _print_status(summary)
    return 0


def _score(args: argparse.Namespace, shard: Shard | None) -> int:
    """Under torchrun every rank scores its share of the images; rank 0 alone writes."""
    from a2lc.steps import ScoreConfig, probability_folder_loader, score_round

    writer = shard is None or shard.writer
    with _rank_workspace(args.workspace, shard) as ws:
        loader = probability_folder_loader(ws, args.probs)
        round_index = score_round(
            ws,
            loader,
            config=ScoreConfig(strategy=args.strategy, budget=args.budget, seed=args.seed),
            show_progress=writer,
            shard=shard,
        )
        if round_index is None:
            return 0
        queries = ws.queries(round_index)
        print(f"round {round_index}: recorded {len(queries)} queries ({args.strategy})")
        for query in queries[:10]:
            print(
                f"  #{query.rank:<4d} {query.image_id}/{query.segment_id}  score {query.score:.4g}"
            )
        if len(queries) > 10:
            print(f"  ... and {len(queries) - 10} more")
    return 0


def _correct(args: argparse.Namespace) -> int:
    from a2lc.steps import answer_with_oracle
    from a2lc.workspace import Workspace

    with Workspace.open(args.workspace) as ws:
        current = ws.open_round()
        if current is None:
            print("no open round: run `a2lc score` first", file=sys.stderr)
            return EXIT_ERROR
        transitions = answer_with_oracle(ws, current.round)
        ws.close_round(current.round)
        answered = sum(n for row in transitions.values() for n in row.values())
        changed = sum(n for b, row in transitions.items() for a, n in row.items() if a != b)
        print(f"round {current.round}: answered {answered} queries, {changed} changed class")
    return 0


def _grounded_sam_config(args: argparse.Namespace, class_names: Sequence[str]) -> Any:
    from a2lc.pseudo_labels.grounded_sam import GroundedSamConfig, prompt_phrases

    if args.detector is None or args.segmenter is None:
        raise A2LCError(
            "--source grounded-sam needs --detector DIR and --segmenter DIR (local model folders)"
        )
    for name in ("box_threshold", "text_threshold"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise A2LCError(f"--{name.replace('_', '-')} must be in 0..1")
    if args.box_batch < 1:
        raise A2LCError("--box-batch must be at least 1")
    prompts: dict[str, str] = {}
    if args.prompts is not None:
        from a2lc._json import read_json

        raw = read_json(args.prompts)
        if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
            raise A2LCError(f"{args.prompts}: must be a JSON object of class name → phrase")
        prompts = {str(k): v for k, v in raw.items()}
    prompt_phrases(class_names, prompts)  # validates names and phrases before any model loads
    return GroundedSamConfig(
        detector=args.detector,
        segmenter=args.segmenter,
        box_threshold=args.box_threshold,
        text_threshold=args.text_threshold,
        prompts=prompts,
        device=args.device,
        box_batch=args.box_batch,
    )


def _grounded_sam(args: argparse.Namespace, shard: Shard | None) -> int:
    """Under torchrun each rank runs the models on images ``i mod world``."""
    if args.workspace is None:
        from a2lc.pseudo_labels.grounded_sam import RunSummary, run_grounded_sam

        if args.data is None or args.out is None:
            raise A2LCError("give --workspace W, or --data DIR and --out DIR")
        dataset = load_dataset(args.data, split=args.split)
        config = _grounded_sam_config(args, dataset.class_names)
        samples = share(dataset.samples, shard)
        summary = run_grounded_sam(
            samples,
            args.out,
            config=config,
            class_names=dataset.class_names,
            palette=[c.color for c in dataset.classes],
            show_progress=shard is None or shard.writer,
        )
        if shard is not None:
            parts = shard.gather(summary)
            if not shard.writer:
                return 0
            summary = RunSummary.merged(parts)
        print(
            f"grounded-sam: {summary.images} images ({summary.skipped} done before), "
            f"{summary.detections} detections in {summary.seconds:.0f} s; segments and labels in "
            f"{args.out} (use them with `a2lc init --segments {args.out}/segments "
            f"--labels {args.out}/labels`)"
        )
        return 0
    from a2lc.pseudo_labels.pipeline import make_grounded_sam_labels

    with _rank_workspace(args.workspace, shard) as ws:
        config = _grounded_sam_config(args, ws.class_names)
        result = make_grounded_sam_labels(ws, config=config, shard=shard)
        if shard is not None and not shard.writer:
            return 0
        print(
            f"grounded-sam: {result['images']} images ({result['resumed_from']} done before), "
            f"{result['detections']} detections"
        )
        _print_status(_summary(ws))
    return 0


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


TOKEN_VARIABLE = "LABEL_STUDIO_API_KEY"


def _loop_settings(args: argparse.Namespace) -> LoopSettings | None:
    """``--label-studio`` and ``--project``: the backend runs the rounds (checked first)."""
    if args.label_studio is None or args.project is None:
        return None
    if not args.poll_seconds > 0:
        raise A2LCError(f"--poll-seconds must be positive, got {args.poll_seconds}")
    token = os.environ.get(TOKEN_VARIABLE, "").strip()
    if not token:
        raise A2LCError(
            f"--label-studio: set the access token in the {TOKEN_VARIABLE} variable (Label "
            "Studio: Account & Settings → Personal Access Token)"
        )
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

    with Workspace.open(args.workspace) as ws:
        current = ws.open_round()
        if current is None:
            raise A2LCError(
                f"{args.workspace} has no open round; start one with `a2lc run -w "
                f"{args.workspace} --oracle human` (it stops once the queries are recorded)"
            )
        pending = ws.count_unanswered(current.round)
    if not 0 < args.lease_seconds <= MAX_LEASE_SECONDS:  # also refuses nan and inf
        raise A2LCError(
            f"--lease-seconds must be a number of seconds in (0, {MAX_LEASE_SECONDS:.0f}], "
            f"got {args.lease_seconds}"
        )
    if not 1 <= args.port <= 65535:
        raise A2LCError(f"--port must be 1..65535, got {args.port}")
    from a2lc.web.app import LOOPBACK, WILDCARD, serve, workspace_token

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
    print(
        f"round {current.round}: {pending} queries to answer; open "
        f"http://{address}:{args.port}/?token={token} (Ctrl+C stops; answers are saved as they come)"
    )
    serve(
        args.workspace,
        host=args.host,
        port=args.port,
        lease_seconds=args.lease_seconds,
        allow_hosts=tuple(args.allow_host),
    )
    return 0


def _pseudo_label(args: argparse.Namespace, shard: Shard | None) -> int:
    """Under torchrun the pool is labelled by image across the ranks; rank 0 commits."""
    from a2lc.pseudo_labels.pipeline import PseudoLabelConfig, make_pseudo_labels

    if args.source == "grounded-sam":
        return _grounded_sam(args, shard)
    if args.workspace is None:
        raise A2LCError(f"--source {args.source} needs --workspace W")
    with _rank_workspace(args.workspace, shard) as ws:
        if ws.rounds():  # checked before the seed model trains, not after
            raise A2LCError(
                f"workspace {args.workspace} has correction rounds; its initial labels cannot "
                "change any more (start a new workspace with `a2lc init`)"
            )
        config = PseudoLabelConfig(
            source=args.source,
            noise=args.noise,
            noise_target=_noise_target(args, ws.class_names),
            seed_images=args.seed_images,
            seed=args.seed,
            min_confidence=args.min_confidence,
            seed_epochs=args.seed_epochs,
            superpixels=args.superpixels,
            adaptive=not args.no_adaptive,
            refine_below=0.0 if args.no_adaptive else args.refine_below,
            refine_factor=args.refine_factor,
        )
        summary = make_pseudo_labels(ws, config=config, cache_dir=args.cache, shard=shard)
        if shard is not None and not shard.writer:
            return 0
        print(
            f"pseudo-labels ({args.source}): {summary['segments']} segments kept, "
            f"{summary['uncovered_segments']} left uncovered; seed images {summary['seed_images']}"
        )
        noise = summary.get("noise")
        if isinstance(noise, dict):
            _print_noise(noise)
        _print_status(_summary(ws))
    return 0


def _print_noise(noise: dict[str, Any]) -> None:
    def pct(value: float | None) -> str:
        return "–" if value is None else f"{100 * value:.1f}"

    print(f"{'class':<16} {'target':>7} {'rate %':>7} {'expected':>9} {'realised':>9}")
    for name in noise["target_iou"]:
        notes = [
            note
            for note, key in (
                ("capped by the segments", "capped_classes"),
                ("not reachable", "unreachable_classes"),
            )
            if name in noise[key]
        ]
        mark = f" ({'; '.join(notes)})" if notes else ""
        print(
            f"{name:<16} {pct(noise['solved_target_iou'][name]):>7} "
            f"{pct(noise['realised_flip_rates'][name]):>7} {pct(noise['expected_iou'][name]):>9} "
            f"{pct(noise['realised_iou'][name]):>9}{mark}"
        )


def _noise_target(args: argparse.Namespace, class_names: Sequence[str]) -> dict[str, float] | None:
    from a2lc.pseudo_labels.noise import load_target

    if args.noise_target is None:
        return None
    if args.noise not in ("detector-like", "correlated"):
        raise A2LCError("--noise-target is only used with --noise detector-like or correlated")
    return load_target(args.noise_target, class_names)


def run_config_from_args(args: argparse.Namespace) -> Any:
    """A :class:`RunConfig` from the ``run`` options (a preset first, explicit options override)."""
    from dataclasses import replace

    from a2lc.correction.lcm import LCMConfig
    from a2lc.models.segmenter import ModelConfig
    from a2lc.models.training import TrainConfig
    from a2lc.rounds import RunConfig

    config = RunConfig()
    if args.preset:
        preset = PRESETS.get(args.preset)
        config = replace(
            config,
            rounds=preset.rounds,
            budget=preset.budget,
            lcm=LCMConfig(thresholds=preset.thresholds),
            probabilities=preset.probabilities,
        )
    if args.thresholds:
        try:
            thresholds = tuple(float(t) for t in args.thresholds.split(","))
        except ValueError:
            raise A2LCError(
                f"--thresholds must be numbers separated by commas, got {args.thresholds!r}"
            ) from None
        config = replace(config, lcm=replace(config.lcm, thresholds=thresholds))
    return replace(
        config,
        strategy=strategy_from_args(args),
        rounds=args.rounds if args.rounds is not None else config.rounds,
        budget=args.budget if args.budget is not None else config.budget,
        oracle=args.oracle,
        eval_split=args.eval_split,
        seed=args.seed,
        model=ModelConfig(name=args.model, weights=args.weights, frozen_encoder=not args.fine_tune),
        train=TrainConfig(epochs=args.epochs, seed=args.seed, device=args.device),
        feature_cache=not args.no_feature_cache,
        learned=_learned_config(args),
        exact_answers=args.exact_answers,
    )


def _learned_config(args: argparse.Namespace) -> LearnedConfig:
    from a2lc.correction.learned import LearnedConfig

    try:
        return LearnedConfig(min_precision=args.min_precision, explore_share=args.explore_share)
    except ValueError as exc:
        raise A2LCError(f"--min-precision / --explore-share: {exc}") from None


def _run(args: argparse.Namespace, shard: Shard | None) -> int:
    """Under torchrun every rank runs the loop; rank 0 alone writes and reports."""
    from a2lc.rounds import run_rounds

    if args.report is not None:
        _refuse_state(args.workspace, args.report, "--report")
    config = run_config_from_args(args)
    with _rank_workspace(args.workspace, shard) as ws:
        if shard is not None and not shard.writer:
            run_rounds(ws, config, cache_dir=args.cache, shard=shard)
            return 0
        return _run_and_report(args, ws, config, shard)


def _run_and_report(
    args: argparse.Namespace, ws: Workspace, config: RunConfig, shard: Shard | None
) -> int:
    from a2lc.report import workspace_report
    from a2lc.rounds import run_rounds

    result = run_rounds(ws, config, cache_dir=args.cache, shard=shard)
    _print_metrics(result.metrics, images=len(ws.samples))
    if args.report:
        workspace_report(ws, args.report)
        print(f"report: {args.report}")
    if not result.finished:
        print(
            f"round {result.waiting_round}: {ws.count_unanswered(result.waiting_round or 0)} queries "
            f"wait for answers (`a2lc annotate -w {args.workspace}`, or Label Studio via "
            "`a2lc export-queries`); rerun this command when they are in"
        )
    return 0


def _export(args: argparse.Namespace) -> int:
    from a2lc._atomic import atomic_write_text
    from a2lc.data.maps import write_label_map
    from a2lc.workspace import Workspace

    if args.scores and args.format != "fiftyone":
        raise A2LCError("--scores goes with --format fiftyone")
    _refuse_state(args.workspace, args.out, "--out")
    with Workspace.open(args.workspace, read_only=True) as ws:
        ws.require_segments()
        if args.format == "cvat":
            from a2lc.interop.cvat import MASK_ZIP, UPLOAD, XML_ZIP, export_cvat

            count = export_cvat(ws, args.out)
            print(
                f"wrote {count} images as CVAT Segmentation mask 1.1 to {args.out}; for CVAT's "
                f"upload dialog: {args.out / UPLOAD / MASK_ZIP} (Segmentation mask 1.1) or "
                f"{args.out / UPLOAD / XML_ZIP} (CVAT for images 1.1)"
            )
            return 0
        if args.format == "fiftyone":
            from a2lc.interop.fiftyone import MASK_TARGETS, SCORES, export_fiftyone

            if not args.scores:
                count = export_fiftyone(ws, args.out)
            else:
                import tempfile

                from a2lc.rounds import latest_model

                with tempfile.TemporaryDirectory() as cache:  # nothing written in the workspace
                    found = latest_model(ws, cache_dir=Path(cache))
                    if found is None:
                        raise A2LCError(
                            "--scores needs a trained model: run a round first (`a2lc run`)"
                        )
                    count = export_fiftyone(ws, args.out, probabilities=found[1])
            print(
                f"wrote {count} images as FiftyOne ImageSegmentationDirectory to {args.out} "
                f"(mask targets in {args.out / MASK_TARGETS}"
                + (f"; P(label wrong) per segment in {args.out / SCORES}/)" if args.scores else ")")
            )
            return 0
        if args.format == "coco-panoptic":
            from a2lc.interop.coco_panoptic import export_panoptic, panoptic_paths

            summary = export_panoptic(ws, args.out, units=args.panoptic_segments)
            json_path, folder = panoptic_paths(args.out, ws.dataset.split)
            print(
                f"wrote {summary['images']} images, {summary['segments']} segments as COCO "
                f"panoptic to {json_path} (PNGs in {folder})"
            )
            return 0
        for sample in ws.samples:
            write_label_map(
                args.out / f"{sample.id}.png", ws.read_labels(sample.id), palette=ws.palette
            )
        classes = [{"id": c.id, "name": c.name, "color": list(c.color)} for c in ws.dataset.classes]
        atomic_write_text(args.out / "classes.json", json.dumps(classes, indent=1))
        print(f"wrote {len(ws.samples)} label maps (palette PNG, 255 = ignore) to {args.out}")
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


def _import_labels(args: argparse.Namespace) -> int:
    from a2lc.workspace import Workspace

    with Workspace.open(args.workspace) as ws:
        if args.cvat is not None:
            from a2lc.interop.cvat import read_cvat

            def maps() -> Any:
                return read_cvat(args.cvat, ws)

            source = "cvat"
        else:
            from a2lc.interop.coco_panoptic import read_panoptic

            def maps() -> Any:
                return read_panoptic(args.coco_panoptic, ws)

            source = "coco-panoptic"
        ws.require_no_open_round()
        for _ in maps():  # validate every image before anything is written
            pass
        ws.set_initial_maps(
            maps(), source=source, parameters={"from": str(args.cvat or args.coco_panoptic)}
        )
        _print_status(_summary(ws))
    return 0


def _report(args: argparse.Namespace) -> int:
    from a2lc.report import workspace_report
    from a2lc.workspace import Workspace

    _refuse_state(args.workspace, args.out, "--out")
    with Workspace.open(args.workspace, read_only=True) as ws:
        print(f"report: {workspace_report(ws, args.out)}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from a2lc.bench import BenchConfig, run_benchmark
    from a2lc.bench.report import markdown_table
    from a2lc.pseudo_labels.noise import load_target
    from a2lc.pseudo_labels.pipeline import NOISE_REGIMES

    try:
        seeds = tuple(int(v) for v in args.seeds.split(","))
    except ValueError:
        raise A2LCError(
            f"--seeds must be integers separated by commas, got {args.seeds!r}"
        ) from None
    from a2lc.strategies import resolve_strategy

    strategies = tuple(v for v in args.strategies.split(",") if v)
    for name in strategies:
        resolve_strategy(name)
    noises = tuple(v for v in args.noise.split(",") if v)
    unknown = [v for v in noises if v not in NOISE_REGIMES]
    if unknown or not noises:
        raise A2LCError(
            f"--noise must list regimes among {', '.join(NOISE_REGIMES)}, got {args.noise!r}"
        )
    noise_target = None
    if args.noise_target is not None:
        noise_target = load_target(
            args.noise_target, load_dataset(args.data, split=args.pool_split).class_names
        )
    config = BenchConfig(
        data=args.data,
        out=args.out,
        pool_split=args.pool_split,
        pool_prefix=args.pool_prefix,
        eval_split=args.eval_split,
        pseudo=args.pseudo,
        noises=noises,
        noise_target=noise_target,
        seed_images=args.seed_images,
        rounds=args.rounds,
        budget=args.budget,
        strategies=strategies,
        seeds=seeds,
        epochs=args.epochs,
    )
    results = run_benchmark(config)
    for noise, summary in results["summary"].items():
        for metric in ("data_miou", "model_miou"):
            print(f"\n{noise} noise, {metric} (mean ± std over seeds {list(seeds)})")
            print(markdown_table(summary, metric))
    print(
        f"\npeak RSS {results['peak_rss_mb']:.0f} MB; results in {args.out}/results.json, report {args.out}/report.html"
    )
    return 0


def _demo(args: argparse.Namespace) -> int:
    from a2lc.correction.lcm import LCMConfig
    from a2lc.data.synthetic import make_synthetic_dataset
    from a2lc.models.training import TrainConfig
    from a2lc.report import workspace_report
    from a2lc.rounds import RunConfig, run_rounds
    from a2lc.workspace import Workspace

    out = Path(tempfile.mkdtemp(prefix="a2lc-demo-")) if args.temporary else args.out.resolve()
    print(f"demo: writing to {out} (workspace, data, report.html)", flush=True)
    workspace_dir = out / "workspace"
    if workspace_dir.exists():
        ws = Workspace.open(workspace_dir)
    elif args.data is None:
        data = make_synthetic_dataset(out / "data", num_images=args.images)
        make_synthetic_dataset(
            out / "data", num_images=max(4, args.images // 4), split="val", seed=1
        )
        dataset = load_dataset(data.root, split="train")
        ws = Workspace.create(
            workspace_dir,
            dataset,
            segments_dir=data.segments,
            labels_dir=data.pseudo,
            source="synthetic",
        )
    else:
        ws = Workspace.create(workspace_dir, load_dataset(args.data, split="train"))
    with ws:
        if not ws.has_segments:
            from a2lc.pseudo_labels.pipeline import PseudoLabelConfig, make_pseudo_labels

            make_pseudo_labels(
                ws, config=PseudoLabelConfig(source="gt-proxy", seed_images=DEMO_SEED_IMAGES)
            )
        config = RunConfig(
            strategy=strategy_from_args(args),
            rounds=args.rounds,
            budget=args.budget,
            eval_split="val",
            train=TrainConfig(epochs=args.epochs),
            lcm=LCMConfig(),
        )
        result = run_rounds(ws, config)
        _print_status(_summary(ws))
        print()
        _print_metrics(result.metrics, images=len(ws.samples))
        report = workspace_report(ws, out / "report.html")
    print(f"\nworkspace: {workspace_dir}\nreport:    {report}")
    return 0


def _print_metrics(metrics: dict[int, dict[str, float]], *, images: int | None = None) -> None:
    def pct(m: dict[str, float], key: str) -> str:
        return f"{100 * m[key]:8.2f}" if key in m else "       –"

    from a2lc.report import UNCHECKED_NOTE, automatic_changes, data_miou_scope

    print(
        "round  queried  data mIoU  model mIoU  auto changed  estimated precision  true precision"
    )
    for r in sorted(metrics):
        m = metrics[r]
        changed, estimate, true = automatic_changes(m)
        print(
            f"{r:>5d}  {int(m.get('segments_queried', 0)):>7d}  {pct(m, 'data_miou')}   {pct(m, 'model_miou')}  "
            f"{changed:>12}  {estimate:>19}  {true:>14}"
        )
    if any("lcm_changed" in m for m in metrics.values()):
        print(f"note: {UNCHECKED_NOTE}")
    scope = data_miou_scope(metrics, images=images) if images is not None else None
    if scope is not None:
        print(f"note: {scope}")


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def _refuse_state(workspace: Path, out: Path, option: str) -> None:
    """Refuse an output path inside the workspace's own state (before anything is written)."""
    from a2lc.workspace.paths import state_entry

    entry = state_entry(workspace, out)
    if entry is not None:
        raise A2LCError(
            f"{option} {out}: that is inside the workspace's own state ({entry}), which it "
            f"would overwrite; write it outside {workspace} or to a new name in it"
        )


def _truth_count(dataset: dict[str, Any]) -> str:
    with_truth = int(dataset.get("ground_truth_images", 0))
    if dataset["ground_truth"]:
        return "every image"
    return f"{with_truth} of {dataset['images']} images" if with_truth else "none"


def _summary(ws: Workspace) -> dict[str, Any]:
    """``ws.status()`` with the label-accuracy estimate re-estimated from every sample."""
    from a2lc.quality import with_label_accuracy

    summary = ws.status()
    summary["metrics"] = with_label_accuracy(ws, summary.get("metrics", {}))
    return summary


def _print_status(summary: dict[str, Any]) -> None:
    dataset = summary["dataset"]
    segments = summary["segments"]
    print(f"workspace  {summary['workspace']}  (schema v{summary['schema_version']})")
    print(
        f"dataset    {dataset['format']} {dataset['root']} [{dataset['split']}]: "
        f"{dataset['images']} images, {len(dataset['classes'])} classes, "
        f"ground truth: {_truth_count(dataset)}"
    )
    print(
        f"initial    {summary['initial_labels'] or 'none yet: `a2lc pseudo-label -w ...` makes them, or `a2lc init --labels DIR [--segments DIR]` brings yours'}"
    )
    given = segments.get("given", 0)
    print(
        f"segments   {segments['total']} total: {segments['initial']} initial, "
        f"{segments['manual']} manual, {segments['auto']} auto"
        + (
            f", {given} given (in the {summary.get('hand_labelled_images', 0)} images a "
            "person labelled: kept as they are, never queried)"
            if given
            else ""
        )
    )
    done = segments["manual"] + given
    if segments["total"]:
        print(
            f"done       {done} of {segments['total']} segments labelled by a person "
            f"({100 * done / segments['total']:.1f}%)"
        )
    metrics = {int(k): v for k, v in summary.get("metrics", {}).items()}
    if summary["rounds"]:
        estimated = any("label_accuracy_estimate" in m for m in metrics.values())
        print(
            "round  status    strategy  budget  queried  answered  changed  auto  data mIoU  "
            + ("est. label accuracy (95%)  " if estimated else "")
            + "model mIoU"
        )
        for r in summary["rounds"]:
            m = metrics.get(r["round"], {})
            estimate = ""
            if estimated:
                estimate = (
                    f"{_pct(m.get('label_accuracy_estimate'))} "
                    f"({_pct(m.get('label_accuracy_low'))}–{_pct(m.get('label_accuracy_high'))})"
                    if "label_accuracy_estimate" in m
                    else "–"
                )
                estimate = f"{estimate:>25s}  "
            print(
                f"{r['round']:>5d}  {r['status']:<8s}  {r['strategy']:<8s}  {r['budget']:>6d}  "
                f"{r['queried']:>7d}  {r['answered']:>8d}  {r['label_changed']:>7d}  "
                f"{r['auto_corrections']:>4d}  {_pct(m.get('data_miou')):>9s}  {estimate}"
                f"{_pct(m.get('model_miou')):>10s}"
            )
        if estimated:
            print(
                "note: estimated label accuracy is an estimate, not ground truth: the share "
                "of pixels in segments whose label is right: the labels before any answer, "
                "estimated from every round's uniformly random sample of queries, plus the "
                "segments the answers fixed (a mixed segment counts as right when its "
                "majority is, so true pixel accuracy is lower)"
            )
    else:
        print("rounds     none yet")
    if "data_miou" in summary:
        print(f"data mIoU  {100 * summary['data_miou']:.2f}")
    if "data_miou_note" in summary:
        print(f"note: {summary['data_miou_note']}")
    from a2lc.report import data_miou_scope

    scope = data_miou_scope(metrics, images=int(dataset["images"]))
    if scope is None and "data_miou" in summary and not dataset["ground_truth"]:
        scope = data_miou_scope(
            {0: {"data_miou_images": float(dataset.get("ground_truth_images", 0))}},
            images=int(dataset["images"]),
        )
    if scope is not None:
        print(f"note: {scope}")


_HANDLERS = {
    "init": _init,
    "status": _status,
    "score": _distributed(_score),
    "correct": _correct,
    "pseudo-label": _distributed(_pseudo_label),
    "annotate": _annotate,
    "ls-backend": _ls_backend,
    "export-queries": _export_queries,
    "import-answers": _import_answers,
    "import-labels": _import_labels,
    "run": _distributed(_run),
    "export": _export,
    "report": _report,
    "bench": _bench,
    "demo": _demo,
}


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
