"""Follow-up questions offline: when a question leans on the conversation, and the search that then finds its passage."""

from __future__ import annotations

import pytest
from helpers_kb import write_docs

from assistant import followup
from assistant.answerability import AbstentionConfig
from assistant.answering import AnswerConfig, Assistant
from assistant.ingest import ingest
from assistant.retrieval import KnowledgeBase, RetrievalConfig

LEANING = [
    "and in Portugal?",
    "And for contractors?",
    "what about dental and vision?",
    "how about the UK?",
    "what if I live outside the US?",
    "so where do I book it then?",
    "how long is it?",
    "is it confidential?",
    "how do I reach them?",
    "does that also apply if I add my kids?",
    "how much notice should I give for that?",
    "do I have to come back to work after?",
    "can contractors get one too?",
    "any discount in the US?",
    "sick leave?",
]
STANDALONE = [
    "how much PTO do I get?",
    "When is my Tock due each week?",
    "What hours can I reach the GSA IT help desk?",
    "is there a gym stipend?",
    "Is it possible to work from another country for a month?",
    "is it ok to expense a taxi to the airport?",
    "How do I get access to Airtable?",
    "do I need a doctor's note when I'm sick?",
    "Is there a form that I need to fill out for a disability accommodation?",
    "My MacBook keeps nagging me about a macOS update. Should I just install it?",
    "This is my first federal job. How much annual leave do I earn?",
    "who can sign contracts on behalf of the company?",
]


@pytest.mark.parametrize("question", LEANING)
def test_a_question_that_leans_on_the_conversation_says_why(question):
    assert followup.leans_on(question), question


@pytest.mark.parametrize("question", STANDALONE)
def test_a_question_that_stands_alone_is_left_alone(question):
    assert followup.leans_on(question) is None, question


def test_the_search_joins_the_previous_question_and_keeps_the_typed_one_whole():
    history = [("user", "does the company match 401k contributions?"), ("assistant", "Yes, up to 4%. [1]"),
               ("user", "and the pension?"), ("assistant", "The handbook doesn't seem to cover this.")]
    assert followup.previous_question(history) == "and the pension?"
    assert followup.previous_question([("how much PTO?", "25 days")]) == "how much PTO?"  # (question, answer) pairs
    assert followup.previous_question([]) is None
    assert followup.combined_query("and for contractors?", "does the company match 401k?") == (
        "does the company match 401k? and for contractors?")


def test_a_joined_search_rescues_a_question_only_when_its_passages_mention_most_of_its_words():
    assert followup.rescues("do I need a doctor's note?", answerable=True, unmatched_terms=[])
    assert not followup.rescues("is there a gym stipend?", answerable=True, unmatched_terms=["gym", "stipend"])
    assert not followup.rescues("do I need a doctor's note?", answerable=False, unmatched_terms=[])


PENSION = "does the company match 401k contributions?"
DOCS = {
    "benefits/retirement.md": """
        # Retirement

        ## 401k

        The company matches 401k contributions up to 4% of your salary, from your first paycheck.
        Matching contributions vest immediately.

        ## Who can join

        Contractors cannot join the 401k plan; they save for retirement on their own.
    """,
    "finance/contractors.md": """
        # Contractors

        Contractors send an invoice for contractors work at the end of each month to contractors@example.com.
        Contractors are paid for contractors invoices within 30 days.
    """,
    "it/laptop.md": """
        # Laptops

        IT ships a laptop before your first day. Laptops are replaced every three years.
    """,
}


@pytest.fixture
def assistant(tmp_path, store, fake_embeddings, sqlite_engine) -> Assistant:
    ingest([write_docs(tmp_path / "docs", DOCS)], store=store, embeddings=fake_embeddings, engine=sqlite_engine)
    config = RetrievalConfig(k=2, abstention=AbstentionConfig(min_similarity=0.2))
    return Assistant(knowledge_base=KnowledgeBase(store, fake_embeddings, config), config=AnswerConfig())


def test_a_follow_up_is_answered_from_the_passage_the_conversation_points_to(assistant):
    first = assistant.answer(PENSION)
    assert first.cited and first.cited[0].source == "benefits/retirement.md"
    alone = assistant.answer("and for contractors?")
    assert alone.retrieval.documents[0].metadata["source"] == "finance/contractors.md"  # alone: the invoicing page

    history = [("user", PENSION), ("assistant", first.text)]
    answer = assistant.answer("and for contractors?", history=history)
    assert answer.retrieval.query == f"{PENSION} and for contractors?"
    assert answer.retrieval.documents[0].metadata["source"] == "benefits/retirement.md"
    assert not answer.abstained and answer.cited[0].source == "benefits/retirement.md"


def test_a_standalone_question_in_a_conversation_is_searched_as_typed(assistant):
    history = [("user", PENSION), ("assistant", "The company matches 401k contributions up to 4%. [1]")]
    answer = assistant.answer("When are laptops replaced?", history=history)
    assert answer.retrieval.query == "When are laptops replaced?"
    assert answer.cited[0].source == "it/laptop.md" and "replaced every three years" in answer.text
