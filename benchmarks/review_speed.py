"""How many automatic changes a minute can a person review in the app? (issue #36)

A scripted Chromium (Debian's, through Playwright) plays a reviewer who decides
instantly: it signs in, then presses a key as soon as the page shows the next
change and takes keys again (``A`` to accept, every fifth one ``R`` to revert), and
the throughput is the changes judged per minute of wall time. The same person
answers a round of queries by key (``Enter``: keep the label) in the query view of
the same app, same machine, same run, so the two rates can be compared. A
synthetic workspace (no network, no model): ``--count`` queries, then as many
automatic changes.

    python benchmarks/review_speed.py --work /tmp/review-speed --count 120
    # writes benchmarks/results/review_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from a2lc._atomic import atomic_write_text
from a2lc.cli import main as cli
from a2lc.data.synthetic import make_synthetic_dataset
from a2lc.workspace import Answer, Workspace

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "review_speed.json"
sys.path.insert(0, str(ROOT))

READY = (
    "(() => { const i = document.getElementById('zoom'); "
    "return !document.body.classList.contains('busy') "
    "&& !document.getElementById('task').hidden && i.complete && i.naturalWidth > 0; })()"
)


def build(work: Path, count: int) -> Path:
    data = make_synthetic_dataset(work / "data", num_images=24, height=96, width=128, cell=16)
    ws = work / "ws"
    init = ["init", "-w", str(ws), "--data", str(data.root)]
    if cli([*init, "--segments", str(data.segments), "--labels", str(data.pseudo)]) != 0:
        raise SystemExit("a2lc init failed")
    if cli(["score", "-w", str(ws), "--probs", str(data.probs), "--budget", str(count)]) != 0:
        raise SystemExit("a2lc score failed")
    return ws


def add_changes(ws_path: Path, count: int) -> None:
    with Workspace.open(ws_path) as ws:
        ws.close_round(1)
        queried = {(q.image_id, q.segment_id) for q in ws.queries(1)}
        changes: list[tuple[str, int, int]] = []
        for sample in ws.samples:
            table = ws.segment_table(sample.id)
            for segment_id, label in zip(table.ids.tolist(), table.label.tolist(), strict=True):
                if (sample.id, segment_id) not in queried and len(changes) < count:
                    changes.append((sample.id, int(segment_id), (int(label) + 1) % ws.num_classes))
        if len(changes) < count:
            raise SystemExit(f"only {len(changes)} segments to change; lower --count")
        ws.record_auto_corrections(
            1,
            changes,
            step="proven",
            confidence=[0.9] * len(changes),
            evidence={"guarantee": "fdr", "statement": "benchmark", "sources": ["answer voice"]},
        )


def judge_all(page: Any, keys: list[str], progress_done: str) -> float:
    """Press each key once the page is ready for it; seconds from the first key to the end."""
    page.wait_for_function(READY)
    started = time.perf_counter()
    for n, key in enumerate(keys):
        try:
            page.wait_for_function(READY, timeout=60_000)
        except Exception as exc:
            state = page.evaluate(
                "[document.getElementById('progress').textContent, "
                "document.getElementById('message').textContent]"
            )
            raise SystemExit(f"key {n}: the page never got ready ({state})") from exc
        page.keyboard.press(key)
    page.wait_for_function(
        f"document.getElementById('progress').textContent.startsWith('{progress_done}')"
    )
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--count", type=int, default=120)
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright
    from tests.web.test_e2e import Server, free_port, launch, new_page

    if args.work.exists():
        shutil.rmtree(args.work)
    ws = build(args.work, args.count)
    result: dict[str, Any] = {
        "count": args.count,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_average_at_start": os.getloadavg()[0],
    }
    port = free_port()
    with sync_playwright() as p:
        browser = launch(p)
        server = Server(ws, port)
        try:
            page = new_page(browser, width=1100, height=640)
            page.goto(server.url)
            page.wait_for_selector("#name", state="visible")
            page.keyboard.type("speed")
            page.keyboard.press("Enter")
            seconds = judge_all(page, ["Enter"] * args.count, f"{args.count} / {args.count}")
            result["queries"] = {"seconds": seconds, "per_minute": 60 * args.count / seconds}
            page.close()
        finally:
            server.kill()
        with Workspace.open(ws) as w:
            left = w.count_unanswered(1)
            if left:
                w.record_answers(
                    1, [Answer(q.image_id, q.segment_id, None) for q in w.unanswered(1)]
                )
        add_changes(ws, args.count)
        server = Server(ws, port)
        try:
            page = new_page(browser, width=1100, height=640)
            page.goto(server.url.replace("/?token=", "/review?token="))
            page.wait_for_selector("#name", state="visible")
            page.keyboard.type("speed-review")  # another browser: another name
            page.keyboard.press("Enter")
            keys = ["r" if i % 5 == 4 else "a" for i in range(args.count)]
            seconds = judge_all(page, keys, f"{args.count} reviewed")
            result["reviews"] = {
                "seconds": seconds,
                "per_minute": 60 * args.count / seconds,
                "reverted": keys.count("r"),
            }
        finally:
            server.kill()
            browser.close()
    result["reviews_per_query_rate"] = (
        result["reviews"]["per_minute"] / result["queries"]["per_minute"]
    )
    result["load_average_at_end"] = os.getloadavg()[0]
    atomic_write_text(OUT, json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
