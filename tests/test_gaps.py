"""Knowledge-gap topics: similar questions grouped, labelled by their shared words, biggest first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from feedback.analytics import GapQuestion
from feedback.gaps import group_questions, topic_label

VOCABULARY = ["park", "car", "garage", "dog", "pet", "office", "wifi", "password"]


def bag_of_words(texts: list[str]) -> np.ndarray:
    """A transparent stand-in for the embedding model: one axis per vocabulary word."""
    return np.array([[float(word in text.lower()) + 1e-3 for word in VOCABULARY] for text in texts])


def question(i: int, text: str, user: int, abstained: bool = True) -> GapQuestion:
    return GapQuestion(i, f"c{i}", text, abstained, datetime(2026, 11, 1, tzinfo=UTC) + timedelta(hours=i), user)


def test_similar_questions_share_a_topic_and_the_biggest_comes_first():
    questions = [
        question(1, "Where do I park my car?", user=1),
        question(2, "Is there a garage to park in?", user=2, abstained=False),
        question(3, "Can I park my car in the garage overnight?", user=1),
        question(4, "Can I bring my dog to the office?", user=3),
        question(5, "What is the wifi password?", user=4),
    ]
    topics = group_questions(questions, bag_of_words, similarity=0.5)
    assert [t.count for t in topics] == [3, 1, 1]
    parking = topics[0]
    assert parking.people == 2 and parking.abstained == 2 and parking.rated_down == 1
    assert parking.label.split(", ")[0] == "park"
    assert [e.message_id for e in parking.examples] == [3, 2, 1]  # newest first


def test_a_high_threshold_keeps_every_question_apart_and_nothing_gives_nothing():
    questions = [question(1, "park car", 1), question(2, "park garage", 2)]
    assert [t.count for t in group_questions(questions, bag_of_words, similarity=0.99)] == [1, 1]
    assert group_questions([], bag_of_words) == []
    assert [t.count for t in group_questions(questions[:1], bag_of_words)] == [1]


def test_labels_count_a_word_once_per_question_in_its_usual_spelling():
    assert topic_label(["bikes bikes bikes", "a bike rack?", "where are bikes kept"]) == "bikes, rack, kept"
    assert topic_label(["how much PTO do I get?", "how many PTO days?"]) == "pto, days"  # not "pto, much"


def test_a_price_covers_the_dated_names_providers_report():
    from feedback.analytics import Price, price_for

    prices = {"gpt-4o": Price(2.5, 10), "gpt-4o-mini": Price(0.15, 0.6)}
    assert price_for("gpt-4o-mini-2024-07-18", prices) == Price(0.15, 0.6)  # the longest priced prefix
    assert price_for("gpt-4o-2024-08-06", prices) == Price(2.5, 10)
    assert price_for("gpt-4o", prices) == Price(2.5, 10)
    assert price_for("gpt-4omni", prices) == Price() and price_for("llama3", prices) == Price()
