"""Incremental ingestion: only what changed is embedded, and every run converges on the files on disk.

Runs on SQLite and, with TEST_DATABASE_URL, on PostgreSQL (the ``engine`` fixture).
"""

from __future__ import annotations

import io
import uuid

import pytest
from conftest import FakeEmbeddings
from helpers_kb import HANDBOOK, embedded_texts, manifest, manifest_ids, runs, write_docs

from assistant.chunking import chunk_markdown, passage_text, search_keys
from assistant.errors import EmbeddingError, IndexMismatch
from assistant.ingest import IngestOptions, ingest
from assistant.loaders import load_bytes
from assistant.vectors import PassageStore

ALL = sorted(HANDBOOK)


@pytest.fixture
def root(tmp_path):
    return write_docs(tmp_path / "handbook", HANDBOOK)


def run(root, store, embeddings, engine, **options):
    return ingest([root], store=store, embeddings=embeddings, engine=engine, options=IngestOptions(**options))


def expected_chunks(root, source: str, embeddings):
    """The chunks ingestion should make for ``source``, computed with the public loader and chunker."""
    path = root / source
    doc = load_bytes(path.read_bytes(), name=path.name, max_bytes=10**6)
    chunks = chunk_markdown(doc.text, source=str(path), title=doc.title, count_tokens=embeddings.count_tokens)
    return doc, chunks


def clean_ids(root, chroma_client, engine) -> set[str]:
    """The chunk ids a clean ingest of ``root`` into a fresh collection produces."""
    from conftest import FakeEmbeddings

    fake = FakeEmbeddings()
    fresh = PassageStore(chroma_client, f"clean-{uuid.uuid4().hex[:8]}", fake.model_id)
    run(root, fresh, fake, engine)
    return fresh.ids()


# --- first run, re-run, changes -----------------------------------------------------------


def test_first_run_adds_everything(root, store, fake_embeddings, engine):
    report = run(root, store, fake_embeddings, engine)

    assert sorted(report.added) == ALL
    assert report.changed == report.removed == report.skipped == []
    assert report.failed == {}
    assert report.unchanged == 0
    assert report.index_version == 1 == store.version

    expected = {source: expected_chunks(root, source, fake_embeddings) for source in ALL}
    all_ids = {c.id for _, chunks in expected.values() for c in chunks}
    assert store.ids() == all_ids == manifest_ids(engine, store.name)
    assert report.chunks_added == len(all_ids) == store.count()
    # The fake was asked to embed exactly each chunk's heading-prefixed text, and each of its search keys, once.
    keys = [passage_text(doc.title, c.section, key) for doc, chunks in expected.values() for c in chunks
            for key in search_keys(c.text)]
    assert keys, "laptop.md's paragraph has three sentences: two windows"
    assert sorted(embedded_texts(fake_embeddings)) == sorted(
        [c.embedding_text(doc.title) for doc, chunks in expected.values() for c in chunks] + keys
    )
    assert store.keys.count() == len(keys)
    rows = manifest(engine, store.name)
    assert set(rows) == set(ALL)
    assert rows["time-off.md"].title == "Time off" and rows["time-off.md"].kind == "markdown"
    assert rows["it/laptop.md"].sha256 == IngestOptions().fingerprint((root / "it/laptop.md").read_bytes(), "it/laptop.md")


def test_chunk_metadata_carries_source_title_section_audience_and_url(root, store, fake_embeddings, engine):
    run(root, store, fake_embeddings, engine)
    stored = store.collection.get(include=["metadatas", "documents"])
    by_source: dict[str, list[dict]] = {}
    for meta in stored["metadatas"]:
        by_source.setdefault(meta["source"], []).append(meta)

    assert {tuple(m["audience"]) for m in by_source["hr/salary.md"]} == {("hr",)}
    assert {tuple(m["audience"]) for m in by_source["it/laptop.md"]} == {("all",)}
    assert {m["url"] for m in by_source["office/kitchen.md"]} == {"https://handbook.example.com/kitchen"}
    assert "url" not in by_source["it/laptop.md"][0]
    assert {m["section"] for m in by_source["time-off.md"]} == {"", "Sick leave"}
    assert {m["title"] for m in by_source["time-off.md"]} == {"Time off"}
    assert {m["kind"] for m in stored["metadatas"]} == {"markdown"}
    assert not any("title:" in doc or "---" in doc for doc in stored["documents"])


def test_rerun_with_nothing_changed_embeds_nothing(root, store, fake_embeddings, engine):
    first = run(root, store, fake_embeddings, engine)
    ids = store.ids()
    fake_embeddings.calls.clear()

    second = run(root, store, fake_embeddings, engine)

    assert fake_embeddings.calls == []
    assert second.unchanged == len(ALL)
    assert second.added == second.changed == second.removed == []
    assert second.chunks_added == second.chunks_removed == 0
    assert second.index_version == first.index_version == store.version == 1
    assert store.ids() == ids


def test_changed_file_is_the_only_one_reembedded_and_its_stale_chunks_go(root, store, fake_embeddings, engine):
    run(root, store, fake_embeddings, engine)
    before = manifest(engine, store.name)
    old_ids = set(before["time-off.md"].chunk_ids)
    fake_embeddings.calls.clear()

    (root / "time-off.md").write_text(
        "# Time off\n\nEveryone gets twenty-five days of paid vacation per year.\n\n"
        "## Sick leave\n\nSick leave is unlimited; tell your team in the morning when you are ill.\n",
        encoding="utf-8",
    )
    report = run(root, store, fake_embeddings, engine)

    assert report.changed == ["time-off.md"] and report.added == [] and report.removed == []
    assert report.unchanged == len(ALL) - 1
    doc, chunks = expected_chunks(root, "time-off.md", fake_embeddings)
    assert sorted(embedded_texts(fake_embeddings)) == sorted(c.embedding_text(doc.title) for c in chunks)
    assert all("Laptops" not in text for text in embedded_texts(fake_embeddings))

    new_ids = {c.id for c in chunks}
    stale = old_ids - new_ids
    assert stale, "the edited paragraph must get a new id"
    assert store.ids().isdisjoint(stale)
    assert new_ids <= store.ids()
    assert store.ids() == manifest_ids(engine, store.name)
    assert report.chunks_removed == len(stale)
    assert report.chunks_added == len(new_ids - old_ids)
    assert report.index_version == 2 == store.version
    # Other files' rows are untouched.
    after = manifest(engine, store.name)
    assert after["it/laptop.md"].chunk_ids == before["it/laptop.md"].chunk_ids


def test_deleted_file_chunks_are_removed(root, store, fake_embeddings, engine):
    run(root, store, fake_embeddings, engine)
    gone = set(manifest(engine, store.name)["it/laptop.md"].chunk_ids)
    fake_embeddings.calls.clear()

    (root / "it/laptop.md").unlink()
    report = run(root, store, fake_embeddings, engine)

    assert report.removed == ["it/laptop.md"]
    assert report.chunks_removed == len(gone)
    assert fake_embeddings.calls == []
    assert store.ids().isdisjoint(gone)
    assert "it/laptop.md" not in manifest(engine, store.name)
    assert {m["source"] for m in store.collection.get(include=["metadatas"])["metadatas"]} == set(ALL) - {
        "it/laptop.md"
    }
    assert report.index_version == 2


def test_renamed_file_is_removed_under_the_old_name_and_added_under_the_new(root, store, fake_embeddings, engine):
    run(root, store, fake_embeddings, engine)
    count = store.count()
    old_ids = set(manifest(engine, store.name)["security/passwords.md"].chunk_ids)

    (root / "security/passwords.md").rename(root / "security/password-policy.md")
    report = run(root, store, fake_embeddings, engine)

    assert report.removed == ["security/passwords.md"]
    assert report.added == ["security/password-policy.md"]
    assert store.count() == count
    assert store.ids().isdisjoint(old_ids)
    sources = {m["source"] for m in store.collection.get(include=["metadatas"])["metadatas"]}
    assert "security/password-policy.md" in sources and "security/passwords.md" not in sources
    assert store.ids() == clean_ids(root, store.client, engine)


def test_broken_new_file_is_reported_and_the_rest_indexed(root, store, fake_embeddings, engine):
    (root / "broken.pdf").write_bytes(b"%PDF-1.4\nthis is not really a pdf")
    (root / "binary.txt").write_bytes(b"abc\x00\x01\x02")
    (root / "notes.xyz").write_text("unsupported", encoding="utf-8")
    (root / ".hidden.md").write_text("# Hidden\n\nnot indexed\n", encoding="utf-8")

    report = run(root, store, fake_embeddings, engine)

    assert sorted(report.added) == ALL
    assert set(report.failed) == {"broken.pdf", "binary.txt"}
    assert report.failed["broken.pdf"].startswith("broken PDF")
    assert "binary content" in report.failed["binary.txt"]
    assert report.skipped == ["notes.xyz"]
    sources = {m["source"] for m in store.collection.get(include=["metadatas"])["metadatas"]}
    assert sources == set(ALL)
    assert set(manifest(engine, store.name)) == set(ALL)


def test_previously_indexed_file_that_breaks_keeps_its_old_chunks(root, store, fake_embeddings, engine):
    run(root, store, fake_embeddings, engine)
    kept = set(manifest(engine, store.name)["it/laptop.md"].chunk_ids)
    ids = store.ids()
    fake_embeddings.calls.clear()

    (root / "it/laptop.md").write_bytes(b"caf\xe9 broken latin-1")
    report = run(root, store, fake_embeddings, engine)

    assert "not valid UTF-8" in report.failed["it/laptop.md"]
    assert report.removed == [] and report.changed == []
    assert fake_embeddings.calls == []
    assert kept <= store.ids()
    assert store.ids() == ids
    assert report.index_version == 1


def test_file_over_the_size_limit_is_reported(root, store, fake_embeddings, engine):
    (root / "huge.md").write_text("# Huge\n\n" + "word " * 400, encoding="utf-8")
    report = run(root, store, fake_embeddings, engine, max_file_bytes=1000)
    assert "too large" in report.failed["huge.md"]
    assert "huge.md" not in manifest(engine, store.name)


def test_small_embed_batches_give_the_same_index(root, store, fake_embeddings, engine):
    run(root, store, fake_embeddings, engine, embed_batch=1)
    assert len(fake_embeddings.calls) >= len(ALL)
    assert store.ids() == clean_ids(root, store.client, engine)


def test_two_roots_with_the_same_relative_path_both_stay_indexed(tmp_path, store, fake_embeddings, engine):
    a = write_docs(tmp_path / "a", {"README.md": "# Readme\n\nAlpha team notes.\n"})
    b = write_docs(tmp_path / "b", {"README.md": "# Readme\n\nBeta team notes.\n"})
    ingest([a, b], store=store, embeddings=fake_embeddings, engine=engine)
    second = ingest([a, b], store=store, embeddings=fake_embeddings, engine=engine)

    documents = store.collection.get(include=["documents"])["documents"]
    assert sorted(documents) == ["Alpha team notes.", "Beta team notes."]
    assert second.changed == [] and second.unchanged == 2


def test_file_first_indexed_alone_is_removed_when_deleted_from_its_folder(tmp_path, store, fake_embeddings, engine):
    docs = write_docs(tmp_path / "docs", {"a.md": "# A\n\nAlpha text.\n", "b.md": "# B\n\nBeta text.\n"})
    ingest([docs / "a.md"], store=store, embeddings=fake_embeddings, engine=engine)
    ingest([docs], store=store, embeddings=fake_embeddings, engine=engine)

    (docs / "a.md").unlink()
    report = ingest([docs], store=store, embeddings=fake_embeddings, engine=engine)

    assert report.removed == ["a.md"]
    assert store.collection.get(include=["documents"])["documents"] == ["Beta text."]


# --- the run record ----------------------------------------------------------------------------


def test_each_run_is_recorded_with_counts_failures_and_version(root, store, fake_embeddings, engine):
    (root / "broken.docx").write_bytes(b"not a zip at all")
    first = run(root, store, fake_embeddings, engine)
    second = run(root, store, fake_embeddings, engine)
    (root / "it/laptop.md").unlink()
    third = run(root, store, fake_embeddings, engine)

    rows = runs(engine, store.name)
    assert [r.id for r in rows] == [first.run_id, second.run_id, third.run_id]
    assert [r.status for r in rows] == ["completed"] * 3
    assert [r.index_version for r in rows] == [1, 1, 2]
    assert [(r.added, r.changed, r.removed, r.unchanged, r.failed) for r in rows] == [
        (len(ALL), 0, 0, 0, 1),
        (0, 0, 0, len(ALL), 1),
        (0, 0, 1, len(ALL) - 1, 1),
    ]
    assert rows[0].chunks_added == first.chunks_added > 0
    assert rows[2].chunks_removed == third.chunks_removed > 0
    assert rows[0].failures == [{"source": "broken.docx", "reason": "broken DOCX (BadZipFile)"}]
    assert rows[0].embedding_model == fake_embeddings.model_id
    assert rows[0].roots == [str(root.resolve())]
    assert all(r.finished_at is not None and r.finished_at >= r.started_at for r in rows)
    assert store.version == 2


def test_missing_path_is_refused_before_a_run_is_recorded(tmp_path, store, fake_embeddings, engine):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run(tmp_path / "nope", store, fake_embeddings, engine)
    assert runs(engine, store.name) == []


# --- crashes and repairs ---------------------------------------------------------------------


class InterruptingEmbeddings:
    """Wraps the fake; the ``after``-th call onwards raises KeyboardInterrupt (as Ctrl-C would)."""

    def __init__(self, inner, after: int) -> None:
        self.inner = inner
        self.after = after
        self.model_id = inner.model_id
        self.count_tokens = inner.count_tokens
        self.calls = 0

    def embed_documents(self, texts):
        self.calls += 1
        if self.calls > self.after:
            raise KeyboardInterrupt
        return self.inner.embed_documents(texts)

    def embed_query(self, text):
        return self.inner.embed_query(text)


@pytest.mark.parametrize("after", [0, 2])
def test_interrupted_run_is_completed_by_the_next_one(root, store, fake_embeddings, engine, after):
    flaky = InterruptingEmbeddings(fake_embeddings, after=after)
    with pytest.raises(KeyboardInterrupt):
        run(root, store, flaky, engine, embed_batch=1)

    interrupted = runs(engine, store.name)[-1]
    assert interrupted.status == "interrupted"
    assert interrupted.finished_at is not None
    committed = set(manifest(engine, store.name))
    assert interrupted.added == after == len(committed)

    report = run(root, store, fake_embeddings, engine, embed_batch=1)

    assert runs(engine, store.name)[-1].status == "completed"
    assert sorted(report.added) == sorted(set(ALL) - committed)
    assert report.unchanged == after
    expected = clean_ids(root, store.client, engine)
    assert store.ids() == expected == manifest_ids(engine, store.name)
    assert store.count() == len(expected)


def test_a_run_whose_process_died_is_marked_interrupted_by_the_next_with_what_it_had_recorded(
        root, store, fake_embeddings, engine):
    from sqlmodel import Session

    from assistant.manifest import IngestRun

    with Session(engine) as session:  # what a run killed after its first batch leaves: a row still "running"
        session.add(IngestRun(collection=store.name, roots=[str(root)], added=2, chunks_added=3))
        session.add(IngestRun(collection="another", roots=[str(root)]))  # another collection's run is not ours
        session.commit()
    dead = runs(engine, store.name)[0]

    report = run(root, store, fake_embeddings, engine)

    assert report.interrupted_runs == [dead.id]
    first, second = runs(engine, store.name)
    assert (first.status, first.added, first.chunks_added, first.finished_at) == ("interrupted", 2, 3, None)
    assert second.status == "completed" and sorted(report.added) == ALL
    assert [r.status for r in runs(engine, "another")] == ["running"]
    assert run(root, store, fake_embeddings, engine).interrupted_runs == []


class RecordingEmbeddings(FakeEmbeddings):
    """Reads the run's row each time it is asked to embed: what a process killed at that moment would leave."""

    def __init__(self, engine, collection: str) -> None:
        super().__init__()
        self.engine, self.collection, self.seen = engine, collection, []

    def embed_documents(self, texts):
        row = runs(self.engine, self.collection)[-1]
        self.seen.append((row.status, row.added, row.chunks_added))
        return super().embed_documents(texts)


def test_a_run_records_its_counts_after_each_batch(root, store, engine):
    recording = RecordingEmbeddings(engine, store.name)

    run(root, store, recording, engine, embed_batch=1)  # one file per batch

    assert [(status, added) for status, added, _ in recording.seen] == [("running", n) for n in range(len(ALL))]
    assert recording.seen[-1][2] > 0


class CrashingStore(PassageStore):
    """A real PassageStore that dies (KeyboardInterrupt) at a chosen step of writing a changed file."""

    crash_on: str = ""

    def upsert(self, **kwargs):
        super().upsert(**kwargs)
        if self.crash_on == "after_upsert":
            raise KeyboardInterrupt

    def delete(self, ids, key_ids=None):
        if self.crash_on == "before_delete" and ids:
            raise KeyboardInterrupt
        super().delete(ids, key_ids)


@pytest.mark.parametrize("crash_on", ["after_upsert", "before_delete"])
def test_crash_while_replacing_a_changed_file_converges(root, chroma_client, fake_embeddings, engine, crash_on):
    store = CrashingStore(chroma_client, f"crash-{uuid.uuid4().hex[:8]}", fake_embeddings.model_id)
    run(root, store, fake_embeddings, engine)
    (root / "it/laptop.md").write_text("# Laptops\n\nLaptops are now replaced every four years.\n", encoding="utf-8")

    store.crash_on = crash_on
    with pytest.raises(KeyboardInterrupt):
        run(root, store, fake_embeddings, engine)
    # Chroma now holds a chunk the manifest does not own (the old or the new laptop.md passage).
    assert manifest_ids(engine, store.name) < store.ids()

    store.crash_on = ""
    report = run(root, store, fake_embeddings, engine)

    assert report.chunks_removed >= 1
    expected = clean_ids(root, store.client, engine)
    assert store.ids() == expected == manifest_ids(engine, store.name)
    texts = store.collection.get(include=["documents"])["documents"]
    assert "Laptops are now replaced every four years." in texts
    assert not any("three years" in t for t in texts)


def test_orphan_chunks_are_removed_by_the_next_run(root, store, fake_embeddings, engine):
    run(root, store, fake_embeddings, engine)
    clean = store.ids()
    store.collection.upsert(
        ids=["stray-1", "stray-2"],
        embeddings=fake_embeddings.embed_documents(["stray one", "stray two"]),
        documents=["stray one", "stray two"],
        metadatas=[{"source": "ghost.md"}, {"source": "ghost.md"}],
    )
    fake_embeddings.calls.clear()

    report = run(root, store, fake_embeddings, engine)

    assert store.ids() == clean
    assert report.chunks_removed == 2
    assert report.unchanged == len(ALL)
    assert fake_embeddings.calls == []
    assert report.index_version == 2, "removing chunks changes what retrieval sees"


def test_collection_emptied_behind_the_manifest_is_repaired(root, store, fake_embeddings, engine):
    run(root, store, fake_embeddings, engine)
    clean = store.ids()
    store.collection.delete(ids=sorted(clean))
    assert store.count() == 0
    fake_embeddings.calls.clear()

    report = run(root, store, fake_embeddings, engine)

    assert store.ids() == clean
    assert sorted(report.changed) == ALL
    assert report.unchanged == 0
    assert len(embedded_texts(fake_embeddings)) == len(clean) + store.keys.count()
    assert report.index_version == 2


def test_one_missing_chunk_makes_only_its_file_reindexed(root, store, fake_embeddings, engine):
    run(root, store, fake_embeddings, engine)
    clean = store.ids()
    victim = manifest(engine, store.name)["office/kitchen.md"].chunk_ids[0]
    store.collection.delete(ids=[victim])
    fake_embeddings.calls.clear()

    report = run(root, store, fake_embeddings, engine)

    assert report.changed == ["office/kitchen.md"]
    assert all("kitchen" in text.lower() for text in embedded_texts(fake_embeddings))
    assert store.ids() == clean


# --- the store ------------------------------------------------------------------------------------


def test_store_refuses_a_collection_built_with_another_model(chroma_client, fake_embeddings):
    PassageStore(chroma_client, "handbook-x", fake_embeddings.model_id)
    with pytest.raises(IndexMismatch) as excinfo:
        PassageStore(chroma_client, "handbook-x", "local:some-other-model")
    message = str(excinfo.value)
    assert "--rebuild" in message
    assert fake_embeddings.model_id in message and "local:some-other-model" in message
    # The same model opens it again.
    assert PassageStore(chroma_client, "handbook-x", fake_embeddings.model_id).model_id == fake_embeddings.model_id


def test_version_survives_reopening(root, chroma_client, fake_embeddings, engine):
    store = PassageStore(chroma_client, "reopen-me", fake_embeddings.model_id)
    run(root, store, fake_embeddings, engine)
    reopened = PassageStore(chroma_client, "reopen-me", fake_embeddings.model_id)
    assert reopened.version == 1
    assert reopened.ids() == store.ids()


def test_folder_audiences_apply_and_a_changed_mapping_reindexes(tmp_path, store, fake_embeddings, engine):
    root = write_docs(
        tmp_path / "docs",
        {
            "hr/bands.md": "# Bands\n\nSalary bands are reviewed each spring.\n",
            "hr/public.md": "---\naudience: all\n---\n# Holidays\n\nThe office closes on public holidays.\n",
            "it/laptop.md": "# Laptop\n\nLaptops are replaced every three years.\n",
        },
    )

    def audiences() -> dict[str, list[str]]:
        got = store.collection.get(include=["metadatas"])
        return {m["source"]: m["audience"] for m in got["metadatas"]}

    run(root, store, fake_embeddings, engine, folder_audiences={"hr": ["hr"]})
    assert audiences() == {"hr/bands.md": ["hr"], "hr/public.md": ["all"], "it/laptop.md": ["all"]}

    # Same files, new mapping: the files of the remapped folder are indexed again, the others are not.
    report = run(root, store, fake_embeddings, engine, folder_audiences={"hr": ["hr", "managers"]})
    assert sorted(report.changed) == ["hr/bands.md", "hr/public.md"] and report.unchanged == 1
    assert audiences() == {"hr/bands.md": ["hr", "managers"], "hr/public.md": ["all"], "it/laptop.md": ["all"]}


def test_a_typo_in_front_matter_keeps_the_last_good_version_and_never_publishes_the_page(
        tmp_path, store, fake_embeddings, engine):
    bands = "---\ntitle: Salary bands\naudience: {}\n---\n# Salary bands\n\nThe quokka matrix lists every band.\n"
    root = write_docs(tmp_path / "docs", {"people/bands.md": bands.format("[hr]")})
    options = {"folder_audiences": {"people": ["people-team"]}}  # front matter wins over it: no safety net
    run(root, store, fake_embeddings, engine, **options)
    before = store.collection.get(include=["documents", "metadatas"])

    (root / "people/bands.md").write_text(bands.format("[hr"), encoding="utf-8")  # the closing bracket forgotten
    write_docs(root, {"people/reviews.md": "---\naudience: [hr\n---\n# Reviews\n\nReview ratings are secret.\n"})
    report = run(root, store, fake_embeddings, engine, **options)

    assert report.added == report.changed == []
    assert set(report.failed) == {"people/bands.md", "people/reviews.md"}
    assert report.failed["people/bands.md"].startswith("front matter is not valid YAML: did not find expected ','")
    assert "(line 3, column 11)" in report.failed["people/bands.md"]  # where "[hr" opens in the file
    assert store.collection.get(include=["documents", "metadatas"]) == before  # the last good version, for hr only
    assert all(m["audience"] == ["hr"] for m in before["metadatas"]) and before["metadatas"]
    assert report.index_version == 1
    assert runs(engine, store.name)[-1].failures[0]["source"] == "people/bands.md"


# --- hostile files ----------------------------------------------------------------------------


def test_hostile_files_fail_alone_and_the_run_goes_on(root, store, fake_embeddings, engine):
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer)
    pdf.drawString(72, 720, "Expenses need receipts.")
    pdf.showPage()
    pdf.save()
    (root / "filter.pdf").write_bytes(buffer.getvalue().replace(b"/ASCII85Decode", b"/ASCII85Decade"))
    (root / "deep.md").write_text("---\ntitle: " + "[" * 5000 + "\n---\n# Deep\n\nText.\n", encoding="utf-8")

    report = run(root, store, fake_embeddings, engine)

    assert sorted(report.added) == ALL
    assert report.failed["filter.pdf"].startswith("broken PDF (NotImplementedError")
    assert report.failed["deep.md"].startswith("front matter is not valid YAML")  # its audience could be lost
    assert runs(engine, store.name)[-1].status == "completed"


class PickyEmbeddings(FakeEmbeddings):
    """Counting tokens of one word raises ``error``: a bug on one file, or a backend that fails."""

    def __init__(self, word: str, error: Exception) -> None:
        super().__init__()
        self.word, self.error = word, error

    def count_tokens(self, text: str) -> int:
        if self.word in text:
            raise self.error
        return super().count_tokens(text)


def test_an_unexpected_error_on_one_file_is_that_files_failure(root, store, engine):
    (root / "odd.md").write_text("# Odd\n\nThe zyzzyva clause.\n", encoding="utf-8")
    report = run(root, store, PickyEmbeddings("zyzzyva", IndexError("list index out of range")), engine)

    assert sorted(report.added) == ALL
    assert report.failed == {"odd.md": "could not be read (IndexError: list index out of range)"}


def test_an_embedding_backend_error_still_stops_the_run(root, store, engine):
    with pytest.raises(EmbeddingError):
        run(root, store, PickyEmbeddings("laptop", EmbeddingError("endpoint down")), engine)
    assert runs(engine, store.name)[-1].status == "interrupted"


# --- citation paths and audiences do not depend on the path given ---------------------------------


def stored(store) -> dict[str, list[str]]:
    """``{source: audience}`` of every chunk in Chroma."""
    return {m["source"]: m["audience"] for m in store.collection.get(include=["metadatas"])["metadatas"]}


def test_reingesting_a_subfolder_or_a_file_keeps_source_and_audience(tmp_path, store, fake_embeddings, engine):
    docs = write_docs(
        tmp_path / "docs",
        {"hr/salaries.md": "# Salaries\n\nBands are reviewed in spring.\n", "it/laptop.md": "# Laptop\n\nEvery three years.\n"},
    )
    hr = {"hr": ["hr"]}
    run(docs, store, fake_embeddings, engine, folder_audiences=hr)
    assert stored(store) == {"hr/salaries.md": ["hr"], "it/laptop.md": ["all"]}

    (docs / "hr/salaries.md").write_text("# Salaries\n\nBands are reviewed in autumn.\n", encoding="utf-8")
    (docs / "hr/bonus.md").write_text("# Bonus\n\nPaid in March.\n", encoding="utf-8")
    report = run(docs / "hr", store, fake_embeddings, engine, folder_audiences=hr)
    assert report.changed == ["hr/salaries.md"] and report.added == ["hr/bonus.md"]
    assert stored(store) == {"hr/salaries.md": ["hr"], "hr/bonus.md": ["hr"], "it/laptop.md": ["all"]}

    (docs / "hr/salaries.md").write_text("# Salaries\n\nBands are reviewed in winter.\n", encoding="utf-8")
    report = run(docs / "hr/salaries.md", store, fake_embeddings, engine, folder_audiences=hr)
    assert report.changed == ["hr/salaries.md"]
    assert stored(store) == {"hr/salaries.md": ["hr"], "hr/bonus.md": ["hr"], "it/laptop.md": ["all"]}
    assert set(manifest(engine, store.name)) == {"hr/salaries.md", "hr/bonus.md", "it/laptop.md"}


def test_a_file_indexed_alone_does_not_make_its_folder_the_root_of_others(tmp_path, store, fake_embeddings, engine):
    write_docs(tmp_path, {"notes.md": "# Notes\n\nMy notes.\n", "handbook/hr/pay.md": "# Pay\n\nOn the 25th.\n"})
    ingest([tmp_path / "notes.md"], store=store, embeddings=fake_embeddings, engine=engine)
    run(tmp_path / "handbook", store, fake_embeddings, engine, folder_audiences={"hr": ["hr"]})
    assert stored(store) == {"notes.md": ["all"], "hr/pay.md": ["hr"]}


# --- files outside the paths given -------------------------------------------------------------


def test_files_of_a_renamed_folder_are_reported_and_pruned(root, store, fake_embeddings, engine):
    run(root, store, fake_embeddings, engine)
    moved = root.rename(root.with_name("handbook-2025"))
    (moved / "it/laptop.md").write_text("# Laptops\n\nLaptops are replaced every four years.\n", encoding="utf-8")

    report = run(moved, store, fake_embeddings, engine)
    assert sorted(report.added) == ALL and report.removed == []
    assert report.outside == sorted(str(root / source) for source in ALL)
    assert report.pruned == []

    report = ingest([moved], store=store, embeddings=fake_embeddings, engine=engine, prune=True)
    assert report.pruned == sorted(str(root / source) for source in ALL) and report.outside == []
    assert sorted(report.removed) == ALL and report.unchanged == len(ALL)
    texts = store.collection.get(include=["documents"])["documents"]
    assert not any("three years" in t for t in texts) and any("four years" in t for t in texts)
    assert store.ids() == manifest_ids(engine, store.name) == clean_ids(moved, store.client, engine)


def test_a_retired_folder_is_removed_and_other_outside_files_are_kept(tmp_path, root, store, fake_embeddings, engine):
    sample = write_docs(tmp_path / "sample", {"welcome.md": "# Welcome\n\nNorthwind welcomes you.\n"})
    other = write_docs(tmp_path / "other", {"misc.md": "# Misc\n\nOther notes.\n"})
    ingest([sample, other], store=store, embeddings=fake_embeddings, engine=engine)

    report = ingest([root], store=store, embeddings=fake_embeddings, engine=engine, retire=[sample])

    assert report.pruned == [str(sample / "welcome.md")] and report.removed == ["welcome.md"]
    assert report.outside == [str(other / "misc.md")]
    assert set(stored(store)) == {*ALL, "misc.md"}
    assert store.ids() == manifest_ids(engine, store.name)


# --- search keys ------------------------------------------------------------------------------------


def key_rows(store) -> list[tuple[str, dict]]:
    got = store.keys.get(include=["metadatas"])
    return list(zip(got["ids"], got["metadatas"], strict=True))


def test_search_keys_are_stored_for_their_chunk_with_its_metadata(root, store, fake_embeddings, engine):
    run(root, store, fake_embeddings, engine)
    rows = key_rows(store)
    assert rows, "the handbook's multi-sentence paragraphs give keys"
    chunks = store.collection.get(include=["metadatas", "documents"])
    meta_of = dict(zip(chunks["ids"], chunks["metadatas"], strict=True))
    text_of = dict(zip(chunks["ids"], chunks["documents"], strict=True))
    for key, meta in rows:
        parent = meta.pop("of")
        assert key.rpartition(":")[0] == parent
        assert meta == meta_of[parent]  # audience included: a filtered search filters keys alike
    # Every key of the laptop passage was embedded with the passage's headings, as the passage itself is.
    laptop = next(cid for cid, text in text_of.items() if "IT ships a laptop" in text)
    expected = [f"Laptops\n\n{key}" for key in search_keys(text_of[laptop])]
    assert len(expected) == 2 and set(expected) <= set(embedded_texts(fake_embeddings))
    assert sum(1 for key, _ in rows if key.startswith(laptop)) == len(expected)


def test_keys_of_changed_and_deleted_files_go_with_their_chunks(root, store, fake_embeddings, engine):
    run(root, store, fake_embeddings, engine)
    assert {meta["source"] for _, meta in key_rows(store)} == {"it/laptop.md"}
    (root / "time-off.md").write_text("# Time off\n\nAsk your manager first. Then book it in the portal. Enjoy it.\n")
    (root / "it" / "laptop.md").unlink()
    run(root, store, fake_embeddings, engine)
    assert set(store.key_ids()) <= store.ids()
    assert "it/laptop.md" not in {meta["source"] for _, meta in key_rows(store)}
    time_off = [meta for _, meta in key_rows(store) if meta["source"] == "time-off.md"]
    assert len(time_off) == 2  # the new paragraph's two windows, none of the old ones


class NoScanStore(PassageStore):
    """A real store that refuses to find keys by metadata, which scans every key (slow on a big index)."""

    def delete_keys(self, ids):
        raise AssertionError(f"keys of {ids} looked up by metadata, not deleted by id")


def test_ingest_deletes_the_keys_of_changed_removed_and_orphaned_chunks_by_id(root, chroma_client, fake_embeddings,
                                                                             engine):
    store = NoScanStore(chroma_client, f"noscan-{uuid.uuid4().hex[:8]}", fake_embeddings.model_id)
    run(root, store, fake_embeddings, engine)
    (root / "it" / "laptop.md").write_text("# Laptops\n\nIT ships one. It arrives on day one. Keep it safe.\n")
    (root / "time-off.md").unlink()
    orphan = "orphan-chunk"  # as left by a run that died before its manifest commit
    store.upsert(ids=[orphan], embeddings=fake_embeddings.embed_documents(["x"]), documents=["x"],
                 metadatas=[{"source": "ghost.md"}])
    store.upsert_keys(ids=[f"{orphan}:0"], embeddings=fake_embeddings.embed_documents(["x y"]),
                      metadatas=[{"of": orphan, "source": "ghost.md"}])

    report = run(root, store, fake_embeddings, engine)

    assert report.changed == ["it/laptop.md"] and report.removed == ["time-off.md"]
    assert orphan not in store.ids() and set(store.key_ids()) <= store.ids()
    assert set(store.key_ids()) == {cid for cid in store.ids() if store.collection.get(ids=[cid])["metadatas"][0]["source"]
                                    == "it/laptop.md"}


def test_keys_left_by_an_interrupted_run_are_removed_by_the_next(root, store, fake_embeddings, engine):
    run(root, store, fake_embeddings, engine)
    clean = sorted(store.keys.get(include=[])["ids"])
    store.upsert_keys(ids=["gone:0"], embeddings=fake_embeddings.embed_documents(["a stray key"]),
                      metadatas=[{"of": "gone", "source": "ghost.md"}])
    report = run(root, store, fake_embeddings, engine)
    assert sorted(store.keys.get(include=[])["ids"]) == clean
    assert report.unchanged == len(ALL)


def test_turning_keys_off_reindexes_and_removes_them(root, store, fake_embeddings, engine):
    run(root, store, fake_embeddings, engine)
    assert store.keys.count() > 0
    report = run(root, store, fake_embeddings, engine, key_sentences=0)
    assert sorted(report.changed) == ALL, "the key setting shapes the index, like the chunk size"
    assert store.keys.count() == 0
    assert store.ids() == clean_ids_with(root, store.client, engine, key_sentences=0)


def test_changing_how_much_of_a_key_is_read_in_context_reindexes_every_file(root, store, fake_embeddings, engine):
    run(root, store, fake_embeddings, engine)
    report = run(root, store, fake_embeddings, engine, key_context=0.0)
    assert sorted(report.changed) == ALL, "the keys' vectors change with it"
    assert run(root, store, fake_embeddings, engine, key_context=0.0).unchanged == len(ALL)


def clean_ids_with(root, chroma_client, engine, **options) -> set[str]:
    fake = FakeEmbeddings()
    fresh = PassageStore(chroma_client, f"clean-{uuid.uuid4().hex[:8]}", fake.model_id)
    run(root, fresh, fake, engine, **options)
    return fresh.ids()


def test_keys_stored_by_a_run_that_died_before_its_manifest_commit_are_replaced_not_kept(
    root, store, fake_embeddings, engine
):
    from assistant.ingest import forget

    run(root, store, fake_embeddings, engine)
    clean = sorted(store.keys.get(include=[])["ids"])
    laptop = next(key.rpartition(":")[0] for key in clean)
    # As if a run stored chunks and keys (with another setting, and another audience) and then died:
    # the manifest does not know the files, the store holds a key the next run would not make.
    store.upsert_keys(ids=[f"{laptop}:9"], embeddings=fake_embeddings.embed_documents(["old key"]),
                      metadatas=[{"of": laptop, "source": "it/laptop.md", "audience": ["hr"]}])
    forget(engine, store.name)

    report = run(root, store, fake_embeddings, engine)

    assert sorted(report.added) == ALL
    assert sorted(store.keys.get(include=[])["ids"]) == clean
