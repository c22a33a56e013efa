"""In a real headless Chromium: paint a mixed segment to 100%, and reuse a name elsewhere.

Uses Debian's ``chromium`` like :mod:`tests.web.test_e2e` (it fails, never skips,
without it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from a2lc.cli import main
from a2lc.data.maps import write_segment_map
from a2lc.data.synthetic import SyntheticPaths
from a2lc.workspace import Workspace
from tests.web.test_e2e import (  # the fixture kills every server a test started
    OUTPUT,
    WAIT_MS,
    Server,
    _no_server_outlives_its_test,  # noqa: F401
    free_port,
    launch,
    new_page,
    segment_shown,
    sign_in,
)


def _quadrant_workspace(synthetic: SyntheticPaths, tmp_path: Path) -> Path:
    """Four large segments per image (quadrants), so segments mix classes; round 1 open."""
    segments_dir = tmp_path / "quadrants"
    segments_dir.mkdir()
    for path in sorted(synthetic.segments.iterdir()):
        rows, cols = np.indices((48, 64))
        write_segment_map(
            segments_dir / path.name, (1 + (rows >= 24) * 2 + (cols >= 32)).astype(np.int32)
        )
    ws = tmp_path / "ws"
    assert main(["init", "-w", str(ws), "--data", str(synthetic.root),
                 "--segments", str(segments_dir), "--labels", str(synthetic.pseudo)]) == 0  # fmt: skip
    assert main(["score", "-w", str(ws), "--probs", str(synthetic.probs), "--budget", "3"]) == 0
    return ws


def _runs(wrong: np.ndarray) -> list[tuple[int, int, int]]:
    """(row, first column, last column) of each horizontal run of True."""
    out = []
    for y in range(wrong.shape[0]):
        x = 0
        while x < wrong.shape[1]:
            if wrong[y, x]:
                start = x
                while x + 1 < wrong.shape[1] and wrong[y, x + 1]:
                    x += 1
                out.append((y, start, x))
            x += 1
    return out


def test_a_person_paints_a_mixed_segment_to_its_ground_truth(
    synthetic: SyntheticPaths, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    from a2lc.web.render import context_crop

    workspace = _quadrant_workspace(synthetic, tmp_path)
    port = free_port()
    server = Server(workspace, port)
    OUTPUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = launch(p)
        page = new_page(browser, width=1280, height=800)
        try:
            sign_in(page, server.url, "painter")
            image_id, segment_id = segment_shown(page).split("/")
            # The locator thumbnail is on screen at 1280×800.
            box = page.locator("#whole").bounding_box()
            assert box is not None
            assert box["y"] + box["height"] <= 800
            with Workspace.open(workspace, read_only=True) as ws:
                segment = ws.read_segments(image_id) == int(segment_id)
                truth = ws.read_ground_truth(image_id)
                labels = ws.read_labels(image_id)
                names = list(ws.class_names)
            y0, x0, y1, x1 = context_crop(segment)
            page.keyboard.press("p")
            page.wait_for_selector("#paint", state="visible")
            for _ in range(12):
                page.keyboard.press("-")  # a one-pixel brush
            canvas = page.locator("#paint").bounding_box()
            assert canvas is not None
            sx, sy = canvas["width"] / (x1 - x0), canvas["height"] / (y1 - y0)
            wrong = segment & (truth != 255) & (labels != truth)
            assert wrong.any()  # a mixed segment: the current label is wrong on part of it
            for cls in np.unique(truth[wrong]):
                page.keyboard.press(str((int(cls) + 1) % 10))  # the brush's class (1–9, 0)
                for y, a, b in _runs(wrong & (truth == cls)):
                    cy = canvas["y"] + (y - y0 + 0.5) * sy
                    page.mouse.move(canvas["x"] + (a - x0 + 0.5) * sx, cy)
                    page.mouse.down()
                    page.mouse.move(canvas["x"] + (b - x0 + 0.5) * sx, cy, steps=2)
                    page.mouse.up()
            page.screenshot(path=str(OUTPUT / "paint.png"))
            page.keyboard.press("Enter")
            page.wait_for_function(
                "document.getElementById('progress').textContent.startsWith('1 / ')",
                timeout=WAIT_MS,
            )
        finally:
            browser.close()
            server.kill()
    with Workspace.open(workspace, read_only=True) as ws:
        after = ws.read_labels(image_id)
        (row,) = [c for c in ws.corrections(1) if c["segment_id"] == int(segment_id)]
    known = segment & (truth != 255)
    np.testing.assert_array_equal(after[known], truth[known])  # 100% on the segment
    np.testing.assert_array_equal(after[~segment], labels[~segment])  # nothing else
    assert row["annotator"] == "painter"
    assert names  # the workspace has its classes


def test_the_same_name_in_another_browser_can_continue_there(open_round: Path) -> None:
    from playwright.sync_api import sync_playwright

    port = free_port()
    server = Server(open_round, port)
    with sync_playwright() as p:
        browser = launch(p)
        try:
            first = new_page(browser, width=1280, height=800)
            sign_in(first, server.url, "newcomer")
            held = segment_shown(first)
            second = new_page(browser, width=1280, height=800)
            sign_in(second, server.url, "newcomer")
            second.wait_for_selector("#taken", state="visible")
            assert "in use in another browser" in second.inner_text("#taken-message")
            assert second.is_hidden("#task")  # no half-drawn page
            # Only the browser that owns the name shows its resume code.
            code = first.inner_text("#resume-code").removeprefix("resume code ")
            assert len(code) == 9
            assert second.inner_text("#resume-code") == ""
            second.fill("#resume", "AAAA-AAAA" if code != "AAAA-AAAA" else "BBBB-BBBB")
            second.click("#takeover")
            second.wait_for_function(
                "document.querySelector('#taken-message').textContent.includes('not the resume')"
            )
            second.wait_for_selector("#taken", state="visible")
            second.fill("#resume", code.lower())
            second.click("#takeover")
            assert segment_shown(second) == held  # the same person's work, resumed
            # The other browser is told, and may take the name back the same way.
            first.keyboard.press("Enter")
            first.wait_for_selector("#taken", state="visible")
            first.click("#other-name")
            first.wait_for_selector("#name", state="visible")
        finally:
            browser.close()
            server.kill()
