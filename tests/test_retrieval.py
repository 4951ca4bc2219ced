"""Retrieval: dense, keyword and hybrid search with metadata filters, dedupe and a LangChain retriever."""

from __future__ import annotations

import numpy as np
import pytest
from helpers_kb import HANDBOOK, write_docs
from langchain_core.documents import Document
from langchain_core.runnables import RunnableLambda

from assistant.chunking import search_keys
from assistant.errors import IndexEmpty
from assistant.ingest import ingest
from assistant.keyword import KeywordIndex, chroma_where, tokenize
from assistant.retrieval import HandbookRetriever, KnowledgeBase, RetrievalConfig

MODES = ["dense", "keyword", "hybrid"]


@pytest.fixture
def corpus(tmp_path):
    return write_docs(tmp_path / "handbook", HANDBOOK)


@pytest.fixture
def indexed(corpus, store, fake_embeddings, sqlite_engine):
    ingest([corpus], store=store, embeddings=fake_embeddings, engine=sqlite_engine)
    return store


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory):
    """One indexed handbook for the tests that only read (indexing per test would dominate the run time)."""
    from conftest import FakeEmbeddings

    from assistant.vectors import ChromaLocation, PassageStore, make_client
    from onboard import db

    folder = tmp_path_factory.mktemp("shared-kb")
    root = write_docs(folder / "handbook", HANDBOOK)
    fake = FakeEmbeddings()
    store = PassageStore(make_client(ChromaLocation(path=folder / "chroma")), "shared", fake.model_id)
    engine = db.make_engine(f"sqlite:///{folder / 'kb.db'}")
    db.upgrade(engine)
    ingest([root], store=store, embeddings=fake, engine=engine)
    engine.dispose()
    return store


@pytest.fixture
def kb(shared_store, fake_embeddings):
    return KnowledgeBase(shared_store, fake_embeddings)


def sources(result) -> list[str]:
    return [d.metadata["source"] for d in result.documents]


# --- modes ---------------------------------------------------------------------------------


def test_keyword_mode_ranks_the_doc_with_the_rare_word_first(kb):
    result = kb.retrieve("where is the quokka matrix", mode="keyword", where={"audience": ["all", "hr"]})
    assert sources(result)[0] == "hr/salary.md"
    assert result.documents[0].metadata["keyword_score"] > 0
    assert result.documents[0].metadata["dense_score"] is None


def test_keyword_mode_returns_only_passages_sharing_a_word(kb):
    result = kb.retrieve("dishwasher", mode="keyword")
    assert sources(result) == ["office/kitchen.md"]


def test_dense_mode_finds_the_closest_passage(kb, fake_embeddings):
    question = "how many days of paid vacation per year"
    result = kb.retrieve(question, mode="dense")

    assert sources(result)[0] == "time-off.md"
    top = result.documents[0].metadata
    assert top["keyword_score"] is None
    # The dense score is the cosine similarity of the fake's vectors.
    heading = " > ".join(part for part in (top["title"], top["section"]) if part)
    text = f"{heading}\n\n{result.documents[0].page_content}"
    expected = float(np.dot(fake_embeddings.embed_query(question), fake_embeddings.embed_query(text)))
    assert top["dense_score"] == pytest.approx(expected, abs=1e-4)
    scores = [d.metadata["score"] for d in result.documents]
    assert scores == sorted(scores, reverse=True)


def test_hybrid_returns_langchain_documents_with_citation_metadata(kb, shared_store):
    result = kb.retrieve("how do I report broken laptop hardware", mode="hybrid", k=3)

    assert sources(result)[0] == "it/laptop.md"
    assert all(isinstance(d, Document) for d in result.documents)
    for rank, doc in enumerate(result.documents, start=1):
        meta = doc.metadata
        assert {"source", "title", "section", "rank", "score", "id"} <= set(meta)
        assert meta["rank"] == rank
        assert doc.id == meta["id"]
        assert "_text" not in meta
    top = result.documents[0]
    assert top.metadata["title"] == "Laptops"
    assert top.metadata["section"] == ""
    stored = shared_store.collection.get(ids=[top.id], include=["documents"])["documents"][0]
    assert top.page_content == stored
    assert result.index_version == shared_store.version == 1
    scores = [d.metadata["score"] for d in result.documents]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("mode", MODES)
def test_k_is_respected(kb, mode):
    for k in (1, 2, 4):
        result = kb.retrieve("vacation laptop kitchen passwords coffee", mode=mode, k=k)
        assert len(result.documents) == k


def test_default_k_comes_from_the_config(shared_store, fake_embeddings):
    kb = KnowledgeBase(shared_store, fake_embeddings, RetrievalConfig(k=2))
    assert len(kb.retrieve("vacation laptop kitchen passwords coffee").documents) == 2


# --- filters ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_audience_filter_hides_hr_only_documents(kb, mode):
    # A question aimed squarely at the HR page.
    for question in ("quokka matrix salary bands compensation committee", "salary"):
        result = kb.retrieve(question, mode=mode, k=10, where={"audience": ["all"]})
        assert "hr/salary.md" not in sources(result)
        assert all(d.metadata["audience"] == ["all"] for d in result.documents)


@pytest.mark.parametrize("mode", MODES)
def test_audience_filter_including_hr_can_return_the_hr_document(kb, mode):
    result = kb.retrieve("quokka matrix salary bands compensation committee", mode=mode, where={"audience": ["all", "hr"]})
    assert sources(result)[0] == "hr/salary.md"


def test_filter_given_as_a_plain_string(kb):
    result = kb.retrieve("salary bands", mode="hybrid", k=10, where={"audience": "hr"})
    assert set(sources(result)) == {"hr/salary.md"}


def test_document_for_several_audiences_is_visible_to_each(tmp_path, store, fake_embeddings, sqlite_engine):
    root = write_docs(
        tmp_path / "docs",
        {
            "reviews.md": "---\naudience: [hr, managers]\n---\n# Reviews\n\nPerformance reviews happen twice a year.\n",
            "other.md": "# Other\n\nNothing about that topic here.\n",
        },
    )
    ingest([root], store=store, embeddings=fake_embeddings, engine=sqlite_engine)
    kb = KnowledgeBase(store, fake_embeddings)
    result = kb.retrieve("performance reviews", mode="hybrid", where={"audience": ["all", "hr"]})
    assert "reviews.md" in sources(result)


def test_filter_holds_when_the_allowed_passages_are_few(tmp_path, store, fake_embeddings, sqlite_engine):
    """Most passages hidden: the unfiltered wide search finds too few, and Chroma's own filter takes over."""
    docs = {f"hr/policy-{i}.md": f"---\naudience: hr\n---\n# Leave policy {i}\n\nLeave rule number {i} for HR.\n" for i in range(40)}
    docs |= {f"public-{i}.md": f"# Leave {i}\n\nPublic leave note {i}.\n" for i in range(3)}
    ingest([write_docs(tmp_path / "docs", docs)], store=store, embeddings=fake_embeddings, engine=sqlite_engine)
    kb = KnowledgeBase(store, fake_embeddings, RetrievalConfig(candidates=2, k=5))
    for mode in ("dense", "hybrid"):
        result = kb.retrieve("leave policy rule for HR", mode=mode, where={"audience": ["all"]})
        assert sorted(sources(result)) == ["public-0.md", "public-1.md", "public-2.md"], mode


# --- dedupe, retriever, refresh, empty -------------------------------------------------------


def test_identical_passages_from_two_files_are_returned_once(tmp_path, store, fake_embeddings, sqlite_engine):
    same = "# Holidays\n\nThe office is closed on the first of May.\n"
    root = write_docs(
        tmp_path / "docs",
        {
            "a/holidays.md": same,
            "b/holidays-copy.md": same,
            "c/lunch.md": "# Lunch\n\nLunch is served at noon in the office.\n",
        },
    )
    ingest([root], store=store, embeddings=fake_embeddings, engine=sqlite_engine)
    assert store.count() == 3
    kb = KnowledgeBase(store, fake_embeddings)
    for mode in MODES:
        result = kb.retrieve("when is the office closed in May", mode=mode, k=5)
        texts = [d.page_content for d in result.documents]
        assert texts.count("The office is closed on the first of May.") == 1, mode
        assert len(texts) == len(set(texts))


def test_handbook_retriever_invoke_and_lcel_chain(kb):
    retriever = HandbookRetriever(knowledge_base=kb, k=2, mode="hybrid")

    docs = retriever.invoke("free coffee in the office kitchen")
    assert len(docs) == 2
    assert docs[0].metadata["source"] == "office/kitchen.md"

    chain = retriever | RunnableLambda(lambda docs: [d.metadata["source"] for d in docs])
    assert chain.invoke("free coffee in the office kitchen") == [d.metadata["source"] for d in docs]
    assert chain.batch(["password manager", "quokka"])[0][0] == "security/passwords.md"


def test_handbook_retriever_applies_its_filter(kb):
    retriever = HandbookRetriever(knowledge_base=kb, where={"audience": ["all"]}, k=10)
    assert "hr/salary.md" not in [d.metadata["source"] for d in retriever.invoke("quokka salary bands")]


def test_empty_index_raises_index_empty(store, fake_embeddings):
    kb = KnowledgeBase(store, fake_embeddings)
    for mode in MODES:
        with pytest.raises(IndexEmpty, match="onboard ingest"):
            kb.retrieve("anything", mode=mode)


def test_keyword_index_sees_new_documents_after_forced_refresh(corpus, indexed, fake_embeddings, sqlite_engine):
    kb = KnowledgeBase(indexed, fake_embeddings, RetrievalConfig(refresh_s=3600))
    assert kb.retrieve("zeppelin", mode="keyword").documents == []
    assert kb.refresh() == 1

    write_docs(corpus, {"travel/zeppelin.md": "# Airships\n\nTravel by zeppelin needs director approval.\n"})
    ingest([corpus], store=indexed, embeddings=fake_embeddings, engine=sqlite_engine)

    # Within refresh_s the keyword index is not reloaded on its own ...
    assert kb.refresh() == 1
    assert kb.retrieve("zeppelin", mode="keyword").documents == []
    # ... but a forced refresh picks up the new version.
    assert kb.refresh(force=True) == 2
    assert sources(kb.retrieve("zeppelin", mode="keyword")) == ["travel/zeppelin.md"]


def test_warm_up_loads_the_keyword_index_before_the_first_question(indexed, fake_embeddings, monkeypatch):
    kb = KnowledgeBase(indexed, fake_embeddings, RetrievalConfig(refresh_s=3600))
    kb.warm_up()
    loads = []
    monkeypatch.setattr(kb, "_load_keyword_index", lambda: loads.append(1))
    assert sources(kb.retrieve("free coffee in the office kitchen", mode="keyword"))[0] == "office/kitchen.md"
    assert loads == []  # the first question did not read the whole store


def test_a_filtered_search_is_right_while_chroma_holds_passages_the_keyword_index_has_not_loaded(
    tmp_path, store, fake_embeddings, sqlite_engine
):
    docs = {f"hr/policy-{i}.md": f"---\naudience: hr\n---\n# Leave policy {i}\n\nLeave rule {i} for HR.\n"
            for i in range(40)}
    docs |= {f"public-{i}.md": f"# Leave {i}\n\nPublic leave note {i}.\n" for i in range(3)}
    root = write_docs(tmp_path / "docs", docs)
    ingest([root], store=store, embeddings=fake_embeddings, engine=sqlite_engine)
    kb = KnowledgeBase(store, fake_embeddings, RetrievalConfig(candidates=2, k=5, refresh_s=3600))
    public = {"public-0.md", "public-1.md", "public-2.md"}

    def found() -> set[str]:
        return set(sources(kb.retrieve("leave policy rule for HR", mode="dense", where={"audience": ["all"]})))

    assert found() == public
    # Another run adds passages that rank first; until the next refresh only Chroma knows them.
    write_docs(root, {f"hr/new-{i}.md": f"---\naudience: hr\n---\n# Leave policy rule {i}\n\n"
                                        f"Leave policy rule for HR number {i}.\n" for i in range(3)})
    ingest([root], store=store, embeddings=fake_embeddings, engine=sqlite_engine)
    assert found() == public


def test_the_app_s_knowledge_base_is_warmed_up_when_built():
    from onboard import factories
    from onboard.settings import Settings

    kb = factories.bootstrap_knowledge_base(Settings())  # indexes the sample handbook: the index is empty
    assert kb.store.count() > 0
    loads = []
    kb._load_keyword_index = lambda: loads.append(1)
    assert sources(kb.retrieve("How much PTO do I get?"))[0] == "time-off/time-off.md"
    assert loads == []  # loaded by bootstrap_knowledge_base, not by the first question
    # `onboard serve` indexes the sample before the server starts, in a process that answers nothing.
    assert factories.bootstrap_knowledge_base(Settings(), warm=False).version is None


def test_keyword_index_refreshes_itself_with_refresh_s_zero(corpus, indexed, fake_embeddings, sqlite_engine):
    kb = KnowledgeBase(indexed, fake_embeddings, RetrievalConfig(refresh_s=0))
    assert kb.retrieve("zeppelin", mode="keyword").documents == []

    write_docs(corpus, {"travel/zeppelin.md": "# Airships\n\nTravel by zeppelin needs director approval.\n"})
    ingest([corpus], store=indexed, embeddings=fake_embeddings, engine=sqlite_engine)

    result = kb.retrieve("zeppelin", mode="keyword")
    assert sources(result) == ["travel/zeppelin.md"]
    assert result.index_version == 2

    (corpus / "travel/zeppelin.md").unlink()
    ingest([corpus], store=indexed, embeddings=fake_embeddings, engine=sqlite_engine)
    assert kb.retrieve("zeppelin", mode="keyword").documents == []


def test_answerability_for_an_exact_question_and_for_nonsense(kb):
    good = kb.retrieve("Salary bands are reviewed by the compensation committee every quarter", where={"audience": ["all", "hr"]})
    assert good.answerable and good.answerability.confidence >= 0.5

    strict = KnowledgeBase(kb.store, kb.embeddings, RetrievalConfig(abstention={"min_similarity": 1.0}))
    bad = strict.retrieve("xylophone qwertyuiop glockenspiel")
    assert not bad.answerable
    assert "xylophone" in bad.answerability.reason and "glockenspiel" in bad.answerability.reason
    assert bad.answerability.unmatched_terms == ["xylophone", "qwertyuiop", "glockenspiel"]


# --- fusion ---------------------------------------------------------------------------------


def test_rrf_with_full_dense_weight_orders_like_dense(shared_store, fake_embeddings):
    kb = KnowledgeBase(shared_store, fake_embeddings, RetrievalConfig(fusion="rrf", dense_weight=1.0, k=5))
    for question in ("paid vacation days", "broken laptop helpdesk", "password manager chat", "coffee mug"):
        dense = [d.id for d in kb.retrieve(question, mode="dense").documents]
        hybrid = kb.retrieve(question, mode="hybrid").documents
        assert [d.id for d in hybrid] == dense, question
        assert [d.metadata["score"] for d in hybrid] == pytest.approx([1 / (60 + r) for r in range(1, 6)])


def test_rrf_with_zero_dense_weight_orders_like_keyword(shared_store, fake_embeddings):
    kb = KnowledgeBase(shared_store, fake_embeddings, RetrievalConfig(fusion="rrf", dense_weight=0.0))
    question = "helpdesk laptop"
    keyword = [d.id for d in kb.retrieve(question, mode="keyword").documents]
    hybrid = [d.id for d in kb.retrieve(question, mode="hybrid").documents]
    assert hybrid[: len(keyword)] == keyword


# --- keyword module -------------------------------------------------------------------------


def test_chroma_where_translates_filters():
    assert chroma_where(None) is None
    assert chroma_where({}) is None
    assert chroma_where({"audience": "hr"}) == {"audience": {"$contains": "hr"}}
    assert chroma_where({"audience": ["all", "hr"]}) == {
        "$or": [{"audience": {"$contains": "all"}}, {"audience": {"$contains": "hr"}}]
    }
    assert chroma_where({"kind": "pdf"}) == {"kind": {"$in": ["pdf"]}}
    assert chroma_where({"audience": ("all",), "kind": ["pdf", "docx"]}) == {
        "$and": [{"audience": {"$contains": "all"}}, {"kind": {"$in": ["docx", "pdf"]}}]
    }


@pytest.fixture
def keyword_index():
    return KeywordIndex(
        ids=["a", "b", "c", "d"],
        texts=[
            "Vacation days are booked in the HR portal.",
            "Laptops are replaced every three years.",
            "Salary bands and the quokka matrix.",
            "Vacation policy for managers: approve vacation quickly.",
        ],
        metadatas=[
            {"audience": "all", "kind": "markdown"},
            {"audience": "all", "kind": "pdf"},
            {"audience": "hr", "kind": "markdown"},
            {"audience": "managers"},
        ],
    )


def test_keyword_mask(keyword_index):
    assert keyword_index.mask(None) is None
    assert keyword_index.mask({}) is None
    assert keyword_index.mask({"audience": "all"}).tolist() == [True, True, False, False]
    assert keyword_index.mask({"audience": ["all", "hr"]}).tolist() == [True, True, True, False]
    assert keyword_index.mask({"audience": ["all"], "kind": "markdown"}).tolist() == [True, False, False, False]
    # A missing field matches nothing but the empty string.
    assert keyword_index.mask({"kind": ["markdown", "pdf"]}).tolist() == [True, True, True, False]


def test_keyword_search_ranks_filters_and_ignores_unknown_words(keyword_index):
    hits = keyword_index.search("vacation", k=10)
    assert [position for position, _ in hits] == [3, 0]  # "vacation" twice in d, once in a
    assert hits[0][1] > hits[1][1] > 0

    assert keyword_index.search("vacation", k=1) == hits[:1]
    assert [p for p, _ in keyword_index.search("vacation", k=10, where={"audience": "all"})] == [0]
    assert keyword_index.search("quokka", k=5, where={"audience": ["all"]}) == []
    assert [p for p, _ in keyword_index.search("Quokkas!", k=5)] == [2]  # stemmed, case-folded
    assert keyword_index.search("zeppelin", k=5) == []
    assert keyword_index.search("the and of", k=5) == []  # stop words only
    assert keyword_index.search(tokenize("laptop replacement"), k=5)[0][0] == 1


def test_empty_keyword_index():
    index = KeywordIndex([], [], [])
    assert len(index) == 0
    assert index.search("anything", k=3) == []
    assert index.idf("anything") > 0


# --- search keys ---------------------------------------------------------------------------------

LONG_PAGE = {
    "travel.md": """
        # Travel

        Trains are booked in TripDesk. Flights need approval from your manager. Hotels are booked
        through the agency. Taxis are fine after ten at night. Receipts go to Finance within a month.
        Per diem covers meals. Lounges are not covered. Seats with extra room need a reason.
        Rental cars need the agency. Mileage is paid at the federal rate.
    """,
    "bikes.md": """
        # Bikes

        Bike racks are in the garage.
    """,
}


@pytest.mark.parametrize("key_sentences", [2, 0])
def test_a_passage_is_found_through_its_best_sentence_window(tmp_path, store, fake_embeddings, sqlite_engine,
                                                             key_sentences):
    from assistant.ingest import IngestOptions

    root = write_docs(tmp_path / "handbook", LONG_PAGE)
    ingest([root], store=store, embeddings=fake_embeddings, engine=sqlite_engine,
           options=IngestOptions(key_sentences=key_sentences))
    question = "are taxis fine after ten at night"
    result = KnowledgeBase(store, fake_embeddings).retrieve(question, mode="dense")
    top = result.documents[0]
    chunk_cosine = float(np.dot(fake_embeddings.embed_query(question),
                                fake_embeddings.embed_query(f"Travel\n\n{top.page_content}")))
    if key_sentences:
        assert top.metadata["source"] == "travel.md"
        q = fake_embeddings.embed_query(question)
        best_window = max(float(np.dot(q, fake_embeddings.embed_query(f"Travel\n\n{key}")))
                          for key in search_keys(top.page_content))
        assert top.metadata["dense_score"] == pytest.approx(best_window, abs=1e-5)
        assert top.metadata["dense_score"] > chunk_cosine + 0.1
        assert result.answerability.signals  # the verdict is judged on the same, better score
    else:  # without keys the long page's one vector is diluted by everything else it says
        assert top.metadata["dense_score"] == pytest.approx(chunk_cosine, abs=1e-5)


def test_a_search_key_never_returns_a_passage_outside_the_filter(tmp_path, store, fake_embeddings, sqlite_engine):
    docs = {"hr/pay.md": "---\naudience: hr\n---\n# Pay\n\nBands move each year. Taxis are fine after ten at night."
            " Raises follow the review.\n", **LONG_PAGE}
    root = write_docs(tmp_path / "handbook", docs)
    ingest([root], store=store, embeddings=fake_embeddings, engine=sqlite_engine)
    kb = KnowledgeBase(store, fake_embeddings)
    for mode in ("dense", "hybrid"):
        seen = sources(kb.retrieve("are taxis fine after ten at night", mode=mode, where={"audience": ["all"]}))
        assert "hr/pay.md" not in seen and seen[0] == "travel.md"


def test_an_index_without_search_keys_still_answers_and_says_how_to_add_them(tmp_path, store, fake_embeddings,
                                                                             sqlite_engine, caplog):
    from assistant.ingest import IngestOptions

    root = write_docs(tmp_path / "handbook", LONG_PAGE)
    ingest([root], store=store, embeddings=fake_embeddings, engine=sqlite_engine, options=IngestOptions(key_sentences=0))
    with caplog.at_level("WARNING", logger="assistant.retrieval"):
        result = KnowledgeBase(store, fake_embeddings).retrieve("are taxis fine after ten at night")
    assert sources(result)[0] == "travel.md"
    assert "no search keys" in caplog.text and "onboard ingest" in caplog.text


def test_a_stale_key_cannot_bring_a_forbidden_passage_through_chroma_s_own_filter(
    tmp_path, store, fake_embeddings, sqlite_engine
):
    """A crashed run can leave a key whose own metadata disagrees with its passage's: the passage decides."""
    hr_page = "---\naudience: hr\n---\n# Bands\n\n" + " ".join(
        f"The quokka matrix row {n} lists salary band {n}." for n in range(12))  # many HR-only keys
    root = write_docs(tmp_path / "handbook", {**HANDBOOK, "hr/bands.md": hr_page})
    ingest([root], store=store, embeddings=fake_embeddings, engine=sqlite_engine)
    assert store.keys.count() >= 8
    got = store.collection.get(include=["metadatas"])
    salary = next(cid for cid, meta in zip(got["ids"], got["metadatas"], strict=True) if meta["source"] == "hr/salary.md")
    question = "is the quokka matrix of salary bands public"
    store.upsert_keys(ids=[f"{salary}:9"], embeddings=[fake_embeddings.embed_query(question)],
                      metadatas=[{"source": "hr/salary.md", "audience": ["all"], "of": salary}])
    # One candidate: the wide unfiltered search finds too few allowed passages, so Chroma filters itself.
    kb = KnowledgeBase(store, fake_embeddings, RetrievalConfig(candidates=1, k=1))
    for mode in ("dense", "hybrid"):
        assert "hr/salary.md" not in sources(kb.retrieve(question, mode=mode, where={"audience": ["all"]}))
    assert sources(kb.retrieve(question, mode="dense", where={"audience": ["all", "hr"]}))[0].startswith("hr/")


def test_a_passage_found_by_keywords_alone_is_judged_on_its_keys_too(tmp_path, store, fake_embeddings, sqlite_engine):
    root = write_docs(tmp_path / "handbook", LONG_PAGE)
    ingest([root], store=store, embeddings=fake_embeddings, engine=sqlite_engine)
    question = "are taxis fine after ten at night"
    kb = KnowledgeBase(store, fake_embeddings)
    dense = kb.retrieve(question, mode="dense")
    keyword = kb.retrieve(question, mode="keyword")
    assert keyword.documents[0].metadata["dense_score"] is None  # keyword mode: no dense score
    assert keyword.answerability.confidence == pytest.approx(dense.documents[0].metadata["dense_score"], abs=1e-5)


def test_the_words_no_document_mentions_are_judged_within_the_askers_audience(kb):
    """An employee cannot learn from an abstention whether a word appears in an HR-only page (issue #17)."""
    strict = KnowledgeBase(kb.store, kb.embeddings, RetrievalConfig(abstention={"min_similarity": 1.0}))
    employee, hr = {"audience": ["all"]}, {"audience": ["all", "hr"]}

    def shown(question, where):
        result = strict.retrieve(question, where=where)
        assert not result.answerable
        return result.answerability.explanation

    # "quokka" is only in the HR-only salary page: to an employee it reads like a made-up word.
    assert "no document mentions: quokka" in shown("Is the quokka affected?", employee)
    assert "no document mentions: zorblax" in shown("Is the zorblax affected?", employee)
    assert "quokka" not in shown("Is the quokka affected?", hr)
    assert "no document mentions: zorblax" in shown("Is the zorblax affected?", hr)


def test_keyword_index_knows_a_word_only_in_the_passages_a_filter_allows(keyword_index):
    assert keyword_index.knows(tokenize("quokka")[0])
    assert keyword_index.knows(tokenize("quokka")[0], {"audience": ["all", "hr"]})
    assert not keyword_index.knows(tokenize("quokka")[0], {"audience": ["all"]})
    assert not keyword_index.knows("zorblax", {"audience": ["all", "hr"]})
