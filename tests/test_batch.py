"""Batch answering (``onboard batch``, :mod:`service.batch`) on a real index, on SQLite and PostgreSQL.

The small test handbook (``hr/salary.md`` only for the ``hr`` audience) is
indexed with ``onboard ingest`` into ``tmp_path``; embeddings come from a real
local OpenAI-compatible endpoint (hashing vectors, ``helpers_embedding_server``)
whose requests a test can hold back or refuse by the question they carry. That
is how a run is killed at an exact point: ``onboard batch`` runs as a
subprocess, the third question's embedding is held, and the process gets
SIGKILL once two rows are in the output and the third is in flight.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from helpers_kb import HANDBOOK, write_docs
from sqlmodel import Session, select
from typer.testing import CliRunner

from feedback.models import Conversation, Message, User
from onboard import factories
from onboard.cli import app
from onboard.settings import Settings
from service.batch import BatchError, Output, batch_identity, read_questions, run_batch

VACATION = "How many days of paid vacation do I get?"
LAPTOP = "When are laptops replaced?"
SALARY = "What does the quokka matrix list about salary bands?"
KITCHEN = "When does the kitchen dishwasher run?"
PASSWORDS = "Where do I keep my passwords?"


class Embeddings:
    """What the test does to the endpoint's requests: hold those carrying ``held`` until released, refuse those
    carrying ``refused`` (HTTP 400)."""

    def __init__(self) -> None:
        self.held: str | None = None
        self.refused: str | None = None
        self.holding = threading.Event()
        self.release = threading.Event()


@pytest.fixture
def embeddings(api_embeddings, monkeypatch) -> Embeddings:
    control = Embeddings()
    served = api_embeddings.httpd.RequestHandlerClass

    class Controlled(served):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            self.rfile = io.BytesIO(body)
            if control.refused and control.refused in body.decode():
                self.send_error(400, "refused by the test")
                return
            if control.held and control.held in body.decode():
                control.holding.set()
                control.release.wait(timeout=300)
            try:
                super().do_POST()
            except (BrokenPipeError, ConnectionResetError):  # the process that asked was killed meanwhile
                pass

    api_embeddings.httpd.RequestHandlerClass = Controlled
    monkeypatch.setenv("ONBOARD_EMBEDDING__TIMEOUT_S", "300")
    yield control
    control.release.set()


@pytest.fixture
def indexed(tmp_path, embeddings, database_url, engine, monkeypatch) -> Settings:
    """The handbook indexed by ``onboard ingest``; the settings every process of the test reads."""
    monkeypatch.setenv("ONBOARD_DATABASE_URL", database_url)
    monkeypatch.setenv("ONBOARD_SUPPORT__ENABLED", "false")
    result = CliRunner().invoke(app, ["ingest", str(write_docs(tmp_path / "handbook", HANDBOOK))])
    assert result.exit_code == 0, result.output
    return Settings()


@pytest.fixture
def service(indexed):
    service = factories.make_chat_service(indexed)
    yield service
    service.engine.dispose()


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def output(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def batch_messages(engine) -> list[Message]:
    with Session(engine) as session:
        return list(session.exec(select(Message).where(Message.channel == "batch").order_by(Message.id)).all())


def questions_asked(engine) -> Counter:
    return Counter(m.content for m in batch_messages(engine) if m.role == "user")


def ask_cli(*args: str):
    return CliRunner().invoke(app, ["batch", *args], env={"COLUMNS": "200"})


# --- answering -------------------------------------------------------------------------------------------------


def test_a_jsonl_file_is_answered_row_by_row_through_the_service_as_the_team(service, engine, tmp_path):
    source = write_jsonl(tmp_path / "questions.jsonl", [{"id": "pto", "question": VACATION}, {"question": LAPTOP}])
    out = tmp_path / "answers.jsonl"

    summary = run_batch(service, batch_identity(team="eng"), source, out)

    assert (summary.answered, summary.failed, summary.invalid, summary.skipped) == (2, 0, 0, 0)
    vacation, laptop = output(out)
    assert vacation["id"] == "pto" and laptop["id"].startswith("q-")  # no id: derived from the question
    assert vacation["question"] == VACATION and "twenty days" in vacation["answer"]
    assert vacation["status"] == "complete" and vacation["band"] == "answered" and vacation["abstained"] is False
    assert vacation["citations"][0] == {"n": 1, "title": "Time off", "section": "", "source": "time-off.md",
                                        "url": None}
    assert "three years" in laptop["answer"] and laptop["citations"][0]["source"] == "it/laptop.md"
    assert all(isinstance(row["latency_ms"], int) and row["error"] is None for row in (vacation, laptop))

    messages = batch_messages(engine)
    assert [(m.role, m.channel, m.team) for m in messages] == [("user", "batch", "eng"), ("assistant", "batch", "eng")] * 2
    assert [m.id for m in messages if m.role == "assistant"] == [vacation["message_id"], laptop["message_id"]]
    assert messages[1].content == vacation["answer"]
    with Session(engine) as session:
        user = session.exec(select(User).where(User.subject == "batch:eng")).one()
        conversations = session.exec(select(Conversation).where(Conversation.user_id == user.id)).all()
    assert (user.name, user.team) == ("Batch (eng)", "eng")
    assert sorted(c.id for c in conversations) == sorted([vacation["conversation_id"], laptop["conversation_id"]])


def test_a_csv_file_is_answered_by_the_command(indexed, engine, tmp_path):
    source = tmp_path / "questions.csv"
    source.write_text(f'\ufeffid,question,owner\nk1,"{KITCHEN}",ann\nk2,{PASSWORDS},bob\n', encoding="utf-8")
    out = tmp_path / "answers.jsonl"

    result = ask_cli(str(source), "--out", str(out), "--team", "ops")

    assert result.exit_code == 0, result.output
    assert "2 answered, 0 already in" in result.stdout
    kitchen, passwords = output(out)
    assert (kitchen["id"], passwords["id"]) == ("k1", "k2")
    assert "six" in kitchen["answer"] and kitchen["citations"][0]["url"] == "https://handbook.example.com/kitchen"
    assert "password manager" in passwords["answer"]
    assert {(m.channel, m.team) for m in batch_messages(engine)} == {("batch", "ops")}


def test_the_groups_decide_which_documents_answer(service, engine, tmp_path):
    source = write_jsonl(tmp_path / "questions.jsonl", [{"id": "salary", "question": SALARY}])

    run_batch(service, batch_identity(team="eng"), source, tmp_path / "staff.jsonl")
    run_batch(service, batch_identity(team="people", groups=["hr"]), source, tmp_path / "hr.jsonl")

    (staff,), (hr,) = output(tmp_path / "staff.jsonl"), output(tmp_path / "hr.jsonl")
    assert "hr/salary.md" not in {c["source"] for c in staff["citations"]} and "quokka" not in staff["answer"]
    staff_answer = next(m for m in batch_messages(engine) if m.id == staff["message_id"])
    assert "hr/salary.md" not in {s["source"] for s in staff_answer.sources}  # not even uncited
    assert hr["citations"][0]["source"] == "hr/salary.md" and "quokka matrix" in hr["answer"]


# --- bad input ---------------------------------------------------------------------------------------------------


def test_bad_rows_are_reported_one_by_one_and_the_others_answered(service, engine, tmp_path):
    source = write_jsonl(tmp_path / "questions.jsonl", [
        {"id": "pto", "question": VACATION},
        "{broken",
        '"just a string"',
        {"id": "none"},
        {"id": "blank", "question": "   "},
        {"id": "long", "question": "why " * 2000},
        {"id": "pto", "question": LAPTOP},
        {"id": ["a"], "question": KITCHEN},
        {"id": 7, "question": PASSWORDS},
    ])
    out = tmp_path / "answers.jsonl"

    summary = run_batch(service, batch_identity(), source, out)

    rows = {row["id"]: row for row in output(out)}
    assert (summary.answered, summary.invalid) == (2, 7)
    assert rows["pto"]["status"] == rows["7"]["status"] == "complete"
    errors = {ident: row["error"] for ident, row in rows.items() if row["status"] == "invalid"}
    assert errors == {
        "line-2": "line 2 is not valid JSON: Expecting property name enclosed in double quotes (column 2).",
        "line-3": 'line 3 is not a JSON object like {"id": "1", "question": "..."}.',
        "none": 'line 4 has no "question".',
        "blank": "line 5: The question is empty.",
        "long": "line 6: The question is 7,999 characters long; the limit is 4,000. It was not sent: shorten it.",
        "line-7": "line 7: the id 'pto' is already used on line 1.",
        "line-8": 'line 8: "id" must be text or a whole number.',
    }
    assert len(output(out)) == 9  # every row once, the bad ones with their reason
    assert questions_asked(engine) == Counter({VACATION: 1, PASSWORDS: 1})  # nothing stored for a bad row


def test_a_file_that_cannot_be_read_stops_the_run_before_anything_is_asked(indexed, engine, tmp_path):
    no_column = tmp_path / "questions.csv"
    no_column.write_text("id,text\n1,How much PTO?\n", encoding="utf-8")
    out = tmp_path / "answers.jsonl"

    result = ask_cli(str(no_column), "--out", str(out))

    assert result.exit_code == 2
    assert "questions.csv has no 'question' column (its columns: id, text)" in " ".join(result.output.split())
    assert not out.exists() and batch_messages(engine) == []
    wrong = tmp_path / "questions.txt"
    wrong.write_text("How much PTO?\n", encoding="utf-8")
    assert "expected a .jsonl or .csv file" in " ".join(ask_cli(str(wrong), "--out", str(out)).output.split())


def test_ids_are_given_or_derived_from_the_question_and_stay_when_rows_move(tmp_path):
    def ids(rows):
        return [q.id for q in read_questions(write_jsonl(tmp_path / "q.jsonl", rows), lambda text: None)]

    first = ids([{"question": VACATION}, {"question": LAPTOP}, {"question": VACATION}, {"id": "x", "question": "?"}])
    moved = ids([{"question": LAPTOP}, {"question": "new"}, {"question": VACATION}, {"question": VACATION}])

    assert first[2] == first[0] + "-2" and first[3] == "x"
    assert moved[0] == first[1] and moved[2:] == [first[0], first[2]]


# --- resuming ----------------------------------------------------------------------------------------------------


def test_a_run_killed_midway_resumes_without_asking_any_question_twice(indexed, engine, embeddings, tmp_path):
    questions = [VACATION, LAPTOP, SALARY, KITCHEN, PASSWORDS]
    source = write_jsonl(tmp_path / "questions.jsonl", [{"id": f"r{n}", "question": q} for n, q in
                                                        enumerate(questions, 1)])
    out = tmp_path / "answers.jsonl"
    command = [sys.executable, "-m", "onboard.cli", "batch", str(source), "--out", str(out), "--team", "eng"]
    embeddings.held = SALARY  # the third question waits for its embedding: in flight when the process is killed
    killed = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy())
    try:
        assert embeddings.holding.wait(timeout=120), killed.communicate(timeout=10)
        assert len(output(out)) == 2  # the rows before it are on disk
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=60)
    finally:
        killed.kill()
        embeddings.release.set()
    assert killed.returncode == -signal.SIGKILL
    first_two = output(out)
    assert questions_asked(engine) == Counter(questions[:3])  # the third was stored before its answer started

    again = subprocess.run(command, capture_output=True, text=True, timeout=300, env=os.environ.copy(), check=False)

    assert again.returncode == 0, again.stderr
    assert "3 answered, 2 already in" in again.stdout
    rows = output(out)
    assert [row["id"] for row in rows] == ["r1", "r2", "r3", "r4", "r5"] and rows[:2] == first_two
    assert all(row["status"] == "complete" for row in rows)
    assert questions_asked(engine) == Counter(questions)  # each question stored once, the one in flight too
    salary = [m for m in batch_messages(engine) if m.conversation_id == rows[2]["conversation_id"]]
    assert [(m.role, m.status) for m in salary] == [("user", "complete"), ("assistant", "interrupted"),
                                                    ("assistant", "complete")]  # the dead run's answer closed

    third = subprocess.run(command, capture_output=True, text=True, timeout=300, env=os.environ.copy(), check=False)
    assert third.returncode == 0 and "0 answered, 5 already in" in third.stdout
    assert output(out) == rows and questions_asked(engine) == Counter(questions)


def test_a_half_written_last_line_is_repaired(service, engine, tmp_path):
    source = write_jsonl(tmp_path / "questions.jsonl", [{"id": "a", "question": VACATION},
                                                        {"id": "b", "question": LAPTOP}])
    out = tmp_path / "answers.jsonl"
    run_batch(service, batch_identity(), source, out)
    whole = out.read_bytes()
    out.write_bytes(whole[: whole.index(b"\n") + 1] + whole[whole.index(b"\n") + 1:][:40])  # cut inside row b

    summary = run_batch(service, batch_identity(), source, out)

    assert summary.repaired and (summary.answered, summary.skipped) == (1, 1)
    assert [row["id"] for row in output(out)] == ["a", "b"]
    assert questions_asked(engine) == Counter({VACATION: 1, LAPTOP: 1})  # b was stored once: same batch, same key


def test_a_failed_row_is_recorded_the_run_goes_on_and_the_next_run_asks_it_again(service, engine, embeddings,
                                                                                   tmp_path):
    source = write_jsonl(tmp_path / "questions.jsonl", [{"id": "a", "question": VACATION},
                                                        {"id": "b", "question": LAPTOP},
                                                        {"id": "c", "question": KITCHEN}])
    out = tmp_path / "answers.jsonl"
    embeddings.refused = LAPTOP  # the search fails for b only

    first = run_batch(service, batch_identity(), source, out)

    assert (first.answered, first.failed) == (2, 1)
    failed = {row["id"]: row for row in output(out)}["b"]
    assert failed["status"] == "failed" and "search is not available" in failed["error"]
    embeddings.refused = None

    second = run_batch(service, batch_identity(), source, out)

    assert (second.answered, second.skipped, second.retried) == (1, 2, 1)
    rows = output(out)
    assert [row["id"] for row in rows] == ["a", "c", "b"] and rows[2]["status"] == "complete"
    assert questions_asked(engine) == Counter({VACATION: 1, LAPTOP: 1, KITCHEN: 1})  # b's question stored once


def test_an_output_that_is_not_a_batch_output_is_refused_untouched(service, tmp_path):
    source = write_jsonl(tmp_path / "questions.jsonl", [{"id": "a", "question": VACATION}])
    out = tmp_path / "notes.jsonl"
    out.write_text("my notes\nmore notes\n", encoding="utf-8")

    with pytest.raises(BatchError, match="line 1 is not a row written by onboard batch"):
        run_batch(service, batch_identity(), source, out)
    assert out.read_text(encoding="utf-8") == "my notes\nmore notes\n"


def test_two_runs_on_one_output_are_refused(service, tmp_path):
    source = write_jsonl(tmp_path / "questions.jsonl", [{"id": "a", "question": VACATION}])
    out = tmp_path / "answers.jsonl"

    with Output.opened(out), pytest.raises(BatchError, match="another onboard batch is writing"):
        run_batch(service, batch_identity(), source, out)


def test_the_command_stops_on_sigterm_and_says_how_to_continue(indexed, embeddings, tmp_path):
    source = write_jsonl(tmp_path / "questions.jsonl", [{"id": "a", "question": VACATION},
                                                        {"id": "b", "question": LAPTOP}])
    out = tmp_path / "answers.jsonl"
    embeddings.held = LAPTOP
    command = [sys.executable, "-m", "onboard.cli", "batch", str(source), "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=os.environ.copy())
    try:
        assert embeddings.holding.wait(timeout=120)
        process.send_signal(signal.SIGTERM)  # while the second question waits for its embedding
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
        embeddings.release.set()
    assert process.returncode == 130, stderr
    assert "run the same command again to continue" in stderr
    assert [row["id"] for row in output(out)] == ["a"]
