"""What the chat stores when text is hostile or the database fails (issue #17), on SQLite and PostgreSQL.

The questions go through :func:`ui.web.store_question`, the page's own path,
pointed at the test's database; faults are real: a trigger refusing the write,
a SQLite write lock held by another connection, PostgreSQL backends terminated
while the database refuses connections.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import event, text
from sqlmodel import Session, select

from assistant.answer import Answer
from assistant.answering import AnswerConfig
from feedback import store
from feedback.models import Conversation, Message, Ticket, utcnow
from service import turns
from ui import web

#: NUL (PostgreSQL refuses it in text), BEL, an ANSI colour, a lone surrogate (not encodable as UTF-8), CRLF.
HOSTILE = "How much PTO\x00 do I get?\x07 \x1b[31mnow\x1b[0m \ud800ok\r\nthanks"
CLEANED = "How much PTO do I get? now ok\nthanks"


@pytest.fixture
def app_db(engine, database_url, monkeypatch):
    """The app's own database is the test's (migrated) one."""
    monkeypatch.setenv("ONBOARD_DATABASE_URL", database_url)
    web._engine.clear()
    yield engine
    web._engine.clear()


def _refuse_messages(engine) -> None:
    """A trigger that makes every insert of a message fail, as a full disk or a lost connection would."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON message "
                              "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"))
        else:
            conn.execute(text("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                              "$$ BEGIN RAISE EXCEPTION 'disk I/O error'; END $$"))
            conn.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON message FOR EACH ROW EXECUTE FUNCTION refuse()"))


def test_hostile_text_is_stored_and_shown_clean(app_db):
    conversation_id, question = web.store_question(conversation_id=None, text=HOSTILE)
    with Session(app_db) as session:
        stored = session.get(Message, question.id)
        conversation = session.get(Conversation, conversation_id)
        assert stored.content == CLEANED and conversation.title == "How much PTO do I get? now ok thanks"
        user = store.get_or_create_user(session=session, **web.LOCAL_USER)
        pending = store.start_answer(session=session, question_id=question.id, answerer="extractive")
        answer = store.finish_answer(session=session, answer_id=pending.id, content="20 days\x00\x1b[1m [1]")
        rating = store.rate(session=session, user=user, message_id=answer.id, thumb=0, comment="wrong\x00\x07")
        renamed = store.rename_conversation(session=session, user=user, conversation_id=conversation_id,
                                            title="PTO\x00\x1b]0;title\x07 \ud83d")
        assert (answer.content, rating.comment, renamed.title) == ("20 days [1]", "wrong", "PTO")
        with pytest.raises(store.InvalidInput):  # nothing but control characters: nothing to store
            store.add_user_message(session=session, user=user, conversation_id=conversation_id, content="\x00\x07")
    number = web.report_problem("broken\x00\x1b[2J", page="chat")
    with Session(app_db) as session:
        assert session.get(Ticket, number).text == "broken"
    assert web.plain(HOSTILE) == web.plain(CLEANED) and web.safe_markdown(HOSTILE) == web.safe_markdown(CLEANED)


def test_a_first_question_that_fails_leaves_no_empty_conversation(app_db):
    _refuse_messages(app_db)
    with pytest.raises(Exception, match="disk I/O error"):
        web.store_question(conversation_id=None, text="How much PTO do I get?")
    with Session(app_db) as session:
        assert session.exec(select(Conversation)).all() == []
        assert session.exec(select(Message)).all() == []


# --- the final write of an answer, on a database that fails and recovers -------------------------------------------


class Streaming:
    """An assistant whose answer is ``TEXT``; the writer plays the part of the page."""

    TEXT = "You get 25 days of paid time off a year [1]. " * 12  # 540 characters (552 in the report)
    config, knowledge_base = AnswerConfig(), SimpleNamespace(version=1)

    def provenance(self) -> dict:
        return {"answerer": "extractive", "model": None, "prompt_version": "test", "index_version": 1}

    def ask(self, question, *, history=(), where=None, on_status=None):
        return _Stream(self.TEXT)


class _Stream:
    def __init__(self, text: str) -> None:
        self.text, self.answer = text, None

    def __iter__(self):
        for start in range(0, len(self.text), 50):
            yield self.text[start:start + 50]
        self.answer = Answer(text=self.text, citations=[], abstained=False, answerer="extractive", model=None,
                             prompt_version="test", index_version=1, input_tokens=None, output_tokens=None,
                             latency_ms=12.0, ttft_ms=3.0)


def _question(engine) -> Message:
    with Session(engine, expire_on_commit=False) as session:
        user = store.get_or_create_user(session=session, subject="alice")
        return store.start_conversation(session=session, user=user, content="How much PTO do I get?")


class Outage:
    """A real fault: SQLite's write lock held by another connection (whose busy wait is kept short), or
    PostgreSQL refusing connections to the database after its backends were terminated."""

    def __init__(self, engine, database_url: str) -> None:
        self.engine, self.url = engine, database_url
        self.sleeps: list[float] = []
        self._lock = None

    def start(self) -> None:
        if self.engine.dialect.name == "sqlite":
            self._lock = self.engine.raw_connection()  # a connection of its own from the pool
            self._lock.execute("BEGIN EXCLUSIVE")
        else:
            with _admin(self.url) as conn:
                name = self.url.rsplit("/", 1)[1]
                conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
                conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                  "WHERE datname = :name AND pid <> pg_backend_pid()"), {"name": name})

    def end(self) -> None:
        if self._lock is not None:
            self._lock.rollback()
            self._lock.close()
            self._lock = None
        elif self.engine.dialect.name != "sqlite":
            with _admin(self.url) as conn:
                conn.execute(text(f'ALTER DATABASE "{self.url.rsplit("/", 1)[1]}" ALLOW_CONNECTIONS true'))

    def sleep_then_recover_after(self, failures: int):
        """A ``sleep`` for the retries: records each wait, and ends the outage after ``failures`` of them."""

        def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)
            if len(self.sleeps) == failures:
                self.end()

        return sleep


class _admin:
    def __init__(self, url: str) -> None:
        from sqlalchemy import create_engine

        self.engine = create_engine(url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")

    def __enter__(self):
        self.conn = self.engine.connect()
        return self.conn

    def __exit__(self, *exc):
        self.conn.close()
        self.engine.dispose()


@pytest.fixture
def brittle_engine(engine):
    """The test's engine, with SQLite's wait for a lock cut from 30 s to 50 ms (each retry fails fast)."""
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _short_busy_wait(dbapi_connection, _record):
            dbapi_connection.execute("PRAGMA busy_timeout = 50")

        engine.dispose()
    return engine


def test_an_answer_whose_final_write_fails_is_retried_until_stored_complete(brittle_engine, database_url):
    engine = brittle_engine
    question = _question(engine)
    outage = Outage(engine, database_url)
    shown: list[str] = []

    def write(deltas):  # the page shows the whole answer; then the database goes away
        shown.extend(deltas)
        outage.start()

    backoff = turns.Backoff(first_s=0.01, total_s=60, sleep=outage.sleep_then_recover_after(3))
    try:
        outcome = turns.answer_turn(engine=engine, assistant=Streaming, question=question, history=[], write=write,
                                    backoff=backoff)
    finally:
        outage.end()
    assert len(outage.sleeps) == 3 and outage.sleeps == sorted(outage.sleeps)  # it waited longer each time
    assert (outcome.status, outcome.unsaved) == ("complete", None)
    with Session(engine) as session:
        answer = session.get(Message, outcome.answer_id)
        assert (answer.status, answer.content) == ("complete", Streaming.TEXT)
    assert "".join(shown) == Streaming.TEXT


def test_an_answer_still_unsaved_after_the_retries_is_kept_and_saved_later(brittle_engine, database_url):
    engine = brittle_engine
    question = _question(engine)
    outage = Outage(engine, database_url)
    backoff = turns.Backoff(first_s=0.01, total_s=0.2, sleep=outage.sleep_then_recover_after(1000))
    try:
        outcome = turns.answer_turn(engine=engine, assistant=Streaming, question=question, history=[],
                                    write=lambda deltas: (list(deltas), outage.start()), backoff=backoff)
        assert outcome.status == "unsaved" and outcome.unsaved is not None
        assert outcome.unsaved.text == Streaming.TEXT  # what the page keeps showing meanwhile
        assert turns.save(engine, outcome.unsaved) is None  # the next page run: still down
    finally:
        outage.end()
    saved = turns.save(engine, outcome.unsaved)  # a page run after the database came back
    assert saved is not None and saved.status == "complete"
    with Session(engine) as session:
        answer = session.get(Message, outcome.answer_id)
        assert (answer.status, answer.content) == ("complete", Streaming.TEXT)


# --- purging -------------------------------------------------------------------------------------------------------


def test_a_purge_on_sqlite_leaves_the_purged_text_neither_in_the_log_nor_in_the_file(tmp_path):
    from onboard import db

    path = tmp_path / "app.db"
    app = db.make_engine(f"sqlite:///{path}")  # the running app, holding its connection open all along
    db.upgrade(app)
    secret = "my salary is 123456 and my password is hunter2-PURGEME"
    with Session(app) as session:
        user = store.get_or_create_user(session=session, subject="alice")
        question = store.start_conversation(session=session, user=user, content=secret)
        store.delete_conversation(session=session, user=user, conversation_id=question.conversation_id)
    held = app.connect()
    held.execute(text("SELECT count(*) FROM message")).all()
    wal = Path(f"{path}-wal")
    assert b"PURGEME" in wal.read_bytes() + path.read_bytes()

    cli = db.make_engine(f"sqlite:///{path}")  # `onboard db purge`, another process in real life
    with Session(cli) as session:
        assert store.purge_deleted(session=session, before=utcnow() + timedelta(seconds=1)) == 1
    cli.dispose()
    assert b"PURGEME" not in (wal.read_bytes() if wal.exists() else b"")
    assert b"PURGEME" not in path.read_bytes()
    held.close()
    app.dispose()
