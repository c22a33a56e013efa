"""HTML report of a workspace: quality per round, per-class IoU, queries, LCM changes.

Plots are PNGs (matplotlib, Agg) embedded in one self-contained HTML file.
"""

from __future__ import annotations

import base64
import html
import io
import time
from pathlib import Path
from typing import Any

import numpy as np

from a2lc._atomic import atomic_write_text
from a2lc.errors import MissingDependencyError
from a2lc.workspace import Workspace


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError('reports need matplotlib: pip install "a2lc[train]"') from None
    return plt


def figure_png(fig: Any) -> str:
    """A matplotlib figure as an ``<img>`` tag with an embedded PNG."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="">'


def _series(metrics: dict[int, dict[str, float]], name: str) -> tuple[list[int], list[float]]:
    rounds = [r for r in sorted(metrics) if name in metrics[r]]
    return rounds, [100 * metrics[r][name] for r in rounds]


def quality_plot(metrics: dict[int, dict[str, float]], title: str) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for name, label in (
        ("data_miou", "data mIoU (labels)"),
        ("label_accuracy_estimate", "label accuracy, estimated (pixels)"),
        ("model_miou", "model mIoU (val)"),
    ):
        rounds, values = _series(metrics, name)
        if rounds:
            ax.plot(rounds, values, marker="o", label=label)
    ax.set_xlabel("round")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("%")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    return figure_png(fig)


def per_class_plot(
    class_names: list[str],
    before: list[float],
    after: list[float],
    *,
    title: str,
    labels: tuple[str, str],
) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    x = np.arange(len(class_names))
    ax.bar(x - 0.2, 100 * np.nan_to_num(before), width=0.4, label=labels[0])
    ax.bar(x + 0.2, 100 * np.nan_to_num(after), width=0.4, label=labels[1])
    ax.set_xticks(x, class_names, rotation=45, ha="right")
    ax.set_ylabel("IoU (%)")
    ax.set_title(title)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return figure_png(fig)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 980px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; }
"""


def html_page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


def _percent(value: float | None) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{100 * value:.2f}"


UNCHECKED_NOTE = (
    "LCM's changes are unchecked: it makes no estimate of its precision, and on the "
    "CamVid benchmark it often lowered label quality (see docs/benchmark.md)"
)


def data_miou_scope(metrics: dict[int, dict[str, float]], *, images: int) -> str | None:
    """A note when data mIoU was measured on only some of the ``images`` pool images."""
    counts = {int(m["data_miou_images"]) for m in metrics.values() if "data_miou_images" in m}
    partial = sorted(c for c in counts if c < images)
    if not partial:
        return None
    return (
        f"data mIoU is measured on the {partial[-1]} of {images} pool images that have ground "
        "truth and that neither a person labelled nor the seed model trained on"
    )


NO_MEASURE_NOTE = (
    "no data mIoU: the only ground truth is on images a person labelled or the seed model "
    "trained on, which says nothing about the other labels; the estimated label accuracy "
    "comes from a uniformly random sample of each round's queries instead"
)


def never_right(metrics: dict[int, dict[str, float]], names: list[str]) -> list[str]:
    """Classes the last evaluated model never gets right (model IoU 0 on the evaluation split)."""
    evaluated = [r for r in sorted(metrics) if "model_miou" in metrics[r]]
    if not evaluated:
        return []
    last = metrics[evaluated[-1]]
    return [n for n in names if last.get(f"model_iou/{n}") == 0.0]


def _corrector_ran(metrics: dict[int, dict[str, float]]) -> str:
    """Which automatic corrector ran, from what the rounds recorded."""
    for key, name in (
        ("proven_changed", "proven (checked precision)"),
        ("checked_changed", "checked (audited groups)"),
        ("lcm_changed", "the paper's LCM (unchecked)"),
    ):
        if any(key in m for m in metrics.values()):
            return name
    return "none"


def change_pictures(ws: Workspace) -> str:
    """Per round with automatic changes, a few changed segments drawn at random (an honest
    sample, not the most confident): the image crop with the old label's colour (left) and
    the new one's (right)."""
    from PIL import Image

    from a2lc.data.images import read_image
    from a2lc.steps.changes import change_picture, sample_changes

    names, palette = [*ws.class_names], ws.palette
    parts = ["<h3>A random sample of the changes, per round (left: before, right: after)</h3>"]
    for change in sample_changes(ws.automatic_changes(include_reverted=True)):
        try:
            image = read_image(ws.sample(change.image_id).image_path)
        except (OSError, ValueError) as exc:
            parts.append(f"<p>{html.escape(change.image_id)}: image not readable ({exc}).</p>")
            continue
        picture = change_picture(
            image,
            ws.read_segments(change.image_id),
            change.segment_id,
            before=palette[change.before],
            after=palette[change.after],
        )
        buffer = io.BytesIO()
        Image.fromarray(picture).save(buffer, format="PNG")
        data = base64.b64encode(buffer.getvalue()).decode("ascii")
        caption = (
            f"round {change.round}, {change.corrector}: {change.image_id} segment "
            f"{change.segment_id}, {names[change.before]} → {names[change.after]}"
            + (" (reverted)" if change.reverted_by is not None else "")
        )
        parts.append(
            f'<figure class="change"><img src="data:image/png;base64,{data}" alt="">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    return "".join(parts)


def _estimate_cell(m: dict[str, float]) -> str:
    if "label_accuracy_estimate" not in m:
        return "–"
    return (
        f"{_percent(m['label_accuracy_estimate'])} "
        f"({_percent(m['label_accuracy_low'])}–{_percent(m['label_accuracy_high'])})"
    )


def workspace_report(ws: Workspace, out: Path) -> Path:
    """Write ``out`` (HTML) summarising every round of ``ws``."""
    from a2lc.steps.changes import change_groups
    from a2lc.steps.quality import (
        LEARNING_NOTE,
        automatic_changes,
        learning_rows,
        with_label_accuracy,
    )

    metrics = with_label_accuracy(ws, ws.metrics())
    names = [c.name for c in ws.dataset.classes]
    rounds = ws.rounds()
    strategies = sorted({info.strategy for info in rounds})
    budgets = sorted({info.budget for info in rounds})
    hand = len(ws.hand_labelled_ids)
    parts: list[str] = [
        f"<p>Written {html.escape(time.strftime('%Y-%m-%d %H:%M %Z'))}. "
        f"Strategy: <strong>{html.escape(', '.join(strategies) or 'no round yet')}</strong>"
        f"{'' if not budgets else f', budget {html.escape(str(budgets[-1]))} queries per round'}"
        f", corrector: {html.escape(_corrector_ran(metrics))}.</p>",
        f"<p>Workspace <code>{html.escape(str(ws.path))}</code>, "
        f"{len(ws.samples)} images, {ws.num_segments()} segments"
        + (f"; {hand} images labelled by a person, kept as they are" if hand else "")
        + ".</p>",
    ]
    parts.append(quality_plot(metrics, "Quality per round"))
    estimated = any("label_accuracy_estimate" in m for m in metrics.values())
    rows = []
    for r in sorted(metrics):
        m = metrics[r]
        rows.append(
            [
                str(r),
                f"{int(m.get('segments_queried', 0))}",
                _percent(m.get("data_miou")),
                *([_estimate_cell(m)] if estimated else []),
                _percent(m.get("model_miou")),
                *automatic_changes(m),
            ]
        )
    parts.append(
        "<h2>Rounds</h2>"
        + _table(
            [
                "round",
                "segments queried",
                "data mIoU",
                *(["estimated label accuracy (95% interval)"] if estimated else []),
                "model mIoU",
                "automatic changes",
                "estimated precision (95% lower bound)",
                "true precision",
            ],
            rows,
        )
    )
    if any("lcm_changed" in m for m in metrics.values()):
        parts.append(f"<p><strong>Note.</strong> {html.escape(UNCHECKED_NOTE)}.</p>")
    scope = data_miou_scope(metrics, images=len(ws.samples))
    if scope is not None:
        parts.append(f"<p><strong>Note.</strong> {html.escape(scope)}.</p>")
    if not ws.measured_ids:
        parts.append(f"<p><strong>Note.</strong> {html.escape(NO_MEASURE_NOTE)}.</p>")
    if estimated:
        parts.append(
            "<p><strong>Estimated label accuracy</strong> is an estimate, not ground truth: "
            "the share of the pool's pixels in segments whose label is right (segments a "
            "person labelled count as right): the labels before any answer, estimated from "
            "the answers to a uniformly random sample of each round's queries (every round's "
            "sample so far, so earlier rounds are re-estimated too), plus the segments whose "
            "answer changed the label. About 95% interval (Clopper–Pearson per sample); "
            "automatic changes widen it. A mixed segment counts as right when its majority "
            "is, so the true pixel accuracy is lower.</p>"
        )
    learning = learning_rows(metrics, {info.round: info.budget for info in rounds})
    if learning:
        parts.append(
            "<h2>Learning from the answers</h2>"
            + _table(
                [
                    "round",
                    "answer model",
                    "hand-over weight",
                    'AUROC "is wrong" (cross-validated)',
                    "explored",
                ],
                [[str(r), *(html.escape(v) for v in rest)] for r, *rest in learning],
            )
            + f"<p>{html.escape(LEARNING_NOTE[0].upper() + LEARNING_NOTE[1:])}.</p>"
        )
    groups = change_groups(ws, truth=bool(ws.ground_truth_ids))
    if groups:
        statements = {g.corrector: g.guarantee for g in groups}
        parts.append(
            "<h2>Automatic changes by class pair</h2>"
            + _table(
                [
                    "round",
                    "corrector",
                    "from → to",
                    "changed",
                    "reverted",
                    "estimated precision (95% lower bound)",
                    "true precision",
                    "reviewed (accepted)",
                ],
                [
                    [
                        str(g.round),
                        html.escape(g.corrector),
                        html.escape(f"{g.before} → {g.after}"),
                        str(g.count),
                        str(g.reverted),
                        "–"
                        if g.estimated is None
                        else f"{_percent(g.estimated)} (≥ {_percent(g.lower)})",
                        _percent(g.true),
                        f"{g.reviewed} ({g.accepted})",
                    ]
                    for g in groups
                ],
            )
            + "".join(
                f"<p><strong>{html.escape(c)}</strong>: {html.escape(s)}.</p>"
                for c, s in statements.items()
            )
            + "<p>Take changes back with <code>a2lc revert</code> (a round, a corrector or a "
            "class pair), or review them one by one in the app (<code>a2lc annotate</code>, "
            "<code>/review</code>: shown in a uniformly random order, so accepted / reviewed "
            "estimates their precision).</p>" + change_pictures(ws)
        )
    missing = never_right(metrics, names)
    if missing:
        parts.append(
            "<p><strong>Warning.</strong> The model never gets these classes right (IoU 0 "
            f"on the evaluation split): {html.escape(', '.join(missing))}. Their labels may "
            "need people more than the model.</p>"
        )
    if metrics:
        first, last = min(metrics), max(metrics)
        for kind, title in (
            ("data_iou", "Label quality per class"),
            ("model_iou", "Model quality per class"),
        ):
            before = [metrics[first].get(f"{kind}/{n}", np.nan) for n in names]
            after = [metrics[last].get(f"{kind}/{n}", np.nan) for n in names]
            if np.isfinite(before).any() or np.isfinite(after).any():
                parts.append(
                    per_class_plot(
                        names,
                        before,
                        after,
                        title=title,
                        labels=(f"round {first}", f"round {last}"),
                    )
                )
    queried_rows = []
    for info in ws.rounds():
        corrections = ws.corrections(info.round)
        manual = [c for c in corrections if c["source"] == "manual"]
        auto = [c for c in corrections if c["source"] == "auto"]
        by_class = np.bincount(
            [min(c["before"], len(names)) for c in manual], minlength=len(names) + 1
        )
        top = ", ".join(
            f"{([*names, 'void'])[i]} {n}"
            for i, n in sorted(enumerate(by_class), key=lambda t: -t[1])[:4]
            if n
        )
        queried_rows.append(
            [
                str(info.round),
                info.strategy,
                str(len(manual)),
                str(sum(c["before"] != c["after"] for c in manual)),
                html.escape(top),
                str(len(auto)),
            ]
        )
    if queried_rows:
        parts.append(
            "<h2>What was queried and what was changed automatically</h2>"
            + _table(
                [
                    "round",
                    "strategy",
                    "queried",
                    "relabelled by annotator",
                    "queried segments by label (top 4)",
                    "changed automatically",
                ],
                queried_rows,
            )
        )
    atomic_write_text(out, html_page("a2lc report", "\n".join(parts)))
    return out
