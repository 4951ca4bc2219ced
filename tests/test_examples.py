"""The Slack example (examples/slack_bot.py) against a real API server and a fake Slack, on SQLite and PostgreSQL.

The example runs as it would in production: its HTTP server in a thread,
signed slash-command requests sent to it, and the answer it posts to the
command's ``response_url`` caught by a fake Slack, which also answers
``users.info`` with each person's e-mail. The API is ``api.app.standalone``
under uvicorn over a small handbook indexed with the real local model; one of
its pages is written to tempt a chat client into live links and mentions.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import json
import queue
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from helpers_kb import HANDBOOK, indexed_folder
from helpers_net import serving, serving_asgi
from sqlmodel import Session, select

from api.app import standalone
from feedback import keys
from feedback.models import Message, User
from onboard import factories
from onboard.settings import Settings

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "slack_bot.py"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_TOKEN = "xoxb-test-token"
EMAILS = {"U1": "ada@example.com", "U2": "grace@example.com"}
HOSTILE = {
    "expenses.md": """
        # Expense reports

        Expense reports are filed at pay.example.com before the 5th & signed by
        your manager; ping @channel if a < b or b > c. See www.example.org for forms.
    """,
}


def load_example():
    spec = importlib.util.spec_from_file_location("slack_bot", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeSlack:
    """``users.info`` (each user's e-mail, only with the bot token) and the ``response_url`` posts, caught."""

    def __init__(self) -> None:
        self.posted: queue.Queue = queue.Queue()
        self.lookups: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                url = urlsplit(self.path)
                user = parse_qs(url.query).get("user", [""])[0]
                fake.lookups.append(user)
                ok = url.path == "/api/users.info" and self.headers.get("Authorization") == f"Bearer {BOT_TOKEN}"
                self._json({"ok": True, "user": {"id": user, "profile": {"email": EMAILS[user]}}} if ok
                           else {"ok": False, "error": "invalid_auth"})

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                fake.posted.put((self.path, json.loads(body)))
                self._json({"ok": True})

            def _json(self, payload):
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def reply(self) -> dict:
        path, payload = self.posted.get(timeout=60)
        assert path == "/response"
        return payload


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, local_embeddings) -> Path:
    return indexed_folder(tmp_path_factory.mktemp("slack-index"), HANDBOOK | HOSTILE, local_embeddings)


@pytest.fixture
def setup(indexed, database_url, tmp_path, local_embeddings):
    """The API server, a fake Slack and the example's server; yields a way to send it signed commands."""
    import shutil

    data = tmp_path / "served"
    shutil.copytree(indexed, data, ignore=shutil.ignore_patterns("*.db", "*.lock", "models"))
    settings = Settings(data_dir=data, database_url=database_url, support={"enabled": False})
    engine = factories.make_engine(settings, migrate=True)
    service = factories.make_chat_service(settings, engine=engine,
                                          knowledge_base=factories.make_knowledge_base(settings, local_embeddings))
    with Session(engine) as session:
        _, on_behalf = keys.create_key(session, name="slack", team="people-ops", on_behalf=True)
        _, plain_key = keys.create_key(session, name="no scope", team="people-ops")
    example = load_example()
    slack = FakeSlack()
    with serving_asgi(standalone(settings, service=lambda: service)) as api_url, serving(slack.httpd):
        env = {"ONBOARD_API_URL": f"{api_url}/api/v1", "ONBOARD_API_KEY": on_behalf,
               "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_API_URL": f"{slack.url}/api"}
        bot = ThreadingHTTPServer(("127.0.0.1", 0), example.handler(env))
        with serving(bot):
            yield Setup(f"http://127.0.0.1:{bot.server_address[1]}", slack, engine, env, plain_key)
    engine.dispose()


class Setup:
    def __init__(self, bot_url, slack, engine, env, plain_key) -> None:
        self.bot_url, self.slack, self.engine, self.env, self.plain_key = bot_url, slack, engine, env, plain_key

    def command(self, text: str, user: str = "U1", *, secret: str = SIGNING_SECRET, age_s: int = 0) -> httpx.Response:
        """POST a slash command as Slack does: form-encoded, signed with the signing secret."""
        body = urlencode({"command": "/ask", "text": text, "user_id": user, "channel_id": "C1",
                          "response_url": f"{self.slack.url}/response"}).encode()
        stamp = str(int(time.time()) - age_s)
        signature = "v0=" + hmac.new(secret.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256).hexdigest()
        return httpx.post(self.bot_url, content=body, timeout=30, headers={
            "Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": signature})

    def stored(self) -> list[tuple[str, str, str]]:
        """(user subject, role, channel) of every stored message."""
        with Session(self.engine) as session:
            rows = session.exec(select(User.subject, Message.role, Message.channel)
                                .join(Message, Message.user_id == User.id).order_by(Message.id)).all()
        return [tuple(row) for row in rows]


def text_of(reply: dict) -> str:
    (block,) = reply["blocks"]
    assert block["text"]["type"] == "mrkdwn" and block["text"]["verbatim"] is True
    return block["text"]["text"]


def test_a_signed_command_is_answered_as_the_person_with_its_sources(setup):
    ack = setup.command("How many days of paid vacation do I get?")
    assert ack.status_code == 200 and ack.json()["text"] == "Looking that up…"
    reply = setup.slack.reply()
    assert reply["response_type"] == "ephemeral"
    text = text_of(reply)
    assert "twenty days" in text and "[1]" in text
    assert "*Sources*\n[1] Time off (time-off\u2060.md)" in text  # .md is a top-level domain: not linked either
    assert setup.stored() == [("apikey:1:person:ada@example.com", "user", "api"),
                              ("apikey:1:person:ada@example.com", "assistant", "api")]

    setup.command("and sick leave?")  # a follow-up: the same conversation
    assert "unlimited" in text_of(setup.slack.reply()).lower()
    setup.command("How many days of paid vacation do I get?", user="U2")  # another person: stored as theirs
    setup.slack.reply()
    subjects = [subject for subject, _, _ in setup.stored()]
    assert subjects == ["apikey:1:person:ada@example.com"] * 4 + ["apikey:1:person:grace@example.com"] * 2
    with Session(setup.engine) as session:
        conversations = session.exec(select(Message.conversation_id).order_by(Message.id)).all()
    assert len(set(conversations[:4])) == 1 and conversations[4] != conversations[0]
    assert setup.slack.lookups == ["U1", "U1", "U2"]


def test_no_link_or_mention_from_a_document_becomes_live(setup):
    setup.command("Where are expense reports filed?")
    text = text_of(setup.slack.reply())
    answer = text.split("*Sources*")[0]
    assert "Expense reports are filed at" in answer  # the tempting sentence is quoted
    assert "<" not in text and ">" not in text  # no <url|link>, <@user> or <!channel> can be formed
    assert "&lt; b" in answer and "b &gt; c" in answer and " &amp; " in answer
    assert "pay\u2060.example\u2060.com" in answer and "www\u2060.example\u2060.org" in answer  # no bare domain
    assert "\u2060@channel" in answer and "://" not in answer


def test_a_bad_or_old_signature_is_refused_and_nothing_is_asked(setup):
    assert setup.command("How many days of paid vacation do I get?", secret="not-the-secret").status_code == 401
    assert setup.command("How many days of paid vacation do I get?", age_s=600).status_code == 401
    assert setup.slack.posted.empty() and setup.slack.lookups == [] and setup.stored() == []


def test_api_refusals_reach_the_person_as_a_message(setup):
    setup.command("   ")
    assert "The question is empty" in text_of(setup.slack.reply())
    setup.env["ONBOARD_API_KEY"] = setup.plain_key  # a key made without --on-behalf cannot ask as a person
    setup.command("How many days of paid vacation do I get?")
    assert "may not ask on behalf of a person" in text_of(setup.slack.reply())
    assert setup.stored() == []


def test_slack_text_escapes_markup_and_breaks_bare_links():
    example = load_example()
    assert example.slack_text("<https://x.example|click> & <@U1> <!here>") == (
        "&lt;https:\u2060//x\u2060.example|click&gt; &amp; &lt;\u2060@U1&gt; &lt;!here&gt;")
