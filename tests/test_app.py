"""Smoke test of the app shell: the banner, the chat page, and a friendly error when the assistant cannot start.

The chat itself is tested in ``test_chat_app.py`` (AppTest) and ``test_browser.py`` (Chromium).
"""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from assistant.errors import IndexMismatch
from ui import web

APP = str(Path(__file__).resolve().parent.parent / "streamlit_app.py")


def test_the_app_says_so_when_the_assistant_cannot_start(monkeypatch):
    def broken(features=()):
        raise IndexMismatch("The index was built with another embedding model; re-index with --rebuild.")

    monkeypatch.setattr(web, "assistant", broken)
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert at.info[0].value == web.LOCAL_MODE_NOTICE
    assert at.title[0].value == "Ask the handbook"
    assert [e.value for e in at.error] == [
        web.STARTUP_FAILED + web.plain(" (The index was built with another embedding model; re-index with --rebuild.)")
    ]
    assert not at.chat_input and not at.sidebar.button  # nothing to use until it works
