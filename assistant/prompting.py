"""What a chat model reads and how its reply is read: prompt files, passages, history, markers.

Prompts are Markdown files in ``assistant/prompts`` named ``{name}-{version}.md``
(``answer-v1.md``, ``rewrite-v1.md``): a header comment for people, then one
``<!-- role: system -->`` / ``<!-- role: user -->`` line before each message.
They become LangChain chat prompt templates, so a prompt change is a diff of a
file and the version is recorded with every answer.

Passages are shown to the model numbered, each inside ``<passage>`` tags with
its title and section; tag-like text inside a passage is neutralised so a
document cannot close its own passage and speak as the system (the prompt tells
the model that passage text is data, not instructions). The conversation is
shown the same way, its citation markers removed.

A reply is read for its ``[n]`` citations, for the ``NO_ANSWER`` marker a model
starts with when the passages hold no answer, and, for a rewrite, for the one
line that is the standalone question. Used by
:mod:`assistant.answerers.generative`.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from assistant.errors import AssistantError

if TYPE_CHECKING:
    from langchain_core.documents import Document
    from langchain_core.prompts import ChatPromptTemplate

PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"

_ROLE_LINE = re.compile(r"^\s*<!--\s*role:\s*(system|user|assistant)\s*-->\s*$", re.MULTILINE)
_TAG_LIKE = re.compile(r"<\s*+/?\s*+(passages?|conversation|message)\b", re.IGNORECASE)  # possessive: linear on "<   …"
_CITATION = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
_ROLES = {"user": "user", "human": "user", "assistant": "assistant", "ai": "assistant"}


class PromptNotFound(AssistantError):
    """The configured prompt version has no file."""


# -- prompts --------------------------------------------------------------------------------------


def load_prompt(name: str, version: str, directory: Path = PROMPTS_DIR) -> ChatPromptTemplate:
    """The chat prompt stored in ``{directory}/{name}-{version}.md``."""
    path = directory / f"{name}-{version}.md"
    if not path.is_file():
        known = sorted(p.stem for p in directory.glob(f"{name}-*.md"))
        raise PromptNotFound(f"No prompt file {path.name} (prompt version {version!r}); found: {', '.join(known)}")
    return parse_prompt(path.read_text(encoding="utf-8"), origin=path.name)


def parse_prompt(text: str, origin: str = "prompt") -> ChatPromptTemplate:
    from langchain_core.prompts import ChatPromptTemplate

    parts = _ROLE_LINE.split(text)
    # parts = [header, role, body, role, body, ...]
    messages = [(role, body.strip("\n")) for role, body in zip(parts[1::2], parts[2::2], strict=True)]
    if not messages:
        raise AssistantError(f"{origin} has no '<!-- role: system -->' or '<!-- role: user -->' line")
    return ChatPromptTemplate.from_messages([("human" if r == "user" else r, body) for r, body in messages])


# -- what the model sees ----------------------------------------------------------------------------


def neutralise(text: str) -> str:
    """Passage or message text that cannot open or close the tags we wrap it in."""
    return _TAG_LIKE.sub(lambda m: "&lt;" + m.group(0)[1:], text)


def format_passages(documents: Sequence[Document]) -> str:
    """The passages numbered from 1, each inside ``<passage>`` tags with its origin."""
    blocks = []
    for n, doc in enumerate(documents, 1):
        meta = doc.metadata
        attributes = " ".join(
            f'{key}="{html.escape(str(meta.get(key) or ""), quote=True)}"' for key in ("title", "section", "source")
        )
        blocks.append(f'<passage n="{n}" {attributes}>\n{neutralise(doc.page_content.strip())}\n</passage>')
    return "\n\n".join(blocks)


def normalise_history(history: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """``(role, text)`` messages with roles ``user``/``assistant``.

    Accepts ``(role, text)`` messages (roles user/human, assistant/ai) and, when
    the first items are not roles, ``(question, answer)`` turns.
    """
    pairs = [(str(a), str(b)) for a, b in history]
    if all(a.lower() in _ROLES for a, _ in pairs):
        return [(_ROLES[a.lower()], b) for a, b in pairs]
    return [message for q, a in pairs for message in (("user", q), ("assistant", a))]


def format_history(history: Sequence[tuple[str, str]], *, max_messages: int = 6, max_chars: int = 1200) -> str:
    """The last messages of a conversation, citation markers removed, each inside ``<message>`` tags."""
    lines = []
    for role, text in normalise_history(history)[-max_messages:]:
        text = re.sub(r"(?<!\s)\s*" + _CITATION.pattern, "", text).strip()  # tried once per run of spaces
        if len(text) > max_chars:
            text = text[:max_chars].rsplit(" ", 1)[0] + " …"
        lines.append(f'<message role="{role}">\n{neutralise(text)}\n</message>')
    return "\n".join(lines)


def clean_rewrite(text: str, original: str) -> str:
    """The rewritten question, or the original when the model replied with something else."""
    line = next((ln.strip() for ln in text.strip().splitlines() if ln.strip()), "")
    line = re.sub(r"^(standalone question|question)\s*:\s*", "", line, flags=re.IGNORECASE).strip().strip("\"'`").strip()
    if not line or len(line) > max(300, 4 * len(original)):
        return original
    return line


#: How a reply starts when the passages hold no answer (prompt version v2 on): the assistant then abstains.
NO_ANSWER = "NO_ANSWER"
_MARKS = " \t\r\n*`_"  # Markdown emphasis and code marks a model may wrap the marker in


def declares_no_answer(text: str) -> bool | None:
    """Whether a reply beginning with ``text`` says the passages hold no answer; ``None`` while it cannot tell.

    The generative answerer holds back only text that could still become the marker, so an
    answer starting "No, …" or "Each …" streams from its first piece.
    """
    head = text.lstrip(_MARKS)
    if head.startswith(NO_ANSWER):
        return True
    return None if NO_ANSWER.startswith(head) else False


def no_answer_reason(text: str, limit: int = 200) -> str:
    """What a ``NO_ANSWER: …`` reply says the passages lack (empty when it says nothing)."""
    rest = text.lstrip(_MARKS)[len(NO_ANSWER) :]
    line = next((ln for ln in rest.splitlines() if ln.strip(_MARKS + ":-—.")), "")
    line = re.sub(r"\s+", " ", line.strip(_MARKS + ":-—.")).strip()
    return line if len(line) <= limit else line[:limit].rsplit(" ", 1)[0] + " …"


def cited_numbers(text: str) -> set[int]:
    """The passage numbers cited as ``[n]`` or ``[n, m]`` in ``text``."""
    return {int(n) for group in _CITATION.findall(text) for n in group.split(",")}
