"""Rate limits held in the database (SQLite, and PostgreSQL with TEST_DATABASE_URL): one limit per key shared by
every engine (process) on the database, exact under concurrent requests, recovering in the next minute."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select

from feedback import limits
from feedback.models import RateWindow
from feedback.store import InvalidInput
from onboard import db

#: 10 s into a minute, so a test never straddles two windows.
T0 = datetime(2026, 12, 7, 21, 0, 10, tzinfo=UTC)


@pytest.fixture
def session(engine):
    with Session(engine) as session:
        yield session


@pytest.fixture
def second_engine(engine, database_url):
    """Another engine on the same database: what a second app process has."""
    other = db.make_engine(database_url)
    yield other
    other.dispose()


def test_a_key_gets_its_limit_then_a_retry_time_then_the_next_minute(session):
    results = [limits.hit(session, key_id=1, per_minute=3, now=T0 + timedelta(seconds=i)) for i in range(5)]

    assert [(r.allowed, r.remaining) for r in results] == [
        (True, 2), (True, 1), (True, 0), (False, 0), (False, 0)]
    assert [r.retry_after_s for r in results] == [0, 0, 0, 47, 46]  # until 21:01:00
    assert results[0].limit == 3 and results[0].reset_s == 50
    assert limits.hit(session, key_id=2, per_minute=3, now=T0).remaining == 2  # another key has its own
    recovered = limits.hit(session, key_id=1, per_minute=3, now=T0 + timedelta(seconds=50))
    assert (recovered.allowed, recovered.remaining) == (True, 2)


def test_two_processes_share_one_limit(engine, second_engine):
    allowed = []
    with Session(engine) as first, Session(second_engine) as second:
        for i in range(10):
            allowance = limits.hit((first, second)[i % 2], key_id=7, per_minute=4, now=T0)
            allowed.append(allowance.allowed)
    assert allowed == [True] * 4 + [False] * 6


def test_exactly_the_limit_is_allowed_among_concurrent_requests(engine, second_engine):
    requests, per_minute = 40, 15
    start = threading.Barrier(requests)
    outcomes: list[bool] = []
    errors: list[BaseException] = []

    def request(i: int) -> None:
        try:
            with Session((engine, second_engine)[i % 2]) as session:
                start.wait()
                outcomes.append(limits.hit(session, key_id=3, per_minute=per_minute, now=T0).allowed)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=request, args=(i,)) for i in range(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert (outcomes.count(True), outcomes.count(False)) == (per_minute, requests - per_minute)
    with Session(engine) as session:
        assert session.exec(select(RateWindow.hits).where(RateWindow.key_id == 3)).one() == requests


def test_a_keys_old_windows_are_deleted_when_its_new_minute_starts(session):
    for minutes in (0, 1, 5):
        limits.hit(session, key_id=1, per_minute=10, now=T0 + timedelta(minutes=minutes))
        limits.hit(session, key_id=1, per_minute=10, now=T0 + timedelta(minutes=minutes, seconds=5))
    limits.hit(session, key_id=2, per_minute=10, now=T0)

    rows = session.exec(select(RateWindow.key_id, RateWindow.minute, RateWindow.hits)
                        .order_by(RateWindow.key_id)).all()
    minute = int(T0.timestamp()) // 60
    assert rows == [(1, minute + 5, 2), (2, minute, 1)]


@pytest.mark.parametrize("per_minute", [0, -1, True, 2.5])
def test_a_limit_that_is_not_a_positive_whole_number_is_refused(session, per_minute):
    with pytest.raises(InvalidInput, match="whole number of requests per minute"):
        limits.hit(session, key_id=1, per_minute=per_minute, now=T0)


def test_concurrent_requests_that_authenticate_then_count_in_one_session(engine, second_engine):
    """The API's sequence (find the key, record its use, count the request) in one session per request, across
    two engines: no request fails on a locked database, and the limit is exact."""
    from feedback import keys
    from feedback.models import ApiKey

    with Session(engine) as session:
        key, secret = keys.create_key(session, name="bot", team="eng")
        key_id = key.id
    requests, per_minute = 30, 12
    start = threading.Barrier(requests)
    outcomes: list[bool] = []
    errors: list[BaseException] = []

    def request(i: int) -> None:
        try:
            with Session((engine, second_engine)[i % 2]) as session:
                start.wait()
                found = keys.authenticate(session, secret, now=T0)
                outcomes.append(limits.hit(session, key_id=found.id, per_minute=per_minute, now=T0).allowed)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=request, args=(i,)) for i in range(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert outcomes.count(True) == per_minute
    with Session(engine) as session:
        assert session.get(ApiKey, key_id).last_used_at == T0
