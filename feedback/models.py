"""The tables of conversations: users, their conversations, the messages in them, ratings, and the admins' reads.

A question is a ``user`` message, stored the moment it is asked; its answer is
an ``assistant`` message that points back at it (``reply_to``), created as
``pending`` before the answerer starts and then closed as ``complete``,
``abstained``, ``failed`` or ``interrupted``, so what the user typed survives
any failure. An answer records how it was made (answerer, model, prompt and
index versions, rollout features, tokens, timings) so that ratings can be tied
to it. A rating is one row per user per answer, updated in place. Every time
an admin opens someone's conversation or exports answers leaves an
:class:`AdminAudit` row that nothing in the app changes or deletes.

An :class:`ApiKey` lets a program (a chat bot, an intranet page) ask through
the REST API as a team with a set of groups; only a hash of its secret is
stored (:mod:`feedback.keys`). :class:`RateWindow` counts each key's requests
per minute in the database, so several app processes share one limit
(:mod:`feedback.limits`).

The schema is shaped by the Alembic migrations in ``onboard/migrations``,
never by ``create_all``. The storage functions are in :mod:`feedback.store`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import JSON, BigInteger, CheckConstraint, Column, Index, SmallInteger, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

#: What a conversation is with: the handbook assistant, or the support bot.
KINDS = ("assistant", "support")
#: Where a message came in: the chat page, the REST API, a batch file, or the Help panel's support bot.
CHANNELS = ("web", "api", "batch", "support")
ROLES = ("user", "assistant")
#: ``pending`` while the answer is being written; every other status is final.
STATUSES = ("pending", "complete", "abstained", "failed", "interrupted")
#: The dashboard reads answers of one kind in a date range: an index holding every column its aggregates
#: use lets both databases answer from the index alone, without visiting a million table rows.
DASHBOARD_COLUMNS = (
    "kind", "role", "created_at", "status", "user_id", "team", "conversation_id", "reply_to", "answerer", "model",
    "prompt_version", "input_tokens", "output_tokens", "latency_ms", "ttft_ms", "band", "channel",
)
#: The team of a person no claim or configuration places in one.
UNASSIGNED = "unassigned"
#: Where a thumbs down or a problem report stands in the admins' review.
TRIAGE_STATUSES = ("new", "in_progress", "fixed", "wont_fix")
#: What a triage entry is about.
TRIAGE_SUBJECTS = ("rating", "ticket")


def utcnow() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    return uuid.uuid4().hex


class User(SQLModel, table=True):
    """A person who logged in, known by the identity provider's subject."""

    # Not "user": a reserved word in PostgreSQL, where ``SELECT * FROM user`` quietly means current_user.
    __tablename__ = "app_user"
    __table_args__ = (UniqueConstraint("subject", name="uq_app_user_subject"),)

    id: int | None = Field(default=None, primary_key=True)
    #: The ``sub`` claim (or another stable external id): what identifies the person.
    subject: str = Field(max_length=255)
    email: str = Field(default="", max_length=320)
    name: str = Field(default="", max_length=255)
    #: Groups from the identity provider; they decide roles and which documents are visible.
    groups: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    #: Team or business unit, for usage and cost per team (from a claim or the configuration).
    team: str = Field(default=UNASSIGNED, max_length=128)
    created_at: datetime = Field(default_factory=utcnow)
    last_seen_at: datetime = Field(default_factory=utcnow)


class Conversation(SQLModel, table=True):
    """A thread of questions and answers belonging to one user.

    The id is a random UUID (hex) because it appears in links; access is checked
    against the owner anyway. Deleting sets ``deleted_at``: the conversation is
    gone for its owner while ratings keep counting, until it is purged.
    """

    __tablename__ = "conversation"
    __table_args__ = (Index("ix_conversation_user_id_updated_at", "user_id", "updated_at"),)

    id: str = Field(default_factory=_new_id, primary_key=True, max_length=32)
    user_id: int = Field(foreign_key="app_user.id", ondelete="CASCADE")
    title: str = Field(default="", max_length=200)
    kind: str = Field(default="assistant", max_length=16)
    created_at: datetime = Field(default_factory=utcnow)
    #: Moves with every message: the conversation list is sorted by it.
    updated_at: datetime = Field(default_factory=utcnow)
    deleted_at: datetime | None = None


class Message(SQLModel, table=True):
    """A question (role ``user``) or an answer (role ``assistant``) with how it was produced.

    ``user_id``, ``team`` and ``kind`` repeat the conversation's owner, the
    owner's team when the message was written, and the conversation's kind: the
    dashboard aggregates a million messages without joining two more tables,
    and cost stays with the team that spent it. ``channel`` is where the
    message came in (:data:`CHANNELS`); an answer inherits its question's.
    """

    __tablename__ = "message"
    __table_args__ = (
        Index("ix_message_dashboard", *DASHBOARD_COLUMNS),
        Index("uq_message_user_id_client_key", "user_id", "client_key", unique=True),
    )

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: str = Field(foreign_key="conversation.id", ondelete="CASCADE", index=True, max_length=32)
    user_id: int | None = Field(default=None, foreign_key="app_user.id", ondelete="CASCADE", index=True)
    team: str = Field(default=UNASSIGNED, max_length=128)
    kind: str = Field(default="assistant", max_length=16)
    role: str = Field(max_length=16)
    content: str = Field(default="", sa_column=Column(Text, nullable=False))
    status: str = Field(default="complete", max_length=16)
    #: For an answer: the question it answers (indexed: deleting a question looks its answers up).
    reply_to: int | None = Field(default=None, foreign_key="message.id", ondelete="SET NULL", index=True)
    #: Cited passages, in citation order: ``{n, source, title, section, url, chunk_id}``.
    sources: list[dict] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    answerer: str | None = Field(default=None, max_length=64)
    model: str | None = Field(default=None, max_length=256)
    prompt_version: str | None = Field(default=None, max_length=64)
    index_version: int | None = None
    #: Rollout features that were on for this answer.
    features: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    input_tokens: int | None = None
    output_tokens: int | None = None
    latency_ms: int | None = None
    ttft_ms: int | None = None
    #: Why an answer failed, or the notice a finished one came with (a fallback, a cut-off answer), in words a
    #: person understands (the full error and traceback go to the log).
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, index=True)
    #: When the answer reached its final status.
    finished_at: datetime | None = None
    #: For a question: the key its page gave it when it was typed, so that sending it again (the database went
    #: away before saying it was stored) stores it once.
    client_key: str | None = Field(default=None, max_length=64)
    #: For an answer: ``answered``, ``unsure`` (the closest passages quoted under a warning) or ``abstained``
    #: (see :mod:`assistant.answerability`); ``None`` for answers stored before bands (their status says which).
    band: str | None = Field(default=None, max_length=16)
    #: Where the message came in (:data:`CHANNELS`); rows stored before channels read ``web`` (or ``support`` for
    #: the support bot's conversations), which is where they came from.
    channel: str = Field(default="web", max_length=16, sa_column_kwargs={"server_default": "web"})


class Rating(SQLModel, table=True):
    """A user's thumb on an answer, with reason tags and a comment; one per user per answer."""

    __tablename__ = "rating"
    __table_args__ = (
        UniqueConstraint("message_id", "user_id", name="uq_rating_message_id_user_id"),
        CheckConstraint("thumb IN (0, 1)", name="ck_rating_thumb"),
    )

    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(foreign_key="message.id", ondelete="CASCADE")
    user_id: int = Field(foreign_key="app_user.id", ondelete="CASCADE", index=True)
    #: 1 thumbs up, 0 thumbs down: ``avg(thumb)`` is the share of positive ratings.
    thumb: int = Field(sa_column=Column(SmallInteger, nullable=False))
    reasons: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    comment: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, index=True)
    #: Equal to ``created_at`` until the rating is changed.
    updated_at: datetime = Field(default_factory=utcnow)


class Triage(SQLModel, table=True):
    """Where the review of a thumbs down or a problem report stands: status, owner, note.

    A thumbs down without a row is ``new``. Every change also appends a
    :class:`TriageEvent`, so the history is kept.
    """

    __tablename__ = "triage"
    __table_args__ = (UniqueConstraint("subject", "subject_id", name="uq_triage_subject_subject_id"),)

    id: int | None = Field(default=None, primary_key=True)
    #: ``rating`` (``subject_id`` is a rating id) or ``ticket``.
    subject: str = Field(max_length=16)
    subject_id: int
    status: str = Field(default="new", max_length=16, index=True)
    owner: str = Field(default="", max_length=255)
    note: str = Field(default="", sa_column=Column(Text, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow)
    updated_by: int | None = Field(default=None, foreign_key="app_user.id", ondelete="SET NULL")


class TriageEvent(SQLModel, table=True):
    """One change of a triage entry: who made it, when, and the state it left."""

    __tablename__ = "triage_event"

    id: int | None = Field(default=None, primary_key=True)
    triage_id: int = Field(foreign_key="triage.id", ondelete="CASCADE", index=True)
    at: datetime = Field(default_factory=utcnow)
    by: int | None = Field(default=None, foreign_key="app_user.id", ondelete="SET NULL")
    old_status: str | None = Field(default=None, max_length=16)
    status: str = Field(max_length=16)
    owner: str = Field(default="", max_length=255)
    note: str = Field(default="", sa_column=Column(Text, nullable=False))


class Ticket(SQLModel, table=True):
    """A problem someone reported, with where they were and what they were looking at."""

    __tablename__ = "ticket"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="app_user.id", ondelete="CASCADE", index=True)
    #: The page it was reported from (``chat``, ``help``...).
    page: str = Field(default="", max_length=64)
    conversation_id: str | None = Field(default=None, foreign_key="conversation.id", ondelete="SET NULL",
                                        max_length=32)
    message_id: int | None = Field(default=None, foreign_key="message.id", ondelete="SET NULL")
    text: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, index=True)


#: What an admin did that reads people's content, as the audit trail records it.
AUDIT_ACTIONS = ("open_conversation", "export_answers", "export_reviewed", "create_api_key", "revoke_api_key")


class AdminAudit(SQLModel, table=True):
    """One time an admin read people's content: opened someone's conversation, or exported answers.

    Append-only. The app has no function that changes or deletes a row, and
    the database refuses ``UPDATE``, ``DELETE`` (and on PostgreSQL ``TRUNCATE``)
    on the table: triggers made by migration 0005. The ids are not foreign keys
    and the names and e-mails are copies taken at the time, so purging
    conversations or removing a user neither removes nor rewrites the trace.
    """

    __tablename__ = "admin_audit"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    action: str = Field(max_length=32)
    admin_id: int
    admin_subject: str = Field(default="", max_length=255)
    admin_email: str = Field(default="", max_length=320)
    admin_name: str = Field(default="", max_length=255)
    #: Whose content was read (an opened conversation's owner); none for an export of many people's answers.
    owner_id: int | None = None
    owner_subject: str = Field(default="", max_length=255)
    owner_email: str = Field(default="", max_length=320)
    owner_name: str = Field(default="", max_length=255)
    conversation_id: str | None = Field(default=None, max_length=32)
    #: For an export: how many answers (or evaluation cases) the file held.
    count: int | None = None
    #: For an export: the dashboard's filters it was made with (dates, kind, group, team...); for a key created or
    #: revoked: the key's id, prefix, name, team, groups and scope (never its secret or hash).
    filters: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class ApiKey(SQLModel, table=True):
    """A key a program asks the REST API with: its team pays, its groups decide which documents it sees.

    The secret itself is never stored: ``hash`` is its SHA-256 and ``prefix``
    a few of its characters to tell keys apart in a list. A key is refused
    once ``revoked_at`` or ``expires_at`` has passed. ``on_behalf`` lets it
    name a person (``X-On-Behalf-Of``) whose conversations the answers are
    stored under.
    """

    __tablename__ = "api_key"
    __table_args__ = (UniqueConstraint("hash", name="uq_api_key_hash"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    #: The first characters of the secret after ``onb_``: enough to recognise a key, useless to use it.
    prefix: str = Field(max_length=16)
    #: Hex SHA-256 of the whole secret.
    hash: str = Field(max_length=64)
    team: str = Field(max_length=128)
    groups: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    on_behalf: bool = False
    #: Requests per minute; ``None`` takes the configured default.
    rate_per_minute: int | None = None
    created_at: datetime = Field(default_factory=utcnow)
    #: Who made it (an admin's e-mail, or ``cli``).
    created_by: str | None = Field(default=None, max_length=320)
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    #: Written at most once a minute (see :data:`feedback.keys.LAST_USED_RESOLUTION`).
    last_used_at: datetime | None = None


class RateWindow(SQLModel, table=True):
    """How many requests a key made in one minute (minutes counted from the Unix epoch, UTC).

    One row per key per minute, incremented in place by a single upsert; not a
    foreign key, so counting never waits on the key's row, and old minutes are
    deleted now and then by :func:`feedback.limits.hit`.
    """

    __tablename__ = "rate_window"

    key_id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    minute: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    hits: int = 0
