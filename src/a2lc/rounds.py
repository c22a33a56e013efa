"""The correction loop over a workspace, resumable at every step.

Round 0 trains θ_0 on the initial labels. Each round r = 1..R then

1. predicts the pool with θ_{r-1}, one image at a time, scoring its segments and
   keeping only each segment's mean probability vector (the LCM feature);
2. records the top-B queries (one transaction);
3. gets the answers: the simulated annotator (``oracle="gt"``), or people
   (``oracle="human"``: the run stops here and continues when every answer is in);
4. runs LCM (strategies with LCM) and records its changes (one transaction);
5. closes the round (label snapshots), trains θ_r, measures data and model mIoU.

Every completed step is recorded in the workspace, so rerunning the same command
after an interruption continues from the last completed step. Training and LCM
are seeded, so the final result is the same as for an uninterrupted run.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

from a2lc._atomic import atomic_write_bytes
from a2lc._progress import progress
from a2lc._timing import Stopwatch
from a2lc.correction.lcm import (
    LCMConfig,
    fit_and_predict,
    select_relabels,
    tail_classes,
)
from a2lc.data.readers import load_dataset, read_ground_truth
from a2lc.data.sample import IGNORE_INDEX, Dataset
from a2lc.data.segments import majority_labels
from a2lc.errors import WorkspaceError
from a2lc.loop import ScoreConfig, answer_with_oracle, data_miou, select_queries
from a2lc.metrics import ConfusionAccumulator
from a2lc.models.runner import ModelRunner
from a2lc.models.segmenter import ModelConfig
from a2lc.models.training import TrainConfig
from a2lc.runtime import configure_threads, threads_chosen_by_user
from a2lc.strategies import STRATEGIES
from a2lc.workspace import Workspace

log = logging.getLogger(__name__)

BUDGET_FRACTION = 0.04
"""Default budget per round: this fraction of the pool's segments."""

Oracle = Literal["gt", "human"]


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's result; stored in the workspace at the first run."""

    strategy: str = "a2lc"
    rounds: int = 5
    budget: int | None = None
    oracle: Oracle = "gt"
    eval_split: str | None = None
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=6))
    lcm: LCMConfig = field(default_factory=LCMConfig)


@dataclass
class RunResult:
    """``finished``: all rounds done; else ``waiting_round`` awaits human answers."""

    finished: bool
    waiting_round: int | None
    metrics: dict[int, dict[str, float]]


def default_budget(ws: Workspace) -> int:
    return max(1, round(BUDGET_FRACTION * ws.num_segments()))


def _config_json(config: RunConfig) -> str:
    return json.dumps(asdict(config), sort_keys=True, default=list)


FREE_ALWAYS = ("rounds", "oracle")
"""Options a resumed run may change at any time (run more rounds, switch annotators)."""
FREE_BEFORE_ROUND_1 = ("strategy", "budget", "lcm")
"""Options that only matter from round 1 on: free while no correction round has started."""


def _check_config(ws: Workspace, config: RunConfig) -> None:
    """Store the run config; refuse a resume whose options would change work already done."""
    stored = ws.meta("run_config")
    wanted = _config_json(config)
    if stored is not None:
        before, now = json.loads(stored), json.loads(wanted)
        free = FREE_ALWAYS + (FREE_BEFORE_ROUND_1 if not ws.rounds() else ())
        diff = {
            k: (before.get(k), now.get(k))
            for k in now
            if k not in free and before.get(k) != now.get(k)
        }
        if diff:
            raise WorkspaceError(
                f"workspace {ws.path} was started with other options; a run resumes only with the same "
                f"ones (except {', '.join(free)}). Differences (was, now): {diff}"
            )
    if stored != wanted:
        ws.set_meta({"run_config": wanted})


def _resume_threads(ws: Workspace) -> None:
    """Use the thread count the run started with (results differ in their last bits between counts)."""
    threads = configure_threads()
    stored = ws.meta("threads")
    if stored is None:
        ws.set_meta({"threads": str(threads)})
    elif int(stored) != threads:
        if threads_chosen_by_user():
            log.warning(
                "this run started with %s torch thread(s) and continues with %d: results may "
                "differ in their last bits from an uninterrupted run",
                stored,
                threads,
            )
            ws.set_meta({"threads": str(threads)})
        else:
            threads = configure_threads(int(stored))
    log.info("torch uses %d CPU thread(s)", threads)


def _eval_dataset(ws: Workspace, split: str | None) -> Dataset | None:
    if split is None:
        return None
    root = Path(ws.meta("dataset_root") or ".")
    return load_dataset(root, split=split, format=ws.meta("dataset_format") or "auto")


def model_dir(ws: Workspace, round_index: int) -> Path:
    return ws.path / "models" / f"round_{round_index:03d}"


def features_path(ws: Workspace, round_index: int) -> Path:
    return ws.path / "rounds" / f"round_{round_index:03d}" / "lcm_features.npz"


def run_rounds(
    ws: Workspace,
    config: RunConfig,
    *,
    cache_dir: Path | None = None,
    show_progress: bool = True,
    on_step: Callable[[int, str], None] | None = None,
) -> RunResult:
    """Run (or resume) the correction loop on ``ws`` up to ``config.rounds`` rounds."""
    strategy = STRATEGIES.get(config.strategy)
    ws.require_segments()
    if config.model.num_classes not in (0, ws.num_classes):
        raise WorkspaceError(
            f"the model is configured for {config.model.num_classes} classes but the workspace has "
            f"{ws.num_classes}; they must match"
        )
    config = replace(config, model=replace(config.model, num_classes=ws.num_classes))
    if config.oracle == "gt" and not ws.has_ground_truth:
        raise WorkspaceError(
            "--oracle gt needs ground truth for every pool image; use --oracle human"
        )
    budget = config.budget or default_budget(ws)
    config = replace(config, budget=budget)
    _check_config(ws, config)
    eval_data = _eval_dataset(ws, config.eval_split)
    samples = {s.id: s for s in ws.samples}
    if eval_data is not None:
        overlap = set(samples) & {s.id for s in eval_data.samples}
        if overlap:
            raise WorkspaceError(
                f"evaluation split shares image ids with the pool: {sorted(overlap)[:3]}"
            )
        samples.update({s.id: s for s in eval_data.samples})
    _resume_threads(ws)
    runner = ModelRunner(
        model_config=config.model,
        train_config=config.train,
        samples=samples,
        cache_dir=cache_dir if cache_dir is not None else ws.path / "cache",
        show_progress=show_progress,
    )

    def step(round_index: int, name: str) -> None:
        if on_step is not None:
            on_step(round_index, name)

    for r in range(config.rounds + 1):
        if r > 0:
            waiting = _correction_round(
                ws, runner, config, r, strategy.acquisition, strategy.lcm, show_progress, step
            )
            if waiting:
                return RunResult(False, r, ws.metrics())
        _train_and_evaluate(ws, runner, config, r, eval_data, show_progress, step)
    return RunResult(True, None, ws.metrics())


def _correction_round(
    ws: Workspace,
    runner: ModelRunner,
    config: RunConfig,
    r: int,
    acquisition: str,
    use_lcm: bool,
    show_progress: bool,
    step: Callable[[int, str], None],
) -> bool:
    """Round r's queries, answers, LCM and closing; True if waiting for human answers."""
    known = {info.round: info for info in ws.rounds()}
    if r in known and known[r].status == "closed":
        return False
    if r not in known:
        started = time.perf_counter()
        model = runner.load(model_dir(ws, r - 1), seed=_model_seed(config, r - 1))
        selection = select_queries(
            ws,
            lambda image_id: runner.predict(model, image_id),
            config=ScoreConfig(strategy=acquisition, budget=config.budget or 0, seed=config.seed),
            show_progress=show_progress,
            keep_features=use_lcm,
        )
        if selection.features is not None:
            # Saved before the round is recorded, so that a recorded round always has
            # its features, and LCM can run after answers arrive in another process.
            _save_features(features_path(ws, r), selection.features)
        ws.start_round(
            selection.queries,
            strategy=config.strategy,
            budget=config.budget or 0,
            config={**selection.config, "acquisition": acquisition},
        )
        ws.record_metrics(
            r,
            {"seconds/predict_and_score": time.perf_counter() - started, **selection.timings},
        )
        step(r, "queries")
    if ws.count_unanswered(r):
        if config.oracle == "human":
            log.info(
                "round %d: %d queries wait for answers; rerun when they are in",
                r,
                ws.count_unanswered(r),
            )
            return True
        answer_with_oracle(ws, r, show_progress=show_progress)
        step(r, "answers")
    if use_lcm and not ws.step_done(r, "lcm"):
        started = time.perf_counter()
        _run_lcm(ws, config, r)
        ws.record_metrics(r, {"seconds/lcm": time.perf_counter() - started})
        step(r, "lcm")
    ws.close_round(r)
    step(r, "close")
    return False


def _model_seed(config: RunConfig, round_index: int) -> int:
    return config.seed * 1000 + round_index


def _train_and_evaluate(
    ws: Workspace,
    runner: ModelRunner,
    config: RunConfig,
    r: int,
    eval_data: Dataset | None,
    show_progress: bool,
    step: Callable[[int, str], None],
) -> None:
    folder = model_dir(ws, r)
    model = None
    if not ws.step_done(r, "train"):
        started = time.perf_counter()
        pool = [s.id for s in ws.samples]
        model, history = runner.fit(pool, ws.read_labels, seed=_model_seed(config, r))
        runner.save(model, folder, extra={"round": r, "loss": history, "run": asdict(config)})
        ws.record_metrics(
            r, {"seconds/train": time.perf_counter() - started, "train_loss": history[-1]}
        )
        ws.mark_step(r, "train", {"loss": history})
        step(r, "train")
    if ws.step_done(r, "eval"):
        return
    started = time.perf_counter()
    values: dict[str, float] = {}
    watch = Stopwatch()
    if ws.has_ground_truth:
        with watch.part("data_miou"):
            data = data_miou(ws, show_progress=show_progress)
        values["data_miou"] = data.miou
        values.update(
            {
                f"data_iou/{c.name}": float(v)
                for c, v in zip(ws.dataset.classes, data.iou, strict=True)
            }
        )
    if eval_data is not None and eval_data.has_ground_truth:
        if model is None:
            model = runner.load(folder, seed=_model_seed(config, r))
        acc = ConfusionAccumulator(ws.num_classes)
        with watch.part("model_miou"):
            for sample in progress(
                eval_data.samples,
                desc="model mIoU",
                total=len(eval_data.samples),
                enabled=show_progress,
            ):
                prediction = runner.predict(model, sample.id).argmax(axis=0).astype(np.uint8)
                acc.update(read_ground_truth(eval_data, sample), prediction)
        values["model_miou"] = acc.miou
        values.update(
            {
                f"model_iou/{c.name}": float(v)
                for c, v in zip(ws.dataset.classes, acc.iou, strict=True)
            }
        )
    values.update(watch.metrics())
    values["seconds/eval"] = time.perf_counter() - started
    values["segments_queried"] = float(
        sum(len(ws.queries(i.round)) for i in ws.rounds() if i.round <= r)
    )
    ws.record_metrics(r, values)
    ws.mark_step(r, "eval")
    step(r, "eval")


def _save_features(path: Path, items: list[tuple[str, np.ndarray, np.ndarray]]) -> None:
    buffer = io.BytesIO()
    np.savez(
        buffer,
        image=np.concatenate(
            [np.full(ids.size, i, dtype=np.int64) for i, (_, ids, _) in enumerate(items)]
        ),
        segment=np.concatenate([ids for _, ids, _ in items]),
        features=np.concatenate([f for _, _, f in items]),
        image_ids=np.asarray([image_id for image_id, _, _ in items]),
    )
    atomic_write_bytes(path, buffer.getvalue())


@dataclass(frozen=True)
class _RoundFeatures:
    """LCM features saved when a round was scored: ``(N, C)`` rows for (image, segment id)."""

    image_ids: list[str]
    image: np.ndarray  # (N,) index into image_ids
    segment: np.ndarray  # (N,) segment id
    features: np.ndarray  # (N, C) float32

    def key(self, row: int) -> tuple[str, int]:
        return self.image_ids[int(self.image[row])], int(self.segment[row])


def _load_features(path: Path) -> _RoundFeatures:
    if not path.is_file():
        raise WorkspaceError(
            f"{path} is missing: LCM needs the features saved when the round was scored"
        )
    with np.load(path) as archive:
        return _RoundFeatures(
            archive["image_ids"].tolist(),
            archive["image"].astype(np.int64),
            archive["segment"].astype(np.int64),
            archive["features"],
        )


def _run_lcm(ws: Workspace, config: RunConfig, r: int) -> None:
    """Train LCM on this round's answers and record the relabelled segments (one transaction)."""
    saved = _load_features(features_path(ws, r))
    pool_index = {sample.id: i for i, sample in enumerate(ws.samples)}
    segments = ws.pool_segments()
    # Feature rows → rows of the pool's segment table (features follow pool order).
    rows = segments.rows(
        np.asarray([pool_index[i] for i in saved.image_ids], dtype=np.int64)[saved.image],
        saved.segment,
    )
    answers = [c for c in ws.corrections(r) if c["source"] == "manual"]
    after = np.asarray([c["after"] for c in answers], dtype=np.int64)
    labelled = [c for c in answers if c["after"] != IGNORE_INDEX]
    answer_rows = segments.rows(
        np.asarray([pool_index[c["image_id"]] for c in labelled], dtype=np.int64),
        np.asarray([c["segment_id"] for c in labelled], dtype=np.int64),
    )
    # Pool rows → feature rows (every pool segment has one).
    feature_row = np.full(segments.segment_id.size, -1, dtype=np.int64)
    feature_row[rows] = np.arange(rows.size)
    train_rows = feature_row[answer_rows]
    if (train_rows < 0).any():
        raise WorkspaceError(
            f"{features_path(ws, r)} has no features for some of round {r}'s queried segments: "
            "it was not written by this round's scoring"
        )
    train_targets = after[after != IGNORE_INDEX]
    tail = tail_classes(after, ws.num_classes, fraction=config.lcm.tail_fraction)
    threshold = config.lcm.threshold(r)
    if len(train_rows) == 0:
        ws.record_auto_corrections(r, [])
        ws.record_metrics(r, {"lcm_changed": 0.0})
        return
    prediction = fit_and_predict(
        saved.features[train_rows],
        train_targets,
        saved.features,
        num_classes=ws.num_classes,
        config=replace(config.lcm, seed=config.seed * 1000 + r),
    )
    chosen = select_relabels(
        segments.label[rows],
        prediction.predicted,
        prediction.confidence,
        eligible=~segments.manual[rows],
        tail=tail,
        threshold=threshold,
    )
    changes = [(*saved.key(int(i)), int(prediction.predicted[i])) for i in np.flatnonzero(chosen)]
    values: dict[str, float] = {"lcm_changed": float(len(changes)), "lcm_threshold": threshold}
    if changes and ws.has_ground_truth:
        values["lcm_precision"] = _lcm_precision(ws, changes)
    ws.record_auto_corrections(r, changes)
    ws.record_metrics(r, values)
    log.info("round %d: LCM changed %d segments (τ = %.10g)", r, len(changes), threshold)


def ground_truth_majority(ws: Workspace, keys: list[tuple[str, int]]) -> np.ndarray:
    """``(len(keys),)`` majority ground-truth value of each (image id, segment id)."""
    truth = np.empty(len(keys), dtype=np.int64)
    by_image: dict[str, list[int]] = {}
    for i, (image_id, _) in enumerate(keys):
        by_image.setdefault(image_id, []).append(i)
    for image_id, rows in by_image.items():
        segment_ids = np.asarray([keys[i][1] for i in rows])
        truth[rows] = majority_labels(
            ws.read_ground_truth(image_id), ws.read_segments(image_id), segment_ids
        )
    return truth


def _lcm_precision(ws: Workspace, changes: list[tuple[str, int, int]]) -> float:
    """Fraction of LCM's changes that gave the segment its majority ground-truth class."""
    truth = ground_truth_majority(
        ws, [(image_id, segment_id) for image_id, segment_id, _ in changes]
    )
    return float(np.mean(truth == np.asarray([after for _, _, after in changes])))
