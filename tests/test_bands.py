"""Answers in three bands (issue #18): stored with the answer, counted apart on the dashboard, on SQLite and
PostgreSQL (the ``engine`` fixture)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from sqlmodel import Session

from feedback import analytics, gaps, store
from feedback.models import Message, utcnow


@pytest.fixture
def session(engine):
    with Session(engine, expire_on_commit=False) as session:
        yield session


def _answer(session, user, question: str, band: str) -> Message:
    conversation = store.create_conversation(session=session, user=user)
    asked = store.add_user_message(session=session, user=user, conversation_id=conversation.id, content=question)
    pending = store.start_answer(session=session, question_id=asked.id, answerer="extractive")
    text = "Ask People Ops." if band == "abstained" else "You get 25 days [1]."
    return store.finish_answer(session=session, answer_id=pending.id, content=text, abstained=band == "abstained",
                               band=band)


def test_each_band_is_stored_and_counted_apart(session):
    ada = store.get_or_create_user(session=session, subject="ada")
    answered = _answer(session, ada, "How much PTO do I get?", "answered")
    unsure = [_answer(session, ada, f"Is there an office in Denver {i}?", "unsure") for i in range(2)]
    abstained = _answer(session, ada, "Who won the 1998 final?", "abstained")
    assert [(m.status, m.band) for m in (answered, *unsure, abstained)] == [
        ("complete", "answered"), ("complete", "unsure"), ("complete", "unsure"), ("abstained", "abstained")]

    today = utcnow().date()
    period = analytics.Filters(start=today - timedelta(days=1), end=today + timedelta(days=1))
    o = analytics.overview(session, period)
    assert (o.answers, o.abstained, o.unsure) == (4, 1, 2)
    assert (o.abstention_rate, o.unsure_rate) == (pytest.approx(0.25), pytest.approx(0.5))
    (day,) = analytics.daily_usage(session, period)
    assert (day.answers, day.abstained, day.unsure) == (4, 1, 2)

    questions = analytics.gap_questions(session, period)
    assert sorted((q.abstained, q.unsure) for q in questions) == [(False, True), (False, True), (True, False)]
    (topic,) = gaps.group_questions(questions, lambda texts: np.ones((len(texts), 4)))  # one topic
    assert (topic.count, topic.abstained, topic.unsure, topic.rated_down) == (3, 1, 2, 0)


def test_a_band_that_contradicts_the_status_is_refused(session):
    ada = store.get_or_create_user(session=session, subject="ada")
    conversation = store.create_conversation(session=session, user=ada)
    asked = store.add_user_message(session=session, user=ada, conversation_id=conversation.id, content="q?")
    pending = store.start_answer(session=session, question_id=asked.id, answerer="extractive")
    with pytest.raises(store.InvalidInput):
        store.finish_answer(session=session, answer_id=pending.id, content="x", abstained=False, band="abstained")
    with pytest.raises(store.InvalidInput):
        store.finish_answer(session=session, answer_id=pending.id, content="x", band="maybe")
