"""What the Streamlit pages share: cached resources, the path of a chat turn, and safe text.

The only module outside ``pages/`` that imports Streamlit. It holds:

- the heavy resources (database engine, the assistant with its knowledge
  base), made by :mod:`onboard.factories` and cached with ``st.cache_resource``
  per settings, so every session of the app shares them;
- the chat's constants (starter questions, the message size limit);
- who is using the app (:func:`auth_secrets`, :func:`identity`): the signed-in
  person from ``st.user`` when ``[auth]`` is configured, else the local
  developer; every conversation is read and written as that person, questions
  are answered from the documents their audiences allow, and the rollout
  features they get are recorded with each answer;
- reading a conversation (:func:`chat_state`) and the path of one question
  (:func:`store_question`, then :func:`answer`, which runs
  :func:`service.turns.answer_turn`: the question is stored first, then a
  ``pending`` answer, streamed and closed whatever happens); the streamed text
  is escaped with :func:`safe_markdown` piece by piece as it is shown, and a
  line above it says what the turn is waiting for (the model, a retry);
- the helpers that make text written by people and documents safe to show as
  Markdown (:func:`plain`, :func:`safe_markdown`, :func:`safe_url`): no link,
  image, HTML or math from a document or a question reaches the page.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from urllib.parse import urlsplit

import streamlit as st
from sqlalchemy import Engine
from sqlmodel import Session

from assistant.text import clean
from feedback import review, store
from feedback.models import Conversation, Message, Rating, User, utcnow
from onboard import factories
from onboard.settings import Settings
from service.access import LOCAL_IDENTITY, Identity, identity_from_claims, pages_for
from service.rollout import answer_overrides, features_for
from service.turns import INTERRUPTED, UNEXPECTED, Closing, Outcome, answer_turn  # noqa: F401  (the page shows these)
from service.turns import save as save_answer

log = logging.getLogger(__name__)

#: In local mode (no ``[auth]`` in the secrets) every visitor is this one user.
LOCAL_USER = {"subject": LOCAL_IDENTITY.subject, "email": LOCAL_IDENTITY.email, "name": LOCAL_IDENTITY.name,
              "groups": sorted(LOCAL_IDENTITY.groups)}
LOCAL_MODE_NOTICE = "Local mode: no login configured"
CONVERSATION_KIND = "assistant"
SUPPORT_KIND = "support"
MAX_COMMENT_CHARS = store.MAX_COMMENT_CHARS
#: Statuses of an answer that can be rated and is worth sending back to the assistant as history.
ANSWERED = ("complete", "abstained")
STARTUP_FAILED = "The assistant could not start. Please try again in a moment, or tell IT."
NOT_SAVED = "Your question could not be saved, so it was not sent. Please send it again in a moment."
NOT_LOADED = "Your conversations could not be loaded: the database did not answer. Please try again in a moment."
UNSAVED = ("This answer is not saved yet: the database did not answer. It stays on this page and is saved the "
           "next time the page runs after the database is back (keep this tab open).")
#: What deleting a conversation does (a soft delete until the operators' purge: docs/privacy.md, ``onboard db purge``).
DELETE_NOTE = ("Deleting removes the conversation from your list at once. It is erased for good when the "
               "administrators purge deleted conversations, by default 30 days after you delete it; until then "
               "they can still open it.")
DELETE_CONFIRM = "Delete it (there is no undo)"
#: At start, answers pending longer than this are closed as ``interrupted``: the process writing them is gone
#: (a turn gives up on the model after ``retry_budget_s``; streaming a long answer takes a minute or two).
STALE_ANSWER_AGE = timedelta(minutes=10)


# --- resources ---------------------------------------------------------------------------------------------------


def settings() -> Settings:
    """The settings as configured now (cheap: the resources below are cached per settings)."""
    return Settings()


@st.cache_resource(show_spinner=False)
def _engine(database_url: str, _settings: Settings) -> Engine:
    """The database engine; made once per server, which is when answers left pending by a crash are closed."""
    engine = factories.make_engine(_settings)
    try:
        with Session(engine) as session:
            closed = store.interrupt_stale_answers(session=session, older_than=STALE_ANSWER_AGE)
    except Exception:  # the app works without it; the next start tries again
        log.exception("could not close the answers left pending")
    else:
        if closed:
            log.warning("closed %d answer(s) left pending by an earlier run as interrupted", closed)
    return engine


def _history(session: Session, user: User, conversation_id: str) -> list[store.HistoryEntry]:
    """The conversation's history, its answers pending for too long closed first: a crash cut them off.

    The server's start closes them everywhere, but only those old enough then: one restarted within
    ``STALE_ANSWER_AGE`` of the crash leaves the rest to this. Written only when one is found, not on
    every page run.
    """
    entries = store.history(session=session, user=user, conversation_id=conversation_id)
    cutoff = utcnow() - STALE_ANSWER_AGE
    if not any(e.message.status == "pending" and e.message.created_at < cutoff for e in entries):
        return entries
    store.interrupt_stale_answers(session=session, older_than=STALE_ANSWER_AGE, conversation_id=conversation_id)
    log.warning("closed the answers left pending in conversation %s as interrupted", conversation_id)
    session.expire_all()  # the session keeps what it read (expire_on_commit=False): read the closed answers again
    return store.history(session=session, user=user, conversation_id=conversation_id)


@st.cache_resource(show_spinner="Loading the handbook…")
def _knowledge_base(key: str, _settings: Settings):
    return factories.bootstrap_knowledge_base(_settings)


@st.cache_resource(show_spinner=False)
def _assistant(key: str, answer_key: str, _settings: Settings):
    """One assistant per answering configuration (rollout features may change it), sharing one knowledge base."""
    return factories.make_assistant(_settings, _knowledge_base(key, _settings))


@st.cache_resource(show_spinner="Loading the help…")
def _support_desk(key: str, _settings: Settings):
    return factories.make_support_desk(_settings, _knowledge_base(key, _settings), _engine(_settings.database_url,
                                                                                             _settings))


def support_desk():
    """The support bot, its documentation re-indexed first if a file changed."""
    current = settings()
    desk = _support_desk(current.model_dump_json(), current)
    desk.refresh()
    return desk


def embed_texts(texts: list[str]):
    """Vectors of short texts with the knowledge base's own embedding model (knowledge-gap topics)."""
    current = settings()
    embeddings = _knowledge_base(current.model_dump_json(), current).embeddings
    if hasattr(embeddings, "embed_array"):
        return embeddings.embed_array(texts)
    return embeddings.embed_documents(texts)


def engine() -> Engine:
    current = settings()
    return _engine(current.database_url, current)


def assistant(features: Iterable[str] = ()):
    """The assistant, as the given rollout features configure it (the sample handbook is indexed on first start)."""
    current = settings()
    overrides = answer_overrides(features, current.rollout)
    variant = current.model_copy(update={"answer": current.answer.model_copy(update=overrides)}) if overrides else current
    return _assistant(current.model_dump_json(), variant.answer.model_dump_json(), variant)


@contextmanager
def db() -> Iterator[Session]:
    """A database session whose objects stay readable after it closes (pages render them afterwards)."""
    with Session(engine(), expire_on_commit=False) as session:
        yield session


# --- who is using the app ----------------------------------------------------------------------------------------


#: Set by the entry point on every run: a page run without it was opened by its URL before the entry point ever
#: ran in this server (Streamlit then serves ``pages/`` directly, skipping the login and role checks).
_ENTERED = "_onboard_entered"
ENTRY_POINT = "streamlit_app.py"


_WANTED = "_onboard_wanted"


def mark_entered() -> str | None:
    """Note that the entry point ran; returns the page a skipped-over session asked for first, if any."""
    st.session_state[_ENTERED] = True
    return st.session_state.pop(_WANTED, None)


def require_page(page: str) -> Identity:
    """What every page runs first: through the entry point, and only for people whose roles open ``page``."""
    if not st.session_state.get(_ENTERED):
        st.session_state[_WANTED] = page  # the entry point comes back here if this person may open it
        st.switch_page(ENTRY_POINT)  # login, production checks and the navigation happen there
    who = identity()
    if page not in pages_for(who):  # belt and braces: the navigation never offers the page to anyone else
        st.error("Page not found.")
        st.stop()
    return who


class NotSignedIn(Exception):
    """Login is configured but nobody is signed in (the entry point shows the landing page instead)."""


def auth_secrets() -> dict:
    """The secrets as a plain dict; empty without a secrets file (Streamlit raises then)."""
    try:
        return st.secrets.to_dict()
    except Exception:  # noqa: BLE001  (no secrets file at all, or one that does not parse)
        return {}


def login_configured() -> bool:
    """Whether the secrets have an ``[auth]`` section, i.e. people sign in (login mode)."""
    try:
        return bool(st.secrets.get("auth"))
    except Exception:  # noqa: BLE001  (Streamlit raises without a secrets file: no login then)
        return False


def claims() -> dict:
    """The signed-in person's ID-token claims (``st.user``), ``{}`` when nobody is signed in."""
    if not st.user.get("is_logged_in", False):
        return {}
    try:
        return dict(st.user.to_dict())
    except Exception:  # noqa: BLE001  (older st.user without to_dict)
        return dict(st.user)


def identity() -> Identity:
    """Who is using the app on this run: the local developer, or the signed-in person.

    Raises :class:`NotSignedIn` in login mode when nobody is signed in, and
    :class:`~service.access.AccessDenied` for a person who may not use the app.
    """
    if not login_configured():
        return LOCAL_IDENTITY
    found = claims()
    if not found:
        raise NotSignedIn("Please log in.")
    return identity_from_claims(found, settings().access)


def current_user(session: Session) -> User:
    """The stored user of the person using the app (created on their first visit, kept up to date)."""
    who = identity()
    return store.get_or_create_user(session=session, subject=who.subject, email=who.email, name=who.name,
                                    groups=sorted(who.groups), team=who.team)


def retrieval_filter(who: Identity) -> dict:
    """Only the documents this person's audiences may read."""
    return {"audience": sorted(who.audiences)}


# --- reading a conversation --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Turn:
    """A question with the answer shown: its latest unless an earlier one was picked (``showing``)."""

    question: Message
    answer: Message | None = None
    rating: Rating | None = None
    #: Every answer given to the question, oldest first, each with its rating (regenerating adds one).
    answers: tuple[tuple[Message, Rating | None], ...] = ()

    @property
    def attempts(self) -> int:
        return len(self.answers)

    @property
    def shown(self) -> int:
        """Which answer is shown, from 1; 0 when there is none."""
        return next((i for i, (m, _) in enumerate(self.answers, 1) if m is self.answer), 0)

    def showing(self, attempt: int | None) -> Turn:
        """This turn with its ``attempt``-th answer shown (from 1; out of range or ``None``: the latest)."""
        if not self.answers:
            return self
        answer, rating = self.answers[attempt - 1] if attempt and 1 <= attempt <= len(self.answers) else self.answers[-1]
        return replace(self, answer=answer, rating=rating)


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
                if conversation.kind != CONVERSATION_KIND:  # a Help conversation's id in the chat's address
                    raise store.NotFound(conversation_id)
                entries = _history(session, user, conversation_id)
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
            result[index] = Turn(previous.question, message, entry.rating, (*previous.answers, (message, entry.rating)))
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


def store_question(*, conversation_id: str | None, text: str, kind: str = CONVERSATION_KIND,
                   key: str | None = None) -> tuple[str, Message]:
    """Store the question (cleaned) before anything is done with it, in a new conversation if there is none.

    ``key`` (see :func:`send_key`) makes sending the same question again store it once.
    """
    with db() as session:
        user = current_user(session)
        if conversation_id:
            try:
                store.get_conversation(session=session, user=user, conversation_id=conversation_id)
            except store.NotFound:  # deleted in another tab meanwhile
                conversation_id = None
        if conversation_id:
            message = store.add_user_message(session=session, user=user, conversation_id=conversation_id,
                                             content=text, client_key=key)
        else:  # the conversation and its first question in one transaction: a failure leaves no empty conversation
            message = store.start_conversation(session=session, user=user, content=text, kind=kind, client_key=key)
    return message.conversation_id, message


def send_key(text: str) -> str:
    """The key of a question this session is sending: the same for the same text until it is stored.

    When the database goes away during the commit, the page cannot tell whether the question was stored: it
    keeps it as a draft and the person sends it again, with the same key, so the store keeps one copy.
    """
    keys = st.session_state.setdefault("send_keys", {})
    return keys.setdefault(text, uuid.uuid4().hex)


def sent(text: str) -> None:
    """Forget the key of a question that is stored (the same text typed again later is a new question)."""
    st.session_state.get("send_keys", {}).pop(text, None)


def rename(conversation_id: str, title: str) -> None:
    with db() as session:
        store.rename_conversation(session=session, user=current_user(session), conversation_id=conversation_id,
                                  title=title)


def delete(conversation_id: str) -> None:
    with db() as session:
        store.delete_conversation(session=session, user=current_user(session), conversation_id=conversation_id)


def export_json(conversation_id: str) -> str:
    """The user's own conversation as JSON, for download (another user's is refused by the store)."""
    with db() as session:
        exported = store.conversation_export(session=session, user=current_user(session), conversation_id=conversation_id)
    return json.dumps(exported, ensure_ascii=False, indent=1, default=str)


def rate(message_id: int, thumb: int, reasons: Iterable[str] = (), comment: str | None = None) -> Rating:
    with db() as session:
        return store.rate(session=session, user=current_user(session), message_id=message_id, thumb=thumb,
                          reasons=reasons, comment=comment, allowed_reasons=settings().chat.feedback_reasons)


def withdraw_rating(message_id: int) -> None:
    with db() as session:
        store.withdraw_rating(session=session, user=current_user(session), message_id=message_id)


def set_thumb(message_id: int, thumb: int | None) -> None:
    """What a ``st.feedback`` thumb says: rate the answer, or withdraw the rating when the thumb is un-selected."""
    if thumb is None:
        withdraw_rating(message_id)
    else:
        rate(message_id, thumb)


def report_problem(text: str, *, page: str, conversation_id: str | None = None,
                   message_id: int | None = None) -> int:
    """File a problem report for the person using the app; returns its number."""
    with db() as session:
        return review.report_problem(session=session, user=current_user(session), text=clean(text), page=page,
                                     conversation_id=conversation_id, message_id=message_id).id


def support_state() -> tuple[str | None, list[Turn]]:
    """The person's latest support conversation and its turns (none yet: ``(None, [])``)."""
    with db() as session:
        user = current_user(session)
        latest = store.list_conversations(session=session, user=user, kind=SUPPORT_KIND, limit=1)
        if not latest:
            return None, []
        entries = _history(session, user, latest[0].id)
    return latest[0].id, turns(entries)


def new_support_conversation() -> str:
    with db() as session:
        return store.create_conversation(session=session, user=current_user(session), kind=SUPPORT_KIND).id


def reason_label(reason: str) -> str:
    return reason.replace("_", " ").capitalize()


# --- answering ---------------------------------------------------------------------------------------------------


Writer = Callable[[Iterable[str]], object]


def answer(*, question: Message, history: list[tuple[str, str]], write: Writer | None = None) -> Outcome:
    """Answer a stored question on the page; see :func:`service.turns.answer_turn`.

    ``write`` (default ``st.write_stream``) gets the answer's text already
    escaped (:func:`escaped`), with a status line above it while the model is
    awaited (or the database, to store the answer). An answer the database did
    not take is kept in the session (:func:`unsaved_answers`).
    """
    who = identity()
    features = features_for(who, settings().rollout)
    return _kept(answer_turn(engine=engine(), assistant=lambda: assistant(features), question=question,
                             history=history, write=escaped(write), where=retrieval_filter(who), features=features,
                             status=status_line()))


def answer_support(*, question: Message, history: list[tuple[str, str]], write: Writer | None = None) -> Outcome:
    """Answer a question about the app from its documentation (admin pages only for admins), as :func:`answer`."""
    return _kept(answer_turn(engine=engine(), assistant=lambda: support_desk().assistant, question=question,
                             history=history, write=escaped(write), where=retrieval_filter(identity()),
                             status=status_line()))


#: Where the session keeps the answers it could not store yet (:func:`unsaved_answers`).
UNSAVED_KEY = "_onboard_unsaved_answers"


def _kept(outcome: Outcome) -> Outcome:
    if outcome.unsaved is not None:
        st.session_state.setdefault(UNSAVED_KEY, {})[outcome.unsaved.answer_id] = outcome.unsaved
    return outcome


def unsaved_answers() -> dict[int, Closing]:
    """The answers this session showed but could not store yet, by answer id (shown from here until stored)."""
    return st.session_state.get(UNSAVED_KEY, {})


def save_unsaved() -> None:
    """Store the answers this session could not store yet: one attempt each, on every page run, until it works."""
    kept = st.session_state.get(UNSAVED_KEY)
    for answer_id, closing in list((kept or {}).items()):
        try:
            if save_answer(engine(), closing) is None:
                continue  # the database is still away: next run
            log.warning("answer %s was stored on a later page run", answer_id)
        except Exception:  # refused, e.g. closed meanwhile as interrupted: nothing more to do
            log.exception("answer %s could not be stored", answer_id)
        del kept[answer_id]


def escaped(write: Writer | None = None) -> Writer:
    """``write`` (default ``st.write_stream``) showing every streamed piece through :func:`safe_markdown`.

    Every bracket, angle bracket, dollar sign and lone backslash of each piece
    is escaped, so a link or image split across pieces is never live, not
    even while it streams. Piece by piece gives the escaped whole, except
    that an escape the text already has (``\\$``) split between two pieces
    shows its backslash until the answer is shown again from the store.
    """

    def write_escaped(deltas: Iterable[str]):
        return (write or st.write_stream)(safe_markdown(delta) for delta in deltas)

    return write_escaped


def status_line() -> Callable[[str | None], None]:
    """A line on the page saying what the answer is waiting for; ``None`` clears it."""
    line = st.empty()

    def show(text: str | None) -> None:
        if text:
            line.caption(f":material/hourglass_top: {plain(text)}")
        else:
            line.empty()

    return show


# --- safe text ---------------------------------------------------------------------------------------------------

_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
#: An escape already made, or a character to escape: a backslash, bracket, angle bracket, dollar sign, or the
#: ``&`` of a character reference (``&#64;`` is ``@``: references are shown as written, so none spells out markup).
_ACTIVE = re.compile(r"(\\[!-/:-@\[-`{-~])|([\\\[\]<>$]|&(?=#[0-9]{1,7};|#[xX][0-9a-fA-F]{1,6};|[A-Za-z][A-Za-z0-9]{1,31};))")
_SAFE_SCHEMES = ("http", "https")
#: Characters that reorder the text around them: bidirectional embeddings, overrides, isolates and marks
#: ("invoice\u202efdp.exe" shows as "invoiceexe.pdf"). Whatever users and documents write is shown without them.
_DIRECTION = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


#: Where GitHub-flavoured Markdown would make a link of plain text (Streamlit's renderer, remark-gfm, does it
#: after escapes are resolved, so escaping does not stop it): the ``//`` after a scheme's colon, the dot after
#: ``www`` and an ``@`` (e-mail, ``mailto:``, ``xmpp:``), each possibly written with a backslash escape. A WORD
#: JOINER (U+2060, invisible, no break) put there breaks every literal-autolink rule of mdast-util-gfm-autolink-
#: literal and micromark-extension-gfm-autolink-literal, which need those characters side by side.
_AUTOLINK = re.compile(r"(?<=:)(?=\\?/\\?/)|(?i:(?<=www))(?=\\?\.)|(?<!\\)(?=\\?@)")
_JOINER = "\u2060"


def visible(text: object) -> str:
    """``text`` as it may be shown: cleaned (:func:`assistant.text.clean`: no control characters, ANSI escapes or
    lone surrogates, whatever was stored before that rule), without the characters that would show it in
    another order than it is stored."""
    return _DIRECTION.sub("", clean(str(text)))


def _unlinked(text: str) -> str:
    """``text`` with a word joiner where Markdown would see a bare URL, ``www.`` address or e-mail address."""
    return _AUTOLINK.sub(_JOINER, text)


def visible_rows(rows):
    """A table's rows (dicts, or a DataFrame) with :func:`visible` text in every cell."""
    if hasattr(rows, "map"):
        return rows.map(lambda v: visible(v) if isinstance(v, str) else v)
    return [{k: visible(v) if isinstance(v, str) else v for k, v in row.items()} for row in rows]


def plain(text: str) -> str:
    """Markdown that shows ``text`` exactly as written (:func:`visible`): every punctuation mark escaped, line
    breaks kept, and no bare URL, ``www.`` or e-mail address made a link (:data:`_AUTOLINK`)."""
    return "  \n".join(_PUNCTUATION.sub(r"\\\1", line) for line in _unlinked(visible(text)).splitlines())


def safe_markdown(text: str) -> str:
    """Markdown written by a document or a model, with its links, images, HTML and math shown as text.

    Backslashes, brackets, angle brackets, dollar signs and the ``&`` of
    character references are escaped, so no ``[..](..)``, ``![..](..)``,
    reference link, footnote, autolink, tag or formula is ever parsed, and a
    word joiner keeps bare URLs, ``www.`` and e-mail addresses from becoming
    links; emphasis, lists, tables and code still render; control characters
    and characters that reorder text (:func:`visible`) are dropped.
    They are escaped inside code too (where the backslash then shows): telling
    code from text the way the browser's parser does (fences inside list
    items, unequal fences) is easy to get wrong, and a mistake there would
    let a link or an image through. An escape the text already has (``\\$10``,
    ``snake\\_case``) is kept: it shows its character, never markup, and
    escaping its backslash again would show the backslash.
    """
    return _ACTIVE.sub(lambda m: m.group(1) or "\\" + m.group(2), _unlinked(visible(text)))


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
