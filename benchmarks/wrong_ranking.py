"""Which segments are mislabelled? Segment-level AUROC of rankings without answers.

For each finished run workspace given, the round-0 model's per-segment mean
probabilities (saved when round 1 was scored: exactly what ``find_label_issues``
computes from that model's probability maps) are ranked by

* ``model``: ``1 − P̄[label]``, the model's own estimate (cleanlab's self-confidence);
* ``size``: smaller segments first;
* ``size_aware_W``: :func:`a2lc.correction.learned.size_aware_rank` with weight ``W``
  on the model (``find_label_issues``' default order uses
  :data:`~a2lc.correction.learned.SIZE_AWARE_SELF_WEIGHT`),

against ground truth ("wrong" = the label differs from the ground truth on more than
half of the segment's pixels). The weight was chosen by a rule fixed after the
equal mix (0.5) had been measured and before the other weights were: the best mean
AUROC over the 13 protocol cells (seed 2's twelve ``gt-proxy`` cells, seed 1's
superpixel cell) among 0.25, 0.5 and 0.75.

    python benchmarks/wrong_ranking.py --runs WORK/*/runs/*/*/validated+proven \
        --out benchmarks/results/wrong_ranking.json

Workspaces are opened read-only (one written by an older a2lc must be migrated
first by opening it for writing).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from a2lc._atomic import atomic_write_text
from a2lc.correction.learned import auroc, size_aware_rank, wrong_probability
from a2lc.data.sample import IGNORE_INDEX
from a2lc.steps.correctors import features_path, load_round_features
from a2lc.steps.learning import segment_error_fraction
from a2lc.workspace import Workspace

WEIGHTS = (0.25, 0.5, 0.75)


def measure(path: Path) -> dict[str, Any]:
    with Workspace.open(path, read_only=True) as ws:
        saved = load_round_features(features_path(ws, 1))
        if saved.label is None or saved.size is None:
            raise SystemExit(f"{path}: round 1's features lack labels and sizes")
        wrong = segment_error_fraction(ws, saved) > 0.5
    labelled = saved.label != IGNORE_INDEX
    p_wrong = wrong_probability(saved.features, saved.label)[labelled]
    sizes = saved.size[labelled].astype(np.float64)
    truth = wrong[labelled]
    row: dict[str, Any] = {
        "segments": int(labelled.sum()),
        "wrong_share": float(truth.mean()),
        "model": auroc(p_wrong, truth),
        "size": auroc(-sizes, truth),
    }
    for weight in WEIGHTS:
        row[f"size_aware_{weight}"] = auroc(size_aware_rank(p_wrong, sizes, weight=weight), truth)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="run workspaces")
    parser.add_argument("--out", type=Path, default=None, help="write the results here (JSON)")
    args = parser.parse_args(argv)
    rows = []
    for path in args.runs:
        row = {"run": "/".join(path.parts[-5:-1]), **measure(path)}
        rows.append(row)
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}))
    keys = ["model", "size", *(f"size_aware_{w}" for w in WEIGHTS)]
    mean = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    lowest = {k: float(np.min([r[k] for r in rows])) for k in keys}
    chosen = max(WEIGHTS, key=lambda w: mean[f"size_aware_{w}"])
    print("mean  ", {k: round(v, 3) for k, v in mean.items()})
    print("lowest", {k: round(v, 3) for k, v in lowest.items()})
    print(f"weight by the rule: {chosen}")
    if args.out:
        summary = {"mean": mean, "lowest": lowest, "weight_by_rule": chosen}
        atomic_write_text(args.out, json.dumps({"runs": rows, **summary}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
