"""What has been indexed: one row per file, one row per ingestion run.

The rows live in the application database (SQLite by default, PostgreSQL in
production) so that every app instance and the admin pages see the same
history. The vectors themselves live in Chroma; ingestion keeps the two in
step and repairs any difference a crash left behind.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class IndexedFile(SQLModel, table=True):
    """A file whose chunks are in the index, with the hash they were made from."""

    __tablename__ = "kb_file"
    __table_args__ = (UniqueConstraint("collection", "path"),)

    id: int | None = Field(default=None, primary_key=True)
    collection: str = Field(index=True, max_length=128)
    #: Absolute path: what identifies the file.
    path: str = Field(max_length=1024)
    #: Path relative to the folder it was ingested from: what citations show.
    source: str = Field(max_length=1024)
    #: SHA-256 of the file's bytes and of the settings that shape its chunks (see ``IngestOptions.fingerprint``).
    sha256: str = Field(max_length=64)
    title: str = Field(default="", max_length=512)
    kind: str = Field(max_length=16)
    size: int = 0
    chunk_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    indexed_at: datetime = Field(default_factory=utcnow)


class IngestRun(SQLModel, table=True):
    """One run of ``onboard ingest``: what it found and what it changed."""

    __tablename__ = "kb_run"

    id: int | None = Field(default=None, primary_key=True)
    collection: str = Field(index=True, max_length=128)
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    status: str = Field(default="running", max_length=16)  # running, completed, interrupted, failed
    roots: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    embedding_model: str = Field(default="", max_length=256)
    added: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    failed: int = 0
    skipped: int = 0
    chunks_added: int = 0
    chunks_removed: int = 0
    index_version: int = 0
    failures: list[dict] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


def recent_runs(session, *, limit: int = 20) -> list[IngestRun]:
    """The latest indexing runs of every collection, newest first (what the dashboard's "Index" tab lists)."""
    from sqlmodel import select

    return list(session.exec(select(IngestRun).order_by(IngestRun.started_at.desc(), IngestRun.id.desc()).limit(limit)))
