# ruff: noqa: F811  (the fixtures imported from test_chat_app are parameters here)
"""The admin dashboard page with AppTest, on a database seeded through :mod:`feedback.store`.

The figures themselves are checked against hand-computed values in
``test_dashboard_analytics.py``; here: the page shows them, its filters change
them, triage saves and records history, the exports hold the filtered rows,
knowledge gaps are grouped, and people who are not admins never get the page.
Opening a conversation leaves an audit row that the "Admin access" tab lists
(on SQLite and PostgreSQL), and only admins see that tab. On the "API keys"
tab an admin creates a key, sees its secret once, and revokes it (the key
works, then is refused; both recorded in the audit trail); the channel filter
narrows every figure and the overview splits questions by channel (SQLite
and PostgreSQL).
"""

from __future__ import annotations

import csv
import io
import json
import logging
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from sqlmodel import Session, select
from streamlit.testing.v1 import AppTest
from test_chat_app import APP, _fresh_resources, data_dir, db, indexed_handbook, ok  # noqa: F401
from test_login import ADMIN, EMPLOYEE, app

from feedback import analytics, keys, review, store
from feedback.models import AdminAudit, ApiKey, Conversation, Rating, Triage, TriageEvent, User
from onboard import db as onboard_db
from ui import web

SOURCE = {"n": 1, "source": "parking.md", "title": "Parking", "section": "Garage", "url": None, "chunk_id": "c1",
          "passage": "Staff park in the north garage.", "cited": True}


def seed(session) -> dict:
    """Two people: Pia (pilot, team Eng, model m2) and Sam (team Sales, model m1).

    Pia: 3 answers (up, down "incorrect" + comment, abstained + down); Sam: 2 answers (up, up).
    """
    pia = store.get_or_create_user(session=session, subject="pia", name="Pia", groups=["pilot"], team="Eng")
    sam = store.get_or_create_user(session=session, subject="sam", name="Sam", groups=["sales"], team="Sales")
    ids = {}
    plan = [
        (pia, "m2", "where do I park my car?", False, 1, [], None),
        (pia, "m2", "is there parking for bikes <b>?", False, 0, ["incorrect"], "=wrong garage"),
        (pia, "m2", "where can I leave my bike overnight?", True, 0, [], None),
        (sam, "m1", "how much PTO do I get", False, 1, [], None),
        (sam, "m1", "when is payday", False, 1, [], None),
    ]
    conversations = {}
    for user, model, question, abstained, thumb, reasons, comment in plan:
        if user.id not in conversations:
            conversations[user.id] = store.create_conversation(session=session, user=user).id
        q = store.add_user_message(session=session, user=user, conversation_id=conversations[user.id],
                                   content=question)
        a = store.start_answer(session=session, question_id=q.id, answerer="llm", model=model, prompt_version="v1")
        store.finish_answer(session=session, answer_id=a.id, content=f"About {question}", sources=[SOURCE],
                            input_tokens=1000, output_tokens=100, latency_ms=500, ttft_ms=50, abstained=abstained)
        store.rate(session=session, user=user, message_id=a.id, thumb=thumb, reasons=reasons, comment=comment)
        ids[question] = a.id
    return ids


@pytest.fixture
def dashboard(data_dir, db, monkeypatch) -> AppTest:
    monkeypatch.setenv("ONBOARD_COSTS__PRICES", json.dumps({"m2": {"input": 10, "output": 100}}))
    seed(db)
    at = AppTest.from_file(APP, default_timeout=120)  # local mode: the local developer is an admin
    ok(at.run())
    return ok(at.switch_page("pages/admin.py").run())


def open_tab(at: AppTest, label: str) -> AppTest:
    """Select a tab of the dashboard (its tabs are lazy: only the open one runs)."""
    at.session_state["section"] = label
    return ok(at.run())


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_the_page_shows_the_figures_and_a_filter_narrows_them(dashboard):
    at = dashboard
    assert at.title[0].value == "Dashboard"
    # 5 answers, 2 people; thumbs up 3 of 5; 1 abstained of 5; cost: m2 only, 3 × (1000×10 + 100×100) / 1e6 = $0.06
    assert not [e for e in at.expander if "bikes" in e.label]  # lazy tabs: "Worst answers" is not open, not run
    assert metrics(at) == {"Questions": "5", "People": "2", "Thumbs up": "60%", "Abstained": "20%",
                           "Cost": "$0.06", "Latency p95": "500 ms"}
    ok(at.selectbox(key="filter_model").set_value("m1").run())
    assert metrics(at)["Questions"] == "2" and metrics(at)["Thumbs up"] == "100%" and metrics(at)["Cost"] == "$0.00"
    at.selectbox(key="filter_model").set_value("(any)")
    ok(at.selectbox(key="filter_group").set_value("pilot").run())
    assert metrics(at)["Questions"] == "3" and metrics(at)["People"] == "1" and metrics(at)["Thumbs up"] == "33%"


def test_triage_a_thumbs_down_and_keep_its_history(dashboard, db):
    at = open_tab(dashboard, "Worst answers")
    labels = [e.label for e in at.expander]
    assert any("is there parking for bikes" in label for label in labels)
    sources = next(df for df in at.dataframe if "cited" in df.value.columns).value
    assert list(sources["source"]) == ["parking.md"] and list(sources["cited"]) == [True]
    rating = db.exec(select(Rating).where(Rating.comment == "=wrong garage")).one()
    form = f"triage_rating_{rating.id}"
    status = next(s for s in at.selectbox if s.label == "Status" and form in str(s.proto.form_id))
    status.set_value("in_progress")
    next(t for t in at.text_input if t.label == "Owner" and form in str(t.proto.form_id)).set_value("Ana")
    next(t for t in at.text_input if t.label == "Note" and form in str(t.proto.form_id)).set_value("garage moved")
    ok(next(b for b in at.button if form in str(b.proto.form_id)).click().run())
    db.expire_all()
    entry = db.exec(select(Triage).where(Triage.subject == "rating", Triage.subject_id == rating.id)).one()
    assert (entry.status, entry.owner, entry.note) == ("in_progress", "Ana", "garage moved")
    events = db.exec(select(TriageEvent).where(TriageEvent.triage_id == entry.id)).all()
    assert [(e.old_status, e.status) for e in events] == [("new", "in_progress")]
    saved = next(e for e in at.expander if "is there parking for bikes" in e.label)
    assert saved.label.startswith("In progress") and saved.proto.expanded  # still open, its history showing
    ok(at.segmented_control(key="triage_status").set_value("in_progress").run())
    assert [e.label for e in at.expander if "parking" in e.label and "garage" not in e.label.lower()]
    assert all("In progress" in e.label for e in at.expander if e.label.startswith(("New", "In progress")))


def test_exports_hold_the_filtered_answers(dashboard, db):
    """The page offers both files; what they hold is what ``feedback.review`` exports for the page's filters."""
    at = open_tab(dashboard, "Export")
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Answers (CSV)", "Reviewed answers (JSONL, evaluation format)"]
    today = datetime.now(UTC).date()
    filters = analytics.Filters(start=today - timedelta(days=29), end=today)
    rows = list(csv.DictReader(io.StringIO(review.export_csv(db, filters))))
    assert len(rows) == 5
    bikes = next(r for r in rows if "bikes" in r["question"])
    assert bikes["comment"] == "'=wrong garage" and bikes["thumb"] == "0" and json.loads(bikes["reasons"]) == ["incorrect"]
    reviewed = [json.loads(line) for line in review.export_eval_jsonl(db, filters).splitlines()]
    assert sorted(c["question"] for c in reviewed) == ["how much PTO do I get", "when is payday",
                                                       "where do I park my car?"]
    assert all(c["gold_files"] == ["parking.md"] for c in reviewed)


def test_knowledge_gaps_group_the_parking_questions(dashboard):
    at = open_tab(dashboard, "Knowledge gaps")
    topics = next(df for df in at.dataframe if "topic" in df.value.columns).value
    # the two parking questions rated down or abstained form one topic, from one person
    assert topics.iloc[0]["questions"] == 2 and topics.iloc[0]["people"] == 1
    assert topics.iloc[0]["topic"].startswith("bike")
    labels = [e.label for e in at.expander]
    assert any(label.endswith("2 questions from 1 person") for label in labels), labels
    assert not any("1 questions" in label for label in labels)


def test_an_employee_cannot_open_the_dashboard(data_dir):
    at = ok(app(EMPLOYEE).run())
    with pytest.raises(ValueError):
        at.switch_page("pages/admin.py")
    at = ok(app(ADMIN).run())
    ok(at.switch_page("pages/admin.py").run())
    assert at.title[0].value == "Dashboard"


# --- the audit trail -------------------------------------------------------------------------------------------------


@pytest.fixture
def audited_dashboard(data_dir, database_url, monkeypatch):
    """The dashboard in local mode on a fresh SQLite or PostgreSQL database; yields the page and a session."""
    monkeypatch.setenv("ONBOARD_DATABASE_URL", database_url)
    engine = onboard_db.make_engine(database_url)
    onboard_db.upgrade(engine)  # the app migrates only SQLite by itself
    with Session(engine) as session:
        seed(session)
        at = AppTest.from_file(APP, default_timeout=120)
        ok(at.run())
        yield ok(at.switch_page("pages/admin.py").run()), session
    engine.dispose()


def audit_table(at: AppTest):
    return next((df.value for df in at.dataframe if "admin_email" in df.value.columns), None)


def test_opening_a_conversation_is_listed_under_admin_access(audited_dashboard):
    at, session = audited_dashboard
    at = open_tab(at, "Worst answers")
    ok(next(b for b in at.button if b.label == "Open the conversation").click().run())
    assert "Pia · team Eng · assistant" in [c.value for c in at.caption]  # the dialog shows the conversation

    [row] = session.exec(select(AdminAudit)).all()
    pia = session.exec(select(User).where(User.subject == "pia")).one()
    conversation = session.exec(select(Conversation).where(Conversation.user_id == pia.id)).one()
    assert (row.action, row.admin_name, row.owner_id, row.conversation_id) == (
        "open_conversation", "Local developer", pia.id, conversation.id)

    at = open_tab(at, "Admin access")
    table = audit_table(at)
    assert table is not None
    assert table[["admin", "what", "owner", "conversation"]].values.tolist() == [
        ["Local developer", "opened the conversation", "Pia", conversation.id]]
    assert table["when"].iloc[0] == pd.Timestamp(row.at)
    assert len(session.exec(select(AdminAudit)).all()) == 1  # listing the trail is not itself an opening

    today = datetime.now(UTC).date()
    ok(at.date_input(key="dates").set_value((today - timedelta(days=60), today - timedelta(days=40))).run())
    assert audit_table(at) is None
    assert "No conversation opened and nothing exported in this period." in [c.value for c in at.caption]


def test_admin_access_lists_newest_first_with_names_as_plain_text(audited_dashboard):
    at, session = audited_dashboard
    now = datetime.now(UTC)
    ada = store.get_or_create_user(session=session, subject="ada", email="ada@example.com", name="Ada")
    session.add(AdminAudit(at=now - timedelta(hours=2), action="open_conversation", admin_id=ada.id,
                           admin_name="Ada", admin_email="ada@example.com", owner_id=99,
                           owner_name="**Mallory** [x](javascript:alert(1)) \u202eevil", owner_email="m@example.com",
                           conversation_id="c1"))
    session.add(AdminAudit(at=now - timedelta(hours=1), action="export_answers", admin_id=ada.id, admin_name="Ada",
                           admin_email="ada@example.com", count=12,
                           filters={"start": "2026-11-01", "end": "2026-11-30", "kind": "assistant", "team": "eng"}))
    session.commit()

    table = audit_table(open_tab(at, "Admin access"))

    assert table[["what", "owner", "filters"]].values.tolist() == [
        ["exported 12 answers (CSV)", "", "2026-11-01 to 2026-11-30, assistant, team: eng"],
        ["opened the conversation", "**Mallory** [x](javascript:alert(1)) evil", ""],  # text, bidi override dropped
    ]
    assert not [m for m in at.markdown if "Mallory" in m.value]  # never rendered as Markdown


def test_someone_who_is_no_longer_an_admin_cannot_read_the_audit_trail(data_dir):
    at = ok(app(ADMIN).run())
    at = open_tab(ok(at.switch_page("pages/admin.py").run()), "Admin access")
    assert at.title[0].value == "Dashboard"
    assert "No conversation opened and nothing exported in this period." in [c.value for c in at.caption]

    at.user = {**ADMIN, "groups": []}  # the same person, dropped from the admin group
    ok(at.run())

    assert [e.value for e in at.error] == ["Page not found."]
    assert not at.title and audit_table(at) is None
    assert not [c for c in at.caption if "nothing exported" in c.value]


# --- API keys ----------------------------------------------------------------------------------------------------------


@pytest.fixture
def signed_in(data_dir, database_url, monkeypatch):
    """An empty SQLite or PostgreSQL database as the app's, and a session on it; the page is made by the test."""
    monkeypatch.setenv("ONBOARD_DATABASE_URL", database_url)
    engine = onboard_db.make_engine(database_url)
    onboard_db.upgrade(engine)
    with Session(engine) as session:
        yield session
    engine.dispose()


def keys_page(user: dict) -> AppTest:
    """The dashboard's "API keys" tab, for ``user`` signed in."""
    at = ok(app(user).run())
    return open_tab(ok(at.switch_page("pages/admin.py").run()), "API keys")


def keys_table(at: AppTest):
    return next((df.value for df in at.dataframe if "rate_per_minute" in df.value.columns), None)


def fill_key_form(at: AppTest, made: int = 0, *, name="Slack bot", team="People Ops", groups="staff, hr", days=90,
                  rate=30, on_behalf=True) -> AppTest:
    at.text_input(key=f"key_name_{made}").set_value(name)
    at.text_input(key=f"key_team_{made}").set_value(team)
    at.text_input(key=f"key_groups_{made}").set_value(groups)
    at.number_input(key=f"key_days_{made}").set_value(days)
    at.number_input(key=f"key_rate_{made}").set_value(rate)
    at.checkbox(key=f"key_on_behalf_{made}").set_value(on_behalf)
    return ok(next(b for b in at.button if b.label == "Create key").click().run())


def test_an_admin_creates_a_key_sees_it_once_and_revokes_it(signed_in, caplog):
    session = signed_in
    caplog.set_level(logging.DEBUG)
    at = keys_page(ADMIN)
    assert "No API keys yet." in [c.value for c in at.caption]

    at = fill_key_form(at)

    [shown] = [c.value for c in at.code]
    assert shown.startswith("onb_")
    assert any("cannot be shown again" in w.value for w in at.warning)
    [key] = session.exec(select(ApiKey)).all()
    assert keys.authenticate(session, shown).id == key.id  # the key shown is the key made, and it works
    assert (key.name, key.team, key.groups, key.on_behalf, key.rate_per_minute, key.created_by) == (
        "Slack bot", "People Ops", ["hr", "staff"], True, 30, ADMIN["email"])
    assert key.expires_at - key.created_at == timedelta(days=90)
    table = keys_table(at)
    assert table.drop(columns=["created"]).values.tolist() == [
        [key.id, f"onb_{shown[4:12]}…", "Slack bot", "People Ops", "hr, staff", True, "30", ADMIN["email"],
         f"{key.expires_at:%Y-%m-%d %H:%M} UTC", "never", "active"]]  # shown before its first use
    assert key.hash not in table.to_string() and shown not in table.to_string()
    assert shown not in repr(at.session_state.to_dict())  # the secret is not kept for a later run
    assert not [r for r in caplog.records if shown in r.getMessage()]  # nor logged

    at = ok(at.run())  # any later run: the secret is gone, and the form is empty again
    assert not at.code and not [w for w in at.warning if "cannot be shown again" in w.value]
    assert at.text_input(key="key_name_1").value == "" and at.text_input(key="key_team_1").value == ""
    assert keys_table(at)["last_used"].tolist() == [f"{key.last_used_at:%Y-%m-%d %H:%M} UTC"]  # the use above

    ok(at.selectbox(key="revoke_choice").set_value(key.id).run())
    at = ok(at.button(key="revoke_ask").click().run())
    assert any(web.plain(f"Revoke onb_{shown[4:12]}… Slack bot") in w.value for w in at.warning)
    at = ok(at.button(key="revoke_cancel").click().run())  # asked, then cancelled: nothing revoked
    session.expire_all()
    assert keys.state(session.get(ApiKey, key.id)) == "active"

    ok(at.selectbox(key="revoke_choice").set_value(key.id).run())
    ok(at.button(key="revoke_ask").click().run())
    at = ok(at.button(key="revoke_yes").click().run())

    session.expire_all()
    with pytest.raises(keys.KeyRejected):
        keys.authenticate(session, shown)
    assert keys_table(at)["state"].tolist() == ["revoked"]
    assert not [s for s in at.selectbox if s.key == "revoke_choice"]  # no active key left to revoke
    assert [(r.action, r.admin_email, r.filters["key_id"]) for r in session.exec(select(AdminAudit)
                                                                                 .order_by(AdminAudit.id))] == [
        ("create_api_key", ADMIN["email"], key.id), ("revoke_api_key", ADMIN["email"], key.id)]
    audit_rows = audit_table(open_tab(at, "Admin access"))
    assert audit_rows["what"].tolist() == [f"revoked API key onb_{shown[4:12]}… (Slack bot, team People Ops)",
                                           f"created API key onb_{shown[4:12]}… (Slack bot, team People Ops)"]


def test_a_refused_key_keeps_the_form_and_key_text_stays_text(signed_in):
    session = signed_in
    at = fill_key_form(keys_page(ADMIN), name="  ", team="People Ops")

    assert [e.value for e in at.error] == ["An API key needs a name."]
    assert not at.code and not session.exec(select(ApiKey)).all()
    assert at.text_input(key="key_team_0").value == "People Ops"  # nothing typed is lost

    sneaky = "**Bot** [docs](javascript:alert(1)) \u202eevil"
    at = fill_key_form(at, name=sneaky, team="<b>Ops</b>", groups="", days=None, rate=None, on_behalf=False)
    [success] = [s.value for s in at.success]
    assert "[docs](javascript" not in success and "\\[docs\\]" in success and "\u202e" not in success
    row = keys_table(at).iloc[0]
    assert (row["name"], row["team"], row["groups"], row["on_behalf"], row["rate_per_minute"]) == (
        "**Bot** [docs](javascript:alert(1)) evil", "<b>Ops</b>", "", False, "default (60)")  # text, bidi dropped
    assert (row["expires"], row["last_used"]) == ("never", "never")
    assert not [m for m in at.markdown if "Bot" in m.value]


def test_only_admins_ever_see_the_keys(signed_in):
    session = signed_in
    at = ok(app(EMPLOYEE).run())
    with pytest.raises(ValueError):
        at.switch_page("pages/admin.py")

    at = keys_page(ADMIN)
    at.text_input(key="key_name_0").set_value("Late bot")
    at.text_input(key="key_team_0").set_value("Ops")
    at.user = {**ADMIN, "groups": []}  # dropped from the admin group with the form filled in
    at = ok(next(b for b in at.button if b.label == "Create key").click().run())

    assert [e.value for e in at.error] == ["Page not found."]
    assert not at.code and keys_table(at) is None and not [b for b in at.button if b.label == "Create key"]
    assert not session.exec(select(ApiKey)).all()


# --- channels ----------------------------------------------------------------------------------------------------------


def seed_api_questions(session) -> None:
    """Two questions from Tom (team Eng) through the API, one rated up: besides the seed's five on the page."""
    tom = store.get_or_create_user(session=session, subject="tom", name="Tom", groups=[], team="Eng")
    conversation = store.create_conversation(session=session, user=tom).id
    for question, thumb in (("how do I book a room", 1), ("who approves travel", None)):
        q = store.add_user_message(session=session, user=tom, conversation_id=conversation, content=question,
                                   channel="api")
        a = store.start_answer(session=session, question_id=q.id, answerer="extractive", model="m1")
        store.finish_answer(session=session, answer_id=a.id, content=f"About {question}", sources=[SOURCE],
                            input_tokens=10, output_tokens=5, latency_ms=300, ttft_ms=30)
        if thumb is not None:
            store.rate(session=session, user=tom, message_id=a.id, thumb=thumb)


def channel_table(at: AppTest):
    return next(df.value for df in at.dataframe if "channel" in df.value.columns and "people" in df.value.columns)


def test_the_channel_filter_narrows_every_figure_and_the_overview_splits_by_channel(signed_in):
    seed(signed_in)
    seed_api_questions(signed_in)
    at = ok(AppTest.from_file(APP, default_timeout=120).run())  # local mode: an admin
    at = ok(at.switch_page("pages/admin.py").run())
    assert metrics(at)["Questions"] == "7" and metrics(at)["People"] == "3"
    assert channel_table(at).values.tolist() == [["web", 5, 5, 2], ["api", 2, 2, 1]]

    ok(at.selectbox(key="filter_channel").set_value("api").run())
    assert (metrics(at)["Questions"], metrics(at)["People"], metrics(at)["Thumbs up"]) == ("2", "1", "100%")
    assert channel_table(at).values.tolist() == [["api", 2, 2, 1]]

    ok(at.selectbox(key="filter_channel").set_value("web").run())
    assert (metrics(at)["Questions"], metrics(at)["People"], metrics(at)["Thumbs up"]) == ("5", "2", "60%")
    at = open_tab(at, "Worst answers")  # the lists follow the channel too: the seed's two thumbs down are on the page
    assert len([e for e in at.expander if e.label.startswith("New")]) == 2
    ok(at.selectbox(key="filter_channel").set_value("api").run())
    assert not [e for e in at.expander if e.label.startswith("New")]

    ok(at.selectbox(key="filter_channel").set_value("(any)").run())
    ok(at.selectbox(key="split").set_value("channel").run())
    at = open_tab(at, "Feedback")
    totals = next(df.value for df in at.dataframe if "series" in df.value.columns and "ratings" in df.value.columns)
    assert dict(zip(totals["series"], totals["ratings"], strict=True)) == {"web": 5, "api": 1}


def test_a_key_is_not_made_or_revoked_without_its_audit_row(signed_in, monkeypatch):
    """The key change and its record of which admin made it are one transaction: a failed audit write leaves
    neither, and the page says so."""
    from feedback import audit

    session, original = signed_in, audit._add

    def refuse(session, entry):
        raise RuntimeError("the audit table refused the row")

    at = keys_page(ADMIN)
    monkeypatch.setattr(audit, "_add", refuse)
    at = fill_key_form(at)
    assert not at.code and any("could not be saved" in e.value for e in at.error)
    session.expire_all()
    assert session.exec(select(ApiKey)).all() == []  # no key exists without its audit row

    monkeypatch.setattr(audit, "_add", original)  # (not undo(): the sign-in is a monkeypatch too)
    _, secret = keys.create_key(session, name="bot", team="ops")
    key = session.exec(select(ApiKey)).one()
    at = keys_page(ADMIN)
    monkeypatch.setattr(audit, "_add", refuse)
    ok(at.selectbox(key="revoke_choice").set_value(key.id).run())
    ok(at.button(key="revoke_ask").click().run())
    at = ok(at.button(key="revoke_yes").click().run())
    assert any("could not be saved" in e.value for e in at.error)
    session.expire_all()
    assert keys.state(session.get(ApiKey, key.id)) == "active" and keys.authenticate(session, secret).id == key.id
