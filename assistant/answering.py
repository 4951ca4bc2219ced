"""Answer a new employee's question from the handbook, with citations: the chat's one entry point.

``Assistant.ask(question, history=..., where=...)`` returns an
:class:`~assistant.answer.AnswerStream`: iterate it for the answer's text as it
is produced, then read ``stream.answer`` (an :class:`~assistant.answer.Answer`:
the Markdown text with ``[n]`` markers, the citations they point to, whether the
assistant abstained, and what it cost). The assistant decides whether to
answer; its :class:`~assistant.answerers.Answerer` writes the answer. A
question runs:

1. *rewrite* (only when there is a history): the answerer may turn a follow-up
   into a standalone question (the generative one asks its model); when it
   does not, a question that leans on the conversation ("and in the UK?") is
   searched with the previous question joined (:mod:`assistant.followup`); the
   question is kept as typed;
2. *retrieve*: :meth:`KnowledgeBase.retrieve` finds the passages and judges
   whether they can answer;
3. *abstain* when they cannot, saying why and whom to ask (no model call),
   and listing the passages that came closest, if related at all (one per
   document, ``closest_on_abstain``, none cited);
4. *answer*: the answerer writes it from the passages,
   :class:`~assistant.answerers.extractive.ExtractiveAnswerer` (``extractive``,
   the default, offline) or
   :class:`~assistant.answerers.generative.GenerativeAnswerer` (``llm``, with
   the extractive one as its fallback). An answerer that finds no answer in
   the passages says so, and the assistant abstains as in 3, with its reason.

Everything known about the answer is kept in one
:class:`~assistant.answer.AnswerDraft`, which builds the ``Answer`` at the end
(also when the question failed or the caller stopped reading).
:meth:`Assistant.provenance` says, before a question is asked, what its answer
is meant to record (the answerer, its model and prompt version, the index
version).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field, SecretStr, model_validator

from assistant import followup
from assistant.answer import Answer, AnswerDraft, AnswerStream, citation, log_answer
from assistant.answerers import generative
from assistant.answerers.extractive import ExtractiveAnswerer
from assistant.errors import AssistantError
from assistant.keyword import Filter
from assistant.retrieval import KnowledgeBase, Retrieval

if TYPE_CHECKING:  # settings import this module: keep its import light
    from langchain_core.documents import Document
    from langchain_core.language_models import BaseChatModel

    from assistant.answerers import Answerer


log = logging.getLogger(__name__)


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


class Assistant:
    """Answers questions from a knowledge base, offline or with a chat model (see the module docstring).

    ``answerer`` replaces the one ``config.mode`` chooses (another strategy, or a test's).
    """

    def __init__(
        self,
        *,
        knowledge_base: KnowledgeBase,
        config: AnswerConfig,
        chat_model: BaseChatModel | None = None,
        answerer: Answerer | None = None,
    ) -> None:
        self.knowledge_base = knowledge_base
        self.config = config
        self.chat_model = chat_model
        self.answerer = answerer or self._answerer_for(config, chat_model)

    def _answerer_for(self, config: AnswerConfig, chat_model: BaseChatModel | None) -> Answerer:
        extractive = ExtractiveAnswerer(knowledge_base=self.knowledge_base, config=config)
        if config.mode == "extractive":
            return extractive
        if chat_model is None:
            raise AssistantError("Answer mode 'llm' needs a chat model: build the assistant with make_assistant().")
        return generative.GenerativeAnswerer(chat_model=chat_model, config=config, fallback=extractive)

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
        ``on_status`` is told, while the model keeps the answer waiting, what is
        happening (a sentence), and ``None`` when the first text comes.
        """
        return AnswerStream(lambda stream: self._run(stream, question, history, where, on_status))

    def answer(self, question: str, **kwargs) -> Answer:
        """:meth:`ask`, run to its end."""
        return self.ask(question, **kwargs).result()

    def provenance(self) -> dict:
        """What an answer is meant to record before it is written: ``answerer``, ``model``, ``prompt_version``
        and ``index_version``.

        The finished answer records what actually wrote it (a failing chat model
        falls back to the extractive answer). The index version is the one the
        knowledge base answers from now (re-checked every few seconds), not a
        read of the store.
        """
        answerer = self.answerer
        return {"answerer": answerer.name, "model": answerer.model, "prompt_version": answerer.prompt_version,
                "index_version": self.knowledge_base.version}

    def warm_up(self, *, limit: int = 1000) -> int:
        """Embed the quotable sentences of up to ``limit`` stored passages ahead of the first questions.

        Optional: a cold extractive answer embeds about ten sentences (tens of
        ms on a CPU), a warm one none. Call it in a background thread at
        start-up if first answers must be fast. Returns the number of sentences
        cached.
        """
        return self.answerer.warm_up(limit=limit)

    # -- one question ----------------------------------------------------------------------------

    def _run(self, stream: AnswerStream, question: str, history, where: Filter | None, on_status) -> Iterator[str]:
        draft = AnswerDraft(answerer=self.answerer.name, prompt_version=self.answerer.prompt_version,
                            on_status=on_status)
        try:
            yield from self._steps(draft, question, history, where)
            draft.done = True
        except Exception as exc:  # not a provider error (those are handled): record it, and let it through
            draft.error = draft.error or generative.describe(exc, draft.attempts)
            raise
        finally:
            stream.answer = draft.answer()
            log_answer(stream.answer, draft.done)

    def _steps(self, draft: AnswerDraft, question: str, history, where: Filter | None) -> Iterator[str]:
        standalone = self.answerer.rewrite(question, history, draft) if history else question
        if history and standalone == question:  # offline, or the model did not rewrite it: see assistant.followup
            retrieval = self._follow_up(question, history, where)
        else:
            retrieval = self.knowledge_base.retrieve(standalone, where=where)
        draft.retrieval = retrieval
        band = retrieval.answerability.band
        if band == "abstained" or not retrieval.documents:
            log.info("abstaining: %s", retrieval.answerability.reason)  # with its scores, for the admins
            yield from self._abstain(draft, retrieval.answerability.explanation, retrieval)
            return
        if band == "unsure":  # something related: quoted under a warning offline; a model reads it and decides
            log.info("unsure: %s", retrieval.answerability.reason)
        yield from self.answerer.write(standalone, retrieval, draft)
        if draft.no_answer is not None:
            yield from self._abstain(draft, draft.no_answer, retrieval)

    def _follow_up(self, question: str, history, where: Filter | None) -> Retrieval:
        """Retrieve for a question asked in a conversation: with the previous question too when it leans on it.

        The query it used is ``retrieval.query`` (a generated answer is asked that; quotes are chosen for the
        question as typed). A question that leans on the conversation is searched with the previous question
        joined; one that does not is searched alone, and joined only if alone it finds no answer and the joined
        search both can answer and mentions most of its words (:func:`followup.rescues`).
        """
        previous = followup.previous_question(history)
        if previous is None:
            return self.knowledge_base.retrieve(question, where=where)
        combined = followup.combined_query(question, previous)
        cue = followup.leans_on(question)
        if cue:
            log.info("follow-up (%s): searching %r", cue, combined)
            return self.knowledge_base.retrieve(combined, where=where)
        alone = self.knowledge_base.retrieve(question, where=where)
        if alone.answerable:
            return alone
        together = self.knowledge_base.retrieve(combined, where=where)
        if followup.rescues(question, answerable=together.answerable,
                            unmatched_terms=together.answerability.unmatched_terms):
            log.info("follow-up (no answer alone): searching %r", combined)
            return together
        return alone

    def _abstain(self, draft: AnswerDraft, reason: str, retrieval: Retrieval) -> Iterator[str]:
        """Say the passages do not answer, and who to ask; list the closest passages, none cited."""
        closest = self._closest(retrieval)
        draft.abstained = True
        if draft.notice:  # the model failed on the rewrite: there are no passages to show instead
            draft.notice = generative.UNAVAILABLE_SHORT
        draft.answerer = self.answerer.name
        draft.prompt_version = self.answerer.prompt_version
        draft.citations = [citation(n, doc, cited=False) for n, doc in enumerate(closest, 1)]
        reason = reason.rstrip(".")
        nearby = " The passages that came closest are listed below." if closest else ""
        yield draft.emit(f"The {self.config.source_name} doesn't seem to cover this: {reason}.{nearby} "
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
