"""A real OIDC login in Chromium: an employee and an admin sign in through a test provider.

``oidc-provider-mock`` runs in a thread on 127.0.0.1 with two predefined
users; the app runs as in production (``streamlit run``) with a
``secrets.toml`` written to the test's folder (``--secrets.files``). The
employee cannot reach the admin page, neither from the navigation nor by its
URL; the admin can, both ways.
"""

from __future__ import annotations

import os
import sys

import pytest
from helpers_net import free_port, running
from test_browser import CHROMIUM, CHROMIUM_FLAGS, FIRST_LOAD_MS, ROOT

pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium: apt-get install chromium"),
]

STEP_MS = 30_000
EMPLOYEE = {"sub": "erin", "claims": {"email": "erin@northwind.example", "name": "Erin", "groups": ["staff"]}}
ADMIN = {"sub": "ada", "claims": {"email": "ada@northwind.example", "name": "Ada", "groups": ["admin"]}}


@pytest.fixture
def provider():
    """The test OIDC provider; yields its base URL."""
    from oidc_provider_mock import User, run_server_in_thread

    users = [User(sub=u["sub"], claims=u["claims"]) for u in (EMPLOYEE, ADMIN)]
    with run_server_in_thread(port=0, user_claims=users) as server:
        yield f"http://127.0.0.1:{server.server_port}"


@pytest.fixture
def server(tmp_path, provider):
    """``streamlit run`` in login mode on a free port, data in this test's folder; yields its base URL."""
    yield from _serve(tmp_path, provider)


@pytest.fixture
def server_with_named_provider(tmp_path, provider):
    """The same, with the provider in a named section (``[auth.company]``), as when there are several."""
    yield from _serve(tmp_path, provider, name="company")


def _serve(tmp_path, provider: str, name: str | None = None):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(
        "[auth]\n"
        f'redirect_uri = "{url}/oauth2callback"\n'
        'cookie_secret = "k7Qz2mV9pL4wR8tN1bX6cJ3hF5dG0sAy"\n'
        + (f"[auth.{name}]\n" if name else "")
        + 'client_id = "onboard"\n'
        'client_secret = "onboard-test-client"\n'
        f'server_metadata_url = "{provider}/.well-known/openid-configuration"\n'
    )
    command = [sys.executable, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py"),
               "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(port),
               "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
               "--secrets.files", str(secrets)]
    with running(command, health_url=f"{url}/_stcore/health", log_path=tmp_path / "streamlit.log", name="streamlit",
                 cwd=tmp_path, env=os.environ.copy()):
        yield url


def _log_in(browser, url: str, sub: str, first: bool, button: str = "Log in"):
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(FIRST_LOAD_MS if first else STEP_MS)
    page.goto(url)
    page.get_by_role("button", name=button, exact=True).click()
    page.set_default_timeout(STEP_MS)
    page.get_by_role("button", name=sub, exact=True).click()  # the provider's predefined user
    page.get_by_test_id("stChatInputTextArea").wait_for(timeout=FIRST_LOAD_MS if first else STEP_MS)
    expect(page.get_by_test_id("stSidebar").get_by_role("button", name="Log out")).to_be_visible()
    return page


def test_employee_and_admin_log_in_and_only_the_admin_reaches_the_admin_page(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            # The server's very first page view is the admin page's URL, before anyone signed in: Streamlit serves
            # pages/ directly until the entry point has run once, so the page itself must send people through it.
            stranger = browser.new_page(viewport={"width": 1280, "height": 900})
            stranger.set_default_timeout(FIRST_LOAD_MS)
            stranger.goto(f"{server}/admin")
            expect(stranger.get_by_role("button", name="Log in")).to_be_visible()
            expect(stranger.get_by_role("heading", name="Dashboard")).to_have_count(0)
            stranger.close()

            page = _log_in(browser, server, EMPLOYEE["sub"], first=True)
            expect(page.get_by_test_id("stSidebarNav")).to_have_count(0)  # one page: no navigation at all
            expect(page.get_by_role("link", name="Dashboard")).to_have_count(0)
            page.goto(f"{server}/admin")
            expect(page.get_by_text("Page not found")).to_be_visible()
            page.get_by_test_id("stChatInputTextArea").wait_for()
            expect(page.get_by_role("heading", name="Dashboard")).to_have_count(0)
            page.screenshot(path=str(tmp_path / "employee-admin-url.png"))

            page = _log_in(browser, server, ADMIN["sub"], first=False)
            page.get_by_test_id("stSidebarNav").get_by_role("link", name="Dashboard").click()
            expect(page.get_by_role("heading", name="Share of thumbs up")).to_be_visible()
            page.goto(f"{server}/admin")
            expect(page.get_by_role("heading", name="Share of thumbs up")).to_be_visible()
            page.screenshot(path=str(tmp_path / "admin-page.png"))
        finally:
            browser.close()


def test_a_named_provider_is_logged_in_with_its_own_button(server_with_named_provider):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = _log_in(browser, server_with_named_provider, ADMIN["sub"], first=True, button="Log in with Company")
            page.get_by_test_id("stSidebarNav").get_by_role("link", name="Dashboard").wait_for()
        finally:
            browser.close()
