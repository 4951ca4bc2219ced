"""Requests per minute per API key, counted in the database so every app process shares one limit.

A fixed one-minute window: a row per key and minute (minutes since the Unix
epoch, UTC) whose ``hits`` one statement increments and returns, ``INSERT ...
ON CONFLICT (key_id, minute) DO UPDATE SET hits = hits + 1 RETURNING hits``
(PostgreSQL, and SQLite from 3.35; SQLAlchemy's dialect ``insert`` writes
each). The database serialises the increments of one row, so N concurrent
requests of one key, in any number of processes, see N distinct counts and
exactly ``per_minute`` of them are allowed; a counter in each process's
memory would let every process allow the whole limit.

A fixed window lets a client spend its limit at the end of one minute and
again at the start of the next (up to twice the rate over a minute that
straddles them); that bound is accepted for one row write per request
instead of a row per request. The first request of a key in a new minute
deletes that key's older windows, so the table holds about one row per key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from feedback.models import RateWindow, utcnow
from feedback.store import InvalidInput

WINDOW_SECONDS = 60
_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


@dataclass(frozen=True)
class Allowance:
    """Whether this request may go on, how many more the key may make this minute, and when to come back."""

    allowed: bool
    remaining: int
    #: Seconds until the window resets when refused (what ``Retry-After`` says); 0 when allowed.
    retry_after_s: int
    #: The key's limit per minute, and seconds until the current window ends (for ``RateLimit-*`` headers).
    limit: int = 0
    reset_s: int = 0


def hit(session: Session, *, key_id: int, per_minute: int, now: datetime | None = None) -> Allowance:
    """Count one request of ``key_id`` in the current minute and say whether it is within ``per_minute``.

    Commits at once (the row lock is held only for the statement). Refused requests count too: a client that
    keeps hammering stays refused until the minute ends.
    """
    if isinstance(per_minute, bool) or not isinstance(per_minute, int) or per_minute < 1:
        raise InvalidInput("A rate limit is a whole number of requests per minute, at least 1.")
    dialect = session.get_bind().dialect.name
    if dialect not in _INSERTS:
        raise NotImplementedError(f"rate limits need PostgreSQL or SQLite, not {dialect}")
    seconds = (now or utcnow()).timestamp()
    minute = int(seconds // WINDOW_SECONDS)
    statement = (
        _INSERTS[dialect](RateWindow)
        .values(key_id=key_id, minute=minute, hits=1)
        .on_conflict_do_update(index_elements=["key_id", "minute"], set_={"hits": RateWindow.hits + 1})
        .returning(RateWindow.hits)
    )
    try:
        hits = session.execute(statement).scalar_one()
        if hits == 1:  # the key's first request this minute: its older windows are done with
            session.execute(delete(RateWindow).where(RateWindow.key_id == key_id, RateWindow.minute < minute))
        session.commit()
    except Exception:
        session.rollback()
        raise
    reset_s = max(1, math.ceil((minute + 1) * WINDOW_SECONDS - seconds))
    allowed = hits <= per_minute
    return Allowance(allowed=allowed, remaining=max(0, per_minute - hits), retry_after_s=0 if allowed else reset_s,
                     limit=per_minute, reset_s=reset_s)
