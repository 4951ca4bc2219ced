"""The extractive answer's quotes: each line once, a heading where the line alone does not say where it applies,
a table whole or one row under its header, nothing far less relevant than the best quote, an anaphor with what
it points back to. Fake embeddings (bag of words), passages built here."""

from __future__ import annotations

import numpy as np
from conftest import FakeEmbeddings
from langchain_core.documents import Document

from assistant.quotes import UnitVectors, Weights, choose, layout, render


def quote(question: str, passages: list[tuple[str, dict]], *, max_units: int = 4, **weights) -> str:
    embeddings = FakeEmbeddings()
    documents = [Document(page_content=text, metadata={"score": 1.0, **meta}) for text, meta in passages]
    chosen = choose(question, embeddings.embed_query(question), documents, UnitVectors(embeddings.embed_documents),
                    max_units=max_units, weights=Weights(**weights))
    return "".join(layout(render(chosen, marker=lambda p: f"[{p + 1}]", heading=lambda p: "")))


def test_a_line_found_in_two_passages_of_one_section_is_shown_once():
    meta = {"source": "time.md", "section": "Tock"}
    text = quote("when do I Tock on Friday", [
        ("Please make sure you Tock before you end your workday on Friday.", meta),
        ("Please make sure you Tock before you end your workday on Friday. Tock is our time tool.", meta),
    ])
    assert text.count("Please make sure you Tock") == 1


def test_the_same_line_under_two_headings_the_question_names_carries_each_heading():
    premium = "The company pays 100% of the premium for you and your family."
    text = quote("does the company pay the premium for dental and vision", [
        (premium, {"source": "benefits.md", "section": "Insurance > Dental"}),
        (premium, {"source": "benefits.md", "section": "Insurance > Vision"}),
    ])
    assert text == (f"- **Dental:** {premium} [1]\n"
                    f"- **Vision:** {premium} [2]")


def test_a_line_that_names_nothing_of_the_question_is_shown_under_its_heading():
    text = quote("who pays for dental", [
        ("The company pays 100% of the premium for you and your family.", {"section": "Benefits > Dental"}),
    ])
    assert text == "**Dental:** The company pays 100% of the premium for you and your family. [1]"


def test_a_row_of_a_table_split_from_its_header_is_shown_under_the_header_of_its_section():
    meta = {"source": "pto.md", "section": "Allowance"}
    head = "Your allowance depends on your country.\n\n| Country | Days |\n| --- | --- |\n| US | 20 |\n| France | 25 |"
    rest = "| Portugal | 22 |\n| Spain | 23 |\n| Italy | 21 |"  # the table's end, cut into a passage of its own
    text = quote("Portugal PTO days", [(rest, meta), (head, meta)], max_units=1)
    assert "| Country | Days |\n| --- | --- |\n| Portugal | 22 |" in text


def test_two_rows_of_a_big_table_become_the_best_row_alone_under_its_header():
    rows = "\n".join(f"| office {i} | building {i} with a long description of the way there |" for i in range(12))
    table = "| Office | Building |\n| --- | --- |\n" + rows + "\n| Lisbon office | Lisbon building by the river |"
    text = quote("Lisbon office building", [(table, {})], max_units=4, per_passage=4)
    assert text.count("| Office | Building |") == 1
    assert "Lisbon" in text and sum(line.startswith("| office") for line in text.splitlines()) == 0


def test_a_unit_far_less_relevant_than_the_best_is_dropped():
    best = "The home office stipend is 600 dollars for a desk and a chair."
    far = "Badges are issued by security."
    text = quote("home office stipend for a desk and chair", [(best, {}), ("The stipend lunch. " + far, {})],
                 max_units=4)
    assert best in text and far not in text


def test_a_sentence_pointing_back_to_that_cutoff_is_quoted_with_the_sentence_defining_it():
    payroll = ("In the US, payroll closes 5 business days before each pay date. "
               "If you start before that cutoff, your first paycheck arrives on the next pay date.")
    text = quote("when does my first paycheck arrive if I start", [(payroll, {}), ("Lunch is at noon.", {})],
                 max_units=1)
    assert text == payroll + " [1]"


def test_a_sentence_read_in_its_passage_is_scored_with_what_the_passage_says(local_embeddings):
    """'It is staffed from 7am to 7pm' does not say what is staffed; read inside its passage it does."""
    documents = [
        Document(page_content="Managers review expense reports every Friday. Reports filed late wait a week.",
                 metadata={"title": "Expenses", "section": "Reviews", "score": 1.0}),
        Document(page_content="The Help Desk fixes laptops, phones and accounts. Open a ticket in the portal. "
                              "It is staffed from 7am to 7pm ET on weekdays.",
                 metadata={"title": "Equipment", "section": "Help Desk", "score": 0.95}),
    ]
    question = "what are the help desk's hours?"
    hours = "It is staffed from 7am to 7pm ET on weekdays."

    embedded_alone: list[str] = []

    def embed(texts: list[str]) -> list[list[float]]:
        embedded_alone.extend(texts)
        return local_embeddings.embed_documents(texts)

    def chosen(context: float) -> list:
        vectors = UnitVectors(embed, in_context=local_embeddings.embed_in_context)
        return choose(question, local_embeddings.embed_query(question), documents, vectors, max_units=3,
                      weights=Weights(context=context))

    alone = chosen(0.0)
    assert embedded_alone
    embedded_alone.clear()
    in_context = chosen(0.75)
    assert embedded_alone == [], "read in context, the units' own vectors come from the same runs as the passages'"
    similarity = {c: next(s.signals["similarity"] for s in got if s.unit.text == hours)
                  for c, got in ((0.0, alone), (0.75, in_context))}
    assert similarity[0.75] > similarity[0.0] + 0.05
    order = [s.unit.text for s in in_context]
    assert order.index(hours) < order.index("Open a ticket in the portal.")
    # Without token states (an API model), units are embedded alone whatever the weight.
    plain = UnitVectors(local_embeddings.embed_documents)
    api_like = choose(question, local_embeddings.embed_query(question), documents, plain, max_units=3,
                      weights=Weights(context=0.75))
    assert [s.unit.text for s in api_like] == [s.unit.text for s in alone]


def test_what_is_read_in_context_comes_back_even_when_the_cache_is_smaller_than_the_turn():
    calls = []

    def in_context(texts, spans):
        calls.append(texts)
        return np.zeros((len(texts), 3), dtype=np.float32), [[None if span is None else np.full(3, float(i)) for span in s] for i, s in enumerate(spans)]

    vectors = UnitVectors(lambda texts: [[0.0, 0.0, 0.0] for _ in texts], size=2, in_context=in_context)
    passage = "Title\n\nAlpha one. Beta two. Gamma three."
    pairs = [(passage, unit, len("Title\n\n")) for unit in ("Alpha one.", "Beta two.", "Gamma three.")]
    assert all(v is not None for v in vectors.read_in_context(pairs)), "none lost to the cache's eviction"
    assert vectors.read_in_context([(passage, "Title", len("Title\n\n"))]) == [None], "looked for after the headings"
