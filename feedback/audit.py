"""The trace of admins reading people's content: who opened whose conversation, who exported answers, when.

docs/privacy.md promises it, so it is durable (a row in ``admin_audit``) and
loud (a WARNING, which the server's log shows; an INFO line was dropped).
Rows are only ever added: this module has no function that changes or
deletes one, ``onboard db purge`` leaves them, and the database refuses
``UPDATE`` and ``DELETE`` on the table (migration 0005). Each row keeps a copy
of the admin's and the owner's id, subject, e-mail and name as they were.

The log line carries ids and e-mails only, never what the conversation or the
file holds. The dashboard (admins only) lists the rows with :func:`entries`.

Creating and revoking a REST API key on the dashboard are recorded the same
way (:func:`record_key_change`): a key is a program's access to the documents
and, with its on-behalf right, to the conversations it stores for people. Its
row keeps the key's id, prefix, name, team, groups and on-behalf right in
``filters`` (the row's free-form details), never its secret or hash.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import date, datetime

from sqlmodel import Session, select

from feedback.models import AUDIT_ACTIONS, AdminAudit, ApiKey, User

log = logging.getLogger(__name__)

OPEN_CONVERSATION, EXPORT_ANSWERS, EXPORT_REVIEWED, CREATE_API_KEY, REVOKE_API_KEY = AUDIT_ACTIONS


def _who(prefix: str, user: User) -> dict:
    return {f"{prefix}_id": user.id, f"{prefix}_subject": user.subject, f"{prefix}_email": user.email,
            f"{prefix}_name": user.name}


def record_conversation_opened(*, session: Session, admin: User, owner: User, conversation_id: str) -> AdminAudit:
    """Record, and log at WARNING, that ``admin`` opened ``owner``'s conversation; commits."""
    entry = AdminAudit(action=OPEN_CONVERSATION, conversation_id=conversation_id, **_who("admin", admin),
                       **_who("owner", owner))
    _add(session, entry)
    log.warning("audit: admin %s %r opened conversation %s of user %s %r",
                admin.id, admin.email, conversation_id, owner.id, owner.email)
    return entry


def record_export(*, session: Session, admin: User, action: str, count: int, filters: object) -> AdminAudit:
    """Record, and log at WARNING, that ``admin`` exported ``count`` answers with these filters; commits.

    ``filters`` is a dataclass (the dashboard's :class:`~feedback.analytics.Filters`); its unset fields are left out.
    """
    if action not in (EXPORT_ANSWERS, EXPORT_REVIEWED):
        raise ValueError(f"Not an export: {action!r}.")
    kept = {k: v.isoformat() if isinstance(v, date | datetime) else v
            for k, v in asdict(filters).items() if v is not None}
    entry = AdminAudit(action=action, count=count, filters=kept, **_who("admin", admin))
    _add(session, entry)
    log.warning("audit: admin %s %r exported %d %s with filters %s",
                admin.id, admin.email, count, "answers" if action == EXPORT_ANSWERS else "reviewed answers", kept)
    return entry


def record_key_change(*, session: Session, admin: User, action: str, key: ApiKey) -> AdminAudit:
    """Record, and log at WARNING, that ``admin`` created or revoked ``key``; commits."""
    if action not in (CREATE_API_KEY, REVOKE_API_KEY):
        raise ValueError(f"Not an API key change: {action!r}.")
    details = {"key_id": key.id, "prefix": key.prefix, "name": key.name, "team": key.team, "groups": key.groups,
               "on_behalf": key.on_behalf}
    entry = AdminAudit(action=action, filters=details, **_who("admin", admin))
    _add(session, entry)
    log.warning("audit: admin %s %r %s API key %s (%s, team %s)", admin.id, admin.email,
                "created" if action == CREATE_API_KEY else "revoked", key.id, key.name, key.team)
    return entry


def _add(session: Session, entry: AdminAudit) -> None:
    session.add(entry)
    session.commit()
    session.refresh(entry)


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    admin: str
    admin_email: str
    action: str
    owner: str
    owner_email: str
    conversation_id: str | None
    count: int | None
    filters: dict


def _label(name: str, email: str, subject: str, user_id: int | None) -> str:
    return name or email or subject or (f"user {user_id}" if user_id is not None else "")


def entries(
    *, session: Session, since: datetime | None = None, until: datetime | None = None, limit: int = 500,
) -> list[AuditEntry]:
    """Audit rows from ``since`` (included) to ``until`` (excluded), newest first, at most ``limit``."""
    query = select(AdminAudit)
    if since is not None:
        query = query.where(AdminAudit.at >= since)
    if until is not None:
        query = query.where(AdminAudit.at < until)
    rows = session.exec(query.order_by(AdminAudit.at.desc(), AdminAudit.id.desc()).limit(limit)).all()
    return [AuditEntry(r.at, _label(r.admin_name, r.admin_email, r.admin_subject, r.admin_id), r.admin_email,
                       r.action, _label(r.owner_name, r.owner_email, r.owner_subject, r.owner_id), r.owner_email,
                       r.conversation_id, r.count, r.filters) for r in rows]


__all__ = ["AuditEntry", "entries", "record_conversation_opened", "record_export", "record_key_change"]
