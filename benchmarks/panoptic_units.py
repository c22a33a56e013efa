"""COCO panoptic as its users measure it: PQ of a2lc's export against ground truth (issue #23).

Ground truth is converted the standard way (each stuff class one segment, each
connected region of a thing class one segment); the workspace's labels are exported
both ways: ``standard`` (the default now) and ``segments`` (one panoptic segment
per a2lc segment, the only export before). A workspace with ground truth for every
image is needed (a benchmark workspace, e.g. ``a2lc bench``'s ``runs/.../initial``).

    python benchmarks/panoptic_units.py --workspace W [--workspace W2 ...]
    # writes benchmarks/results/panoptic_units.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from a2lc._atomic import atomic_write_text
from a2lc.interop.coco_panoptic import export_panoptic, panoptic_paths, panoptic_quality
from a2lc.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "panoptic_units.json"


def measure(path: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, Workspace.open(path, read_only=True) as ws:
        if not ws.has_ground_truth:
            raise SystemExit(f"{path}: needs ground truth for every image")
        base = Path(tmp)
        export_panoptic(ws, base / "gt", labels_of=ws.read_ground_truth)
        export_panoptic(ws, base / "standard")
        export_panoptic(ws, base / "segments", units="segments")
        split = ws.dataset.split
        gt = panoptic_paths(base / "gt", split)[0]
        out: dict[str, Any] = {"workspace": str(path), "images": len(ws.samples)}
        for units in ("standard", "segments"):
            pq = panoptic_quality(gt, panoptic_paths(base / units, split)[0])
            out[units] = {g: round(pq[g]["pq"], 4) for g in ("All", "Things", "Stuff")}
        out["ground_truth_against_itself"] = round(panoptic_quality(gt, gt)["All"]["pq"], 4)
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workspace", type=Path, action="append", required=True)
    args = parser.parse_args(argv)
    results = [measure(path) for path in args.workspace]
    atomic_write_text(OUT, json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
