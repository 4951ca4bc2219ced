"""What a question gets back, and the one place it is put together.

An :class:`Answer` is the reply: the Markdown text with ``[n]`` markers, the
:class:`Citation` each marker points to, whether the assistant abstained, what
produced the text and what it cost. :class:`AnswerStream` hands out the text as
it is written and then the answer.

While a question is being answered, everything known about its answer so far
(the text written, the passages, which answerer wrote it, token counts, a
notice, an error, when the first text came) is kept in one
:class:`AnswerDraft`; the assistant and its answerers write into it, and
:meth:`AnswerDraft.answer` builds the :class:`Answer` from it, also when the
answer was cut short by an error or by the caller. Nothing else builds one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from langchain_core.documents import Document
    from langchain_core.messages import BaseMessage

    from assistant.retrieval import Retrieval

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Citation:
    """The passage a ``[n]`` marker points to (``Answer.citations[n - 1]``)."""

    n: int
    source: str
    title: str
    section: str
    url: str | None
    chunk_id: str
    passage: str
    #: Whether the answer's text cites it (a generated answer keeps every passage it was shown).
    cited: bool = True


def citation(n: int, doc: Document, *, cited: bool = True) -> Citation:
    """Citation number ``n`` for a retrieved passage."""
    meta = doc.metadata
    return Citation(
        n=n,
        source=str(meta.get("source", "")),
        title=str(meta.get("title", "")),
        section=str(meta.get("section", "")),
        url=meta.get("url") or None,
        chunk_id=str(meta.get("id") or doc.id or ""),
        passage=doc.page_content,
        cited=cited,
    )


@dataclass
class Answer:
    """One reply, with what it rests on and what it cost.

    ``answerer`` names what produced the text: ``"llm"``, or ``"extractive"``
    (the offline default, and the fallback when the model failed; then
    ``error`` and ``notice`` are set and ``model`` names the model that failed).
    An abstention carries the assistant's own answerer. ``prompt_version`` is
    the prompt files' version for ``llm`` answers and
    :data:`~assistant.answerers.extractive.EXTRACTIVE_VERSION` for extractive
    ones. Token counts are the provider's own usage report (rewrite and answer
    calls added up), ``None`` when no model was called.
    """

    text: str  # Markdown with [n] citation markers that map to citations[n-1]
    citations: list[Citation]
    abstained: bool
    answerer: str  # "extractive" or "llm": what produced the text
    model: str | None
    prompt_version: str
    index_version: int
    input_tokens: int | None
    output_tokens: int | None
    latency_ms: float
    ttft_ms: float | None
    notice: str | None = None  # shown to the person, e.g. the model failed and this is the fallback
    error: str | None = None  # the full error, for the log; never shown raw
    retrieval: Retrieval | None = None
    #: The model did not finish the text: the stream broke, or it stopped at its length limit or content filter.
    incomplete: bool = False
    #: ``answered``, ``unsure`` (the closest passages, quoted under a warning that they may not answer) or
    #: ``abstained`` (nothing related: who to ask). See :mod:`assistant.answerability`.
    band: str = "answered"

    @property
    def cited(self) -> list[Citation]:
        """The citations the text refers to."""
        return [c for c in self.citations if c.cited]


class AnswerStream:
    """Iterate for the answer's text deltas; ``answer`` is set once the iteration ends.

    Single use. ``result()`` runs the stream to its end and returns the answer.
    """

    def __init__(self, run: Callable[[AnswerStream], Iterator[str]]) -> None:
        self.answer: Answer | None = None
        self._run = run
        self._started = False

    def __iter__(self) -> Iterator[str]:
        if self._started:
            raise RuntimeError("an AnswerStream can be iterated only once; read .answer")
        self._started = True
        return self._run(self)

    def result(self) -> Answer:
        if not self._started:
            for _ in self:
                pass
        if self.answer is None:
            raise RuntimeError("the answer is not finished: iterate the stream to its end first")
        return self.answer


@dataclass
class AnswerDraft:
    """The answer being written: the assistant and its answerers fill it in, :meth:`answer` builds the record."""

    #: What wrote the text (``Answer.answerer``) and the version of its prompt or quote choice.
    answerer: str
    prompt_version: str
    on_status: Callable[[str | None], object] | None = None
    start: float = field(default_factory=time.perf_counter)
    parts: list[str] = field(default_factory=list)
    first_at: float | None = None
    retrieval: Retrieval | None = None
    citations: list[Citation] = field(default_factory=list)
    abstained: bool = False
    band: str = "answered"
    #: The model that wrote the text, or that failed before the fallback wrote it.
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    notice: str | None = None
    error: str | None = None
    #: Set by an answerer that finds no answer in the passages (why not): the assistant then abstains.
    no_answer: str | None = None
    #: What the model reported about its reply: why it stopped, and what it declined to say.
    finish_reason: str | None = None
    refusal: str | None = None
    #: Tries of the current model call (for the error's description).
    attempts: int = 0
    incomplete: bool = False
    #: The answer was written to its end (not stopped by an error or by the caller).
    done: bool = False
    saying: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def emit(self, delta: str) -> str:
        """Add ``delta`` to the text, and return it for the stream."""
        if self.first_at is None:
            self.first_at = time.perf_counter()
            self.say(None)
        self.parts.append(delta)
        return delta

    def say(self, status: str | None) -> None:
        """Tell the caller what the answer is waiting for (``None``: nothing any more)."""
        if self.on_status is not None and status != self.saying:
            self.saying = status
            self.on_status(status)

    def observe(self, message: BaseMessage) -> None:
        """Take usage, model name, finish reason and refusal from a model's reply or a streamed chunk."""
        usage = getattr(message, "usage_metadata", None)
        if usage:
            self.input_tokens = (self.input_tokens or 0) + int(usage.get("input_tokens") or 0)
            self.output_tokens = (self.output_tokens or 0) + int(usage.get("output_tokens") or 0)
        meta = message.response_metadata or {}
        self.model = meta.get("model_name") or self.model
        self.finish_reason = meta.get("finish_reason") or self.finish_reason
        self.refusal = message.additional_kwargs.get("refusal") or self.refusal

    def answer(self) -> Answer:
        """The :class:`Answer` as it stands (an unfinished one says so in its ``error``)."""
        now = time.perf_counter()
        error = self.error
        if not self.done and error is None:
            error = "the turn did not finish (stopped by the caller or failed)"
        retrieval = self.retrieval
        return Answer(
            text=self.text,
            citations=self.citations,
            abstained=self.abstained,
            answerer=self.answerer,
            model=self.model if self.answerer == "llm" or self.error else None,
            prompt_version=self.prompt_version,
            index_version=retrieval.index_version if retrieval else -1,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            latency_ms=(now - self.start) * 1000,
            ttft_ms=(self.first_at - self.start) * 1000 if self.first_at is not None else None,
            notice=self.notice,
            error=error,
            retrieval=retrieval,
            incomplete=self.incomplete,
            band="abstained" if self.abstained else self.band,
        )


def log_answer(answer: Answer, done: bool) -> None:
    """One log line per answer: what wrote it, what it cites, how long it took, what it cost."""
    log.info(
        "answer: answerer=%s abstained=%s citations=%d cited=%d latency=%.0fms ttft=%s tokens=%s/%s%s",
        answer.answerer,
        answer.abstained,
        len(answer.citations),
        len(answer.cited),
        answer.latency_ms,
        f"{answer.ttft_ms:.0f}ms" if answer.ttft_ms is not None else "-",
        answer.input_tokens,
        answer.output_tokens,
        "" if done else " (unfinished)",
    )
