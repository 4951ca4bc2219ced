"""The ways of writing an answer from retrieved passages, behind one small interface.

:class:`~assistant.answering.Assistant` decides *whether* to answer (it
retrieves, and abstains when the passages cannot answer); an :class:`Answerer`
writes the answer: :class:`~assistant.answerers.extractive.ExtractiveAnswerer`
quotes the passages' own sentences (offline, the default);
:class:`~assistant.answerers.generative.GenerativeAnswerer` asks a chat model,
grounded in the numbered passages, and falls back to the extractive answerer it
holds when the model fails. Another strategy plugs in with
``Assistant(..., answerer=...)``.

An answerer writes into the :class:`~assistant.answer.AnswerDraft` (its
citations, notices, token counts) and yields the text as it goes; one that finds
no answer in the passages sets ``draft.no_answer`` to the reason and writes
nothing, and the assistant abstains as it would have done itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from assistant.answer import AnswerDraft
    from assistant.retrieval import Retrieval


class Answerer(ABC):
    """One way of writing an answer (see the module docstring)."""

    #: What its answers record as ``Answer.answerer``.
    name: str
    #: The version of its prompt, or of its quote choice, recorded with its answers.
    prompt_version: str
    #: The model it asks (``None``: no model).
    model: str | None = None

    @abstractmethod
    def write(self, question: str, retrieval: Retrieval, draft: AnswerDraft) -> Iterator[str]:
        """Write the answer to ``question`` from ``retrieval``'s passages into ``draft``, yielding its text.

        ``question`` is what to answer: as typed, or as the model rewrote a
        follow-up. ``retrieval.query`` is what was searched, which for a
        follow-up searched with the previous question joins both.
        """

    def rewrite(self, question: str, history: Sequence[tuple[str, str]], draft: AnswerDraft) -> str:
        """A follow-up as a standalone question; unchanged unless the answerer has a model to ask.

        Unchanged, the assistant decides offline whether it leans on the
        conversation (:mod:`assistant.followup`).
        """
        return question

    def warm_up(self, *, limit: int) -> int:
        """Prepare for the first questions (optional); returns how many things were cached."""
        return 0
