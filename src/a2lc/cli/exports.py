"""Commands that write results out: export, report."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from a2lc.cli._base import (
    WORKSPACE_HELP,
    Command,
    _refuse_state,
)
from a2lc.errors import A2LCError

COMMANDS = {
    "export": Command(
        "write the corrected dataset: palette PNGs, CVAT masks, COCO panoptic or FiftyOne",
        "a2lc export -w work --out corrected/\na2lc export -w work --out cvat/ --format cvat",
    ),
    "report": Command(
        "write an HTML report of a workspace", "a2lc report -w work --out report.html"
    ),
}
"""This group's commands, as ``a2lc --help`` lists them."""


def register(
    add_command: Callable[..., argparse.ArgumentParser],
) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add this group's commands; returns their handlers by name."""
    export = add_command("export")
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

    report = add_command("report")
    report.add_argument("--workspace", "-w", type=Path, required=True, help=WORKSPACE_HELP)
    report.add_argument("--out", type=Path, required=True, help="the HTML file to write")

    return {
        "export": _export,
        "report": _report,
    }


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


def _report(args: argparse.Namespace) -> int:
    from a2lc.report import workspace_report
    from a2lc.workspace import Workspace

    _refuse_state(args.workspace, args.out, "--out")
    with Workspace.open(args.workspace, read_only=True) as ws:
        print(f"report: {workspace_report(ws, args.out)}")
    return 0
