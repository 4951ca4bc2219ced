"""Cutting a paragraph into sentences, verbatim: used to quote sentences and to index sentence windows."""

from __future__ import annotations

import re

# A sentence ends at . ! or ? (closing quotes and brackets stay with it) before a space and a capital or digit.
_SENTENCE_END = re.compile(r"""[.!?]["'\u201d\u2019)\]]*(?=\s+["'\u201c\u2018(\[*_]*[A-Z0-9])""")
_ABBREVIATIONS = frozenset(
    [
        "e.g.", "i.e.", "vs.", "mr.", "mrs.", "ms.", "dr.", "jr.", "sr.", "st.", "no.", "nos.",
        "approx.", "inc.", "ltd.", "co.", "u.s.", "a.m.", "p.m.", "fig.", "cf.", "dept.",
    ]
)


def split_sentences(text: str) -> list[str]:
    """Sentences of one paragraph, verbatim (common abbreviations do not end a sentence)."""
    sentences: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        end = word = match.start() + 1
        while word > start and not text[word - 1].isspace():  # back over the last word only, not the sentence
            word -= 1
        last_word = text[word:end].lstrip("(\"'*_").lower()
        if last_word in _ABBREVIATIONS or re.fullmatch(r"[a-z]\.", last_word):
            continue
        sentences.append(text[start : match.end()].strip())
        start = match.end()
    rest = text[start:].strip()
    if rest:
        sentences.append(rest)
    return [s for s in sentences if s]
