"""The audit trail of admins reading people's content, on SQLite and (with TEST_DATABASE_URL) PostgreSQL.

Opening someone's conversation and exporting answers each write one row that
nothing can change or delete (the database refuses it), that a purge of
conversations leaves alone, and a WARNING line without the content. A browser
downloads an export from the dashboard, which AppTest cannot do.
"""

from __future__ import annotations

import csv
import io
import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, text, update
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, func, select
from test_browser import CHROMIUM, CHROMIUM_FLAGS, _explained, _settled, server  # noqa: F401  (a fixture)
from test_chat_app import _fresh_resources, data_dir, indexed_handbook  # noqa: F401  (fixtures)

from feedback import audit, keys, review, store
from feedback.analytics import Filters
from feedback.models import AdminAudit, Conversation, User, utcnow
from onboard import factories
from onboard.settings import Settings

SECRET_QUESTION = "Can I take parental leave while on probation?"
SECRET_ANSWER = "Yes, after 3 months [1]."


@pytest.fixture
def session(engine):
    with Session(engine) as session:
        yield session


@pytest.fixture
def ada(session) -> User:
    return store.get_or_create_user(session=session, subject="ada", email="ada@example.com", name="Ada",
                                    groups=["admin"])


@pytest.fixture
def bob(session) -> User:
    return store.get_or_create_user(session=session, subject="bob", email="bob@example.com", name="Bob", team="eng")


def conversation_of(session, user: User, *, rating: int | None = None) -> Conversation:
    conversation = store.create_conversation(session=session, user=user)
    q = store.add_user_message(session=session, user=user, conversation_id=conversation.id, content=SECRET_QUESTION)
    a = store.start_answer(session=session, question_id=q.id, answerer="extractive", model="m1")
    store.finish_answer(session=session, answer_id=a.id, content=SECRET_ANSWER,
                        sources=[{"n": 1, "source": "leave.md", "title": "Leave", "section": "", "chunk_id": "c"}])
    if rating is not None:
        store.rate(session=session, user=user, message_id=a.id, thumb=rating)
    return conversation


def rows(session) -> list[AdminAudit]:
    session.expire_all()
    return list(session.exec(select(AdminAudit).order_by(AdminAudit.id)).all())


def audit_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "feedback.audit"]


# --- opening a conversation ------------------------------------------------------------------------------------------


def test_opening_a_conversation_writes_one_audit_row_and_a_warning(session, ada, bob, caplog):
    conversation = conversation_of(session, bob)
    before = utcnow()
    caplog.set_level(logging.DEBUG)

    opened = review.conversation_for_admin(session=session, admin=ada, conversation_id=conversation.id)

    after = utcnow()
    assert [m.content for m in opened.messages] == [SECRET_QUESTION, SECRET_ANSWER]
    [row] = rows(session)
    assert (row.action, row.admin_id, row.admin_email, row.admin_name, row.owner_id, row.owner_email,
            row.owner_name, row.conversation_id, row.count, row.filters) == (
        "open_conversation", ada.id, "ada@example.com", "Ada", bob.id, "bob@example.com", "Bob", conversation.id,
        None, {})
    assert before <= row.at <= after
    [record] = audit_records(caplog)
    assert record.levelno == logging.WARNING
    line = record.getMessage()
    assert "ada@example.com" in line and "bob@example.com" in line and conversation.id in line
    assert str(ada.id) in line and str(bob.id) in line
    assert "parental" not in line and "3 months" not in line  # ids and e-mails only, never the content


def test_each_opening_is_one_row_and_an_unknown_conversation_none(session, ada, bob):
    conversation = conversation_of(session, bob)
    review.conversation_for_admin(session=session, admin=ada, conversation_id=conversation.id)
    review.conversation_for_admin(session=session, admin=ada, conversation_id=conversation.id)
    with pytest.raises(store.NotFound):
        review.conversation_for_admin(session=session, admin=ada, conversation_id="nope")
    assert [(r.action, r.conversation_id) for r in rows(session)] == [("open_conversation", conversation.id)] * 2


def test_purging_conversations_and_removing_their_owner_keep_the_audit_rows(session, ada, bob):
    conversation = conversation_of(session, bob, rating=0)
    review.conversation_for_admin(session=session, admin=ada, conversation_id=conversation.id)
    store.delete_conversation(session=session, user=bob, conversation_id=conversation.id)

    assert store.purge_deleted(session=session, before=utcnow() + timedelta(seconds=1)) == 1
    assert session.get(Conversation, conversation.id) is None
    session.execute(delete(User).where(User.id == bob.id))  # an operator removing the person, by hand
    session.commit()

    [row] = rows(session)
    assert (row.owner_id, row.owner_name, row.owner_email, row.conversation_id) == (
        bob.id, "Bob", "bob@example.com", conversation.id)
    [entry] = audit.entries(session=session)
    assert (entry.admin, entry.owner, entry.conversation_id) == ("Ada", "Bob", conversation.id)


# --- nothing changes or deletes a row -----------------------------------------------------------------------------


@pytest.mark.parametrize("statement", [
    update(AdminAudit).values(admin_email="someone@else.example"),
    update(AdminAudit).values(at=datetime(2020, 1, 1, tzinfo=UTC)),
    delete(AdminAudit),
], ids=["update-email", "update-time", "delete"])
def test_the_database_refuses_to_change_or_delete_audit_rows(session, ada, bob, statement):
    conversation = conversation_of(session, bob)
    review.conversation_for_admin(session=session, admin=ada, conversation_id=conversation.id)

    with pytest.raises(DBAPIError, match="append-only"):
        session.execute(statement)
        session.commit()
    session.rollback()

    [row] = rows(session)
    assert (row.admin_email, row.at.year) == ("ada@example.com", utcnow().year)


def test_postgresql_refuses_to_truncate_the_audit_table(session, engine, ada, bob):
    if engine.dialect.name != "postgresql":
        pytest.skip("TRUNCATE is PostgreSQL's")
    review.conversation_for_admin(session=session, admin=ada, conversation_id=conversation_of(session, bob).id)
    with pytest.raises(DBAPIError, match="append-only"):
        session.execute(text("TRUNCATE admin_audit"))
    session.rollback()
    assert len(rows(session)) == 1


def test_the_audit_module_offers_no_way_to_change_a_row():
    assert sorted(audit.__all__) == ["AuditEntry", "entries", "record_conversation_opened", "record_export",
                                     "record_key_change"]


# --- exports -------------------------------------------------------------------------------------------------------


def test_exports_for_an_admin_record_how_many_answers_and_the_filters(session, ada, bob, caplog):
    conversation_of(session, bob, rating=1)
    conversation_of(session, bob)
    today = datetime.now(UTC).date()
    f = Filters(start=today - timedelta(days=6), end=today, team="eng")
    caplog.set_level(logging.WARNING)

    text_csv = review.export_for_admin(session=session, admin=ada, f=f, fmt="csv")
    text_jsonl = review.export_for_admin(session=session, admin=ada, f=f, fmt="jsonl")

    assert len(list(csv.DictReader(io.StringIO(text_csv)))) == 2
    assert text_csv == review.export_csv(session, f) and text_jsonl == review.export_eval_jsonl(session, f)
    assert len(text_jsonl.splitlines()) == 1  # only the thumbs-up answer is a reviewed case
    expected_filters = {"start": (today - timedelta(days=6)).isoformat(), "end": today.isoformat(),
                        "kind": "assistant", "team": "eng"}
    assert [(r.action, r.admin_id, r.owner_id, r.conversation_id, r.count, r.filters) for r in rows(session)] == [
        ("export_answers", ada.id, None, None, 2, expected_filters),
        ("export_reviewed", ada.id, None, None, 1, expected_filters),
    ]
    lines = [r.getMessage() for r in audit_records(caplog) if r.levelno == logging.WARNING]
    assert len(lines) == 2 and all("ada@example.com" in line for line in lines)
    assert "exported 2 answers" in lines[0] and "exported 1 reviewed answers" in lines[1]
    assert not any("parental" in line for line in lines)
    with pytest.raises(store.InvalidInput):
        review.export_for_admin(session=session, admin=ada, f=f, fmt="xlsx")
    assert len(rows(session)) == 2


# --- API keys ----------------------------------------------------------------------------------------------------


def test_creating_and_revoking_a_key_are_recorded_without_its_secret(session, ada, caplog):
    caplog.set_level(logging.DEBUG)
    key, secret = keys.create_key(session, name="Slack bot", team="People Ops", groups=["staff"], on_behalf=True,
                                  created_by=ada.email)
    audit.record_key_change(session=session, admin=ada, action=audit.CREATE_API_KEY, key=key)
    audit.record_key_change(session=session, admin=ada, action=audit.REVOKE_API_KEY,
                            key=keys.revoke_key(session, key.id))

    details = {"key_id": key.id, "prefix": key.prefix, "name": "Slack bot", "team": "People Ops",
               "groups": ["staff"], "on_behalf": True}
    assert [(r.action, r.admin_id, r.admin_email, r.owner_id, r.count, r.filters) for r in rows(session)] == [
        ("create_api_key", ada.id, "ada@example.com", None, None, details),
        ("revoke_api_key", ada.id, "ada@example.com", None, None, details),
    ]
    lines = [r.getMessage() for r in audit_records(caplog) if r.levelno == logging.WARNING]
    assert lines == [f"audit: admin {ada.id} 'ada@example.com' created API key {key.id} (Slack bot, team People Ops)",
                     f"audit: admin {ada.id} 'ada@example.com' revoked API key {key.id} (Slack bot, team People Ops)"]
    stored = " ".join(f"{r.filters}" for r in rows(session))
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert secret not in stored + logged and key.hash not in stored + logged
    with pytest.raises(ValueError):
        audit.record_key_change(session=session, admin=ada, action=audit.OPEN_CONVERSATION, key=key)
    assert len(rows(session)) == 2


# --- reading the trail -----------------------------------------------------------------------------------------------


def test_entries_are_newest_first_within_the_dates(session, ada, bob):
    def at(day: int) -> datetime:
        return datetime(2026, 3, day, 12, tzinfo=UTC)

    for day, conversation_id in ((2, "c2"), (5, "c5"), (3, "c3"), (9, "c9")):
        session.add(AdminAudit(at=at(day), action=audit.OPEN_CONVERSATION, admin_id=ada.id, admin_email=ada.email,
                               admin_name=ada.name, owner_id=bob.id, owner_name="", owner_email="",
                               owner_subject="bob", conversation_id=conversation_id))
    session.commit()

    f = Filters(start=date(2026, 3, 3), end=date(2026, 3, 5))
    found = audit.entries(session=session, since=f.since, until=f.until)
    assert [e.conversation_id for e in found] == ["c5", "c3"]
    assert found[0].owner == "bob"  # no name or e-mail copied: the subject
    assert [e.conversation_id for e in audit.entries(session=session, limit=2)] == ["c9", "c5"]
    assert session.exec(select(func.count()).select_from(AdminAudit)).one() == 4


# --- a real download from the dashboard -------------------------------------------------------------------------------


@pytest.mark.server
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium: apt-get install chromium")
def test_downloading_the_csv_from_the_dashboard_records_it(data_dir, server, tmp_path):  # noqa: F811  (fixtures)
    """Streamlit makes an export file only when its button is clicked, outside the page's run: AppTest cannot
    click it, so a browser does, and the audit row must appear with the file's size."""
    from playwright.sync_api import expect, sync_playwright

    engine = factories.make_engine(Settings())
    with Session(engine) as session:
        conversation_of(session, store.get_or_create_user(session=session, subject="bob", name="Bob"), rating=1)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            with _explained(page):
                page.goto(server)
                page.get_by_test_id("stSidebarNav").get_by_role("link", name="Dashboard").click(timeout=180_000)
                expect(page.get_by_role("heading", name="Share of thumbs up")).to_be_visible(timeout=120_000)
                _settled(page)
                page.get_by_role("tab", name="Export").click()
                _settled(page)
                with page.expect_download() as download:
                    page.get_by_role("button", name="Answers (CSV)").click()
                exported = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
                assert [r["question"] for r in exported] == [SECRET_QUESTION]

                _settled(page)
                page.get_by_role("tab", name="Admin access").click()
                # the table is a canvas grid: its cells are in the page for assistive tools, never "visible"
                expect(page.get_by_text("exported 1 answer (CSV)")).to_be_attached(timeout=60_000)
        finally:
            browser.close()
    with Session(engine) as session:
        [row] = session.exec(select(AdminAudit)).all()
        assert (row.action, row.admin_name, row.count, row.filters["kind"]) == (
            "export_answers", "Local developer", 1, "assistant")
    engine.dispose()
