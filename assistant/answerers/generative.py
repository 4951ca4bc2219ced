"""The generated answer: a chat model writes it from the numbered passages, streamed, with the extractive one as fallback.

The model calls are LCEL chains (``prompt | chat_model``, prompts from
:mod:`assistant.prompting`); the answer around them is plain Python because
what it must do does not fit ``with_retry`` / ``with_fallbacks``: a stream may
be retried only until its first token has been shown, a failure after that
must end the stream with the text so far, and every path has to leave the same
record behind in the :class:`~assistant.answer.AnswerDraft`.

- *rewrite*: a follow-up becomes a standalone question (prompt
  ``rewrite-{version}.md``); when the model fails, the question is kept and the
  assistant searches as it would offline.
- *answer*: the model is asked the question as searched (``retrieval.query``:
  standalone, or a follow-up joined with the previous question), grounded in
  the passages numbered from 1 (prompt ``answer-{version}.md``). Every passage
  shown becomes a citation (``[n]`` is the n-th passage, ``Citation.cited``
  marks those the text cites): the text streamed already, so it cannot be
  renumbered afterwards. A reply ``NO_ANSWER: <what is missing>`` (prompt
  ``v2`` on) makes the assistant abstain with the model's reason; only a
  reply's start that could still become that marker is held back, any other
  answer streams as it comes.

Provider errors never reach the caller. Transient ones (timeout, connection,
429, 5xx) are retried ``max_retries`` times with exponential backoff and
jitter, honouring ``Retry-After``, within ``retry_budget_s`` for each model
call; the rest fail at once. When the model fails before writing anything (or
refuses, or is filtered, or replies with nothing) the extractive answerer it
holds writes the answer, with a notice for the person and the full error in
``Answer.error`` and the log. While it waits for the model it tells the caller
what it is doing ("Waiting for the language model…", "Trying again (2 of
3)…", then ``None`` once text flows). An answer the model did not finish (the
stream broke, or it hit the length limit or the content filter) is marked
``Answer.incomplete``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from tenacity import RetryCallState, Retrying, retry_if_exception, wait_exponential_jitter

from assistant import prompting
from assistant.answer import citation
from assistant.answerers import Answerer
from assistant.chat_model import model_name
from assistant.errors import AssistantError

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import BaseMessage

    from assistant.answer import AnswerDraft
    from assistant.answering import AnswerConfig
    from assistant.retrieval import Retrieval

log = logging.getLogger(__name__)

#: No try of a model call gets less time than this (or ``timeout_s`` if shorter): a retry without it is not made.
MIN_ATTEMPT_S = 1.0


class GenerativeAnswerer(Answerer):
    """A chat model writes the answer from the numbered passages (see the module docstring)."""

    name = "llm"

    def __init__(self, *, chat_model: BaseChatModel, config: AnswerConfig, fallback: Answerer) -> None:
        self.config = config
        self.fallback = fallback
        self.prompt_version = config.prompt_version
        self.model = model_name(config)
        self.answer_chain = prompting.load_prompt(config.answer_prompt, config.prompt_version) | chat_model
        self.rewrite_chain = prompting.load_prompt("rewrite", config.prompt_version) | chat_model

    def rewrite(self, question: str, history: Sequence[tuple[str, str]], draft: AnswerDraft) -> str:
        """The model's standalone version of a follow-up; the question unchanged when the model fails."""
        inputs = {"history": prompting.format_history(history), "question": question}
        draft.attempts = 1
        try:
            reply = self._with_retries(draft, lambda timeout: _timed(self.rewrite_chain, timeout).invoke(inputs))
        except Exception as exc:  # noqa: BLE001  (any provider failure: answer without the model)
            self._fail(draft, exc, classify(exc).notice)
            return question
        self._observe(draft, reply)
        standalone = prompting.clean_rewrite(str(reply.text), question)
        log.info("rewrote %r as %r", question, standalone)
        return standalone

    def write(self, question: str, retrieval: Retrieval, draft: AnswerDraft) -> Iterator[str]:
        if draft.error is None:  # (the model failed on the rewrite: it is not asked again)
            yield from self._generate(retrieval, draft)
            if draft.error is None or draft.text:
                return
        # The model failed before writing anything: quote instead.
        yield from self.fallback.write(question, retrieval, draft)

    def warm_up(self, *, limit: int = 1000) -> int:
        return self.fallback.warm_up(limit=limit)

    # -- the answer's stream ---------------------------------------------------------------------

    def _generate(self, retrieval: Retrieval, draft: AnswerDraft) -> Iterator[str]:
        documents = retrieval.documents
        inputs = {
            "passages": prompting.format_passages(documents),
            "question": retrieval.query,
            "contact": self.config.contact,
        }
        draft.attempts = 1
        draft.answerer = self.name
        draft.prompt_version = self.prompt_version
        draft.citations = [citation(n, doc) for n, doc in enumerate(documents, 1)]
        draft.finish_reason = draft.refusal = None
        try:
            chunks, pending = self._with_retries(draft, lambda timeout: self._open_stream(inputs, timeout))
        except Exception as exc:  # noqa: BLE001  (any provider failure before the first token: fall back)
            self._fail(draft, exc, classify(exc).notice)
            return
        held = ""  # the reply's start, held back while it may be the no-answer marker
        verdict: bool | None = None
        try:
            for chunk in _chain(pending, chunks):
                self._observe(draft, chunk)
                delta = _text(chunk)
                if not delta:
                    continue
                if verdict is False:
                    yield draft.emit(delta)
                    continue
                held += delta
                if verdict is None:
                    verdict = prompting.declares_no_answer(held)
                if verdict is False:
                    yield draft.emit(held)
            if verdict is None and held:
                yield draft.emit(held)
        except Exception as exc:  # noqa: BLE001  (the stream broke after the first token: keep what was said)
            if draft.text:
                self._fail(draft, exc, INTERRUPTED)
                draft.incomplete = True
            else:
                self._fail(draft, exc, classify(exc).notice)
        finally:
            close = getattr(chunks, "close", None)
            if close:
                close()
        if verdict and draft.error is None:
            missing = prompting.no_answer_reason(held)
            log.info("the model found no answer in the passages%s", f": {missing}" if missing else "")
            draft.no_answer = (f"the passages found say nothing about {missing}" if missing
                               else "the passages found do not answer it")
            return
        self._check_finish(draft)
        self._mark_cited(draft)

    def _open_stream(self, inputs: dict, timeout: float) -> tuple[Iterator[BaseMessage], list[BaseMessage]]:
        """Start the model's stream and read up to its first text, so a failure before it can be retried."""
        chunks = iter(_timed(self.answer_chain, timeout).stream(inputs))
        pending = []
        for chunk in chunks:
            pending.append(chunk)
            if _text(chunk):
                break
        return chunks, pending

    def _check_finish(self, draft: AnswerDraft) -> None:
        if draft.error is not None:
            return
        reason = draft.finish_reason
        if draft.refusal and not draft.text:
            self._fail(draft, AssistantError(f"the model refused: {draft.refusal}"), REFUSED_FALLBACK)
        elif draft.refusal:
            draft.notice = REFUSED
        elif reason == "content_filter":
            if draft.text:
                draft.notice, draft.incomplete = FILTERED_MIDWAY, True
            else:
                self._fail(draft, AssistantError("the content filter stopped the answer"), CONTENT_FILTER)
        elif reason == "length":
            draft.notice, draft.incomplete = CUT_SHORT, True
        elif not draft.text:
            self._fail(draft, AssistantError("the language model returned an empty answer"), UNAVAILABLE)

    def _mark_cited(self, draft: AnswerDraft) -> None:
        """Mark the passages the text cites; a text citing none of them, or a number with no passage, gets a notice."""
        used = prompting.cited_numbers(draft.text)
        draft.citations = [replace(c, cited=c.n in used) for c in draft.citations]
        if not draft.text.strip() or draft.notice or draft.error:
            return
        unknown = sorted(used - {c.n for c in draft.citations})
        if unknown:
            draft.notice = UNKNOWN_SOURCES.format(numbers=", ".join(f"[{n}]" for n in unknown))
        elif not used:
            draft.notice = UNCITED
        if draft.notice:
            log.warning("answer with unmatched citations: cited %s of %d passages", sorted(used), len(draft.citations))

    # -- the model's calls -----------------------------------------------------------------------

    def _observe(self, draft: AnswerDraft, message: BaseMessage) -> None:
        draft.observe(message)
        draft.model = draft.model or self.model

    def _fail(self, draft: AnswerDraft, exc: BaseException, notice: str) -> None:
        """Record a provider failure (with no text written yet, the fallback then writes the answer)."""
        draft.error = describe(exc, draft.attempts)
        draft.notice = notice
        draft.model = draft.model or self.model
        log.error("chat model failed: %s", draft.error, exc_info=exc)

    def _with_retries(self, draft: AnswerDraft, call: Callable[[float], object]):
        """``call(timeout)`` with retries, each try given at most what is left of ``retry_budget_s``."""
        cfg = self.config
        started = time.monotonic()

        def attempt():
            left = cfg.retry_budget_s - (time.monotonic() - started)
            return call(min(cfg.timeout_s, max(left, MIN_ATTEMPT_S)))

        draft.say(WAITING)
        return self._retrying(draft)(attempt)

    def _retrying(self, draft: AnswerDraft) -> Retrying:
        cfg = self.config

        def stop(state: RetryCallState) -> bool:
            if state.attempt_number >= cfg.max_retries + 1:
                return True
            waited = state.seconds_since_start or 0.0
            shortest_try = min(cfg.timeout_s, MIN_ATTEMPT_S)
            return waited + (state.upcoming_sleep or 0.0) + shortest_try > cfg.retry_budget_s

        def before_sleep(state) -> None:
            draft.attempts = state.attempt_number + 1
            draft.say(RETRYING.format(attempt=draft.attempts, attempts=cfg.max_retries + 1))
            log.warning(
                "chat model call failed (attempt %d of %d), retrying in %.2fs: %r",
                state.attempt_number,
                cfg.max_retries + 1,
                state.next_action.sleep if state.next_action else 0.0,
                state.outcome.exception() if state.outcome else None,
            )

        return Retrying(
            stop=stop,
            wait=backoff(cfg.retry_initial_s, cfg.retry_max_s),
            retry=retry_if_exception(lambda exc: classify(exc).retryable),
            before_sleep=before_sleep,
            reraise=True,
        )


def _timed(chain, timeout: float):
    """``chain`` (``prompt | chat_model``) with the model's timeout set for one call."""
    return chain.first | chain.last.bind(timeout=timeout)


def _text(message: BaseMessage) -> str:
    return str(message.text)


def _chain(first: list, rest: Iterator) -> Iterator:
    yield from first
    yield from rest


# -- errors -------------------------------------------------------------------------------------------

UNAVAILABLE = "The language model is not available right now; here are the most relevant passages."
CONTENT_FILTER = (
    "The language model's content filter blocked this request; here are the most relevant passages instead."
)
TOO_LONG = "The question and passages were too long for the language model; here are the most relevant passages."
INTERRUPTED = "The answer was interrupted before it was finished, so it may be incomplete."
FILTERED_MIDWAY = "The language model's content filter stopped this answer part-way, so it may be incomplete."
CUT_SHORT = "The answer reached the language model's length limit, so it may be incomplete."
REFUSED = "The language model declined to answer part of this question."
REFUSED_FALLBACK = "The language model declined to answer; here are the most relevant passages."
UNAVAILABLE_SHORT = "The language model is not available right now."
UNCITED = "This answer cites none of the passages below: check it against them before relying on it."
UNKNOWN_SOURCES = "This answer cites {numbers}, which match no passage below: check it against them before relying on it."
#: What the answerer says while it waits for the model (see ``Assistant.ask(on_status=...)``).
WAITING = "Waiting for the language model…"
RETRYING = "The language model did not answer; trying again ({attempt} of {attempts})…"


@dataclass(frozen=True)
class Failure:
    """A provider error sorted: may a retry help, and what to tell the person."""

    retryable: bool
    notice: str


def classify(exc: BaseException) -> Failure:
    """Sort an exception raised by a chat model call (LangChain's, the OpenAI SDK's, httpx's or Python's)."""
    import httpx
    import openai
    from langchain_core.exceptions import ContextOverflowError, ModelError

    if _is_content_filter(exc):
        return Failure(False, CONTENT_FILTER)
    if isinstance(exc, ContextOverflowError):
        return Failure(False, TOO_LONG)
    if isinstance(exc, ModelError):
        return Failure(exc.is_retryable, UNAVAILABLE)
    transient = (
        openai.APIConnectionError,  # includes APITimeoutError
        openai.RateLimitError,
        openai.InternalServerError,
        httpx.TransportError,
        TimeoutError,
        ConnectionError,
    )
    if isinstance(exc, transient):
        return Failure(True, UNAVAILABLE)
    if isinstance(exc, openai.APIStatusError):
        return Failure(exc.status_code == 408 or exc.status_code >= 500, UNAVAILABLE)
    return Failure(False, UNAVAILABLE)


def _is_content_filter(exc: BaseException) -> bool:
    code = getattr(exc, "code", None)
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        code = code or body.get("code") or (body.get("error") or {}).get("code")
    return code == "content_filter" or "content management policy" in str(exc)


def describe(exc: BaseException, attempts: int) -> str:
    """The full error for the log and the stored answer."""
    status = getattr(exc, "status_code", None)
    where = f" (HTTP {status})" if status else ""
    tries = f" after {attempts} attempt{'s' if attempts != 1 else ''}"
    return f"{type(exc).__module__}.{type(exc).__qualname__}{where}{tries}: {exc}"


def backoff(initial_s: float, max_s: float) -> Callable[[RetryCallState], float]:
    """Exponential backoff with jitter, or the server's ``Retry-After`` when that is longer (up to ``max_s``)."""
    exponential = wait_exponential_jitter(initial=initial_s, max=max_s, jitter=initial_s)

    def wait(state: RetryCallState) -> float:
        delay = exponential(state)
        exc = state.outcome.exception() if state.outcome else None
        after = retry_after_s(exc)
        return min(max(delay, after or 0.0), max_s)

    return wait


def retry_after_s(exc: BaseException | None) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    value = headers.get("retry-after-ms")
    try:
        if value is not None:
            return float(value) / 1000
        value = headers.get("retry-after")
        return float(value) if value is not None else None
    except ValueError:  # an HTTP date: rare, fall back to our own backoff
        return None
