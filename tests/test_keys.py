"""API keys on a migrated database (SQLite, and PostgreSQL with TEST_DATABASE_URL): made once, stored hashed,
refused alike when unknown, revoked or expired, last use written at most once a minute."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import timedelta

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from feedback import keys
from feedback.models import ApiKey, utcnow
from feedback.store import InvalidInput, NotFound


@pytest.fixture
def session(engine):
    with Session(engine) as session:
        yield session


def make(session, **fields):
    return keys.create_key(session, **({"name": "Slack bot", "team": "people-ops"} | fields))


def test_the_secret_is_returned_once_and_only_its_hash_and_prefix_are_stored(engine, session):
    key, secret = make(session, groups=["staff", "hr"], created_by="ada@example.com")

    assert secret.startswith("onb_") and len(secret) == len("onb_") + 43
    assert key.hash == hashlib.sha256(secret.encode()).hexdigest()
    assert key.prefix == secret[4:12]
    assert (key.name, key.team, key.groups, key.on_behalf, key.created_by) == (
        "Slack bot", "people-ops", ["hr", "staff"], False, "ada@example.com")
    with engine.connect() as connection:
        row = connection.execute(text("SELECT * FROM api_key")).one()
    assert not any(secret in str(value) or secret[4:] in str(value) for value in row)
    other, other_secret = make(session)
    assert other_secret != secret and other.hash != key.hash


def test_a_key_is_accepted_and_unknown_revoked_or_expired_keys_are_refused_alike(session, caplog):
    key, secret = make(session)
    short, short_secret = make(session, name="one day", expires_days=1)
    gone, gone_secret = make(session, name="old bot")
    keys.revoke_key(session, gone.id)

    assert keys.authenticate(session, secret).id == key.id
    assert keys.authenticate(session, short_secret).id == short.id
    tomorrow = utcnow() + timedelta(days=1, seconds=1)
    refused = {
        "unknown": (secret[:-1] + ("A" if secret[-1] != "A" else "B"), None),
        "garbage": ("Bearer nonsense", None),
        "revoked": (gone_secret, None),
        "expired": (short_secret, tomorrow),
    }
    messages = set()
    with caplog.at_level(logging.INFO, logger="feedback.keys"):
        for presented, now in refused.values():
            with pytest.raises(keys.KeyRejected) as caught:
                keys.authenticate(session, presented, now=now)
            messages.add(str(caught.value))

    assert messages == {keys.REJECTED}
    log = caplog.text
    assert "unknown key" in log and f"key {gone.id} (old bot) is revoked" in log
    assert f"key {short.id} (one day) is expired" in log
    assert not any(presented in log or presented[4:20] in log for presented, _ in refused.values())
    assert keys.authenticate(session, secret, now=tomorrow).id == key.id  # a key without expiry goes on


def test_last_use_is_written_at_most_once_a_minute(engine, session):
    key, secret = make(session)
    assert key.last_used_at is None
    updates = []
    event.listen(engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *rest: updates.append(statement)
                 if statement.lstrip().upper().startswith("UPDATE") else None)
    start = utcnow()

    keys.authenticate(session, secret, now=start)
    for seconds in (1, 20, 59):
        keys.authenticate(session, secret, now=start + timedelta(seconds=seconds))
    assert len(updates) == 1
    assert session.get(ApiKey, key.id).last_used_at == start

    keys.authenticate(session, secret, now=start + timedelta(seconds=61))
    assert len(updates) == 2
    with Session(engine) as other:  # what another process reads
        assert other.get(ApiKey, key.id).last_used_at == start + timedelta(seconds=61)


def test_another_process_recording_the_use_first_is_not_overwritten(engine, session):
    """Two processes see the same stale last use; the conditional update lets only the first write."""
    key, secret = make(session)
    start = utcnow()
    keys.authenticate(session, secret, now=start)
    with Session(engine) as stale:
        stale_key = stale.get(ApiKey, key.id)
        keys.authenticate(session, secret, now=start + timedelta(seconds=70))
        keys._touch(stale, stale_key, start + timedelta(seconds=65))  # it still believes the last use was at start
        assert stale_key.last_used_at == start + timedelta(seconds=70)


def test_names_teams_and_groups_are_cleaned_and_bad_values_refused(session):
    key, _ = make(session, name="  Teams\x1b[31m  bot\x00 ", team="eng\r\n", groups=["hr", " hr ", "", "st\x07aff"])
    assert (key.name, key.team, key.groups) == ("Teams bot", "eng", ["hr", "staff"])

    bad = {
        "an API key needs a name": {"name": " \x00 "},
        "needs a team": {"team": ""},
        "name is longer than 100": {"name": "x" * 101},
        "group is longer than 128": {"groups": ["g" * 129]},
        "not one string": {"groups": "hr,staff"},
        "expires_days must be a whole number from 1": {"expires_days": 0},
        "rate_per_minute must be a whole number from 1": {"rate_per_minute": -5},
    }
    for message, fields in bad.items():
        with pytest.raises(InvalidInput, match=f"(?i){message}"):
            make(session, **fields)
    assert [k.id for k in keys.list_keys(session)] == [key.id]


def test_keys_are_listed_newest_first_and_revoking_keeps_the_first_date(session):
    first, _ = make(session, name="first", rate_per_minute=30, on_behalf=True)
    make(session, name="second")
    when = utcnow() - timedelta(hours=1)

    revoked = keys.revoke_key(session, first.id, now=when)
    again = keys.revoke_key(session, first.id)

    assert [k.name for k in keys.list_keys(session)] == ["second", "first"]
    assert revoked.revoked_at == again.revoked_at == when
    assert (first.rate_per_minute, first.on_behalf) == (30, True)
    assert [keys.state(k) for k in keys.list_keys(session)] == ["active", "revoked"]
    with pytest.raises(NotFound, match="No API key with id 999"):
        keys.revoke_key(session, 999)


def test_the_database_refuses_two_keys_with_one_hash(session):
    key, _ = make(session)
    session.add(ApiKey(name="copy", prefix=key.prefix, hash=key.hash, team="t"))
    with pytest.raises(IntegrityError):
        session.commit()


# --- onboard keys (the CLI) --------------------------------------------------------------------------------------


def keys_cli(database_url: str, *args: str):
    from typer.testing import CliRunner

    from onboard.cli import app

    return CliRunner().invoke(app, ["keys", *args], env={"COLUMNS": "250", "ONBOARD_DATABASE_URL": database_url})


def test_cli_creates_a_key_printed_once_that_authenticates(engine, database_url):
    result = keys_cli(database_url, "create", "--name", "Slack bot", "--team", "people-ops", "--groups", "hr, staff,",
                      "--expires-days", "30", "--on-behalf", "--rate-per-minute", "20")

    assert result.exit_code == 0, result.output
    secret = result.stdout.strip()
    assert secret.startswith("onb_") and "\n" not in secret  # alone on stdout: KEY=$(onboard keys create ...)
    assert "cannot be shown again" in result.stderr
    assert "created API key 1 (Slack bot) for team people-ops" in result.stderr
    with Session(engine) as session:
        key = keys.authenticate(session, secret)
        assert (key.groups, key.on_behalf, key.rate_per_minute, key.created_by) == (["hr", "staff"], True, 20, "cli")
        assert key.expires_at - key.created_at == timedelta(days=30)

    listed = keys_cli(database_url, "list")
    assert listed.exit_code == 0, listed.output
    assert secret not in listed.output and secret[4:] not in listed.output
    assert key.hash not in listed.output
    header, row = listed.stdout.splitlines()
    assert header.split()[:5] == ["id", "prefix", "name", "team", "groups"]
    assert f"onb_{secret[4:12]}…" in row and "Slack bot" in row and "hr,staff" in row and " yes " in row


def test_cli_lists_revoked_keys_and_revoking_twice_or_an_unknown_key(engine, database_url):
    for name in ("first", "second"):
        assert keys_cli(database_url, "create", "--name", name, "--team", "eng").exit_code == 0

    revoked = keys_cli(database_url, "revoke", "1")
    again = keys_cli(database_url, "revoke", "1")
    unknown = keys_cli(database_url, "revoke", "9")

    assert revoked.exit_code == 0 and "revoked API key 1 (first, onb_" in revoked.stdout
    assert again.exit_code == 0 and "was already revoked on" in again.stdout
    assert unknown.exit_code == 2 and "No API key with id 9." in unknown.stderr
    rows = [json.loads(line) for line in keys_cli(database_url, "list", "--json").stdout.splitlines()]
    assert [(row["name"], row["state"]) for row in rows] == [("second", "active"), ("first", "revoked")]
    assert not any("hash" in row for row in rows)


def test_cli_refuses_a_bad_key_with_a_message_and_stores_nothing(engine, database_url):
    empty = keys_cli(database_url, "create", "--name", " ", "--team", "eng")
    zero = keys_cli(database_url, "create", "--name", "bot", "--team", "eng", "--expires-days", "0")

    assert empty.exit_code == 2 and "An API key needs a name." in empty.stderr
    assert zero.exit_code == 2 and "--expires-days" in zero.output
    assert "no API keys" in keys_cli(database_url, "list").stdout
