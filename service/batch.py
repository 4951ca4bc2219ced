"""Batch answering: a file of questions answered through the service layer into a JSONL file, resumable.

``onboard batch`` (:mod:`onboard.cli_batch`) is a thin command over this
module; the rules a run must keep when it is killed at any moment live here,
where a test drives them without the CLI. No Streamlit, no FastAPI.

- **Input** (:func:`read_questions`): JSON Lines with a ``question`` and an
  optional ``id`` per line, or CSV with a ``question`` column and an optional
  ``id`` column (UTF-8, a byte-order mark allowed). Other keys and columns are
  ignored. The whole file is read and checked before anything is asked: a row
  that cannot be asked (broken JSON, no or an empty question, one longer than
  ``chat.max_message_chars``, an id used twice) is reported and written to the
  output as ``invalid`` with the reason, and the other rows are answered. Only
  a file that cannot be read at all (not UTF-8 CSV, a CSV without a
  ``question`` column, not ``.jsonl``/``.csv``) stops the run: :class:`BatchError`.
- **Ids** are text: the row's own ``id`` (a JSON number becomes its digits);
  else ``q-`` and the first 12 hex digits of the SHA-256 of the cleaned
  question, ``-2``, ``-3``... for the same question again later in the file,
  so adding, removing or reordering rows keeps every other row's id; a row
  that cannot be read, or whose id is already used, gets ``line-N``.
- **Output** (:class:`Output`): one JSON object per line, appended, flushed
  and fsynced row by row, so a kill loses at most the row in flight. On the
  next run, rows whose answer is stored (``complete``, ``abstained``,
  ``interrupted``: the model stopped early, kept with its notice) are kept and
  their ids skipped; ``failed``, ``unsaved`` and ``invalid`` rows are removed
  and their questions asked (or checked) again, and a half-written last line
  (the process died while writing it) is removed. The file is then rewritten
  whole, atomically (temporary file, fsync, rename), so every id is in it
  once. A lock file beside it (``OUT.lock``) refuses a second run on the same
  output.
- **Asking** (:func:`answer_row`): every row in a conversation of its own
  (the rows are independent questions; a shared conversation would feed each
  answer the rows before it as history), as :func:`batch_identity`, on
  channel ``batch``: its groups choose the documents, its team is charged.
  A question is sent with a key made of the run's id (``batch`` in every
  output row, kept while the file is resumed), the row's id and its text: the
  question in flight when a run died is stored once, and the next run answers
  that same stored question (closing the answer the dead run left pending).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.exc import InterfaceError, OperationalError

from assistant.text import clean, web_url
from feedback import store
from feedback.models import utcnow
from service.access import EMPLOYEE, UNASSIGNED, Identity

log = logging.getLogger(__name__)

CHANNEL = "batch"
MAX_ID_CHARS = 200
MAX_TEAM_CHARS = 128
#: Output rows whose answer is stored: kept on resume, their ids skipped.
KEPT = frozenset({"complete", "abstained", "interrupted"})
INVALID = "invalid"
FAILED = "failed"


class BatchError(Exception):
    """The batch cannot run at all (the input cannot be read, --out is not a batch output, another run holds
    it); the message says why and what to do. Nothing was asked."""


@dataclass(frozen=True)
class Question:
    """One input row: its id, the line it is on, the cleaned question, and why it cannot be asked (if so)."""

    id: str
    line: int
    text: str
    problem: str | None = None


@dataclass
class Summary:
    """What a run did; ``retried`` rows of earlier runs (failed or invalid) were asked or checked again."""

    total: int = 0
    skipped: int = 0
    answered: int = 0
    failed: int = 0
    invalid: int = 0
    retried: int = 0
    repaired: bool = False
    statuses: Counter = field(default_factory=Counter)


def batch_identity(*, team: str | None = None, groups: Iterable[str] = ()) -> Identity:
    """Who a batch asks as: ``batch:<team>``, an employee in ``groups`` (their documents) of ``team`` (charged)."""
    team = clean(team or "").strip() or UNASSIGNED
    if len(team) > MAX_TEAM_CHARS:
        raise BatchError(f"The team name is {len(team)} characters long; the limit is {MAX_TEAM_CHARS}.")
    members = frozenset(clean(g).strip() for g in groups if g and clean(g).strip())
    return Identity(subject=f"batch:{team}", email="", name=f"Batch ({team})", groups=members,
                    roles=frozenset({EMPLOYEE}), team=team)


# -- reading ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Raw:
    line: int
    id: object = None
    question: object = None
    problem: str | None = None


def read_questions(path: Path, check: Callable[[str], str | None]) -> list[Question]:
    """Every row of ``path`` (``.jsonl`` or ``.csv``) with its id, and its problem if it cannot be asked.

    ``check`` says why a cleaned question cannot be sent (:meth:`service.chat.ChatService.check`).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".csv"):
        raise BatchError(f"{path.name}: expected a .jsonl or .csv file of questions.")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BatchError(f"cannot read {path}: {exc.strerror or exc}") from exc
    raw = _jsonl_rows(data) if suffix == ".jsonl" else _csv_rows(data, path.name)
    return _resolve(raw, check)


def _jsonl_rows(data: bytes) -> Iterator[_Raw]:
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            yield _Raw(number, problem=f"line {number} is not UTF-8 text (byte {exc.start + 1}).")
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            yield _Raw(number, problem=f"line {number} is not valid JSON: {exc.msg} (column {exc.colno}).")
            continue
        if not isinstance(value, dict):
            yield _Raw(number, problem=f'line {number} is not a JSON object like {{"id": "1", "question": "..."}}.')
            continue
        yield _Raw(number, value.get("id"), value.get("question"))


def _csv_rows(data: bytes, name: str) -> Iterator[_Raw]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise BatchError(f"{name} is not UTF-8 text (line {line}): save it as CSV UTF-8 and run again.") from exc
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = {str(c).strip().lower(): c for c in (reader.fieldnames or []) if c is not None}
    if "question" not in columns:
        header = ", ".join(str(c) for c in reader.fieldnames or []) or "none"
        raise BatchError(f"{name} has no 'question' column (its columns: {header}); the first line must name the "
                         "columns, e.g. id,question.")
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield _Raw(reader.line_num, problem=f"line {reader.line_num} cannot be read as CSV: {exc}.")
            continue
        yield _Raw(reader.line_num, record.get(columns.get("id")), record.get(columns["question"]) or "")


def _resolve(rows: Iterable[_Raw], check: Callable[[str], str | None]) -> list[Question]:
    """Each row's question cleaned and checked, and its id (given, derived from the question, or ``line-N``)."""
    checked = []
    for row in rows:
        problem, text, given = row.problem, "", None
        if problem is None:
            if row.question is None:
                problem = f'line {row.line} has no "question".'
            elif not isinstance(row.question, str):
                problem = f'line {row.line}: "question" must be text.'
            else:
                text = clean(row.question).strip()
                if why := check(text):
                    problem = f"line {row.line}: {why}"
        if row.id is not None and not (isinstance(row.id, str) and not row.id.strip()):
            if isinstance(row.id, bool) or not isinstance(row.id, (str, int)):
                problem = problem or f'line {row.line}: "id" must be text or a whole number.'
            elif len(given := clean(str(row.id)).strip()) > MAX_ID_CHARS:
                problem, given = problem or f"line {row.line}: the id is longer than {MAX_ID_CHARS} characters.", None
        checked.append((row, text, given or None, problem))

    questions, used, repeats = [], {}, Counter()
    for row, text, given, problem in checked:
        ident = given
        if ident is None and problem is None:
            digest = hashlib.sha256(text.encode()).hexdigest()[:12]
            repeats[digest] += 1
            ident = f"q-{digest}" + (f"-{repeats[digest]}" if repeats[digest] > 1 else "")
        if ident is not None and ident in used:
            problem = f"line {row.line}: the id {ident!r} is already used on line {used[ident]}."
            ident = None
        ident = ident or f"line-{row.line}"
        used.setdefault(ident, row.line)
        questions.append(Question(ident, row.line, text, problem))
    return questions


# -- the output file ----------------------------------------------------------------------------------------------


class Output:
    """The output JSONL: the rows earlier runs finished (:attr:`done`, by id), then one appended per question.

    Use :meth:`opened`; :attr:`batch_id` names the batch across its runs, :attr:`dropped` counts the earlier rows
    removed to be asked again (by status), :attr:`repaired` says a half-written last line was removed.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.done: dict[str, dict] = {}
        self.dropped: Counter = Counter()
        self.repaired = False
        self.batch_id = ""
        self._file = None

    @classmethod
    @contextmanager
    def opened(cls, path: Path) -> Iterator[Output]:
        """The output at ``path``, resumed (see the module's docstring), locked against another run."""
        from filelock import FileLock, Timeout

        output = cls(path)
        lock = FileLock(str(output.path) + ".lock", thread_local=False)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise BatchError(f"another onboard batch is writing {output.path}: wait for it to finish, or choose "
                             "another --out.") from None
        except OSError as exc:
            raise BatchError(f"cannot write next to {output.path}: {exc.strerror or exc}") from exc
        try:
            output._resume()
            output._file = open(output.path, "ab")  # noqa: SIM115 (closed below, after the run)
            try:
                yield output
            finally:
                output._file.close()
        finally:
            lock.release()

    def write(self, row: dict) -> None:
        """Append ``row`` as one line, on disk before this returns."""
        line = json.dumps(row, ensure_ascii=False).replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
        self._file.write(line.encode("utf-8") + b"\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        if row.get("status") in KEPT:
            self.done[row["id"]] = row

    def _resume(self) -> None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = b""
        except OSError as exc:
            raise BatchError(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        *lines, tail = data.split(b"\n")
        self.repaired = bool(tail.strip())  # no newline after it: the process died while writing it
        kept = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            row = _output_row(line)
            if row is None:
                raise BatchError(f"{self.path} line {number} is not a row written by onboard batch: is --out the "
                                 "right file? (Only a half-written last line is repaired.)")
            self.batch_id = self.batch_id or str(row.get("batch") or "")
            if row["status"] in KEPT and row["id"] not in self.done:
                self.done[row["id"]] = row
                kept.append(line)
            else:
                self.dropped[row["status"]] += 1
        self.batch_id = self.batch_id or uuid.uuid4().hex
        if self.repaired or sum(self.dropped.values()) or len(kept) != len(lines):
            self._rewrite(kept)

    def _rewrite(self, lines: list[bytes]) -> None:
        """Replace the file by ``lines``, atomically: a kill leaves either the old file or the new one."""
        temporary = self.path.with_name(self.path.name + ".tmp")
        with open(temporary, "wb") as file:
            file.write(b"".join(line + b"\n" for line in lines))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.path)
        with suppress(OSError):  # the rename itself on disk (not possible on every platform)
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)


def _output_row(line: bytes) -> dict | None:
    try:
        row = json.loads(line)
    except ValueError:  # UnicodeDecodeError included
        return None
    if isinstance(row, dict) and isinstance(row.get("id"), str) and isinstance(row.get("status"), str):
        return row
    return None


# -- asking -------------------------------------------------------------------------------------------------------


def question_key(batch_id: str, question: Question) -> str:
    """The key the question is stored under: the same batch, row and text store one question (64 characters)."""
    digest = hashlib.sha256(f"{batch_id}\0{question.id}\0{question.text}".encode()).hexdigest()
    return f"batch:{digest[:58]}"


def answer_row(service, who: Identity, question: Question, batch_id: str) -> dict:
    """Ask ``question`` as ``who`` (a conversation of its own, channel ``batch``) and return its output row.

    A failure is the row's (status ``failed`` or ``invalid``, with the reason), never the run's; Ctrl-C and
    SIGTERM are not failures and stop the run (the answer under way is stored ``interrupted``).
    """
    row = {"id": question.id, "question": question.text}
    if question.problem:
        return _row(row, batch_id, status=INVALID, error=question.problem)
    started = utcnow()
    try:
        asked = service.ask(who, question.text, channel=CHANNEL, key=question_key(batch_id, question))
    except store.InvalidInput as exc:  # QuestionRefused included: nothing was stored
        return _row(row, batch_id, status=INVALID, error=f"line {question.line}: {exc}")
    except (OperationalError, InterfaceError) as exc:
        log.error("batch row %s: the database did not answer: %s", question.id, type(exc).__name__)
        return _row(row, batch_id, status=FAILED, error="The database did not answer; the question is asked "
                    "again on the next run.")
    except Exception as exc:
        log.exception("batch row %s failed", question.id)
        return _row(row, batch_id, status=FAILED, error=f"Something went wrong while asking ({type(exc).__name__});"
                    " the question is asked again on the next run (details in the log).")
    if _utc(asked.question.created_at) < started:  # stored by a run that died: close the answer it left pending
        with service.session() as session:
            store.interrupt_stale_answers(session=session, older_than=timedelta(0),
                                          conversation_id=asked.conversation_id)
    return _row(row, batch_id, **_answered(asked))


def _answered(asked) -> dict:
    outcome = asked.outcome
    fields = {"conversation_id": asked.conversation_id, "message_id": outcome.answer_id, "status": outcome.status,
              "error": outcome.error or outcome.notice}
    if outcome.message is not None:
        message = outcome.message
        fields.update(answer=message.content, band=message.band,
                      abstained=message.status == "abstained" or message.band == "abstained",
                      latency_ms=message.latency_ms,
                      citations=[{**{key: source.get(key) for key in ("n", "title", "section", "source")},
                                  "url": web_url(source.get("url"))}
                                 for source in message.sources or [] if source.get("cited", True)])
    elif outcome.unsaved is not None:  # answered, but the database did not take it: asked again next run
        fields.update(answer=outcome.unsaved.text, latency_ms=outcome.unsaved.fields.get("latency_ms"))
    return fields


def _row(row: dict, batch_id: str, **fields) -> dict:
    """An output row: every key present, in one order, whatever happened."""
    out = {**row, "answer": "", "band": None, "abstained": None, "citations": [], "latency_ms": None,
           "status": None, "conversation_id": None, "message_id": None, "error": None}
    out.update(fields)
    out["batch"] = batch_id
    return out


def _utc(moment: datetime) -> datetime:
    """SQLite gives back naive datetimes (stored as UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


# -- the run ------------------------------------------------------------------------------------------------------


def run_batch(service, who: Identity, source: Path, out: Path, *,
              on_start: Callable[[int, Output], object] | None = None,
              on_row: Callable[[Question, dict], object] | None = None) -> Summary:
    """Answer every row of ``source`` not yet in ``out`` as ``who``, appending one row to ``out`` per question.

    ``on_start(rows to ask, output)`` is called once the output is resumed, ``on_row(question, row)`` after each
    row is on disk (a progress bar). :class:`BatchError` before anything is asked if the run cannot start.
    """
    questions = read_questions(source, service.check)
    summary = Summary(total=len(questions))
    with Output.opened(out) as output:
        todo = [q for q in questions if q.id not in output.done]
        summary.skipped = len(questions) - len(todo)
        summary.retried = sum(output.dropped.values())
        summary.repaired = output.repaired
        if on_start:
            on_start(len(todo), output)
        for question in todo:
            row = answer_row(service, who, question, output.batch_id)
            output.write(row)
            summary.statuses[row["status"]] += 1
            if row["status"] in KEPT:
                summary.answered += 1
            elif row["status"] == INVALID:
                summary.invalid += 1
            else:
                summary.failed += 1
            if on_row:
                on_row(question, row)
    return summary
