"""Hybrid retrieval over the knowledge base, and the decision to abstain.

``KnowledgeBase.retrieve`` embeds the question, asks Chroma (dense) and BM25
(keyword) for candidates under the same metadata filter, fuses the two lists,
and returns the top passages as LangChain documents together with an
:class:`~assistant.answerability.Answerability` verdict: its band says whether
the passages answer the question, are only related to it, or are unrelated
(judged against the corpus's own baseline, recorded at ingest), and why, so the
chat can mark a possibly relevant passage as such, or abstain instead of
quoting an unrelated one.

Search keys: a passage's one vector averages everything it says, so a
question about one of its sentences, or one row of its table, matches it
weakly. Each passage's keys (see :func:`assistant.chunking.search_keys`) are
searched too, and a passage's dense score is the best of its own and its
keys'. Measured on the 18F development set, against the passage vectors alone:
recall@5 0.95 to 0.9625, MRR 0.8635 to 0.8525 (recall@1 0.80 to 0.775), and
the top passage's similarity separates the unanswerable questions better
(AUC 0.772 to 0.818; abstaining on 60% of them instead of 33% while answering
90%; leave-one-out threshold: 9 of 15 instead of 5). Paragraph keys gave 8 of
15, table rows alone nothing on 18F; the sample handbook's questions separate
no better (AUC 0.58 either way). Keys found "Who do I ask about my laptop?"
its answer, a row of a who-to-ask table, which the table's passage vector
ranked below the top 10.

Fusion: plain reciprocal rank fusion lets keyword hits pull paraphrased
questions down (measured on the 18F set: below dense alone), so the default
adds the BM25 score, relative to the best BM25 hit, to the cosine similarity
with a small weight: keywords break ties between semantically close passages
instead of overruling them. Weighted RRF remains available (``fusion="rrf"``).

:class:`HandbookRetriever` wraps it as a LangChain retriever for LCEL chains.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import BaseModel, ConfigDict, Field

from assistant.answerability import AbstentionConfig, Answerability, judge
from assistant.chunking import passage_text
from assistant.errors import IndexEmpty, SearchUnavailable, search_unreachable
from assistant.keyword import Filter, KeywordIndex, chroma_where, matches, tokenize
from assistant.vectors import PassageStore, baseline_of, key_id, key_passage

Mode = Literal["hybrid", "dense", "keyword"]
#: Keys of a passage found by keywords alone compared with the question (an 18F passage has at most 23).
MAX_KEYS_JUDGED = 128

log = logging.getLogger(__name__)


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
    abstention: AbstentionConfig = AbstentionConfig()
    #: Seconds between checks for a newer index version.
    refresh_s: float = Field(5.0, ge=0.0)


@dataclass
class Retrieval:
    """What the chat needs: passages with citation metadata, and the abstention verdict."""

    query: str
    documents: list[Document]
    answerability: Answerability
    index_version: int
    timings_ms: dict[str, float] = field(default_factory=dict)
    #: The query's embedding, for answerers that compare it with passage sentences.
    query_vector: np.ndarray | None = None

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


@dataclass(frozen=True)
class _Index:
    """One consistent view of the stored index, which a turn uses from start to end.

    Concurrent turns share the knowledge base; a refresh builds a new view and
    swaps it in with one assignment, so no turn ever mixes one version's
    collections or keyword index with another's (issue #17: a turn read
    passage ids as key ids while another turn swapped the collections).
    """

    version: int
    passages: object
    keys: object
    keyword: KeywordIndex
    #: Whether the index has search keys (an index built before them has none until re-indexed).
    has_keys: bool
    #: The corpus's abstention baseline, recorded with this version (``None``: not measured).
    baseline: float | None = None


class KnowledgeBase:
    """The index as the chat and ``onboard eval`` query it; safe to share between threads."""

    def __init__(self, store: PassageStore, embeddings, config: RetrievalConfig | None = None) -> None:
        self.store = store
        self.embeddings = embeddings
        self.config = config or RetrievalConfig()
        self._index: _Index | None = None
        self._checked = 0.0
        self._refreshing = threading.Lock()

    # -- indexes ---------------------------------------------------------------

    @property
    def version(self) -> int | None:
        """The index version the next question will be answered from (``None`` before the first load)."""
        index = self._index
        return index.version if index is not None else None

    def refresh(self, force: bool = False) -> int:
        """Follow the stored index when its version has changed (checked at most every ``refresh_s``).

        The keyword index is rebuilt, and a local Chroma folder is reopened so
        the vector search sees what another process indexed or removed.
        """
        return self._current(force).version

    def _current(self, force: bool = False) -> _Index:
        """The view to answer from: the one held, or a new one if the stored index changed.

        One thread checks and rebuilds at a time; the others keep answering from
        the view they have meanwhile (and wait only when there is none yet).
        """
        index = self._index
        if not force and index is not None and time.monotonic() - self._checked < self.config.refresh_s:
            return index
        if index is None or force:
            self._refreshing.acquire()
        elif not self._refreshing.acquire(blocking=False):
            return index  # another thread is checking: answer from the view we have
        try:
            index = self._index
            if not force and index is not None and time.monotonic() - self._checked < self.config.refresh_s:
                return index  # refreshed by another thread while this one waited
            passages, keys, version = self.store.current()
            self._checked = time.monotonic()
            if force or index is None or version != index.version:
                if index is not None and version != index.version and self.store.reopen():
                    passages, keys, version = self.store.current()
                keyword = self._load_keyword_index(passages)
                has_keys = keys.count() > 0
                if not has_keys and len(keyword):
                    log.warning(
                        "the index %r has no search keys (it was built before they existed, or with "
                        "ONBOARD_INGEST__KEY_SENTENCES=0, or its passages are too short to have any): the "
                        "abstention threshold was calibrated with them; `onboard ingest --rebuild PATH...` "
                        "adds them", self.store.name)
                baseline = baseline_of(passages)
                if baseline is None and len(keyword) and self.config.abstention.min_similarity is None:
                    log.warning(
                        "the index %r has no abstention baseline (it was built before baselines existed, or "
                        "its documents have too few headings): the 18F handbook's stands in; "
                        "`onboard ingest PATH...` measures it", self.store.name)
                index = _Index(version, passages, keys, keyword, has_keys, baseline)
                self._index = index
            return index
        finally:
            self._refreshing.release()

    def warm_up(self) -> None:
        """Load the keyword index and run the embedding model once, so the first question pays for neither.

        Loading the index reads every chunk from the store (0.4 s for the 3,000
        chunks of the 18F handbook); the model's first run allocates its buffers.
        """
        self.refresh(force=True)
        try:
            self.embeddings.embed_query("warm up")
        except Exception:  # an embeddings endpoint that is down: the first question will say so
            log.warning("could not warm up the embedding model", exc_info=True)

    def _load_keyword_index(self, passages) -> KeywordIndex:
        ids: list[str] = []
        texts: list[str] = []
        metadatas: list[dict] = []
        page = 5000
        offset = 0
        while True:
            batch = passages.get(include=["documents", "metadatas"], limit=page, offset=offset)
            for cid, text, meta in zip(batch["ids"], batch["documents"], batch["metadatas"], strict=True):
                ids.append(cid)
                metadatas.append({**(meta or {}), "_text": text})
                texts.append(_keyword_text(meta or {}, text))
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
        with _search_guard():
            index = self._current()
        if len(index.keyword) == 0:
            raise IndexEmpty("The knowledge base is empty: run `onboard ingest PATH` first.")
        timings: dict[str, float] = {}
        start = time.perf_counter()
        vector = np.asarray(self.embeddings.embed_query(query), dtype=np.float32)
        timings["embed_ms"] = (time.perf_counter() - start) * 1000
        hits: dict[str, _Hit] = {}
        if mode in ("hybrid", "dense"):
            mark = time.perf_counter()
            with _search_guard():
                self._dense(index, vector.tolist(), max(cfg.candidates, k), where, hits)
            timings["dense_ms"] = (time.perf_counter() - mark) * 1000
        if mode in ("hybrid", "keyword"):
            mark = time.perf_counter()
            self._lexical(index.keyword, tokenize(query), max(cfg.candidates, k), where, hits)
            timings["keyword_ms"] = (time.perf_counter() - mark) * 1000
        top = _dedupe(self._fuse(hits.values(), mode))[:k]
        mark = time.perf_counter()
        with _search_guard():
            verdict = self._judge(index, query, vector, top, where)
        timings["judge_ms"] = (time.perf_counter() - mark) * 1000
        timings["total_ms"] = (time.perf_counter() - start) * 1000
        documents = [_to_document(h, rank) for rank, h in enumerate(top, 1)]
        return Retrieval(query, documents, verdict, index.version, timings, query_vector=vector)

    def _dense(self, index: _Index, vector, n: int, where: Filter | None, hits: dict[str, _Hit]) -> None:
        """Passages by cosine similarity: the best of their own vector's and their search keys'."""
        found = _nearest(index.keyword, index.passages, vector, n, where)
        if index.has_keys:
            found += _nearest(index.keyword, index.keys, vector, n * 2, where, keys=True)
        best: dict[str, tuple] = {}
        for cid, text, meta, distance in found:
            if cid not in best or distance < best[cid][2]:
                best[cid] = (text, meta, distance)
        ranked = sorted(best.items(), key=lambda item: item[1][2])[:n]
        for rank, (cid, (text, meta, distance)) in enumerate(ranked, 1):
            hit = hits.setdefault(cid, _Hit(cid, text, meta))
            hit.dense, hit.dense_rank = 1.0 - float(distance), rank

    def _lexical(self, index: KeywordIndex, tokens: list[str], n: int, where: Filter | None,
                 hits: dict[str, _Hit]) -> None:
        for rank, (position, score) in enumerate(index.search(tokens, n, where), 1):
            hit = hits.setdefault(index.ids[position], _Hit(index.ids[position], *_stored(index, position)))
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

    def _judge(self, index: _Index, query: str, vector: np.ndarray, top: list[_Hit],
               where: Filter | None) -> Answerability:
        """Can the best passages answer the question, and in which band? (see :mod:`assistant.answerability`)

        The top similarity is judged against the baseline recorded with the index version this turn
        reads, so a re-indexed corpus is judged by its own.

        The words "no document mentions" are looked up only in the documents
        the asker may see (``where``): else the reply would tell an employee
        that a word appears in an HR-only page (issue #17).
        """
        cfg = self.config.abstention
        similarity = None
        if top:
            similarity = top[0].dense
            if similarity is None:  # found by keywords only: compare with its stored vectors, its keys' too
                stored = [index.passages.get(ids=[top[0].id], include=["embeddings"])]
                if index.has_keys:  # by id: a metadata filter would scan every key (40 ms at 250,000)
                    ids = [key_id(top[0].id, n) for n in range(MAX_KEYS_JUDGED)]
                    stored.append(index.keys.get(ids=ids, include=["embeddings"]))
                vectors = [v for got in stored if got.get("embeddings") is not None for v in got["embeddings"]]
                if vectors:  # else removed since the keyword index was loaded
                    similarity = float(np.max(np.asarray(vectors, dtype=np.float32) @ vector))
        tokens: set[str] = set()
        for hit in top[: cfg.evidence_passages]:
            tokens.update(tokenize(_index_text(hit.metadata, hit.text)))
        return judge(config=cfg, question=query, similarity=similarity, evidence_tokens=tokens,
                     known=lambda token: index.keyword.knows(token, where), baseline=index.baseline)


@contextmanager
def _search_guard() -> Iterator[None]:
    """The vector store's connection errors (a Chroma server down or restarting) as :class:`SearchUnavailable`."""
    try:
        yield
    except SearchUnavailable:
        raise
    except Exception as exc:
        if search_unreachable(exc):
            raise SearchUnavailable("The handbook search is not available right now.") from exc
        raise


def _nearest(keyword: KeywordIndex, collection, vector, n: int, where: Filter | None,
             keys: bool = False) -> list[tuple]:
    """The ``n`` nearest passages that pass ``where`` (through their search keys if ``keys``).

    Chroma filters before searching, which costs ~200 ms at 100,000 passages
    whatever the filter; most users may see most passages, so we first search
    a few times wider without the filter and drop what the filter refuses,
    and ask Chroma to filter only when too few passages are left.
    """
    if where:
        rows, found = _query(keyword, collection, vector, n * 4, None, keys)
        allowed = [row for row in rows if matches(row[2], where)]
        if len(allowed) >= n or found < n * 4:  # enough, or Chroma has no more passages than that
            return allowed[:n]
        rows = _query(keyword, collection, vector, n, chroma_where(where), keys)[0]
        # Chroma filtered on what it stores: a search key's own metadata, which a crashed run may
        # have left out of step with its passage's. What is returned is the passage: check it.
        return [row for row in rows if matches(row[2], where)]
    return _query(keyword, collection, vector, n, None, keys)[0]


def _query(keyword: KeywordIndex, collection, vector, n: int, where: dict | None,
           keys: bool) -> tuple[list[tuple], int]:
    """``(id, text, metadata, distance)`` of the nearest passages, and how many Chroma found.

    In the collection of search keys (``keys``), a key stands for its passage: the id is the passage's.

    Asking Chroma for distances only halves the query (1.8 ms instead of 4 ms
    for 30 passages at 18F size): the texts and metadata are in memory
    already, in the keyword index. A passage indexed since that index was
    loaded is left out until the next refresh, as the keyword side does.
    """
    result = collection.query(query_embeddings=[vector], n_results=n, where=where, include=["distances"])
    ids = result["ids"][0]
    if keys:
        ids = [key_passage(key) for key in ids]
    rows = []
    for cid, distance in zip(ids, result["distances"][0], strict=True):
        position = keyword.positions.get(cid)
        if position is not None:
            rows.append((cid, *_stored(keyword, position), distance))
    return rows, len(ids)


def _stored(index: KeywordIndex, position: int) -> tuple[str, dict]:
    """The text and metadata of a passage, as :meth:`KnowledgeBase._load_keyword_index` keeps them."""
    meta = dict(index.metadatas[position])
    return meta.pop("_text"), meta


def _index_text(meta: dict, text: str) -> str:
    return passage_text(meta.get("title", ""), meta.get("section", ""), text)


def _keyword_text(meta: dict, text: str) -> str:
    """What BM25 indexes: the headings count twice, as a field boost (measured: +1 hit in 80 on 18F)."""
    return f"{meta.get('title', '')} {meta.get('section', '')}\n{_index_text(meta, text)}"


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
