"""A run's options: what determines its result, stored in the workspace, checked on resume."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Literal, TypeVar

from a2lc.correction.checked import CheckedConfig
from a2lc.correction.lcm import LCMConfig
from a2lc.correction.learned import LearnedConfig
from a2lc.errors import WorkspaceError
from a2lc.models.config import ModelConfig
from a2lc.models.training import TrainConfig
from a2lc.strategies import DEFAULT_STRATEGY, ProbabilityMode
from a2lc.workspace import Workspace

T = TypeVar("T")

BUDGET_FRACTION = 0.04
"""Default budget per round: this fraction of the pool's segments."""

Oracle = Literal["gt", "human"]


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's result; stored in the workspace at the first run."""

    strategy: str = DEFAULT_STRATEGY
    rounds: int = 5
    budget: int | None = None
    oracle: Oracle = "gt"
    eval_split: str | None = None
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=6))
    lcm: LCMConfig = field(default_factory=LCMConfig)
    checked: CheckedConfig = field(default_factory=CheckedConfig)
    learned: LearnedConfig = field(default_factory=LearnedConfig)
    feature_cache: bool = True
    """A frozen encoder's features cached once (True) or computed on every batch (False:
    no cache files; on a GPU cheaper than reading them back)."""
    probabilities: ProbabilityMode = "label"
    """``label``: scores from label-resolution probabilities; ``paper-cityscapes``: the
    reference's Cityscapes quirk (ABC on a crop/2 view resized back; LCM at label
    resolution)."""
    exact_answers: bool = False
    """``--oracle gt``: the simulated annotator also paints every pixel its majority answer
    leaves wrong (a person who splits mixed segments); default: the majority rule alone."""
    estimate_share: float = 0.1
    """Where no ground truth can judge the labels (:attr:`Workspace.measured_ids` empty),
    this share of each round's budget (at least 5 segments) is a uniform sample whose
    answers estimate the labels' accuracy (:mod:`a2lc.steps.quality`)."""


@dataclass
class RunResult:
    """``finished``: all rounds done; else ``waiting_round`` awaits human answers."""

    finished: bool
    waiting_round: int | None
    metrics: dict[int, dict[str, float]]


def default_budget(ws: Workspace) -> int:
    return max(1, round(BUDGET_FRACTION * ws.num_segments()))


def _config_json(config: RunConfig) -> str:
    return json.dumps(asdict(config), sort_keys=True, default=list)


def stored_run_config(ws: Workspace) -> RunConfig | None:
    """The options the workspace's run started with (None before any run)."""
    stored = ws.meta("run_config")
    if stored is None:
        return None
    try:
        return _dataclass_from(RunConfig, json.loads(stored))
    except (TypeError, ValueError) as exc:
        raise WorkspaceError(
            f"{ws.path}: the stored run options do not read back ({exc})"
        ) from None


def _dataclass_from(cls: type[T], data: object) -> T:
    """``cls`` from the dict :func:`dataclasses.asdict` made of one (nested dataclasses,
    tuples from lists); fields it lacks keep their defaults."""
    import typing

    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__}: expected an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    values: dict[str, object] = {}
    for item in fields(cls):  # type: ignore[arg-type]
        if item.name not in data:
            continue
        value, hint = data[item.name], hints[item.name]
        if is_dataclass(hint):
            value = _dataclass_from(hint, value)  # type: ignore[arg-type]
        elif typing.get_origin(hint) is tuple and isinstance(value, list):
            value = tuple(value)
        values[item.name] = value
    return cls(**values)


FREE_ALWAYS = ("rounds", "oracle")
"""Options a resumed run may change at any time (run more rounds, switch annotators)."""
FREE_BEFORE_ROUND_1 = (
    "strategy",
    "budget",
    "lcm",
    "checked",
    "learned",
    "estimate_share",
    "exact_answers",
)
"""Options that only matter from round 1 on: free while no correction round has started."""


def check_config(ws: Workspace, config: RunConfig, *, write: bool = True) -> None:
    """Store the run config (when ``write``); refuse a resume whose options would change
    work already done."""
    stored = ws.meta("run_config")
    wanted = _config_json(config)
    if stored is not None:
        before, now = json.loads(stored), json.loads(wanted)
        defaults = json.loads(_config_json(RunConfig()))
        free = FREE_ALWAYS + (FREE_BEFORE_ROUND_1 if not ws.rounds() else ())
        diff = {
            k: (before.get(k), now.get(k))
            for k in now
            if k not in free
            and before.get(k) != now.get(k)
            # An option added after the run started, left at its default, changes nothing.
            and not (k not in before and now.get(k) == defaults.get(k))
        }
        if diff:
            raise WorkspaceError(
                f"workspace {ws.path} was started with other options; a run resumes only with the same "
                f"ones (except {', '.join(free)}). Differences (was, now): {diff}"
            )
    if stored != wanted and write:
        ws.set_meta({"run_config": wanted})
