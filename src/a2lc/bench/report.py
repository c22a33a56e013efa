"""Benchmark plots (PNG files) and ``report.html``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from a2lc._atomic import atomic_write_text
from a2lc.report import _pyplot, _table, figure_png, html_page


def mean_std_table(summary: dict[str, Any], metric: str) -> tuple[list[str], list[list[str]]]:
    strategies = list(summary)
    rounds = max(len(summary[s][metric]["mean"]) for s in strategies)
    headers = ["strategy", *[f"R{r}" for r in range(rounds)]]
    rows = []
    for s in strategies:
        cells = [s]
        for m, sd in zip(summary[s][metric]["mean"], summary[s][metric]["std"], strict=True):
            cells.append("–" if m is None else f"{m:.1f} ± {sd:.1f}")
        rows.append(cells)
    return headers, rows


def markdown_table(summary: dict[str, Any], metric: str) -> str:
    headers, rows = mean_std_table(summary, metric)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def curve_plot(summary: dict[str, Any], metric: str, title: str) -> Any:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for strategy, values in summary.items():
        mean = np.array([np.nan if v is None else v for v in values[metric]["mean"]])
        std = np.array([np.nan if v is None else v for v in values[metric]["std"]])
        rounds = np.arange(mean.size)
        ax.plot(rounds, mean, marker="o", label=strategy)
        ax.fill_between(rounds, mean - std, mean + std, alpha=0.2)
    ax.set_xlabel("round")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel(f"{title} (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def per_class_table(
    runs: list[dict[str, Any]],
    *,
    noise: str,
    key: str = "data_iou",
    rounds: tuple[int, ...] = (0, -1),
) -> tuple[list[str], list[list[str]]]:
    """Per-class IoU (%) at the given rounds, mean over seeds: one row per strategy × round."""
    mine = [run for run in runs if run["noise"] == noise]
    classes = list(mine[0]["rounds"][0][key]) if mine else []
    headers = ["strategy", "round", *classes]
    rows = []
    for strategy in dict.fromkeys(run["strategy"] for run in mine):
        theirs = [run for run in mine if run["strategy"] == strategy]
        for r in rounds:
            records = [run["rounds"][r] for run in theirs if len(run["rounds"]) > abs(r)]
            if not records:
                continue
            cells = [strategy, f"R{records[0]['round']}"]
            for name in classes:
                values = [rec[key].get(name) for rec in records]
                finite = [v for v in values if v is not None and np.isfinite(v)]
                cells.append(f"{100 * np.mean(finite):.1f}" if finite else "–")
            rows.append(cells)
    return headers, rows


def write_report(out: Path, results: dict[str, Any]) -> None:
    config = results["config"]
    parts = [
        f"<p>Data <code>{config['data']}</code>, pseudo-labels {config['pseudo']} with "
        f"{config['seed_images']} seed images, seeds {config['seeds']}. "
        f"Peak RSS {results['peak_rss_mb']:.0f} MB.</p>"
    ]
    for noise, summary in results["summary"].items():
        if not summary:
            continue
        parts.append(f"<h1>{noise} noise</h1>")
        for metric, title in (("data_miou", "data mIoU"), ("model_miou", "model mIoU")):
            fig = curve_plot(summary, metric, f"{title}, {noise} noise")
            fig.savefig(out / f"{metric}_{noise}.png", dpi=110, bbox_inches="tight")
            parts.append(f"<h2>{title} (mean ± std over seeds)</h2>" + figure_png(fig))
            parts.append(_table(*mean_std_table(summary, metric)))
        if any(
            summary[s]["lcm_changed"]["mean"][1:]
            and any(v is not None for v in summary[s]["lcm_changed"]["mean"][1:])
            for s in summary
        ):
            parts.append("<h2>LCM changes per round (segments) and precision (%)</h2>")
            parts.append(_table(*mean_std_table(summary, "lcm_changed")))
            parts.append(_table(*mean_std_table(summary, "lcm_precision")))
        parts.append("<h2>Data IoU per class (%), first and last round, mean over seeds</h2>")
        parts.append(_table(*per_class_table(results["runs"], noise=noise)))
    atomic_write_text(out / "report.html", html_page("a2lc benchmark", "\n".join(parts)))
