"""Can a person answer the questions? Segment purity and the pixel-accuracy ceiling.

For each segment source, on a dataset with ground truth everywhere (CamVid train):
the share of segments with one class on at least 80% of their pixels, and the
pixel accuracy the labels would have if every segment were answered perfectly
(each segment's majority ground-truth class), over the segments' pixels and over
every labelled pixel (pixels in no segment count as wrong there). The seed model
is trained on ``--seed-images`` ground-truth images, as on your own data.

    A2LC_THREADS=2 python benchmarks/segment_purity.py --data ../shared/data/camvid \
        --work /tmp/purity            # writes benchmarks/results/segment_purity.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from a2lc._atomic import atomic_write_text
from a2lc.data.readers import load_dataset
from a2lc.data.segments import label_histograms
from a2lc.steps.pseudo_labels import PseudoLabelConfig, make_pseudo_labels
from a2lc.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "segment_purity.json"
PURE = 0.8

VARIANTS: dict[str, PseudoLabelConfig] = {
    "superpixels (SLIC 150, before)": PseudoLabelConfig(
        source="superpixels", adaptive=False, refine_below=0.0
    ),
    "superpixels, adaptive (cut where the seed model's class changes)": PseudoLabelConfig(
        source="superpixels", adaptive=True, refine_below=0.0
    ),
    "gt-proxy (benchmarks only)": PseudoLabelConfig(source="gt-proxy"),
    "superpixels, adaptive, SLIC 250": PseudoLabelConfig(
        source="superpixels", adaptive=True, superpixels=250, refine_below=0.0
    ),
    "superpixels, adaptive, SLIC 200, compactness 5 (follows edges)": PseudoLabelConfig(
        source="superpixels", adaptive=True, superpixels=200, compactness=5.0, refine_below=0.0
    ),
    "superpixels, adaptive, SLIC 150, cut parts down to 16 px": PseudoLabelConfig(
        source="superpixels", adaptive=True, adaptive_min_area=16, refine_below=0.0
    ),
    "superpixels, adaptive, SLIC 200, cut parts down to 16 px": PseudoLabelConfig(
        source="superpixels",
        adaptive=True,
        superpixels=200,
        adaptive_min_area=16,
        refine_below=0.0,
    ),
    "superpixels, adaptive, SLIC 150, unsure segments (confidence < 0.8) cut 4x finer": (
        PseudoLabelConfig(source="superpixels", adaptive=True, refine_below=0.8, refine_factor=4)
    ),
    "superpixels, adaptive, SLIC 150, unsure segments (confidence < 0.9) cut 4x finer": (
        PseudoLabelConfig(source="superpixels", adaptive=True, refine_below=0.9, refine_factor=4)
    ),
    "superpixels, adaptive, SLIC 150, unsure segments (confidence < 0.8) cut 3x finer": (
        PseudoLabelConfig(source="superpixels", adaptive=True, refine_below=0.8, refine_factor=3)
    ),
    "superpixels, adaptive, SLIC 150, unsure segments (confidence < 0.7) cut 4x finer": (
        PseudoLabelConfig(source="superpixels", adaptive=True, refine_below=0.7, refine_factor=4)
    ),
    "superpixels, adaptive, SLIC 120, unsure segments (confidence < 0.8) cut 4x finer": (
        PseudoLabelConfig(
            source="superpixels",
            adaptive=True,
            superpixels=120,
            refine_below=0.8,
            refine_factor=4,
        )
    ),
    "superpixels, adaptive, SLIC 150, unsure segments (confidence < 0.8) cut 3.5x finer "
    "(default)": (
        PseudoLabelConfig(source="superpixels", adaptive=True, refine_below=0.8, refine_factor=3.5)
    ),
    "superpixels, adaptive, SLIC 150, unsure segments (confidence < 0.85) cut 3x finer": (
        PseudoLabelConfig(source="superpixels", adaptive=True, refine_below=0.85, refine_factor=3)
    ),
    "superpixels, adaptive, SLIC 150, unsure segments (confidence < 0.75) cut 4x finer": (
        PseudoLabelConfig(source="superpixels", adaptive=True, refine_below=0.75, refine_factor=4)
    ),
}


def purity(ws: Workspace) -> dict[str, float]:
    """Segment-level purity and ceilings of the workspace's segments against its ground truth."""
    pure = total = 0
    majority_pixels = covered_pixels = valid_pixels = 0
    for sample in ws.samples:
        segments = ws.read_segments(sample.id)
        truth = ws.read_ground_truth(sample.id)
        ids = ws.segment_table(sample.id).ids
        hist = label_histograms(truth, segments, ids)[:, : ws.num_classes]
        sizes = hist.sum(axis=1)
        inside = sizes > 0
        top = hist.max(axis=1)
        pure += int((top[inside] >= PURE * sizes[inside]).sum())
        total += int(inside.sum())
        majority_pixels += int(top.sum())
        covered_pixels += int(sizes.sum())
        valid_pixels += int((truth < ws.num_classes).sum())
    return {
        "segments": total,
        "pure_share": pure / max(total, 1),
        "ceiling_covered": majority_pixels / max(covered_pixels, 1),
        "ceiling_all": majority_pixels / max(valid_pixels, 1),
        "coverage": covered_pixels / max(valid_pixels, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "camvid")
    parser.add_argument("--split", default="train")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--seed-images", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    dataset = load_dataset(args.data, split=args.split)
    rows: list[dict[str, Any]] = []
    cache = args.work / "cache"
    for name, config in VARIANTS.items():
        folder = args.work / (
            f"{config.source}-{'adaptive' if config.adaptive else 'plain'}"
            f"-{config.superpixels}-{config.compactness:g}"
            + ("" if config.adaptive_min_area == 64 else f"-min{config.adaptive_min_area}")
            + (
                ""
                if not config.refine_below
                else f"-refine{config.refine_below:g}x{config.refine_factor:g}"
            )
        )
        started = time.perf_counter()
        if not (folder / "done").is_file():
            if folder.exists():
                import shutil

                shutil.rmtree(folder)
            with Workspace.create(folder, dataset, show_progress=False) as ws:
                make_pseudo_labels(
                    ws,
                    config=replace(config, seed_images=args.seed_images, seed=args.seed),
                    cache_dir=cache,
                    show_progress=False,
                )
            (folder / "done").write_text("")
        with Workspace.open(folder) as ws:  # (migrates a workspace an older a2lc made)
            row = {"source": name, **purity(ws), "images": len(ws.samples)}
        row["seconds"] = time.perf_counter() - started
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {
        "data": f"{args.data.name}/{args.split}",
        "seed_images": args.seed_images,
        "seed": args.seed,
        "pure_threshold": PURE,
        "rows": rows,
    }
    atomic_write_text(OUT, json.dumps(result, indent=1))
    print("| segments from | segments | one class on ≥ 80% | ceiling (covered) | ceiling (all) |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['source']} | {row['segments']} | {100 * row['pure_share']:.1f}% | "
            f"{100 * row['ceiling_covered']:.1f}% | {100 * row['ceiling_all']:.1f}% |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
