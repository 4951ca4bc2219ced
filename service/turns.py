"""One chat turn, from a stored question to a stored answer, for any front end.

:func:`answer_turn` stores a ``pending`` answer recording how it will be made,
streams the assistant's answer through the writer the caller gives (the pages
get ``st.write_stream`` behind :func:`ui.web.escaped`), and closes the answer as complete,
abstained, failed or interrupted whatever happens: an ``Exception`` becomes
``failed`` with a sentence for the person (the traceback goes to the log);
anything else (Streamlit stopping or rerunning the script, a shutdown) becomes
``interrupted`` and is raised again. The text produced so far is kept either
way. An answer the model did not finish (its stream broke, or it reached its
length limit) is stored ``interrupted`` with its notice; an answer that came
with a notice (the model failed and the passages are quoted instead) is stored
with the notice in ``error``, so the reopened conversation shows it and the
admins can find it. ``status`` is told what the turn is waiting for (the model,
a retry), and ``None`` once text flows. No Streamlit here: the page, a
benchmark or a future API use it alike.

The answer's final write is retried with exponential backoff while the
database does not answer (a restart, a lock: :class:`Backoff`, about 24 s in
all). An answer still not written after that comes back as
``Outcome.unsaved``, a :class:`Closing` the caller keeps (the chat page, in
the session, showing its text meanwhile) and hands to :func:`save` again
later: an answer that was shown is never lost to a database blip.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlmodel import Session

from assistant.errors import AssistantError, EmbeddingError, search_unreachable
from feedback import store
from feedback.models import Message

log = logging.getLogger(__name__)

UNEXPECTED = "Something went wrong while answering. Your question is saved: try again in a moment."
INTERRUPTED = "The answer was interrupted before it finished."
SAVING = "Saving the answer: the database did not answer, trying again…"
SEARCH_UNAVAILABLE = "The handbook search is not available right now. Your question is saved: try again in a moment."


@dataclass(frozen=True)
class Outcome:
    """How a turn ended: the stored answer (``None`` if none could be stored), its status, what to tell."""

    answer_id: int | None
    status: str  # the stored answer's, or ``unsaved``: the database did not take it (see ``unsaved``)
    error: str | None = None
    notice: str | None = None
    #: The final write of an answer shown but not stored yet: the caller keeps it and calls :func:`save` later.
    unsaved: Closing | None = None
    #: The stored answer as written (``None`` when nothing could be stored): what an API returns.
    message: Message | None = None


def answer_turn(
    *,
    engine: Engine,
    assistant: Callable[[], object],
    question: Message,
    history: list[tuple[str, str]],
    write: Callable[[Iterable[str]], object],
    where: dict | None = None,
    features: Iterable[str] = (),
    status: Callable[[str | None], object] | None = None,
    backoff: Backoff | None = None,
) -> Outcome:
    """Answer a stored question: store a pending answer, stream it through ``write``, then close it.

    ``assistant`` returns the :class:`~assistant.answering.Assistant` (called
    inside the guard, so a failure to build it is stored like any other).
    ``where`` restricts the passages the answer may use (the asker's
    audiences); ``features`` are the rollout features on for the asker,
    recorded with the answer.
    """

    def db() -> Session:
        return Session(engine, expire_on_commit=False)

    try:
        bot = assistant()
        with db() as session:
            pending = store.start_answer(session=session, question_id=question.id, features=list(features),
                                          **bot.provenance())
    except Exception as exc:
        log.exception("could not start answering question %s", question.id)
        return Outcome(None, "failed", error=_describe(exc)[0])
    started, stream, deltas = time.perf_counter(), None, None
    try:
        stream = bot.ask(question.content, history=history, where=where, on_status=status)
        deltas = iter(stream)
        write(deltas)
        closing, told = _closing(pending.id, stream.answer, question.id)
    except Exception as exc:
        message, stored = _describe(exc)
        if message == SEARCH_UNAVAILABLE:  # a known outage: one line, not a traceback per turn
            log.error("answering question %s: the search is unavailable: %s", question.id, _cause(exc))
        else:
            log.exception("answering question %s failed", question.id)
        closing, told = _failure(pending.id, stored, _so_far(stream, deltas), started), message
    except BaseException:
        log.warning("answering question %s was interrupted", question.id)
        try:  # Streamlit is stopping or rerunning the script: one attempt, no waiting
            if save(engine, _failure(pending.id, INTERRUPTED, _so_far(stream, deltas), started, interrupted=True)) is None:
                log.error("answer %s stays pending until it is closed as interrupted", pending.id)
        except Exception:
            log.exception("could not record the interruption of answer %s", pending.id)
        raise
    return _store(engine, closing, told, backoff or SAVE_BACKOFF, status)


@dataclass(frozen=True)
class Backoff:
    """How the final write of an answer is retried while the database does not answer (a restart, a lock).

    Waits of ``first_s``, doubling up to ``cap_s``, for at most ``total_s``
    seconds from the first attempt (an attempt that blocks counts too: SQLite
    may wait up to its busy timeout for a lock). ``sleep`` is ``time.sleep``.
    """

    first_s: float = 0.25
    cap_s: float = 8.0
    total_s: float = 30.0
    sleep: Callable[[float], object] = time.sleep


#: 8 attempts within about 24 s (waits of 0.25 s doubling to 8 s, none started past 30 s); after them the page
#: keeps the answer and writes it on its next runs.
SAVE_BACKOFF = Backoff()


@dataclass(frozen=True)
class Closing:
    """The final write of an answer (:func:`store.finish_answer`, or :func:`store.fail_answer` if ``failed``),
    kept until the database takes it: the page holds on to one that could not be written yet."""

    answer_id: int
    failed: bool
    fields: dict

    @property
    def text(self) -> str:
        return self.fields.get("content") or ""


def save(engine: Engine, closing: Closing, backoff: Backoff | None = None,
         waiting: Callable[[str | None], object] | None = None) -> Message | None:
    """Write ``closing``; ``None`` if the database did not answer (after retrying per ``backoff``, if given).

    Errors other than a database that does not answer (an answer already
    closed, a bug) are raised.
    """
    started, delay = time.monotonic(), backoff.first_s if backoff else 0.0
    while True:
        try:
            with Session(engine, expire_on_commit=False) as session:
                close = store.fail_answer if closing.failed else store.finish_answer
                return close(session=session, answer_id=closing.answer_id, **closing.fields)
        except Exception as exc:
            if not _unreachable(exc):
                raise
            if backoff is None or time.monotonic() - started + delay > backoff.total_s:
                log.error("could not store answer %s: the database did not answer (%s)", closing.answer_id,
                          type(exc).__name__)
                return None
            log.warning("could not store answer %s, trying again in %.2f s: %s", closing.answer_id, delay,
                        type(exc).__name__)
        if waiting:
            waiting(SAVING)
        backoff.sleep(delay)
        delay = min(delay * 2, backoff.cap_s)


def _cause(exc: BaseException) -> str:
    """The error and the one it came from, on one line (``ConnectError: [Errno 111] Connection refused``)."""
    first = f"{type(exc).__name__}: {exc}"
    root = exc.__cause__ or exc.__context__
    return first if root is None else f"{first} (from {type(root).__name__}: {root})"


def _unreachable(exc: BaseException) -> bool:
    """Whether the database did not answer (down, restarting, locked), as opposed to refusing the write."""
    return isinstance(exc, (OperationalError, InterfaceError)) or bool(getattr(exc, "connection_invalidated", False))


def _store(engine: Engine, closing: Closing, told: str | None, backoff: Backoff,
           waiting: Callable[[str | None], object] | None) -> Outcome:
    """Write the answer's final state, retrying while the database does not answer; what to tell the person."""
    notice = None if closing.failed else closing.fields.get("error")
    try:
        done = save(engine, closing, backoff, waiting)
    except Exception as exc:  # refused (not a database that is away): record the failure, with the text shown
        log.exception("could not store answer %s", closing.answer_id)
        if closing.failed:
            return Outcome(closing.answer_id, "failed", error=told or UNEXPECTED)
        told, stored = _describe(exc)
        closing, notice = _failed(closing, stored), None
        try:
            done = save(engine, closing, backoff, waiting)
        except Exception:
            log.exception("could not record the failure of answer %s", closing.answer_id)
            return Outcome(closing.answer_id, "failed", error=UNEXPECTED)
    finally:
        if waiting:
            waiting(None)
    if done is None:
        return Outcome(closing.answer_id, "unsaved", error=told, notice=notice, unsaved=closing)
    return Outcome(done.id, done.status, error=told if closing.failed else None, notice=notice, message=done)


def record(answer) -> dict:
    """The stored answer's columns from the assistant's :class:`~assistant.answer.Answer`: the one mapping."""
    return {
        "content": answer.text,
        # Every passage shown to the model, or listed under an abstention; ``cited`` marks what the text cites.
        "sources": [dataclasses.asdict(citation) for citation in answer.citations],
        "input_tokens": answer.input_tokens,
        "output_tokens": answer.output_tokens,
        "latency_ms": _int(answer.latency_ms),
        "ttft_ms": None if answer.ttft_ms is None else _int(answer.ttft_ms),
        "abstained": bool(answer.abstained),
        "band": answer.band,
        "answerer": answer.answerer,
        "model": answer.model,
        "prompt_version": answer.prompt_version,
        "index_version": answer.index_version,
        "error": answer.notice,  # the notice it came with (the full error is for the log)
        "interrupted": answer.incomplete,
    }


def _closing(answer_id: int, answer, question_id: int) -> tuple[Closing, str | None]:
    """The finished answer's final write (or, if the answerer gave up without any text, its failure's)."""
    if answer.error:  # the full error is for the log; the person gets the notice
        log.error("answering question %s: %s", question_id, answer.error)
    if answer.error and not answer.text:
        message = answer.notice or UNEXPECTED
        return _failure(answer_id, message, answer, None), message
    return Closing(answer_id, failed=False, fields=record(answer)), None


def _so_far(stream, deltas):
    """The answer record of a turn that stopped (its text so far and timings), if it had started.

    A stream stopped from outside (the page stopped reading it) records its answer once closed.
    """
    if stream is None:
        return None
    if getattr(stream, "answer", None) is None and hasattr(deltas, "close"):
        deltas.close()
    return getattr(stream, "answer", None)


def _failure(answer_id: int, error: str, answer, started: float | None, *, interrupted: bool = False) -> Closing:
    """A failed answer's final write: the error, and the text shown before it (if the turn had started)."""
    if answer is not None:
        timing = {"content": answer.text, "latency_ms": _int(answer.latency_ms),
                  "ttft_ms": None if answer.ttft_ms is None else _int(answer.ttft_ms)}
    else:
        timing = {"content": "", "ttft_ms": None,
                  "latency_ms": _int((time.perf_counter() - started) * 1000) if started is not None else None}
    return Closing(answer_id, failed=True, fields={"error": error, "interrupted": interrupted, **timing})


def _failed(closing: Closing, error: str) -> Closing:
    """A finished answer's write refused: its failure instead, with the text that was shown."""
    fields = closing.fields
    return Closing(closing.answer_id, failed=True,
                   fields={"error": error, "content": fields.get("content") or "",
                               "latency_ms": fields.get("latency_ms"), "ttft_ms": fields.get("ttft_ms")})


def _describe(exc: Exception) -> tuple[str, str]:
    """What to show the person, and what to store with the failed answer (the details are in the log)."""
    if isinstance(exc, EmbeddingError) or search_unreachable(exc):  # the provider's own message is for the operators
        return SEARCH_UNAVAILABLE, SEARCH_UNAVAILABLE
    if isinstance(exc, (AssistantError, store.FeedbackError)):
        return str(exc), str(exc)
    return UNEXPECTED, f"{UNEXPECTED} ({type(exc).__name__})"


def _int(value) -> int:
    return round(value)
