"""Retrieval shared by concurrent turns gives each turn exactly what a sequential run gives (issue #17).

Many people ask at once and share one knowledge base. Every turn also reads
the stored index version (the chat records it on the pending answer), which
fetches the collections again; a turn must never see one view's collections
with another's bookkeeping. The earlier code compared the collection it
queried with the store's current one to tell passages from search keys, so a
turn whose store was refreshed mid-query read passage ids as key ids and
dropped its dense hits (answered <-> abstained flips under load).
"""

from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers_kb import HANDBOOK, write_docs

from assistant.ingest import ingest
from assistant.retrieval import KnowledgeBase, RetrievalConfig

QUESTIONS = [
    "How many vacation days do I get?",
    "Who ships my laptop before the first day?",
    "Is there free coffee in the kitchen?",
    "Which password manager do we use?",
    "How are salary bands reviewed?",
    "What happens when I am sick?",
    "When does the dishwasher run?",
    "How do I report broken hardware?",
]


def _fingerprint(result) -> tuple:
    """What a turn's answer depends on: the passages, their scores and the verdict."""
    return (
        tuple((d.id, round(d.metadata["score"], 6), d.metadata["dense_score"] is not None) for d in result.documents),
        result.answerable,
        round(result.answerability.confidence, 6),
    )


@pytest.fixture
def kb(tmp_path, store, fake_embeddings, sqlite_engine):
    root = write_docs(tmp_path / "handbook", HANDBOOK)
    ingest([root], store=store, embeddings=fake_embeddings, engine=sqlite_engine)
    # refresh_s=0: every turn checks the stored version, as a busy app does every few seconds.
    return KnowledgeBase(store, fake_embeddings, RetrievalConfig(refresh_s=0))


def test_concurrent_turns_get_exactly_the_sequential_answers(kb):
    where = {"audience": ["all"]}
    expected = {q: _fingerprint(kb.retrieve(q, where=where)) for q in QUESTIONS}
    assert any(any(dense for _, _, dense in fp[0]) for fp in expected.values())

    stop = threading.Event()

    def read_versions():  # what every chat turn does when it records the index version
        while not stop.is_set():
            _ = kb.store.version

    def turn(question: str) -> tuple[str, tuple]:
        _ = kb.store.version
        return question, _fingerprint(kb.retrieve(question, where=where))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, as a loaded server does
    readers = [threading.Thread(target=read_versions) for _ in range(2)]
    try:
        for reader in readers:
            reader.start()
        with ThreadPoolExecutor(max_workers=16) as pool:
            results = list(pool.map(turn, QUESTIONS * 40))
    finally:
        stop.set()
        for reader in readers:
            reader.join()
        sys.setswitchinterval(interval)
    differ = [q for q, fp in results if fp != expected[q]]
    assert differ == [], f"{len(differ)} of {len(results)} concurrent turns differ from the sequential run"


def test_a_turn_keeps_its_view_while_another_process_indexes(kb, tmp_path, store, fake_embeddings, sqlite_engine):
    """A new index version swaps the view whole: turns before see the old one, turns after the new one."""
    before = kb.retrieve("zeppelin travel approval", mode="keyword")
    assert before.documents == [] and before.index_version == 1
    write_docs(tmp_path / "handbook", {"travel/zeppelin.md": "# Airships\n\nTravel by zeppelin needs approval.\n"})
    ingest([tmp_path / "handbook"], store=store, embeddings=fake_embeddings, engine=sqlite_engine)
    after = kb.retrieve("zeppelin travel approval")
    assert after.index_version == 2
    assert after.documents[0].metadata["source"] == "travel/zeppelin.md"
    assert after.documents[0].metadata["dense_score"] is not None  # the new passages' vectors are searched too
