"""Named strategies (what acquisition, whether LCM) and paper presets (budgets, thresholds)."""

from __future__ import annotations

from dataclasses import dataclass

from a2lc.correction.lcm import CITYSCAPES_THRESHOLDS, VOC_THRESHOLDS
from a2lc.registry import Registry


@dataclass(frozen=True)
class Strategy:
    """``acquisition``: a registered acquisition function; ``lcm``: run LCM each round.

    Every strategy skips segments corrected manually in an earlier round.
    """

    name: str
    acquisition: str
    lcm: bool
    description: str


STRATEGIES: Registry[Strategy] = Registry("strategy")
for _s in (
    Strategy("a2lc", "abc", True, "A²LC: ABC acquisition + LCM + no re-query"),
    Strategy("alc", "alc", False, "ALC: confidence-in-label acquisition, no LCM"),
    Strategy("random", "random", False, "random segments, no LCM"),
    Strategy("abc-only", "abc", False, "ablation: ABC acquisition without LCM"),
    Strategy("lcm-only", "alc", True, "ablation: ALC acquisition with LCM"),
):
    STRATEGIES.add(_s.name, _s)


@dataclass(frozen=True)
class Preset:
    """The paper's per-dataset settings."""

    name: str
    budget: int
    rounds: int
    thresholds: tuple[float, ...]


PRESETS: Registry[Preset] = Registry("preset")
PRESETS.add("paper-cityscapes", Preset("paper-cityscapes", 10_000, 5, CITYSCAPES_THRESHOLDS))
PRESETS.add("paper-voc", Preset("paper-voc", 1_000, 5, VOC_THRESHOLDS))
