"""What the Streamlit pages share: cached resources, who is using the app, and the chat service bound to them.

With the Help panel and the dashboard views beside it in ``ui/``, the only Streamlit code outside ``pages/``. It
holds:

- the heavy resources (database engine, the assistant with its knowledge
  base, the support desk), made by :mod:`onboard.factories` and cached with
  ``st.cache_resource`` per settings, so every session of the app shares them;
- who is using the app (:func:`auth_secrets`, :func:`identity`): the signed-in
  person from ``st.user`` when ``[auth]`` is configured, else the local
  developer;
- the page's side of the chat: every read and write goes through
  :class:`service.chat.ChatService` as that person (:func:`chat`), as the API's
  and batch's do; what only a page needs stays here: the key that makes a
  question re-sent after a lost acknowledgement count once (:func:`send_key`),
  answers the database did not take yet kept in the session
  (:func:`unsaved_answers`), the line saying what the answer waits for, and
  the streamed text escaped with :func:`safe_markdown` piece by piece;
- the safe-text rules of :mod:`ui.safe_text` (:func:`plain`,
  :func:`safe_markdown`, :func:`safe_url`), here for the pages.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import streamlit as st
from sqlalchemy import Engine
from sqlmodel import Session

from feedback import store
from feedback.models import Conversation, Message, Rating, User
from onboard import factories
from onboard.settings import Settings
from service.access import LOCAL_IDENTITY, Identity, identity_from_claims, pages_for
from service.chat import ASSISTANT_KIND, STALE_ANSWER_AGE, SUPPORT_KIND, ChatService  # noqa: F401  (pages use them)
from service.history import ANSWERED, Turn, history_before  # noqa: F401  (the pages use them)
from service.turns import INTERRUPTED, UNEXPECTED, Closing, Outcome  # noqa: F401  (the page shows these)
from service.turns import save as save_answer
from ui.safe_text import plain, safe_markdown, safe_url, visible, visible_rows  # noqa: F401  (the pages use them)

log = logging.getLogger(__name__)

#: In local mode (no ``[auth]`` in the secrets) every visitor is this one user.
LOCAL_USER = {"subject": LOCAL_IDENTITY.subject, "email": LOCAL_IDENTITY.email, "name": LOCAL_IDENTITY.name,
              "groups": sorted(LOCAL_IDENTITY.groups)}
LOCAL_MODE_NOTICE = "Local mode: no login configured"
CONVERSATION_KIND = ASSISTANT_KIND
MAX_COMMENT_CHARS = store.MAX_COMMENT_CHARS
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


# --- resources ---------------------------------------------------------------------------------------------------


def settings() -> Settings:
    """The settings as configured now (cheap: the resources below are cached per settings)."""
    return Settings()


@st.cache_resource(show_spinner=False)
def _engine(database_url: str, _settings: Settings) -> Engine:
    """The database engine; made once per server, which is when answers left pending by a crash are closed."""
    engine = factories.make_engine(_settings)
    try:
        _chat(engine, _settings).close_stale_answers()
    except Exception:  # the app works without it; the next start tries again
        log.exception("could not close the answers left pending")
    return engine


@st.cache_resource(show_spinner="Loading the handbook…")
def _knowledge_base(key: str, _settings: Settings):
    return factories.shared_knowledge_base(_settings)  # the one the API beside the pages uses too


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


def _chat(engine: Engine, current: Settings) -> ChatService:
    # ``assistant`` and ``support_desk`` are looked up when called: the cached resources above (tests swap them).
    return ChatService(engine=engine, settings=current, assistant_for=lambda features: assistant(features),
                       support=lambda: support_desk() if current.support.enabled else None)


def chat() -> ChatService:
    """The service every question of this page goes through, as every other channel's do (:mod:`service.chat`)."""
    return _chat(engine(), settings())


def assistant(features: Iterable[str] = ()):
    """The assistant, as the given rollout features configure it (the sample handbook is indexed on first start)."""
    current = settings()
    variant = factories.settings_for(current, features)
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
    return ChatService.where(who)


# --- reading a conversation --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatState:
    user: User
    conversations: list[Conversation]
    conversation: Conversation | None
    turns: list[Turn]


def chat_state(conversation_id: str | None) -> ChatState:
    """The user's conversations, newest first, and the turns of the open one (``None``: a new chat)."""
    # A conversation deleted, another person's, or a Help conversation's id in the chat's address opens none.
    user, conversations, conversation, shown = chat().overview(identity(), conversation_id, kind=CONVERSATION_KIND)
    return ChatState(user=user, conversations=conversations, conversation=conversation, turns=shown)


def check_message(text: str | None) -> str | None:
    """Why the message cannot be sent, in the page's words (the draft box is shown below it), or ``None`` if it
    can; an empty message is simply ignored. The service decides (:meth:`ChatService.check`)."""
    if text is None or not text.strip() or chat().check(text) is None:
        return None
    return (f"Your message is {len(text):,} characters long; the limit is {settings().chat.max_message_chars:,}. "
            "It was not sent: shorten it below and send it again.")


# --- conversations and ratings -----------------------------------------------------------------------------------


def store_question(*, conversation_id: str | None, text: str, kind: str = CONVERSATION_KIND,
                   key: str | None = None) -> tuple[str, Message]:
    """Store the question (cleaned) before anything is done with it, in a new conversation if there is none.

    ``key`` (see :func:`send_key`) makes sending the same question again store it once.
    """
    message = chat().store_question(identity(), text, conversation_id=conversation_id, kind=kind,
                                    channel="support" if kind == SUPPORT_KIND else "web", key=key)
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
    chat().rename(identity(), conversation_id, title)


def delete(conversation_id: str) -> None:
    chat().delete(identity(), conversation_id)


def export_json(conversation_id: str) -> str:
    """The user's own conversation as JSON, for download (another user's is refused by the store)."""
    return json.dumps(chat().export(identity(), conversation_id), ensure_ascii=False, indent=1, default=str)


def rate(message_id: int, thumb: int, reasons: Iterable[str] = (), comment: str | None = None) -> Rating:
    return chat().rate(identity(), message_id, thumb, reasons, comment)


def withdraw_rating(message_id: int) -> None:
    chat().withdraw_rating(identity(), message_id)


def set_thumb(message_id: int, thumb: int | None) -> None:
    """What a ``st.feedback`` thumb says: rate the answer, or withdraw the rating when the thumb is un-selected."""
    if thumb is None:
        withdraw_rating(message_id)
    else:
        rate(message_id, thumb)


def report_problem(text: str, *, page: str, conversation_id: str | None = None,
                   message_id: int | None = None) -> int:
    """File a problem report for the person using the app; returns its number."""
    return chat().report_problem(identity(), text, page=page, conversation_id=conversation_id, message_id=message_id)


def support_state() -> tuple[str | None, list[Turn]]:
    """The person's latest support conversation and its turns (none yet: ``(None, [])``)."""
    return chat().latest(identity(), kind=SUPPORT_KIND)


def new_support_conversation() -> str:
    return chat().new_conversation(identity(), kind=SUPPORT_KIND)


def reason_label(reason: str) -> str:
    return reason.replace("_", " ").capitalize()


# --- answering ---------------------------------------------------------------------------------------------------


Writer = Callable[[Iterable[str]], object]


def answer(*, question: Message, history: list[tuple[str, str]], write: Writer | None = None) -> Outcome:
    """Answer a stored question on the page (:meth:`service.chat.ChatService.answer`; a Help question is
    answered by the support bot).

    ``write`` (default ``st.write_stream``) gets the answer's text already
    escaped (:func:`escaped`), with a status line above it while the model is
    awaited (or the database, to store the answer). An answer the database did
    not take is kept in the session (:func:`unsaved_answers`).
    """
    return _kept(chat().answer(identity(), question, history=history, write=escaped(write), status=status_line()))


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
