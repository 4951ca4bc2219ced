"""The ``onboard`` command through Typer's CliRunner.

``onboard ingest`` reads its settings from ``ONBOARD_*`` variables like in
production; the embeddings come from a real local HTTP server speaking the
OpenAI protocol (``helpers_embedding_server``), so these tests do not depend on
which local model is installed. The autouse fixture points ONBOARD_DATA_DIR at
``tmp_path/data``.
"""

from __future__ import annotations

import logging
import re

import pytest
from helpers_kb import HANDBOOK, write_docs
from sqlalchemy import create_engine, inspect, text
from typer.testing import CliRunner

from assistant.answerability import baseline_headings
from assistant.vectors import ChromaLocation, keys_name, make_client
from onboard.cli import app

SUMMARY = re.compile(
    r"^run (\d+): (\d+) added, (\d+) changed, (\d+) removed, (\d+) unchanged, (\d+) failed, "
    r"(\d+) not supported; chunks \+(\d+) -(\d+); index version (\d+)$",
    re.MULTILINE,
)


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def flat(output: str) -> str:
    """Rich panels wrap and box messages; compare on the words."""
    return " ".join(output.replace("│", " ").replace("╭", " ").replace("╰", " ").split())


def summary(result) -> dict:
    match = SUMMARY.search(result.stdout)
    assert match, result.stdout
    keys = ("run", "added", "changed", "removed", "unchanged", "failed", "unsupported", "plus", "minus", "version")
    return dict(zip(keys, map(int, match.groups()), strict=True))


@pytest.fixture
def handbook(tmp_path):
    return write_docs(tmp_path / "handbook", HANDBOOK)


# --- help -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], "ingest"),
        (["ingest"], "Index documents"),
        (["eval"], "--dataset"),
        (["db"], "upgrade"),
        (["db", "upgrade"], "Apply the database migrations"),
        (["serve"], "--port"),
    ],
    ids=["app", "ingest", "eval", "db", "db-upgrade", "serve"],
)
def test_help(args, expected):
    result = invoke(*args, "--help")
    assert result.exit_code == 0, result.output
    assert expected in flat(result.stdout)
    assert "Usage:" in result.stdout


def test_app_help_lists_every_command():
    out = flat(invoke("--help").stdout)
    for command in ("ingest", "eval", "serve", "db"):
        assert re.search(rf"\b{command}\b", out)


# --- ingest ---------------------------------------------------------------------------------------


def test_ingest_prints_the_summary_and_reports_unchanged_files_the_second_time(handbook, api_embeddings, tmp_path):
    first = invoke("ingest", str(handbook))
    assert first.exit_code == 0, first.output
    one = summary(first)
    assert (one["added"], one["changed"], one["removed"], one["unchanged"], one["failed"]) == (len(HANDBOOK), 0, 0, 0, 0)
    assert one["plus"] > 0 and one["version"] == 1
    sent = len(api_embeddings.inputs())
    keys = make_client(ChromaLocation(path=tmp_path / "data" / "chroma")).get_collection(keys_name("handbook")).count()
    assert keys > 0
    probes = len(baseline_headings(_stored_metadatas(tmp_path)))  # headings asked to measure the corpus's baseline
    assert probes > 0
    # Each new chunk and each of its search keys embedded once through the endpoint, and each baseline probe.
    assert sent == one["plus"] + keys + probes

    second = invoke("ingest", str(handbook))
    assert second.exit_code == 0, second.output
    two = summary(second)
    assert (two["added"], two["changed"], two["removed"], two["unchanged"]) == (0, 0, 0, len(HANDBOOK))
    assert (two["plus"], two["minus"], two["version"]) == (0, 0, 1)
    assert two["run"] == one["run"] + 1
    assert len(api_embeddings.inputs()) == sent  # nothing embedded again

    # Both runs were recorded in the default SQLite database of the data folder.
    engine = create_engine(f"sqlite:///{tmp_path / 'data' / 'onboard.db'}")
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT status, added, unchanged FROM kb_run ORDER BY id")).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [("completed", len(HANDBOOK), 0), ("completed", 0, len(HANDBOOK))]
    assert (tmp_path / "data" / "chroma").is_dir()


def test_ingest_reports_a_broken_file_on_stderr_and_still_succeeds(handbook, api_embeddings):
    (handbook / "broken.pdf").write_bytes(b"%PDF-1.4 cut off here")
    (handbook / "empty.md").write_text("   \n", encoding="utf-8")
    (handbook / "photo.png").write_bytes(b"\x89PNG\r\n")

    result = invoke("ingest", str(handbook))

    assert result.exit_code == 0, result.output
    assert re.search(r"^skipped broken\.pdf: broken PDF \(.+\)$", result.stderr, re.MULTILINE), result.stderr
    assert "skipped empty.md: empty file" in result.stderr
    assert "broken.pdf" not in result.stdout
    counts = summary(result)
    assert (counts["added"], counts["failed"], counts["unsupported"]) == (len(HANDBOOK), 2, 1)


def test_ingest_of_a_missing_path_fails_clearly(tmp_path, api_embeddings):
    missing = tmp_path / "no-such-folder"
    result = invoke("ingest", str(missing))
    assert result.exit_code != 0
    message = flat(result.stderr)
    assert "no-such-folder" in message and "does not exist" in message
    assert api_embeddings.requests == []


def test_ingest_rebuild_starts_from_an_empty_index(handbook, api_embeddings):
    assert invoke("ingest", str(handbook)).exit_code == 0
    result = invoke("ingest", "--rebuild", str(handbook))
    assert result.exit_code == 0, result.output
    counts = summary(result)
    # The manifest still lists the files, but their chunks are gone with the collection: all re-indexed.
    assert counts["added"] + counts["changed"] == len(HANDBOOK)
    assert counts["unchanged"] == 0


def test_ingest_with_another_model_is_refused_with_the_rebuild_hint(handbook, api_embeddings, monkeypatch):
    assert invoke("ingest", str(handbook)).exit_code == 0
    monkeypatch.setenv("ONBOARD_EMBEDDING__MODEL", "another-model")

    result = invoke("ingest", str(handbook))

    assert result.exit_code == 2
    assert "error:" in result.stderr and "--rebuild" in result.stderr
    assert "openai:another-model" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_ingest_into_a_named_collection(handbook, api_embeddings):
    result = invoke("ingest", "--collection", "people-team", str(handbook))
    assert result.exit_code == 0, result.output
    assert summary(result)["added"] == len(HANDBOOK)
    # The default collection is untouched: ingesting there adds everything again.
    assert summary(invoke("ingest", str(handbook)))["added"] == len(HANDBOOK)


def test_ingest_of_your_own_folder_removes_the_sample_handbook(handbook, api_embeddings):
    from onboard.factories import SAMPLE_HANDBOOK

    sample = invoke("ingest", str(SAMPLE_HANDBOOK))  # what the first `onboard serve` does
    assert sample.exit_code == 0, sample.output
    indexed = summary(sample)["added"]
    assert indexed > 0

    result = invoke("ingest", str(handbook))

    assert result.exit_code == 0, result.output
    assert f"removed the sample handbook ({indexed} files) from the index" in result.stdout
    assert (summary(result)["added"], summary(result)["removed"]) == (len(HANDBOOK), indexed)
    assert "outside these paths" not in result.stderr
    # Nothing of the sample is left: the next run has nothing to remove.
    assert summary(invoke("ingest", str(handbook)))["removed"] == 0


def test_ingest_names_files_outside_the_paths_and_prune_removes_them(handbook, api_embeddings):
    assert invoke("ingest", str(handbook)).exit_code == 0
    moved = handbook.rename(handbook.with_name("handbook-2025"))

    result = invoke("ingest", str(moved))

    assert result.exit_code == 0, result.output
    hint = flat(result.stderr)
    assert f"The index also holds {len(HANDBOOK)} files outside these paths (e.g. {handbook}" in hint
    assert "onboard ingest --prune PATH..." in hint and "--rebuild" in hint

    pruned = invoke("ingest", "--prune", str(moved))

    assert pruned.exit_code == 0, pruned.output
    assert f"removed {len(HANDBOOK)} files outside these paths" in pruned.stdout
    assert summary(pruned)["removed"] == len(HANDBOOK) and summary(pruned)["unchanged"] == len(HANDBOOK)
    assert "outside these paths" not in pruned.stderr
    assert "outside these paths" not in invoke("ingest", str(moved)).stderr


# --- configuration and connection errors: one clear message, no traceback ------------------------


@pytest.mark.parametrize(
    ("env", "args", "expected"),
    [
        ({"ONBOARD_RETRIEVAL__K": "abc"}, [], "invalid setting ONBOARD_RETRIEVAL__K: Input should be a valid integer"),
        ({"ONBOARD_INGEST__FOLDER_AUDIENCES": "hr"}, [], "cannot parse ONBOARD_INGEST__FOLDER_AUDIENCES"),
        ({"ONBOARD_ANSWER__MODE": "llm"}, [], "ONBOARD_ANSWER__API_KEY"),
        ({}, ["--collection", "x"], "invalid setting ONBOARD_COLLECTION (or --collection)"),
        ({}, ["--collection", "bad name!"], "Chroma refused the request"),
        ({"ONBOARD_CHROMA_URL": "http://127.0.0.1:{port}"}, [], "cannot reach the Chroma server (ONBOARD_CHROMA_URL)"),
    ],
    ids=["bad-value", "not-json", "llm-without-key", "short-collection", "bad-collection-name", "chroma-down"],
)
def test_ingest_configuration_errors_are_one_clear_message(handbook, api_embeddings, monkeypatch, env, args, expected):
    from helpers_net import free_port

    port = free_port()
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(port=port))

    result = invoke("ingest", *args, str(handbook))

    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and expected in result.stderr, result.stderr
    assert "Traceback" not in result.output and len(result.stderr.splitlines()) <= 3
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_unreachable_database_is_one_clear_message(monkeypatch):
    from helpers_net import free_port

    monkeypatch.setenv("ONBOARD_DATABASE_URL", f"postgresql+psycopg://u:secret@127.0.0.1:{free_port()}/x")
    result = invoke("db", "upgrade")
    assert result.exit_code == 2
    assert "cannot use the database (ONBOARD_DATABASE_URL)" in result.stderr
    assert "Traceback" not in result.output and "secret" not in result.output


def test_verbose_logs_the_traceback_of_a_configuration_error(handbook, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="onboard")
    monkeypatch.setenv("ONBOARD_RETRIEVAL__K", "abc")
    result = invoke("--verbose", "ingest", str(handbook))
    assert result.exit_code == 2
    assert any(r.exc_info and type(r.exc_info[1]).__name__ == "ValidationError" for r in caplog.records)


# --- db ---------------------------------------------------------------------------------------


def test_db_upgrade_creates_the_tables_in_the_data_folder(tmp_path):
    database = tmp_path / "data" / "onboard.db"
    assert not database.exists()

    result = invoke("db", "upgrade")

    assert result.exit_code == 0, result.output
    assert "database at revision" in result.stdout
    engine = create_engine(f"sqlite:///{database}")
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"kb_file", "kb_run", "alembic_version"} <= tables

    again = invoke("db", "upgrade")
    assert again.exit_code == 0 and again.stdout == result.stdout


def test_db_upgrade_honours_onboard_database_url(tmp_path, monkeypatch):
    database = tmp_path / "elsewhere" / "app.db"
    monkeypatch.setenv("ONBOARD_DATABASE_URL", f"sqlite:///{database}")
    assert invoke("db", "upgrade").exit_code == 0
    assert database.exists()
    assert not (tmp_path / "data" / "onboard.db").exists()


def test_db_purge_removes_conversations_deleted_long_enough_ago_with_their_triage():
    from datetime import timedelta

    from sqlmodel import Session, select

    from feedback import review, store
    from feedback.models import Conversation, Rating, Ticket, Triage, TriageEvent, utcnow
    from onboard import factories
    from onboard.settings import Settings

    engine = factories.make_engine(Settings())
    with Session(engine) as session:
        user = store.get_or_create_user(session=session, subject="u1")
        old, recent = (store.create_conversation(session=session, user=user).id for _ in range(2))
        for conversation_id in (old, recent):
            question = store.add_user_message(session=session, user=user, conversation_id=conversation_id, content="q")
            answer = store.start_answer(session=session, question_id=question.id, answerer="extractive")
            store.finish_answer(session=session, answer_id=answer.id, content="a")
            rating = store.rate(session=session, user=user, message_id=answer.id, thumb=0)
            review.set_triage(session=session, actor=user, subject="rating", subject_id=rating.id, status="fixed")
            review.report_problem(session=session, user=user, text="wrong", conversation_id=conversation_id)
            store.delete_conversation(session=session, user=user, conversation_id=conversation_id)
        session.get(Conversation, old).deleted_at = utcnow() - timedelta(days=40)
        session.commit()

    result = invoke("db", "purge", "--older-than-days", "30")
    assert result.exit_code == 0, result.output
    assert "purged 1 deleted conversation(s)" in result.output
    with Session(engine) as session:
        assert [c.id for c in session.exec(select(Conversation))] == [recent]
        assert len(session.exec(select(Rating)).all()) == 1
        assert len(session.exec(select(Triage)).all()) == 1 and len(session.exec(select(TriageEvent)).all()) == 1
        tickets = session.exec(select(Ticket).order_by(Ticket.id)).all()
        assert [t.conversation_id for t in tickets] == [None, recent]  # the report stays, unlinked


def _stored_metadatas(tmp_path):
    """``(id, metadata)`` of every passage of the app's default collection, as the baseline reads them."""
    stored = make_client(ChromaLocation(path=tmp_path / "data" / "chroma")).get_collection("handbook").get(
        include=["metadatas"])
    return list(zip(stored["ids"], stored["metadatas"], strict=True))
