"""Commands that make and show a workspace: init, status, pseudo-label, import-labels."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from a2lc.cli._base import (
    WORKSPACE_HELP,
    Command,
    _distributed,
    _noise_target,
    _print_noise,
    _print_status,
    _rank_workspace,
    _seed_images,
    _summary,
)
from a2lc.errors import A2LCError

if TYPE_CHECKING:
    from a2lc.distributed import Shard

COMMANDS = {
    "init": Command(
        "create a workspace from a dataset (and initial maps)",
        "a2lc init -w work --data /data/mine --split train --labels pseudo/",
    ),
    "status": Command("summarise a workspace", "a2lc status -w work --data-miou"),
    "pseudo-label": Command(
        "make initial segments and labels (Grounded SAM, or offline sources with a seed model)",
        "a2lc pseudo-label -w work --source superpixels --seed-images 5",
    ),
    "import-labels": Command(
        "initial segments and labels from CVAT masks or COCO panoptic",
        "a2lc import-labels -w work --cvat cvat/\n"
        "a2lc import-labels -w work --coco-panoptic pan/annotations/panoptic_train.json",
    ),
}
"""This group's commands, as ``a2lc --help`` lists them."""


def register(
    add_command: Callable[..., argparse.ArgumentParser],
) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add this group's commands; returns their handlers by name."""
    from a2lc.data.readers import FORMATS
    from a2lc.pseudo_labels.grounded_sam import (
        DEFAULT_BOX_BATCH,
        DEFAULT_TEXT_THRESHOLD,
        PAPER_BOX_THRESHOLD,
    )

    init = add_command("init")
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

    status = add_command("status")
    status.add_argument("--workspace", "-w", type=Path, required=True, help=WORKSPACE_HELP)
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.add_argument(
        "--data-miou",
        action="store_true",
        help="also measure label quality and the automatic changes' true precision (needs "
        "ground truth)",
    )

    pseudo = add_command("pseudo-label")
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

    labels = add_command("import-labels")
    labels.add_argument("--workspace", "-w", type=Path, required=True, help=WORKSPACE_HELP)
    source = labels.add_mutually_exclusive_group(required=True)
    source.add_argument("--cvat", type=Path, metavar="DIR", help="a Segmentation mask 1.1 export")
    source.add_argument(
        "--coco-panoptic", type=Path, metavar="FILE.json", help="a COCO panoptic JSON"
    )

    return {
        "init": _init,
        "status": _status,
        "pseudo-label": _distributed(_pseudo_label),
        "import-labels": _import_labels,
    }


def _init(args: argparse.Namespace) -> int:
    from a2lc.data.readers import load_dataset
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


def _status(args: argparse.Namespace) -> int:
    from a2lc.steps.answers import data_miou
    from a2lc.workspace import Workspace

    with Workspace.open(args.workspace, read_only=True) as ws:
        summary = _summary(ws, truth=args.data_miou)
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
        from a2lc.data.readers import load_dataset
        from a2lc.distributed import share
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
    from a2lc.steps.pseudo_labels import make_grounded_sam_labels

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


def _pseudo_label(args: argparse.Namespace, shard: Shard | None) -> int:
    """Under torchrun the pool is labelled by image across the ranks; rank 0 commits."""
    from a2lc.steps.pseudo_labels import PseudoLabelConfig, make_pseudo_labels

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
