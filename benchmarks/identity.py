"""Are a refactor's results bit-identical to before it? (issue #25)

Runs ``a2lc bench`` for one regime and seed (default: detector-like, seed 1, 5
rounds, 1 torch thread, as the committed benchmark ran) with ``a2lc`` and the
default strategy, and compares every round's data mIoU (seed images counted),
model mIoU, LCM's changes and the checked corrector's proposals, audits and
changes with ``--against``: the committed method benchmark by default, or the
result file of an earlier run of this script (the code before a refactor).

    python benchmarks/identity.py --work /tmp/before --label before   # on the old code
    python benchmarks/identity.py --work /tmp/after --label after \\
        --against benchmarks/results/identity_before_detector-like_seed1.json

Writes ``benchmarks/results/identity_<label>_<regime>_seed<seed>.json``. The run
resumes (``a2lc bench --out`` does); exit status 1 when anything differs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from a2lc._atomic import atomic_write_text
from a2lc.cli import main as cli

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "benchmarks" / "results" / "method" / "results.json"
COMPARED = (
    "data_miou_all",
    "model_miou",
    "lcm_changed",
    "checked_proposals",
    "checked_audited",
    "checked_changed",
)


def _value(record: dict[str, Any], key: str) -> object:
    """A round's value; data mIoU with the seed images counted (``data_miou_all``
    where a run also has ``data_miou`` without them, as runs before that change had)."""
    if key == "data_miou_all":
        return record.get("data_miou_all") or record.get("data_miou")
    return record.get(key)


def compare(
    ours: list[dict[str, Any]],
    reference: list[dict[str, Any]],
    *,
    strategies: list[str],
    regime: str,
    seed: int,
) -> list[dict[str, Any]]:
    """Per strategy: which compared values are identical every round, and ours."""
    out = []
    for strategy in strategies:
        run = next(r for r in ours if r["strategy"] == strategy)
        ref = next(
            r
            for r in reference
            if r["strategy"] == strategy
            and r.get("noise", regime) == regime
            and r.get("seed", seed) == seed
        )
        identical = {
            key: [_value(r, key) for r in run["rounds"]] == [_value(r, key) for r in ref["rounds"]]
            for key in COMPARED
        }
        rounds = [{key: _value(r, key) for key in COMPARED} for r in run["rounds"]]
        out.append({"strategy": strategy, "identical": identical, "rounds": rounds})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="a2lc bench's results folder")
    parser.add_argument("--label", required=True, help="names the result file (before, after)")
    parser.add_argument("--regime", default="detector-like")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--strategies", default="a2lc,eg+checked")
    parser.add_argument("--against", type=Path, default=COMMITTED, help="results to compare with")
    parser.add_argument(
        "--data", type=Path, default=Path(os.environ.get("A2LC_SHARED", ROOT.parent / "shared"))
    )
    args = parser.parse_args(argv)
    code = cli(
        [
            "bench",
            "--data",
            str(args.data / "data" / "camvid"),
            "--noise",
            args.regime,
            "--seeds",
            str(args.seed),
            "--strategies",
            args.strategies,
            "--rounds",
            "5",
            "--threads",
            "1",
            "--out",
            str(args.work),
        ]
    )
    if code != 0:
        return code
    runs = compare(
        json.loads((args.work / "results.json").read_text())["runs"],
        json.loads(args.against.read_text())["runs"],
        strategies=args.strategies.split(","),
        regime=args.regime,
        seed=args.seed,
    )
    against = args.against.resolve()
    shown = against.relative_to(ROOT) if against.is_relative_to(ROOT) else against
    out = {
        "note": (
            f"{args.regime} regime, seed {args.seed}, 5 rounds, 1 torch thread "
            f"(python benchmarks/identity.py --label {args.label}), compared with {shown}"
        ),
        "runs": runs,
    }
    name = f"identity_{args.label}_{args.regime}_seed{args.seed}.json"
    atomic_write_text(ROOT / "benchmarks" / "results" / name, json.dumps(out, indent=1) + "\n")
    print(json.dumps([{r["strategy"]: r["identical"]} for r in runs], indent=1))
    return 0 if all(all(r["identical"].values()) for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
