"""The keyword side of hybrid search: BM25 (``bm25s``) over the passages in Chroma.

The index is built in memory from the collection's own documents, so every app
instance, local or against a Chroma server, derives the same keyword index
from the same source of truth. It is rebuilt when the index version changes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence

import bm25s
import numpy as np
import Stemmer
from bm25s.stopwords import STOPWORDS_EN_PLUS

# bm25s sets its own logger to DEBUG, so every index build printed a line wherever logging is configured.
logging.getLogger("bm25s").setLevel(logging.WARNING)

Filter = Mapping[str, str | Sequence[str]]
"""``{field: allowed values}``: a passage matches when, for every field, its value is one of
the allowed values, or, for a list-valued field such as ``audience``, shares one with them."""

#: Metadata fields stored as lists in Chroma.
LIST_FIELDS = frozenset({"audience"})

_STEMMER = Stemmer.Stemmer("english")
WORD = re.compile(r"(?u)\b\w\w+\b")  # bm25s's own token pattern
STOPWORDS = frozenset(STOPWORDS_EN_PLUS)


def tokenize(text: str) -> list[str]:
    """Lower-cased, stop words removed, stemmed word tokens, exactly as bm25s indexes them."""
    words = [w for w in WORD.findall(text.lower()) if w not in STOPWORDS]
    return _STEMMER.stemWords(words)


class KeywordIndex:
    """BM25 over a fixed list of passages, with metadata filters applied before ranking."""

    def __init__(self, ids: Sequence[str], texts: Sequence[str], metadatas: Sequence[Mapping]) -> None:
        self.ids = list(ids)
        self.metadatas = list(metadatas)
        self.positions = {cid: position for position, cid in enumerate(self.ids)}
        self._masks: dict[tuple, np.ndarray] = {}
        self._bm25 = bm25s.BM25()
        self._vocab: dict[str, int] = {}
        self._doc_freq = np.zeros(0)
        if self.ids:
            corpus = bm25s.tokenize(list(texts), stopwords=list(STOPWORDS), stemmer=_STEMMER, show_progress=False)
            self._bm25.index(corpus, show_progress=False)
            self._vocab = corpus.vocab
            self._doc_freq = np.zeros(len(corpus.vocab))
            for doc in corpus.ids:
                self._doc_freq[list(set(doc))] += 1

    def __len__(self) -> int:
        return len(self.ids)

    def knows(self, token: str, where: Filter | None = None) -> bool:
        """Whether any passage (of those matching ``where``) uses this (tokenized) word."""
        if token not in self._vocab:
            return False
        mask = self.mask(where)
        if mask is None:
            return True
        return bool(np.any(mask & (self._bm25.get_scores([token]) > 0)))

    def idf(self, token: str) -> float:
        """Inverse document frequency; a word the corpus never uses gets the highest value."""
        n = max(len(self.ids), 1)
        index = self._vocab.get(token)
        df = self._doc_freq[index] if index is not None else 0.0
        return float(np.log(1 + (n - df + 0.5) / (df + 0.5)))

    def search(self, query: str | list[str], k: int, where: Filter | None = None) -> list[tuple[int, float]]:
        """``(position, score)`` of the best ``k`` passages with a positive score."""
        tokens = tokenize(query) if isinstance(query, str) else query
        tokens = [t for t in tokens if t in self._vocab]
        if not tokens or not self.ids:
            return []
        scores = self._bm25.get_scores(tokens)
        mask = self.mask(where)
        if mask is not None:
            scores = np.where(mask, scores, 0.0)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(i), float(scores[i])) for i in top if scores[i] > 0]

    def mask(self, where: Filter | None) -> np.ndarray | None:
        """Boolean mask of passages matching ``where`` (cached per filter)."""
        if not where:
            return None
        key = tuple(sorted((field, _values(allowed)) for field, allowed in where.items()))
        mask = self._masks.get(key)  # one read: another thread may clear the cache at any moment
        if mask is None:
            mask = np.ones(len(self.ids), dtype=bool)
            for field, allowed in key:
                allowed_set = set(allowed)
                mask &= np.fromiter(
                    (_matches(m.get(field), allowed_set) for m in self.metadatas), dtype=bool, count=len(self.ids)
                )
            if len(self._masks) > 256:
                self._masks.clear()
            self._masks[key] = mask
        return mask


def matches(metadata: Mapping, where: Filter | None) -> bool:
    """Whether one passage's metadata passes ``where`` (the same rule as :meth:`KeywordIndex.mask`)."""
    return not where or all(_matches(metadata.get(field), set(_values(allowed))) for field, allowed in where.items())


def _values(allowed: str | Sequence[str]) -> tuple[str, ...]:
    return (allowed,) if isinstance(allowed, str) else tuple(sorted(str(a) for a in allowed))


def _matches(value, allowed: set[str]) -> bool:
    if isinstance(value, list):
        return any(str(v) in allowed for v in value)
    return value is not None and str(value) in allowed


def chroma_where(where: Filter | None) -> dict | None:
    """The same filter in Chroma's ``where`` syntax."""
    if not where:
        return None
    clauses = []
    for field, allowed in where.items():
        values = list(_values(allowed))
        if field in LIST_FIELDS:
            options = [{field: {"$contains": v}} for v in values]
            clauses.append(options[0] if len(options) == 1 else {"$or": options})
        else:
            clauses.append({field: {"$in": values}})
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}
