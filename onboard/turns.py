"""One chat turn, from a stored question to a stored answer, for any front end.

:func:`answer_turn` stores a ``pending`` answer recording how it will be made,
streams the assistant's answer through the writer the caller gives (the pages
get ``st.write_stream`` behind :func:`onboard.web.escaped`), and closes the answer as complete,
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
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlmodel import Session

from assistant.errors import AssistantError, EmbeddingError
from feedback import store
from feedback.models import Message

log = logging.getLogger(__name__)

UNEXPECTED = "Something went wrong while answering. Your question is saved: try again in a moment."
INTERRUPTED = "The answer was interrupted before it finished."
SEARCH_UNAVAILABLE = "The handbook search is not available right now. Your question is saved: try again in a moment."


@dataclass(frozen=True)
class Outcome:
    """How a turn ended: the stored answer (``None`` if none could be stored), its status, what to tell."""

    answer_id: int | None
    status: str
    error: str | None = None
    notice: str | None = None


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
                                          **_provenance(bot))
    except Exception as exc:
        log.exception("could not start answering question %s", question.id)
        return Outcome(None, "failed", error=_describe(exc)[0])
    clock = _Clock()
    try:
        stream = bot.ask(question.content, history=history, where=where, on_status=status)
        write(clock.record(stream))
        return _close(db, pending.id, stream.answer, clock, question.id)
    except Exception as exc:
        log.exception("answering question %s failed", question.id)
        message, stored = _describe(exc)
        _fail(db, pending.id, error=stored, clock=clock)
        return Outcome(pending.id, "failed", error=message)
    except BaseException:
        log.warning("answering question %s was interrupted", question.id)
        _fail(db, pending.id, error=INTERRUPTED, clock=clock, interrupted=True)
        raise


def _close(db, answer_id: int, result, clock: _Clock, question_id: int) -> Outcome:
    """Store the finished answer (or, if the answerer gave up without any text, its failure)."""
    if result.error:  # the full error is for the log; the person gets the notice
        log.error("answering question %s: %s", question_id, result.error)
    if result.error and not result.text:
        message = result.notice or UNEXPECTED
        _fail(db, answer_id, error=message, clock=clock)
        return Outcome(answer_id, "failed", error=message)
    with db() as session:
        done = store.finish_answer(
            session=session,
            answer_id=answer_id,
            content=result.text,
            # Every passage shown to the model, or listed under an abstention; ``cited`` marks what the text cites.
            sources=[dataclasses.asdict(citation) for citation in result.citations],
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
            latency_ms=_int(result.latency_ms) if result.latency_ms is not None else clock.latency_ms(),
            ttft_ms=_int(result.ttft_ms) if result.ttft_ms is not None else clock.ttft_ms(),
            abstained=bool(result.abstained),
            answerer=result.answerer,
            model=result.model,
            prompt_version=result.prompt_version,
            index_version=result.index_version,
            error=result.notice,
            interrupted=result.incomplete,
        )
    return Outcome(done.id, done.status, notice=result.notice)


def _provenance(bot) -> dict:
    """How the answer is meant to be made, recorded on the pending answer before it starts.

    ``finish_answer`` then records what actually made it (a failing chat model
    falls back to the extractive answer).
    """
    from assistant.answering import EXTRACTIVE_VERSION

    config = bot.config
    if config.mode == "llm":
        model = config.azure_deployment if config.azure_endpoint and config.azure_deployment else config.model
        info = {"answerer": "llm", "model": model, "prompt_version": config.prompt_version}
    else:
        info = {"answerer": "extractive", "prompt_version": EXTRACTIVE_VERSION}
    try:
        info["index_version"] = bot.knowledge_base.store.version
    except Exception:  # the answer itself will say whether the index is reachable
        log.warning("could not read the index version", exc_info=True)
    return info


def _describe(exc: Exception) -> tuple[str, str]:
    """What to show the person, and what to store with the failed answer (the details are in the log)."""
    if isinstance(exc, EmbeddingError):  # the provider's own message is for the operators
        return SEARCH_UNAVAILABLE, SEARCH_UNAVAILABLE
    if isinstance(exc, (AssistantError, store.FeedbackError)):
        return str(exc), str(exc)
    return UNEXPECTED, f"{UNEXPECTED} ({type(exc).__name__})"


def _fail(db, answer_id: int, *, error: str, clock: _Clock, interrupted: bool = False) -> None:
    try:
        with db() as session:
            store.fail_answer(session=session, answer_id=answer_id, error=error, content=clock.text(),
                              interrupted=interrupted, latency_ms=clock.latency_ms(), ttft_ms=clock.ttft_ms())
    except Exception:
        log.exception("could not record the failure of answer %s", answer_id)


class _Clock:
    """Keeps the text streamed so far and when its first piece arrived."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.first: float | None = None
        self.parts: list[str] = []

    def record(self, deltas: Iterable[str]) -> Iterator[str]:
        for delta in deltas:
            if self.first is None:
                self.first = time.perf_counter()
            self.parts.append(delta)
            yield delta

    def text(self) -> str:
        return "".join(self.parts)

    def latency_ms(self) -> int:
        return _int((time.perf_counter() - self.started) * 1000)

    def ttft_ms(self) -> int | None:
        return None if self.first is None else _int((self.first - self.started) * 1000)


def _int(value) -> int:
    return round(value)
