"""API keys: made once, shown once, stored as a hash, checked on every request.

A program (a chat bot, an intranet page, a script) asks the REST API with a
key. The key stands for a team (the cost of its answers goes there) and a set
of groups (the document audience it may read, as a person's groups do); a key
created ``on_behalf`` may also name the person it asks for, so a bot's answers
are stored per person.

:func:`create_key` returns the secret once (``onb_`` + 43 URL-safe characters,
256 random bits from :mod:`secrets`); the database keeps its SHA-256 and the
first characters after ``onb_`` (:data:`SHOWN_CHARS`) to tell keys apart in a
list. A fast hash is the accepted practice for API keys, unlike passwords: a
slow, salted hash (bcrypt, Argon2) exists to make guessing a low-entropy
password expensive, and a uniformly random 256-bit token cannot be guessed
whatever the hash costs; SHA-256 keeps the check to one indexed lookup per
request. Someone who reads the table learns no key.

:func:`authenticate` refuses an unknown, revoked or expired key with one
:class:`KeyRejected` whose message does not say which (a caller probing keys
learns nothing); the log says which, with the key's id and name, never the
secret. The key is found by its hash through the unique index, and the stored
hash is compared with :func:`hmac.compare_digest`: the lookup's timing depends
only on a hash the caller cannot steer. ``last_used_at`` is written at most
once a minute per key (:data:`LAST_USED_RESOLUTION`), by a conditional update
that several processes can race on harmlessly, so a request is not a write.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlmodel import Session, select

from assistant.text import clean
from feedback.models import ApiKey, utcnow
from feedback.store import FeedbackError, InvalidInput, NotFound

log = logging.getLogger(__name__)

SECRET_PREFIX = "onb_"
#: Random bytes in a secret (256 bits).
SECRET_BYTES = 32
#: Characters after ``onb_`` kept in the clear to recognise a key in a list (48 of its 256 bits).
SHOWN_CHARS = 8
#: ``last_used_at`` is written at most this often per key.
LAST_USED_RESOLUTION = timedelta(minutes=1)
MAX_NAME_CHARS = 100
MAX_TEAM_CHARS = 128
MAX_GROUP_CHARS = 128
MAX_GROUPS = 100
MAX_CREATED_BY_CHARS = 320
MAX_EXPIRES_DAYS = 3650
MAX_RATE_PER_MINUTE = 100_000
#: A presented secret longer than this is refused without hashing it.
MAX_SECRET_CHARS = 200
#: What every refused key is told, whatever the reason.
REJECTED = "The API key is not valid: it is unknown, revoked or expired."


class KeyRejected(FeedbackError):
    """The key is unknown, revoked or expired (the message does not say which; the log does)."""

    def __init__(self) -> None:
        super().__init__(REJECTED)


def hash_secret(secret: str) -> str:
    """The hex SHA-256 of a secret, as stored."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_key(
    session: Session,
    *,
    name: str,
    team: str,
    groups: Iterable[str] = (),
    expires_days: int | None = None,
    on_behalf: bool = False,
    rate_per_minute: int | None = None,
    created_by: str | None = None,
    commit: bool = True,
) -> tuple[ApiKey, str]:
    """A new key and its secret, which is shown this once and never stored.

    ``name``, ``team`` and each group are cleaned (:func:`~assistant.text.clean`, whitespace collapsed) and
    checked; ``expires_days`` counts from now (``None``: never expires); ``rate_per_minute`` ``None`` takes
    the configured default. ``commit=False`` only flushes: the caller commits the key together with what goes
    with it (its audit row), or neither.
    """
    fields = {
        "name": _one_line(name, "name", MAX_NAME_CHARS, required=True),
        "team": _one_line(team, "team", MAX_TEAM_CHARS, required=True),
        "groups": _groups(groups),
        "on_behalf": bool(on_behalf),
        "rate_per_minute": _positive(rate_per_minute, "rate_per_minute", MAX_RATE_PER_MINUTE),
        "created_by": _one_line(created_by or "", "created_by", MAX_CREATED_BY_CHARS) or None,
    }
    days = _positive(expires_days, "expires_days", MAX_EXPIRES_DAYS)
    now = utcnow()
    secret = SECRET_PREFIX + secrets.token_urlsafe(SECRET_BYTES)
    key = ApiKey(prefix=secret[len(SECRET_PREFIX):][:SHOWN_CHARS], hash=hash_secret(secret), created_at=now,
                 expires_at=None if days is None else now + timedelta(days=days), **fields)
    session.add(key)
    _save(session, key, commit)
    log.info("API key %s (%s) created for team %s by %s", key.id, key.name, key.team, key.created_by or "?")
    return key, secret


def _save(session: Session, key: ApiKey, commit: bool) -> None:
    if commit:
        session.commit()
        session.refresh(key)
    else:
        session.flush()


def list_keys(session: Session) -> list[ApiKey]:
    """Every key, revoked and expired ones included, newest first."""
    return list(session.exec(select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id.desc())).all())


def get_key(session: Session, key_id: int) -> ApiKey:
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"No API key with id {key_id}.")
    return key


def revoke_key(session: Session, key_id: int, *, now: datetime | None = None, commit: bool = True) -> ApiKey:
    """Refuse the key from now on; revoking it again keeps the first date. ``commit`` as for :func:`create_key`."""
    key = get_key(session, key_id)
    if key.revoked_at is None:
        key.revoked_at = now or utcnow()
        _save(session, key, commit)
        log.info("API key %s (%s) revoked", key.id, key.name)
    return key


def state(key: ApiKey, now: datetime | None = None) -> str:
    """``active``, ``revoked`` or ``expired``."""
    now = now or utcnow()
    if key.revoked_at is not None and key.revoked_at <= now:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired"
    return "active"


def authenticate(session: Session, secret: str, now: datetime | None = None) -> ApiKey:
    """The active key whose secret this is; :class:`KeyRejected` otherwise (the reason goes to the log)."""
    now = now or utcnow()
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX) or len(secret) > MAX_SECRET_CHARS:
        log.warning("API key refused: not an onboard key (%d characters)", len(secret) if isinstance(secret, str) else 0)
        raise KeyRejected
    digest = hash_secret(secret)
    key = session.exec(select(ApiKey).where(ApiKey.hash == digest)).first()
    if key is None or not hmac.compare_digest(key.hash, digest):
        log.warning("API key refused: unknown key")
        raise KeyRejected
    if (reason := state(key, now)) != "active":
        log.warning("API key refused: key %s (%s) is %s", key.id, key.name, reason)
        raise KeyRejected
    _touch(session, key, now)
    return key


def _touch(session: Session, key: ApiKey, now: datetime) -> None:
    """Record the use, unless it was recorded less than a minute ago (by this process or another)."""
    if key.last_used_at is not None and now - key.last_used_at < LAST_USED_RESOLUTION:
        return
    written = session.exec(
        update(ApiKey)
        .where(ApiKey.id == key.id,
               or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at <= now - LAST_USED_RESOLUTION))
        .values(last_used_at=now)
    ).rowcount
    session.commit()
    session.refresh(key)
    if not written:
        log.debug("API key %s: last use already recorded by another process", key.id)


def _one_line(value: str, what: str, limit: int, *, required: bool = False) -> str:
    text = " ".join(clean(value or "").split())
    if required and not text:
        raise InvalidInput(f"An API key needs a {what}.")
    if len(text) > limit:
        raise InvalidInput(f"The key's {what} is longer than {limit} characters.")
    return text


def _groups(groups: Iterable[str]) -> list[str]:
    if isinstance(groups, str):
        raise InvalidInput("The key's groups are a list of names, not one string.")
    cleaned = sorted({_one_line(group, "group", MAX_GROUP_CHARS) for group in groups} - {""})
    if len(cleaned) > MAX_GROUPS:
        raise InvalidInput(f"A key may have at most {MAX_GROUPS} groups.")
    return cleaned


def _positive(value: int | None, what: str, limit: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise InvalidInput(f"{what} must be a whole number from 1 to {limit}.")
    return value
