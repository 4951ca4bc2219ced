"""Knowledge gaps: the questions the documents could not answer, grouped into topics.

The questions come from :func:`feedback.analytics.gap_questions` (abstained,
or rated down); they are embedded with the app's own embedding model (passed
in as a function, so nothing here knows which) and grouped by average-linkage
hierarchical clustering on cosine distance (SciPy), cut at a similarity
threshold. A topic is named by the words its questions share most, and shows
its count, how many people asked, and examples, biggest topic first — "12
people asked about parking; no document covers it".
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import Stemmer
from scipy.cluster.hierarchy import fcluster, linkage

from feedback.analytics import GapQuestion

#: Questions at least this similar (cosine, average over the group) share a topic.
DEFAULT_SIMILARITY = 0.45
_WORD = re.compile(r"[^\W\d_][\w'-]*")
_STEMMER = Stemmer.Stemmer("english")
#: Words too common in questions to name a topic.
_COMMON = frozenset(
    ["a", "about", "after", "again", "all", "am", "an", "and", "any", "are", "as", "at", "be", "been", "before", "being", "but", "by", "can", "could", "did", "do", "does", "doing", "don't", "for", "from", "get", "got", "had", "has", "have", "how", "i", "i'm", "if", "in", "into", "is", "it", "its", "it's", "just", "me", "my", "need", "no", "not", "of", "on", "or", "our", "out", "please", "should", "so", "some", "than", "that", "the", "their", "them", "then", "there", "these", "they", "this", "to", "up", "us", "was", "we", "were", "what", "when", "where", "which", "who", "why", "will", "with", "would", "you", "your", "yours", "get", "know", "tell", "want", "does", "anyone", "still",
     # question words that say what kind of answer is wanted, not what about ("how much PTO": "pto")
     "much", "many", "often", "soon", "also", "really", "ok", "okay"]
)


@dataclass(frozen=True)
class Topic:
    """A group of similar unanswered or disliked questions."""

    label: str
    count: int
    people: int
    abstained: int
    rated_down: int
    examples: list[GapQuestion]
    #: Questions answered in the middle band (the closest passages, which may not answer), counted apart.
    unsure: int = 0


def group_questions(
    questions: Sequence[GapQuestion],
    embed: Callable[[list[str]], np.ndarray],
    *,
    similarity: float = DEFAULT_SIMILARITY,
    examples: int = 5,
) -> list[Topic]:
    """Group questions by meaning; biggest topics first, then the most recent."""
    if not questions:
        return []
    if len(questions) == 1:
        labels = np.array([1])
    else:
        vectors = np.asarray(embed([q.question for q in questions]), dtype=np.float64)
        tree = linkage(vectors, method="average", metric="cosine")
        labels = fcluster(tree, t=1.0 - similarity, criterion="distance")
    members: dict[int, list[GapQuestion]] = {}
    for label, question in zip(labels, questions, strict=True):
        members.setdefault(int(label), []).append(question)
    topics = [_topic(group, examples) for group in members.values()]
    return sorted(topics, key=lambda t: (-t.count, -max(q.at.timestamp() for q in t.examples)))


def _topic(group: list[GapQuestion], examples: int) -> Topic:
    newest = sorted(group, key=lambda q: q.at, reverse=True)
    return Topic(
        label=topic_label([q.question for q in group]),
        count=len(group),
        people=len({q.user_id for q in group}),
        abstained=sum(q.abstained for q in group),
        rated_down=sum(not q.abstained and not q.unsure for q in group),
        examples=newest[:examples],
        unsure=sum(q.unsure and not q.abstained for q in group),
    )


def topic_label(texts: Sequence[str], words: int = 3) -> str:
    """The words most of the questions use, most shared first.

    Words are compared by their stem ("bike" and "bikes" are one word, counted
    once per question) and shown in their most frequent spelling.
    """
    counts: Counter[str] = Counter()
    spellings: dict[str, Counter[str]] = {}
    for text in texts:
        found = [w for w in _WORD.findall(text.lower()) if w not in _COMMON and len(w) > 2]
        stems = _STEMMER.stemWords(found)
        counts.update(set(stems))
        for stem, word in zip(stems, found, strict=True):
            spellings.setdefault(stem, Counter())[word] += 1
    if not counts:
        return texts[0][:60] if texts else ""
    return ", ".join(spellings[stem].most_common(1)[0][0] for stem, _ in counts.most_common(words))
