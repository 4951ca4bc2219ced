"""Choosing quotes: the retrieved passages' own sentences that best answer the question.

The extractive answerer (:mod:`assistant.answerers.extractive`) numbers the
citations and writes the answer; this module decides what it quotes, and how
the quotes are laid out.

Each passage (a Markdown chunk) is cut into quotable units: the sentences of
its prose and list items, each row of its tables (with the table's header, so
a row is never shown without its columns) and each code block whole. Nothing
is paraphrased or cut mid-sentence: a unit is quoted as it stands in the
source, only its line breaks collapsed.

A unit's score adds four signals:

- meaning: cosine similarity between the unit and the question, with the
  knowledge base's own embedding model (a table row is embedded as
  ``column: value`` pairs so its numbers keep their meaning);
- words: BM25 of the question's terms over the candidate units, relative to
  the best unit, so a sentence naming the thing asked about wins a tie;
- passage: the passage's retrieval score relative to the top passage's, so
  the passage retrieval ranked first is preferred (the fused score already
  weighed the whole passage, headings included);
- answer type: a question asking who to contact, when or how long, or how
  much or how many, wants a contact (a channel, an address, a phone number),
  a time or a number; a unit holding one gets a small bonus
  (``answer_type``). Measured: +2 of 80 gold quotes on the 18F set (both
  "when / how long" questions: "no later than 3:30 PM ET the last business
  day", "Details last up to 120 days"), none lost; the sample handbook
  unchanged; 27 of 80 and 10 of 24 questions ask for a type.

The weights (``Weights``) were chosen on ``eval/sample_qa.jsonl``: the share
of gold quotes found in the answer moved by one question in 27 across
reasonable settings, so they are plain round numbers, not a fitted optimum.

Only the ``candidates`` units that words and passage score rank highest are
embedded: a cold unit costs a few milliseconds on a CPU. Measured on the 18F
set, 10 candidates found 44 of 80 gold quotes, 20 find 47, and embedding
every unit of the five passages finds no more; the sample handbook is
unchanged. Unit vectors are cached by text (the same passages come back for
related questions), so a warm turn costs one question embedding.

The best units are kept, up to ``max_units``, while they stay within a
margin of the best one; at most ``per_passage`` come from one passage, so a
second source can answer the other half of a two-part question. A short
sentence (``follow_words``) right after a kept one in the same paragraph is
quoted with it: it usually finishes the thought ("The password changes
monthly."); measured +2 of 80 gold quotes on the 18F set, none lost on the
sample handbook, answers one word longer at the median. A chosen sentence that
opens by referring back ("They are available 6am-9pm ET.", "Then you'll need
to...") is quoted with the sentence before it in its paragraph, so it is not
shown without what it refers to (18F: +1 of 80, sample handbook unchanged,
median answer length +2 words). When the best unit is a row of a small table
(``table_rows`` rows, ``lead_words`` words), the rest of its table comes with
it: one row alone ("5 years or more | 26 days") reads as the answer to "how
many vacation days do I get?" when it is one line of three (no gold quote won
or lost on either set; sample handbook p90 answer length 115 to 127 words;
expanding every chosen row's table too gave 129). A chosen lead-in
("If you receive a suspicious email, follow these steps:") brings what it
introduces, the list, table, short code block or paragraph after it, shown
nested under it (within ``lead_units`` and ``lead_words`` for the whole
answer, though each lead-in gets its first unit); a lead-in that ends its
passage, or introduces only a long code block, is dropped. Measured on the
18F set: +4 of 80 gold quotes, none lost on the sample handbook, p90 answer
length 107 to 125 words.
Quotes are shown grouped by passage (in retrieval order, the top passage
first) and in source order within a passage; a run of adjacent sentences carries one
citation marker, so a quote that spans two sentences stays intact.

Short, relevant, self-explaining quotes (issue #18, ``extractive-v8``):

- a unit scoring below ``relative`` (0.8) of the best unit's score is left
  out unless it comes from the best unit's own passage. Chosen
  leave-one-handbook-out from 0, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9 (the
  smallest median length without losing a gold quote): tuned on 18F it is
  0.8, and on PostHog 0.8 too. Cutting other passages' units alone lost gold
  quotes fast (0.85: 18F 44 to 37 of 80);
- each line once: the same sentence in two passages (overlapping passages,
  a copied page) is quoted from the best one; under two headings the
  question names ("dental and vision") it is quoted under each, heading
  first ("**Dental:** ..."). A sentence whose short heading (``LABEL_WORDS``)
  names something asked that the sentence does not gets the heading;
- a sentence pointing back mid-way ("If you start before that cutoff",
  "Use it for a desk") comes with the sentence before it, as an opening
  anaphor already did;
- a table comes whole (small) or as its best row under its header; a row cut
  from its header by passage splitting gets the header of another retrieved
  passage of its section.

Measured on the answered questions of the development sets (same retrieval,
old v7 against v8): 18F gold quotes 44 to 44 of 80 (one won, one lost),
median / p90 words 81.5 / 124.6 to 76 / 120.5, answers repeating a line
5 of 78 to 0, cited gold share 0.63 to 0.67; PostHog 31 to 32 of 70,
71 / 99.2 to 68.5 / 96.3 words, repeated 5 of 60 to 0, cited gold share 0.63
to 0.67.

Sentences read in their passage (``context``): a unit embedded alone does not
know what its passage is about ("It is staffed from 7am to 7pm" does not say
what is; "You are conducting research with 9 or fewer participants" sits
under the list's lead-in). Each retrieved passage (with its headings) is run
through the model once, and a unit is also read there: the mean of the
passage's token states over its span, as search keys are
(:func:`assistant.ingest._vectors`). When that reading is closer to the
question than the unit alone, ``context`` (0.75) of the difference is added
to its similarity; it is never lowered. A model with no token states (an API)
scores units alone. A cold turn runs the first three passages
(``READ_PASSAGES``; all five found no more gold quotes on any of the three
handbooks) once each, in the same queue as the units embedded alone; what is
read is cached with the unit vectors. ``benchmarks/chat_turn.py``, extractive
turn p50 / p95: 18F 83 / 117 ms, PostHog 76 / 103 ms (reading all five, apart
from the units: 125 / 168 ms on 18F).

Measured with the context-read search keys, share of gold quotes found on
18F (80 judged), PostHog (70) and the sample handbook (24):

==========================  =====  =======  ======
similarity                  18F    PostHog  sample
==========================  =====  =======  ======
unit alone (before)         0.575  0.529    0.792
mixed, 0.25 in context      0.60   0.557    0.75
mixed, 0.5                  0.6125 0.557    0.708
mixed, 0.75                 0.60   0.657    0.667
mixed, 1 (context only)     0.625  0.629    0.542
raised only, 0.5            -      -        0.75
raised only, 0.75 (chosen)  0.60   0.614    0.75
raised only, 1              0.60   0.629    0.708
==========================  =====  =======  ======

Mixing makes the sentences of one passage alike, so the one that answers
loses to its neighbours ("Sick leave is separate from PTO and does not need
approval." on the sample handbook): it gains most on PostHog but loses 3 of
24 on the sample handbook. Raising only keeps most of the gain and loses at
most one question on any handbook, so it was chosen for handbooks we have
not seen. Leave-one-handbook-out for its share: fitted on PostHog, 1, which
gives 18F 0.60; fitted on 18F, 0.75 and 1 tie; the default, 0.75, is the
share search keys use and gives the same 18F figure. Median answer words
move 82 to 82 (18F), 71 to 72 (PostHog), 72.5 to 73.5 (sample).
``relative`` was fitted again by its own rule with (mixed) context on: 0.8,
0.85, 0.9 found 18F 0.60, 0.5875, 0.5625 (84, 82, 70 words) and PostHog
0.657, 0.60, 0.557 (75, 69, 62 words); any higher cut-off loses gold quotes
on both, so it stays 0.8. With the chosen raise-only form, 0.85 found 18F 0.5875 and
PostHog 0.571 (82 and 70 words): the same conclusion.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from langchain_core.documents import Document

from assistant.chunking import code_fence, locate, passage_text
from assistant.keyword import tokenize
from assistant.sentences import split_sentences

UnitKind = Literal["sentence", "row", "code"]

# Possessive quantifiers: a passage can be one 30-token line of thousands of spaces, and backtracking over it
# took seconds per answer.
_TABLE_SEPARATOR = re.compile(r"^\s*+\|?\s*+:?-{3,}+:?\s*+(\|\s*+:?-{3,}+:?\s*+)*+\|?\s*+$")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])\s+")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s")
_QUOTE = re.compile(r"^(?:\s*>\s?)+")  # block quote markers, nested ones too
# A sentence opening with one of these refers back to the one before it ("They are available 6am-9pm ET.").
_REFERS_BACK = re.compile(
    r"^[\W_]*(?:they|this|it|these|those|that|he|she|such|then|otherwise|however|also|instead|therefore|so"
    r"|if so|if not|in (?:that|this) case|as a result)\b",
    re.IGNORECASE,
)
# A sentence pointing back past its own words: "before that cutoff", "under these rules", "Use it for a desk".
_POINTS_BACK = re.compile(
    r"\b(?:before|after|by|until|past|within|of|in|on|at|for|from|to|under|with|over|about|during|beyond)"
    r" (?:that|this|these|those|such) (?!is\b|are\b|was\b|were\b|you\b|we\b|they\b|it\b|case\b|way\b)[a-z]"
    r"|^[\W_]*[A-Z][a-z]+ (?:it|them)\b",
)
#: A heading this short can label a quote ("Dental:"); a longer one is a title, not a label.
LABEL_WORDS = 4
#: Units shorter than this many words are not worth quoting on their own ("Page last reviewed by:").
MIN_WORDS = 3


@dataclass(frozen=True)
class Unit:
    """One quotable piece of a passage."""

    passage: int  # index of the passage in the retrieved list
    block: int  # paragraph, list item, table or code block within the passage
    position: int  # order within the passage
    kind: UnitKind
    text: str  # as quoted (a table row: the row line)
    header: tuple[str, ...] = ()  # a table row's header and separator lines
    listed: bool = False  # a sentence of a list item

    @property
    def embedding_text(self) -> str:
        if self.kind == "row" and self.header:
            columns, cells = _cells(self.header[0]), _cells(self.text)
            return "; ".join(f"{c}: {v}" if c else v for c, v in zip(columns, cells, strict=False))
        return self.text


@dataclass
class Scored:
    unit: Unit
    score: float
    signals: dict[str, float] = field(default_factory=dict)
    #: The heading shown before the quote ("Dental"), when the quote alone does not say where it applies.
    label: str = ""


@dataclass(frozen=True)
class Weights:
    """How the signals add up (tuned on ``eval/sample_qa.jsonl``; see the module docstring)."""

    keyword: float = 0.1
    passage: float = 0.15
    #: Keep units scoring within this much of the best one,
    margin: float = 0.5
    #: and at least this share of its score (chosen on one handbook, measured on the other: module docstring).
    relative: float = 0.8
    per_passage: int = 3
    #: Units embedded per turn: the best by words and passage score (more cost time and win no more).
    candidates: int = 20
    #: A sentence this short right after a chosen one, in the same paragraph, is quoted with it: it
    #: usually completes it ("The password changes monthly.", "Do not delete the commit itself.").
    follow_words: int = 8
    #: The best unit, if a row of a table this small (rows, and at most ``lead_words`` words), brings its table.
    table_rows: int = 8
    #: A chosen lead-in ("To fix this:", "Before taking leave, be sure to:") brings what it introduces:
    #: up to this many following units of its passage, and about this many words.
    lead_units: int = 5
    lead_words: int = 80
    #: Added to a unit holding the kind of answer the question asks for (see ``answer_types``).
    answer_type: float = 0.06
    #: Share of what reading a unit inside its passage adds to its similarity (a local model only;
    #: see the module docstring).
    context: float = 0.75


#: (question asks for it, a unit holds it): who to contact, when or how long, how much or how many.
ANSWER_TYPES: tuple[tuple[re.Pattern, re.Pattern], ...] = (
    (re.compile(r"\b(?:who|whom)\b|\b(?:contact|ping|reach|talk to|email|message)\b|\bask\b.{0,40}?\babout\b", re.IGNORECASE),
     # a channel (not an HTML entity), an address, a handle, a phone number (international, or 312-555-0142)
     re.compile(r"(?<![\w&])#[a-z][\w-]*|(?<![\w.+-])[\w.+-]+@[\w-]+\.[\w.]+|(?<![\w.])@[a-z][\w-]*"
                r"|\+\d[\d ()-]{7,}\d|\(?\b\d{3}\)?[-. ]\d{3}[-. ]\d{4}\b", re.IGNORECASE)),
    (re.compile(r"\bwhen\b|\bhow (?:long|soon|often|early|late|far ahead)\b|\bdeadline\b|\bcut-?off\b"
                r"|\bby what (?:date|time)\b", re.IGNORECASE),
     re.compile(r"\d|\b(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday|january|february|march|april|may"
                r"|june|july|august|september|october|november|december|daily|weekly|monthly|annually|yearly|week"
                r"|month|year|day|hour|minute)s?\b", re.IGNORECASE)),
    (re.compile(r"\bhow (?:much|many)\b|\bwhat(?:'s| is) the (?:rate|amount|cost|limit|maximum|minimum)\b", re.IGNORECASE),
     re.compile(r"\d|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|twelve|half)\b", re.IGNORECASE)),
)


def answer_types(question: str) -> list[re.Pattern]:
    """What a unit must hold to be the kind of answer ``question`` asks for (none: any unit)."""
    return [holds for asks, holds in ANSWER_TYPES if asks.search(question)]


# -- cutting passages into units -------------------------------------------------------------


def split_passage(text: str, passage: int = 0) -> list[Unit]:
    """The quotable units of one Markdown passage, in source order."""
    units: list[Unit] = []
    for block, (kind, lines) in enumerate(_blocks(text)):
        if kind == "heading":  # not quoted; it still separates what comes before from what follows
            continue
        if kind == "code":
            units.append(Unit(passage, block, len(units), "code", "\n".join(lines)))
        elif kind == "table":
            header: tuple[str, ...] = ()
            rows = lines
            if len(lines) >= 2 and _TABLE_SEPARATOR.match(lines[1]):
                header, rows = (lines[0], lines[1]), lines[2:]
            for row in rows:
                units.append(Unit(passage, block, len(units), "row", row, header))
        else:
            paragraph = " ".join(" ".join(lines).split())
            for sentence in split_sentences(paragraph):
                units.append(Unit(passage, block, len(units), "sentence", sentence, listed=kind == "item"))
    return units


def _blocks(text: str) -> list[tuple[str, list[str]]]:
    """``(kind, lines)`` for each ``heading``, paragraph (``prose``), list ``item``, ``table`` and ``code`` block.

    A block quote's ``>`` markers are dropped first, so its paragraphs, list
    items and tables are cut as anywhere else.
    """
    blocks: list[tuple[str, list[str]]] = []
    kind, lines = "prose", []
    fence: str | None = None

    def flush() -> None:
        nonlocal lines
        if any(line.strip() for line in lines):
            blocks.append((kind, lines))
        lines = []

    quoted_fence = False  # a code block opened inside a block quote: its lines carry the markers too
    for raw in text.splitlines():
        if fence is None or quoted_fence:
            unquoted = _QUOTE.sub("", raw, count=1)
            if fence is None:
                quoted_fence = unquoted != raw
            raw = unquoted
        if fence is not None:
            lines.append(raw)
            fence, _ = code_fence(raw, fence)
            if fence is None:
                flush()
                kind = "prose"
            continue
        opened, _ = code_fence(raw, None)
        if opened is not None:
            flush()
            fence, kind, lines = opened, "code", [raw]
            continue
        line = raw.strip()
        if _HEADING.match(raw):
            flush()
            blocks.append(("heading", [line]))
            kind = "prose"
        elif not line:
            flush()
            kind = "prose"
        elif line.startswith("|"):
            if kind != "table":
                flush()
                kind = "table"
            lines.append(line)
        elif _LIST_ITEM.match(raw):
            flush()
            kind = "item"
            lines.append(_LIST_ITEM.sub("", raw, count=1).strip())
        else:
            if kind == "table":
                flush()
                kind = "prose"
            lines.append(line)
    if fence is not None:  # an unclosed fence: keep what was there
        kind = "code"
    flush()
    return blocks


def _cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip().strip("|").split("|")]


# -- choosing ------------------------------------------------------------------------------------

#: Passages whose units are read in context: the first three found as many gold quotes as all five on 18F,
#: PostHog and the sample handbook, in three fifths of the time.
READ_PASSAGES = 3


class UnitVectors:
    """Unit embeddings by text, in a bounded, thread-safe LRU cache."""

    def __init__(self, embed: Callable[[list[str]], list[list[float]]], size: int = 4096, in_context=None) -> None:
        self._embed = embed
        #: ``embed_in_context(texts, spans)`` of a local model (None: units are only embedded alone).
        self.in_context = in_context
        self.size = size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._read: OrderedDict[tuple[str, str], np.ndarray | None] = OrderedDict()
        self._lock = threading.Lock()

    def read_in_context(self, pairs: Sequence[tuple[str, str, int]], alone: Sequence[str] = ()) -> list[np.ndarray | None]:
        """For each ``(passage text, unit text, where the passage's own text starts)``, the unit's vector read inside
        its passage (None: not found there, after its headings).

        ``alone``: texts to embed alone in the same runs (the units' own vectors, cached for ``__call__``), so the
        cores share one queue of passages and units instead of waiting for the longest run of each.
        """
        known: dict[tuple[str, str, int], np.ndarray | None] = {}
        with self._lock:
            for pair in pairs:
                if pair in self._read:
                    known[pair] = self._read[pair]
                    self._read.move_to_end(pair)
            singles = list(dict.fromkeys(t for t in alone if t not in self._cache))
        by_passage: dict[tuple[str, int], list[str]] = {}
        for passage, unit, start in dict.fromkeys(p for p in pairs if p not in known):
            by_passage.setdefault((passage, start), []).append(unit)
        if (by_passage or singles) and self.in_context is not None:
            texts = list(by_passage)
            spans = [[locate(text, unit, start) for unit in by_passage[(text, start)]] for text, start in texts]
            pooled, found = self.in_context([text for text, _ in texts] + singles, spans + [[] for _ in singles])
            for (text, start), vectors in zip(texts, found, strict=False):
                for unit, vector in zip(by_passage[(text, start)], vectors, strict=True):
                    known[(text, unit, start)] = vector
            with self._lock:
                self._read.update((pair, known[pair]) for pair in dict.fromkeys(pairs) if pair in known)
                for text, vector in zip(singles, pooled[len(texts):], strict=True):
                    self._cache[text] = vector
                for cache in (self._read, self._cache):
                    while len(cache) > self.size:
                        cache.popitem(last=False)
        return [known.get(pair) for pair in pairs]

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        for group in _similar_lengths(missing):
            vectors = np.asarray(self._embed(group), dtype=np.float32)
            with self._lock:
                for text, vector in zip(group, vectors, strict=True):
                    self._cache[text] = vector
                while len(self._cache) > self.size:
                    self._cache.popitem(last=False)
        with self._lock:
            rows = []
            for text in texts:
                vector = self._cache.get(text)
                if vector is None:  # evicted by a concurrent turn in the meantime
                    vector = np.asarray(self._embed([text])[0], dtype=np.float32)
                else:
                    self._cache.move_to_end(text)
                rows.append(vector)
        return np.vstack(rows) if rows else np.zeros((0, 0), dtype=np.float32)


def _similar_lengths(texts: list[str], ratio: float = 1.6) -> list[list[str]]:
    """Texts in batches of similar length: a batch is padded to its longest text (measured: ~15% faster)."""
    groups: list[list[str]] = []
    for text in sorted(texts, key=len):
        if groups and len(text) <= ratio * len(groups[-1][0]) + 16:
            groups[-1].append(text)
        else:
            groups.append([text])
    return groups


def _read_in_context(units: list[Unit], documents: Sequence[Document], vectors: UnitVectors) -> list[np.ndarray | None]:
    """Each unit read inside its passage (headings included), for the first ``READ_PASSAGES`` passages.

    Embeds the units alone in the same runs (see :meth:`UnitVectors.read_in_context`).
    """
    texts = [passage_text(d.metadata.get("title", ""), d.metadata.get("section", ""), d.page_content) for d in documents]
    body = [len(text) - len(d.page_content) for text, d in zip(texts, documents, strict=True)]  # after the headings
    wanted = [i for i, u in enumerate(units) if u.passage < READ_PASSAGES]
    found = vectors.read_in_context([(texts[units[i].passage], units[i].text, body[units[i].passage]) for i in wanted],
                                    alone=[u.embedding_text for u in units])
    read: list[np.ndarray | None] = [None] * len(units)
    for i, vector in zip(wanted, found, strict=True):
        read[i] = vector
    return read


def _raised(similarity: np.ndarray, read: list[np.ndarray | None], question: np.ndarray, share: float) -> np.ndarray:
    """Each unit's similarity, raised by ``share`` of what reading it inside its passage adds.

    Never lowered: a sentence that says what it means alone keeps its own score, so sentences of one relevant
    passage, which read in context all look alike, do not drown the one that answers.
    """
    return np.array([sim if vector is None else sim + share * max(0.0, float(vector @ question) - sim)
                     for sim, vector in zip(similarity, read, strict=True)], dtype=np.float32)


def choose(
    question: str,
    question_vector: Sequence[float],
    documents: Sequence[Document],
    vectors: UnitVectors,
    *,
    max_units: int,
    weights: Weights = Weights(),
    anchor: int | None = None,
) -> list[Scored]:
    """The units that best answer ``question``, best first (then the short sentences that complete them).

    ``anchor``: a passage whose units the relative cut-off spares and that leads the answer, as the best unit's
    own passage does (a follow-up's passage found with the conversation, when the units are chosen for the
    question as typed: "and for contractors?" after a question about the pension).
    """
    every = _with_headers([u for i, doc in enumerate(documents) for u in split_passage(doc.page_content, i)], documents)
    units = [u for u in every if _worth_quoting(u)]
    if not units or max_units <= 0:
        return []
    keyword = _bm25([tokenize(u.embedding_text) for u in units], tokenize(question))
    keyword = keyword / (float(keyword.max()) or 1.0)
    passage = _relative_passage_scores(documents)
    if weights.candidates and len(units) > weights.candidates:
        cheap = np.array([kw + passage[u.passage] for u, kw in zip(units, keyword, strict=True)])
        keep = np.sort(np.argsort(-cheap, kind="stable")[: weights.candidates])
        units, keyword = [units[i] for i in keep], keyword[keep]
    question_array = np.asarray(question_vector, dtype=np.float32)
    read = _read_in_context(units, documents, vectors) if weights.context > 0 and vectors.in_context else None
    similarity = vectors([u.embedding_text for u in units]) @ question_array
    if read is not None:
        similarity = _raised(similarity, read, question_array, weights.context)
    wanted = answer_types(question)
    scored = []
    for unit, sim, kw in zip(units, similarity, keyword, strict=True):
        signals = {"similarity": float(sim), "keyword": float(kw), "passage": passage[unit.passage],
                   "answer_type": float(any(holds.search(unit.embedding_text) for holds in wanted))}
        score = (signals["similarity"] + weights.keyword * signals["keyword"] + weights.passage * signals["passage"]
                 + weights.answer_type * signals["answer_type"])
        scored.append(Scored(unit, score, signals))
    scored.sort(key=lambda s: (anchor is not None and s.unit.passage == anchor, s.score), reverse=True)
    best = max(s.score for s in scored)
    floor = max(best - weights.margin, weights.relative * best if best > 0 else best)
    chosen: list[Scored] = []
    per_passage: dict[int, int] = {}
    for item in scored:
        if len(chosen) >= max_units or (item.score < best - weights.margin and item.unit.passage != anchor):
            break
        if item.score < floor and item.unit.passage not in (scored[0].unit.passage, anchor):
            continue  # far less relevant than the best, from another passage: the best's own passage may go on
        if per_passage.get(item.unit.passage, 0) < weights.per_passage:
            per_passage[item.unit.passage] = per_passage.get(item.unit.passage, 0) + 1
            chosen.append(item)
    chosen = _one_row_or_the_table(chosen, every, weights)
    # Completing sentences carry their sentence's score: sorted, each stays next to it, best first.
    quoted = sorted(chosen + _completing(chosen, every, weights),
                    key=lambda s: (not (anchor is not None and s.unit.passage == anchor), -s.score))
    quoted, introduced = _introduced(quoted, every, weights.lead_units, weights.lead_words)
    return _labelled(quoted + introduced, documents, question)


def _label(document: Document) -> str:
    """The heading a passage sits under (the last of its section path), else its document's title."""
    section = str(document.metadata.get("section") or document.metadata.get("title") or "")
    return section.split(" > ")[-1].strip().rstrip("?:.").strip()


def _line(unit: Unit) -> str:
    return " ".join(unit.text.split()).casefold()


def _labelled(chosen: list[Scored], documents: Sequence[Document], question: str) -> list[Scored]:
    """``chosen`` with each line once, and a short heading before a sentence that needs it to say where it applies.

    The same line in several passages (overlapping passages, a page copied
    into another, "The company pays 100% of the premium." under Dental and
    under Vision) is quoted once, from the best passage; under each heading
    only when the question names each ("dental and vision"), its heading
    first. A sentence whose short heading (``LABEL_WORDS`` words at most)
    names something the question asks about and the sentence does not
    ("does the company pay for dental?") gets its heading too.
    """
    asked = set(tokenize(question))

    def label(item: Scored) -> str:
        text = _label(documents[item.unit.passage])
        return text if len(text.split()) <= LABEL_WORDS else ""

    def named(item: Scored) -> bool:
        words = set(tokenize(label(item))) & asked
        return bool(words) and not words & set(tokenize(item.unit.text))

    lines: dict[str, list[Scored]] = {}
    kept: set[int] = set()
    for item in chosen:  # best first; a sentence completing another is part of its line, kept with it
        if {"follows", "antecedent_of"} & item.signals.keys():
            kept.add(id(item))
        else:
            lines.setdefault(_line(item.unit), []).append(item)
    for items in lines.values():
        labels = {label(i) for i in items if named(i)}
        both = [i for i in items if named(i)] if len(labels) > 1 else []
        for item in both or items[:1]:
            kept.add(id(item))
    result = [item for item in chosen if id(item) in kept]
    shown: set[str] = set()
    for item in result:  # best first; a heading is shown once
        wanted = item.unit.kind == "sentence" and "introduced_by" not in item.signals and named(item)
        if wanted and label(item).casefold() not in shown:
            item.label = label(item)
            shown.add(item.label.casefold())
    return result


def _with_headers(units: list[Unit], documents: Sequence[Document]) -> list[Unit]:
    """Rows of a table cut from its header by passage splitting get the header from another passage of its section.

    A long table is split across passages; the later ones start with rows
    alone. When a retrieved passage of the same document and section holds a
    header with as many columns, those rows are shown under it.
    """
    def where(unit: Unit) -> tuple[str, str]:
        meta = documents[unit.passage].metadata
        return str(meta.get("source", "")), str(meta.get("section", ""))

    headers = {(*where(u), len(_cells(u.header[0]))): u.header for u in units if u.kind == "row" and u.header}
    if not headers:
        return units
    return [
        dataclasses.replace(u, header=headers.get((*where(u), len(_cells(u.text))), ()))
        if u.kind == "row" and not u.header else u
        for u in units
    ]


def _one_row_or_the_table(chosen: list[Scored], units: list[Unit], weights: Weights) -> list[Scored]:
    """Rows of one table: all of them, if it is small (``table_rows``, ``lead_words``), else the best row alone.

    Two rows of a five-row table read as the whole table; so the table comes
    whole, or only the row that answers, under its header.
    """
    rows: dict[tuple[int, int], list[Scored]] = {}
    for item in chosen:
        if item.unit.kind == "row":
            rows.setdefault((item.unit.passage, item.unit.block), []).append(item)
    drop: set[tuple[int, int]] = set()
    extra: list[Scored] = []
    for (passage, block), items in rows.items():
        if len(items) < 2:
            continue
        table = [u for u in units if u.passage == passage and u.block == block]
        words = sum(len(" ".join(_cells(u.text)).split()) for u in table)
        taken = {i.unit.position for i in items}
        if len(table) <= weights.table_rows and words <= weights.lead_words:
            extra += [Scored(u, items[0].score, {"row_of": float(items[0].unit.position)})
                      for u in table if u.position not in taken]
        else:
            drop |= {(passage, i.unit.position) for i in items[1:]}
    return [c for c in chosen if (c.unit.passage, c.unit.position) not in drop] + extra


def _completing(chosen: list[Scored], units: list[Unit], weights: Weights) -> list[Scored]:
    """Units quoted with a chosen one, each once and never one chosen itself, carrying its score.

    For a sentence, from its paragraph: the short sentence right after it
    (``follow_words`` words at most), which usually completes it; and the
    sentence right before it when it opens by referring back. For the best
    unit, if it is a row of a small table (``table_rows`` rows and
    ``lead_words`` words at most): the other rows of its table.
    """
    at = {(u.passage, u.position): u for u in units if u.kind == "sentence"}
    taken = {(c.unit.passage, c.unit.position) for c in chosen}
    extra = []

    def add(unit: Unit, item: Scored, signal: str) -> None:
        taken.add((unit.passage, unit.position))
        extra.append(Scored(unit, item.score, {signal: float(item.unit.position)}))

    for step, signal in ((1, "follows"), (-1, "antecedent_of")):
        for item in chosen:
            unit = item.unit
            near = at.get((unit.passage, unit.position + step))
            if unit.kind != "sentence" or near is None or near.block != unit.block:
                continue
            if (near.passage, near.position) in taken:
                continue
            completes = (len(near.text.split()) <= weights.follow_words if step == 1
                         else _REFERS_BACK.match(unit.text) or _POINTS_BACK.search(unit.text))
            if completes:
                add(near, item, signal)
    for item in chosen[:1]:  # the best unit: a lesser row's table would mostly add noise
        if item.unit.kind != "row":
            continue
        rows = [u for u in units if u.passage == item.unit.passage and u.block == item.unit.block]
        words = sum(len(" ".join(_cells(u.text)).split()) for u in rows)  # the cells' words, not the pipes
        if len(rows) <= weights.table_rows and words <= weights.lead_words:
            for row in rows:
                if (row.passage, row.position) not in taken:
                    add(row, item, "row_of")
    return extra


def _introduced(
    chosen: list[Scored], units: list[Unit], max_units: int, max_words: int
) -> tuple[list[Scored], list[Scored]]:
    """``chosen`` without empty lead-ins, and what the others introduce: the list, table or paragraph after each.

    A sentence ending in a colon ("To fix this:") says the answer follows;
    quoted alone it tells nothing. So does a paragraph right before a table
    ("Your PTO allowance depends on your country." above the allowances): a
    sentence chosen from it brings the table. What follows is taken, best
    lead-in first, until ``max_units`` units or about ``max_words`` words are
    taken for the whole answer (a lead-in always gets its first unit): the
    list items or table rows after it, else a short code block (``max_words``
    words at most), else the sentences of the paragraph after it, and no
    further than the next lead-in. A lead-in that ends its passage, or could
    bring nothing, has nothing to show and is left out.
    """
    taken = {(c.unit.passage, c.unit.position) for c in chosen}
    at = {(u.passage, u.position): u for u in units}
    opening: dict[tuple[int, int], Unit] = {}
    for unit in units:
        opening.setdefault((unit.passage, unit.block), unit)
    extra: list[Scored] = []
    dropped: set[int] = set()
    words = 0
    for index, item in enumerate(chosen):
        lead = item.unit
        if _is_lead_in(lead):
            first = at.get((lead.passage, lead.position + 1))
            if first is None:
                dropped.add(index)
                continue
        else:
            first = opening.get((lead.passage, lead.block + 1))
            if lead.kind != "sentence" or lead.listed or first is None or first.kind != "row":
                continue
        before = len(extra)
        position = first.position
        while len(extra) < max_units or len(extra) == before:
            unit = at.get((lead.passage, position))
            if unit is None or not _continues(first, unit):
                break
            if unit.kind == "code" and (unit is not first or len(unit.text.split()) > max_words):
                break  # only a short code block right after a lead-in ("run this command:")
            position += 1
            if (unit.passage, unit.position) in taken:  # quoted already: what it introduces goes on
                continue
            if words + len(unit.text.split()) > max_words and len(extra) > before:
                break
            taken.add((unit.passage, unit.position))
            extra.append(Scored(unit, item.score, {"introduced_by": float(lead.position)}))
            words += len(unit.text.split())
            if _is_lead_in(unit):
                break
        if len(extra) == before and _is_lead_in(lead) and (first.passage, first.position) not in taken:
            dropped.add(index)  # it could bring nothing (a long code block, the answer's budget spent)
    return [c for i, c in enumerate(chosen) if i not in dropped], extra


def _continues(first: Unit, unit: Unit) -> bool:
    """Whether ``unit`` belongs to what starts at ``first``: the same list, table or paragraph."""
    if first.kind == "row":
        return unit.block == first.block
    if first.listed:
        return unit.listed
    return unit.block == first.block


def _is_lead_in(unit: Unit) -> bool:
    return unit.kind == "sentence" and unit.text.rstrip("*_ ").endswith(":")


def _relative_passage_scores(documents: Sequence[Document]) -> list[float]:
    """Each passage's retrieval score relative to the first one's, in [0, 1]; by rank when scores are missing."""
    scores = [doc.metadata.get("score") for doc in documents]
    if any(not isinstance(s, int | float) for s in scores) or not scores or scores[0] <= 0:
        return [1.0 / (rank + 1) for rank in range(len(documents))]
    return [min(max(float(s) / scores[0], 0.0), 1.0) for s in scores]


def _worth_quoting(unit: Unit) -> bool:
    return unit.kind != "sentence" or len(unit.text.split()) >= MIN_WORDS


def _bm25(units: list[list[str]], query: list[str], k1: float = 1.2, b: float = 0.75) -> np.ndarray:
    """BM25 of ``query`` over the candidate units as a small corpus."""
    scores = np.zeros(len(units))
    terms = set(query)
    if not terms or not units:
        return scores
    lengths = np.array([len(u) for u in units], dtype=float)
    average = lengths.mean() or 1.0
    counts = [Counter(u) for u in units]  # one pass per unit, not one per question term
    for term in terms:
        df = sum(1 for c in counts if c[term])
        if not df:
            continue
        idf = np.log(1 + (len(units) - df + 0.5) / (df + 0.5))
        tf = np.array([c[term] for c in counts], dtype=float)
        scores += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * lengths / average))
    return scores


# -- showing ---------------------------------------------------------------------------------------


def render(chosen: Sequence[Scored], marker: Callable[[int], str], heading: Callable[[int], str]) -> list[str]:
    """Markdown blocks quoting ``chosen``: passages in retrieval order, units in source order.

    ``marker(passage)`` gives the citation marker of a passage, ``heading(passage)``
    the caption put above a table or code block quoted from it. What a lead-in
    introduces is listed under it, in the same block, with the lead-in's marker;
    so is a table right after a quoted paragraph, whether the paragraph brought
    it or one of its rows was chosen.
    """
    introduced = {(s.unit.passage, s.unit.position) for s in chosen if "introduced_by" in s.signals}
    labels = {(s.unit.passage, s.unit.position): s.label for s in chosen if s.label}
    # A table right after a quoted paragraph goes under it, whether the paragraph brought it or a row was chosen.
    tables = {(s.unit.passage, s.unit.block) for s in chosen if s.unit.kind == "row"}
    order = sorted({item.unit.passage for item in chosen})
    blocks: list[list[str]] = []  # a quote, or a lead-in and the lines of what it introduces
    for passage in order:
        units = sorted((s.unit for s in chosen if s.unit.passage == passage), key=lambda u: u.position)
        cite = marker(passage)
        lead: list[str] | None = None  # the open lead-in block, while what it introduces follows
        last = lead_block = -1
        for group in _runs(units):
            first = group[0]
            follows_lead = lead is not None and (
                first.position == last + 1 or (first.kind == "row" and first.block == lead_block + 1)
            )
            last = group[-1].position
            if follows_lead and (first.listed or first.kind != "sentence" or (first.passage, first.position) in introduced):
                lead.append(_table(group) if first.kind == "row" else first.text if first.kind == "code"
                            else "- " + " ".join(u.text for u in group))
                continue
            lead = None
            if first.kind == "sentence":
                label = next((labels[(u.passage, u.position)] for u in group if labels.get((u.passage, u.position))), "")
                blocks.append([(f"**{label}:** " if label else "") + " ".join(u.text for u in group) + f" {cite}"])
                end = group[-1]
                table_after = not end.listed and (passage, end.block + 1) in tables
                if _is_lead_in(end) or (passage, end.position + 1) in introduced or table_after:
                    lead, lead_block = blocks[-1], end.block
            elif first.kind == "row":
                blocks.append([f"{heading(passage)} {cite}\n\n{_table(group)}".strip()])
            else:
                blocks.append([f"{heading(passage)} {cite}\n\n{first.text}".strip()])
    return [_joined(block) for block in blocks]


def _table(rows: list[Unit]) -> str:
    return "\n".join([*rows[0].header, *(u.text for u in rows)])


def _joined(lines: list[str]) -> str:
    """A quote; or a lead-in and its items: a list right under it, a table after a blank line."""
    text = lines[0]
    for item in lines[1:]:
        text += ("\n" if item.startswith("- ") else "\n\n") + item
    return text


def _runs(units: list[Unit]) -> list[list[Unit]]:
    """Adjacent sentences of one paragraph, and rows of one table, go together."""
    runs: list[list[Unit]] = []
    for unit in units:
        last = runs[-1][-1] if runs else None
        together = (
            last is not None
            and last.block == unit.block
            and last.kind == unit.kind
            and (unit.kind == "row" or (unit.kind == "sentence" and unit.position == last.position + 1))
        )
        if together:
            runs[-1].append(unit)
        else:
            runs.append([unit])
    return runs


def layout(blocks: Sequence[str]) -> list[str]:
    """The blocks as Markdown pieces to stream: several quotes become a list; tables and code stand apart.

    A lead-in with its list is a quote too: in a list of quotes, its items are nested under it.
    """
    bullets = sum(_listable(b) for b in blocks) > 1
    pieces: list[str] = []
    previous_bullet = False
    for block in blocks:
        bullet = bullets and _listable(block)
        separator = "" if not pieces else "\n" if bullet and previous_bullet else "\n\n"
        pieces.append(separator + ("- " + block.replace("\n", "\n  ") if bullet else block))
        previous_bullet = bullet
    return pieces


def _listable(block: str) -> bool:
    """One line of quotes, or a lead-in line with list items under it."""
    return all(line.startswith("- ") for line in block.split("\n")[1:])
