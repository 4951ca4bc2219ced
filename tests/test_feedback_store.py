"""Conversations, answers and ratings on a migrated database: SQLite, and PostgreSQL with TEST_DATABASE_URL."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from alembic import command
from sqlalchemy import func, inspect
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from feedback import store
from feedback.models import Conversation, Message, Rating, User, utcnow
from onboard import db

FEEDBACK_TABLES = {"app_user", "conversation", "message", "rating"}
SOURCES = [
    {"n": 1, "source": "time-off/time-off.md", "title": "Time off", "section": "PTO", "url": None, "chunk_id": "c1"},
    {"n": 2, "source": "benefits/overview.md", "title": "Benefits", "section": "", "url": None, "chunk_id": "c2"},
]


@pytest.fixture
def session(engine):
    with Session(engine) as session:
        yield session


@pytest.fixture
def alice(session) -> User:
    return store.get_or_create_user(session=session, subject="alice", email="alice@example.com", name="Alice")


@pytest.fixture
def bob(session) -> User:
    return store.get_or_create_user(session=session, subject="bob", email="bob@example.com", name="Bob")


def ask(session, user, conversation, question="How much PTO do I get?"):
    return store.add_user_message(session=session, user=user, conversation_id=conversation.id, content=question)


def answered(session, user, conversation, question="How much PTO do I get?", text="25 days a year [1]."):
    """A question and its complete answer; returns the answer."""
    q = ask(session, user, conversation, question)
    a = store.start_answer(session=session, question_id=q.id, answerer="extractive", prompt_version="answer-v1")
    return store.finish_answer(session=session, answer_id=a.id, content=text, sources=SOURCES)


# --- migrations --------------------------------------------------------------------------------------------------


@pytest.fixture
def empty_engine(database_url):
    engine = db.make_engine(database_url)
    yield engine
    engine.dispose()


def indexed_columns(schema, table: str) -> set[tuple[str, ...]]:
    return {tuple(index["column_names"]) for index in schema.get_indexes(table)}


def test_upgrade_from_empty_creates_the_feedback_tables(empty_engine):
    assert set(inspect(empty_engine).get_table_names()) == set()

    db.upgrade(empty_engine)

    schema = inspect(empty_engine)
    assert FEEDBACK_TABLES <= set(schema.get_table_names())
    message_columns = {c["name"] for c in schema.get_columns("message")}
    assert {
        "role", "content", "status", "sources", "answerer", "model", "prompt_version", "index_version", "features",
        "input_tokens", "output_tokens", "latency_ms", "ttft_ms", "error", "reply_to", "created_at",
    } <= message_columns
    uniques = schema.get_unique_constraints("rating")
    assert any(sorted(u["column_names"]) == ["message_id", "user_id"] for u in uniques)
    assert any(u["column_names"] == ["subject"] for u in schema.get_unique_constraints("app_user"))
    assert {("created_at",), ("conversation_id",)} <= indexed_columns(schema, "message")
    assert ("created_at",) in indexed_columns(schema, "rating")
    assert ("user_id", "updated_at") in indexed_columns(schema, "conversation")


def test_downgrade_drops_the_feedback_tables_and_upgrade_restores_them(empty_engine):
    config = db._alembic_config(empty_engine)
    db.upgrade(empty_engine)

    command.downgrade(config, "0001")
    tables = set(inspect(empty_engine).get_table_names())
    assert tables.isdisjoint(FEEDBACK_TABLES)
    assert {"kb_file", "kb_run"} <= tables

    command.upgrade(config, "head")
    assert FEEDBACK_TABLES <= set(inspect(empty_engine).get_table_names())


def test_upgrade_from_the_knowledge_base_schema_keeps_its_rows(empty_engine):
    from assistant.manifest import IngestRun

    db.upgrade(empty_engine, "0001")
    with Session(empty_engine) as session:
        session.add(IngestRun(collection="handbook", roots=["/docs"]))
        session.commit()

    db.upgrade(empty_engine)

    assert FEEDBACK_TABLES <= set(inspect(empty_engine).get_table_names())
    with Session(empty_engine) as session:
        assert [run.roots for run in session.exec(select(IngestRun)).all()] == [["/docs"]]
        store.get_or_create_user(session=session, subject="alice")


def test_migrations_match_the_models(engine):
    """Nothing in the feedback models is missing from (or different in) the migrations."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlmodel import SQLModel

    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert [d for d in diff if any(t in repr(d) for t in FEEDBACK_TABLES)] == []


# --- users -------------------------------------------------------------------------------------------------------


def test_users_are_created_once_and_kept_up_to_date(session):
    first = store.get_or_create_user(session=session, subject="carol", email="c@old.example", groups=["staff"])
    again = store.get_or_create_user(
        session=session, subject="carol", email="c@new.example", name="Carol", groups=["staff", "admin", "staff"]
    )

    assert again.id == first.id
    assert (again.email, again.name, again.groups) == ("c@new.example", "Carol", ["admin", "staff"])
    assert session.exec(select(func.count()).select_from(User)).one() == 1
    with pytest.raises(store.InvalidInput):
        store.get_or_create_user(session=session, subject="  ")


# --- the question is never lost ----------------------------------------------------------------------------------


def test_the_question_is_stored_before_the_answer_and_a_failed_answer_keeps_it(engine, session, alice):
    conversation = store.create_conversation(session=session, user=alice)
    question = ask(session, alice, conversation, "Can I carry over unused PTO?")

    with Session(engine) as other:  # committed: another connection sees it before any answer exists
        stored = other.exec(select(Message).where(Message.conversation_id == conversation.id)).all()
        assert [(m.role, m.content, m.status) for m in stored] == [("user", "Can I carry over unused PTO?", "complete")]

    answer = store.start_answer(
        session=session,
        question_id=question.id,
        answerer="openai",
        model="gpt-x",
        prompt_version="answer-v3",
        index_version=7,
        features=["hybrid"],
    )
    with Session(engine) as other:
        assert other.get(Message, answer.id).status == "pending"

    failed = store.fail_answer(
        session=session,
        answer_id=answer.id,
        error="The model service timed out.",
        content="Unused PTO",
        latency_ms=9_000,
    )

    with Session(engine) as other:
        rows = other.exec(select(Message).where(Message.conversation_id == conversation.id).order_by(Message.id)).all()
    assert [(m.role, m.status) for m in rows] == [("user", "complete"), ("assistant", "failed")]
    assert rows[0].content == "Can I carry over unused PTO?"
    assert rows[1].error == "The model service timed out."
    assert rows[1].content == "Unused PTO"
    assert (rows[1].reply_to, rows[1].model, rows[1].prompt_version, rows[1].index_version) == (
        question.id, "gpt-x", "answer-v3", 7
    )
    assert rows[1].features == ["hybrid"]
    assert failed.finished_at is not None
    with pytest.raises(store.InvalidState):
        store.finish_answer(session=session, answer_id=answer.id, content="too late")


def test_an_interrupted_answer_is_stored_with_its_status(session, alice):
    conversation = store.create_conversation(session=session, user=alice)
    question = ask(session, alice, conversation)
    stopped = store.start_answer(session=session, question_id=question.id, answerer="openai")
    store.fail_answer(
        session=session, answer_id=stopped.id, error="Stopped by the user.", content="You get", interrupted=True
    )
    crashed = store.start_answer(session=session, question_id=question.id, answerer="openai")

    assert store.interrupt_stale_answers(session=session, older_than=timedelta(hours=1)) == 0
    assert store.interrupt_stale_answers(session=session, older_than=timedelta(0)) == 1

    entries = store.history(session=session, user=alice, conversation_id=conversation.id)
    statuses = [(e.message.id, e.message.status) for e in entries]
    assert statuses == [(question.id, "complete"), (stopped.id, "interrupted"), (crashed.id, "interrupted")]
    assert session.get(Message, stopped.id).content == "You get"


def test_a_finished_answer_records_how_it_was_made(session, alice):
    conversation = store.create_conversation(session=session, user=alice)
    question = ask(session, alice, conversation)
    answer = store.start_answer(session=session, question_id=question.id, answerer="extractive", index_version=3)
    done = store.finish_answer(
        session=session, answer_id=answer.id, content="25 days [1].", sources=SOURCES,
        input_tokens=812, output_tokens=40, latency_ms=950, ttft_ms=120,
    )
    abstained = store.finish_answer(
        session=session,
        answer_id=store.start_answer(session=session, question_id=question.id, answerer="extractive").id,
        content="The handbook does not say.",
        abstained=True,
    )

    session.expire_all()
    stored = session.get(Message, done.id)
    assert (stored.status, stored.input_tokens, stored.output_tokens, stored.latency_ms, stored.ttft_ms) == (
        "complete", 812, 40, 950, 120
    )
    assert stored.sources == SOURCES
    assert session.get(Message, abstained.id).status == "abstained"
    with pytest.raises(store.InvalidInput):
        store.start_answer(session=session, question_id=done.id, answerer="extractive")
    with pytest.raises(store.InvalidInput):
        ask(session, alice, conversation, "   \n")


# --- conversations -----------------------------------------------------------------------------------------------


def test_listing_is_newest_first_and_leaves_out_deleted_and_other_users(session, alice, bob):
    older = store.create_conversation(session=session, user=alice)
    newer = store.create_conversation(session=session, user=alice, kind="support")
    gone = store.create_conversation(session=session, user=alice)
    store.create_conversation(session=session, user=bob)
    store.delete_conversation(session=session, user=alice, conversation_id=gone.id)

    assert [c.id for c in store.list_conversations(session=session, user=alice)] == [newer.id, older.id]

    ask(session, alice, older)  # activity brings a conversation back to the top
    assert [c.id for c in store.list_conversations(session=session, user=alice)] == [older.id, newer.id]
    assert [c.id for c in store.list_conversations(session=session, user=alice, kind="support")] == [newer.id]
    with pytest.raises(store.NotFound):
        store.get_conversation(session=session, user=alice, conversation_id=gone.id)
    with pytest.raises(store.InvalidInput):
        store.create_conversation(session=session, user=alice, kind="chitchat")


def test_a_conversation_is_titled_after_its_first_question_and_can_be_renamed(session, alice):
    conversation = store.create_conversation(session=session, user=alice)
    long_question = "How do I   expense a train ticket\nwhen I travel " + "to the Berlin office " * 10
    ask(session, alice, conversation, long_question)
    ask(session, alice, conversation, "And a taxi?")

    title = store.get_conversation(session=session, user=alice, conversation_id=conversation.id).title
    assert title.startswith("How do I expense a train ticket when I travel to the Berlin office")
    assert title.endswith("…") and len(title) <= store.TITLE_CHARS and "\n" not in title

    renamed = store.rename_conversation(session=session, user=alice, conversation_id=conversation.id, title=" Travel ")
    assert renamed.title == "Travel"
    with pytest.raises(store.InvalidInput):
        store.rename_conversation(session=session, user=alice, conversation_id=conversation.id, title="  ")


def test_purging_removes_deleted_conversations_with_their_messages_and_ratings(session, alice):
    kept = store.create_conversation(session=session, user=alice)
    answered(session, alice, kept)
    gone = store.create_conversation(session=session, user=alice)
    answer = answered(session, alice, gone)
    store.rate(session=session, user=alice, message_id=answer.id, thumb=1)
    store.delete_conversation(session=session, user=alice, conversation_id=gone.id)

    assert store.purge_deleted(session=session, before=utcnow() - timedelta(days=30)) == 0
    assert store.purge_deleted(session=session, before=utcnow()) == 1

    assert [c.id for c in session.exec(select(Conversation)).all()] == [kept.id]
    assert {m.conversation_id for m in session.exec(select(Message)).all()} == {kept.id}
    assert session.exec(select(Rating)).all() == []


# --- another user's conversation ---------------------------------------------------------------------------------


REFUSALS = {
    "read": lambda s, u, c, a: store.get_conversation(session=s, user=u, conversation_id=c.id),
    "history": lambda s, u, c, a: store.history(session=s, user=u, conversation_id=c.id),
    "rename": lambda s, u, c, a: store.rename_conversation(session=s, user=u, conversation_id=c.id, title="mine"),
    "delete": lambda s, u, c, a: store.delete_conversation(session=s, user=u, conversation_id=c.id),
    "ask": lambda s, u, c, a: store.add_user_message(session=s, user=u, conversation_id=c.id, content="hi"),
    "rate": lambda s, u, c, a: store.rate(session=s, user=u, message_id=a.id, thumb=0, reasons=["incorrect"]),
    "export": lambda s, u, c, a: store.conversation_export(session=s, user=u, conversation_id=c.id),
}


@pytest.mark.parametrize("action", sorted(REFUSALS))
def test_another_users_conversation_is_refused(session, alice, bob, action):
    conversation = store.create_conversation(session=session, user=bob, title="Bob's")
    answer = answered(session, bob, conversation)

    with pytest.raises(store.Forbidden) as refused:
        REFUSALS[action](session, alice, conversation, answer)

    assert isinstance(refused.value, store.NotFound)  # shown like a conversation that does not exist
    session.expire_all()
    untouched = store.get_conversation(session=session, user=bob, conversation_id=conversation.id)
    assert (untouched.title, untouched.deleted_at) == ("Bob's", None)
    assert session.exec(select(func.count()).select_from(Message)).one() == 2
    assert session.exec(select(Rating)).all() == []


def test_an_unknown_conversation_or_message_is_not_found(session, alice):
    with pytest.raises(store.NotFound):
        store.get_conversation(session=session, user=alice, conversation_id="0" * 32)
    with pytest.raises(store.NotFound):
        store.rate(session=session, user=alice, message_id=999_999, thumb=1)


# --- ratings -----------------------------------------------------------------------------------------------------


def test_one_rating_per_user_per_answer_changed_in_place(session, alice):
    conversation = store.create_conversation(session=session, user=alice)
    answer = answered(session, alice, conversation)

    first = store.rate(session=session, user=alice, message_id=answer.id, thumb=1)
    first_id, created, updated = first.id, first.created_at, first.updated_at
    assert created == updated

    same = store.rate(session=session, user=alice, message_id=answer.id, thumb=True)
    assert same.updated_at == updated  # nothing changed: nothing recorded

    second = store.rate(
        session=session, user=alice, message_id=answer.id, thumb=0,
        reasons=["outdated", "incorrect", "outdated"], comment="  It is 28 days since January.  ",
    )

    assert second.id == first_id
    assert second.thumb == 0
    assert second.reasons == ["outdated", "incorrect"]
    assert second.comment == "It is 28 days since January."
    assert second.created_at == created
    assert second.updated_at > updated
    assert session.exec(select(func.count()).select_from(Rating)).one() == 1
    entries = store.history(session=session, user=alice, conversation_id=conversation.id)
    assert [(e.message.role, e.rating and e.rating.thumb) for e in entries] == [("user", None), ("assistant", 0)]


def test_the_database_refuses_a_second_rating_row(engine, session, alice):
    conversation = store.create_conversation(session=session, user=alice)
    answer = answered(session, alice, conversation)
    store.rate(session=session, user=alice, message_id=answer.id, thumb=1)

    with Session(engine) as raw:
        raw.add(Rating(message_id=answer.id, user_id=alice.id, thumb=0))
        with pytest.raises(IntegrityError):
            raw.commit()


def test_ratings_are_refused_for_questions_unfinished_answers_and_bad_values(session, alice):
    conversation = store.create_conversation(session=session, user=alice)
    answer = answered(session, alice, conversation)
    question = session.get(Message, answer.reply_to)
    pending = store.start_answer(session=session, question_id=question.id, answerer="extractive")

    with pytest.raises(store.InvalidInput):
        store.rate(session=session, user=alice, message_id=question.id, thumb=1)
    with pytest.raises(store.InvalidState):
        store.rate(session=session, user=alice, message_id=pending.id, thumb=1)
    with pytest.raises(store.InvalidInput):
        store.rate(session=session, user=alice, message_id=answer.id, thumb=2)
    with pytest.raises(store.InvalidInput):
        store.rate(session=session, user=alice, message_id=answer.id, thumb=0, reasons=["rude"])
    assert session.exec(select(Rating)).all() == []

    custom = store.rate(
        session=session, user=alice, message_id=answer.id, thumb=0, reasons=["rude"], allowed_reasons=["rude"]
    )
    assert custom.reasons == ["rude"]


# --- export ------------------------------------------------------------------------------------------------------


def test_a_conversation_exports_to_json_and_back(session, alice):
    conversation = store.create_conversation(session=session, user=alice)
    answer = answered(session, alice, conversation, "How much PTO do I get?", "25 days a year [1].")
    store.rate(session=session, user=alice, message_id=answer.id, thumb=0, reasons=["outdated"], comment="28 now")
    question = ask(session, alice, conversation, "And sick days? ünïcode ✓")
    failed = store.start_answer(session=session, question_id=question.id, answerer="openai", model="gpt-x")
    store.fail_answer(session=session, answer_id=failed.id, error="The model service is unavailable.")

    exported = store.conversation_export(session=session, user=alice, conversation_id=conversation.id)
    loaded = json.loads(json.dumps(exported))

    assert loaded == exported
    assert loaded["format"] == store.EXPORT_FORMAT
    assert (loaded["id"], loaded["title"], loaded["kind"]) == (conversation.id, "How much PTO do I get?", "assistant")
    assert [(m["role"], m["content"], m["status"]) for m in loaded["messages"]] == [
        ("user", "How much PTO do I get?", "complete"),
        ("assistant", "25 days a year [1].", "complete"),
        ("user", "And sick days? ünïcode ✓", "complete"),
        ("assistant", "", "failed"),
    ]
    assert loaded["messages"][1]["sources"] == SOURCES
    assert loaded["messages"][1]["rating"]["thumb"] == 0
    assert loaded["messages"][1]["rating"]["reasons"] == ["outdated"]
    assert loaded["messages"][1]["rating"]["comment"] == "28 now"
    assert loaded["messages"][3]["error"] == "The model service is unavailable."
    assert loaded["messages"][1]["reply_to"] == loaded["messages"][0]["id"]


def test_a_fallback_answer_records_what_actually_answered(session, alice):
    conversation = store.create_conversation(session=session, user=alice)
    question = ask(session, alice, conversation, "How do I book travel?")
    pending = store.start_answer(
        session=session, question_id=question.id, answerer="llm", model="gpt-x", prompt_version="v1", index_version=3
    )
    done = store.finish_answer(
        session=session, answer_id=pending.id, content="Quoted passages [1]", answerer="extractive", model=None,
        prompt_version="extractive-v1",
    )
    # the quoting answerer used no model; index_version=None keeps what start_answer recorded
    assert (done.answerer, done.model, done.prompt_version, done.index_version) == ("extractive", None, "extractive-v1", 3)


def test_a_rating_can_be_withdrawn_by_its_author_only(session, alice, bob):
    conversation = store.create_conversation(session=session, user=alice)
    answer = answered(session, alice, conversation)
    store.rate(session=session, user=alice, message_id=answer.id, thumb=0, reasons=["outdated"])

    with pytest.raises(store.Forbidden):
        store.withdraw_rating(session=session, user=bob, message_id=answer.id)
    assert session.exec(select(Rating)).all() != []

    assert store.withdraw_rating(session=session, user=alice, message_id=answer.id) is True
    assert session.exec(select(Rating)).all() == []
    assert store.withdraw_rating(session=session, user=alice, message_id=answer.id) is False


def test_an_answer_with_a_notice_keeps_it_and_an_unfinished_one_is_interrupted(session, alice):
    conversation = store.create_conversation(session=session, user=alice)
    fallback = store.start_answer(session=session, question_id=ask(session, alice, conversation).id, answerer="llm")
    done = store.finish_answer(session=session, answer_id=fallback.id, content="Quoted [1]", sources=SOURCES,
                               answerer="extractive", error="The model is not available; here are the passages.")
    assert (done.status, done.error) == ("complete", "The model is not available; here are the passages.")

    cut = store.start_answer(session=session, question_id=ask(session, alice, conversation).id, answerer="llm")
    done = store.finish_answer(session=session, answer_id=cut.id, content="You get 25", sources=SOURCES,
                               output_tokens=3, error="It reached the length limit.", interrupted=True)
    assert (done.status, done.content, done.error) == ("interrupted", "You get 25", "It reached the length limit.")
    assert done.sources == SOURCES and done.output_tokens == 3 and done.finished_at is not None


def test_an_answer_kept_through_a_long_outage_replaces_the_sweeps_empty_record(session, alice):
    """A page kept an answer it could not store; the outage outlasted the stale-answer sweep, which closed the
    empty row as interrupted. The kept text is stored when the database is back (it was dropped before)."""
    conversation = store.create_conversation(session=session, user=alice)
    question = ask(session, alice, conversation)
    kept = store.start_answer(session=session, question_id=question.id, answerer="extractive")
    assert store.interrupt_stale_answers(session=session, older_than=timedelta(0)) == 1

    stored = store.finish_answer(session=session, answer_id=kept.id, content="You get 25 days [1].", sources=SOURCES)
    assert (stored.status, stored.content, stored.error) == ("complete", "You get 25 days [1].", None)

    with pytest.raises(store.InvalidState):  # an answer that holds text is never replaced
        store.finish_answer(session=session, answer_id=kept.id, content="Something else.")


def test_closing_an_answer_twice_with_the_same_text_is_not_an_error(session, alice):
    """A retried final write whose first commit landed but whose acknowledgement was lost."""
    conversation = store.create_conversation(session=session, user=alice)
    question = ask(session, alice, conversation)
    pending = store.start_answer(session=session, question_id=question.id, answerer="extractive")
    first = store.finish_answer(session=session, answer_id=pending.id, content="25 days [1].", sources=SOURCES)
    again = store.finish_answer(session=session, answer_id=pending.id, content="25 days [1].", sources=SOURCES)
    assert again.id == first.id and again.status == "complete"


def test_a_question_sent_again_with_its_key_is_stored_once(session, alice, bob):
    """The page could not tell whether its question was stored (the commit's acknowledgement was lost in a
    database restart) and sends it again with the same key: one copy, in one conversation."""
    first = store.start_conversation(session=session, user=alice, content="How much PTO?", client_key="k1")
    again = store.start_conversation(session=session, user=alice, content="How much PTO?", client_key="k1")
    assert again.id == first.id and again.conversation_id == first.conversation_id
    follow = store.add_user_message(session=session, user=alice, conversation_id=first.conversation_id,
                                    content="And sick days?", client_key="k2")
    assert store.add_user_message(session=session, user=alice, conversation_id=first.conversation_id,
                                  content="And sick days?", client_key="k2").id == follow.id
    # Without a key, or with another person's key, it is a new question.
    assert store.add_user_message(session=session, user=alice, conversation_id=first.conversation_id,
                                  content="And sick days?").id != follow.id
    theirs = store.start_conversation(session=session, user=bob, content="How much PTO?", client_key="k1")
    assert theirs.id != first.id and theirs.user_id == bob.id
    assert session.exec(select(func.count()).select_from(Message).where(Message.user_id == alice.id)).one() == 3
    assert session.exec(select(func.count()).select_from(Conversation).where(Conversation.user_id == alice.id)).one() == 1


# --- channels ----------------------------------------------------------------------------------------------------


def test_every_message_records_its_channel_and_an_answer_takes_its_questions(session, alice):
    web = store.start_conversation(session=session, user=alice, content="How much PTO do I get?")
    api = store.start_conversation(session=session, user=alice, content="Who pays travel?", channel="api")
    batch = store.add_user_message(session=session, user=alice, conversation_id=api.conversation_id,
                                   content="And meals?", channel="batch")
    support = store.start_conversation(session=session, user=alice, content="How do I rate?", kind="support")
    answers = {q.channel: store.start_answer(session=session, question_id=q.id, answerer="extractive")
               for q in (web, api, batch, support)}

    assert [web.channel, api.channel, batch.channel, support.channel] == ["web", "api", "batch", "support"]
    assert {channel: answer.channel for channel, answer in answers.items()} == {
        "web": "web", "api": "api", "batch": "batch", "support": "support"}
    told = store.start_answer(session=session, question_id=web.id, answerer="extractive", channel="api")
    assert told.channel == "api"
    stored = session.exec(select(Message.channel).where(Message.id.in_([api.id, answers["api"].id]))).all()
    assert stored == ["api", "api"]


@pytest.mark.parametrize("call", ["start_conversation", "add_user_message", "start_answer"])
def test_an_unknown_channel_is_refused_with_the_list_and_nothing_is_stored(session, alice, call):
    conversation = store.create_conversation(session=session, user=alice)
    question = ask(session, alice, conversation)
    before = session.exec(select(func.count()).select_from(Message)).one()
    arguments = {
        "start_conversation": {"user": alice, "content": "q"},
        "add_user_message": {"user": alice, "conversation_id": conversation.id, "content": "q"},
        "start_answer": {"question_id": question.id, "answerer": "extractive"},
    }[call]

    with pytest.raises(store.InvalidInput, match="Unknown channel 'slack'; expected one of web, api, batch, support"):
        getattr(store, call)(session=session, channel="slack", **arguments)

    assert session.exec(select(func.count()).select_from(Message)).one() == before
    assert session.exec(select(func.count()).select_from(Conversation)).one() == 1
