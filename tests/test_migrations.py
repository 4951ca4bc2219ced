"""Schema migrations from an empty database, on SQLite and (with TEST_DATABASE_URL) PostgreSQL."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlmodel import Session, select

from assistant.manifest import IndexedFile, IngestRun
from onboard import db

KB_TABLES = {"kb_file", "kb_run"}


@pytest.fixture
def empty_engine(database_url):
    engine = db.make_engine(database_url)
    yield engine
    engine.dispose()


def head(engine) -> str:
    return ScriptDirectory.from_config(db._alembic_config(engine)).get_current_head()


def tables(engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def test_upgrade_from_empty_creates_the_knowledge_base_tables(empty_engine):
    assert tables(empty_engine) == set()
    assert db.current_revision(empty_engine) is None

    db.upgrade(empty_engine)

    assert KB_TABLES <= tables(empty_engine)
    assert db.current_revision(empty_engine) == head(empty_engine)
    columns = {c["name"] for c in inspect(empty_engine).get_columns("kb_file")}
    assert {"collection", "path", "source", "sha256", "chunk_ids", "indexed_at"} <= columns
    run_columns = {c["name"] for c in inspect(empty_engine).get_columns("kb_run")}
    assert {"status", "index_version", "failures", "chunks_added", "chunks_removed"} <= run_columns
    uniques = inspect(empty_engine).get_unique_constraints("kb_file")
    assert any(sorted(u["column_names"]) == ["collection", "path"] for u in uniques)


def test_upgrade_twice_is_harmless(empty_engine):
    db.upgrade(empty_engine)
    with Session(empty_engine) as session:
        session.add(IngestRun(collection="handbook", roots=["/docs"]))
        session.commit()

    db.upgrade(empty_engine)

    assert db.current_revision(empty_engine) == head(empty_engine)
    with Session(empty_engine) as session:
        assert [r.roots for r in session.exec(select(IngestRun)).all()] == [["/docs"]]


def test_downgrade_to_base_and_upgrade_again(empty_engine):
    config = db._alembic_config(empty_engine)
    db.upgrade(empty_engine)

    command.downgrade(config, "base")
    assert db.current_revision(empty_engine) is None
    assert tables(empty_engine).isdisjoint(KB_TABLES)

    command.upgrade(config, "head")
    assert db.current_revision(empty_engine) == head(empty_engine)
    assert KB_TABLES <= tables(empty_engine)


def test_migrated_schema_round_trips_the_models(empty_engine):
    """The tables the migration made hold what the SQLModel classes write (JSON lists, unique pairs)."""
    from sqlalchemy.exc import IntegrityError

    db.upgrade(empty_engine)
    with Session(empty_engine) as session:
        session.add(
            IndexedFile(collection="c", path="/r/a.md", source="a.md", sha256="0" * 64, kind="markdown", chunk_ids=["x", "y"])
        )
        session.add(IngestRun(collection="c", failures=[{"source": "b.pdf", "reason": "broken PDF"}]))
        session.commit()
    with Session(empty_engine) as session:
        row = session.exec(select(IndexedFile)).one()
        assert row.chunk_ids == ["x", "y"]
        assert session.exec(select(IngestRun)).one().failures == [{"source": "b.pdf", "reason": "broken PDF"}]
        session.add(IndexedFile(collection="c", path="/r/a.md", source="other.md", sha256="1" * 64, kind="markdown"))
        with pytest.raises(IntegrityError):
            session.commit()


def test_migrations_match_the_models(empty_engine):
    """Nothing in the SQLModel tables of the knowledge base is missing from the migrations."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlmodel import SQLModel

    db.upgrade(empty_engine)
    with empty_engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    kb_diff = [d for d in diff if any(t in repr(d) for t in KB_TABLES)]
    assert kb_diff == []


# --- 0005: the admin audit trail -------------------------------------------------------------------------------------

AUDIT_COLUMNS = {"id", "at", "action", "admin_id", "admin_subject", "admin_email", "admin_name", "owner_id",
                 "owner_subject", "owner_email", "owner_name", "conversation_id", "count", "filters"}


def _refused(engine, statement: str) -> bool:
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    try:
        with engine.begin() as connection:
            connection.execute(text(statement))
    except DBAPIError as error:
        return "append-only" in str(error)
    return False


def test_upgrade_from_empty_creates_the_append_only_audit_table(empty_engine):
    from feedback import audit, store
    from feedback.models import AdminAudit

    db.upgrade(empty_engine)

    assert {c["name"] for c in inspect(empty_engine).get_columns("admin_audit")} == AUDIT_COLUMNS
    assert inspect(empty_engine).get_foreign_keys("admin_audit") == []  # a purge or a removed user cascades nothing
    with Session(empty_engine) as session:
        ada = store.get_or_create_user(session=session, subject="ada", email="ada@example.com")
        audit.record_conversation_opened(session=session, admin=ada, owner=ada, conversation_id="c" * 32)
    assert _refused(empty_engine, "UPDATE admin_audit SET admin_email = 'x'")
    assert _refused(empty_engine, "DELETE FROM admin_audit")
    with Session(empty_engine) as session:
        assert [(r.admin_email, r.conversation_id) for r in session.exec(select(AdminAudit))] == [
            ("ada@example.com", "c" * 32)]


def test_upgrade_from_0004_keeps_the_conversations_and_downgrade_removes_only_the_audit(empty_engine):
    """An existing database at 0004 (conversations, ratings) gains the audit table and keeps every row."""
    from sqlalchemy import text as sa_text

    from feedback import review, store
    from feedback.models import Conversation, utcnow

    config = db._alembic_config(empty_engine)
    db.upgrade(empty_engine, "0004")
    assert "admin_audit" not in tables(empty_engine)
    with Session(empty_engine) as session:
        bob = store.get_or_create_user(session=session, subject="bob", email="bob@example.com", name="Bob")
        conversation = store.create_conversation(session=session, user=bob)
        conversation_id = conversation.id
        # The message as 0004 knew it (the model has columns of later migrations).
        session.exec(sa_text(
            "INSERT INTO message (conversation_id, user_id, team, kind, role, content, status, sources, features, "
            "created_at) VALUES (:c, :u, 'unassigned', 'assistant', 'user', 'old question', 'complete', '[]', '[]', "
            ":t)").bindparams(c=conversation_id, u=bob.id, t=utcnow()))
        session.commit()

    db.upgrade(empty_engine)

    assert db.current_revision(empty_engine) == head(empty_engine)
    with Session(empty_engine) as session:
        ada = store.get_or_create_user(session=session, subject="ada", email="ada@example.com", groups=["admin"])
        opened = review.conversation_for_admin(session=session, admin=ada, conversation_id=conversation_id)
        assert [m.content for m in opened.messages] == ["old question"]
    assert _refused(empty_engine, "DELETE FROM admin_audit")

    command.downgrade(config, "0004")
    assert "admin_audit" not in tables(empty_engine)
    with Session(empty_engine) as session:
        assert session.get(Conversation, conversation_id) is not None
        assert [row[0] for row in session.exec(sa_text("SELECT content FROM message"))] == ["old question"]
    db.upgrade(empty_engine)  # the triggers went with the table: made again without complaint
    with Session(empty_engine) as session:
        ada = store.get_or_create_user(session=session, subject="ada")
        review.conversation_for_admin(session=session, admin=ada, conversation_id=conversation_id)
    assert _refused(empty_engine, "DELETE FROM admin_audit")


def test_the_audit_table_matches_its_model(empty_engine):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlmodel import SQLModel

    db.upgrade(empty_engine)
    with empty_engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert [d for d in diff if "admin_audit" in repr(d)] == []


def test_0006_adds_the_question_key_unique_per_person(empty_engine):
    """Questions stored before 0006 have no key (the 0004 test above keeps its old question through it); one
    person's keyed questions cannot share a key; downgrading removes the column."""
    from sqlalchemy.exc import IntegrityError

    from feedback import store
    from feedback.models import Message

    db.upgrade(empty_engine)
    assert "client_key" in {c["name"] for c in inspect(empty_engine).get_columns("message")}
    with Session(empty_engine) as session:
        bob = store.get_or_create_user(session=session, subject="bob")
        first = store.start_conversation(session=session, user=bob, content="q", client_key="k")
        session.add(Message(conversation_id=first.conversation_id, user_id=bob.id, role="user", content="q",
                            client_key="k"))
        with pytest.raises(IntegrityError):
            session.commit()
    command.downgrade(db._alembic_config(empty_engine), "0005")
    assert "client_key" not in {c["name"] for c in inspect(empty_engine).get_columns("message")}


# --- 0008: API keys, rate windows, the channel of every message --------------------------------------------------


def test_0008_gives_existing_messages_their_channel_and_downgrade_removes_it(empty_engine):
    """Rows stored before 0008 read ``web``, the support bot's ``support``; the dashboard index covers the
    channel; the key and rate tables come and go with the revision."""
    from sqlalchemy import text as sa_text

    from feedback import store
    from feedback.models import Message, User, utcnow

    config = db._alembic_config(empty_engine)
    db.upgrade(empty_engine, "0007")
    with Session(empty_engine) as session:
        bob_id = store.get_or_create_user(session=session, subject="bob").id
        ids = {}
        for kind in ("assistant", "support"):
            conversation = store.create_conversation(session=session, user=session.get(User, bob_id), kind=kind)
            ids[kind] = conversation.id
            session.exec(sa_text(
                "INSERT INTO message (conversation_id, user_id, team, kind, role, content, status, sources, "
                "features, created_at) VALUES (:c, :u, 'unassigned', :k, 'user', 'old', 'complete', '[]', '[]', :t)"
            ).bindparams(c=ids[kind], u=bob_id, k=kind, t=utcnow()))
        session.commit()

    db.upgrade(empty_engine)

    with Session(empty_engine) as session:
        rows = session.exec(select(Message.kind, Message.channel).order_by(Message.id)).all()
        assert rows == [("assistant", "web"), ("support", "support")]
        # The server default: a row written without the column (an older app process during a rolling upgrade).
        session.exec(sa_text(
            "INSERT INTO message (conversation_id, user_id, team, kind, role, content, status, sources, features, "
            "created_at) VALUES (:c, :u, 'unassigned', 'assistant', 'user', 'new', 'complete', '[]', '[]', :t)"
        ).bindparams(c=ids["assistant"], u=bob_id, t=utcnow()))
        session.commit()
        assert session.exec(select(Message.channel).where(Message.content == "new")).one() == "web"
    schema = inspect(empty_engine)
    dashboard = next(i for i in schema.get_indexes("message") if i["name"] == "ix_message_dashboard")
    assert dashboard["column_names"][-2:] == ["band", "channel"]
    assert {"api_key", "rate_window"} <= tables(empty_engine)

    command.downgrade(config, "0007")
    schema = inspect(empty_engine)
    assert "channel" not in {c["name"] for c in schema.get_columns("message")}
    assert tables(empty_engine).isdisjoint({"api_key", "rate_window"})
    dashboard = next(i for i in schema.get_indexes("message") if i["name"] == "ix_message_dashboard")
    assert dashboard["column_names"][-1] == "band"
    with Session(empty_engine) as session:
        assert len(session.exec(sa_text("SELECT content FROM message")).all()) == 3


def test_the_key_and_rate_tables_and_the_channel_match_their_models(empty_engine):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlmodel import SQLModel

    db.upgrade(empty_engine)
    with empty_engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert [d for d in diff if any(t in repr(d) for t in ("api_key", "rate_window", "message"))] == []
