"""The default embedding model and the answerability verdict, with the real ONNX model on the sample handbook."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from assistant.embeddings import LOCAL_MODELS, OnnxEmbeddings
from assistant.evaluation import calibrate
from assistant.ingest import ingest
from assistant.retrieval import KnowledgeBase, RetrievalConfig
from assistant.store import PassageStore
from onboard.factories import SAMPLE_HANDBOOK


def test_quantised_model_is_made_once_and_reused(local_embeddings, model_cache):
    files = list(model_cache.glob("*-qint8-pc.onnx"))
    assert len(files) == 1
    before = files[0].stat().st_mtime_ns
    again = OnnxEmbeddings(LOCAL_MODELS["all-MiniLM-L6-v2-int8"], cache_dir=model_cache)
    assert files[0].stat().st_mtime_ns == before
    assert again.embed_query("parental leave") == local_embeddings.embed_query("parental leave")


def test_embeddings_are_normalised_and_semantic(local_embeddings):
    vectors = np.array(
        local_embeddings.embed_documents(
            ["How many vacation days do I get?", "Annual leave allowance for employees", "Rotating the VPN certificate"]
        )
    )
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2


def test_long_texts_are_read_past_the_tokenizers_baked_in_128_tokens(local_embeddings):
    head = " ".join(f"word{i}" for i in range(100))
    long_text = head + " " + "parental leave policy " * 40
    assert local_embeddings.count_tokens(long_text) > 128
    short, long = np.array(local_embeddings.embed_documents([head, long_text]))
    assert short @ long < 0.99  # the tail changed the vector: it was not cut at 128 tokens


@pytest.fixture(scope="module")
def sample_kb(tmp_path_factory, local_embeddings):
    import uuid

    from assistant.store import ChromaLocation, make_client
    from onboard import db

    tmp = tmp_path_factory.mktemp("sample")
    engine = db.make_engine(f"sqlite:///{tmp / 'kb.db'}")
    db.upgrade(engine)
    store = PassageStore(make_client(ChromaLocation(path=tmp / "chroma")), f"s-{uuid.uuid4().hex[:6]}", local_embeddings.model_id)
    report = ingest([SAMPLE_HANDBOOK], store=store, embeddings=local_embeddings, engine=engine)
    assert not report.failed
    yield KnowledgeBase(store, local_embeddings, RetrievalConfig())
    engine.dispose()


def test_paraphrased_question_finds_the_right_page(sample_kb):
    result = sample_kb.retrieve("who do I ping when my laptop breaks?")
    assert result.answerable, result.answerability.reason
    assert result.documents[0].metadata["source"].startswith("it/")


def test_question_the_handbook_cannot_answer_is_abstained_with_a_reason(sample_kb):
    result = sample_kb.retrieve("Who won the 1998 football world cup final?")
    assert not result.answerable
    reason = result.answerability.reason
    assert "loosely related" in reason and "football" in reason
    assert result.documents, "passages are still returned for the chat to show or hide"


def test_hr_only_page_never_reaches_employees(sample_kb):
    hr_source = "hr/salary-bands-process.md"
    assert Path(SAMPLE_HANDBOOK / hr_source).is_file()
    for question in ("how are salary bands reviewed?", "compensation review process", "salary bands"):
        for mode in ("hybrid", "dense", "keyword"):
            docs = sample_kb.retrieve(question, mode=mode, where={"audience": ["all"]}).documents
            assert hr_source not in {d.metadata["source"] for d in docs}
    docs = sample_kb.retrieve("how are salary bands reviewed?", where={"audience": ["all", "hr"]}).documents
    assert docs[0].metadata["source"] == hr_source


def test_calibrate_picks_the_threshold_that_answers_the_share_asked_for():
    rows = [{"answerable": True, "signals": {"similarity": s}} for s in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99)]
    rows += [{"answerable": False, "signals": {"similarity": s}} for s in (0.2, 0.35, 0.45, 0.9)]
    # 90% of ten answerable questions: everything from the second lowest (0.4) up is answered.
    assert calibrate(rows, 0.9) == {"answered_rate": 0.9, "min_similarity": 0.4, "abstain_recall": 0.5}
    assert calibrate(rows, 1.0) == {"answered_rate": 1.0, "min_similarity": 0.3, "abstain_recall": 0.25}
