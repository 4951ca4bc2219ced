"""Storage functions for users, conversations, answers and ratings.

Every function is keyword-only, takes a SQLModel ``Session``, returns model
objects, and commits what it writes. The path of a question:

1. :func:`add_user_message` stores the question at once (and titles an
   untitled conversation after it);
2. :func:`start_answer` stores a ``pending`` answer that records how it will
   be made (answerer, model, prompt and index versions, rollout features);
3. :func:`finish_answer` or :func:`fail_answer` closes it with its final
   status, tokens, timings and sources (or the error, and any partial text);
   an answer that came with a notice (the model failed and passages are
   quoted instead, or it stopped before the end) keeps it in ``error``.
   :func:`interrupt_stale_answers` closes answers a crashed process left
   pending.

A user reaches conversations and messages only through their own account:
another user's conversation is refused with :class:`Forbidden`, a subclass of
:class:`NotFound` carrying the same message, so the edge can show both alike
without confirming that the conversation exists. Deleting is soft (the
conversation disappears for its owner, its ratings keep counting in the
dashboards) until :func:`purge_deleted` removes it for good (and, on SQLite,
checkpoints the write-ahead log, which would otherwise keep the purged text).

Text people and models write (questions, answers, comments, titles) is stored
through :func:`assistant.text.clean`: PostgreSQL refuses a NUL that SQLite
keeps, and a control character or ANSI escape has no business on a page or in
a log.

Every message records its channel (:data:`~feedback.models.CHANNELS`: the
chat page, the REST API, a batch file, the support bot); an answer takes its
question's unless told otherwise. A question's channel defaults to ``support``
in a support conversation and to ``web`` otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from assistant.text import clean
from feedback.models import (
    CHANNELS,
    KINDS,
    UNASSIGNED,
    Conversation,
    Message,
    Rating,
    Ticket,
    Triage,
    TriageEvent,
    User,
    utcnow,
)

log = logging.getLogger(__name__)

#: Reason tags a rating may carry unless the caller passes its own list (from the settings).
DEFAULT_REASONS = ("incorrect", "incomplete", "outdated", "wrong_sources", "unclear", "too_long", "other")
TITLE_CHARS = 80
MAX_TITLE_CHARS = 200
MAX_COMMENT_CHARS = 4000
#: ``last_seen_at`` is written at most this often, so a page rerun is not a database write.
SEEN_RESOLUTION = timedelta(minutes=5)
EXPORT_FORMAT = "onboard-conversation/1"


class FeedbackError(Exception):
    """Base class of the storage errors: the message is meant for a person."""


class NotFound(FeedbackError):
    """No such conversation or message (or it was deleted)."""


class Forbidden(NotFound):
    """The conversation or message belongs to another user; shown like :class:`NotFound`."""


class InvalidInput(FeedbackError):
    """A value the storage refuses: an empty question, an unknown reason tag, a user message to rate..."""


class InvalidState(FeedbackError):
    """The operation does not fit the message's status, such as finishing an answer twice."""


@dataclass(frozen=True)
class HistoryEntry:
    """A message of a conversation with the rating its owner gave it, if any."""

    message: Message
    rating: Rating | None


# --- users -------------------------------------------------------------------------------------------------------


def get_or_create_user(
    *,
    session: Session,
    subject: str,
    email: str = "",
    name: str = "",
    groups: Iterable[str] = (),
    team: str | None = None,
) -> User:
    """The user with this identity-provider subject, created on first login and kept up to date after."""
    subject = subject.strip()
    if not subject:
        raise InvalidInput("A user needs a subject (the identity provider's id).")
    fields = {"email": email or "", "name": name or "", "groups": sorted(set(groups)),
              "team": (team or "").strip()[:128] or UNASSIGNED}
    user = session.exec(select(User).where(User.subject == subject)).first()
    if user is None:
        session.add(User(subject=subject, **fields))
        try:
            session.commit()
        except IntegrityError:  # created meanwhile by another session: update that row below
            session.rollback()
            if session.exec(select(User).where(User.subject == subject)).first() is None:
                raise
        user = session.exec(select(User).where(User.subject == subject)).one()
    now = utcnow()
    changed = any(getattr(user, key) != value for key, value in fields.items())
    if changed or now - user.last_seen_at >= SEEN_RESOLUTION:
        for key, value in fields.items():
            setattr(user, key, value)
        user.last_seen_at = now
        session.commit()
        session.refresh(user)
    return user


# --- conversations -----------------------------------------------------------------------------------------------


def create_conversation(*, session: Session, user: User, title: str = "", kind: str = "assistant") -> Conversation:
    if kind not in KINDS:
        raise InvalidInput(f"Unknown conversation kind {kind!r}; expected one of {', '.join(KINDS)}.")
    conversation = Conversation(user_id=user.id, title=_clean_title(title), kind=kind)
    session.add(conversation)
    session.commit()
    session.refresh(conversation)
    return conversation


def list_conversations(
    *, session: Session, user: User, kind: str | None = None, limit: int = 100
) -> list[Conversation]:
    """The user's conversations, most recently active first; deleted ones left out."""
    query = select(Conversation).where(Conversation.user_id == user.id, Conversation.deleted_at.is_(None))
    if kind is not None:
        query = query.where(Conversation.kind == kind)
    query = query.order_by(Conversation.updated_at.desc(), Conversation.created_at.desc()).limit(limit)
    return list(session.exec(query).all())


def get_conversation(*, session: Session, user: User, conversation_id: str) -> Conversation:
    """The user's own conversation; :class:`NotFound` if there is none, :class:`Forbidden` if it is another's."""
    conversation = session.get(Conversation, conversation_id)
    if conversation is None or conversation.deleted_at is not None:
        raise NotFound("No such conversation.")
    if conversation.user_id != user.id:
        log.warning("user %s was refused conversation %s of user %s", user.id, conversation.id, conversation.user_id)
        raise Forbidden("No such conversation.")
    return conversation


def rename_conversation(*, session: Session, user: User, conversation_id: str, title: str) -> Conversation:
    conversation = get_conversation(session=session, user=user, conversation_id=conversation_id)
    title = _clean_title(title)
    if not title:
        raise InvalidInput("A conversation needs a title.")
    conversation.title = title
    session.commit()
    session.refresh(conversation)
    return conversation


def delete_conversation(*, session: Session, user: User, conversation_id: str) -> Conversation:
    """Hide the conversation from its owner for good; its rows stay until :func:`purge_deleted`."""
    conversation = get_conversation(session=session, user=user, conversation_id=conversation_id)
    conversation.deleted_at = utcnow()
    session.commit()
    session.refresh(conversation)
    return conversation


def purge_deleted(*, session: Session, before: datetime) -> int:
    """Remove conversations deleted before ``before``, with their messages, ratings and the ratings' triage.

    Returns how many conversations were removed. Problem reports stay (they are
    the reporter's own words to the team); their link to the conversation is cleared.
    On SQLite the freed pages are zeroed (``secure_delete``) and the write-ahead
    log is checkpointed and truncated afterwards: both would otherwise keep the
    purged text on disk for as long as the app runs.
    """
    sqlite = session.get_bind().dialect.name == "sqlite"
    if sqlite:
        session.connection().exec_driver_sql("PRAGMA secure_delete = ON")
    doomed = select(Conversation.id).where(Conversation.deleted_at < before)
    messages = select(Message.id).where(Message.conversation_id.in_(doomed))
    ratings = select(Rating.id).where(Rating.message_id.in_(messages))
    triaged = select(Triage.id).where(Triage.subject == "rating", Triage.subject_id.in_(ratings))
    session.exec(delete(TriageEvent).where(TriageEvent.triage_id.in_(triaged)))
    session.exec(delete(Triage).where(Triage.subject == "rating", Triage.subject_id.in_(ratings)))
    session.exec(delete(Rating).where(Rating.message_id.in_(messages)))
    session.exec(update(Ticket).where(Ticket.conversation_id.in_(doomed)).values(conversation_id=None, message_id=None))
    session.exec(delete(Message).where(Message.conversation_id.in_(doomed)))
    purged = session.exec(delete(Conversation).where(Conversation.deleted_at < before)).rowcount
    session.commit()
    if sqlite:
        _checkpoint(session)
    return purged


def _checkpoint(session: Session) -> None:
    """Copy SQLite's write-ahead log into the database file and truncate it (it holds the purged rows' text)."""
    connection = session.connection()
    busy, _, _ = connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
    connection.exec_driver_sql("PRAGMA secure_delete = OFF")  # the connection goes back to the pool as it came
    session.commit()
    if busy:  # a reader of another process was still using the log: the next purge or checkpoint finishes it
        log.warning("the write-ahead log could not be truncated after the purge (a reader was busy)")


# --- messages ----------------------------------------------------------------------------------------------------


def add_user_message(*, session: Session, user: User, conversation_id: str, content: str,
                     client_key: str | None = None, channel: str | None = None) -> Message:
    """Store a question as typed (:func:`~assistant.text.clean`), before anything is done with it.

    ``client_key`` is the key the page gave the question when it was typed: a question of this person's with
    that key already stored is returned instead of stored again (it was sent again because the database went
    away before saying it was stored). ``channel`` is where it came in (default: ``support`` in a support
    conversation, else ``web``).
    """
    _check_channel(channel)
    if (sent := _sent_before(session, user, client_key)) is not None:
        return sent
    conversation = get_conversation(session=session, user=user, conversation_id=conversation_id)
    return _add_question(session, user, conversation, content, client_key, channel)


def start_conversation(*, session: Session, user: User, content: str, kind: str = "assistant",
                       client_key: str | None = None, channel: str | None = None) -> Message:
    """A new conversation with its first question, written in one transaction (a failure leaves neither);
    ``client_key`` and ``channel`` as for :func:`add_user_message`."""
    if kind not in KINDS:
        raise InvalidInput(f"Unknown conversation kind {kind!r}; expected one of {', '.join(KINDS)}.")
    _check_channel(channel)
    if (sent := _sent_before(session, user, client_key)) is not None:
        return sent
    conversation = Conversation(user_id=user.id, kind=kind)
    session.add(conversation)
    return _add_question(session, user, conversation, content, client_key, channel)


def _check_channel(channel: str | None) -> None:
    if channel is not None and channel not in CHANNELS:
        raise InvalidInput(f"Unknown channel {channel!r}; expected one of {', '.join(CHANNELS)}.")


def _sent_before(session: Session, user: User, client_key: str | None) -> Message | None:
    """This person's question stored under ``client_key``, if any."""
    if not client_key:
        return None
    return session.exec(select(Message).where(Message.user_id == user.id, Message.client_key == client_key,
                                              Message.role == "user")).first()


def _add_question(session: Session, user: User, conversation: Conversation, content: str,
                  client_key: str | None = None, channel: str | None = None) -> Message:
    content = clean(content)
    if not content.strip():
        session.rollback()  # a new conversation is not kept without its question
        raise InvalidInput("The question is empty.")
    if client_key is not None and len(client_key) > 64:
        session.rollback()
        raise InvalidInput("The question's key is longer than 64 characters.")
    message = Message(conversation_id=conversation.id, user_id=user.id, team=user.team, kind=conversation.kind,
                      role="user", content=content, status="complete", client_key=client_key,
                      channel=channel or ("support" if conversation.kind == "support" else "web"))
    if not conversation.title:
        conversation.title = _title_from(content)
    conversation.updated_at = message.created_at
    session.flush()  # the conversation's row first: the message refers to it
    session.add(message)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        if (sent := _sent_before(session, user, client_key)) is not None:
            return sent  # sent twice at once: the other copy was stored first
        raise
    except Exception:
        session.rollback()
        raise
    session.refresh(message)
    return message


def start_answer(
    *,
    session: Session,
    question_id: int,
    answerer: str,
    model: str | None = None,
    prompt_version: str | None = None,
    index_version: int | None = None,
    features: Iterable[str] = (),
    channel: str | None = None,
) -> Message:
    """A ``pending`` answer to the question, recording how it is being made (``channel``: the question's
    unless given)."""
    _check_channel(channel)
    question = session.get(Message, question_id)
    if question is None:
        raise NotFound("No such question.")
    if question.role != "user":
        raise InvalidInput("Only a question can be answered.")
    answer = Message(
        conversation_id=question.conversation_id,
        user_id=question.user_id,
        team=question.team,
        kind=question.kind,
        role="assistant",
        status="pending",
        reply_to=question.id,
        answerer=answerer,
        model=model,
        prompt_version=prompt_version,
        index_version=index_version,
        features=list(features),
        channel=channel or question.channel,
    )
    session.add(answer)
    session.commit()
    session.refresh(answer)
    return answer


def finish_answer(
    *,
    session: Session,
    answer_id: int,
    content: str,
    sources: Sequence[dict] = (),
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    latency_ms: int | None = None,
    ttft_ms: int | None = None,
    abstained: bool = False,
    answerer: str | None = None,
    model: str | None = None,
    prompt_version: str | None = None,
    index_version: int | None = None,
    error: str | None = None,
    interrupted: bool = False,
    band: str | None = None,
) -> Message:
    """Close a pending answer as ``complete`` (or ``abstained``: the handbook did not answer it).

    ``band`` is ``answered``, ``unsure`` or ``abstained`` (default: from ``abstained``).

    ``answerer`` (with its ``model``, which may be None), ``prompt_version`` and
    ``index_version``, when given, replace what :func:`start_answer` recorded: a
    failing chat model may fall back to quoting passages. ``error`` is the
    notice the person was given with the answer (such as that fallback), and
    ``interrupted`` closes an answer the model did not finish (its stream
    broke, or it reached its length limit) as ``interrupted``, with its
    sources and usage.
    """
    provenance = {"prompt_version": prompt_version, "index_version": index_version}
    if answerer is not None:
        provenance |= {"answerer": answerer, "model": model}
    return _close(
        session,
        answer_id,
        **{key: value for key, value in provenance.items() if value is not None or key == "model"},
        status="interrupted" if interrupted else "abstained" if abstained else "complete",
        band=_band(band, abstained),
        content=clean(content),
        error=error,
        sources=[dict(source) for source in sources],
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        latency_ms=latency_ms,
        ttft_ms=ttft_ms,
    )


def fail_answer(
    *,
    session: Session,
    answer_id: int,
    error: str,
    content: str = "",
    interrupted: bool = False,
    latency_ms: int | None = None,
    ttft_ms: int | None = None,
) -> Message:
    """Close a pending answer as ``failed`` (or ``interrupted``), keeping any text already produced."""
    return _close(
        session,
        answer_id,
        status="interrupted" if interrupted else "failed",
        content=clean(content),
        error=error,
        latency_ms=latency_ms,
        ttft_ms=ttft_ms,
    )


#: What :func:`interrupt_stale_answers` records on an answer it closes: the process writing it is gone, or so it seems.
STALE_ANSWER_ERROR = "The answer was interrupted before it finished."


def interrupt_stale_answers(*, session: Session, older_than: timedelta, conversation_id: str | None = None) -> int:
    """Mark ``interrupted`` the answers left pending longer than ``older_than`` (their process died), in one
    conversation or in all."""
    now = utcnow()
    stale = [Message.status == "pending", Message.created_at < now - older_than]
    if conversation_id is not None:
        stale.append(Message.conversation_id == conversation_id)
    result = session.exec(
        update(Message)
        .where(*stale)
        .values(status="interrupted", error=STALE_ANSWER_ERROR, finished_at=now)
    )
    session.commit()
    return result.rowcount


def history(*, session: Session, user: User, conversation_id: str) -> list[HistoryEntry]:
    """The messages of the user's conversation in order, each with the user's rating of it."""
    conversation = get_conversation(session=session, user=user, conversation_id=conversation_id)
    rows = session.exec(
        select(Message, Rating)
        .join(Rating, and_(Rating.message_id == Message.id, Rating.user_id == user.id), isouter=True)
        .where(Message.conversation_id == conversation.id)
        .order_by(Message.id)
    ).all()
    return [HistoryEntry(message=message, rating=rating) for message, rating in rows]


# --- ratings -----------------------------------------------------------------------------------------------------


def rate(
    *,
    session: Session,
    user: User,
    message_id: int,
    thumb: int | bool,
    reasons: Iterable[str] = (),
    comment: str | None = None,
    allowed_reasons: Sequence[str] = DEFAULT_REASONS,
) -> Rating:
    """Set the user's rating of an answer: created the first time, replaced (thumb, reasons, comment) after.

    ``updated_at`` moves only when something changed.
    """
    if isinstance(thumb, bool) or thumb in (0, 1):
        thumb = int(thumb)
    else:
        raise InvalidInput("A rating is a thumb up (1) or down (0).")
    reasons = list(dict.fromkeys(reasons))
    unknown = [reason for reason in reasons if reason not in allowed_reasons]
    if unknown:
        expected = ", ".join(allowed_reasons)
        raise InvalidInput(f"Unknown reason {', '.join(map(repr, unknown))}; expected one of {expected}.")
    comment = clean(comment or "").strip() or None
    if comment and len(comment) > MAX_COMMENT_CHARS:
        raise InvalidInput(f"The comment is longer than {MAX_COMMENT_CHARS} characters.")
    _rateable_answer(session, user, message_id)

    fields = {"thumb": thumb, "reasons": reasons, "comment": comment}
    rating = _rating_of(session, user, message_id)
    if rating is None:
        now = utcnow()
        session.add(Rating(message_id=message_id, user_id=user.id, created_at=now, updated_at=now, **fields))
        try:
            session.commit()
        except IntegrityError:  # the same user rated in another tab meanwhile: update that row
            session.rollback()
            if _rating_of(session, user, message_id) is None:
                raise
        rating = _rating_of(session, user, message_id)
    if any(getattr(rating, key) != value for key, value in fields.items()):
        for key, value in fields.items():
            setattr(rating, key, value)
        rating.updated_at = utcnow()
        session.commit()
    session.refresh(rating)
    return rating


def withdraw_rating(*, session: Session, user: User, message_id: int) -> bool:
    """Remove the user's rating of an answer (the thumb un-selected); whether there was one."""
    _rateable_answer(session, user, message_id)
    rating = session.exec(select(Rating).where(Rating.message_id == message_id, Rating.user_id == user.id)).first()
    if rating is None:
        return False
    session.delete(rating)
    session.commit()
    return True


# --- export ------------------------------------------------------------------------------------------------------


def conversation_export(*, session: Session, user: User, conversation_id: str) -> dict:
    """The user's conversation as plain JSON-ready data, for download."""
    conversation = get_conversation(session=session, user=user, conversation_id=conversation_id)
    entries = history(session=session, user=user, conversation_id=conversation_id)
    return {
        "format": EXPORT_FORMAT,
        "exported_at": utcnow().isoformat(),
        "id": conversation.id,
        "title": conversation.title,
        "kind": conversation.kind,
        "created_at": conversation.created_at.isoformat(),
        "updated_at": conversation.updated_at.isoformat(),
        "messages": [_export_entry(entry) for entry in entries],
    }


# --- helpers -----------------------------------------------------------------------------------------------------


def _clean_title(title: str) -> str:
    return " ".join(clean(title).split())[:MAX_TITLE_CHARS]


def _title_from(question: str) -> str:
    """The first words of a question, on one line, cut at a word."""
    text = " ".join(question.split())
    if len(text) <= TITLE_CHARS:
        return text
    cut = text[: TITLE_CHARS - 1]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut) + "…"


def _close(session: Session, answer_id: int, *, status: str, **fields) -> Message:
    answer = session.get(Message, answer_id)
    if answer is None or answer.role != "assistant":
        raise NotFound("No such answer.")
    if answer.status != "pending" and not _closed_by_the_sweep(answer):
        if answer.status == status and answer.content == fields.get("content", answer.content):
            return answer  # the same closing again: a retry whose first commit landed but was not acknowledged
        raise InvalidState(f"The answer is already {answer.status}.")
    for key, value in fields.items():
        setattr(answer, key, value)
    answer.status = status
    answer.finished_at = utcnow()
    conversation = session.get(Conversation, answer.conversation_id)
    conversation.updated_at = answer.finished_at
    session.commit()
    session.refresh(answer)
    return answer


BANDS = ("answered", "unsure", "abstained")


def _band(band: str | None, abstained: bool) -> str:
    if band is None:
        return "abstained" if abstained else "answered"
    if band not in BANDS or (band == "abstained") != abstained:
        raise InvalidInput(f"Band {band!r} does not fit an answer that {'abstained' if abstained else 'answered'}.")
    return band


def _closed_by_the_sweep(answer: Message) -> bool:
    """Whether :func:`interrupt_stale_answers` closed this answer with nothing in it.

    A page that could not store an answer keeps its text and stores it later
    (after a database outage); if the outage outlasted the sweep's age, the
    sweep closed the row first. The kept text is the answer: it may replace
    that empty record, never an answer that holds text.
    """
    return answer.status == "interrupted" and not answer.content and answer.error == STALE_ANSWER_ERROR


def _rateable_answer(session: Session, user: User, message_id: int) -> Message:
    message = session.get(Message, message_id)
    if message is None:
        raise NotFound("No such answer.")
    get_conversation(session=session, user=user, conversation_id=message.conversation_id)
    if message.role != "assistant":
        raise InvalidInput("Only answers can be rated, not questions.")
    if message.status == "pending":
        raise InvalidState("The answer is not finished yet.")
    return message


def _rating_of(session: Session, user: User, message_id: int) -> Rating | None:
    return session.exec(select(Rating).where(Rating.message_id == message_id, Rating.user_id == user.id)).first()


def _export_entry(entry: HistoryEntry) -> dict:
    message, rating = entry.message, entry.rating
    return {
        "id": message.id,
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "created_at": message.created_at.isoformat(),
        "reply_to": message.reply_to,
        "sources": message.sources,
        "model": message.model,
        "error": message.error,
        "rating": None
        if rating is None
        else {
            "thumb": rating.thumb,
            "reasons": rating.reasons,
            "comment": rating.comment,
            "created_at": rating.created_at.isoformat(),
            "updated_at": rating.updated_at.isoformat(),
        },
    }
