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
