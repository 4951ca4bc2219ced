"""Abstention judged against the corpus's own baseline, in three bands (issue #18)."""

from __future__ import annotations

import pytest
from helpers_kb import write_docs

from assistant.answerability import AbstentionConfig, Answerability, band_of, baseline_headings, judge
from assistant.ingest import ingest, measure_corpus_baseline
from assistant.retrieval import KnowledgeBase
from assistant.vectors import BASELINE_KEY, baseline_of

# Three files whose headings share no word with the other files: a corpus whose baseline is low.
SPARSE = {
    "parking.md": """
        # Parking permits

        ## Garage levels

        Staff park on garage levels two and three with a blue permit sticker.
        """,
    "kitchen.md": """
        # Kitchen rota

        ## Fridge cleaning

        Every Friday one team empties the fridge and wipes the shelves.
        """,
    "library.md": """
        # Lending library

        ## Borrowing books

        Borrow up to four novels for three weeks from the lending shelf.
        """,
    "bikes.md": """
        # Bicycle storage

        ## Racks and showers

        Cyclists lock bikes in the basement racks; showers are beside them.
        """,
    "plants.md": """
        # Office plants

        ## Watering schedule

        Ferns get water on Mondays, cacti once a month.
        """,
    "mail.md": """
        # Post room

        ## Parcels delivered

        Couriers leave parcels at reception; collect them before six.
        """,
}


# --- the band decision on constructed signals ----------------------------------------------


@pytest.mark.parametrize(("similarity", "band"), [(0.61, "answered"), (0.59, "answered"), (0.57, "unsure"),
                                                  (0.451, "unsure"), (0.449, "abstained"), (0.1, "abstained")])
def test_the_band_follows_the_similarity_relative_to_the_corpus_baseline(similarity, band):
    config = AbstentionConfig(answer_margin=-0.02, abstain_margin=-0.15)
    assert band_of(config, similarity, baseline=0.6) == band


def test_the_same_similarity_falls_in_another_band_on_another_corpus():
    config = AbstentionConfig()
    assert band_of(config, 0.45, baseline=0.44) == "answered"  # a corpus whose passages are far apart
    assert band_of(config, 0.45, baseline=0.57) == "unsure"
    assert band_of(config, 0.45, baseline=0.70) == "abstained"


def test_an_unsure_verdict_is_not_answerable_but_is_told_apart_from_an_abstention():
    config = AbstentionConfig()
    unsure = judge(config=config, question="can I bring my dog?", similarity=0.38, evidence_tokens={"bring"},
                   known={"bring"}.__contains__, baseline=0.45)
    assert (unsure.band, unsure.answerable) == ("unsure", False)
    assert unsure.signals == {"similarity": 0.38, "baseline": 0.45, "relative": -0.07}
    assert unsure.explanation == ("the closest passages are related to the question but may not answer it; "
                                  "no document mentions: dog")
    nothing = judge(config=config, question="can I bring my dog?", similarity=0.20, evidence_tokens=set(),
                    baseline=0.45)
    assert (nothing.band, nothing.answerable) == ("abstained", False)
    confident = judge(config=config, question="dog policy", similarity=0.50, evidence_tokens=set(), baseline=0.45)
    assert (confident.band, confident.answerable) == ("answered", True)
    assert judge(config=config, question="x", similarity=None, evidence_tokens=set()).band == "abstained"


def test_an_admins_absolute_threshold_decides_alone_with_no_middle_band():
    config = AbstentionConfig(min_similarity=0.5)
    assert [band_of(config, s, baseline=0.2) for s in (0.5, 0.49)] == ["answered", "abstained"]


def test_a_verdict_built_without_a_band_gets_the_one_its_answerable_says_and_a_contradiction_is_refused():
    assert Answerability(True, 0.9, "ok").band == "answered"
    assert Answerability(False, 0.1, "no").band == "abstained"
    with pytest.raises(ValueError, match="contradicts"):
        Answerability(True, 0.9, "ok", band="unsure")


def test_the_headings_measured_do_not_depend_on_the_order_of_the_passages():
    passages = [(str(n), {"source": f"f{n % 7}.md", "section": f"Part {n} > Topic {n % 5}"}) for n in range(400)]
    chosen = baseline_headings(passages, n=20)
    assert len(chosen) == 20 and chosen == baseline_headings(list(reversed(passages)), n=20)


# --- the baseline, measured at ingest and read back -----------------------------------------


def test_ingest_records_the_corpus_baseline_with_the_index_version_and_the_knowledge_base_reads_it(
        tmp_path, store, fake_embeddings, sqlite_engine):
    root = write_docs(tmp_path / "handbook", SPARSE)
    report = ingest([root], store=store, embeddings=fake_embeddings, engine=sqlite_engine)
    recorded = baseline_of(store.collection)
    assert recorded is not None and recorded == measure_corpus_baseline(store, fake_embeddings)
    kb = KnowledgeBase(store, fake_embeddings)
    assert kb.refresh() == report.index_version
    assert kb.retrieve("garage permit").answerability.signals["baseline"] == recorded

    # Unchanged: nothing embedded, nothing measured again.
    fake_embeddings.calls.clear()
    again = ingest([root], store=store, embeddings=fake_embeddings, engine=sqlite_engine)
    assert again.index_version == report.index_version and fake_embeddings.calls == []

    # A file whose headings echo another file's: the corpus's passages come closer, the baseline rises.
    write_docs(root, {"parking-faq.md": "# Parking permits FAQ\n\n## Garage levels and permits\n\nAsk at the desk.\n",
                      "kitchen-faq.md": "# Kitchen rota FAQ\n\n## Fridge cleaning day\n\nFriday.\n",
                      "library-faq.md": "# Lending library FAQ\n\n## Borrowing books rules\n\nFour.\n"})
    changed = ingest([root], store=store, embeddings=fake_embeddings, engine=sqlite_engine)
    assert changed.index_version > report.index_version
    assert baseline_of(store.collection) > recorded
    kb.refresh(force=True)
    assert kb.retrieve("garage permit").answerability.signals["baseline"] == baseline_of(store.collection)


def test_an_index_built_before_baselines_gets_one_on_its_next_ingest_and_keeps_its_model_and_version(
        tmp_path, store, fake_embeddings, sqlite_engine):
    root = write_docs(tmp_path / "handbook", SPARSE)
    ingest([root], store=store, embeddings=fake_embeddings, engine=sqlite_engine)
    old = {k: v for k, v in store.collection.metadata.items() if not k.startswith("abstention_")}
    store.collection.modify(metadata=old)  # as an index written before this change
    assert baseline_of(store.collection) is None and not store.baseline_measured()

    report = ingest([root], store=store, embeddings=fake_embeddings, engine=sqlite_engine)
    assert report.index_version == old["index_version"] + 1  # a running app sees a new version and reads it
    metadata = store.client.get_collection(store.name).metadata
    assert metadata[BASELINE_KEY] == measure_corpus_baseline(store, fake_embeddings)
    assert metadata["embedding_model"] == fake_embeddings.model_id


# --- what the baseline changes ----------------------------------------------------------------


def test_a_question_the_old_absolute_threshold_abstained_on_is_answered_on_a_corpus_whose_passages_are_far_apart(
        tmp_path, store, fake_embeddings, sqlite_engine):
    root = write_docs(tmp_path / "handbook", SPARSE)
    ingest([root], store=store, embeddings=fake_embeddings, engine=sqlite_engine)
    kb = KnowledgeBase(store, fake_embeddings)
    question = "my car: where do I leave it during the working day, is there a sticker?"
    result = kb.retrieve(question)
    similarity = result.answerability.signals["similarity"]
    assert similarity < 0.466  # the 18F calibration of an absolute threshold abstained here
    assert result.documents[0].metadata["source"] == "parking.md"
    assert (result.answerability.band, result.answerable) == ("answered", True)
