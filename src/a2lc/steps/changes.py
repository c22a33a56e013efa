"""Automatic changes per round and per (from → to) class pair, as people read them.

Groups the workspace's automatic changes (:meth:`a2lc.workspace.Workspace.automatic_changes`)
by round, corrector and class pair, with what their evidence estimated and, where
ground truth can judge them, how precise they truly were. ``status`` and the report
show the result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from a2lc.steps.correctors import changes_right
from a2lc.workspace import Workspace
from a2lc.workspace.changes import AutoChange
from a2lc.workspace.review import ReviewDesk


@dataclass(frozen=True)
class ChangeGroup:
    """Automatic changes of one round, corrector and (``before`` → ``after``) class pair.

    ``count``: changes applied (reverted ones included), ``reverted``: of them taken
    back; ``estimated``, ``lower``: the audited precision and its 95% lower bound
    behind them (None for a corrector without a guarantee); ``true``: the share that
    gave the segment its majority ground-truth class (None without ground truth);
    ``guarantee``: what the guarantee in force means, in one sentence; ``reviewed``,
    ``accepted``: how many of them people reviewed in the app, and accepted (the review
    queue is a uniform shuffle, so ``accepted / reviewed`` estimates the precision)."""

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
    reviewed: int = 0
    accepted: int = 0


def change_groups(ws: Workspace, *, truth: bool = False) -> list[ChangeGroup]:
    """Every group of automatic changes, by round, corrector and class pair.

    ``truth``: also measure their true precision where images have ground truth
    (reads those ground-truth maps).
    """
    names = [*ws.class_names]
    changes = ws.automatic_changes(include_reverted=True)
    verdicts = ReviewDesk(ws).verdicts()
    keyed: dict[tuple[int, str, int, int], list[int]] = {}
    for i, change in enumerate(changes):
        keyed.setdefault((change.round, change.corrector, change.before, change.after), []).append(
            i
        )
    judged = right = np.zeros(len(changes), dtype=bool)
    if truth:
        judged, right = changes_right(ws, [(c.image_id, c.segment_id, c.after) for c in changes])
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
                float(np.mean(right[mine])) if mine else None,
                str(evidence.get("statement") or evidence.get("recorded") or "not recorded"),
                sum(changes[i].id in verdicts for i in members),
                sum(verdicts.get(changes[i].id) == "accept" for i in members),
            )
        )
    return out


PICTURES_PER_ROUND = 4
"""Changed segments the report shows per round with automatic changes."""
PICTURE_STREAM = 0xC4A6
"""Second seed word of the report's sample of changes."""


def sample_changes(
    changes: list[AutoChange], *, per_round: int = PICTURES_PER_ROUND, seed: int = 0
) -> list[AutoChange]:
    """Up to ``per_round`` changes of every round, drawn uniformly at random (seeded by
    ``seed`` and the round), so the pictures are an honest sample, not the most confident
    changes; in round order, then change order."""
    out: list[AutoChange] = []
    for r in sorted({c.round for c in changes}):
        mine = [c for c in changes if c.round == r]
        rng = np.random.default_rng([seed, r, PICTURE_STREAM])
        picked = rng.choice(len(mine), size=min(per_round, len(mine)), replace=False)
        out += [mine[i] for i in sorted(picked.tolist())]
    return out


def change_picture(
    image: np.ndarray,
    segments: np.ndarray,
    segment_id: int,
    *,
    before: tuple[int, int, int],
    after: tuple[int, int, int],
    margin: int = 24,
) -> np.ndarray:
    """``(h, 2w + 4, 3)`` uint8: a crop of ``(H, W, 3)`` ``image`` around the segment of
    ``(H, W)`` ``segments``, twice: its pixels tinted with the ``before`` label colour
    (left) and the ``after`` colour (right), outlined in white."""
    mask = np.asarray(segments) == segment_id
    if not mask.any():
        raise ValueError(f"segment {segment_id} is not in the segment map")
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    top, bottom = max(0, rows[0] - margin), min(mask.shape[0], rows[-1] + margin + 1)
    left, right = max(0, cols[0] - margin), min(mask.shape[1], cols[-1] + margin + 1)
    crop = np.asarray(image, dtype=np.float64)[top:bottom, left:right, :3]
    inside = mask[top:bottom, left:right]
    edge = inside.copy()
    edge[1:-1, 1:-1] = inside[1:-1, 1:-1] & ~(
        inside[:-2, 1:-1] & inside[2:, 1:-1] & inside[1:-1, :-2] & inside[1:-1, 2:]
    )
    panels = []
    for colour in (before, after):
        panel = crop.copy()
        panel[inside] = 0.45 * panel[inside] + 0.55 * np.asarray(colour, dtype=np.float64)
        panel[edge] = 255.0
        panels.append(panel.astype(np.uint8))
    gap = np.full((crop.shape[0], 4, 3), 255, dtype=np.uint8)
    return np.concatenate([panels[0], gap, panels[1]], axis=1)
