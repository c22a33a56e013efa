"""The default strategy is what the committed method benchmark supports (README, issue #11).

Reads ``benchmarks/results/method/results.json`` (written by ``benchmarks/collect.py``
from ``a2lc bench`` runs): the default must have been benchmarked in every regime,
and, averaged over the seeds both were run with, be at or above ``alc`` in data
mIoU at every round of every regime. Changing the default, or results that no
longer support it, fails here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from a2lc.strategies import DEFAULT_STRATEGY, resolve_strategy

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "method" / "results.json"
REGIMES = ("seed", "detector-like", "correlated")
TOLERANCE = 1e-9
"""Equal is allowed (the default may be alc itself); no rounding slack beyond float noise."""


def data_miou(runs: list[dict[str, object]], noise: str, strategy: str) -> dict[int, np.ndarray]:
    """seed → ``(rounds,)`` data mIoU of that run."""
    return {
        int(r["seed"]): np.asarray([x["data_miou"] for x in r["rounds"]], dtype=float)  # type: ignore[index, union-attr]
        for r in runs
        if r["noise"] == noise and r["strategy"] == strategy
    }


def test_the_default_is_never_below_alc_at_any_round_of_any_regime() -> None:
    runs = json.loads(RESULTS.read_text())["runs"]
    name = resolve_strategy(DEFAULT_STRATEGY).name
    for noise in REGIMES:
        ours, alc = data_miou(runs, noise, name), data_miou(runs, noise, "alc")
        seeds = sorted(set(ours) & set(alc))
        assert seeds, f"{DEFAULT_STRATEGY} has no run beside alc in the {noise} regime"
        mean_ours = np.mean([ours[s] for s in seeds], axis=0)
        mean_alc = np.mean([alc[s] for s in seeds], axis=0)
        below = np.flatnonzero(mean_ours < mean_alc - TOLERANCE)
        assert below.size == 0, (
            f"{DEFAULT_STRATEGY} is below alc in the {noise} regime at rounds {below.tolist()} "
            f"(seeds {seeds}): {mean_ours.round(4).tolist()} vs {mean_alc.round(4).tolist()}"
        )
