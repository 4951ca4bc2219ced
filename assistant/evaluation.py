"""Measure retrieval and abstention on a fixed question set.

A dataset is JSON Lines, one question per line, with ``id``, ``question`` and
``gold_files`` (paths relative to the corpus root; empty for a question the
documents cannot answer). Each question goes through
:meth:`KnowledgeBase.retrieve`, exactly as the chat calls it, and the figures
below are computed from what came back.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from assistant.keyword import Filter
from assistant.retrieval import KnowledgeBase, Mode


@dataclass(frozen=True)
class Case:
    id: str
    question: str
    gold_files: tuple[str, ...]
    #: Exact passages of the gold files that answer the question (any one is enough).
    gold_quotes: tuple[str, ...] = ()

    @property
    def answerable(self) -> bool:
        return bool(self.gold_files)


def load_dataset(path: Path) -> list[Case]:
    """Cases from a JSONL file; a malformed line is an error naming its number."""
    cases = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            gold = row.get("gold_files") or []
            if not isinstance(gold, list) or not all(isinstance(g, str) for g in gold):
                raise TypeError("gold_files must be a list of paths")
            quotes = [row.get("gold_quote") or "", *(row.get("gold_quotes") or {}).values()]
            cases.append(Case(str(row["id"]), str(row["question"]), tuple(gold), tuple(q for q in quotes if q)))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{path}:{number}: not a valid case ({exc})") from None
    if not cases:
        raise ValueError(f"{path} holds no questions")
    return cases


def missing_gold_files(cases: Iterable[Case], indexed: Iterable[str]) -> list[str]:
    """The gold files of ``cases`` not among the ``indexed`` sources, sorted: their questions cannot score."""
    return sorted({g for case in cases for g in case.gold_files} - set(indexed))


def evaluate(
    kb: KnowledgeBase,
    cases: Iterable[Case],
    *,
    mode: Mode,
    k: int,
    where: Filter | None = None,
) -> tuple[dict, list[dict]]:
    """``(summary, rows)``: the figures of ``onboard eval`` and one row per question."""
    rows = []
    depth = max(k, 5)
    for case in cases:
        start = time.perf_counter()
        result = kb.retrieve(case.question, mode=mode, k=depth, where=where)
        latency = (time.perf_counter() - start) * 1000
        sources = [doc.metadata.get("source") for doc in result.documents]
        first = next((rank for rank, src in enumerate(sources[:k], 1) if src in case.gold_files), None)
        rows.append(
            {
                "id": case.id,
                "answerable": case.answerable,
                "abstained": not result.answerable,
                "first_hit_rank": first,
                "hits": {n: any(src in case.gold_files for src in sources[:n]) for n in (1, 3, 5)},
                "confidence": round(result.answerability.confidence, 4),
                "signals": {key: round(v, 4) for key, v in result.answerability.signals.items() if isinstance(v, float)},
                "sources": sources,
                "latency_ms": round(latency, 3),
            }
        )
    return summarise(rows), rows


def summarise(rows: list[dict]) -> dict:
    answerable = [r for r in rows if r["answerable"]]
    unanswerable = [r for r in rows if not r["answerable"]]
    abstained = [r for r in rows if r["abstained"]]
    latencies = np.array([r["latency_ms"] for r in rows]) if rows else np.zeros(1)

    def share(part: int, whole: int) -> float | None:
        return round(part / whole, 4) if whole else None

    return {
        "n": len(rows),
        "n_answerable": len(answerable),
        "n_unanswerable": len(unanswerable),
        **{f"recall_at_{n}": share(sum(r["hits"][n] for r in answerable), len(answerable)) for n in (1, 3, 5)},
        "mrr": share(sum(1 / r["first_hit_rank"] for r in answerable if r["first_hit_rank"]), len(answerable)),
        "abstain_precision": share(sum(not r["answerable"] for r in abstained), len(abstained)),
        "abstain_recall": share(sum(r["abstained"] for r in unanswerable), len(unanswerable)),
        "answered_rate": share(sum(not r["abstained"] for r in answerable), len(answerable)),
        "latency_ms_p50": round(float(np.percentile(latencies, 50)), 3),
        "latency_ms_p95": round(float(np.percentile(latencies, 95)), 3),
    }


def calibrate(rows: list[dict], answered_rate: float = 0.9) -> dict:
    """The abstention threshold that answers ``answered_rate`` of the answerable questions.

    Uses the similarity signal recorded per question (see :mod:`assistant.answerability`).
    """
    if not 0 < answered_rate <= 1:
        raise ValueError(f"answered_rate must be above 0 and at most 1, not {answered_rate}")
    answerable = sorted(r["signals"]["similarity"] for r in rows if r["answerable"] and "similarity" in r["signals"])
    unanswerable = [r["signals"]["similarity"] for r in rows if not r["answerable"] and "similarity" in r["signals"]]
    if not answerable:
        return {"answered_rate": answered_rate, "min_similarity": None}
    # Answer everything at or above the value below which (1 - answered_rate) of the answerable fall.
    index = min(int(np.floor(len(answerable) * (1 - answered_rate) + 1e-9)), len(answerable) - 1)
    threshold = answerable[index]
    abstained = sum(v < threshold for v in unanswerable)
    return {
        "answered_rate": round(sum(v >= threshold for v in answerable) / len(answerable), 4),
        "min_similarity": round(threshold, 4),
        "abstain_recall": round(abstained / len(unanswerable), 4) if unanswerable else None,
    }


def evaluate_answers(assistant, cases: Iterable[Case], *, where: Filter | None = None) -> tuple[dict, list[dict]]:
    """Run the whole answering turn on every case: quote hits, abstention on final answers, turn latency.

    ``assistant`` is an :class:`assistant.answering.Assistant`; an answer hits when it
    contains one of the case's gold quotes, whitespace collapsed.
    """
    rows = []
    for case in cases:
        start = time.perf_counter()
        answer = assistant.answer(case.question, where=where)
        latency = (time.perf_counter() - start) * 1000
        text = _collapse(answer.text)
        rows.append(
            {
                "id": case.id,
                "answerable": case.answerable,
                "abstained": answer.abstained,
                "quote_hit": any(_collapse(q) in text for q in case.gold_quotes) if case.gold_quotes else None,
                "answerer": answer.answerer,
                "text": answer.text,
                "error": answer.error,
                "latency_ms": round(latency, 3),
            }
        )
    return summarise_answers(rows), rows


def summarise_answers(rows: list[dict]) -> dict:
    judged = [r for r in rows if r["answerable"] and r["quote_hit"] is not None]
    abstention = summarise([{**r, "hits": {1: False, 3: False, 5: False}, "first_hit_rank": None} for r in rows])
    latencies = np.array([r["latency_ms"] for r in rows]) if rows else np.zeros(1)
    return {
        "quote_hit_rate": round(sum(r["quote_hit"] for r in judged) / len(judged), 4) if judged else None,
        "answers_abstain_precision": abstention["abstain_precision"],
        "answers_abstain_recall": abstention["abstain_recall"],
        "answers_answered_rate": abstention["answered_rate"],
        "answers_failed": sum(1 for r in rows if r["error"]),
        "turn_latency_ms_p50": round(float(np.percentile(latencies, 50)), 3),
        "turn_latency_ms_p95": round(float(np.percentile(latencies, 95)), 3),
    }


def _collapse(text: str) -> str:
    return " ".join(text.split())
