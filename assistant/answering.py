"""Answer a new employee's question from the handbook, with citations: the chat's one entry point.

``Assistant.ask(question, history=..., where=...)`` returns an
:class:`AnswerStream`: iterate it for the answer's text as it is produced, then
read ``stream.answer`` (an :class:`Answer`: the Markdown text with ``[n]``
markers, the citations they point to, whether the assistant abstained, and what
it cost). A turn runs:

1. *rewrite* (only when there is a history): in ``llm`` mode the chat model turns
   a follow-up into a standalone question (prompt ``rewrite-{version}.md``);
   offline, or when the model is unavailable, a question that leans on the
   conversation ("and in the UK?") is searched with the previous question
   joined (:mod:`assistant.followup`); the question is kept as typed;
2. *retrieve*: :meth:`KnowledgeBase.retrieve` finds the passages and judges
   whether they can answer;
3. *abstain* when they cannot, saying why and whom to ask (no model call),
   and listing the passages that came closest, if related at all;
4. *answer*: ``extractive`` (the default, offline) quotes the passages' best
   sentences verbatim (:mod:`assistant.answerers.extractive`); ``llm`` streams
   an answer grounded in the numbered passages (prompt ``answer-{version}.md``,
   :mod:`assistant.answerers.generative`). A model that finds no answer in them
   replies ``NO_ANSWER: <what is missing>`` (prompt ``v2`` on): the turn then
   abstains as in 3, with the model's reason. Only a reply's start that could
   still become that marker is held back; any other answer streams as it comes.

The model calls are LCEL chains (``prompt | chat_model``); the turn around them
is plain Python because what it must do does not fit ``with_retry`` /
``with_fallbacks``: a stream may be retried only until its first token has been
shown, a failure after that must end the stream with the text so far, and every
path has to leave the same status record behind.

Provider errors never reach the caller. Transient ones (timeout, connection,
429, 5xx) are retried ``max_retries`` times with exponential backoff, within
``retry_budget_s`` for each model call; when the model stays unavailable the
turn falls back to the extractive answer with a notice for the person and the
full error in ``Answer.error`` and the log. While it waits for the model the
turn tells the caller what it is doing (``ask(..., on_status=...)``: "Waiting
for the language model…", "Trying again (2 of 3)…", then ``None`` once text
flows), so a front end can show it. An answer the model did not finish (the
stream broke, or it hit the length limit or the content filter) is marked
``Answer.incomplete``.

Citations: an extractive answer cites only the passages it quotes, numbered in
order of appearance. A generated answer numbers every passage shown to the
model (``[n]`` is the n-th passage), keeps them all in ``Answer.citations``, and
marks the ones the text cites with ``Citation.cited``; ``Answer.cited`` lists
those. The text streamed already, so it cannot be renumbered afterwards. An
abstention cites nothing: the closest passages it lists (one per document,
``closest_on_abstain``) are citations with ``cited`` false.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from tenacity import RetryCallState, Retrying, retry_if_exception

from assistant import followup
from assistant.answerers import extractive, generative
from assistant.errors import AssistantError
from assistant.keyword import Filter
from assistant.retrieval import KnowledgeBase, Retrieval

if TYPE_CHECKING:  # settings import this module: keep its import light
    from langchain_core.documents import Document
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import BaseMessage

log = logging.getLogger(__name__)

#: What an answer in the middle band starts with: the quotes that follow may not answer the question.
UNSURE = "I'm not sure the {source} answers this. The closest I found:"
#: Recorded as ``Answer.prompt_version`` of extractive answers: bump it when the sentence choice changes.
EXTRACTIVE_VERSION = "extractive-v8"
#: No try of a model call gets less time than this (or ``timeout_s`` if shorter): a retry without it is not made.
MIN_ATTEMPT_S = 1.0


class AnswerConfig(BaseModel):
    """How questions are answered (``ONBOARD_ANSWER__*``)."""

    mode: Literal["extractive", "llm"] = "extractive"
    #: An OpenAI-compatible endpoint (``http://localhost:11434/v1``); default: OpenAI's.
    base_url: str | None = None
    api_key: SecretStr | None = None
    model: str = "gpt-4o-mini"
    #: Azure OpenAI: set the endpoint, the deployment (default: ``model``) and the API version.
    azure_endpoint: str | None = None
    azure_deployment: str | None = None
    api_version: str | None = None
    timeout_s: float = Field(
        10.0, gt=0,
        description="Seconds to wait for the connection, for the first token and for each next piece of the "
                    "reply (default 10); a model silent for longer counts as a timeout.",
    )
    max_retries: int = Field(
        2, ge=0, le=10,
        description="Retries after a transient failure (timeout, connection, 429, 5xx) before the first token "
                    "(default 2), within retry_budget_s.",
    )
    retry_budget_s: float = Field(
        30.0, gt=0,
        description="Seconds one model call may take to start answering, all tries and waits included (default "
                    "30): each try gets at most what is left of it, so a hanging endpoint falls back to the "
                    "extractive answer after about this long.",
    )
    #: First backoff delay; it doubles on each retry (with jitter), up to ``retry_max_s``.
    retry_initial_s: float = Field(0.5, ge=0)
    retry_max_s: float = Field(8.0, ge=0)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    #: Prompt files ``assistant/prompts/answer-{version}.md`` and ``rewrite-{version}.md``.
    prompt_version: str = Field("v2", pattern=r"^[A-Za-z0-9._-]+$")
    #: What the passages are, in the answers' own words ("the handbook doesn't seem to cover this").
    source_name: str = "handbook"
    #: The answer prompt's file name before ``-{version}.md`` (the support bot has its own).
    answer_prompt: str = Field("answer", pattern=r"^[A-Za-z0-9._-]+$")
    #: Who to ask when the handbook does not answer.
    contact: str = "People Ops (#people-ops, people@northwind.example)"
    #: Extractive answers quote at most this many sentences (or table rows).
    max_sentences: int = Field(4, ge=1, le=20)
    #: When the assistant abstains, it lists up to this many passages closest to the question (one per
    #: document, none cited) for the person to check: a near miss on a covered topic still finds its page.
    closest_on_abstain: int = Field(3, ge=0, le=10)
    #: ... if the closest is at least this similar to the question (below, the passages are unrelated).
    closest_min_similarity: float = Field(0.3, ge=-1.0, le=1.0)

    @model_validator(mode="after")
    def _check_endpoint(self) -> AnswerConfig:
        if self.mode == "llm":
            if self.azure_endpoint and not self.api_version:
                raise ValueError("ONBOARD_ANSWER__API_VERSION is required with ONBOARD_ANSWER__AZURE_ENDPOINT")
            if not (self.base_url or self.azure_endpoint or self.api_key):
                raise ValueError(
                    "answer mode 'llm' needs ONBOARD_ANSWER__API_KEY, ONBOARD_ANSWER__BASE_URL "
                    "or ONBOARD_ANSWER__AZURE_ENDPOINT"
                )
        return self


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


@dataclass
class Answer:
    """One reply, with what it rests on and what it cost.

    ``answerer`` names what produced the text: ``"llm"``, or ``"extractive"``
    (the offline default, and the fallback when the model failed; then
    ``error`` and ``notice`` are set and ``model`` names the model that failed).
    An abstention carries the configured mode. ``prompt_version`` is the
    prompt files' version for ``llm`` answers and :data:`EXTRACTIVE_VERSION`
    for extractive ones. Token counts are the provider's own usage report
    (rewrite and answer calls added up), ``None`` when no model was called.
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


class Assistant:
    """Answers questions from a knowledge base, offline or with a chat model (see the module docstring)."""

    def __init__(
        self, *, knowledge_base: KnowledgeBase, config: AnswerConfig, chat_model: BaseChatModel | None = None
    ) -> None:
        self.knowledge_base = knowledge_base
        self.config = config
        self.chat_model = chat_model
        self._unit_vectors = extractive.UnitVectors(knowledge_base.embeddings.embed_documents)
        if config.mode == "llm":
            if chat_model is None:
                raise AssistantError("Answer mode 'llm' needs a chat model: build the assistant with make_assistant().")
            self.answer_chain = generative.load_prompt(config.answer_prompt, config.prompt_version) | chat_model
            self.rewrite_chain = generative.load_prompt("rewrite", config.prompt_version) | chat_model

    def ask(
        self,
        question: str,
        *,
        history: Sequence[tuple[str, str]] = (),
        where: Filter | None = None,
        on_status: Callable[[str | None], object] | None = None,
    ) -> AnswerStream:
        """Answer ``question``; nothing runs until the stream is iterated.

        ``history`` holds the conversation so far, oldest first, as ``(role,
        text)`` messages (roles ``user``/``assistant``, or ``human``/``ai``) or as
        ``(question, answer)`` pairs; it makes a follow-up ("and in the UK?")
        answerable: rewritten by the model in ``llm`` mode, searched with the
        previous question offline (:mod:`assistant.followup`). ``where`` restricts the passages, as in
        :meth:`KnowledgeBase.retrieve`. Provider errors end up in the answer,
        never raised; retrieval errors (e.g. an empty index) are raised.
        ``on_status`` is told, while the model keeps the turn waiting, what is
        happening (a sentence), and ``None`` when the first text comes.
        """
        return AnswerStream(lambda stream: self._turn(stream, question, history, where, on_status))

    def answer(self, question: str, **kwargs) -> Answer:
        """:meth:`ask`, run to its end."""
        return self.ask(question, **kwargs).result()

    def warm_up(self, *, limit: int = 1000) -> int:
        """Embed the quotable sentences of up to ``limit`` stored passages ahead of the first questions.

        Optional: a cold extractive turn embeds about ten sentences (tens of ms
        on a CPU), a warm one none. Call it in a background thread at start-up
        if first answers must be fast. Returns the number of sentences cached.
        """
        stored = self.knowledge_base.store.collection.get(include=["documents"], limit=limit)
        texts = [u.embedding_text for doc in stored["documents"] for u in extractive.split_passage(doc or "")]
        texts = list(dict.fromkeys(texts))[: self._unit_vectors.size]
        self._unit_vectors(texts)
        return len(texts)

    # -- one turn --------------------------------------------------------------------------------

    def _turn(self, stream: AnswerStream, question: str, history, where: Filter | None, on_status) -> Iterator[str]:
        turn = _Turn(self.config, on_status=on_status)
        try:
            yield from self._steps(turn, question, history, where)
            turn.done = True
        except Exception as exc:  # not a provider error (those are handled): record it, and let it through
            turn.error = turn.error or generative.describe(exc, turn.attempts)
            raise
        finally:
            stream.answer = turn.answer()
            _log_turn(stream.answer, turn.done)

    def _steps(self, turn: _Turn, question: str, history, where: Filter | None) -> Iterator[str]:
        llm = self.config.mode == "llm"
        standalone = question
        if llm and history:
            standalone = self._rewrite(turn, question, history)
        rewritten = standalone != question
        if history and not rewritten:  # offline, or the model did not rewrite it: see assistant.followup
            retrieval, standalone = self._follow_up(question, history, where)
        else:
            retrieval = self.knowledge_base.retrieve(standalone, where=where)
        turn.retrieval = retrieval
        band = retrieval.answerability.band
        if band == "abstained" or not retrieval.documents:
            log.info("abstaining: %s", retrieval.answerability.reason)  # with its scores, for the admins
            yield from self._abstain(turn, retrieval.answerability.explanation, closest=self._closest(retrieval))
            return
        if band == "unsure":  # something related: quoted under a warning offline; a model reads it and decides
            log.info("unsure: %s", retrieval.answerability.reason)
        if llm and turn.error is None:
            yield from self._generate(turn, standalone, retrieval)
            if turn.fallback:
                turn.band = band
                yield from self._extract(turn, standalone if rewritten else question, retrieval)
        else:
            turn.band = band
            yield from self._extract(turn, standalone if rewritten else question, retrieval)

    def _follow_up(self, question: str, history, where: Filter | None) -> tuple[Retrieval, str]:
        """Retrieve for a question asked in a conversation: with the previous question too when it leans on it.

        Returns the retrieval and the query it used (a generated answer is asked that; quotes are chosen for the
        question as typed). A question that leans on the conversation is searched with the previous question
        joined; one that does not is searched alone, and joined only if alone it finds no answer and the joined
        search both can answer and mentions most of its words (:func:`followup.rescues`).
        """
        previous = followup.previous_question(history)
        if previous is None:
            return self.knowledge_base.retrieve(question, where=where), question
        combined = followup.combined_query(question, previous)
        cue = followup.leans_on(question)
        if cue:
            log.info("follow-up (%s): searching %r", cue, combined)
            return self.knowledge_base.retrieve(combined, where=where), combined
        alone = self.knowledge_base.retrieve(question, where=where)
        if alone.answerable:
            return alone, question
        together = self.knowledge_base.retrieve(combined, where=where)
        if followup.rescues(question, answerable=together.answerable,
                            unmatched_terms=together.answerability.unmatched_terms):
            log.info("follow-up (no answer alone): searching %r", combined)
            return together, combined
        return alone, question

    def _abstain(self, turn: _Turn, reason: str, closest: Sequence[Document] = ()) -> Iterator[str]:
        """Say the passages do not answer, and who to ask; list the ``closest`` passages, none cited."""
        turn.abstained = True
        if turn.notice:  # the model failed on the rewrite: there are no passages to show instead
            turn.notice = generative.UNAVAILABLE_SHORT
        turn.answerer = self.config.mode
        turn.prompt_version = self.config.prompt_version if self.config.mode == "llm" else EXTRACTIVE_VERSION
        turn.citations = [replace(_citation(n, doc), cited=False) for n, doc in enumerate(closest, 1)]
        reason = reason.rstrip(".")
        nearby = " The passages that came closest are listed below." if closest else ""
        yield turn.emit(f"The {self.config.source_name} doesn't seem to cover this: {reason}.{nearby} "
                        f"Please ask {self.config.contact}.")

    def _closest(self, retrieval: Retrieval) -> list[Document]:
        """The best passage of each of the first ``closest_on_abstain`` documents, if related enough to show."""
        similarity = retrieval.answerability.signals.get("similarity")
        if similarity is None or similarity < self.config.closest_min_similarity:
            return []
        best: dict[str, Document] = {}
        for doc in retrieval.documents:
            best.setdefault(str(doc.metadata.get("source", "")), doc)
        return list(best.values())[: self.config.closest_on_abstain]

    # -- extractive ------------------------------------------------------------------------------

    def _extract(self, turn: _Turn, question: str, retrieval: Retrieval) -> Iterator[str]:
        """Quote the passages' best sentences for ``question``: as typed, even when a follow-up was searched with
        the previous question (``retrieval.query``), so the sentences answer what was asked now."""
        documents = retrieval.documents
        vector = retrieval.query_vector
        if vector is None or retrieval.query != question:
            vector = self.knowledge_base.embeddings.embed_query(question)
        # A follow-up searched with the conversation: its top passage is the one the conversation points to.
        anchor = 0 if retrieval.query != question and documents else None
        chosen = extractive.choose(
            question, vector, documents, self._unit_vectors, max_units=self.config.max_sentences, anchor=anchor
        )
        if not chosen:
            yield from self._abstain(turn, "the passages found contain no text that can be quoted",
                                     closest=self._closest(retrieval))
            return
        if turn.band == "unsure":
            yield turn.emit(UNSURE.format(source=self.config.source_name) + "\n\n")
        numbers: dict[int, int] = {}

        def marker(passage: int) -> str:
            return f"[{numbers.setdefault(passage, len(numbers) + 1)}]"

        def heading(passage: int) -> str:
            section = documents[passage].metadata.get("section") or documents[passage].metadata.get("title") or ""
            return f"**{section.split(' > ')[-1]}**" if section else ""

        pieces = extractive.layout(extractive.render(chosen, marker, heading))
        turn.answerer = "extractive"
        turn.prompt_version = EXTRACTIVE_VERSION
        turn.citations = [_citation(n, documents[p]) for p, n in sorted(numbers.items(), key=lambda item: item[1])]
        for piece in pieces:
            yield turn.emit(piece)

    # -- generated -------------------------------------------------------------------------------

    def _with_retries(self, turn: _Turn, call: Callable[[float], object]):
        """``call(timeout)`` with retries, each try given at most what is left of ``retry_budget_s``."""
        cfg = self.config
        started = time.monotonic()

        def attempt():
            left = cfg.retry_budget_s - (time.monotonic() - started)
            return call(min(cfg.timeout_s, max(left, MIN_ATTEMPT_S)))

        turn.say(generative.WAITING)
        return self._retrying(turn)(attempt)

    def _retrying(self, turn: _Turn) -> Retrying:
        cfg = self.config

        def stop(state: RetryCallState) -> bool:
            if state.attempt_number >= cfg.max_retries + 1:
                return True
            waited = state.seconds_since_start or 0.0
            shortest_try = min(cfg.timeout_s, MIN_ATTEMPT_S)
            return waited + (state.upcoming_sleep or 0.0) + shortest_try > cfg.retry_budget_s

        def before_sleep(state) -> None:
            turn.attempts = state.attempt_number + 1
            turn.say(generative.RETRYING.format(attempt=turn.attempts, attempts=cfg.max_retries + 1))
            log.warning(
                "chat model call failed (attempt %d of %d), retrying in %.2fs: %r",
                state.attempt_number,
                cfg.max_retries + 1,
                state.next_action.sleep if state.next_action else 0.0,
                state.outcome.exception() if state.outcome else None,
            )

        return Retrying(
            stop=stop,
            wait=generative.backoff(cfg.retry_initial_s, cfg.retry_max_s),
            retry=retry_if_exception(lambda exc: generative.classify(exc).retryable),
            before_sleep=before_sleep,
            reraise=True,
        )

    def _rewrite(self, turn: _Turn, question: str, history) -> str:
        inputs = {"history": generative.format_history(history), "question": question}
        turn.attempts = 1
        try:
            reply = self._with_retries(turn, lambda timeout: _timed(self.rewrite_chain, timeout).invoke(inputs))
        except Exception as exc:  # noqa: BLE001  (any provider failure: answer without the model)
            turn.fail(exc, generative.classify(exc).notice)
            return question
        turn.observe(reply)
        standalone = generative.clean_rewrite(str(reply.text), question)
        log.info("rewrote %r as %r", question, standalone)
        return standalone

    def _generate(self, turn: _Turn, question: str, retrieval: Retrieval) -> Iterator[str]:
        documents = retrieval.documents
        inputs = {
            "passages": generative.format_passages(documents),
            "question": question,
            "contact": self.config.contact,
        }
        turn.attempts = 1
        turn.answerer = "llm"
        turn.prompt_version = self.config.prompt_version
        turn.citations = [_citation(n, doc) for n, doc in enumerate(documents, 1)]
        turn.finish_reason = turn.refusal = None
        try:
            chunks, pending = self._with_retries(turn, lambda timeout: self._open_stream(inputs, timeout))
        except Exception as exc:  # noqa: BLE001  (any provider failure before the first token: fall back)
            turn.fail(exc, generative.classify(exc).notice)
            return
        held = ""  # the reply's start, held back while it may be the no-answer marker
        verdict: bool | None = None
        try:
            for chunk in _chain(pending, chunks):
                turn.observe(chunk)
                delta = _text(chunk)
                if not delta:
                    continue
                if verdict is False:
                    yield turn.emit(delta)
                    continue
                held += delta
                if verdict is None:
                    verdict = generative.declares_no_answer(held)
                if verdict is False:
                    yield turn.emit(held)
            if verdict is None and held:
                yield turn.emit(held)
        except Exception as exc:  # noqa: BLE001  (the stream broke after the first token: keep what was said)
            if turn.text:
                turn.fail(exc, generative.INTERRUPTED, fallback=False)
                turn.incomplete = True
            else:
                turn.fail(exc, generative.classify(exc).notice)
        finally:
            close = getattr(chunks, "close", None)
            if close:
                close()
        if verdict and turn.error is None:
            yield from self._model_abstains(turn, held, retrieval)
            return
        self._check_finish(turn)
        turn.mark_cited()

    def _model_abstains(self, turn: _Turn, reply: str, retrieval: Retrieval) -> Iterator[str]:
        """The model found no answer in the passages: abstain as retrieval would, with the model's reason."""
        missing = generative.no_answer_reason(reply)
        log.info("the model found no answer in the passages%s", f": {missing}" if missing else "")
        reason = f"the passages found say nothing about {missing}" if missing else "the passages found do not answer it"
        yield from self._abstain(turn, reason, closest=self._closest(retrieval))

    def _open_stream(self, inputs: dict, timeout: float) -> tuple[Iterator[BaseMessage], list[BaseMessage]]:
        """Start the model's stream and read up to its first text, so a failure before it can be retried."""
        chunks = iter(_timed(self.answer_chain, timeout).stream(inputs))
        pending = []
        for chunk in chunks:
            pending.append(chunk)
            if _text(chunk):
                break
        return chunks, pending

    def _check_finish(self, turn: _Turn) -> None:
        if turn.error is not None:
            return
        reason = turn.finish_reason
        if turn.refusal and not turn.text:
            turn.fail(AssistantError(f"the model refused: {turn.refusal}"), generative.REFUSED_FALLBACK)
        elif turn.refusal:
            turn.notice = generative.REFUSED
        elif reason == "content_filter":
            if turn.text:
                turn.notice, turn.incomplete = generative.FILTERED_MIDWAY, True
            else:
                turn.fail(AssistantError("the content filter stopped the answer"), generative.CONTENT_FILTER)
        elif reason == "length":
            turn.notice, turn.incomplete = generative.CUT_SHORT, True
        elif not turn.text:
            turn.fail(AssistantError("the language model returned an empty answer"), generative.UNAVAILABLE)


# -- the record of one turn -------------------------------------------------------------------------


@dataclass
class _Turn:
    config: AnswerConfig
    start: float = field(default_factory=time.perf_counter)
    parts: list[str] = field(default_factory=list)
    first_at: float | None = None
    retrieval: Retrieval | None = None
    citations: list[Citation] = field(default_factory=list)
    abstained: bool = False
    band: str = "answered"
    answerer: str = "extractive"
    model: str | None = None
    prompt_version: str = EXTRACTIVE_VERSION
    input_tokens: int | None = None
    output_tokens: int | None = None
    notice: str | None = None
    error: str | None = None
    finish_reason: str | None = None
    refusal: str | None = None
    attempts: int = 0
    fallback: bool = False
    incomplete: bool = False
    done: bool = False
    on_status: Callable[[str | None], object] | None = None
    saying: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def emit(self, delta: str) -> str:
        if self.first_at is None:
            self.first_at = time.perf_counter()
            self.say(None)
        self.parts.append(delta)
        return delta

    def say(self, status: str | None) -> None:
        """Tell the caller what the turn is waiting for (``None``: nothing any more)."""
        if self.on_status is not None and status != self.saying:
            self.saying = status
            self.on_status(status)

    def observe(self, message: BaseMessage) -> None:
        """Take usage, model name, finish reason and refusal from a reply or a streamed chunk."""
        usage = getattr(message, "usage_metadata", None)
        if usage:
            self.input_tokens = (self.input_tokens or 0) + int(usage.get("input_tokens") or 0)
            self.output_tokens = (self.output_tokens or 0) + int(usage.get("output_tokens") or 0)
        meta = message.response_metadata or {}
        self.model = meta.get("model_name") or self.model or _configured_model(self.config)
        self.finish_reason = meta.get("finish_reason") or self.finish_reason
        self.refusal = message.additional_kwargs.get("refusal") or self.refusal

    def fail(self, exc: BaseException, notice: str, *, fallback: bool = True) -> None:
        """Record a provider failure; with ``fallback`` the extractive answer follows."""
        self.error = generative.describe(exc, self.attempts)
        self.notice = notice
        self.fallback = fallback
        self.model = self.model or _configured_model(self.config)
        log.error("chat model failed: %s", self.error, exc_info=exc)

    def mark_cited(self) -> None:
        """Mark the passages the text cites; a text citing none of them, or a number with no passage, gets a notice."""
        used = generative.cited_numbers(self.text)
        self.citations = [replace(c, cited=c.n in used) for c in self.citations]
        if not self.text.strip() or self.notice or self.error:
            return
        unknown = sorted(used - {c.n for c in self.citations})
        if unknown:
            self.notice = generative.UNKNOWN_SOURCES.format(numbers=", ".join(f"[{n}]" for n in unknown))
        elif not used:
            self.notice = generative.UNCITED
        if self.notice:
            log.warning("answer with unmatched citations: cited %s of %d passages", sorted(used), len(self.citations))

    def answer(self) -> Answer:
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


# -- helpers ------------------------------------------------------------------------------------------


def _citation(n: int, doc) -> Citation:
    meta = doc.metadata
    return Citation(
        n=n,
        source=str(meta.get("source", "")),
        title=str(meta.get("title", "")),
        section=str(meta.get("section", "")),
        url=meta.get("url") or None,
        chunk_id=str(meta.get("id") or doc.id or ""),
        passage=doc.page_content,
    )


def _timed(chain, timeout: float):
    """``chain`` (``prompt | chat_model``) with the model's timeout set for one call."""
    return chain.first | chain.last.bind(timeout=timeout)


def _text(message: BaseMessage) -> str:
    return str(message.text)


def _chain(first: list, rest: Iterator) -> Iterator:
    yield from first
    yield from rest


def _configured_model(config: AnswerConfig) -> str:
    if config.azure_endpoint and config.azure_deployment:
        return config.azure_deployment
    return config.model


def _log_turn(answer: Answer, done: bool) -> None:
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


def make_chat_model(config: AnswerConfig) -> BaseChatModel:
    """The chat model for ``mode == "llm"``: OpenAI or any compatible endpoint, or Azure OpenAI.

    Streaming, with the usage report requested (a custom ``base_url`` sends it
    only when asked), and no retries of its own: :class:`Assistant` retries.
    """
    common = {
        "model": config.model,
        "temperature": config.temperature,
        "timeout": config.timeout_s,
        "max_retries": 0,
        "streaming": True,
        "stream_usage": True,
    }
    if config.azure_endpoint:
        from langchain_openai import AzureChatOpenAI

        return AzureChatOpenAI(
            azure_endpoint=config.azure_endpoint,
            azure_deployment=config.azure_deployment or config.model,
            api_version=config.api_version,
            api_key=config.api_key,
            **common,
        )
    from langchain_openai import ChatOpenAI

    # Local OpenAI-compatible servers accept any key, but the client insists on one.
    api_key = config.api_key or (SecretStr("not-needed") if config.base_url else None)
    return ChatOpenAI(base_url=config.base_url, api_key=api_key, **common)
