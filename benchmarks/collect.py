"""Merge the results of several ``a2lc bench`` calls into one file and print the tables.

The method benchmark runs in resumable pieces (one ``--out`` folder per regime
and seed), so that each piece can be committed as it finishes. This script reads
every ``results.json`` under the given folders, keeps one run per (regime,
strategy, seed) (the newest file wins), and writes ``results.json`` and
``results.csv`` into ``--out`` (default ``benchmarks/results/method``), with the
summary per regime (mean ± std over seeds) that docs/benchmark.md quotes.

    python benchmarks/collect.py bench-out/*/ --out benchmarks/results/method
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

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


def queries_to_reach(spent: list[float], miou: list[float], goal: float) -> float | None:
    """Queries at which a data-mIoU curve first reaches ``goal`` (linear between rounds)."""
    for r in range(1, len(miou)):
        if miou[r] >= goal:
            before, after = miou[r - 1], miou[r]
            share = 1.0 if after == before else (goal - before) / (after - before)
            return spent[r - 1] + max(0.0, min(1.0, share)) * (spent[r] - spent[r - 1])
    return None


def print_efficiency(merged: dict[str, Any], reference: str = "alc") -> None:
    """Queries each strategy needs to reach the reference's R5 data mIoU (mean over seeds)."""
    for regime, summary in merged["summary"].items():
        if reference not in summary:
            continue
        runs = [r for r in merged["runs"] if r["noise"] == regime and r["strategy"] == reference]
        spent = [
            float(np.mean([r["rounds"][i]["budget_spent"] for r in runs]))
            for i in range(len(runs[0]["rounds"]))
        ]
        goal = summary[reference]["data_miou"]["mean"][-1]
        print(
            f"\n{regime}: queries to reach {reference}'s R5 data mIoU ({goal:.1f}), mean curves\n"
        )
        print(f"| strategy | queries | share of {reference}'s |")
        print("|---|---:|---:|")
        for strategy, values in summary.items():
            curve = [m for m in values["data_miou"]["mean"] if m is not None]
            reached = queries_to_reach(spent[: len(curve)], curve, goal)
            cells = (
                ("not reached", "–")
                if reached is None
                else (f"{reached:,.0f}", f"{100 * reached / spent[-1]:.0f}%")
            )
            print(f"| {strategy} | {cells[0]} | {cells[1]} |")


def print_checked(merged: dict[str, Any]) -> None:
    """Per run and round: the checked corrector's proposals, audits, bound and true precision."""
    rows = [
        r
        for r in merged["runs"]
        if r["rounds"] and any("checked_changed" in x for x in r["rounds"])
    ]
    if not rows:
        return
    print(
        "\nChecked corrector per round: proposals / audited (right) / groups open / changed (true precision)\n"
    )
    print("| regime | strategy | seed | " + " | ".join(f"R{i}" for i in range(1, 6)) + " |")
    print("|---|---|---|" + "---|" * 5)
    for run in rows:
        cells = []
        for rec in run["rounds"][1:]:
            if "checked_changed" not in rec:
                cells.append("–")
                continue
            right = rec.get("checked_audit_precision")
            true = rec.get("checked_true_precision")
            cells.append(
                f"{rec['checked_proposals']:.0f} / {rec['checked_audited']:.0f}"
                + (f" ({100 * right:.0f}%)" if right is not None and right == right else "")
                + f" / {rec['checked_groups_open']:.0f} / {rec['checked_changed']:.0f}"
                + (f" ({100 * true:.0f}%)" if true is not None else "")
            )
        print(f"| {run['noise']} | {run['strategy']} | {run['seed']} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="a2lc bench --out folders")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/method"))
    args = parser.parse_args(argv)
    merged = collect(args.folders)
    write(args.out, merged)
    print_tables(merged)
    print_efficiency(merged)
    print_checked(merged)
    print(f"\n{len(merged['runs'])} runs from {len(merged['sources'])} files → {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
