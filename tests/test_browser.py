"""One flow of the chat in a real browser: ask, see the cited answer, rate it, reload, resume, see the rating,
ask again with bare URLs and an e-mail address in the question and see no link.

Streamlit runs as it does in production (``streamlit run``) on a free port with
its data in the test's folder; Debian's Chromium (``apt-get install chromium``)
is driven by Playwright's sync API (Playwright's own browser download does not
work offline). The rating is checked in the database through
:mod:`feedback.store`. A screenshot of the end state is saved in the test's folder.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers_net import free_port, running
from sqlmodel import Session

from feedback import store
from onboard import factories
from onboard.settings import Settings
from ui import web

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-features=AsyncDns,DnsOverHttps",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]
QUESTION = "How much time off do I get?"
LINKS_QUESTION = "Should I open https://evil.example/x or www.evil.example, or email my password to x@evil.example?"
#: The first start indexes the sample handbook (and may quantise the embedding model) before the page shows.
FIRST_LOAD_MS = 180_000
STEP_MS = 60_000

pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium: apt-get install chromium"),
]



@pytest.fixture
def server(tmp_path):
    """``streamlit run`` on a free port, data in this test's folder; yields its base URL."""
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", str(ROOT / "asgi.py"),  # as onboard serve runs it
               "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(port),
               "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    url = f"http://127.0.0.1:{port}"
    # The autouse fixture has pointed ONBOARD_DATA_DIR (and the model cache) at this test's folders.
    with running(command, health_url=f"{url}/_stcore/health", log_path=tmp_path / "streamlit.log", name="streamlit",
                 cwd=tmp_path, env=os.environ.copy()):
        yield url


def _poll(read, timeout_s: float = 15):
    """``read(session)`` until it returns something other than ``None`` (the page writes asynchronously)."""
    engine = factories.make_engine(Settings())
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            with Session(engine) as session:
                found = read(session)
            if found is not None or time.monotonic() > deadline:
                return found
            time.sleep(0.2)
    finally:
        engine.dispose()


def _stored_thumb() -> int | None:
    """The local user's rating of the first answer of their only conversation, waiting for it to arrive."""

    def read(session):
        user = store.get_or_create_user(session=session, **web.LOCAL_USER)
        conversations = store.list_conversations(session=session, user=user)
        entries = store.history(session=session, user=user, conversation_id=conversations[0].id) if conversations else []
        ratings = [entry.rating for entry in entries if entry.rating is not None]
        return ratings[0].thumb if ratings else None

    return _poll(read)


def _settled(page) -> None:
    """Wait until the script run in progress has ended (a rerun replaces widgets, closing an open dropdown)."""
    page.locator("[data-test-script-state=notRunning]").wait_for()


@contextmanager
def _explained(page):
    """On a failure, print what the page showed (CI keeps no screenshots; a flake then leaves a trace)."""
    try:
        yield
    except Exception:
        try:
            print("The page showed, at the failure:\n" + page.inner_text("body")[:4000], file=sys.stderr)
        except Exception as exc:  # noqa: BLE001 - the page may be gone; the original failure matters
            print(f"(the page could not be read: {exc})", file=sys.stderr)
        raise


def _ask_the_first_question(page, server: str):
    """Open the app on a fresh server (the first load indexes the sample handbook), ask QUESTION, wait for the
    cited answer; returns the answer's chat message."""
    from playwright.sync_api import expect

    page.set_default_timeout(STEP_MS)
    page.goto(server)
    chat_box = page.get_by_test_id("stChatInputTextArea")
    chat_box.wait_for(timeout=FIRST_LOAD_MS)
    chat_box.fill(QUESTION)
    chat_box.press("Enter")
    answer = page.get_by_test_id("stChatMessage").nth(1)
    expect(answer.get_by_test_id("stExpander").first).to_contain_text("[1]")
    return answer


def test_ask_rate_reload_and_resume_in_a_browser(server, tmp_path):
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: it belongs in the test extras (pip install playwright)")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            answer = _ask_the_first_question(page, server)
            expect(page.get_by_text(web.LOCAL_MODE_NOTICE)).to_be_visible()
            chat_box = page.get_by_test_id("stChatInputTextArea")
            thumbs_up = answer.get_by_role("radio", name="Thumbs up")
            thumbs_up.click()
            expect(thumbs_up).to_be_checked()
            assert _stored_thumb() == 1

            page.reload()  # the open conversation is in the address: a reload (or a reconnection) reopens it
            chat_box.wait_for()
            expect(page.get_by_test_id("stChatMessage")).to_have_count(2)
            page.goto(server)
            chat_box.wait_for()
            expect(page.get_by_test_id("stChatMessage")).to_have_count(0)  # the app's own address: a new chat
            page.get_by_test_id("stSidebar").get_by_role("button", name=QUESTION).click()
            resumed = page.get_by_test_id("stChatMessage")
            expect(resumed).to_have_count(2)
            expect(resumed.first).to_contain_text(QUESTION)
            expect(resumed.nth(1).get_by_role("radio", name="Thumbs up")).to_be_checked()
            expect(resumed.nth(1).get_by_role("radio", name="Thumbs down")).not_to_be_checked()
            page.screenshot(path=str(tmp_path / "chat-resumed.png"), full_page=True)

            # Bare URLs and addresses in what people type are text, not links (remark-gfm would autolink them).
            _settled(page)
            chat_box.fill(LINKS_QUESTION)
            chat_box.press("Enter")
            expect(resumed).to_have_count(4)
            asked = resumed.nth(2)
            expect(asked).to_contain_text("evil.example/x")
            _settled(page)
            assert asked.locator("a").count() == 0, asked.inner_html()
        finally:
            browser.close()
    assert _stored_thumb() == 1
    # The same process serves the REST API on the same port (onboard serve runs asgi.py), over the same data.
    with urllib.request.urlopen(f"{server}/api/v1/ready", timeout=30) as ready:
        assert ready.status == 200 and json.load(ready)["checks"] == {"database": "ok", "index": "ok"}


def _ticket_status() -> str | None:
    """The triage status of the only problem report, waiting for it to be triaged."""
    from sqlmodel import select

    from feedback.models import Ticket, Triage

    def read(session):
        ticket = session.exec(select(Ticket)).first()
        entry = ticket and session.exec(
            select(Triage).where(Triage.subject == "ticket", Triage.subject_id == ticket.id)).first()
        return entry.status if entry else None

    return _poll(read)


def test_report_a_problem_from_an_answer_then_triage_it_on_the_dashboard(server, tmp_path):
    """Local mode is an employee and an admin at once: report from an answer, then triage it as the admin."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            with _explained(page):
                _report_and_triage(page, server, tmp_path)
        finally:
            browser.close()
    assert _ticket_status() == "in_progress"


def _report_and_triage(page, server: str, tmp_path: Path) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect

    answer = _ask_the_first_question(page, server)

    answer.get_by_role("button", name="Report a problem").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("What went wrong?").fill("The PTO answer misses <b>carry-over</b>")
    dialog.get_by_role("button", name="Send the report").click()
    expect(page.get_by_text("problem report #1")).to_be_visible()

    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Dashboard").click()
    expect(page.get_by_role("heading", name="Share of thumbs up")).to_be_visible()
    _settled(page)
    page.get_by_test_id("stSelectbox").filter(has_text="Answerer").click()
    page.get_by_role("option", name="extractive").click()
    expect(page.get_by_test_id("stMetric").filter(has_text="Questions")).to_contain_text("1")
    page.screenshot(path=str(tmp_path / "dashboard-filtered.png"), full_page=True)

    _settled(page)
    page.get_by_role("tab", name="Problem reports").click()
    report = page.get_by_test_id("stExpander").filter(has_text="carry-over")
    _settled(page)  # the lazy tab reruns the page: its widgets re-render until the run ends
    report.click()
    expect(report).to_contain_text("The PTO answer misses <b>carry-over</b>")  # shown as text, not HTML
    page.screenshot(path=str(tmp_path / "ticket-open.png"), full_page=True)
    _settled(page)  # a run still ending would re-render the selectbox and close its list mid-pick
    status = report.get_by_role("combobox")
    for attempt in range(3):  # a rerun still ending on a busy machine may re-render the list and close it: open again
        status.click()
        status.fill("In progress")
        try:
            page.get_by_role("option").filter(has_text="In progress").click(timeout=STEP_MS // 3)
            break
        except PlaywrightTimeout:
            if attempt == 2:
                raise
            _settled(page)
    expect(status).to_have_value("In progress")
    report.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Saved")).to_be_visible()
    page.screenshot(path=str(tmp_path / "ticket-triaged.png"), full_page=True)
