"""The tables of conversations: users, their conversations, the messages in them, and ratings.

A question is a ``user`` message, stored the moment it is asked; its answer is
an ``assistant`` message that points back at it (``reply_to``), created as
``pending`` before the answerer starts and then closed as ``complete``,
``abstained``, ``failed`` or ``interrupted``, so what the user typed survives
any failure. An answer records how it was made (answerer, model, prompt and
index versions, rollout features, tokens, timings) so that ratings can be tied
to it. A rating is one row per user per answer, updated in place.

The schema is shaped by the Alembic migrations in ``onboard/migrations``,
never by ``create_all``. The storage functions are in :mod:`feedback.store`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import JSON, CheckConstraint, Column, Index, SmallInteger, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

#: What a conversation is with: the handbook assistant, or the support bot.
KINDS = ("assistant", "support")
ROLES = ("user", "assistant")
#: ``pending`` while the answer is being written; every other status is final.
STATUSES = ("pending", "complete", "abstained", "failed", "interrupted")


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
    """A question (role ``user``) or an answer (role ``assistant``) with how it was produced."""

    __tablename__ = "message"

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: str = Field(foreign_key="conversation.id", ondelete="CASCADE", index=True, max_length=32)
    role: str = Field(max_length=16)
    content: str = Field(default="", sa_column=Column(Text, nullable=False))
    status: str = Field(default="complete", max_length=16)
    #: For an answer: the question it answers.
    reply_to: int | None = Field(default=None, foreign_key="message.id", ondelete="SET NULL")
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
    #: Why an answer failed, in words a person understands (the traceback goes to the log).
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, index=True)
    #: When the answer reached its final status.
    finished_at: datetime | None = None


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
