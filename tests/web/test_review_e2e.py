"""End to end in a real headless Chromium: review automatic changes by keyboard (issue #36).

Review five changes, revert two of them (one after an undo), and the workspace shows
the verdicts as answers: five manual corrections, two of them the old label, and the
counts move. Same browser and server as :mod:`tests.web.test_e2e`.
"""

from __future__ import annotations

from pathlib import Path

from a2lc.workspace import Workspace
from tests.conftest import REVIEW_CHANGES
from tests.web.test_e2e import OUTPUT, WAIT_MS, Server, free_port, launch, new_page, sign_in


def change_shown(page: object) -> str:
    """Wait until the next change is on screen and the page takes keys; its change id."""
    page.wait_for_function(  # type: ignore[attr-defined]
        "(() => { const i = document.getElementById('zoom'); "
        "return !document.body.classList.contains('busy') "
        "&& !document.getElementById('task').hidden && i.complete && i.naturalWidth > 0; })()",
        timeout=WAIT_MS,
    )
    return str(page.get_attribute("#zoom", "data-change"))  # type: ignore[attr-defined]


def reviewed(page: object, n: int) -> None:
    page.wait_for_function(  # type: ignore[attr-defined]
        f"document.getElementById('progress').textContent.startsWith('{n} reviewed')",
        timeout=WAIT_MS,
    )


def test_review_five_changes_revert_two_by_keyboard(with_changes: Path) -> None:
    from playwright.sync_api import sync_playwright

    port = free_port()
    server = Server(with_changes, port)
    OUTPUT.mkdir(parents=True, exist_ok=True)
    with Workspace.open(with_changes, read_only=True) as ws:
        auto_before = len(ws.automatic_changes())
    shown: list[str] = []
    with sync_playwright() as p:
        browser = launch(p)
        page = new_page(browser, width=1100, height=640)
        try:
            page.goto(server.url.replace("/?token=", "/review?token="))
            page.wait_for_selector("#name", state="visible")
            page.keyboard.type("rev")
            page.keyboard.press("Enter")
            shown.append(change_shown(page))
            reviewed(page, 0)
            page.screenshot(path=str(OUTPUT / "review.png"))
            for n, key in enumerate(("a", "r", "Enter", "x"), start=1):
                page.keyboard.press(key)  # accept, revert, accept, revert
                reviewed(page, n)
                shown.append(change_shown(page))
            page.keyboard.press("u")  # undo the last revert ...
            reviewed(page, 3)
            assert change_shown(page) == shown[3]
            page.keyboard.press("r")  # ... and revert it again
            reviewed(page, 4)
            change_shown(page)
            page.keyboard.press("a")
            reviewed(page, 5)
            assert page.text_content("#progress").startswith(
                f"5 reviewed · {REVIEW_CHANGES - 5} left · you: 5"
            )
        finally:
            page.screenshot(path=str(OUTPUT / "review-end.png"))
            browser.close()
            server.kill()

    with Workspace.open(with_changes, read_only=True) as ws:
        mine = [c for c in ws.corrections(1) if c["annotator"] == "rev"]
        assert len(mine) == 5
        assert all(c["source"] == "manual" for c in mine)
        # Two corrections by a person (the reverts), three answers that keep the label.
        assert sum(c["before"] != c["after"] for c in mine) == 2
        status = ws.status()["rounds"][0]
        assert (status["answered"], status["label_changed"]) == (6 + 5, 2)
        verdicts = dict(
            ws.connection.execute(
                "SELECT change_id, verdict FROM reviews WHERE annotator = 'rev'"
            ).fetchall()
        )
        assert sorted(verdicts.values()) == ["accept"] * 3 + ["revert"] * 2
        assert set(verdicts) == {int(i) for i in shown[:5]}
        assert len(ws.automatic_changes()) == auto_before - 2  # two taken back
        reverted = {
            (c.image_id, c.segment_id): c.before
            for c in ws.automatic_changes(include_reverted=True)
            if c.reverted_by is not None
        }
        assert len(reverted) == 2
        for c in mine:
            key = (c["image_id"], c["segment_id"])
            if key in reverted:
                assert c["after"] == reverted[key]  # the person's answer: the old label
    assert (OUTPUT / "review.png").stat().st_size > 5_000


def test_a_reviewer_moves_to_another_browser_with_the_resume_code(with_changes: Path) -> None:
    """The same name in a second browser: the page says it is in use and takes the resume
    code the first browser shows; then the reviewer goes on there."""
    from playwright.sync_api import sync_playwright

    server = Server(with_changes, free_port())
    url = server.url.replace("/?token=", "/review?token=")
    with sync_playwright() as p:
        browser = launch(p)
        first = new_page(browser, width=1000, height=600)
        second = new_page(browser, width=1000, height=600)
        try:
            sign_in(first, url, "mover")
            change_shown(first)
            code = str(first.text_content("#resume-code")).removeprefix("resume code ")
            assert code, "the owning browser shows its resume code"
            sign_in(second, url, "mover")
            second.wait_for_selector("#taken", state="visible")
            assert "in use in another browser" in str(second.text_content("#taken-message"))
            assert not second.is_visible("#task")
            second.keyboard.type(code)  # the resume field has the focus
            second.keyboard.press("Enter")
            change_shown(second)
            second.keyboard.press("a")
            reviewed(second, 1)
        finally:
            second.screenshot(path=str(OUTPUT / "review-moved.png"))
            browser.close()
            server.kill()
    with Workspace.open(with_changes, read_only=True) as ws:
        rows = ws.connection.execute(
            "SELECT verdict FROM reviews WHERE annotator = 'mover'"
        ).fetchall()
        assert rows == [("accept",)]
