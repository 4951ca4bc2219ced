"""A real OIDC login in Chromium: an employee and an admin sign in through a test provider.

``oidc-provider-mock`` runs in a thread on 127.0.0.1 with three predefined
users; the app runs as in production (``streamlit run``) with a
``secrets.toml`` written to the test's folder (``--secrets.files``). The
employee cannot reach the admin page, neither from the navigation nor by its
URL; the admin can, both ways, and logs out without an error in the server's
log. The third user's ID token carries the address of
``ONBOARD_ACCESS__ADMIN_EMAILS`` and no ``email_verified`` (as Entra ID's
do): no Dashboard for them, unless their provider is declared trusted
(``ONBOARD_ACCESS__TRUSTED_EMAIL_PROVIDERS``).

The employee's question goes to a model endpoint that refuses the key and
echoes it in its error, as some providers and proxies do: the app logs that
error with its traceback, and the server's log must show ``[redacted]``, never
the key.
"""

from __future__ import annotations

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers_net import free_port, running, serving
from test_browser import CHROMIUM, CHROMIUM_FLAGS, FIRST_LOAD_MS, QUESTION, ROOT

pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium: apt-get install chromium"),
]

STEP_MS = 30_000
EMPLOYEE = {"sub": "erin", "claims": {"email": "erin@northwind.example", "name": "Erin", "groups": ["staff"]}}
ADMIN = {"sub": "ada", "claims": {"email": "ada@northwind.example", "name": "Ada", "groups": ["admin"]}}
#: The admin e-mail, but no email_verified claim: anyone could have typed it into their profile.
BOSS = {"sub": "boss", "claims": {"email": "boss@northwind.example", "name": "Boss", "groups": ["staff"]}}
ADMIN_EMAILS = '["boss@northwind.example"]'
#: The answer model's key: no shape of its own (not sk-...), so only the configured value can be found.
ANSWER_KEY = "northwind-answers-7Kq2Vb9Lm4Xz"


@pytest.fixture
def provider():
    """The test OIDC provider; yields its base URL."""
    from oidc_provider_mock import User, run_server_in_thread

    users = [User(sub=u["sub"], claims=u["claims"]) for u in (EMPLOYEE, ADMIN, BOSS)]
    with run_server_in_thread(port=0, user_claims=users) as server:
        yield f"http://127.0.0.1:{server.server_port}"


@pytest.fixture
def model_echoing_the_key():
    """An OpenAI-compatible endpoint that refuses every key, quoting it in its error; yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            key = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            error = {"message": f"Incorrect API key provided: {key}", "type": "invalid_request_error",
                     "code": "invalid_api_key"}
            data = json.dumps({"error": error}).encode()
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    with serving(httpd):
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"


@pytest.fixture
def server(tmp_path, provider, model_echoing_the_key):
    """``streamlit run`` in login mode on a free port, data in this test's folder; yields its base URL."""
    yield from _serve(tmp_path, provider, env={
        "ONBOARD_ACCESS__ADMIN_EMAILS": ADMIN_EMAILS, "ONBOARD_ANSWER__MODE": "llm",
        "ONBOARD_ANSWER__BASE_URL": model_echoing_the_key, "ONBOARD_ANSWER__API_KEY": ANSWER_KEY})


@pytest.fixture
def server_with_named_provider(tmp_path, provider):
    """The same, with the provider in a named section (``[auth.company]``), as when there are several, declared to
    verify its e-mail addresses."""
    yield from _serve(tmp_path, provider, name="company",
                      env={"ONBOARD_ACCESS__ADMIN_EMAILS": ADMIN_EMAILS,
                           "ONBOARD_ACCESS__TRUSTED_EMAIL_PROVIDERS": '["company"]'})


def _serve(tmp_path, provider: str, name: str | None = None, env: dict[str, str] | None = None):
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
    command = [sys.executable, "-m", "streamlit", "run", str(ROOT / "asgi.py"),  # as onboard serve runs it
               "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(port),
               "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
               "--secrets.files", str(secrets)]
    with running(command, health_url=f"{url}/_stcore/health", log_path=tmp_path / "streamlit.log", name="streamlit",
                 cwd=tmp_path, env={**os.environ, **(env or {})}):
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

    expect.set_options(timeout=STEP_MS)  # not 5 s: two cores shared with other test runs
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            # The server's very first page view is the admin page's URL, before anyone signed in: Streamlit serves
            # pages/ directly until the entry point has run once, so the page itself must send people through it.
            stranger = browser.new_page(viewport={"width": 1280, "height": 900})
            stranger.set_default_timeout(FIRST_LOAD_MS)
            stranger.goto(f"{server}/admin")
            expect(stranger.get_by_role("button", name="Log in")).to_be_visible(timeout=FIRST_LOAD_MS)
            expect(stranger.get_by_role("heading", name="Dashboard")).to_have_count(0)
            stranger.close()

            page = _log_in(browser, server, EMPLOYEE["sub"], first=True)
            chat_box = page.get_by_test_id("stChatInputTextArea")
            chat_box.fill(QUESTION)
            chat_box.press("Enter")  # the model refuses the key: the answer quotes the handbook instead
            expect(page.get_by_test_id("stChatMessage").nth(1).get_by_test_id("stExpander").first).to_contain_text("[1]")
            expect(page.get_by_test_id("stSidebarNav")).to_have_count(0)  # one page: no navigation at all
            expect(page.get_by_role("link", name="Dashboard")).to_have_count(0)
            page.goto(f"{server}/admin")
            expect(page.get_by_text("Page not found")).to_be_visible()
            page.get_by_test_id("stChatInputTextArea").wait_for()
            expect(page.get_by_role("heading", name="Dashboard")).to_have_count(0)
            page.screenshot(path=str(tmp_path / "employee-admin-url.png"))

            # The admin e-mail without email_verified is an employee: no navigation, and the admin URL is not found.
            page = _log_in(browser, server, BOSS["sub"], first=False)
            expect(page.get_by_test_id("stSidebarNav")).to_have_count(0)
            page.goto(f"{server}/admin")
            expect(page.get_by_text("Page not found")).to_be_visible()
            expect(page.get_by_role("heading", name="Share of thumbs up")).to_have_count(0)

            page = _log_in(browser, server, ADMIN["sub"], first=False)
            page.get_by_test_id("stSidebarNav").get_by_role("link", name="Dashboard").click()
            expect(page.get_by_role("heading", name="Share of thumbs up")).to_be_visible()
            page.goto(f"{server}/admin")
            expect(page.get_by_role("heading", name="Share of thumbs up")).to_be_visible()
            page.screenshot(path=str(tmp_path / "admin-page.png"))

            # st.logout() only queues the redirect: the run used to go on for nobody and log NotSignedIn.
            page.get_by_test_id("stSidebar").get_by_role("button", name="Log out").click()
            page.get_by_role("button", name="End session").click()  # the test provider's logout page
            expect(page.get_by_role("button", name="Log in")).to_be_visible()
        finally:
            browser.close()
    log = (tmp_path / "streamlit.log").read_text(errors="replace")
    assert "NotSignedIn" not in log, log[-3000:]
    assert "Incorrect API key provided: [redacted]" in log and ANSWER_KEY not in log, log[-3000:]


def test_a_named_provider_declared_trusted_makes_an_admin_of_its_admin_email(server_with_named_provider):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = _log_in(browser, server_with_named_provider, BOSS["sub"], first=True, button="Log in with Company")
            page.get_by_test_id("stSidebarNav").get_by_role("link", name="Dashboard").click()
            page.get_by_role("heading", name="Share of thumbs up").wait_for()
        finally:
            browser.close()
