"""Are a refactor's results bit-identical to the committed method benchmark? (issue #25)

Runs ``a2lc bench`` for one regime and seed (default: detector-like, seed 1, 5
rounds, 1 torch thread, as the committed benchmark ran) with ``a2lc`` and the
default strategy, and compares every round's data mIoU, model mIoU, LCM's changes
and the checked corrector's proposals and audits with
``benchmarks/results/method/results.json``.

    python benchmarks/identity.py --work /tmp/identity --label before
    # writes benchmarks/results/identity_before_detector-like_seed1.json

The run resumes (``a2lc bench --out`` does); exit status 1 when anything differs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from a2lc._atomic import atomic_write_text
from a2lc.cli import main as cli

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "benchmarks" / "results" / "method" / "results.json"
COMPARED = (
    "data_miou",
    "model_miou",
    "lcm_changed",
    "checked_proposals",
    "checked_audited",
    "checked_changed",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="a2lc bench's results folder")
    parser.add_argument("--label", required=True, help="names the result file (before, after)")
    parser.add_argument("--regime", default="detector-like")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--strategies", default="a2lc,eg+checked")
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
    ours = json.loads((args.work / "results.json").read_text())["runs"]
    committed = json.loads(COMMITTED.read_text())["runs"]
    out: dict[str, object] = {
        "note": (
            f"{args.regime} regime, seed {args.seed}, 5 rounds, 1 torch thread "
            f"(python benchmarks/identity.py --label {args.label}), compared with "
            "benchmarks/results/method/results.json"
        ),
        "runs": [],
    }
    same = True
    for strategy in args.strategies.split(","):
        run = next(r for r in ours if r["strategy"] == strategy)
        ref = next(
            r
            for r in committed
            if r["strategy"] == strategy and r["noise"] == args.regime and r["seed"] == args.seed
        )
        identical = {
            key: [r.get(key) for r in run["rounds"]] == [r.get(key) for r in ref["rounds"]]
            for key in COMPARED
        }
        same = same and all(identical.values())
        out["runs"].append(  # type: ignore[attr-defined]
            {
                "strategy": strategy,
                "identical_to_committed": identical,
                **{key: [r.get(key) for r in run["rounds"]] for key in ("data_miou", "model_miou")},
            }
        )
    path = (
        ROOT
        / "benchmarks"
        / "results"
        / f"identity_{args.label}_{args.regime}_seed{args.seed}.json"
    )
    atomic_write_text(path, json.dumps(out, indent=1) + "\n")
    print(json.dumps(out["runs"], indent=1))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
