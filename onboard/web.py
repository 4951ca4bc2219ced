"""What the Streamlit pages share: cached resources, the path of a chat turn, and safe text.

The only module outside ``pages/`` that imports Streamlit. It holds:

- the heavy resources (database engine, the assistant with its knowledge
  base), made by :mod:`onboard.factories` and cached with ``st.cache_resource``
  per settings, so every session of the app shares them;
- the chat's constants (starter questions, the message size limit, the one
  local user until login exists);
- reading a conversation (:func:`chat_state`) and the path of one question
  (:func:`store_question`, then :func:`answer`): the question is stored
  first, then a ``pending`` answer, which is streamed through the writer the
  page gives and closed as complete, abstained, failed or interrupted whatever
  happens; the traceback goes to the log, a sentence to the person;
- the helpers that make text written by people and documents safe to show as
  Markdown (:func:`plain`, :func:`safe_markdown`, :func:`safe_url`): no link,
  image, HTML or math from a document or a question reaches the page.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import streamlit as st
from sqlalchemy import Engine
from sqlmodel import Session

from assistant.errors import AssistantError
from feedback import store
from feedback.models import Conversation, Message, Rating, User
from onboard import factories
from onboard.settings import Settings

log = logging.getLogger(__name__)

#: Until login exists every visitor is this one user.
LOCAL_USER = {"subject": "local", "name": "Local user"}
LOCAL_MODE_NOTICE = "Local mode: no login configured"
CONVERSATION_KIND = "assistant"
MAX_COMMENT_CHARS = store.MAX_COMMENT_CHARS
#: Statuses of an answer that can be rated and is worth sending back to the assistant as history.
ANSWERED = ("complete", "abstained")
UNEXPECTED = "Something went wrong while answering. Your question is saved: try again in a moment."
INTERRUPTED = "The answer was interrupted before it finished."
STARTUP_FAILED = "The assistant could not start. Please try again in a moment, or tell IT."


# --- resources ---------------------------------------------------------------------------------------------------


def settings() -> Settings:
    """The settings as configured now (cheap: the resources below are cached per settings)."""
    return Settings()


@st.cache_resource(show_spinner=False)
def _engine(database_url: str, _settings: Settings) -> Engine:
    return factories.make_engine(_settings)


@st.cache_resource(show_spinner="Loading the handbook…")
def _assistant(key: str, _settings: Settings):
    from onboard.cli import bootstrap

    bootstrap(_settings)
    return factories.make_assistant(_settings)


def engine() -> Engine:
    current = settings()
    return _engine(current.database_url, current)


def assistant():
    """The assistant (the sample handbook is indexed on the very first start)."""
    current = settings()
    return _assistant(current.model_dump_json(), current)


@contextmanager
def db() -> Iterator[Session]:
    """A database session whose objects stay readable after it closes (pages render them afterwards)."""
    with Session(engine(), expire_on_commit=False) as session:
        yield session


def current_user(session: Session) -> User:
    return store.get_or_create_user(session=session, **LOCAL_USER)


# --- reading a conversation --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Turn:
    """A question with its latest answer (a regenerated answer replaces the earlier ones on screen)."""

    question: Message
    answer: Message | None = None
    rating: Rating | None = None
    attempts: int = 0


@dataclass(frozen=True)
class ChatState:
    user: User
    conversations: list[Conversation]
    conversation: Conversation | None
    turns: list[Turn]


def chat_state(conversation_id: str | None) -> ChatState:
    """The user's conversations, newest first, and the turns of the open one (``None``: a new chat)."""
    with db() as session:
        user = current_user(session)
        conversations = store.list_conversations(session=session, user=user, kind=CONVERSATION_KIND)
        conversation, entries = None, []
        if conversation_id:
            try:
                conversation = store.get_conversation(session=session, user=user, conversation_id=conversation_id)
                entries = store.history(session=session, user=user, conversation_id=conversation_id)
            except store.NotFound:
                conversation = None
    return ChatState(user=user, conversations=conversations, conversation=conversation, turns=turns(entries))


def turns(entries: Iterable[store.HistoryEntry]) -> list[Turn]:
    """Group a conversation's messages into questions, each with its latest answer."""
    result: list[Turn] = []
    by_question: dict[int, int] = {}
    for entry in entries:
        message = entry.message
        if message.role == "user":
            by_question[message.id] = len(result)
            result.append(Turn(question=message))
        elif message.reply_to in by_question:
            index = by_question[message.reply_to]
            previous = result[index]
            result[index] = Turn(previous.question, message, entry.rating, previous.attempts + 1)
    return result


def history_before(shown: list[Turn], question_id: int | None = None) -> list[tuple[str, str]]:
    """The answered turns before ``question_id`` (all of them if ``None``), as the assistant takes them."""
    pairs: list[tuple[str, str]] = []
    for turn in shown:
        if turn.question.id == question_id:
            break
        if turn.answer is not None and turn.answer.status in ANSWERED and turn.answer.content:
            pairs += [("user", turn.question.content), ("assistant", turn.answer.content)]
    return pairs


def check_message(text: str | None) -> str | None:
    """Why the message cannot be sent, or ``None`` if it can (an empty message is simply ignored)."""
    limit = settings().chat.max_message_chars
    if text is not None and len(text) > limit:
        return (
            f"Your message is {len(text):,} characters long; the limit is {limit:,}. "
            "It was not sent: shorten it below and send it again."
        )
    return None


# --- conversations and ratings -----------------------------------------------------------------------------------


def store_question(*, conversation_id: str | None, text: str) -> tuple[str, Message]:
    """Store the question before anything is done with it, in a new conversation if there is none."""
    with db() as session:
        user = current_user(session)
        if conversation_id:
            try:
                store.get_conversation(session=session, user=user, conversation_id=conversation_id)
            except store.NotFound:  # deleted in another tab meanwhile
                conversation_id = None
        if not conversation_id:
            conversation_id = store.create_conversation(session=session, user=user, kind=CONVERSATION_KIND).id
        message = store.add_user_message(session=session, user=user, conversation_id=conversation_id, content=text)
    return conversation_id, message


def rename(conversation_id: str, title: str) -> None:
    with db() as session:
        store.rename_conversation(session=session, user=current_user(session), conversation_id=conversation_id,
                                  title=title)


def delete(conversation_id: str) -> None:
    with db() as session:
        store.delete_conversation(session=session, user=current_user(session), conversation_id=conversation_id)


def rate(message_id: int, thumb: int, reasons: Iterable[str] = (), comment: str | None = None) -> Rating:
    with db() as session:
        return store.rate(session=session, user=current_user(session), message_id=message_id, thumb=thumb,
                          reasons=reasons, comment=comment, allowed_reasons=settings().chat.feedback_reasons)


def reason_label(reason: str) -> str:
    return reason.replace("_", " ").capitalize()


# --- answering ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """How a turn ended: the stored answer (``None`` if none could be stored), its status, what to tell."""

    answer_id: int | None
    status: str
    error: str | None = None
    notice: str | None = None


def answer(
    *, question: Message, history: list[tuple[str, str]], write: Callable[[Iterable[str]], object]
) -> Outcome:
    """Answer a stored question: store a pending answer, stream it through ``write``, then close it.

    ``write`` is ``st.write_stream`` in the page. An error closes the answer as
    ``failed`` with a sentence for the person (returned too; the traceback is
    logged). Anything that is not an ``Exception`` (Streamlit stopping or
    rerunning the script, a shutdown) closes it as ``interrupted`` and is
    raised again. Either way the text produced so far is kept.
    """
    try:
        bot = assistant()
        with db() as session:
            pending = store.start_answer(session=session, question_id=question.id, **_provenance(bot))
    except Exception as exc:
        log.exception("could not start answering question %s", question.id)
        return Outcome(None, "failed", error=_describe(exc)[0])
    clock = _Clock()
    try:
        stream = bot.ask(question.content, history=history)
        write(clock.record(stream))
        return _close(pending.id, stream.answer, clock, question.id)
    except Exception as exc:
        log.exception("answering question %s failed", question.id)
        message, stored = _describe(exc)
        _fail(pending.id, error=stored, clock=clock)
        return Outcome(pending.id, "failed", error=message)
    except BaseException:
        log.warning("answering question %s was interrupted", question.id)
        _fail(pending.id, error=INTERRUPTED, clock=clock, interrupted=True)
        raise


def _close(answer_id: int, result, clock: _Clock, question_id: int) -> Outcome:
    """Store the finished answer (or, if the answerer gave up without any text, its failure)."""
    if result.error:  # the full error is for the log; the person gets the notice
        log.error("answering question %s: %s", question_id, result.error)
    if result.error and not result.text:
        message = result.notice or UNEXPECTED
        _fail(answer_id, error=message, clock=clock)
        return Outcome(answer_id, "failed", error=message)
    with db() as session:
        done = store.finish_answer(
            session=session,
            answer_id=answer_id,
            content=result.text,
            sources=[as_dict(citation) for citation in result.citations],  # all shown to the answerer
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
            latency_ms=_int(result.latency_ms) if result.latency_ms is not None else clock.latency_ms(),
            ttft_ms=_int(result.ttft_ms) if result.ttft_ms is not None else clock.ttft_ms(),
            abstained=bool(result.abstained),
            answerer=result.answerer,
            model=result.model,
            prompt_version=result.prompt_version,
            index_version=result.index_version,
        )
    return Outcome(done.id, done.status, notice=result.notice)


def _provenance(bot) -> dict:
    """How the answer is meant to be made, recorded on the pending answer before it starts.

    ``finish_answer`` then records what actually made it (a failing chat model
    falls back to the extractive answer).
    """
    from assistant.answering import EXTRACTIVE_VERSION

    config = bot.config
    if config.mode == "llm":
        model = config.azure_deployment if config.azure_endpoint and config.azure_deployment else config.model
        info = {"answerer": "llm", "model": model, "prompt_version": config.prompt_version}
    else:
        info = {"answerer": "extractive", "prompt_version": EXTRACTIVE_VERSION}
    try:
        info["index_version"] = bot.knowledge_base.store.version
    except Exception:  # the answer itself will say whether the index is reachable
        log.warning("could not read the index version", exc_info=True)
    return info


def _describe(exc: Exception) -> tuple[str, str]:
    """What to show the person, and what to store with the failed answer."""
    if isinstance(exc, (AssistantError, store.FeedbackError)):
        return str(exc), str(exc)
    return UNEXPECTED, f"{UNEXPECTED} ({type(exc).__name__})"


def _fail(answer_id: int, *, error: str, clock: _Clock, interrupted: bool = False) -> None:
    try:
        with db() as session:
            store.fail_answer(session=session, answer_id=answer_id, error=error, content=clock.text(),
                              interrupted=interrupted, latency_ms=clock.latency_ms(), ttft_ms=clock.ttft_ms())
    except Exception:
        log.exception("could not record the failure of answer %s", answer_id)


class _Clock:
    """Keeps the text streamed so far and when its first piece arrived."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.first: float | None = None
        self.parts: list[str] = []

    def record(self, deltas: Iterable[str]) -> Iterator[str]:
        for delta in deltas:
            if self.first is None:
                self.first = time.perf_counter()
            self.parts.append(delta)
            yield delta

    def text(self) -> str:
        return "".join(self.parts)

    def latency_ms(self) -> int:
        return _int((time.perf_counter() - self.started) * 1000)

    def ttft_ms(self) -> int | None:
        return None if self.first is None else _int((self.first - self.started) * 1000)


def _int(value) -> int:
    return int(round(value))


def as_dict(obj) -> dict:
    """A citation (dataclass, pydantic model, named tuple or mapping) as a JSON-ready dict."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if hasattr(obj, "_asdict"):
        return dict(obj._asdict())
    return dict(obj)


# --- safe text ---------------------------------------------------------------------------------------------------

_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
_ACTIVE = re.compile(r"([\\\[\]<>$])")
_SAFE_SCHEMES = ("http", "https")


def plain(text: str) -> str:
    """Markdown that shows ``text`` exactly as written: every punctuation mark escaped, line breaks kept."""
    return "  \n".join(_PUNCTUATION.sub(r"\\\1", line) for line in str(text).splitlines())


def safe_markdown(text: str) -> str:
    """Markdown written by a document or a model, with its links, images, HTML and math shown as text.

    Backslashes, brackets, angle brackets and dollar signs are escaped, so no
    ``[..](..)``, ``![..](..)``, reference link, footnote, autolink, tag or
    formula is ever parsed; emphasis, lists, tables and code still render.
    They are escaped inside code too (where the backslash then shows): telling
    code from text the way the browser's parser does (fences inside list
    items, unequal fences) is easy to get wrong, and a mistake there would
    let a link or an image through.
    """
    return _ACTIVE.sub(r"\\\1", str(text))


def safe_url(url: str | None) -> str | None:
    """The URL if it is a plain web address (``http``/``https``), else ``None`` (``javascript:`` and the like)."""
    if not url or not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme.lower() not in _SAFE_SCHEMES or not parts.netloc:
        return None
    return url.strip()
