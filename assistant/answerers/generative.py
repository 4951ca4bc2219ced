"""The generated answer's parts: prompt files, the passages as the model sees them, retries, errors.

Prompts are Markdown files in ``assistant/prompts`` named ``{name}-{version}.md``
(``answer-v1.md``, ``rewrite-v1.md``): a header comment for people, then one
``<!-- role: system -->`` / ``<!-- role: user -->`` line before each message.
They become LangChain chat prompt templates, so a prompt change is a diff of a
file and the version is recorded with every answer.

Passages are shown to the model numbered, each inside ``<passage>`` tags with
its title and section; tag-like text inside a passage is neutralised so a
document cannot close its own passage and speak as the system (the prompt tells
the model that passage text is data, not instructions).

Provider failures are sorted into what to do about them: transient ones
(timeout, connection, 429, 5xx) are retried with exponential backoff and
jitter, honouring ``Retry-After``; the rest fail at once. Either way the person
gets a sentence, and the log and the stored answer get the full error.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tenacity import RetryCallState, wait_exponential_jitter

from assistant.errors import AssistantError

if TYPE_CHECKING:
    from langchain_core.documents import Document
    from langchain_core.prompts import ChatPromptTemplate

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"

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


#: How a reply starts when the passages hold no answer (prompt version v2 on): the turn then abstains.
NO_ANSWER = "NO_ANSWER"
_MARKS = " \t\r\n*`_"  # Markdown emphasis and code marks a model may wrap the marker in


def declares_no_answer(text: str) -> bool | None:
    """Whether a reply beginning with ``text`` says the passages hold no answer; ``None`` while it cannot tell.

    The turn holds back only text that could still become the marker, so an
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


# -- errors -------------------------------------------------------------------------------------------

UNAVAILABLE = "The language model is not available right now; here are the most relevant passages."
CONTENT_FILTER = (
    "The language model's content filter blocked this request; here are the most relevant passages instead."
)
TOO_LONG = "The question and passages were too long for the language model; here are the most relevant passages."
INTERRUPTED = "The answer was interrupted before it was finished, so it may be incomplete."
FILTERED_MIDWAY = "The language model's content filter stopped this answer part-way, so it may be incomplete."
CUT_SHORT = "The answer reached the language model's length limit, so it may be incomplete."
REFUSED = "The language model declined to answer part of this question."
REFUSED_FALLBACK = "The language model declined to answer; here are the most relevant passages."
UNAVAILABLE_SHORT = "The language model is not available right now."
UNCITED = "This answer cites none of the passages below: check it against them before relying on it."
UNKNOWN_SOURCES = "This answer cites {numbers}, which match no passage below: check it against them before relying on it."
#: What the turn says while it waits for the model (see ``Assistant.ask(on_status=...)``).
WAITING = "Waiting for the language model…"
RETRYING = "The language model did not answer; trying again ({attempt} of {attempts})…"


@dataclass(frozen=True)
class Failure:
    """A provider error sorted: may a retry help, and what to tell the person."""

    retryable: bool
    notice: str


def classify(exc: BaseException) -> Failure:
    """Sort an exception raised by a chat model call (LangChain's, the OpenAI SDK's, httpx's or Python's)."""
    import httpx
    import openai
    from langchain_core.exceptions import ContextOverflowError, ModelError

    if _is_content_filter(exc):
        return Failure(False, CONTENT_FILTER)
    if isinstance(exc, ContextOverflowError):
        return Failure(False, TOO_LONG)
    if isinstance(exc, ModelError):
        return Failure(exc.is_retryable, UNAVAILABLE)
    transient = (
        openai.APIConnectionError,  # includes APITimeoutError
        openai.RateLimitError,
        openai.InternalServerError,
        httpx.TransportError,
        TimeoutError,
        ConnectionError,
    )
    if isinstance(exc, transient):
        return Failure(True, UNAVAILABLE)
    if isinstance(exc, openai.APIStatusError):
        return Failure(exc.status_code == 408 or exc.status_code >= 500, UNAVAILABLE)
    return Failure(False, UNAVAILABLE)


def _is_content_filter(exc: BaseException) -> bool:
    code = getattr(exc, "code", None)
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        code = code or body.get("code") or (body.get("error") or {}).get("code")
    return code == "content_filter" or "content management policy" in str(exc)


def describe(exc: BaseException, attempts: int) -> str:
    """The full error for the log and the stored answer."""
    status = getattr(exc, "status_code", None)
    where = f" (HTTP {status})" if status else ""
    tries = f" after {attempts} attempt{'s' if attempts != 1 else ''}"
    return f"{type(exc).__module__}.{type(exc).__qualname__}{where}{tries}: {exc}"


def backoff(initial_s: float, max_s: float) -> Callable[[RetryCallState], float]:
    """Exponential backoff with jitter, or the server's ``Retry-After`` when that is longer (up to ``max_s``)."""
    exponential = wait_exponential_jitter(initial=initial_s, max=max_s, jitter=initial_s)

    def wait(state: RetryCallState) -> float:
        delay = exponential(state)
        exc = state.outcome.exception() if state.outcome else None
        after = retry_after_s(exc)
        return min(max(delay, after or 0.0), max_s)

    return wait


def retry_after_s(exc: BaseException | None) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    value = headers.get("retry-after-ms")
    try:
        if value is not None:
            return float(value) / 1000
        value = headers.get("retry-after")
        return float(value) if value is not None else None
    except ValueError:  # an HTTP date: rare, fall back to our own backoff
        return None
