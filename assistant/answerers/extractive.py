"""The offline answer: the passages' own sentences, quoted with numbered citations.

:mod:`assistant.quotes` chooses the sentences (or table rows, or code blocks)
and lays them out; this answerer numbers the passages it quotes in order of
first appearance (an extractive answer cites only what it quotes), puts the
section's heading over each passage's quotes, and opens an answer in the
``unsure`` band with a warning that the quotes may not answer the question.
It needs no model and no network, and is the generative answerer's fallback.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from assistant import quotes
from assistant.answer import citation
from assistant.answerers import Answerer

if TYPE_CHECKING:
    from assistant.answer import AnswerDraft
    from assistant.answering import AnswerConfig
    from assistant.retrieval import KnowledgeBase, Retrieval

#: What an answer in the middle band starts with: the quotes that follow may not answer the question.
UNSURE = "I'm not sure the {source} answers this. The closest I found:"
#: Recorded as ``Answer.prompt_version`` of extractive answers: bump it when the sentence choice changes.
EXTRACTIVE_VERSION = "extractive-v8"
#: Why it abstains when the passages hold nothing it can quote.
NOTHING_TO_QUOTE = "the passages found contain no text that can be quoted"


class ExtractiveAnswerer(Answerer):
    """Quotes the passages' best sentences for the question (see the module docstring)."""

    name = "extractive"
    prompt_version = EXTRACTIVE_VERSION

    def __init__(self, *, knowledge_base: KnowledgeBase, config: AnswerConfig) -> None:
        self.knowledge_base = knowledge_base
        self.config = config
        self.unit_vectors = quotes.UnitVectors(
            knowledge_base.embeddings.embed_documents,
            in_context=getattr(knowledge_base.embeddings, "embed_in_context", None),
        )

    def write(self, question: str, retrieval: Retrieval, draft: AnswerDraft) -> Iterator[str]:
        """Quote for ``question`` as asked, even when a follow-up was searched with the previous question
        (``retrieval.query``), so the sentences answer what was asked now."""
        draft.band = retrieval.answerability.band
        documents = retrieval.documents
        vector = retrieval.query_vector
        if vector is None or retrieval.query != question:
            vector = self.knowledge_base.embeddings.embed_query(question)
        # A follow-up searched with the conversation: its top passage is the one the conversation points to.
        anchor = 0 if retrieval.query != question and documents else None
        chosen = quotes.choose(
            question, vector, documents, self.unit_vectors, max_units=self.config.max_sentences, anchor=anchor
        )
        if not chosen:
            draft.no_answer = NOTHING_TO_QUOTE
            return
        if draft.band == "unsure":
            yield draft.emit(UNSURE.format(source=self.config.source_name) + "\n\n")
        numbers: dict[int, int] = {}

        def marker(passage: int) -> str:
            return f"[{numbers.setdefault(passage, len(numbers) + 1)}]"

        def heading(passage: int) -> str:
            section = documents[passage].metadata.get("section") or documents[passage].metadata.get("title") or ""
            return f"**{section.split(' > ')[-1]}**" if section else ""

        pieces = quotes.layout(quotes.render(chosen, marker, heading))
        draft.answerer = self.name
        draft.prompt_version = self.prompt_version
        draft.citations = [citation(n, documents[p]) for p, n in sorted(numbers.items(), key=lambda item: item[1])]
        for piece in pieces:
            yield draft.emit(piece)

    def warm_up(self, *, limit: int = 1000) -> int:
        """Embed the quotable sentences of up to ``limit`` stored passages ahead of the first questions.

        A cold answer embeds about ten sentences (tens of ms on a CPU), a warm
        one none. Returns the number of sentences cached.
        """
        stored = self.knowledge_base.store.collection.get(include=["documents"], limit=limit)
        texts = [u.embedding_text for doc in stored["documents"] for u in quotes.split_passage(doc or "")]
        texts = list(dict.fromkeys(texts))[: self.unit_vectors.size]
        self.unit_vectors(texts)
        return len(texts)
