"""The default embedding model and the answerability verdict, with the real ONNX model on the sample handbook."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from assistant.embeddings import FUSED_RECIPE, LOCAL_MODELS, PLAIN_RECIPE, OnnxEmbeddings, quantized_model
from assistant.evaluation import calibrate
from assistant.ingest import ingest
from assistant.retrieval import KnowledgeBase, RetrievalConfig
from assistant.vectors import PassageStore
from onboard.factories import SAMPLE_HANDBOOK


def test_quantised_model_is_made_once_and_reused(local_embeddings, model_cache):
    files = list(model_cache.glob("*.onnx"))
    assert [f.name.split("-", 2)[-1] for f in files] == [f"{FUSED_RECIPE}.onnx"]
    assert local_embeddings.model_id == f"local:all-MiniLM-L6-v2-int8+{FUSED_RECIPE}"
    before = files[0].stat().st_mtime_ns
    again = OnnxEmbeddings(LOCAL_MODELS["all-MiniLM-L6-v2-int8"], cache_dir=model_cache)
    assert files[0].stat().st_mtime_ns == before
    assert again.embed_query("parental leave") == local_embeddings.embed_query("parental leave")


def test_a_model_cached_by_an_earlier_version_is_not_reused(tmp_path, local_embeddings):
    from assistant.embeddings import _package_dir

    spec = LOCAL_MODELS["all-MiniLM-L6-v2-int8"]
    source = _package_dir(spec.package) / spec.model_file
    built = quantized_model(source, tmp_path)
    earlier = built.path.with_name(built.path.name.replace(f"-{FUSED_RECIPE}", "-qint8-pc"))
    built.path.rename(earlier)  # the name (and recipe) earlier versions cached under

    again = quantized_model(source, tmp_path)
    assert again.recipe == FUSED_RECIPE and again.path.is_file()


def test_the_rebuilt_fused_model_gives_the_vectors_of_the_model_as_shipped(local_embeddings):
    shipped = OnnxEmbeddings(LOCAL_MODELS["all-MiniLM-L6-v2-int8-as-shipped"])
    texts = [
        "How many vacation days do I get?",
        "Laptops are replaced every three years; ask IT in #it-help if yours is slow.",
        "| City | Daily per diem |\n| --- | --- |\n| London | GBP 75 |",
        "Before taking leave, be sure to: submit a leave request, mark your calendar and set an auto-reply. " * 4,
    ]
    ours, reference = np.array(local_embeddings.embed_documents(texts)), np.array(shipped.embed_documents(texts))
    assert (ours * reference).sum(axis=1).min() > 0.98


def test_a_graph_that_cannot_be_rebuilt_is_quantised_as_it_stands(tmp_path):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    weight = np.arange(32, dtype=np.float32).reshape(4, 8) / 32
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "dense.weight"], ["h"]), helper.make_node("Add", ["h", "dense.bias"], ["y"])],
        "not-bert",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 8])],
        [numpy_helper.from_array(weight, "dense.weight"), numpy_helper.from_array(np.ones(8, np.float32), "dense.bias")],
    )
    source = tmp_path / "pkg" / "model.onnx"
    source.parent.mkdir()
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what this onnxruntime reads
    onnx.save(model, source)

    built = quantized_model(source, tmp_path / "cache")
    assert built.recipe == PLAIN_RECIPE and built.path.is_file()
    x = np.ones((2, 4), np.float32)
    y = ort.InferenceSession(str(built.path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.allclose(y, x @ weight + 1, atol=0.05)
    assert quantized_model(source, tmp_path / "cache") == built  # made once


def test_embeddings_are_normalised_and_semantic(local_embeddings):
    vectors = np.array(
        local_embeddings.embed_documents(
            ["How many vacation days do I get?", "Annual leave allowance for employees", "Rotating the VPN certificate"]
        )
    )
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2


def test_a_passage_gets_the_same_vector_whatever_is_embedded_with_it(local_embeddings):
    passage = "Laptops are replaced every three years; ask IT in #it-help if yours is slow."
    neighbours = ["| City | Daily per diem |\n| --- | --- |\n| London | GBP 75 |", "expense " * 200, "PTO"]
    alone = np.array(local_embeddings.embed_documents([passage]))[0]
    for others in (neighbours, neighbours[::-1] * 5, [passage.upper()] * 40):
        vectors = np.array(local_embeddings.embed_documents([*others, passage]))
        # Batched, the activation scales were shared and this moved by up to 0.016 in one dimension.
        assert np.abs(vectors[-1] - alone).max() < 1e-6
    assert np.abs(np.array(local_embeddings.embed_query(passage)) - alone).max() < 1e-6


def test_a_span_read_in_its_passage_carries_what_the_passage_says_around_it(local_embeddings):
    passage = (
        "IT help\n\nThe GSA IT Service Desk fixes laptops, phones and accounts. "
        "They are available 6am-9pm ET, Monday to Friday."
    )
    key = "They are available 6am-9pm ET, Monday to Friday."
    begin = passage.index(key)
    vectors, spans = local_embeddings.embed_in_context([passage, "PTO"], [[(begin, len(passage)), (0, 0)], []])
    # The passage's own vector is the one embed_documents gives.
    assert np.abs(vectors - np.array(local_embeddings.embed_documents([passage, "PTO"]))).max() < 1e-6
    in_context, empty = spans[0]
    assert empty is None and spans[1] == []
    alone = np.array(local_embeddings.embed_documents([key]))[0]
    question = np.array(local_embeddings.embed_query("When is the IT service desk open?"))
    assert np.isclose(np.linalg.norm(in_context), 1.0, atol=1e-4)
    # Alone, "they" could be anyone; read in its passage, the key is about the service desk.
    assert question @ in_context > question @ alone + 0.05


def test_long_texts_are_read_past_the_tokenizers_baked_in_128_tokens(local_embeddings):
    head = " ".join(f"word{i}" for i in range(100))
    long_text = head + " " + "parental leave policy " * 40
    assert local_embeddings.count_tokens(long_text) > 128
    short, long = np.array(local_embeddings.embed_documents([head, long_text]))
    assert short @ long < 0.99  # the tail changed the vector: it was not cut at 128 tokens


@pytest.fixture(scope="module")
def sample_kb(tmp_path_factory, local_embeddings):
    import uuid

    from assistant.vectors import ChromaLocation, make_client
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


def test_ingest_stores_each_search_key_read_in_its_passage(tmp_path, local_embeddings):
    """A key that says nothing alone ("They are available ...") is stored closer to what its passage is about."""
    import uuid

    from assistant.ingest import IngestOptions
    from assistant.vectors import ChromaLocation, make_client
    from onboard import db

    folder = tmp_path / "handbook"
    folder.mkdir()
    (folder / "it.md").write_text(
        "# IT help\n\nThe GSA IT Service Desk fixes laptops, phones and accounts for every employee. "
        "They are available 6am-9pm ET, Monday to Friday. Outside those hours, file a ticket in the portal.\n"
    )
    engine = db.make_engine(f"sqlite:///{tmp_path / 'kb.db'}")
    db.upgrade(engine)
    client = make_client(ChromaLocation(path=tmp_path / "chroma"))
    question = np.array(local_embeddings.embed_query("When is the IT service desk open?"))

    def key_similarity(key_context: float) -> float:
        store = PassageStore(client, f"k-{uuid.uuid4().hex[:8]}", local_embeddings.model_id)
        ingest([folder], store=store, embeddings=local_embeddings, engine=engine,
               options=IngestOptions(key_context=key_context))
        got = store.keys.get(include=["embeddings"])
        by_id = dict(zip(got["ids"], got["embeddings"], strict=True))
        assert len(by_id) == 2  # three sentences: two keys of two sentences each
        second = next(key for key in by_id if key.endswith(":1"))  # "They are available ... Outside those hours ..."
        return float(np.array(by_id[second]) @ question)

    alone, in_context = key_similarity(0.0), key_similarity(0.75)
    assert in_context > alone + 0.03
    engine.dispose()
