"""What admins do with feedback: triage thumbs down and problem reports, read a whole conversation, export.

Triage keeps one current state per thumbs down or ticket (status, owner, note)
and appends every change to its history. Problem reports are stored here too:
anyone may file one, only admins read them. The callers (the dashboard page)
check that the person is an admin; these functions record who acted. Opening
someone's conversation and exporting answers (:func:`export_for_admin`) leave
a row in the audit trail (:mod:`feedback.audit`) before the content is read.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import String, and_, func, literal, select
from sqlalchemy.orm import aliased
from sqlmodel import Session

from feedback import audit
from feedback.analytics import Filters, answer_conditions, rating_conditions
from feedback.models import (
    TRIAGE_STATUSES,
    TRIAGE_SUBJECTS,
    Conversation,
    Message,
    Rating,
    Ticket,
    Triage,
    TriageEvent,
    User,
    utcnow,
)
from feedback.store import InvalidInput, NotFound

log = logging.getLogger(__name__)

MAX_NOTE_CHARS = 4000
MAX_TICKET_CHARS = 4000
#: The fields of the CSV export, in order.
CSV_FIELDS = (
    "answer_id", "conversation_id", "asked_at", "team", "question", "answer", "status", "sources", "answerer",
    "model", "prompt_version", "features", "input_tokens", "output_tokens", "latency_ms", "ttft_ms", "thumb",
    "reasons", "comment",
)


# --- triage ----------------------------------------------------------------------------------------------------------


def set_triage(
    *,
    session: Session,
    actor: User,
    subject: str,
    subject_id: int,
    status: str,
    owner: str = "",
    note: str = "",
) -> Triage:
    """Set the status, owner and note of a thumbs down or a ticket, and append the change to its history."""
    if subject not in TRIAGE_SUBJECTS:
        raise InvalidInput(f"Unknown triage subject {subject!r}.")
    if status not in TRIAGE_STATUSES:
        raise InvalidInput(f"Unknown status {status!r}; expected one of {', '.join(TRIAGE_STATUSES)}.")
    if len(note) > MAX_NOTE_CHARS:
        raise InvalidInput(f"The note is longer than {MAX_NOTE_CHARS} characters.")
    _check_subject(session, subject, subject_id)
    entry = session.exec(
        select(Triage).where(Triage.subject == subject, Triage.subject_id == subject_id)
    ).scalars().first()
    old_status = entry.status if entry else "new"
    owner = owner.strip()[:255]
    if entry is None:
        entry = Triage(subject=subject, subject_id=subject_id)
        if (status, owner, note) == ("new", "", ""):
            return entry  # saving an untouched form: still new, nothing to record
        session.add(entry)
    elif (entry.status, entry.owner, entry.note) == (status, owner, note):
        return entry  # nothing changed: no history entry either
    entry.status, entry.owner, entry.note = status, owner, note
    entry.updated_at, entry.updated_by = utcnow(), actor.id
    session.flush()
    session.add(TriageEvent(triage_id=entry.id, by=actor.id, old_status=old_status, status=status, owner=owner,
                            note=note, at=entry.updated_at))
    session.commit()
    session.refresh(entry)
    log.info("user %s set %s %s to %s", actor.id, subject, subject_id, status)
    return entry


def _check_subject(session: Session, subject: str, subject_id: int) -> None:
    if subject == "rating":
        rating = session.get(Rating, subject_id)
        if rating is None:
            raise NotFound("No such rating.")
        if rating.thumb != 0:
            raise InvalidInput("Only a thumbs down is triaged.")
    elif session.get(Ticket, subject_id) is None:
        raise NotFound("No such problem report.")


@dataclass(frozen=True)
class TriageChange:
    at: datetime
    by: str
    old_status: str | None
    status: str
    owner: str
    note: str


def triage_history(*, session: Session, subject: str, subject_id: int) -> list[TriageChange]:
    """Every change of a thumbs down's or ticket's triage, oldest first, with who made it."""
    rows = session.execute(
        select(TriageEvent.at, func.coalesce(func.nullif(User.name, ""), func.nullif(User.email, ""), User.subject,
                                             literal("(deleted user)", String)), TriageEvent.old_status,
               TriageEvent.status, TriageEvent.owner, TriageEvent.note)
        .join(Triage, Triage.id == TriageEvent.triage_id)
        .outerjoin(User, User.id == TriageEvent.by)
        .where(Triage.subject == subject, Triage.subject_id == subject_id)
        .order_by(TriageEvent.at, TriageEvent.id)
    ).all()
    return [TriageChange(*row) for row in rows]


# --- problem reports -------------------------------------------------------------------------------------------------


def report_problem(
    *,
    session: Session,
    user: User,
    text: str,
    page: str = "",
    conversation_id: str | None = None,
    message_id: int | None = None,
) -> Ticket:
    """File a problem report. A conversation or message that is not the reporter's own is not attached."""
    text = text.strip()
    if not text:
        raise InvalidInput("Please describe the problem.")
    if len(text) > MAX_TICKET_CHARS:
        raise InvalidInput(f"Please keep the description under {MAX_TICKET_CHARS} characters.")
    if message_id is not None:
        message = session.get(Message, message_id)
        if message is None or message.user_id != user.id:
            message_id = None
        elif conversation_id is None:
            conversation_id = message.conversation_id
    if conversation_id is not None:
        conversation = session.get(Conversation, conversation_id)
        if conversation is None or conversation.user_id != user.id:
            conversation_id, message_id = None, None
    ticket = Ticket(user_id=user.id, page=page[:64], conversation_id=conversation_id, message_id=message_id,
                    text=text)
    session.add(ticket)
    session.commit()
    session.refresh(ticket)
    return ticket


@dataclass(frozen=True)
class TicketRow:
    id: int
    created_at: datetime
    reporter: str
    email: str
    page: str
    conversation_id: str | None
    message_id: int | None
    text: str
    status: str
    owner: str
    note: str


def tickets(
    *, session: Session, since: datetime | None = None, until: datetime | None = None, status: str | None = None,
    limit: int = 100,
) -> list[TicketRow]:
    """Problem reports, newest first, with their triage state."""
    state = func.coalesce(Triage.status, literal("new", String))
    query = (
        select(Ticket.id, Ticket.created_at, func.coalesce(func.nullif(User.name, ""), func.nullif(User.email, ""),
                                                           User.subject), User.email, Ticket.page, Ticket.conversation_id,
               Ticket.message_id, Ticket.text, state, func.coalesce(Triage.owner, ""), func.coalesce(Triage.note, ""))
        .join(User, User.id == Ticket.user_id)
        .outerjoin(Triage, and_(Triage.subject == "ticket", Triage.subject_id == Ticket.id))
    )
    if since is not None:
        query = query.where(Ticket.created_at >= since)
    if until is not None:
        query = query.where(Ticket.created_at < until)
    if status:
        query = query.where(state == status)
    rows = session.execute(query.order_by(Ticket.created_at.desc(), Ticket.id.desc()).limit(limit)).all()
    return [TicketRow(*row) for row in rows]


# --- reading a conversation as an admin --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdminMessage:
    id: int
    role: str
    content: str
    status: str
    sources: list[dict]
    answerer: str | None
    model: str | None
    created_at: datetime
    thumb: int | None
    reasons: list[str]
    comment: str | None
    #: For an answer: 1 for the first answer to its question, 2 for the first regenerated one, ...; 0 for a question.
    attempt: int = 0


@dataclass(frozen=True)
class AdminConversation:
    id: str
    title: str
    kind: str
    owner: str
    team: str
    deleted: bool
    messages: list[AdminMessage]


def conversation_for_admin(*, session: Session, admin: User, conversation_id: str) -> AdminConversation:
    """A whole conversation with the ratings its owner gave, for an admin reviewing feedback.

    Recorded in the audit trail (and logged at WARNING) before anything is read: docs/privacy.md promises that
    an admin reading someone's conversation leaves a trace. Deleted conversations stay readable until purged
    (their ratings still count).
    """
    conversation = session.get(Conversation, conversation_id)
    if conversation is None:
        raise NotFound("No such conversation.")
    owner = session.get(User, conversation.user_id)
    audit.record_conversation_opened(session=session, admin=admin, owner=owner, conversation_id=conversation.id)
    rows = session.execute(
        select(Message, Rating)
        .outerjoin(Rating, and_(Rating.message_id == Message.id, Rating.user_id == conversation.user_id))
        .where(Message.conversation_id == conversation.id)
        .order_by(Message.created_at, Message.id)
    ).all()
    answers_to: Counter[int] = Counter()
    messages = []
    for m, r in rows:
        if m.reply_to is not None:
            answers_to[m.reply_to] += 1
        messages.append(AdminMessage(m.id, m.role, m.content, m.status, m.sources, m.answerer, m.model, m.created_at,
                                     r.thumb if r else None, r.reasons if r else [], r.comment if r else None,
                                     answers_to[m.reply_to] if m.reply_to is not None else 0))
    return AdminConversation(conversation.id, conversation.title, conversation.kind,
                             owner.name or owner.email or owner.subject, owner.team,
                             conversation.deleted_at is not None, messages)


# --- exports ---------------------------------------------------------------------------------------------------------


def _export_rows(session: Session, f: Filters, *, batch: int = 2000) -> Iterator[tuple]:
    """The filtered answers with their question and (owner's) rating, oldest first, fetched in batches."""
    question = aliased(Message)
    query = (
        select(Message.id, Message.conversation_id, Message.created_at, Message.team, question.content,
               Message.content, Message.status, Message.sources, Message.answerer, Message.model,
               Message.prompt_version, Message.features, Message.input_tokens, Message.output_tokens,
               Message.latency_ms, Message.ttft_ms, Rating.thumb, Rating.reasons, Rating.comment)
        .select_from(Message)
        .outerjoin(question, question.id == Message.reply_to)
        .outerjoin(Rating, and_(Rating.message_id == Message.id, Rating.user_id == Message.user_id))
        .where(*answer_conditions(f))
        .order_by(Message.created_at, Message.id)
        .execution_options(yield_per=batch)
    )
    yield from session.execute(query)


#: The dashboard's two files, and what the audit trail calls exporting each.
EXPORTS = {"csv": audit.EXPORT_ANSWERS, "jsonl": audit.EXPORT_REVIEWED}


def export_for_admin(*, session: Session, admin: User, f: Filters, fmt: str) -> str:
    """The dashboard's export (``csv`` or ``jsonl``) for an admin, recorded in the audit trail with its size."""
    if fmt not in EXPORTS:
        raise InvalidInput(f"Unknown export format {fmt!r}.")
    text, count = _csv(session, f) if fmt == "csv" else _eval_jsonl(session, f)
    audit.record_export(session=session, admin=admin, action=EXPORTS[fmt], count=count, filters=f)
    return text


def export_csv(session: Session, f: Filters) -> str:
    """The filtered answers with their ratings and comments, as CSV (sources and lists as JSON).

    Not recorded in the audit trail: the dashboard exports through :func:`export_for_admin`.
    """
    return _csv(session, f)[0]


def _csv(session: Session, f: Filters) -> tuple[str, int]:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_FIELDS)
    count = 0
    for row in _export_rows(session, f):
        values = list(row)
        values[2] = values[2].isoformat() if values[2] else ""
        for i in (7, 11, 17):  # sources, features, reasons
            values[i] = json.dumps(values[i] or [], ensure_ascii=False)
        writer.writerow(["" if v is None else _defuse(v) for v in values])
        count += 1
    return out.getvalue(), count


def _defuse(value):
    """Keep a cell a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``) as text."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def export_eval_jsonl(session: Session, f: Filters, *, quote_words: int = 25) -> str:
    """Reviewed answers as evaluation cases (format of ``onboard eval --dataset``), one JSON object per line.

    - A thumbs-up answer becomes an answerable case: its question, the
      answer, the cited source files as ``gold_files`` (paths as indexed, relative
      to the folder given to ``onboard ingest``) and, as ``gold_quote``, the
      first words of the first cited passage (the reviewer vouched for it).
    - A thumbs down triaged "won't fix" on an abstained answer becomes an
      unanswerable case (the documents do not cover it, on purpose).
    Everything else is not reviewed yet and is left out. Not recorded in the audit trail: the dashboard exports
    through :func:`export_for_admin`.
    """
    return _eval_jsonl(session, f, quote_words=quote_words)[0]


def _eval_jsonl(session: Session, f: Filters, *, quote_words: int = 25) -> tuple[str, int]:
    lines = []
    question = aliased(Message)
    wont_fix = select(Rating.id).join(Triage, and_(Triage.subject == "rating", Triage.subject_id == Rating.id)) \
        .where(Triage.status == "wont_fix")
    rows = session.execute(
        select(Message.id, question.content, Message.content, Message.sources, Message.status, Rating.thumb,
               Rating.id.in_(wont_fix))
        .select_from(Rating)
        .join(Message, Message.id == Rating.message_id)
        .join(question, question.id == Message.reply_to)
        .where(*rating_conditions(f))
        .order_by(Message.created_at, Message.id)
    ).all()
    for answer_id, asked, answered, sources, status, thumb, declined in rows:
        cited = [source for source in sources or [] if source.get("cited", True)]
        files = _unique(source.get("source", "") for source in cited)
        if thumb == 1 and status == "complete" and files:
            case = {"question": asked, "answer": answered, "gold_files": files,
                    "gold_quote": _first_words(cited[0].get("passage") or "", quote_words), "kind": "reviewed"}
        elif thumb == 0 and declined and status == "abstained":
            case = {"question": asked, "answer": answered, "gold_files": [], "gold_quote": "", "kind": "unanswerable"}
        else:
            continue
        lines.append(json.dumps({"id": f"reviewed-{answer_id}", **case}, ensure_ascii=False))
    return "".join(line + "\n" for line in lines), len(lines)


def _unique(values: Iterable[str]) -> list[str]:
    seen: list[str] = []
    for value in values:
        if value and value not in seen:
            seen.append(value)
    return seen


def _first_words(text: str, n: int) -> str:
    return " ".join(text.split()[:n])


__all__ = [
    "AdminConversation",
    "AdminMessage",
    "TicketRow",
    "TriageChange",
    "conversation_for_admin",
    "export_csv",
    "export_eval_jsonl",
    "export_for_admin",
    "report_problem",
    "set_triage",
    "tickets",
    "triage_history",
]
