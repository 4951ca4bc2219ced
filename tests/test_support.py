"""The support bot: answers from the project's docs only, cites them, hides admin docs from employees,
re-indexes a changed doc, abstains towards "Report a problem"; the Help panel stores its turns as support.

The bot runs on the real local embedding model over a small docs folder in
``tmp_path`` (and, for the evaluation set, over the real ``docs/``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from sqlmodel import Session, select
from streamlit.testing.v1 import AppTest

from assistant.vectors import ChromaLocation, make_client
from feedback.models import Conversation, Message, Rating
from onboard import factories
from onboard.settings import Settings
from service.support import SupportDesk, fingerprint

ROOT = Path(__file__).resolve().parent.parent
EMPLOYEE = {"audience": ["all", "employee"]}
ADMIN = {"audience": ["all", "employee", "pilot", "admin"]}

USER_DOC = """---
title: User guide
audience: all
---
# User guide

## Rating an answer

Under every answer there is a thumbs up and a thumbs down. Click thumbs down to tell us an answer was wrong,
then pick a reason and leave a comment.

## Who can see my conversations

Only you see your conversations. Admins see figures and the conversations behind rated answers.
"""

ADMIN_DOC = """---
title: Admin guide
audience: admin
---
# Admin guide

## Adding documents

Run onboard ingest with the folder of your documents to index them; run it again to pick up changes.
"""


@pytest.fixture
def docs(tmp_path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "user-guide.md").write_text(USER_DOC, encoding="utf-8")
    (folder / "admin-guide.md").write_text(ADMIN_DOC, encoding="utf-8")
    return folder


@pytest.fixture
def desk(docs, tmp_path, local_embeddings, monkeypatch) -> SupportDesk:
    monkeypatch.setenv("ONBOARD_SUPPORT__DOCS_DIR", str(docs))
    monkeypatch.setenv("ONBOARD_SUPPORT__CHECK_EVERY_S", "0")
    settings = Settings()
    engine = factories.make_engine(settings)
    client = make_client(ChromaLocation(path=tmp_path / "chroma"))
    support = SupportDesk(settings=settings, embeddings=local_embeddings, client=client, engine=engine)
    support.refresh(force=True)
    return support


def ask(desk: SupportDesk, question: str, where: dict):
    stream = desk.assistant.ask(question, history=[], where=where)
    text = "".join(stream)
    return text, stream.answer


def cited_files(answer) -> set[str]:
    return {c.source for c in answer.citations if c.cited}


def test_answers_cite_the_docs(desk):
    text, answer = ask(desk, "how do I give feedback on a wrong answer?", EMPLOYEE)
    assert not answer.abstained
    assert cited_files(answer) == {"user-guide.md"}
    assert "thumbs down" in text and "[1]" in text


def test_admin_documentation_is_never_shown_to_employees(desk):
    _, as_admin = ask(desk, "how do I add documents with onboard ingest?", ADMIN)
    assert "admin-guide.md" in cited_files(as_admin)
    text, as_employee = ask(desk, "how do I add documents with onboard ingest?", EMPLOYEE)
    assert "admin-guide.md" not in {c.source for c in as_employee.citations}
    assert "onboard ingest with the folder" not in text


def test_a_changed_doc_is_reindexed_and_a_removed_one_forgotten(desk, docs):
    assert desk.refresh() is None  # nothing changed: no run
    page = docs / "user-guide.md"
    page.write_text(USER_DOC + "\n## Dark mode\n\nSwitch to dark mode from the settings menu, top right.\n",
                    encoding="utf-8")
    os.utime(page, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    report = desk.refresh()
    assert report is not None and report.changed == ["user-guide.md"]
    text, answer = ask(desk, "how do I switch to dark mode?", EMPLOYEE)
    assert "settings menu" in text and not answer.abstained
    (docs / "admin-guide.md").unlink()
    report = desk.refresh()
    assert report.removed == ["admin-guide.md"]
    _, answer = ask(desk, "how do I add documents with onboard ingest?", ADMIN)
    assert "admin-guide.md" not in {c.source for c in answer.citations}


def test_help_indexed_with_another_embedding_model_is_rebuilt_not_refused(desk, tmp_path, local_embeddings):
    class Renamed:  # the same vectors under another model id, as after an upgrade of the local model
        model_id = "local:an-earlier-model"

        def __getattr__(self, name):
            return getattr(local_embeddings, name)

    client = make_client(ChromaLocation(path=tmp_path / "chroma"))
    version = desk.store.version
    upgraded = SupportDesk(settings=Settings(), embeddings=Renamed(), client=client, engine=desk.engine)
    assert upgraded.store.count() == 0 and upgraded.store.version >= version
    report = upgraded.refresh(force=True)
    assert report is not None and len(report.added) == 2
    _, answer = ask(upgraded, "How do I rate an answer?", EMPLOYEE)
    assert cited_files(answer) == {"user-guide.md"}


def test_an_unrelated_question_is_declined_towards_report_a_problem(desk):
    text, answer = ask(desk, "what is the capital of Peru?", EMPLOYEE)
    assert answer.abstained
    assert "documentation doesn't seem to cover this" in text and "Report a problem" in text


def test_the_fingerprint_follows_edits_renames_and_removals(docs):
    before = fingerprint(docs)
    (docs / "admin-guide.md").rename(docs / "admins.md")
    assert fingerprint(docs) != before
    assert fingerprint(docs / "missing") == ()


def test_the_support_evaluation_set_quotes_the_docs_exactly():
    """Every gold quote of ``eval/support_qa.jsonl`` is still in its doc (edit the docs, re-check the set)."""
    cases = [json.loads(line) for line in (ROOT / "eval/support_qa.jsonl").read_text().splitlines() if line.strip()]
    assert len(cases) >= 30
    for case in cases:
        if not case["gold_files"]:
            continue
        text = " ".join((ROOT / "docs" / case["gold_files"][0]).read_text(encoding="utf-8").split())
        assert " ".join(case["gold_quote"].split()) in text, case["id"]


def _help_app():
    from ui import help_panel

    help_panel.render("chat")


def test_the_help_panel_stores_support_turns_and_ratings(docs, monkeypatch, model_cache):
    monkeypatch.setenv("ONBOARD_SUPPORT__DOCS_DIR", str(docs))
    at = AppTest.from_function(_help_app, default_timeout=180).run()
    assert not at.exception
    at.sidebar.text_input(key="help-question").set_value("who can see my conversations?")
    at = next(b for b in at.sidebar.button if b.label == "Ask").click().run()
    assert not at.exception, [e.value for e in at.exception]
    engine = factories.make_engine(Settings())
    with Session(engine) as session:
        conversation = session.exec(select(Conversation)).one()
        question, answer = session.exec(select(Message).order_by(Message.id)).all()
    assert conversation.kind == "support" and question.kind == answer.kind == "support"
    assert answer.status == "complete" and {s["source"] for s in answer.sources if s["cited"]} == {"user-guide.md"}
    assert any("Only you see your conversations" in m.value for m in at.sidebar.markdown)
    at = at.feedback(key=f"help-thumb-{answer.id}").set_value(1).run()
    assert not at.exception
    with Session(engine) as session:
        ratings = session.exec(select(Rating)).all()
    assert [(r.message_id, r.thumb) for r in ratings] == [(answer.id, 1)]


def test_the_help_panel_lists_the_closest_pages_of_an_abstained_answer_uncited(docs, monkeypatch, model_cache):
    monkeypatch.setenv("ONBOARD_SUPPORT__DOCS_DIR", str(docs))
    monkeypatch.setenv("ONBOARD_SUPPORT__MIN_SIMILARITY", "0.95")  # every question is a near miss
    at = AppTest.from_function(_help_app, default_timeout=180).run()
    at.sidebar.text_input(key="help-question").set_value("who can see my conversations?")
    at = next(b for b in at.sidebar.button if b.label == "Ask").click().run()
    assert not at.exception, [e.value for e in at.exception]
    with Session(factories.make_engine(Settings())) as session:
        answer = session.exec(select(Message).where(Message.role == "assistant")).one()
    assert answer.status == "abstained" and answer.sources and not any(s["cited"] for s in answer.sources)
    captions = [c.value.replace("\\", "") for c in at.sidebar.caption]  # as shown: Markdown escapes removed
    assert "Closest pages (they may not answer the question):" in captions
    assert "[1] User guide › Who can see my conversations" in captions
    assert any(b.label == "Report a problem" and b.key == f"help-report-{answer.id}" for b in at.sidebar.button)


def test_a_help_conversation_can_be_deleted_like_a_chat(monkeypatch, docs):
    from feedback import store
    from ui import web

    monkeypatch.setenv("ONBOARD_SUPPORT__DOCS_DIR", str(docs))
    engine = factories.make_engine(Settings())
    with Session(engine, expire_on_commit=False) as session:
        user = store.get_or_create_user(session=session, **web.LOCAL_USER)
        question = store.start_conversation(session=session, user=user, content="how do I rename?", kind="support")
        pending = store.start_answer(session=session, question_id=question.id, answerer="extractive")
        store.finish_answer(session=session, answer_id=pending.id, content="Open the menu [1].")
    at = AppTest.from_function(_help_app, default_timeout=60).run()
    assert not at.exception
    assert any("how do I rename" in m.value for m in at.sidebar.markdown)
    assert web.DELETE_NOTE in [c.value for c in at.sidebar.caption]  # says what deleting does, and doesn't
    delete = at.sidebar.button(key=f"help-delete-{question.conversation_id}")
    assert delete.disabled  # not before saying so
    at = at.sidebar.checkbox(key=f"help-sure-{question.conversation_id}").check().run()
    at = at.sidebar.button(key=f"help-delete-{question.conversation_id}").click().run()
    assert not at.exception
    assert [t.value for t in at.toast] == ["Help conversation deleted."]
    assert not any("how do I rename" in m.value for m in at.sidebar.markdown)
    with Session(engine) as session:
        user = store.get_or_create_user(session=session, **web.LOCAL_USER)
        assert store.list_conversations(session=session, user=user, kind="support") == []
        assert session.get(Conversation, question.conversation_id).deleted_at is not None  # until the purge


def test_a_help_answer_the_database_did_not_take_is_stored_by_the_panel_later(monkeypatch, docs):
    from feedback import store
    from service.turns import Closing
    from ui import web

    monkeypatch.setenv("ONBOARD_SUPPORT__DOCS_DIR", str(docs))
    engine = factories.make_engine(Settings())
    with Session(engine, expire_on_commit=False) as session:
        user = store.get_or_create_user(session=session, **web.LOCAL_USER)
        question = store.start_conversation(session=session, user=user, content="how do I rename?", kind="support")
        pending = store.start_answer(session=session, question_id=question.id, answerer="extractive")
    at = AppTest.from_function(_help_app, default_timeout=60)
    # What the panel kept when the database went away just as this answer was shown.
    at.session_state[web.UNSAVED_KEY] = {pending.id: Closing(pending.id, failed=False,
                                                              fields={"content": "Open the menu [1]."})}
    at = at.run()
    assert not at.exception
    with Session(engine) as session:
        stored = session.get(Message, pending.id)
        assert (stored.status, stored.content) == ("complete", "Open the menu [1].")
    assert not at.session_state[web.UNSAVED_KEY]
    assert any("Open the menu" in m.value for m in at.sidebar.markdown)


def test_a_help_question_sent_while_the_database_is_away_is_kept_for_sending_again(monkeypatch, docs):
    """The panel could not load its conversation: the question typed is kept and back in the box afterwards."""
    from test_chat_app import DatabaseDown

    from ui import web

    monkeypatch.setenv("ONBOARD_SUPPORT__DOCS_DIR", str(docs))
    at = AppTest.from_function(_help_app, default_timeout=180).run()
    assert not at.exception
    down = DatabaseDown(web.engine())
    at.sidebar.text_input(key="help-question").set_value("who can see my conversations?")
    down.start()
    try:
        at = next(b for b in at.sidebar.button if b.label == "Ask").click().run()
    finally:
        down.end()
    assert not at.exception
    assert any(web.NOT_SAVED in c.value for c in at.sidebar.caption)
    at = at.run()  # the database is back
    assert at.sidebar.text_input(key="help-question").value == "who can see my conversations?"
