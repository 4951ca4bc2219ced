"""Split a document's Markdown into passages that follow its headings.

Each chunk is the text under one heading (code blocks and tables kept whole
where they fit), carries the path of headings above it (``section``), and is
cut further, at paragraph and sentence boundaries, only when it is longer than
the embedding model can read. Chunk ids are derived from the source path and
the chunk's content, so indexing the same file twice yields the same ids.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from langchain_text_splitters import RecursiveCharacterTextSplitter

from assistant.sentences import split_sentences

_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+)$")  # closing #s stripped after: linear on long lines
_FENCE_OPEN = re.compile(r"^[ \t]*(`{3,}|~{3,})")
_TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$")
_TABLE_SEPARATOR = re.compile(r"^\s*\|?[\s:|-]*-[\s:|-]*\|?\s*$")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")


@dataclass(frozen=True)
class Chunk:
    """One passage of a document."""

    id: str
    text: str
    section: str
    index: int

    def embedding_text(self, title: str) -> str:
        """What the embedding model and keyword index read: headings, then the passage."""
        return passage_text(title, self.section, self.text)


def passage_text(title: str, section: str, text: str) -> str:
    """A passage preceded by its heading path, as it is embedded and keyword-indexed."""
    heading = " > ".join(part for part in (title, section) if part)
    return f"{heading}\n\n{text}" if heading else text


def search_keys(text: str, sentences: int = 2, min_words: int = 5) -> list[str]:
    """Smaller pieces of a passage, each embedded on its own so a question can find the passage through them.

    A passage's one vector averages everything it says; a question about one
    sentence of it, or one row of its table, matches that piece far better
    (the dense score of a passage is the best of its own and its keys').
    Keys are each table row (without its header) and every run of
    ``sentences`` consecutive sentences of each paragraph with at least
    ``min_words`` words (code blocks are not cut into sentences); a key
    equal to the whole passage is left out.
    Measured on the 18F set: see ``assistant.retrieval``.
    """
    if sentences <= 0:
        return []
    keys: list[str] = []
    whole = " ".join(text.split())
    lines, fence = [], None
    for line in text.split("\n"):  # code blocks are no sentences: blanked out
        fence, toggled = code_fence(line, fence)
        lines.append("" if fence is not None or toggled else line)
    text = "\n".join(lines)
    for i in range(len(lines) - 1):  # rows below a header and its separator line
        if _TABLE_ROW.match(lines[i]) and "|" in lines[i + 1] and _TABLE_SEPARATOR.match(lines[i + 1]):
            j = i + 2
            while j < len(lines) and _TABLE_ROW.match(lines[j]):
                keys.append(lines[j].strip())
                j += 1
    for block in _PARAGRAPH_BREAK.split(text):
        block = block.strip()
        if not block or _TABLE_ROW.match(block.split("\n", 1)[0]) or len(block.split()) < min_words:
            continue
        found = split_sentences(" ".join(block.split()))
        for start in range(max(1, len(found) - sentences + 1)):
            window = " ".join(found[start : start + sentences])
            if window != whole:
                keys.append(window)
    return list(dict.fromkeys(keys))


def locate(text: str, piece: str, start: int = 0) -> tuple[int, int] | None:
    """Where ``piece`` (a search key or a quotable unit: the passage's words with its whitespace collapsed) sits in
    ``text``.

    The first match at or after character ``start``, as ``(begin, end)`` character offsets into
    ``text``, whatever whitespace (or ``>`` of a block quote) ``text`` has between the words, and not
    inside a longer word; ``None`` when it is not there.
    """
    words = piece.split()
    if not words:
        return None
    pattern = r"(?:\s|>)+".join(map(re.escape, words))
    pattern = (r"\b" if re.match(r"\w", words[0]) else "") + pattern + (r"\b" if re.search(r"\w$", words[-1]) else "")
    found = re.compile(pattern).search(text, start)
    return found.span() if found else None


def chunk_id(source: str, section: str, text: str) -> str:
    digest = hashlib.sha256(f"{source}\x1f{section}\x1f{text}".encode())
    return digest.hexdigest()[:32]


def code_fence(line: str, fence: str | None) -> tuple[str | None, bool]:
    """The code fence open after ``line`` (``fence`` before it; None: none), and whether ``line`` opens or closes one."""
    match = _FENCE_OPEN.match(line)
    if match is None:
        return fence, False
    marker = match.group(1)
    if fence is None:
        return marker, True
    if marker[0] == fence[0] and len(marker) >= len(fence) and not line.strip()[len(marker) :]:
        return None, True
    return fence, True


def sections(markdown: str) -> Iterator[tuple[list[str], str]]:
    """Yield ``(heading path, body)`` for each heading's text, ignoring ``#`` in code."""
    path: list[tuple[int, str]] = []
    body: list[str] = []
    fence: str | None = None

    def flush() -> tuple[list[str], str]:
        return [title for _, title in path], "\n".join(body).strip()

    for line in markdown.splitlines():
        fence, _ = code_fence(line, fence)
        heading = None if fence else _HEADING.match(line)
        if heading is None:
            body.append(line)
            continue
        yield flush()
        body = []
        level = len(heading.group(1))
        path = [(lvl, title) for lvl, title in path if lvl < level]
        title = heading.group(2).rstrip(" \t#").strip() or heading.group(2).strip()
        path.append((level, title))
    yield flush()


def chunk_markdown(
    markdown: str,
    *,
    source: str,
    title: str,
    count_tokens: Callable[[str], int],
    max_tokens: int = 220,
    overlap_tokens: int = 30,
) -> list[Chunk]:
    """Chunks of ``markdown`` in reading order, each at most ``max_tokens`` long."""
    # Also at most MAX_CHARS_PER_TOKEN characters a token: the tokenizer counts a word over 100 characters as
    # one token and whitespace as none, so a run of either would otherwise make a megabyte chunk.
    count_tokens = _capped_by_length(count_tokens)
    chunks: list[Chunk] = []
    seen: set[str] = set()
    for headings, body in sections(markdown):
        if not body:
            continue
        # The document title is usually the first H1; do not repeat it in the path.
        if headings and headings[0] == title:
            headings = headings[1:]
        section = " > ".join(headings)
        budget = max(max_tokens - count_tokens(f"{title} > {section}"), max_tokens // 2)
        pieces = [body] if count_tokens(body) <= budget else _split(body, budget, overlap_tokens, count_tokens)
        for piece in pieces:
            piece = piece.strip()
            cid = chunk_id(source, section, piece)
            if not piece or cid in seen:
                continue
            seen.add(cid)
            chunks.append(Chunk(id=cid, text=piece, section=section, index=len(chunks)))
    return chunks


MAX_CHARS_PER_TOKEN = 20  # prose runs at 4 to 6; 18F's widest padded table at 11


def _capped_by_length(count_tokens: Callable[[str], int]) -> Callable[[str], int]:
    def count(text: str) -> int:
        return max(count_tokens(text), -(-len(text) // MAX_CHARS_PER_TOKEN))

    return count


def _piece_tokens(piece: str, count_tokens: Callable[[str], int]) -> int:
    """A blank piece counts as one token, or such pieces pile up in the merge window (quadratic in LangChain's
    merge: seconds for a page of space runs); a one-character piece is not tokenised (a megabyte-long word is
    cut into a million of them)."""
    if len(piece) < 2 or piece.isspace():
        return 1 if piece else 0
    return count_tokens(piece) or 1


def _split(text: str, size: int, overlap: int, count_tokens: Callable[[str], int]) -> list[str]:
    splitter = RecursiveCharacterTextSplitter(
        chunk_size=size,
        chunk_overlap=min(overlap, size // 2),
        length_function=lambda text: _piece_tokens(text, count_tokens),
        separators=["\n\n", "\n", ". ", "; ", ", ", " ", ""],
        keep_separator="end",
    )
    return splitter.split_text(text)
