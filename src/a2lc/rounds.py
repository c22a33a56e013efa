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

Under torchrun (a :class:`~a2lc.distributed.Shard`), every rank runs this loop:
prediction and scoring are sharded by image and merged on rank 0, training is
data-parallel, and rank 0 alone writes (the workspace, checkpoints) and runs the
answers and correctors; the other ranks read the workspace after each of its
writes (a barrier in between).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from a2lc._progress import progress
from a2lc._timing import Stopwatch
from a2lc.data.readers import load_dataset, read_ground_truth
from a2lc.data.sample import Dataset
from a2lc.distributed import Shard, from_writer, is_writer, share, synchronise
from a2lc.errors import WorkspaceError
from a2lc.metrics import ConfusionAccumulator
from a2lc.models.runner import ModelRunner
from a2lc.run_config import (
    BUDGET_FRACTION,
    RunConfig,
    RunResult,
    check_config,
    default_budget,
    stored_run_config,
)
from a2lc.runtime import (
    configure_threads,
    release_free_memory,
    releasing,
    threads_chosen_by_user,
)
from a2lc.steps.answers import answer_with_oracle, data_miou
from a2lc.steps.correctors import (
    apply_checked,
    features_path,
    load_round_features,
    plan_checked,
    run_lcm,
    save_round_features,
)
from a2lc.steps.learning import apply_proven, plan_learned
from a2lc.steps.quality import (
    automatic_changes,
    draw_estimate_sample,
    estimate_count,
    estimate_label_accuracy,
    estimate_text,
)
from a2lc.steps.scoring import ScoreConfig, Selection, select_queries
from a2lc.steps.voiced import apply_voiced
from a2lc.strategies import (
    LEARNING_ACQUISITIONS,
    Strategy,
    resolve_strategy,
)
from a2lc.workspace import Workspace

__all__ = [
    "RunConfig",
    "RunResult",
    "default_budget",
    "latest_model",
    "model_dir",
    "run_rounds",
    "stored_run_config",
]

log = logging.getLogger(__name__)


def _resume_threads(ws: Workspace, *, write: bool = True) -> None:
    """Use the thread count the run started with (results differ in their last bits between counts)."""
    threads = configure_threads()
    stored = ws.meta("threads")
    if stored is None:
        if write:
            ws.set_meta({"threads": str(threads)})
    elif int(stored) != threads:
        if threads_chosen_by_user():
            log.warning(
                "this run started with %s torch thread(s) and continues with %d: results may "
                "differ in their last bits from an uninterrupted run",
                stored,
                threads,
            )
            if write:
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


def latest_model(
    ws: Workspace, *, cache_dir: Path | None = None
) -> tuple[int, Callable[[str], np.ndarray]] | None:
    """``(round, image id → C×H×W probabilities)`` of the newest trained model, None
    before any (a run trains one per round)."""
    from a2lc.models.runner import WEIGHTS_FILE

    config = stored_run_config(ws)
    trained = [
        r for r in range(len(ws.rounds()) + 1) if (model_dir(ws, r) / WEIGHTS_FILE).is_file()
    ]
    if config is None or not trained:
        return None
    configure_threads()
    runner = ModelRunner(
        model_config=config.model,
        train_config=config.train,
        samples={s.id: s for s in ws.samples},
        cache_dir=cache_dir if cache_dir is not None else ws.path / "cache",
        show_progress=False,
        feature_cache=config.feature_cache,
    )
    r = trained[-1]
    model = runner.load(model_dir(ws, r), seed=_model_seed(config, r))
    return r, lambda image_id: runner.predict(model, image_id)


def run_rounds(
    ws: Workspace,
    config: RunConfig,
    *,
    cache_dir: Path | None = None,
    show_progress: bool = True,
    on_step: Callable[[int, str], None] | None = None,
    shard: Shard | None = None,
) -> RunResult:
    """Run (or resume) the correction loop on ``ws`` up to ``config.rounds`` rounds.

    ``shard``: this process is one rank of a torch.distributed run (see the module
    docstring); every rank calls this with the same config, rank 0 with the writable
    workspace, the others with it opened read-only.
    """
    writer = is_writer(shard)
    show_progress = show_progress and writer
    strategy = resolve_strategy(config.strategy)
    ws.require_segments()
    if config.model.num_classes not in (0, ws.num_classes):
        raise WorkspaceError(
            f"the model is configured for {config.model.num_classes} classes but the workspace has "
            f"{ws.num_classes}; they must match"
        )
    config = replace(config, model=replace(config.model, num_classes=ws.num_classes))
    if config.oracle == "gt" and not ws.has_ground_truth:
        raise WorkspaceError(
            "--oracle gt needs ground truth for every pool image "
            f"({len(ws.ground_truth_ids)} of {len(ws.samples)} have it); use --oracle human"
        )
    budget = config.budget or default_budget(ws)
    if writer:
        log.info(
            "budget: %d segments per round%s; %d rounds",
            budget,
            (
                f" (the default: {100 * BUDGET_FRACTION:.0f}% of the pool's "
                f"{ws.num_segments()} segments; --budget sets it)"
                if config.budget is None
                else ""
            ),
            config.rounds,
        )
    config = replace(config, budget=budget)
    check_config(ws, config, write=writer)
    eval_data = _eval_dataset(ws, config.eval_split)
    samples = {s.id: s for s in ws.samples}
    if eval_data is not None:
        overlap = set(samples) & {s.id for s in eval_data.samples}
        if overlap:
            raise WorkspaceError(
                f"evaluation split shares image ids with the pool: {sorted(overlap)[:3]}"
            )
        samples.update({s.id: s for s in eval_data.samples})
    _resume_threads(ws, write=writer)
    synchronise(shard)
    runner = ModelRunner(
        model_config=config.model,
        train_config=config.train,
        samples=samples,
        cache_dir=cache_dir if cache_dir is not None else ws.path / "cache",
        show_progress=show_progress,
        feature_cache=config.feature_cache,
    )

    def step(round_index: int, name: str) -> None:
        release_free_memory()  # what a step freed is not kept resident through the next one
        if on_step is not None:
            on_step(round_index, name)

    for r in range(config.rounds + 1):
        if r > 0:
            waiting = _correction_round(ws, runner, config, r, strategy, show_progress, step, shard)
            if waiting:
                return RunResult(False, r, ws.metrics())
        _train_and_evaluate(ws, runner, config, r, eval_data, show_progress, step, shard)
    return RunResult(True, None, ws.metrics())


def _correction_round(
    ws: Workspace,
    runner: ModelRunner,
    config: RunConfig,
    r: int,
    strategy: Strategy,
    show_progress: bool,
    step: Callable[[int, str], None],
    shard: Shard | None = None,
) -> bool:
    """Round r's queries, answers, corrector and closing; True if waiting for human answers.

    Every rank predicts and scores its images; rank 0 alone writes."""
    writer = is_writer(shard)
    known = {info.round: info for info in ws.rounds()}
    if r in known and known[r].status == "closed":
        return False
    acquisition = strategy.acquisition
    checked = strategy.corrector == "checked"
    if r not in known:
        started = time.perf_counter()
        model = runner.load(model_dir(ws, r - 1), seed=_model_seed(config, r - 1))
        budget = config.budget or 0
        reserve = round(config.checked.audit_share * budget) if checked else 0
        if strategy.learns:  # the prior's ranking must outlast the sampled share's picks
            reserve = budget
        if acquisition == "validated":  # its prior's rank of every segment is mixed in
            reserve = ws.num_segments()
        quirk = config.probabilities == "paper-cityscapes"
        selection = select_queries(
            ws,
            (
                (lambda image_id: runner.predict_paper_cityscapes(model, image_id))
                if quirk
                else (lambda image_id: runner.predict(model, image_id))
            ),
            config=ScoreConfig(strategy=acquisition, budget=budget, seed=config.seed),
            show_progress=show_progress,
            keep_features=strategy.keeps_features,
            embed=(
                (
                    lambda image_id, segments, ids: runner.segment_embeddings(
                        model, image_id, segments, ids
                    )
                )
                if strategy.embeds
                else None
            ),
            reserve=reserve,
            load_feature_probs=(lambda image_id: runner.predict(model, image_id))
            if quirk
            else None,
            shard=shard,
            merge_on_writer_only=True,
        )
        if writer:
            _record_queries(ws, config, r, strategy, selection, started=started)
        synchronise(shard)  # the round is recorded before any rank reads it
        step(r, "queries")
    # Answers, corrector and closing are rank 0's; every rank learns whether the round
    # waits for people (a collective, so also a barrier after rank 0's writes).
    waiting = _finish_round(ws, config, r, strategy, show_progress, step) if writer else None
    return bool(from_writer(shard, waiting))


def _record_queries(
    ws: Workspace,
    config: RunConfig,
    r: int,
    strategy: Strategy,
    selection: Selection,
    *,
    started: float,
) -> None:
    """Record round r from its selection: features, the checked corrector's audits, queries."""
    full_budget = config.budget or 0
    # Without ground truth that can judge the labels, a uniform sample of the budget
    # estimates their accuracy (a2lc.steps.quality); the strategy plans the rest.
    estimate = estimate_count(ws, budget=full_budget, share=config.estimate_share)
    budget = full_budget - estimate
    queries = selection.queries[:budget]
    extra_metrics: dict[str, float] = {}
    if selection.features is not None:
        # Saved before the round is recorded, so that a recorded round always has
        # its features, and the corrector can run after answers arrive in another process.
        saved = save_round_features(
            features_path(ws, r), selection.features, ws=ws, segments=ws.pool_segments()
        )
        if strategy.learns:
            sizes = selection.config.get("class_sizes")
            learning = time.process_time()
            queries, extra_metrics = plan_learned(
                ws,
                config=config.learned,
                learn_acquisition=strategy.acquisition in LEARNING_ACQUISITIONS,
                blend=strategy.acquisition == "hedged",
                handover=strategy.acquisition == "validated",
                propose_corrections=strategy.corrector == "proven",
                seed=config.seed,
                round_index=r,
                ranked=selection.queries,
                budget=budget,
                saved=saved,
                class_sizes=np.asarray(sizes, dtype=np.float64) if sizes is not None else None,
            )
            extra_metrics["cpu_seconds/learn"] = time.process_time() - learning
        elif strategy.corrector == "checked":
            queries, extra_metrics = plan_checked(
                ws,
                config=config.checked,
                seed=config.seed,
                round_index=r,
                ranked=selection.queries,
                budget=budget,
                saved=saved,
            )
    round_config = {**selection.config, "acquisition": strategy.acquisition}
    if estimate:
        sample = draw_estimate_sample(
            ws,
            taken={(i, s) for i, s, _ in queries},
            count=estimate,
            seed=config.seed,
            round_index=r,
        )
        queries = [*queries, *sample]
        round_config["estimate_sample"] = [[i, s] for i, s, _ in sample]
    ws.start_round(
        queries,
        strategy=config.strategy,
        budget=full_budget,
        config=round_config,
        metrics={
            "seconds/predict_and_score": time.perf_counter() - started,
            **selection.timings,
            **extra_metrics,
        },
    )


def _finish_round(
    ws: Workspace,
    config: RunConfig,
    r: int,
    strategy: Strategy,
    show_progress: bool,
    step: Callable[[int, str], None],
) -> bool:
    """Round r after its queries (rank 0): answers, corrector, closing; True if waiting."""
    checked = strategy.corrector == "checked"
    if ws.count_unanswered(r):
        if config.oracle == "human":
            log.info(
                "round %d: %d queries wait for answers; rerun when they are in",
                r,
                ws.count_unanswered(r),
            )
            return True
        answer_with_oracle(ws, r, show_progress=show_progress, exact=config.exact_answers)
        step(r, "answers")
    if strategy.lcm and not ws.step_done(r, "lcm"):
        started = time.perf_counter()
        run_lcm(ws, lcm=config.lcm, seed=config.seed, round_index=r)
        ws.record_metrics(r, {"seconds/lcm": time.perf_counter() - started})
        step(r, "lcm")
    if checked and not ws.step_done(r, "checked"):
        started = time.perf_counter()
        apply_checked(ws, config=config.checked, round_index=r)
        ws.record_metrics(r, {"seconds/checked": time.perf_counter() - started})
        step(r, "checked")
    if strategy.corrector == "proven" and not ws.step_done(r, "proven"):
        started = time.perf_counter()
        cpu = time.process_time()
        apply = apply_voiced if config.learned.guarantee == "fdr" else apply_proven
        apply(
            ws,
            config=config.learned,
            round_index=r,
            saved=load_round_features(features_path(ws, r)),
        )
        ws.record_metrics(
            r,
            {
                "seconds/proven": time.perf_counter() - started,
                "cpu_seconds/proven": time.process_time() - cpu,
            },
        )
        step(r, "proven")
    if not ws.step_done(r, "estimate"):
        estimated = estimate_label_accuracy(ws, r)
        if estimated:
            ws.record_metrics(r, estimated)
        ws.mark_step(r, "estimate")
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
    shard: Shard | None = None,
) -> None:
    """Train θ_r (data-parallel over the ranks) and measure data and model mIoU."""
    writer = is_writer(shard)
    folder = model_dir(ws, r)
    model = None
    if not ws.step_done(r, "train"):
        started = time.perf_counter()
        pool = [s.id for s in ws.samples]
        model, history = runner.fit(pool, ws.read_labels, seed=_model_seed(config, r), shard=shard)
        if writer:
            extra = {"round": r, "loss": history, "run": asdict(config)}
            runner.save(model, folder, extra=extra)
            ws.record_metrics(
                r, {"seconds/train": time.perf_counter() - started, "train_loss": history[-1]}
            )
            ws.mark_step(r, "train", {"loss": history})
        synchronise(shard)
        step(r, "train")
    if ws.step_done(r, "eval"):
        return
    started = time.perf_counter()
    values: dict[str, float] = {}
    watch = Stopwatch()
    measured = ws.measured_ids
    if measured and writer:
        with watch.part("data_miou"):
            data = data_miou(ws, show_progress=show_progress, images=measured)
            seed_images = set(ws.seed_image_ids)
            left_out = [i for i in ws.ground_truth_ids if i in seed_images]
            if ws.has_ground_truth and left_out:
                # Every pool image, seed images included: the figure earlier a2lc versions
                # reported, kept so that benchmarks stay comparable with their results.
                whole = data_miou(ws, show_progress=False, images=left_out)
                whole.matrix = whole.matrix + data.matrix
                values["data_miou_all"] = whole.miou
        values["data_miou"] = data.miou
        values["data_miou_images"] = float(len(measured))
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
            mine = share(eval_data.samples, shard)
            images = progress(mine, desc="model mIoU", total=len(mine), enabled=show_progress)
            for sample in releasing(images):
                prediction = runner.predict(model, sample.id).argmax(axis=0).astype(np.uint8)
                acc.update(read_ground_truth(eval_data, sample), prediction)
            if shard is not None:  # integer counts: the sum is exact in any order
                acc.matrix = np.sum(shard.gather(acc.matrix), axis=0)
        values["model_miou"] = acc.miou
        values.update(
            {
                f"model_iou/{c.name}": float(v)
                for c, v in zip(ws.dataset.classes, acc.iou, strict=True)
            }
        )
    if writer:
        values.update(watch.metrics())
        values["seconds/eval"] = time.perf_counter() - started
        values["segments_queried"] = float(
            sum(len(ws.queries(i.round)) for i in ws.rounds() if i.round <= r)
        )
        ws.record_metrics(r, values)
        ws.mark_step(r, "eval")
        _log_round(r, ws.metrics().get(r, values), images=len(ws.samples))
    synchronise(shard)
    step(r, "eval")


def _log_round(r: int, m: dict[str, float], *, images: int) -> None:
    """One line per finished round, for logs read after the fact (nohup, CI)."""

    parts = [f"round {r} done: {int(m.get('segments_queried', 0))} segments queried in all"]
    if "data_miou" in m:
        scope = int(m.get("data_miou_images", images))
        on = f" (on {scope} of {images} images)" if scope < images else ""
        parts.append(f"data mIoU {100 * m['data_miou']:.2f}{on}")
    if "label_accuracy_estimate" in m:
        parts.append(estimate_text(m))
    if "model_miou" in m:
        parts.append(f"model mIoU {100 * m['model_miou']:.2f}")
    if r > 0:
        changed, estimate, _ = automatic_changes(m)
        if changed != "–":
            parts.append(f"automatic changes {changed} (estimated precision: {estimate})")
    log.info("; ".join(parts))
