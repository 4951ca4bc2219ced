"""Measure retrieval and abstention on a fixed question set.

A dataset is JSON Lines, one question per line, with ``id``, ``question`` and
``gold_files`` (paths relative to the corpus root; empty for a question the
documents cannot answer), and optionally ``history``: the conversation before
the question, as ``{"role": "user"|"assistant", "content": ...}`` turns or as
plain strings (earlier questions). Each question goes through
:meth:`KnowledgeBase.retrieve`, exactly as the chat calls it, and the figures
below are computed from what came back. Retrieval alone cannot use a history;
the answer turn (``--answers``) gets it, as the chat passes it, and records what
its own retrieval found.

:func:`evaluate_answers` scores the final answers: quote hits, the band each
answer fell in, the citations its text makes, its length and repeated lines.
:func:`compare` sets two configurations' results on the same questions side by
side, with McNemar's exact test on the paired yes/no outcomes, so a change can
be judged before it is rolled out.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

from assistant.keyword import Filter
from assistant.retrieval import KnowledgeBase, Mode


@dataclass(frozen=True)
class Case:
    id: str
    question: str
    gold_files: tuple[str, ...]
    #: Exact passages of the gold files that answer the question (any one is enough).
    gold_quotes: tuple[str, ...] = ()
    #: The conversation before the question, oldest first, as ``(role, text)``: what ``Assistant.ask`` takes.
    history: tuple[tuple[str, str], ...] = ()

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
            cases.append(
                Case(
                    str(row["id"]), str(row["question"]), tuple(gold), tuple(q for q in quotes if q),
                    _history(row.get("history") or []),
                )
            )
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{path}:{number}: not a valid case ({exc})") from None
    if not cases:
        raise ValueError(f"{path} holds no questions")
    return cases


_ROLES = {"user", "assistant", "human", "ai"}


def _history(turns) -> tuple[tuple[str, str], ...]:
    """``history`` as ``(role, text)`` pairs: ``{"role", "content"}`` objects, or strings for earlier questions."""
    if not isinstance(turns, list):
        raise TypeError("history must be a list of turns")
    pairs = []
    for turn in turns:
        if isinstance(turn, str):
            pairs.append(("user", turn))
        elif isinstance(turn, dict) and turn.get("role") in _ROLES and isinstance(turn.get("content"), str):
            pairs.append((turn["role"], turn["content"]))
        else:
            raise TypeError('each history turn must be {"role": "user" or "assistant", "content": text} or a text')
    return tuple(pairs)


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
                "history_turns": len(case.history),
                # The middle band (unsure) answers, under a warning: only the abstained band abstains.
                "abstained": result.answerability.band == "abstained",
                "band": result.answerability.band,
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
    """Run the whole answering turn on every case, with its history: quote hits, bands, citations, length.

    ``assistant`` is an :class:`assistant.answering.Assistant`; an answer hits when it
    contains one of the case's gold quotes, whitespace collapsed.
    """
    rows = []
    for case in cases:
        start = time.perf_counter()
        answer = assistant.answer(case.question, history=list(case.history), where=where)
        latency = (time.perf_counter() - start) * 1000
        text = _collapse(answer.text)
        citations = cited_in_order(answer)
        retrieved = [doc.metadata.get("source") for doc in answer.retrieval.documents] if answer.retrieval else []
        rows.append(
            {
                "id": case.id,
                "answerable": case.answerable,
                "history_turns": len(case.history),
                "band": band(answer),
                "abstained": answer.abstained,
                "quote_hit": any(_collapse(q) in text for q in case.gold_quotes) if case.gold_quotes else None,
                "citations": citations,
                "cited_gold": sum(c["source"] in case.gold_files for c in citations),
                "retrieved_gold_at_5": any(src in case.gold_files for src in retrieved[:5]) if case.answerable else None,
                "words": words(answer.text),
                "repeated_line": repeated_line(answer.text),
                "answerer": answer.answerer,
                "text": answer.text,
                "error": answer.error,
                "latency_ms": round(latency, 3),
            }
        )
    return summarise_answers(rows), rows


def band(answer) -> str:
    """Which band the answer fell in: the answer's own ``band`` when it records one, else answered or abstained."""
    return getattr(answer, "band", None) or ("abstained" if answer.abstained else "answered")


_MARKER = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")  # [1] or [1, 3], as the answerers write them


def cited_in_order(answer) -> list[dict]:
    """``{"n", "source"}`` of each citation the text's markers point to, in the order the markers first appear."""
    by_number = {c.n: c for c in answer.citations}
    order = []
    for group in _MARKER.findall(answer.text):
        for n in (int(part) for part in group.split(",")):
            if n in by_number and n not in order:
                order.append(n)
    return [{"n": n, "source": by_number[n].source} for n in order]


def words(text: str) -> int:
    """Words of the text: whitespace-separated tokens holding a letter or digit, citation markers left out."""
    return sum(any(ch.isalnum() for ch in token) for token in _MARKER.sub(" ", text).split())


def repeated_line(text: str) -> bool:
    """Whether a line appears twice, once citation markers and whitespace are set aside.

    Lines with no letter or digit (a table's ``| --- |`` rule, a code fence) are not counted.
    """
    lines = [_collapse(_MARKER.sub(" ", line)) for line in text.splitlines()]
    lines = [line for line in lines if any(ch.isalnum() for ch in line)]
    return len(set(lines)) < len(lines)


def summarise_answers(rows: list[dict]) -> dict:
    judged = [r for r in rows if r["answerable"] and r["quote_hit"] is not None]
    abstention = summarise([{**r, "hits": {1: False, 3: False, 5: False}, "first_hit_rank": None} for r in rows])
    latencies = np.array([r["latency_ms"] for r in rows]) if rows else np.zeros(1)
    answered = [r for r in rows if not r["abstained"]]
    lengths = np.array([r["words"] for r in answered]) if answered else None
    citations = sum(len(r["citations"]) for r in rows if r["answerable"])
    repeated = sum(r["repeated_line"] for r in answered)
    bands: dict[str, int] = {}
    for r in rows:
        bands[r["band"]] = bands.get(r["band"], 0) + 1
    retrieved = [r["retrieved_gold_at_5"] for r in rows if r["answerable"]]
    return {
        "quote_hit_rate": round(sum(r["quote_hit"] for r in judged) / len(judged), 4) if judged else None,
        "answers_abstain_precision": abstention["abstain_precision"],
        "answers_abstain_recall": abstention["abstain_recall"],
        "answers_answered_rate": abstention["answered_rate"],
        "answers_recall_at_5": round(sum(retrieved) / len(retrieved), 4) if retrieved else None,
        "bands": dict(sorted(bands.items())),
        "answer_words_p50": _percentile(lengths, 50),
        "answer_words_p90": _percentile(lengths, 90),
        "repeated_line_answers": round(repeated / len(answered), 4) if answered else None,
        "repeated_line_answers_n": repeated,
        "cited_gold_share": round(sum(r["cited_gold"] for r in rows if r["answerable"]) / citations, 4)
        if citations
        else None,
        "answers_failed": sum(1 for r in rows if r["error"]),
        "turn_latency_ms_p50": round(float(np.percentile(latencies, 50)), 3),
        "turn_latency_ms_p95": round(float(np.percentile(latencies, 95)), 3),
    }


def _percentile(values: np.ndarray | None, q: int) -> float | None:
    return None if values is None else round(float(np.percentile(values, q)), 1)


def summarise_with_history(rows: list[dict]) -> dict | None:
    """The figures of the questions asked after a conversation (``history``), or ``None`` when there are none.

    ``rows`` are :func:`evaluate` rows, with the answer rows under ``"answer"`` when answers were run.
    """
    followups = [r for r in rows if r.get("history_turns")]
    if not followups:
        return None
    figures = summarise(followups)
    if all("answer" in r for r in followups):
        figures |= summarise_answers([r["answer"] for r in followups])
    return figures


# -- comparing two configurations ---------------------------------------------------------------------

#: The paired yes/no outcomes compared question by question: (name, which rows count, the outcome).
PAIRED = {
    "hit_at_5": (lambda r: r["answerable"], lambda r: r["hits"][5]),
    "answered": (lambda r: r["answerable"] and "answer" in r, lambda r: not r["answer"]["abstained"]),
    "abstained": (lambda r: not r["answerable"] and "answer" in r, lambda r: r["answer"]["abstained"]),
    "quote_hit": (
        lambda r: "answer" in r and r["answer"]["quote_hit"] is not None and r["answerable"],
        lambda r: r["answer"]["quote_hit"],
    ),
}


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pairs (1.0 when there are none)."""
    if a_only + b_only == 0:
        return 1.0
    return float(binomtest(a_only, a_only + b_only, 0.5).pvalue)


def compare(summary_a: dict, rows_a: list[dict], summary_b: dict, rows_b: list[dict]) -> dict:
    """Configuration A against B on the same questions: every figure side by side, and the paired tests.

    ``figures[name]`` is ``{"a", "b", "diff"}`` (``diff`` = b - a) for each number both summaries hold.
    ``paired[name]`` counts, over the questions it applies to (see :data:`PAIRED`), how often each
    configuration succeeded, the discordant pairs (``a_only``: A yes and B no; ``b_only``) and
    McNemar's exact two-sided ``p_value``: how likely a split at least this uneven would be if A and
    B were equally good.
    """
    if [r["id"] for r in rows_a] != [r["id"] for r in rows_b]:
        raise ValueError("the two runs did not answer the same questions")
    figures = {}
    for name, a in summary_a.items():
        b = summary_b.get(name)
        if _number(a) and _number(b):
            figures[name] = {"a": a, "b": b, "diff": _diff(a, b)}
        elif isinstance(a, dict) and isinstance(b, dict):  # the bands' counts, the with_history figures
            figures[name] = {"a": a, "b": b, "diff": {k: _diff(a.get(k, 0), b.get(k, 0)) for k in sorted(set(a) | set(b))}}
        elif a != b:
            figures[name] = {"a": a, "b": b, "diff": None}
    paired = {}
    for name, (applies, outcome) in PAIRED.items():
        pairs = [(bool(outcome(a)), bool(outcome(b))) for a, b in zip(rows_a, rows_b, strict=True) if applies(a)]
        if not pairs:
            continue
        a_only = sum(a and not b for a, b in pairs)
        b_only = sum(b and not a for a, b in pairs)
        paired[name] = {
            "n": len(pairs),
            "a": sum(a for a, _ in pairs),
            "b": sum(b for _, b in pairs),
            "a_only": a_only,
            "b_only": b_only,
            "p_value": round(mcnemar_exact(a_only, b_only), 6),
        }
    return {"figures": figures, "paired": paired}


def _diff(a, b) -> float | None:
    return round(b - a, 4) if _number(a) and _number(b) else None


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _collapse(text: str) -> str:
    return " ".join(text.split())
