"""What the queries and LCM changed in a benchmark's runs, from their workspaces.

For every noise regime × strategy of ``a2lc bench --out OUT`` (all seeds and
rounds together) it prints markdown tables:

- queries: how many were asked and how many were actually mislabelled (the
  simulated annotator changed the segment's majority class), overall and by the
  label the segment carried when it was queried;
- LCM: its changes per (before → after) pair, and how many of them gave the
  segment its majority ground-truth class.

    python benchmarks/corrections.py OUT [--top 8]
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from a2lc.data.segments import majority_labels
from a2lc.workspace import Workspace


def _runs(out: Path) -> dict[tuple[str, str], list[Path]]:
    runs: dict[tuple[str, str], list[Path]] = {}
    for path in sorted(out.glob("runs/*/seed*/*")):
        if path.name != "initial" and (path / "a2lc.sqlite").exists():
            runs.setdefault((path.parent.parent.name, path.name), []).append(path)
    return runs


def _ground_truth_majority(ws: Workspace, rows: list[dict[str, Any]]) -> np.ndarray:
    """``(len(rows),)`` majority ground-truth class of each corrected segment."""
    truth = np.empty(len(rows), dtype=np.int64)
    by_image: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        by_image.setdefault(row["image_id"], []).append(i)
    for image_id, index in by_image.items():
        ids = np.asarray([rows[i]["segment_id"] for i in index])
        truth[index] = majority_labels(
            ws.read_ground_truth(image_id), ws.read_segments(image_id), ids
        )
    return truth


@dataclass
class Tally:
    """Counts over several runs: queries by label when queried, LCM changes by (before, after)."""

    names: tuple[str, ...] = ()
    queried: Counter[int] = field(default_factory=Counter)
    fixed: Counter[int] = field(default_factory=Counter)
    fixed_pixels: int = 0
    lcm_right: Counter[tuple[int, int]] = field(default_factory=Counter)
    lcm_wrong: Counter[tuple[int, int]] = field(default_factory=Counter)

    def name(self, value: int) -> str:
        return "void" if value >= len(self.names) else self.names[value]


def analyse(paths: list[Path]) -> Tally:
    tally = Tally()
    for path in paths:
        with Workspace.open(path) as ws:
            tally.names = ws.class_names
            rows = ws.corrections()
            manual = [r for r in rows if r["source"] == "manual"]
            auto = [r for r in rows if r["source"] == "auto"]
            sizes = {
                (image_id, segment_id): pixels
                for image_id, segment_id, pixels in ws.connection.execute(
                    "SELECT image_id, segment_id, pixel_count FROM segments"
                )
            }
            for r in manual:
                wrong = r["before"] != r["after"]
                tally.queried[r["before"]] += 1
                tally.fixed[r["before"]] += int(wrong)
                tally.fixed_pixels += sizes[(r["image_id"], r["segment_id"])] if wrong else 0
            if auto:
                truth = _ground_truth_majority(ws, auto)
                for r, t in zip(auto, truth, strict=True):
                    pair = (r["before"], r["after"])
                    (tally.lcm_right if t == r["after"] else tally.lcm_wrong)[pair] += 1
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="the benchmark's --out folder")
    parser.add_argument("--top", type=int, default=8, help="rows per table")
    args = parser.parse_args()
    runs = _runs(args.out)
    if not runs:
        raise SystemExit(f"{args.out}: no benchmark runs under runs/REGIME/seedN/STRATEGY")
    for (noise, strategy), paths in runs.items():
        tally = analyse(paths)
        queried, fixed = tally.queried, tally.fixed
        total_q, total_f = sum(queried.values()), sum(fixed.values())
        print(f"\n### {noise} noise, {strategy} ({len(paths)} runs)\n")
        if total_q:
            print(
                f"Queries: {total_q:,}, mislabelled {total_f:,} ({100 * total_f / total_q:.1f}%; "
                f"{tally.fixed_pixels / 1e6:.1f} M pixels).\n"
            )
            print("| label when queried | queried | mislabelled |")
            print("|---|---|---|")
            for value, count in queried.most_common(args.top):
                print(f"| {tally.name(value)} | {count:,} | {fixed[value]:,} |")
        right, wrong = tally.lcm_right, tally.lcm_wrong
        changes = sum(right.values()) + sum(wrong.values())
        if changes:
            print(
                f"\nLCM: {changes:,} changes, {sum(right.values()):,} right "
                f"({100 * sum(right.values()) / changes:.1f}%).\n"
            )
            print("| LCM change | count | right |")
            print("|---|---|---|")
            for (before, after), count in (right + wrong).most_common(args.top):
                print(
                    f"| {tally.name(before)} → {tally.name(after)} | {count:,} | "
                    f"{right[(before, after)]:,} |"
                )


if __name__ == "__main__":
    main()
