"""Ingestion and retrieval against a real Chroma server process (``chroma run``)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from helpers_kb import HANDBOOK, manifest_ids, write_docs
from helpers_net import free_port, running

from assistant.ingest import ingest
from assistant.retrieval import KnowledgeBase
from assistant.vectors import ChromaLocation, PassageStore, make_client

pytestmark = pytest.mark.server

STARTUP_TIMEOUT_S = 30


def chroma_binary() -> str:
    beside_python = Path(sys.executable).parent / "chroma"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("chroma")
    if not found:
        pytest.fail("the `chroma` command is not installed (it comes with the chromadb package)")
    return found



@pytest.fixture
def chroma_server(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [chroma_binary(), "run", "--path", str(tmp_path / "server-data"), "--host", "127.0.0.1", "--port", str(port)]
    with running(command, health_url=f"{url}/api/v2/heartbeat", log_path=tmp_path / "chroma.log", name="chroma",
                 timeout_s=STARTUP_TIMEOUT_S):
        yield url


def test_ingest_and_retrieve_through_a_chroma_server(chroma_server, tmp_path, fake_embeddings, sqlite_engine):
    root = write_docs(tmp_path / "handbook", HANDBOOK)
    client = make_client(ChromaLocation(url=chroma_server))
    store = PassageStore(client, "handbook-server", fake_embeddings.model_id)

    report = ingest([root], store=store, embeddings=fake_embeddings, engine=sqlite_engine)

    assert sorted(report.added) == sorted(HANDBOOK)
    assert store.ids() == manifest_ids(sqlite_engine, store.name)
    assert store.version == 1

    # A second client (another app instance) sees the same index and its recorded model.
    other = PassageStore(make_client(ChromaLocation(url=chroma_server)), "handbook-server", fake_embeddings.model_id)
    assert other.count() == store.count() > 0
    kb = KnowledgeBase(other, fake_embeddings)
    result = kb.retrieve("report broken laptop hardware to the helpdesk", k=3)
    assert result.documents[0].metadata["source"] == "it/laptop.md"
    assert result.index_version == 1
    keyword = kb.retrieve("quokka", mode="keyword", where={"audience": ["all", "hr"]})
    assert [d.metadata["source"] for d in keyword.documents] == ["hr/salary.md"]
    hidden = kb.retrieve("quokka salary bands", mode="dense", k=10, where={"audience": ["all"]})
    assert "hr/salary.md" not in [d.metadata["source"] for d in hidden.documents]

    # Incremental update through the server: one file changed, nothing else embedded.
    fake_embeddings.calls.clear()
    (root / "it/laptop.md").write_text("# Laptops\n\nLaptops are replaced every four years.\n", encoding="utf-8")
    second = ingest([root], store=store, embeddings=fake_embeddings, engine=sqlite_engine)
    assert second.changed == ["it/laptop.md"] and second.unchanged == len(HANDBOOK) - 1
    assert len(fake_embeddings.calls) == 1
    assert store.ids() == manifest_ids(sqlite_engine, store.name)
    assert kb.refresh(force=True) == 2
    assert kb.retrieve("four years", mode="keyword").documents[0].page_content == (
        "Laptops are replaced every four years."
    )


def test_a_running_app_keeps_answering_after_another_process_rebuilds_the_index(
    chroma_server, tmp_path, fake_embeddings, sqlite_engine
):
    from assistant.ingest import rebuilt_store
    from assistant.retrieval import RetrievalConfig

    root = write_docs(tmp_path / "handbook", HANDBOOK)
    app_store = PassageStore(make_client(ChromaLocation(url=chroma_server)), "handbook-server", fake_embeddings.model_id)
    ingest([root], store=app_store, embeddings=fake_embeddings, engine=sqlite_engine)
    kb = KnowledgeBase(app_store, fake_embeddings, RetrievalConfig(refresh_s=0))
    assert kb.retrieve("report broken laptop hardware to the helpdesk").documents[0].metadata["source"] == "it/laptop.md"
    assert app_store.keys.count() > 0

    # `onboard ingest --rebuild` in another process drops and re-creates both collections.
    other = make_client(ChromaLocation(url=chroma_server))
    rebuilt = rebuilt_store(other, sqlite_engine, "handbook-server", fake_embeddings.model_id)
    ingest([root], store=rebuilt, embeddings=fake_embeddings, engine=sqlite_engine)

    result = kb.retrieve("report broken laptop hardware to the helpdesk")
    assert result.documents[0].metadata["source"] == "it/laptop.md"
    assert result.index_version == rebuilt.version
