"""One indexing run per collection at a time, across every process that shares the database.

Several app processes starting together would each index the sample handbook
and the help documentation (twice the work, two index versions), and an
``onboard ingest`` started while another runs would interleave with it. So a
run holds a lock named after its collection for as long as it works:

* on PostgreSQL, a session-level advisory lock (``pg_advisory_lock``) held by a
  connection of its own, outside any transaction; the server releases it when
  that connection ends, so a killed process leaves nothing behind. (It needs a
  real session: a pooler in transaction mode, such as PgBouncer's, cannot
  keep one.)
* on SQLite, which lives on one machine, an OS file lock (``flock``, through
  the ``filelock`` package) on a file next to the database; the kernel releases
  it when the process dies. A database in memory is private to its process, so
  a lock within the process is enough.

A second run waits for the first (``on_wait`` is called once, so the caller
can say so), or with ``wait=False`` raises :class:`IndexBusy` at once.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, text

from assistant.errors import AssistantError

log = logging.getLogger(__name__)


class IndexBusy(AssistantError):
    """Another process is indexing the collection (raised only when told not to wait)."""


@dataclass(frozen=True)
class IndexLock:
    """A held lock: the collection it covers, and whether another run had it first."""

    collection: str
    waited: bool


@contextmanager
def index_lock(engine: Engine, collection: str, *, wait: bool = True,
               on_wait: Callable[[str], None] | None = None) -> Iterator[IndexLock]:
    """Hold the indexing lock of ``collection`` in the database behind ``engine`` for the ``with`` block."""
    if engine.dialect.name == "postgresql":
        acquire = _postgres_lock
    elif engine.url.database and engine.url.database != ":memory:":
        acquire = _file_lock
    else:
        acquire = _process_lock
    with acquire(engine, collection, wait, on_wait) as waited:
        yield IndexLock(collection, waited)


def _busy(collection: str, wait: bool, on_wait: Callable[[str], None] | None) -> None:
    """Another run holds the lock: raise, or say that this one waits."""
    if not wait:
        raise IndexBusy(f"another process is indexing the collection {collection!r}; try again when it has finished")
    log.info("waiting for another process to finish indexing the collection %r", collection)
    if on_wait is not None:
        on_wait(collection)


def advisory_key(collection: str) -> int:
    """The PostgreSQL advisory lock key of a collection (a signed 64-bit number)."""
    digest = hashlib.sha256(f"onboard-index:{collection}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def _postgres_lock(engine: Engine, collection: str, wait: bool, on_wait) -> Iterator[bool]:
    key = advisory_key(collection)
    connection = engine.connect().execution_options(isolation_level="AUTOCOMMIT")  # no transaction stays open
    try:
        waited = not connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar()
        if waited:
            _busy(collection, wait, on_wait)
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
    except BaseException:
        connection.invalidate()  # e.g. Ctrl-C while waiting: the server ends the session, and any lock with it
        connection.close()
        raise
    try:
        yield waited
    finally:
        try:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
        except Exception:  # the connection broke: the server has ended the session and released the lock
            log.warning("could not release the indexing lock of %r explicitly", collection, exc_info=True)
            connection.invalidate()
        connection.close()


def lock_path(engine: Engine, collection: str) -> Path:
    """The file locked while ``collection`` is indexed, next to the SQLite database file."""
    database = Path(engine.url.database)
    return database.with_name(f"{database.name}.index-{collection}.lock")


@contextmanager
def _file_lock(engine: Engine, collection: str, wait: bool, on_wait) -> Iterator[bool]:
    from filelock import FileLock, Timeout

    # flock only: a "soft" lock file would outlive a killed process and need removing by hand.
    lock = FileLock(lock_path(engine, collection), fallback_to_soft=False, thread_local=False)
    waited = False
    try:
        lock.acquire(timeout=0)
    except Timeout:
        waited = True
        _busy(collection, wait, on_wait)
        lock.acquire(timeout=-1, poll_interval=0.2)
    try:
        yield waited
    finally:
        lock.release()


_PROCESS_LOCKS: dict[tuple[str, str], threading.Lock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()


@contextmanager
def _process_lock(engine: Engine, collection: str, wait: bool, on_wait) -> Iterator[bool]:
    with _PROCESS_LOCKS_GUARD:
        lock = _PROCESS_LOCKS.setdefault((str(engine.url), collection), threading.Lock())
    waited = not lock.acquire(blocking=False)
    if waited:
        _busy(collection, wait, on_wait)
        lock.acquire()
    try:
        yield waited
    finally:
        lock.release()
