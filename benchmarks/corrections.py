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

import numpy as np

from a2lc.steps.correctors import ground_truth_majority
from a2lc.workspace import Workspace


def _runs(out: Path) -> dict[tuple[str, str], list[Path]]:
    runs: dict[tuple[str, str], list[Path]] = {}
    for path in sorted(out.glob("runs/*/seed*/*")):
        if path.name != "initial" and (path / "a2lc.sqlite").exists():
            runs.setdefault((path.parent.parent.name, path.name), []).append(path)
    return runs


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
            tables = ws.segment_labels()
            for r in manual:
                wrong = r["before"] != r["after"]
                tally.queried[r["before"]] += 1
                tally.fixed[r["before"]] += int(wrong)
                if wrong:
                    table = tables[r["image_id"]]
                    row = int(np.searchsorted(table.ids, r["segment_id"]))
                    tally.fixed_pixels += int(table.pixel_count[row])
            if auto:
                truth = ground_truth_majority(ws, [(r["image_id"], r["segment_id"]) for r in auto])
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
