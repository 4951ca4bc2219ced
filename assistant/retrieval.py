"""Hybrid retrieval over the knowledge base, and the decision to abstain.

``KnowledgeBase.retrieve`` embeds the question, asks Chroma (dense) and BM25
(keyword) for candidates under the same metadata filter, fuses the two ranked
lists with weighted reciprocal rank fusion, and returns the top passages as
LangChain documents together with an :class:`Answerability` verdict: when the
evidence is too weak the verdict says so, and why, so the chat can abstain
instead of quoting an unrelated passage.

:class:`HandbookRetriever` wraps it as a LangChain retriever for LCEL chains.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Literal

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import BaseModel, ConfigDict, Field

from assistant.errors import IndexEmpty
from assistant.keyword import Filter, KeywordIndex, chroma_where, tokenize
from assistant.store import PassageStore

Mode = Literal["hybrid", "dense", "keyword"]


class RetrievalConfig(BaseModel):
    """How passages are found and when the assistant abstains."""

    mode: Mode = "hybrid"
    k: int = Field(5, ge=1, le=50)
    #: Candidates taken from each index before fusion.
    candidates: int = Field(30, ge=1, le=500)
    #: ``score``: dense cosine plus ``keyword_weight`` x BM25 relative to the best BM25 hit;
    #: ``rrf``: weighted reciprocal rank fusion of the two ranked lists.
    fusion: Literal["score", "rrf"] = "score"
    keyword_weight: float = Field(0.1, ge=0.0, le=1.0)
    #: Share of the dense list in reciprocal rank fusion.
    dense_weight: float = Field(0.7, ge=0.0, le=1.0)
    rrf_k: int = Field(60, ge=1)
    #: Abstain when the answerability score falls below this.
    min_confidence: float = Field(0.5, ge=0.0, le=1.0)
    #: Seconds between checks for a newer index version.
    refresh_s: float = Field(5.0, ge=0.0)


@dataclass
class Answerability:
    """Whether the passages can answer the question, with the evidence for it."""

    answerable: bool
    confidence: float
    reason: str
    signals: dict[str, float] = field(default_factory=dict)


@dataclass
class Retrieval:
    """What the chat needs: passages with citation metadata, and the abstention verdict."""

    query: str
    documents: list[Document]
    answerability: Answerability
    index_version: int
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def answerable(self) -> bool:
        return self.answerability.answerable


@dataclass
class _Hit:
    id: str
    text: str
    metadata: dict
    dense: float | None = None
    keyword: float | None = None
    dense_rank: int | None = None
    keyword_rank: int | None = None
    fused: float = 0.0


class KnowledgeBase:
    """The index as the chat and ``onboard eval`` query it."""

    def __init__(self, store: PassageStore, embeddings, config: RetrievalConfig | None = None) -> None:
        self.store = store
        self.embeddings = embeddings
        self.config = config or RetrievalConfig()
        self._keyword: KeywordIndex | None = None
        self._version = -1
        self._checked = 0.0

    # -- indexes ---------------------------------------------------------------

    def refresh(self, force: bool = False) -> int:
        """Reload the keyword index when the stored index version has changed."""
        now = time.monotonic()
        if force or self._keyword is None or now - self._checked >= self.config.refresh_s:
            version = self.store.version
            self._checked = now
            if force or version != self._version or self._keyword is None:
                self._keyword = self._load_keyword_index()
                self._version = version
        return self._version

    def _load_keyword_index(self) -> KeywordIndex:
        ids: list[str] = []
        texts: list[str] = []
        metadatas: list[dict] = []
        page = 5000
        offset = 0
        while True:
            batch = self.store.collection.get(include=["documents", "metadatas"], limit=page, offset=offset)
            for cid, text, meta in zip(batch["ids"], batch["documents"], batch["metadatas"], strict=True):
                ids.append(cid)
                metadatas.append({**(meta or {}), "_text": text})
                texts.append(_index_text(meta or {}, text))
            if len(batch["ids"]) < page:
                break
            offset += page
        return KeywordIndex(ids, texts, metadatas)

    # -- searching --------------------------------------------------------------

    def retrieve(
        self, query: str, *, mode: Mode | None = None, k: int | None = None, where: Filter | None = None
    ) -> Retrieval:
        """The best ``k`` passages for ``query`` among those matching ``where``."""
        cfg = self.config
        mode = mode or cfg.mode
        k = k or cfg.k
        version = self.refresh()
        assert self._keyword is not None
        if len(self._keyword) == 0:
            raise IndexEmpty("The knowledge base is empty: run `onboard ingest PATH` first.")
        timings: dict[str, float] = {}
        start = time.perf_counter()
        hits: dict[str, _Hit] = {}
        if mode in ("hybrid", "dense"):
            vector = self.embeddings.embed_query(query)
            timings["embed_ms"] = (time.perf_counter() - start) * 1000
            self._dense(vector, max(cfg.candidates, k), where, hits)
            timings["dense_ms"] = (time.perf_counter() - start) * 1000 - timings["embed_ms"]
        mark = time.perf_counter()
        query_tokens = tokenize(query)
        if mode in ("hybrid", "keyword"):
            self._lexical(query_tokens, max(cfg.candidates, k), where, hits)
            timings["keyword_ms"] = (time.perf_counter() - mark) * 1000
        ranked = self._fuse(hits.values(), mode)
        top = _dedupe(ranked)[:k]
        verdict = self.judge(query_tokens, top, mode)
        timings["total_ms"] = (time.perf_counter() - start) * 1000
        return Retrieval(query, [_to_document(h, rank) for rank, h in enumerate(top, 1)], verdict, version, timings)

    def _dense(self, vector, n: int, where: Filter | None, hits: dict[str, _Hit]) -> None:
        result = self.store.collection.query(
            query_embeddings=[vector],
            n_results=n,
            where=chroma_where(where),
            include=["documents", "metadatas", "distances"],
        )
        rows = zip(result["ids"][0], result["documents"][0], result["metadatas"][0], result["distances"][0], strict=True)
        for rank, (cid, text, meta, distance) in enumerate(rows, 1):
            hit = hits.setdefault(cid, _Hit(cid, text, dict(meta or {})))
            hit.dense, hit.dense_rank = 1.0 - float(distance), rank

    def _lexical(self, tokens: list[str], n: int, where: Filter | None, hits: dict[str, _Hit]) -> None:
        index = self._keyword
        for rank, (position, score) in enumerate(index.search(tokens, n, where), 1):
            meta = dict(index.metadatas[position])
            text = meta.pop("_text")
            hit = hits.setdefault(index.ids[position], _Hit(index.ids[position], text, meta))
            hit.keyword, hit.keyword_rank = score, rank

    def _fuse(self, hits, mode: Mode) -> list[_Hit]:
        hits = list(hits)
        cfg = self.config
        if mode == "dense":
            for hit in hits:
                hit.fused = hit.dense if hit.dense is not None else -1.0
        elif mode == "keyword":
            for hit in hits:
                hit.fused = hit.keyword or 0.0
        elif cfg.fusion == "rrf":
            w = cfg.dense_weight
            for hit in hits:
                hit.fused = (w / (cfg.rrf_k + hit.dense_rank) if hit.dense_rank else 0.0) + (
                    (1 - w) / (cfg.rrf_k + hit.keyword_rank) if hit.keyword_rank else 0.0
                )
        else:
            best_keyword = max((h.keyword or 0.0 for h in hits), default=0.0) or 1.0
            # A passage only BM25 found is scored as the weakest dense candidate.
            floor = min((h.dense for h in hits if h.dense is not None), default=0.0)
            for hit in hits:
                dense = hit.dense if hit.dense is not None else floor
                hit.fused = dense + cfg.keyword_weight * (hit.keyword or 0.0) / best_keyword
        return sorted(hits, key=lambda h: h.fused, reverse=True)

    # -- abstention ---------------------------------------------------------------

    def judge(self, query_tokens: list[str], top: list[_Hit], mode: Mode) -> Answerability:
        """Decide whether ``top`` can answer the question (see ``docs/architecture.md``)."""
        if not top:
            return Answerability(False, 0.0, "no passage matches the question")
        signals = self.signals(query_tokens, top)
        confidence = _logistic(signals)
        if confidence >= self.config.min_confidence:
            return Answerability(True, confidence, "the passages match the question", signals)
        missing = signals.pop("_missing", "")
        reason = "the best passages are only loosely related to the question"
        if missing:
            reason += f"; nothing in them mentions: {missing}"
        return Answerability(False, confidence, reason, signals)

    def signals(self, query_tokens: list[str], top: list[_Hit]) -> dict:
        index = self._keyword
        dense = max((h.dense for h in top if h.dense is not None), default=0.0)
        terms = sorted(set(query_tokens))
        evidence = set()
        for hit in top:
            evidence.update(tokenize(_index_text(hit.metadata, hit.text)))
        weights = {t: index.idf(t) for t in terms}
        total = sum(weights.values()) or 1.0
        missing = [t for t in terms if t not in evidence]
        coverage = 1.0 - sum(weights[t] for t in missing) / total
        return {"dense": dense, "coverage": coverage, "_missing": ", ".join(missing[:5])}


def _logistic(signals: dict) -> float:
    z = 20.0 * (signals["dense"] - 0.6) + 4.0 * (signals["coverage"] - 0.5)
    return 1.0 / (1.0 + math.exp(-z))


def _index_text(meta: dict, text: str) -> str:
    heading = " > ".join(part for part in (meta.get("title", ""), meta.get("section", "")) if part)
    return f"{heading}\n\n{text}" if heading else text


def _dedupe(hits: list[_Hit]) -> list[_Hit]:
    seen: set[str] = set()
    unique = []
    for hit in hits:
        key = " ".join(hit.text.split())
        if key not in seen:
            seen.add(key)
            unique.append(hit)
    return unique


def _to_document(hit: _Hit, rank: int) -> Document:
    metadata = {
        **hit.metadata,
        "id": hit.id,
        "rank": rank,
        "score": hit.fused,
        "dense_score": hit.dense,
        "keyword_score": hit.keyword,
    }
    return Document(page_content=hit.text, metadata=metadata, id=hit.id)


class HandbookRetriever(BaseRetriever):
    """LangChain retriever over a :class:`KnowledgeBase` (usable in LCEL chains)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    knowledge_base: KnowledgeBase
    mode: Mode | None = None
    k: int | None = None
    where: dict | None = None

    def retrieve(self, query: str) -> Retrieval:
        return self.knowledge_base.retrieve(query, mode=self.mode, k=self.k, where=self.where)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return self.retrieve(query).documents
