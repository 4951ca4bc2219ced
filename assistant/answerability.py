"""Decide whether the retrieved passages can answer the question.

The verdict rests on one calibrated signal: the cosine similarity between the
question and the passage ranked first by hybrid retrieval (the best of the
passage's own vector and its search keys', see :mod:`assistant.retrieval`).
Ranking first by *fused* score matters: when the dense and keyword sides
agree, the top passage is close to the question; for a near miss ("can I bring
my dog to the DC office?") keyword matches pull up a passage that shares words
but not meaning, and its similarity stays low. On the 18F development set the
threshold 0.466, as calibrated there (``onboard eval --calibrate 0.9``),
answers 90% of the answerable questions and abstains on 60% of the
unanswerable ones (33% before search keys, at 0.435). The unanswerable
questions there are near misses on topics the handbook covers ("what's the
hotel per diem for Denver?" next to the per diem rules), which a similarity
alone separates only in part. The sample handbook's own questions separate
worse (AUC 0.58 against 0.82): 0.466 answers 58% of them and abstains on three
of six (0.435 before keys answered 75%). We keep the 18F calibration, as the
development set for handbooks we do not see, and list the closest passages
with every abstention to soften a wrong one.

The question words the passages never mention are reported with the verdict
("nothing in the passages is about: dog", in the logs). The person asking is
told only the words no document mentions at all ("no document mentions:
dog"): the passages miss common words too ("think", "work", "happens"), and
naming those reads as nonsense. The verdict's ``reason`` carries the
similarity too, for the logs and the evaluation reports; ``explanation`` is
what the person is shown, without any score.

The threshold depends on the embedding model and, less, on the corpus:
``onboard eval --calibrate`` prints the threshold that answers a chosen share
of a question set, to put in ``ONBOARD_RETRIEVAL__ABSTENTION__MIN_SIMILARITY``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import BaseModel, Field

from assistant.keyword import STOPWORDS, WORD, tokenize


class AbstentionConfig(BaseModel):
    """When the chat abstains."""

    #: Abstain when the top passage is less similar to the question than this.
    min_similarity: float = Field(0.466, ge=-1.0, le=1.0)
    #: Passages whose words count as evidence for the reason given.
    evidence_passages: int = Field(3, ge=1, le=10)


@dataclass
class Answerability:
    """Whether the passages can answer the question, with the evidence for it."""

    answerable: bool
    confidence: float
    reason: str
    signals: dict[str, float] = field(default_factory=dict)
    unmatched_terms: list[str] = field(default_factory=list)
    #: The reason in the words shown to the person asking: no scores (default: ``reason``).
    shown_reason: str | None = None

    @property
    def explanation(self) -> str:
        return self.shown_reason or self.reason


def question_terms(question: str) -> list[str]:
    """The question's content words, in order, stop words left out."""
    return list(dict.fromkeys(w for w in WORD.findall(question) if w.lower() not in STOPWORDS))


def judge(
    *,
    config: AbstentionConfig,
    question: str,
    similarity: float | None,
    evidence_tokens: set[str],
    known: Callable[[str], bool] | None = None,
) -> Answerability:
    """The verdict for one question, given the top passage's similarity and the evidence's words.

    ``known(stem)`` tells whether any document uses a word (default: the
    evidence's words are all there is).
    """
    if similarity is None:
        return Answerability(False, 0.0, "no passage matches the question")
    unmatched = [term for term in question_terms(question) if not _present(term, evidence_tokens)]
    signals = {"similarity": round(similarity, 4)}
    if similarity >= config.min_similarity:
        return Answerability(True, similarity, "the passages match the question", signals, unmatched)
    unknown = [term for term in unmatched if known is None or not all(map(known, tokenize(term)))]
    shown = "the closest passage is only loosely related to the question"
    missing = "; nothing in the passages is about: " + ", ".join(unmatched[:4]) if unmatched else ""
    never = "; no document mentions: " + ", ".join(unknown[:4]) if unknown else ""
    reason = f"{shown} (similarity {similarity:.2f}){missing}"
    return Answerability(False, similarity, reason, signals, unmatched, shown_reason=shown + never)


def _present(term: str, evidence_tokens: set[str]) -> bool:
    stems = tokenize(term)
    return bool(stems) and all(stem in evidence_tokens for stem in stems)
