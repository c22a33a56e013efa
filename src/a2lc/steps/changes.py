"""Automatic changes per round and per (from → to) class pair, as people read them.

Groups the workspace's automatic changes (:meth:`a2lc.workspace.Workspace.automatic_changes`)
by round, corrector and class pair, with what their evidence estimated and, where
ground truth can judge them, how precise they truly were. ``status`` and the report
show the result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from a2lc.steps.correctors import ground_truth_majority
from a2lc.workspace import Workspace


@dataclass(frozen=True)
class ChangeGroup:
    """Automatic changes of one round, corrector and (``before`` → ``after``) class pair.

    ``count``: changes applied (reverted ones included), ``reverted``: of them taken
    back; ``estimated``, ``lower``: the audited precision and its 95% lower bound
    behind them (None for a corrector without a guarantee); ``true``: the share that
    gave the segment its majority ground-truth class (None without ground truth);
    ``guarantee``: what the guarantee in force means, in one sentence."""

    round: int
    corrector: str
    before: str
    after: str
    count: int
    reverted: int
    estimated: float | None
    lower: float | None
    true: float | None
    guarantee: str


def change_groups(ws: Workspace, *, truth: bool = False) -> list[ChangeGroup]:
    """Every group of automatic changes, by round, corrector and class pair.

    ``truth``: also measure their true precision where images have ground truth
    (reads those ground-truth maps).
    """
    names = [*ws.class_names]
    changes = ws.automatic_changes(include_reverted=True)
    keyed: dict[tuple[int, str, int, int], list[int]] = {}
    for i, change in enumerate(changes):
        keyed.setdefault((change.round, change.corrector, change.before, change.after), []).append(
            i
        )
    right: np.ndarray | None = None
    judged = np.zeros(len(changes), dtype=bool)
    if truth and changes:
        truth_ids = set(ws.ground_truth_ids)
        judged = np.asarray([c.image_id in truth_ids for c in changes])
        right = np.zeros(len(changes), dtype=bool)
        rows = np.flatnonzero(judged)
        if rows.size:
            majority = ground_truth_majority(
                ws, [(changes[i].image_id, changes[i].segment_id) for i in rows]
            )
            right[rows] = majority == np.asarray([changes[i].after for i in rows])
    out = []
    for (r, corrector, before, after), members in sorted(keyed.items()):
        evidence = changes[members[0]].evidence
        audited, correct = evidence.get("audited"), evidence.get("right")
        estimated = correct / audited if audited else None
        mine = [i for i in members if judged[i]]
        out.append(
            ChangeGroup(
                r,
                corrector,
                names[before] if 0 <= before < len(names) else str(before),
                names[after] if 0 <= after < len(names) else str(after),
                len(members),
                sum(changes[i].reverted_by is not None for i in members),
                estimated,
                evidence.get("lower_bound"),
                float(np.mean(right[mine])) if right is not None and mine else None,
                str(evidence.get("statement") or evidence.get("recorded") or "not recorded"),
            )
        )
    return out
