# ruff: noqa: F811  (the fixtures imported from test_chat_app are parameters here)
"""Login, roles and rollout in the app shell, driven with Streamlit's AppTest.

``at.secrets["auth"]`` switches the app to login mode and ``at.user`` fakes the
signed-in person's ID-token claims (``is_logged_in`` plus the claims). The
handbook is indexed once per module (see ``test_chat_app``), so a question is
answered by the real assistant and its stored sources can be checked.
"""

from __future__ import annotations

import json
import time

import pytest
from sqlmodel import select
from streamlit.testing.v1 import AppTest
from test_chat_app import APP, _fresh_resources, data_dir, db, indexed_handbook, messages, ok  # noqa: F401

from feedback.models import Conversation, User
from ui import web

AUTH = {
    "redirect_uri": "http://localhost:8501/oauth2callback",
    "cookie_secret": "k7Qz2mV9pL4wR8tN1bX6cJ3hF5dG0sAy",
    "client_id": "onboard",
    "client_secret": "not-used-in-apptest",
    "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration",
}
EMPLOYEE = {"is_logged_in": True, "sub": "emp-1", "email": "erin@northwind.example", "email_verified": True, "name": "Erin",
            "groups": []}
ADMIN = {"is_logged_in": True, "sub": "adm-1", "email": "ada@northwind.example", "email_verified": True, "name": "Ada",
         "groups": ["admin"]}
HR = {"is_logged_in": True, "sub": "hr-1", "email": "hal@northwind.example", "email_verified": True, "name": "Hal",
      "groups": ["hr"]}
SALARY_DOC = "salary-bands-process.md"
SALARY_QUESTION = "how are salary bands reviewed?"


def app(user: dict | None, **kwargs) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.secrets["auth"] = dict(AUTH)
    at.user = user if user is not None else {"is_logged_in": False}
    return at


def texts(at: AppTest) -> str:
    return " ".join(m.value for m in [*at.title, *at.markdown, *at.error, *at.info, *at.caption])


def test_nobody_signed_in_sees_only_the_landing_page():
    at = ok(app(None).run())
    assert [b.label for b in at.button] == ["Log in"]
    assert not at.chat_input and web.LOCAL_MODE_NOTICE not in texts(at)
    with pytest.raises(ValueError):
        at.switch_page("pages/chat.py")


def test_with_named_providers_the_landing_page_offers_one_login_each():
    at = AppTest.from_file(APP, default_timeout=120)
    provider = {key: AUTH[key] for key in ("client_id", "client_secret", "server_metadata_url")}
    at.secrets["auth"] = {"redirect_uri": AUTH["redirect_uri"], "cookie_secret": AUTH["cookie_secret"],
                          "google": dict(provider), "contractor_okta": dict(provider), "SSO": dict(provider)}
    at.user = {"is_logged_in": False}
    at = ok(at.run())
    assert [(b.label, b.key) for b in at.button] == [("Log in with Google", "login-google"),
                                                      ("Log in with Contractor Okta", "login-contractor_okta"),
                                                      ("Log in with SSO", "login-SSO")]  # not "Sso"


def test_an_employee_sees_only_the_chat_page(data_dir):
    at = ok(app(EMPLOYEE).run())
    assert at.title[0].value == "Ask the handbook" and at.chat_input
    assert web.LOCAL_MODE_NOTICE not in texts(at)
    assert "Log out" in [b.label for b in at.sidebar.button]
    with pytest.raises(ValueError):
        at.switch_page("pages/admin.py")


def test_an_admin_sees_the_chat_and_the_admin_page(data_dir):
    at = ok(app(ADMIN).run())
    assert at.title[0].value == "Ask the handbook"
    ok(at.switch_page("pages/admin.py").run())
    assert at.title[0].value == "Dashboard" and "Share of thumbs up" in [h.value for h in at.subheader]


def test_a_user_from_another_domain_is_refused(monkeypatch, data_dir):
    monkeypatch.setenv("ONBOARD_ACCESS__ALLOWED_DOMAINS", '["northwind.example"]')
    outsider = {**EMPLOYEE, "sub": "out-1", "email": "eve@gmail.example"}
    at = ok(app(outsider).run())
    assert at.title[0].value == "You don't have access"
    assert "gmail.example" in at.error[0].value
    assert [b.label for b in at.button] == ["Log out"] and not at.chat_input and not at.sidebar.button
    with pytest.raises(ValueError):
        at.switch_page("pages/chat.py")
    at = ok(app(EMPLOYEE).run())  # the same settings let a colleague in
    assert at.chat_input


def test_an_expired_id_token_logs_out():
    expired = {**EMPLOYEE, "exp": time.time() - 3600}
    at = ok(app(expired).run())
    assert at.user.get("is_logged_in") is False and not at.chat_input
    ok(at.run())  # the browser comes back from the provider's logout
    assert [b.label for b in at.button] == ["Log in"]


def test_local_mode_shows_the_banner(data_dir):
    at = ok(AppTest.from_file(APP, default_timeout=120).run())
    assert at.info[0].value == web.LOCAL_MODE_NOTICE
    ok(at.switch_page("pages/admin.py").run())  # the local developer has every role
    assert at.title[0].value == "Dashboard"


def test_production_without_login_refuses_to_start(monkeypatch):
    monkeypatch.setenv("ONBOARD_ENVIRONMENT", "production")
    at = ok(AppTest.from_file(APP, default_timeout=120).run())
    assert "cannot start" in at.error[0].value and "[auth] section is missing" in at.error[0].value
    assert not at.chat_input and not at.title and not at.info


def test_production_refuses_a_placeholder_cookie_secret(monkeypatch):
    monkeypatch.setenv("ONBOARD_ENVIRONMENT", "production")
    at = app(EMPLOYEE)
    at.secrets["auth"]["cookie_secret"] = "change-me-change-me-change-me-change-me"
    at = ok(at.run())
    assert "placeholder" in at.error[0].value and not at.chat_input


def _ask_as(user: dict, question: str, db) -> tuple:
    at = ok(app(user).run())
    ok(at.chat_input[0].set_value(question).run())
    db.expire_all()
    stored = db.exec(select(User).where(User.subject == user["sub"])).one()
    conversations = db.exec(select(Conversation).where(Conversation.user_id == stored.id)).all()
    assert len(conversations) == 1
    answer = [m for m in messages(db) if m.conversation_id == conversations[0].id and m.role == "assistant"][-1]
    return at, stored, answer


def test_an_employee_never_gets_hr_only_documents(monkeypatch, db):
    monkeypatch.setenv("ONBOARD_ROLLOUT__FEATURES", json.dumps({
        "prompt-v2": {"groups": ["pilot"]}, "everyone": {"percent": 100}, "off": {"percent": 100, "enabled": False}}))
    _, employee, answer = _ask_as(EMPLOYEE, SALARY_QUESTION, db)
    assert (employee.email, employee.name, employee.groups) == ("erin@northwind.example", "Erin", [])
    assert answer.status in web.ANSWERED
    assert not [s for s in answer.sources if SALARY_DOC in str(s.get("source"))], answer.sources
    assert answer.features == ["everyone"]

    _, hr, hr_answer = _ask_as(HR, SALARY_QUESTION, db)  # the same question from HR does reach the document
    assert hr.groups == ["hr"]
    assert [s for s in hr_answer.sources if SALARY_DOC in str(s.get("source"))], hr_answer.sources


def test_people_see_only_their_own_conversations(db):
    _ask_as(EMPLOYEE, "How much time off do I get?", db)
    at = ok(app(ADMIN).run())
    assert not [b for b in at.sidebar.button if b.key.startswith("open-")]


def test_production_refuses_an_http_redirect_uri(monkeypatch):
    monkeypatch.setenv("ONBOARD_ENVIRONMENT", "production")
    at = ok(app(EMPLOYEE).run())  # AUTH: a random cookie secret, and http://localhost as the redirect URI
    assert "cannot start" in at.error[0].value and not at.chat_input
    assert "redirect_uri must be an https:// address in production" in at.error[0].value
    assert AUTH["cookie_secret"] not in at.error[0].value


def test_a_trusted_email_provider_that_is_not_configured_stops_the_app(monkeypatch):
    monkeypatch.setenv("ONBOARD_ACCESS__TRUSTED_EMAIL_PROVIDERS", '["entra"]')
    at = ok(app(EMPLOYEE).run())
    assert "ONBOARD_ACCESS__TRUSTED_EMAIL_PROVIDERS names 'entra'" in at.error[0].value and not at.chat_input


def test_documents_for_a_role_are_not_retrieved_for_a_group_of_the_same_name(monkeypatch):
    """ADMIN_GROUPS names another group: the identity provider's "admin" group gets no admin documents."""
    monkeypatch.setenv("ONBOARD_ACCESS__ADMIN_GROUPS", '["it-admins"]')
    monkeypatch.setattr(web, "login_configured", lambda: True)
    monkeypatch.setattr(web, "claims", lambda: {**EMPLOYEE, "groups": ["admin", "sales"]})
    who = web.identity()
    assert not who.is_admin
    assert web.retrieval_filter(who) == {"audience": ["all", "employee", "sales"]}
