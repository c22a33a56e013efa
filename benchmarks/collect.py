"""Merge the results of several ``a2lc bench`` calls into one file and print the tables.

The method benchmark runs in resumable pieces (one ``--out`` folder per regime
and seed), so that each piece can be committed as it finishes. This script reads
every ``results.json`` under the given folders, keeps one run per (regime,
strategy, seed) (the newest file wins), and writes ``results.json`` and
``results.csv`` into ``--out`` (default ``benchmarks/results/method``), with the
summary per regime (mean ± std over seeds) that the README quotes.

    python benchmarks/collect.py bench-out/*/ --out benchmarks/results/method
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

from a2lc.bench.harness import summarise

METRICS = ("data_miou", "model_miou", "lcm_changed", "lcm_precision")
CHECKED = (
    "checked_proposals",
    "checked_audited",
    "checked_audit_precision",
    "checked_groups_open",
    "checked_changed",
    "checked_estimated_precision",
    "checked_precision_lower",
    "checked_true_precision",
)


def collect(folders: list[Path]) -> dict[str, Any]:
    runs: dict[tuple[str, str, int], dict[str, Any]] = {}
    sources: list[str] = []
    for folder in folders:
        for path in sorted(folder.glob("**/results.json"), key=lambda p: p.stat().st_mtime):
            data = json.loads(path.read_text())
            sources.append(str(path))
            for run in data["runs"]:
                runs[(run["noise"], run["strategy"], int(run["seed"]))] = run
    ordered = [runs[k] for k in sorted(runs)]
    regimes = sorted({k[0] for k in runs})
    return {
        "sources": sources,
        "runs": ordered,
        "summary": {
            regime: summarise([run for run in ordered if run["noise"] == regime])
            for regime in regimes
        },
    }


def write(out: Path, merged: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(merged, indent=1, default=float))
    with open(out / "results.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["noise", "strategy", "seed", "round", "budget_spent", *METRICS, *CHECKED])
        for run in merged["runs"]:
            for rec in run["rounds"]:
                writer.writerow(
                    [
                        run["noise"],
                        run["strategy"],
                        run["seed"],
                        rec["round"],
                        rec["budget_spent"],
                        *(rec.get(m) for m in METRICS),
                        *(rec.get(m) for m in CHECKED),
                    ]
                )


def print_tables(merged: dict[str, Any]) -> None:
    for regime, summary in merged["summary"].items():
        seeds = sorted({r["seed"] for r in merged["runs"] if r["noise"] == regime})
        for metric in ("data_miou", "model_miou"):
            print(f"\n{regime}, {metric} (%), mean ± std over seeds {seeds}\n")
            rounds = max(len(v[metric]["mean"]) for v in summary.values())
            print("| strategy | " + " | ".join(f"R{r}" for r in range(rounds)) + " |")
            print("|---|" + "---|" * rounds)
            for strategy, values in summary.items():
                cells = [
                    "–" if m is None else f"{m:.1f} ± {s:.1f}"
                    for m, s in zip(values[metric]["mean"], values[metric]["std"], strict=True)
                ]
                print(f"| {strategy} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="a2lc bench --out folders")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/method"))
    args = parser.parse_args(argv)
    merged = collect(args.folders)
    write(args.out, merged)
    print_tables(merged)
    print(f"\n{len(merged['runs'])} runs from {len(merged['sources'])} files → {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
