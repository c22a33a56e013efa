"""What the ``a2lc`` commands share: exit codes, the help layout, option parsers, status printing."""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from a2lc.errors import A2LCError, UnknownNameError

if TYPE_CHECKING:
    from a2lc.correction.learned import LearnedConfig
    from a2lc.distributed import Shard
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

TOKEN_VARIABLE = "LABEL_STUDIO_API_KEY"
"""The environment variable that holds the Label Studio access token."""


def label_studio_token() -> str:
    """The Label Studio access token from :data:`TOKEN_VARIABLE`; an error naming it if unset."""
    import os

    token = os.environ.get(TOKEN_VARIABLE, "").strip()
    if not token:
        raise A2LCError(
            f"--label-studio: set the access token in the {TOKEN_VARIABLE} variable (Label "
            "Studio: Account & Settings → Personal Access Token)"
        )
    return token


def add_image_options(parser: argparse.ArgumentParser) -> None:
    """``--image-prefix`` and ``--image-root``: how Label Studio tasks name the images."""
    parser.add_argument(
        "--image-prefix",
        default="/data/local-files/?d=",
        help="put before each image's path to form its URL (default: Label Studio local files)",
    )
    parser.add_argument(
        "--image-root",
        type=Path,
        help="write image paths relative to this folder: Label Studio's "
        "LOCAL_FILES_DOCUMENT_ROOT (default: absolute paths)",
    )


DEMO_SEED_IMAGES = 5
"""Ground-truth images of the demo's seed model on a real dataset (as the benchmarks)."""


MAX_ID_LIST_BYTES = 16 * 1024 * 1024
"""An @FILE of image ids larger than this is refused before it is read."""


def _seed_images(text: str) -> int | tuple[str, ...] | None:
    """``--seed-images``: a count, comma-separated ids, or ``@FILE`` (one id per line)."""
    from a2lc.data.sample import unsafe_id_reason
    from a2lc.steps.pseudo_labels import parse_seed_images

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


class Command(NamedTuple):
    """A command as ``a2lc --help`` lists it, before its module builds its options."""

    summary: str
    """One line, lower case, no full stop: ``a2lc --help``'s list and the help's first line."""
    example: str
    """One or more command lines, shown under ``example:`` at the end of its help."""


EXAMPLE_HEADING = "example:"


class _HelpFormatter(argparse.HelpFormatter):
    """Shows every option's default, unless its help already says it; keeps examples as typed."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith(EXAMPLE_HEADING):
            return "\n".join(indent + line for line in text.splitlines())
        return super()._fill_text(text, width, indent)

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


def _strategy_options(parser: argparse.ArgumentParser) -> None:
    from a2lc.acquisition import ACQUISITIONS
    from a2lc.strategies import CORRECTORS, DEFAULT_STRATEGY, STRATEGIES

    parser.add_argument(
        "--strategy",
        default=DEFAULT_STRATEGY,
        help=f"a named strategy ({', '.join(STRATEGIES.names())}) or ACQUISITION+CORRECTOR "
        f"(default: {DEFAULT_STRATEGY}, see docs/benchmark.md)",
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
    from a2lc.models.config import ModelConfig
    from a2lc.models.training import TrainConfig
    from a2lc.rounds import RunConfig
    from a2lc.strategies import PRESETS

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
        return LearnedConfig(
            min_precision=args.min_precision,
            explore_share=args.explore_share,
            answer_model=args.answer_model,
            guarantee=args.guarantee,
            fdr_region=args.fdr_region,
            voices=tuple(v.strip() for v in args.voices.split(",") if v.strip()),
        )
    except (ValueError, UnknownNameError) as exc:
        raise A2LCError(
            f"--min-precision / --explore-share / --guarantee / --fdr-region / --voices: {exc}"
        ) from None


def _print_metrics(metrics: dict[int, dict[str, float]], *, images: int | None = None) -> None:
    def pct(m: dict[str, float], key: str) -> str:
        return f"{100 * m[key]:8.2f}" if key in m else "       –"

    from a2lc.report import UNCHECKED_NOTE, data_miou_scope
    from a2lc.steps.quality import automatic_changes

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


def _summary(ws: Workspace, *, truth: bool = False) -> dict[str, Any]:
    """``ws.status()`` with the label-accuracy estimate re-estimated from every sample and
    the automatic changes by round and class pair (``truth``: with their true precision)."""
    from dataclasses import asdict

    from a2lc.steps.changes import change_groups
    from a2lc.steps.quality import with_label_accuracy

    summary = ws.status()
    summary["metrics"] = with_label_accuracy(ws, summary.get("metrics", {}))
    summary["automatic_changes"] = [asdict(g) for g in change_groups(ws, truth=truth)]
    return summary


def _print_changes(groups: list[dict[str, Any]]) -> None:
    """Automatic changes per round, corrector and (from → to) class pair."""
    if not groups:
        return
    print("automatic changes by round and class pair")
    header = f"{'from → to':<28s}"
    print(
        f"round  corrector  {header}  changed  reverted       est. precision    true  "
        "reviewed (accepted)"
    )
    statements: dict[str, str] = {}
    for g in groups:
        estimate = (
            f"{_pct(g['estimated'])} (≥ {_pct(g['lower'])})" if g["estimated"] is not None else "–"
        )
        pair = f"{g['before']} → {g['after']}"
        print(
            f"{g['round']:>5d}  {g['corrector']:<8s}  {pair:<28s}  {g['count']:>7d}  "
            f"{g['reverted']:>8d}  {estimate:>19s}  {_pct(g['true']):>6s}  "
            f"{g['reviewed']:>8d} ({g['accepted']})"
        )
        statements.setdefault(g["corrector"], g["guarantee"])
    for corrector, statement in statements.items():
        print(f"note: {corrector}: {statement}")
    print(
        "note: `a2lc revert -w W --round R [--corrector C] [--from-class A --to-class B]` takes changes back"
    )
    if any(g["reviewed"] for g in groups):
        print(
            "note: reviewed in the app (`a2lc annotate`, /review) in a uniformly random order: "
            "accepted / reviewed estimates the changes' precision"
        )


def _print_learning(metrics: dict[int, dict[str, float]], budgets: dict[int, int]) -> None:
    """What the loop learned from the answers, per round (strategies that learn only)."""
    from a2lc.steps.quality import LEARNING_NOTE, learning_rows

    rows = learning_rows(metrics, budgets)
    if not rows:
        return
    print("round  answer model                hand-over weight  AUROC 'is wrong' (cv)  explored")
    for r, model, weight, auc, share in rows:
        print(f"{r:>5d}  {model:<26s}  {weight:>16s}  {auc:>21s}  {share}")
    print(f"note: {LEARNING_NOTE}")


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
        _print_learning(metrics, {int(r["round"]): int(r["budget"]) for r in summary["rounds"]})
        _print_changes(summary.get("automatic_changes", []))
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
