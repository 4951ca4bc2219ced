"""The indexing lock across processes, on SQLite (a file lock) and PostgreSQL (an advisory lock).

The lock is held by a real subprocess; it is released by the kernel or the
database server when that process is killed, with no clean-up by anyone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest
from helpers_kb import HANDBOOK, runs, write_docs

from assistant.indexlock import IndexBusy, index_lock
from assistant.ingest import ingest

HOLDER = """
import sys, time
from onboard import db
from assistant.indexlock import index_lock
engine = db.make_engine(sys.argv[1])
with index_lock(engine, sys.argv[2]):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def hold(database_url, engine):
    """Starts a subprocess holding the indexing lock of a collection until it is killed."""
    processes = []

    def start(collection: str) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-c", HOLDER, database_url, collection], stdout=subprocess.PIPE,
                                   text=True, env=os.environ.copy())
        processes.append(process)
        assert process.stdout.readline().strip() == "held"
        return process

    yield start
    for process in processes:
        process.kill()
        process.wait(timeout=30)


@pytest.fixture
def holder(hold):
    """A subprocess holding the indexing lock of collection "handbook" until it is killed."""
    return hold("handbook")


def test_a_second_acquirer_does_not_proceed_while_another_process_holds_the_lock(holder, engine):
    with (pytest.raises(IndexBusy, match="another process is indexing the collection 'handbook'"),
          index_lock(engine, "handbook", wait=False)):
        pytest.fail("acquired a lock another process holds")
    with index_lock(engine, "support", wait=False) as lock:  # another collection is not held
        assert lock.waited is False


def test_a_waiting_acquirer_proceeds_when_the_holder_is_killed(holder, engine):
    waiting = threading.Event()
    acquired = threading.Event()

    def acquire() -> None:
        with index_lock(engine, "handbook", on_wait=lambda collection: waiting.set()) as lock:
            assert lock.waited
            acquired.set()

    thread = threading.Thread(target=acquire, daemon=True)
    thread.start()
    assert waiting.wait(timeout=120), "the second acquirer never found the lock held"
    assert not acquired.is_set()

    holder.send_signal(signal.SIGKILL)  # no chance to release anything: the kernel or the server does
    holder.wait(timeout=30)
    thread.join(timeout=120)

    assert acquired.is_set()


def test_ingest_with_no_wait_refuses_to_run_while_another_process_indexes(holder, tmp_path, store, fake_embeddings,
                                                                         engine):
    from assistant.vectors import PassageStore

    busy = PassageStore(store.client, "handbook", fake_embeddings.model_id)
    root = write_docs(tmp_path / "docs", HANDBOOK)

    with pytest.raises(IndexBusy):
        ingest([root], store=busy, embeddings=fake_embeddings, engine=engine, wait=False)

    assert runs(engine, "handbook") == []  # nothing recorded, nothing indexed
    assert busy.count() == 0


def test_the_lock_is_released_when_the_block_ends_or_fails(engine):
    with pytest.raises(RuntimeError), index_lock(engine, "handbook"):
        raise RuntimeError("the run failed")
    with index_lock(engine, "handbook", wait=False) as lock:
        assert lock.waited is False
    with index_lock(engine, "handbook", wait=False):
        pass


def test_onboard_ingest_waits_for_the_other_process_and_says_so_or_exits_with_no_wait(
        holder, tmp_path, api_embeddings, database_url, monkeypatch):
    monkeypatch.setenv("ONBOARD_DATABASE_URL", database_url)
    root = write_docs(tmp_path / "docs", HANDBOOK)
    command = [sys.executable, "-m", "onboard.cli", "ingest", str(root)]

    refused = subprocess.run([*command, "--no-wait"], capture_output=True, text=True, timeout=300,
                             env=os.environ.copy(), check=False)
    assert refused.returncode == 2
    assert "another process is indexing the collection 'handbook'; try again when it has finished" in refused.stderr

    waiting = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=os.environ.copy())
    try:
        assert "waiting for it to finish" in waiting.stderr.readline()
        holder.send_signal(signal.SIGKILL)
        out, err = waiting.communicate(timeout=300)
    finally:
        waiting.kill()
    assert waiting.returncode == 0, err
    assert f"{len(HANDBOOK)} added" in out


def test_the_help_is_not_indexed_by_a_page_while_another_process_indexes_it(hold, tmp_path, chroma_client,
                                                                            fake_embeddings, engine, monkeypatch):
    from onboard.settings import Settings
    from service.support import SupportDesk

    docs = write_docs(tmp_path / "docs", {"user-guide.md": "# User guide\n\nRate answers with the thumbs.\n"})
    monkeypatch.setenv("ONBOARD_SUPPORT__DOCS_DIR", str(docs))
    monkeypatch.setenv("ONBOARD_SUPPORT__CHECK_EVERY_S", "0")
    desk = SupportDesk(settings=Settings(), embeddings=fake_embeddings, client=chroma_client, engine=engine)
    other = hold("support")

    assert desk.refresh() is None  # a page's look does not wait for the other process: it looks again later
    assert runs(engine, "support") == [] and desk.store.count() == 0

    other.send_signal(signal.SIGKILL)
    other.wait(timeout=30)
    assert desk.refresh().added == ["user-guide.md"]
