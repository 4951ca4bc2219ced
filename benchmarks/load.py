"""Load as the project's own check: many people asking at once, nothing lost, doubled or mixed up.

``--users`` threads each play one signed-in person with their own user row and
conversation, and send ``--turns`` questions one after the other (no pause in
between) down the chat page's own path, :class:`service.chat.ChatService` as
that person: the question is stored (``store_question``, as
:func:`ui.web.store_question` calls it), then answered (``answer``, with the
page's escaping writer :func:`ui.web.escaped`, here consuming the stream
instead of drawing it). Once every turn is done, each person rates each of
their answers (``rate``, as :func:`ui.web.rate`: thumbs up a complete answer,
down with a reason an abstention), all at once again. Only who is asking
comes from outside the service: the page reads ``st.user``, here each
person's claims go through the same :func:`service.access.identity_from_claims`.

Before that, every distinct question is answered once, one at a time, by the
same assistant, after the same previous question as in its conversation (a
follow-up is searched with the question before it: :mod:`assistant.followup`):
``differ_from_sequential`` counts stored answers whose text,
abstention or sources (passage ids, and which are cited) differ from that
reference. Every count is read back from the database with SQL, not from the
script's own bookkeeping: ``duplicates`` counts questions stored more often
than they were sent and questions with more than one answer;
``lost`` the sends and answers that are missing; ``misattributed`` messages or
ratings whose person or conversation is not the sender's.

The data directory is a fresh temporary folder with the corpus indexed once
(default: the 18F handbook; the default local embedding model, extractive
answers). ``--backend postgresql`` starts a throwaway cluster (initdb and
pg_ctl as the ``postgres`` user, as ``.ci/run`` does) on ``--pg-port`` and
stops it at the end. ``--index-cache DIR`` builds the index in ``DIR`` once
(in its own process) and copies it into each run's fresh data directory:
indexing 18F takes one to four minutes here. Prints one JSON object;
``--append FILE`` also adds it to the ``runs`` of a results file.
``cpu_ms_per_turn`` (the process's CPU time over the concurrent turns, per
turn) is the figure other work on the machine disturbs least: 45 turns/s on
two cores leaves 44 ms per turn. ``native_pool_cpu_ms_per_turn`` is the part
spent in threads Python did not start (onnxruntime's own pool, Chroma's), and
``database_server_cpu_ms_per_turn`` what PostgreSQL's processes spent (SQLite
works inside the process).

    python benchmarks/load.py --users 10 --turns 10 --backend sqlite --index-cache /tmp/onboard-load-index
    python benchmarks/load.py --users 50 --turns 10 --backend postgresql --pg-port 55446 \\
        --append benchmarks/results/load-postgresql-2026-11-23.json

Timings are of one process on this machine: other work on it shows in them
(``load_average`` records it).

Faults: ``--restart-db AFTER_S`` takes the database away ``AFTER_S`` seconds
into the concurrent turns for ``--fault-seconds`` (default 5). On PostgreSQL
the throwaway server is really stopped (``pg_ctl stop -m fast``: sessions are
ended, open transactions rolled back) and started again. On SQLite, which has
no server, a second process holds the write lock (``BEGIN EXCLUSIVE``) that
long: in WAL mode reads go on and every write waits up to the app's busy
timeout (30 s, ``onboard/db.py``), so a lock shorter than that only delays,
and a longer one makes writes fail with "database is locked". The people then
do what the chat page does: a question that could not be stored is kept as a
draft (``pages/chat.py``) and sent again after :data:`RESEND_PAUSE_S` (a person
pressing Send again), at most :data:`RESENDS` times; an answer
``answer_turn`` could not store after its backoff (``Outcome.unsaved``) is kept
and written on the person's next action as ``web.save_unsaved`` does (before
each question, and every :data:`RESEND_PAUSE_S` after the last one). Use
``--think-seconds`` so the turns last long enough for the fault to land
mid-run (``fault.began_s`` against ``wall_s``). The sequential reference is
skipped (an answer made while the database was away may rightly be
``failed``: ``answers_failed_why`` says why). Reported from the database:
``typed_lost`` (typed, never stored, not still held as a draft),
``answers_pending`` and ``answers_pending_text_lost`` (pending or failed rows
with no text where text was shown), ``answers_told_otherwise`` (the turn said
failed but the row holds the answer: its write landed, the reply did not); from
the people: ``drafts_resent``, ``unsaved_kept``, ``unsaved_then_saved``,
``answers_not_started`` (``answer_turn`` could not store the pending answer).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sqlalchemy import func
from sqlmodel import Session, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from assistant.evaluation import load_dataset
from assistant.ingest import ingest
from feedback.models import Conversation, Message, Rating, User
from feedback.store import FeedbackError
from onboard import factories
from onboard.settings import Settings
from service.access import identity_from_claims
from service.chat import ChatService
from service.turns import Closing
from service.turns import save as save_answer
from ui import web

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpora" / "18f-handbook"
DEFAULT_DATASET = ROOT.parent / "shared" / "eval" / "18f_dev_qa.jsonl"
DOWN_REASON = "incomplete"
EXAMPLES = 5
#: A question the page could not store is kept as a draft; the simulated person sends it again after this pause
#: (pressing Send again), at most this many times (the answers kept unsaved are retried as often after the last turn).
RESEND_PAUSE_S = 1.0
RESENDS = 90


# --- the page's path, for one person ------------------------------------------------------------------------------


@dataclasses.dataclass
class Person:
    """One simulated user: who they are, what they send, and what happened (timings and errors only)."""

    index: int
    claims: dict
    questions: list[str]
    conversation_id: str | None = None
    answer_ids: list[int] = dataclasses.field(default_factory=list)
    turn_ms: list[float] = dataclasses.field(default_factory=list)
    rate_ms: list[float] = dataclasses.field(default_factory=list)
    stages_ms: list[dict] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)
    ratings_sent: int = 0
    #: Fault bookkeeping: what the page would hold in the session (``unsaved``), and what it showed.
    drafts_resent: int = 0
    held: list[str] = dataclasses.field(default_factory=list)  # questions still kept as drafts at the end
    unsaved: dict[int, Closing] = dataclasses.field(default_factory=dict)  # web.UNSAVED_KEY
    unsaved_kept: int = 0
    unsaved_then_saved: int = 0
    shown: dict[int, str] = dataclasses.field(default_factory=dict)  # answer id: the text the person saw
    told: dict[int, str] = dataclasses.field(default_factory=dict)  # answer id: the status answer_turn returned
    not_started: list[str] = dataclasses.field(default_factory=list)  # stored questions answer_turn got no row for


class Page:
    """What the chat page does for a person, through the chat service it would have (:func:`ui.web.chat`).

    Each simulated person's thread answers with its own :class:`Recorder` around the one shared assistant
    (``assistant_for`` returns it), which keeps that thread's last answer for its retrieval timings.
    """

    def __init__(self, settings: Settings, engine, assistant, think_s: float = 0.0, faulty: bool = False) -> None:
        self.settings = settings
        self.engine = engine
        self.assistant = assistant
        self.think_s = think_s
        self.faulty = faulty  # a fault is injected: answers failed while the database was away are expected
        self._local = threading.local()
        self.service = ChatService(engine=engine, settings=settings, assistant_for=lambda features: self.recorder())

    def recorder(self) -> Recorder:
        """This thread's recorder of the shared assistant."""
        if not hasattr(self._local, "recorder"):
            self._local.recorder = Recorder(self.assistant)
        return self._local.recorder

    def db(self):  # web.db
        return self.service.session()

    def identity(self, person: Person):  # web.identity in login mode
        return identity_from_claims(person.claims, self.settings.access)

    def store_question(self, person: Person, text: str, key: str | None = None) -> Message:  # web.store_question
        message = self.service.store_question(self.identity(person), text, conversation_id=person.conversation_id,
                                              kind=web.CONVERSATION_KIND, channel="web", key=key)
        person.conversation_id = message.conversation_id
        return message

    def save_unsaved(self, person: Person) -> None:  # web.save_unsaved, at the top of every page run
        for answer_id, closing in list(person.unsaved.items()):
            try:
                if save_answer(self.engine, closing) is None:
                    continue  # the database is still away: next run
                person.unsaved_then_saved += 1
            except Exception as exc:  # noqa: BLE001  (the page logs it and drops the answer: counted as an error)
                person.errors.append(f"unsaved answer {answer_id} refused: {type(exc).__name__}: {exc}"[:300])
            del person.unsaved[answer_id]

    def send(self, person: Person, text: str) -> Message | None:
        """Store a typed question as the page does; one it could not store is kept as a draft and sent again.

        pages/chat.py keeps the question (``_keep_draft``, or ``_unreachable`` when
        the conversations cannot even be read) with ``web.NOT_SAVED``; the person
        presses Send again after :data:`RESEND_PAUSE_S`, each time a new page run
        (so :meth:`save_unsaved` first). ``None``: still a draft after
        :data:`RESENDS` sends again, or refused (not a database that is away).
        """
        key = uuid.uuid4().hex  # web.send_key: one per typed question, the same when it is sent again
        for attempt in range(RESENDS + 1):
            if attempt:
                time.sleep(RESEND_PAUSE_S)
                person.drafts_resent += 1
                self.save_unsaved(person)
            try:
                return self.store_question(person, text, key)
            except Exception as exc:  # noqa: BLE001  (kept as a draft, as the page does)
                if isinstance(exc, FeedbackError):  # refused (the page shows why): sending again will not help
                    person.errors.append(f"question refused: {type(exc).__name__}: {exc}"[:300])
                    break
        person.held.append(text)
        return None

    def answer(self, person: Person, question: Message, history, shown: list[str] | None = None):  # web.answer
        outcome = self.service.answer(self.identity(person), question, history=history,
                                      write=web.escaped(_consumer(shown)),
                                      status=None)  # extractive answers never wait for a model
        if outcome.unsaved is not None:  # web._kept: the session keeps it, web.save_unsaved stores it later
            person.unsaved[outcome.unsaved.answer_id] = outcome.unsaved
            person.unsaved_kept += 1
        return outcome

    def rate(self, person: Person, message_id: int, thumb: int, reasons=()):  # web.rate
        return self.service.rate(self.identity(person), message_id, thumb, reasons)


def _consume(pieces) -> str:
    """``st.write_stream`` without the page: read every (escaped) piece."""
    return "".join(pieces)


def _consumer(shown: list[str] | None):
    """:func:`_consume`, also keeping what was shown (escaped, as the person saw it) in ``shown``."""
    if shown is None:
        return _consume

    def consume(pieces) -> str:
        for piece in pieces:
            shown.append(piece)
        return "".join(shown)

    return consume


class Recorder:
    """The assistant as ``answer_turn`` sees it, keeping the last turn's retrieval timings (per thread)."""

    def __init__(self, assistant) -> None:
        self._assistant = assistant
        self.last = None

    def __getattr__(self, name):
        return getattr(self._assistant, name)

    def ask(self, *args, **kwargs):
        self.last = self._assistant.ask(*args, **kwargs)
        return self.last


def run_person(page: Page, person: Person, start: threading.Barrier) -> None:
    recorder = page.recorder()
    start.wait()
    history: list[tuple[str, str]] = []
    for n, text in enumerate(person.questions):
        if n and page.think_s:
            time.sleep(page.think_s)
        began = time.perf_counter()
        shown: list[str] = []
        recorder.last = None
        try:
            page.save_unsaved(person)
            question = page.send(person, text)
            if question is None:  # still a draft: the person has it on the page, nothing was answered
                continue
            outcome = page.answer(person, question, history, shown)
        except Exception as exc:  # noqa: BLE001  (counted and reported, the person goes on)
            person.errors.append(f"{type(exc).__name__}: {exc}"[:300])
            continue
        person.turn_ms.append((time.perf_counter() - began) * 1000)
        if outcome.answer_id is not None:
            person.answer_ids.append(outcome.answer_id)
            person.shown[outcome.answer_id] = "".join(shown)
            person.told[outcome.answer_id] = outcome.status
        else:  # no answer row could be started: the page flashes the error under the stored question
            person.not_started.append(f"{outcome.status}: {outcome.error}"[:200])
        if outcome.status not in web.ANSWERED and outcome.unsaved is None and not page.faulty:
            person.errors.append(f"answer {outcome.answer_id} {outcome.status}: {outcome.error}"[:300])
        answer = recorder.last.answer if recorder.last is not None else None
        if answer is not None and answer.retrieval is not None:
            person.stages_ms.append(dict(answer.retrieval.timings_ms))
        if answer is not None and outcome.status in web.ANSWERED:
            history += [("user", text), ("assistant", answer.text)]  # as web.history_before builds it
    # The person stays on the page: each later action (a rerun) tries the answers kept unsaved again.
    for _ in range(RESENDS):
        if not person.unsaved:
            break
        time.sleep(RESEND_PAUSE_S)
        page.save_unsaved(person)


def rate_person(page: Page, person: Person, start: threading.Barrier) -> None:
    """Thumbs up each complete answer, down (with a reason) each abstention, as the page's thumbs do."""
    start.wait()
    for answer_id in person.answer_ids:
        began = time.perf_counter()
        try:
            with page.db() as session:
                status = session.get(Message, answer_id).status  # what the page shows under the answer
            if status not in web.ANSWERED:
                continue
            person.ratings_sent += 1
            up = status == "complete"
            page.rate(person, answer_id, 1 if up else 0, () if up else (DOWN_REASON,))
        except Exception as exc:  # noqa: BLE001
            person.errors.append(f"rating {answer_id}: {type(exc).__name__}: {exc}"[:300])
        person.rate_ms.append((time.perf_counter() - began) * 1000)


def concurrently(target, page: Page, people: list[Person], fault: Fault | None = None) -> float:
    """Run ``target(page, person, barrier)`` in one thread per person; seconds from the common start to the last end.

    ``fault`` starts with them (and is waited for: the database is back before anything is counted).
    """
    barrier = threading.Barrier(len(people) + 1)
    threads = [threading.Thread(target=target, args=(page, p, barrier), name=f"user-{p.index}") for p in people]
    for thread in threads:
        thread.start()
    barrier.wait()
    began = time.perf_counter()
    if fault:
        fault.start(began)
    for thread in threads:
        thread.join()
    ended = time.perf_counter() - began
    if fault:
        fault.thread.join()
    return ended


# --- the reference, and what the database holds --------------------------------------------------------------------


def signature(text: str, abstained: bool, sources: list[dict]) -> tuple:
    """What must not change with concurrency: the text, the abstention, the passages and which are cited."""
    return text, bool(abstained), tuple((s.get("chunk_id"), bool(s.get("cited", True))) for s in sources)


def sequential_reference(assistant, turns: list[tuple[str | None, str]], where: dict,
                         ) -> tuple[dict[tuple[str | None, str], tuple], list[float]]:
    """Each ``(previous question, question)`` answered alone, one at a time.

    A question is answered in its conversation: a follow-up is searched with the question before it
    (:mod:`assistant.followup`, which reads the previous question only), so the reference answers each
    question after the same previous question as in the person's conversation.
    """
    reference, timings = {}, []
    for previous, question in turns:
        history = [("user", previous), ("assistant", "")] if previous is not None else []
        began = time.perf_counter()
        answer = assistant.answer(question, history=history, where=where)
        timings.append((time.perf_counter() - began) * 1000)
        reference[(previous, question)] = signature(answer.text, answer.abstained,
                                                    [dataclasses.asdict(c) for c in answer.citations])
    return reference, timings


def audit(engine, people: list[Person], reference: dict[tuple[str | None, str], tuple]) -> dict:
    """Every count read back from the database, for this run's people only."""
    subjects = {p.claims["sub"]: p for p in people}
    with Session(engine) as session:
        users = {u.id: u for u in session.exec(select(User).where(User.subject.in_(list(subjects))))}
        ids = list(users)
        conversations = {c.id: c for c in session.exec(select(Conversation).where(Conversation.user_id.in_(ids)))}
        messages = list(session.exec(
            select(Message).where(Message.conversation_id.in_(list(conversations))).order_by(Message.id)))
        # Anything written under these people outside their conversations would be misattributed too.
        stray = session.exec(select(func.count()).select_from(Message).where(
            Message.user_id.in_(ids), Message.conversation_id.not_in(list(conversations)))).one()
        ratings = list(session.exec(select(Rating).where(Rating.user_id.in_(ids))))
        rated_elsewhere = session.exec(select(func.count()).select_from(Rating).join(
            Message, Message.id == Rating.message_id).where(
            Rating.message_id.in_([m.id for m in messages]), Rating.user_id.not_in(ids))).one()

    questions = {m.id: m for m in messages if m.role == "user"}
    answers = [m for m in messages if m.role == "assistant"]
    previous_of: dict[int, str | None] = {}  # each question's previous question in its conversation
    last: dict[str, str] = {}
    for m in messages:
        if m.role == "user":
            previous_of[m.id] = last.get(m.conversation_id)
            last[m.conversation_id] = m.content
    sent_by_conversation: dict[str, Counter] = {}
    for person in people:
        if person.conversation_id:
            sent_by_conversation[person.conversation_id] = Counter(person.questions)
    stored_by_conversation: dict[str, Counter] = {}
    for m in questions.values():
        stored_by_conversation.setdefault(m.conversation_id, Counter())[m.content] += 1
    duplicate_questions = lost_questions = 0
    for conversation_id in set(sent_by_conversation) | set(stored_by_conversation):
        sent = sent_by_conversation.get(conversation_id, Counter())
        stored = stored_by_conversation.get(conversation_id, Counter())
        duplicate_questions += sum((stored - sent).values())
        lost_questions += sum((sent - stored).values())
    lost_questions += sum(len(p.questions) for p in people if not p.conversation_id)
    answers_per_question = Counter(a.reply_to for a in answers)
    duplicate_answers = sum(n - 1 for n in answers_per_question.values() if n > 1)
    unanswered = sum(1 for qid in questions if answers_per_question[qid] == 0)

    misattributed = stray + rated_elsewhere
    for m in messages:
        owner = conversations[m.conversation_id].user_id
        if m.user_id != owner:
            misattributed += 1
        elif m.role == "assistant":
            question = questions.get(m.reply_to)
            if question is None or question.conversation_id != m.conversation_id:
                misattributed += 1
    owner_of = {c.id: users[c.user_id].subject for c in conversations.values()}
    for conversation_id, subject in owner_of.items():
        if subjects[subject].conversation_id != conversation_id:  # a person's question went to someone else's
            misattributed += 1

    by_id = {a.id: a for a in answers}
    ratings_mismatched = 0
    for rating in ratings:
        answer = by_id.get(rating.message_id)
        expected = 1 if answer is not None and answer.status == "complete" else 0
        if answer is None or answer.user_id != rating.user_id or rating.thumb != expected:
            ratings_mismatched += 1
    rating_pairs = Counter((r.message_id, r.user_id) for r in ratings)

    # Faults: what each person typed and never got stored nor still holds as a draft, and answer text shown but lost.
    stored_by_person: dict[str, Counter] = {}
    for m in questions.values():
        subject = users[conversations[m.conversation_id].user_id].subject
        stored_by_person.setdefault(subject, Counter())[m.content] += 1
    typed_lost = sum(sum((Counter(p.questions) - stored_by_person.get(p.claims["sub"], Counter())
                          - Counter(p.held)).values()) for p in people)
    shown = {answer_id: text for p in people for answer_id, text in p.shown.items()}
    held = {answer_id for p in people for answer_id in p.unsaved}
    text_lost = [a for a in answers if shown.get(a.id) and not a.content and a.id not in held]
    told = {answer_id: status for p in people for answer_id, status in p.told.items()}
    # answer_turn said failed (or unsaved) but the database holds the answer (its write landed, the reply did not)
    told_otherwise = Counter(f"told {told[a.id]}, stored {a.status}" for a in answers
                             if a.id in told and told[a.id] != a.status and told[a.id] != "unsaved")

    differ, examples = (0, []) if reference else (None, [])
    for a in answers if reference else ():
        question = questions.get(a.reply_to)
        if a.status not in web.ANSWERED or question is None:
            continue
        got = signature(a.content, a.status == "abstained", a.sources or [])
        want = reference.get((previous_of.get(question.id), question.content))
        if got != want:
            differ += 1
            if len(examples) < EXAMPLES:
                fields = [name for name, x, y in zip(("text", "abstained", "sources"), got, want or ((),) * 3,
                                                     strict=True) if x != y]
                examples.append({"question": question.content[:80], "answer_id": a.id, "differs_in": fields})
    return {
        "questions_stored": len(questions),
        "answers_stored": len(answers),
        "answers_by_status": dict(Counter(a.status for a in answers)),
        "ratings_stored": len(ratings),
        "duplicates": duplicate_questions + duplicate_answers + sum(n - 1 for n in rating_pairs.values() if n > 1),
        "duplicate_questions": duplicate_questions,
        "duplicate_answers": duplicate_answers,
        "lost_questions": lost_questions,
        "unanswered_questions": unanswered,
        "misattributed": misattributed,
        "ratings_mismatched": ratings_mismatched,
        "differ_from_sequential": differ,
        "differ_examples": examples,
        "typed_lost": typed_lost,
        "conversations_per_person_max": max(Counter(c.user_id for c in conversations.values()).values(), default=0),
        "answers_pending": sum(1 for a in answers if a.status == "pending"),
        "answers_text_lost": len(text_lost),
        "answers_pending_text_lost": sum(1 for a in text_lost if a.status in ("pending", "failed")),
        "answers_unsaved_still_held": len(held),
        "answers_told_otherwise": dict(told_otherwise),
        "answers_failed_why": dict(Counter(f"{a.status}: {a.error}" for a in answers
                                           if a.status in ("failed", "interrupted"))),
    }


# --- a throwaway PostgreSQL ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Cluster:
    url: str
    data: Path
    pg_ctl: Path
    log: Path
    options: str

    def _ctl(self, *command: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", str(self.pg_ctl), "-D", str(self.data), "-w", *command],
                       check=True, stdout=subprocess.DEVNULL)

    def restart(self, down_s: float) -> dict:
        """Stop the server (``-m fast``: sessions are ended, open transactions rolled back), wait, start it again."""
        began = time.perf_counter()
        self._ctl("-m", "fast", "stop")
        stopped = time.perf_counter()
        time.sleep(down_s)
        self._ctl("-l", str(self.log), "-o", self.options, "start")
        return {"stop_s": round(stopped - began, 2), "down_s": round(time.perf_counter() - stopped, 2)}

    def cpu_s(self) -> dict[int, float]:
        """CPU seconds used so far by the server and each of its live processes (one per pooled connection)."""
        postmaster = (self.data / "postmaster.pid").read_text().split()[0]
        seconds = {}
        for entry in Path("/proc").iterdir():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):  # not a process, or gone meanwhile
                continue
            if entry.name == postmaster or fields[1] == postmaster:
                seconds[int(entry.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return seconds


@contextmanager
def postgresql(port: int):
    """A PostgreSQL cluster in a temporary folder on ``port`` (as ``.ci/run`` starts one), stopped at the end."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise SystemExit("no PostgreSQL server under /usr/lib/postgresql")
    bin_dir = found[-1].parent
    folder = Path(tempfile.mkdtemp(prefix="onboard-load-pg-"))
    shutil.chown(folder, "postgres")
    data = folder / "data"

    def as_postgres(*command: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *command], check=True, stdout=subprocess.DEVNULL)

    options = f"-k {folder} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    as_postgres(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "app")
    as_postgres(str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-l", str(folder / "log"), "-o", options, "start")
    try:
        yield Cluster(f"postgresql+psycopg://app@127.0.0.1:{port}/postgres", data, bin_dir / "pg_ctl",
                      folder / "log", options)
    finally:
        subprocess.run(["runuser", "-u", "postgres", "--", str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast",
                        "stop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        shutil.rmtree(folder, ignore_errors=True)


# --- faults -------------------------------------------------------------------------------------------------------

#: Run by ``--restart-db`` on SQLite in a second process: hold the database's write lock for argv[2] seconds.
LOCKER = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], timeout=120, isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
connection.execute("COMMIT")
"""


def lock_sqlite(path: str, down_s: float) -> dict:
    """Another process takes SQLite's write lock (``BEGIN EXCLUSIVE``) and holds it ``down_s`` seconds.

    In WAL mode readers go on; every writer waits up to the app's busy
    timeout (30 s, ``onboard/db.py``) and then fails with "database is locked".
    """
    began = time.perf_counter()
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, path, str(down_s)], stdout=subprocess.PIPE, text=True)
    line = locker.stdout.readline().strip()
    locked = time.perf_counter()
    if locker.wait() != 0 or line != "locked":
        raise RuntimeError(f"the lock holder failed ({locker.returncode}, {line!r})")
    return {"lock_wait_s": round(locked - began, 2), "down_s": round(time.perf_counter() - locked, 2)}


class Fault:
    """``action(down_s)`` in its own thread, ``after_s`` seconds into the concurrent turns; when it began, ended."""

    def __init__(self, kind: str, after_s: float, down_s: float, action) -> None:
        self.kind, self.after_s, self.down_s, self.action = kind, after_s, down_s, action
        self.report: dict = {"kind": kind, "after_s": after_s, "fault_seconds": down_s}
        self.thread = threading.Thread(target=self._run, name="fault")

    def start(self, began: float) -> None:
        self.began = began
        self.thread.start()

    def _run(self) -> None:
        time.sleep(self.after_s)
        self.report["began_s"] = round(time.perf_counter() - self.began, 2)
        try:
            self.report |= self.action(self.down_s)
        except Exception as exc:  # noqa: BLE001  (reported: a fault that did not happen measures nothing)
            self.report["failed"] = f"{type(exc).__name__}: {exc}"[:300]
        self.report["ended_s"] = round(time.perf_counter() - self.began, 2)


# --- the run ------------------------------------------------------------------------------------------------------


def native_thread_cpu() -> dict[int, float]:
    """CPU seconds of each thread of this process that Python did not start (onnxruntime's and Chroma's pools)."""
    python = {thread.native_id for thread in threading.enumerate()}
    seconds = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):  # ended meanwhile
            continue
        if int(task.name) not in python:
            seconds[int(task.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return seconds


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def people_for(users: int, turns: int, questions: list[str], run: str) -> list[Person]:
    people = []
    for i in range(users):
        claims = {"sub": f"load-{run}-{i}", "email": f"load{i}@example.com", "name": f"Load user {i}",
                  "groups": [], "team": f"team-{i % 5}"}
        sent = [questions[(i * turns + t) % len(questions)] for t in range(turns)]
        people.append(Person(i, claims, sent))
    return people


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--turns", type=int, default=10, help="questions each user sends, one after the other")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET, help="JSONL questions, cycled")
    parser.add_argument("--pg-port", type=int, default=55446, help="port of the throwaway PostgreSQL")
    parser.add_argument("--append", type=Path, help="also add the result to the 'runs' list of this JSON file")
    parser.add_argument("--index-cache", type=Path,
                        help="a folder keeping the built index (Chroma folder and quantised model): built there on "
                             "first use, copied into each run's fresh data directory after (indexing 18F takes "
                             "minutes on a busy machine)")
    parser.add_argument("--think-seconds", type=float, default=0.0,
                        help="pause between a person's answer and their next question (default 0: none)")
    parser.add_argument("--restart-db", type=float, metavar="AFTER_S",
                        help="a fault AFTER_S seconds into the concurrent turns: PostgreSQL is stopped (-m fast) and "
                             "started again after --fault-seconds; on SQLite another process holds the write lock "
                             "(BEGIN EXCLUSIVE) that long. Skips the sequential reference")
    parser.add_argument("--fault-seconds", type=float, default=5.0,
                        help="how long the database is down, or locked (default 5)")
    parser.add_argument("--build-index", type=Path, help=argparse.SUPPRESS)  # the cache, built in its own process
    args = parser.parse_args()
    if args.build_index:
        build_index(args.build_index, args.corpus)
        return
    if args.users < 1 or args.turns < 1:
        parser.error("--users and --turns must be at least 1")
    if args.think_seconds < 0 or args.fault_seconds < 0 or (args.restart_db or 0) < 0:
        parser.error("--think-seconds, --restart-db and --fault-seconds cannot be negative")
    questions = [case.question for case in load_dataset(args.dataset)]
    run = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")

    with (tempfile.TemporaryDirectory(prefix="onboard-load-") as tmp,
          postgresql(args.pg_port) if args.backend == "postgresql" else _nothing() as cluster):
        settings = index_settings(Path(tmp))
        if cluster:
            settings = settings.model_copy(update={"database_url": cluster.url})
        result = measure(settings, args, questions, run, cluster)
    print(json.dumps(result, indent=1))
    if args.append:
        append_run(args.append, result)


def append_run(path: Path, result: dict) -> None:
    """Add ``result`` to the ``runs`` of the JSON results file at ``path`` (made if missing)."""
    existing = json.loads(path.read_text()) if path.exists() else {"runs": []}
    existing["runs"].append(result)
    path.write_text(json.dumps(existing, indent=1) + "\n")


def _code_version() -> str | None:
    """The commit measured, ``-dirty`` when the working tree had changes (other people's, on a shared tree)."""
    try:
        return subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


@contextmanager
def _nothing():
    yield None


def index_settings(data_dir: Path) -> Settings:
    return Settings(_env_file=None, data_dir=data_dir, collection="load", answer={"mode": "extractive"})


def build_index(folder: Path, corpus: Path) -> None:
    """Index ``corpus`` into ``folder`` (its own SQLite file holds the manifest), then exit with the Chroma client."""
    settings = index_settings(folder)
    embeddings = factories.make_embeddings(settings)
    engine = factories.make_engine(settings, migrate=True)
    report = ingest([corpus], store=factories.make_store(settings, embeddings), embeddings=embeddings, engine=engine,
                    options=factories.ingest_options(settings))
    (folder / "corpus.json").write_text(json.dumps({"corpus": str(corpus), "chunks": report.chunks_added,
                                                    "failed": len(report.failed)}))


def index(settings: Settings, args, engine) -> dict:
    """Index the corpus into the run's data directory, or copy the cached index there (see ``--index-cache``)."""
    if not args.index_cache:
        embeddings = factories.make_embeddings(settings)
        report = ingest([args.corpus], store=factories.make_store(settings, embeddings), embeddings=embeddings,
                        engine=engine, options=factories.ingest_options(settings))
        return {"chunks_indexed": report.chunks_added, "files_failed": len(report.failed), "index": "built"}
    cache = args.index_cache.resolve()
    built = cache / "corpus.json"
    if not built.exists() or json.loads(built.read_text())["corpus"] != str(args.corpus):
        shutil.rmtree(cache, ignore_errors=True)
        subprocess.run([sys.executable, __file__, "--build-index", str(cache), "--corpus", str(args.corpus)],
                       check=True)
    shutil.copytree(cache / "chroma", settings.chroma_path)
    shutil.copytree(cache / "models", settings.embedding.cache_dir, dirs_exist_ok=True)
    info = json.loads(built.read_text())
    return {"chunks_indexed": info["chunks"], "files_failed": info["failed"], "index": f"copied from {cache}"}


def measure(settings: Settings, args, questions: list[str], run: str, cluster: Cluster | None = None) -> dict:
    began = time.perf_counter()
    engine = factories.make_engine(settings, migrate=True)
    indexed = index(settings, args, engine)
    assistant = factories.make_assistant(settings, factories.bootstrap_knowledge_base(settings))  # as the app
    index_s = time.perf_counter() - began

    people = people_for(args.users, args.turns, questions, run)
    faulty = args.restart_db is not None
    page = Page(settings, engine, assistant, think_s=args.think_seconds, faulty=faulty)
    where = web.retrieval_filter(page.identity(people[0]))
    assert all(web.retrieval_filter(page.identity(p)) == where for p in people)  # one reference fits everyone
    distinct = list(dict.fromkeys((p.questions[n - 1] if n else None, q) for p in people
                                  for n, q in enumerate(p.questions)))
    fault = None
    if faulty:  # an answer made while the database was away may rightly differ (failed): no reference
        reference, sequential_ms = {}, []
        if cluster:
            fault = Fault("postgresql restart (pg_ctl stop -m fast, start)", args.restart_db, args.fault_seconds,
                          cluster.restart)
        else:
            fault = Fault("sqlite write lock held by another process (BEGIN EXCLUSIVE)", args.restart_db,
                          args.fault_seconds, lambda down_s: lock_sqlite(engine.url.database, down_s))
    else:
        reference, sequential_ms = sequential_reference(assistant, distinct, where)

    load_before = os.getloadavg()
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    server_before = cluster.cpu_s() if cluster else {}
    native_before = native_thread_cpu()
    turns_s = concurrently(run_person, page, people, fault)
    native_s = sum(s - native_before.get(t, 0.0) for t, s in native_thread_cpu().items())
    # Per process: a connection closed during the turns loses its share, one opened counts whole (and a restart
    # loses all that went before it: not counted then).
    server_s = sum(s - server_before.get(p, 0.0) for p, s in cluster.cpu_s().items()) if cluster and not faulty \
        else None
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    load_after = os.getloadavg()
    rate_s = concurrently(rate_person, page, people)
    found = audit(engine, people, reference)
    engine.dispose()

    turn_ms = [ms for p in people for ms in p.turn_ms]
    rate_ms = [ms for p in people for ms in p.rate_ms]
    errors = [e for p in people for e in p.errors]
    stages = [s for p in people for s in p.stages_ms]
    cpu_s = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    sent = sum(len(p.questions) for p in people)
    return {
        "run": run,
        "date": datetime.now(UTC).date().isoformat(),
        "backend": args.backend,
        "users": args.users,
        "turns_per_user": args.turns,
        "corpus": str(args.corpus),
        "dataset": str(args.dataset),
        "answer_mode": settings.answer.mode,
        "embedding_model": assistant.knowledge_base.embeddings.model_id,
        **indexed,
        "cpu_count": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "code": _code_version(),
        "index_and_warm_s": round(index_s, 1),
        "sequential_reference": None if faulty else {"questions": len(distinct), "p50_ms": percentile(sequential_ms, 50),
                                                     "p95_ms": percentile(sequential_ms, 95)},
        "questions_sent": sent,
        **({"fault": fault.report, "typed": sent, "questions_stored": found["questions_stored"],
            "drafts_resent": sum(p.drafts_resent for p in people),
            "drafts_still_held": sum(len(p.held) for p in people),
            "typed_lost": found["typed_lost"],
            "answers_stored": found["answers_stored"], "answers_pending": found["answers_pending"],
            "answers_pending_text_lost": found["answers_pending_text_lost"],
            "answers_text_lost": found["answers_text_lost"],
            "unsaved_kept": sum(p.unsaved_kept for p in people),
            "unsaved_then_saved": sum(p.unsaved_then_saved for p in people),
            "answers_not_started": sum(len(p.not_started) for p in people),
            "answers_not_started_why": dict(Counter(w for p in people for w in p.not_started)),
            } if faulty else {}),
        "ratings_sent": sum(p.ratings_sent for p in people),
        **{k: v for k, v in found.items()},
        "errors": len(errors),
        "error_examples": errors[:EXAMPLES],
        "wall_s": round(turns_s, 2),
        "turns_per_s": round(len(turn_ms) / turns_s, 2) if turns_s else None,
        "p50_ms": percentile(turn_ms, 50),
        "p95_ms": percentile(turn_ms, 95),
        "p99_ms": percentile(turn_ms, 99),
        "max_ms": round(max(turn_ms), 1) if turn_ms else None,
        "retrieval_stage_p50_ms": {key: percentile([s[key] for s in stages if key in s], 50)
                                   for key in ("embed_ms", "dense_ms", "keyword_ms", "judge_ms", "total_ms")},
        "process_cpu_s": round(cpu_s, 1),
        "cores_busy": round(cpu_s / turns_s, 2) if turns_s else None,
        # What other work on the machine disturbs least: at 45 turns/s two cores allow 44 ms of CPU per turn.
        "cpu_ms_per_turn": round(cpu_s * 1000 / len(turn_ms), 1) if turn_ms else None,
        # Of which threads Python did not start: onnxruntime's pool spinning after each query embedding, Chroma's.
        "native_pool_cpu_ms_per_turn": round(native_s * 1000 / len(turn_ms), 1) if turn_ms else None,
        # PostgreSQL's own processes, which SQLite's work happens inside the process instead of.
        "database_server_cpu_ms_per_turn": round(server_s * 1000 / len(turn_ms), 1) if server_s is not None
        and turn_ms else None,
        "ratings_per_s": round(len(rate_ms) / rate_s, 1) if rate_s else None,
        "rating_p95_ms": percentile(rate_ms, 95),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "think_time_s": args.think_seconds,
    }


def _stop(signum, _frame):
    raise SystemExit(128 + signum)  # unwinds, so the PostgreSQL cluster and the temporary folder are removed


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _stop)
    try:
        main()
    except KeyboardInterrupt:
        traceback.print_exc()
        sys.exit(130)
