"""Several processes on one index: the app follows ``onboard ingest``, and only one process indexes at a time.

A local Chroma client keeps its vector index in memory: without reopening it,
the app would keep finding a deleted document and never find a new one (the
keyword index alone followed). Checked with the real model and a real
``onboard ingest`` subprocess on the same data folder.

Two app processes starting together index the sample handbook once (the other
waits, then uses it), and an ``onboard ingest`` killed with SIGKILL is marked
interrupted by the next run, which completes it. These run real subprocesses
against a local embeddings endpoint that holds requests back on cue, so the
processes overlap exactly where the test needs them to; on SQLite and, with
TEST_DATABASE_URL, on PostgreSQL.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest
from helpers_kb import runs, write_docs

from onboard import factories
from onboard.settings import Settings

PARKING = """---
title: Parking
---
# Parking

Staff park in the north garage on level two; visitors use the south lot.
"""

LAPTOPS = """---
title: Laptops
---
# Laptops

The IT desk hands out laptops on your first morning, at the third-floor counter.
"""


def ingest_in_another_process(folder) -> None:
    subprocess.run([sys.executable, "-m", "onboard.cli", "ingest", str(folder)], check=True, timeout=300,
                   capture_output=True, env=os.environ.copy())


def sources(knowledge_base, question: str) -> set[str]:
    return {doc.metadata["source"] for doc in knowledge_base.retrieve(question, mode="dense").documents}


def test_a_running_knowledge_base_sees_documents_added_and_removed_by_onboard_ingest(tmp_path):
    docs = tmp_path / "handbook"
    docs.mkdir()
    (docs / "parking.md").write_text(PARKING, encoding="utf-8")
    ingest_in_another_process(docs)

    settings = Settings()
    knowledge_base = factories.make_knowledge_base(settings)
    assert sources(knowledge_base, "where do I park?") == {"parking.md"}

    (docs / "laptops.md").write_text(LAPTOPS, encoding="utf-8")
    (docs / "parking.md").unlink()
    ingest_in_another_process(docs)

    knowledge_base.refresh(force=True)
    assert sources(knowledge_base, "when do I get my laptop?") == {"laptops.md"}
    assert "parking.md" not in sources(knowledge_base, "where do I park?")


def test_a_rebuild_in_another_process_is_followed_too(tmp_path):
    docs = tmp_path / "handbook"
    docs.mkdir()
    (docs / "parking.md").write_text(PARKING, encoding="utf-8")
    ingest_in_another_process(docs)
    knowledge_base = factories.make_knowledge_base(Settings())
    before = knowledge_base.refresh(force=True)

    (docs / "parking.md").unlink()
    (docs / "laptops.md").write_text(LAPTOPS, encoding="utf-8")
    subprocess.run([sys.executable, "-m", "onboard.cli", "ingest", "--rebuild", str(docs)], check=True,
                   timeout=300, capture_output=True, env=os.environ.copy())

    assert knowledge_base.refresh(force=True) > before  # the rebuilt index numbers its versions on
    assert sources(knowledge_base, "when do I get my laptop?") == {"laptops.md"}


class Gate:
    """Holds the embedding server's requests back: ``close(after=n)`` lets ``n`` more through, then blocks."""

    def __init__(self) -> None:
        self._open = threading.Event()
        self._open.set()
        self._lock = threading.Lock()
        self.allowed: int | None = None
        self.arrived = 0

    def close(self, after: int = 0) -> None:
        with self._lock:
            self.allowed = self.arrived + after
            self._open.clear()

    def open(self) -> None:
        self._open.set()

    def pass_through(self) -> None:
        with self._lock:
            self.arrived += 1
            held = self.allowed is not None and self.arrived > self.allowed
        if held:
            self._open.wait(timeout=300)


@pytest.fixture
def gated_embeddings(api_embeddings, monkeypatch):
    """The local embeddings endpoint, its requests passing through a :class:`Gate`."""
    gate = Gate()
    served = api_embeddings.httpd.RequestHandlerClass

    class Gated(served):
        def do_POST(self) -> None:
            gate.pass_through()
            super().do_POST()

    api_embeddings.httpd.RequestHandlerClass = Gated
    monkeypatch.setenv("ONBOARD_EMBEDDING__TIMEOUT_S", "300")
    yield gate
    gate.open()


@pytest.fixture
def shared_database(database_url, engine, monkeypatch):
    """The processes' database (migrated: PostgreSQL is not migrated by the app), and an engine on it."""
    monkeypatch.setenv("ONBOARD_DATABASE_URL", database_url)
    return engine


def _lines(process: subprocess.Popen, name: str, out: queue.Queue) -> None:
    for line in process.stdout:
        out.put((name, line.strip()))


BOOTSTRAP = """
from onboard import factories
from onboard.settings import Settings
print("started", flush=True)
factories.bootstrap_knowledge_base(Settings(), warm=False,
                                   on_first_index=lambda folder: print("indexing", flush=True),
                                   on_wait=lambda collection: print("waiting", flush=True))
print("done", flush=True)
"""


def test_two_processes_starting_together_index_the_sample_handbook_once(gated_embeddings, shared_database):
    gated_embeddings.close()  # whoever indexes first is held at its first embedding request
    lines: queue.Queue = queue.Queue()
    processes = {}
    for name in ("a", "b"):
        processes[name] = subprocess.Popen([sys.executable, "-c", BOOTSTRAP], stdout=subprocess.PIPE, text=True,
                                           env=os.environ.copy())
        threading.Thread(target=_lines, args=(processes[name], name, lines), daemon=True).start()
    try:
        said: dict[str, list[str]] = {"a": [], "b": []}
        while not all({"indexing", "waiting"} & set(words) for words in said.values()):  # both have decided
            name, line = lines.get(timeout=240)
            said[name].append(line)
        gated_embeddings.open()
        for process in processes.values():
            assert process.wait(timeout=240) == 0
    finally:
        gated_embeddings.open()
        for process in processes.values():
            process.kill()
    while not lines.empty():
        name, line = lines.get()
        said[name].append(line)

    assert sorted(" ".join(words) for words in said.values()) == ["started indexing done", "started waiting done"]
    settings = Settings()
    store = factories.make_store(settings, factories.make_embeddings(settings))
    (only,) = runs(shared_database, store.name)  # the waiting process found the index filled: no run of its own
    assert (only.status, only.added) == ("completed", len(list(factories.SAMPLE_HANDBOOK.rglob("*.md"))))
    assert store.version == 1 == only.index_version


def write_many(folder, count: int):
    docs = {f"topic-{n:03}.md": f"# Topic {n}\n\nThe rule number {n} is written here. It applies to everyone in "
            f"team {n}. Ask the desk about rule {n}.\n" for n in range(count)}
    return write_docs(folder, docs)


def test_an_ingest_killed_midway_is_marked_interrupted_and_completed_by_the_next(
        tmp_path, gated_embeddings, shared_database, monkeypatch):
    folder = write_many(tmp_path / "handbook", 150)  # 150 chunks and their keys: several batches of 256 texts
    monkeypatch.setenv("ONBOARD_EMBEDDING__BATCH_SIZE", "2048")  # one request per batch
    gated_embeddings.close(after=1)  # the first batch is embedded, the second is held
    command = [sys.executable, "-m", "onboard.cli", "ingest", str(folder)]
    killed = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy())
    try:
        while not (gated_embeddings.arrived >= 2 and killed.poll() is None):  # the second batch is being embedded
            assert killed.poll() is None, killed.communicate()
            time.sleep(0.1)
        (row,) = runs(shared_database, "handbook")
        assert row.status == "running" and row.added > 0  # the first batch, recorded as it was done
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=60)
    finally:
        killed.kill()
        gated_embeddings.open()

    after = subprocess.run(command, capture_output=True, text=True, timeout=300, env=os.environ.copy(), check=False)

    assert after.returncode == 0, after.stderr
    assert f"run {row.id} had stopped before it finished (its process died): marked interrupted" in after.stderr
    dead, completed = runs(shared_database, "handbook")
    assert (dead.status, dead.added, dead.chunks_added) == ("interrupted", row.added, row.chunks_added)
    assert completed.status == "completed"
    assert (completed.added, completed.unchanged) == (150 - row.added, row.added)
    settings = Settings()
    assert factories.make_store(settings, factories.make_embeddings(settings)).count() == 150


def test_processes_opening_a_new_chroma_folder_at_once_all_succeed(tmp_path):
    """Chroma creates its schema on first open: processes opening a new folder together must not collide
    ("table collections already exists" failed a bootstrap and a worker started together)."""
    folder = tmp_path / "chroma"
    code = ("import sys, time; from pathlib import Path; from assistant.vectors import ChromaLocation, make_client; "
            "start = float(sys.argv[2]); time.sleep(max(0.0, start - time.time() - 0.05)); "
            "exec('while time.time() < start: pass'); "
            "make_client(ChromaLocation(path=Path(sys.argv[1]))).get_or_create_collection('handbook'); print('ok')")
    start = time.time() + 3  # all import chromadb first, then open at the same moment
    processes = [subprocess.Popen([sys.executable, "-c", code, str(folder), str(start)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=os.environ.copy()) for _ in range(12)]
    results = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0] * 12, [err[-400:] for _, err in results]
