"""Incremental indexing of a folder (or files) of company documents.

A run walks the given paths, and for each supported file compares its SHA-256
with the manifest (:mod:`assistant.manifest`):

* unchanged files (same hash, all their chunks present in Chroma) are skipped;
* new and changed files are loaded, chunked, embedded and upserted; chunks the
  new version no longer has are deleted;
* files gone from a path that was indexed before are removed from the index;
  with ``prune``, so are indexed files outside the paths given;
* a file that cannot be read or parsed, whatever the exception, is reported with
  its reason and skipped; a file that was indexed before keeps its last good
  version. Errors of the store or the embedding backend stop the run.

A file's citation path (``source``) and so its folder audience are relative to
the outermost folder indexed before (with its subfolders) that holds the path
given, else to that path: re-indexing a subfolder or a single file of an indexed
folder changes neither.

Chunk ids depend only on source and content, every file is committed on its
own, and each run ends by deleting any chunk no file owns, so a run that was
interrupted is completed by the next one, with no duplicate left behind.

One run per collection at a time: a run holds the collection's indexing lock
(:mod:`assistant.indexlock`, shared by every process using the database), so a
second one waits and then finds the files the first indexed unchanged. Each
run is a row of ``kb_run`` whose counts are written after every batch; a row
still "running" when the next run holds the lock belongs to a process that
died, and that run marks it interrupted, with the counts it had recorded.

A run that changed the index also measures the corpus's abstention baseline
(:func:`measure_corpus_baseline`), recorded with the new version; a run over an
index that never had one measures it even if nothing changed.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from sqlalchemy import Engine
from sqlmodel import Session, select

from assistant.answerability import baseline_headings, measure_baseline
from assistant.chunking import Chunk, chunk_markdown, locate, passage_text, search_keys
from assistant.embeddings import normalised
from assistant.errors import AssistantError, UnreadableFile
from assistant.indexlock import IndexLock, index_lock
from assistant.loaders import LoadedDocument, kind_of, load_bytes
from assistant.manifest import IndexedFile, IngestRun, utcnow
from assistant.vectors import PARENT_KEY, PassageStore, drop_collection, key_id

log = logging.getLogger(__name__)

DEFAULT_AUDIENCE = "all"
Progress = Callable[[str, int, int], None]  # (source, done, total)


@dataclass(frozen=True)
class IngestOptions:
    max_file_bytes: int = 20_000_000
    chunk_tokens: int = 220
    chunk_overlap_tokens: int = 30
    #: Chunks embedded per call; files are committed one by one after it.
    embed_batch: int = 256
    #: Sentences in each search key of a passage (0: no search keys; see ``chunking.search_keys``).
    key_sentences: int = 2
    #: Share of a search key's vector read in its passage's context (0: the key embedded alone).
    #: See ``_vectors``.
    key_context: float = 0.75
    #: Audience of documents by folder (relative to the indexed folder), e.g. ``{"hr": ["hr"]}``;
    #: the longest matching folder wins, and a document's own ``audience`` front matter wins over both.
    folder_audiences: dict[str, list[str]] = field(default_factory=dict)

    def audience_for(self, source: str) -> list[str] | None:
        matches = [f for f in self.folder_audiences if source == f or source.startswith(f.rstrip("/") + "/")]
        return list(self.folder_audiences[max(matches, key=len)]) if matches else None

    def fingerprint(self, data: bytes, source: str) -> str:
        """What decides whether a file must be indexed again: its bytes and the settings that shape its chunks."""
        shaping = (
            f"{self.chunk_tokens}:{self.chunk_overlap_tokens}:{self.audience_for(source)}:keys-v2:{self.key_sentences}"
            f":{self.key_context}"
        ).encode()
        return hashlib.sha256(data + b"\0" + shaping).hexdigest()


@dataclass
class IngestReport:
    """What a run did, as shown by ``onboard ingest`` and stored as an :class:`IngestRun`."""

    run_id: int
    index_version: int
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    chunks_added: int = 0
    chunks_removed: int = 0
    #: Absolute paths removed because they were outside the paths given (``prune``, ``retire``).
    pruned: list[str] = field(default_factory=list)
    #: Absolute paths still indexed that are outside the paths given.
    outside: list[str] = field(default_factory=list)
    #: Earlier runs found still "running" (their process died) and marked interrupted by this one.
    interrupted_runs: list[int] = field(default_factory=list)


@dataclass
class _Pending:
    source: str
    path: str
    sha256: str
    size: int
    doc: LoadedDocument
    chunks: list[Chunk]
    previous: IndexedFile | None
    #: Search keys of each chunk, as embedded (with the chunk's headings).
    keys: list[list[str]] = field(default_factory=list)
    #: Where each search key sits in its chunk's embedded text (``None``: not found as such).
    key_spans: list[list[tuple[int, int] | None]] = field(default_factory=list)


def discover(path: Path, base: Path | None = None) -> Iterator[tuple[str, Path]]:
    """``(source, file)`` pairs under ``path``, sorted; sources are relative to ``base``
    (default: ``path`` itself, or a file's folder).

    Hidden files and folders are left out, and so are folders starting with ``_``:
    in Jekyll and similar sites those hold templates and layouts, not documents.
    """
    base = base or (path.parent if path.is_file() else path)
    if path.is_file():
        yield path.relative_to(base).as_posix(), path
        return
    for folder, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        for name in sorted(files):
            if not name.startswith("."):
                file = Path(folder) / name
                yield file.relative_to(base).as_posix(), file


def _within(path: str | Path, folder: Path) -> bool:
    return str(path) == str(folder) or str(path).startswith(str(folder).rstrip(os.sep) + os.sep)


def _citation_base(path: Path, known: dict) -> Path:
    """The folder sources under ``path`` are relative to: the outermost indexed folder holding it, else itself.

    An indexed folder is a file's absolute path minus its source, when that source
    has a folder in it (a file indexed on its own does not make its folder a root).
    """
    parts = {p: PurePosixPath(row.source).parts for p, row in known.items()}
    folders = {Path(*Path(p).parts[: -len(source)]) for p, source in parts.items() if len(source) > 1}
    holders = [f for f in folders if _within(path, f)]
    return min(holders, key=lambda f: len(f.parts)) if holders else (path.parent if path.is_file() else path)


def ingest(
    paths: Iterable[Path],
    *,
    store: PassageStore,
    embeddings,
    engine: Engine,
    options: IngestOptions = IngestOptions(),
    progress: Progress | None = None,
    prune: bool = False,
    retire: Iterable[Path] = (),
    lock: IndexLock | None = None,
    wait: bool = True,
    on_wait: Callable[[str], None] | None = None,
) -> IngestReport:
    """Bring the index in line with the files under ``paths``.

    With ``prune``, indexed files outside ``paths`` are removed; indexed files under
    a folder of ``retire`` (the sample handbook, say) are removed in any case.

    The run holds the collection's indexing lock (:mod:`assistant.indexlock`): it waits for
    another run of the collection to end (``on_wait`` is told), or with ``wait=False`` raises
    :class:`~assistant.indexlock.IndexBusy`. A caller that already holds it passes ``lock``.
    """
    roots = [Path(p).resolve() for p in paths]
    retire = [Path(p).resolve() for p in retire]
    for root in roots:
        if not root.exists():
            raise FileNotFoundError(f"{root} does not exist")
    if lock is None:
        with index_lock(engine, store.name, wait=wait, on_wait=on_wait) as held:
            return _locked_run(roots, store, embeddings, engine, options, progress, prune, retire, held)
    if lock.collection != store.name:
        raise ValueError(f"the lock held is the collection {lock.collection!r}'s, not {store.name!r}'s")
    return _locked_run(roots, store, embeddings, engine, options, progress, prune, retire, lock)


def _locked_run(roots, store, embeddings, engine, options, progress, prune, retire, lock: IndexLock) -> IngestReport:
    if lock.waited:
        store.reopen()  # another process wrote to the index meanwhile: a local Chroma client must load it again
    interrupted = close_dead_runs(engine, store.name)
    with Session(engine) as session:
        run = IngestRun(collection=store.name, roots=[str(r) for r in roots], embedding_model=store.model_id)
        session.add(run)
        session.commit()
        session.refresh(run)
        run_id = run.id
    report = IngestReport(run_id=run_id, index_version=store.version, interrupted_runs=interrupted)
    try:
        _ingest(roots, store, embeddings, engine, options, progress, report, prune, retire)
    except BaseException:
        _save(engine, run_id, report, "interrupted")
        raise
    _save(engine, run_id, report, "completed")
    return report


def close_dead_runs(engine: Engine, collection: str) -> list[int]:
    """Mark the runs of ``collection`` still "running" as interrupted, with what they had recorded; their ids.

    Called with the collection's indexing lock held: a run still "running" then is one whose
    process died (killed, out of memory, the machine stopped) before it could say so.
    """
    with Session(engine) as session:
        dead = session.exec(
            select(IngestRun).where(IngestRun.collection == collection, IngestRun.status == "running")
        ).all()
        for run in dead:
            run.status = "interrupted"
            session.add(run)
        session.commit()
        ids = [run.id for run in dead]
    for run_id in ids:
        log.warning("indexing run %d of %r stopped before it finished: marked interrupted", run_id, collection)
    return ids


def _ingest(roots, store, embeddings, engine, options, progress, report: IngestReport, prune, retire) -> None:
    present = store.ids()
    present_keys = store.key_ids()
    with Session(engine) as session:
        known = {row.path: row for row in session.exec(select(IndexedFile).where(IndexedFile.collection == store.name))}
    files = {str(file): source for root in roots for source, file in discover(root, _citation_base(root, known))}
    seen: set[str] = set()
    pending: list[_Pending] = []
    for done, (path, source) in enumerate(files.items(), start=1):
        if progress:
            progress(source, done, len(files))
        if kind_of(Path(path)) is None:
            report.skipped.append(source)
            continue
        seen.add(path)
        item = _prepare(source, Path(path), known.get(path), present, options, embeddings, report)
        if item is None:
            continue
        pending.append(item)
        if sum(len(p.chunks) + sum(map(len, p.keys)) for p in pending) >= options.embed_batch:
            _flush(pending, store, embeddings, engine, report, present_keys, options.key_context)
            _save(engine, report.run_id, report)
            pending = []
    _flush(pending, store, embeddings, engine, report, present_keys, options.key_context)
    for root in roots:
        _remove_missing(root, known, seen, store, engine, report, present_keys)
    outside = [row for path, row in known.items() if not any(_within(path, root) for root in roots)]
    dropped = [row for row in outside if prune or any(_within(row.path, folder) for folder in retire)]
    _remove(dropped, store, engine, report, present_keys)
    _save(engine, report.run_id, report)
    report.pruned = sorted(row.path for row in dropped)
    report.outside = sorted({row.path for row in outside} - set(report.pruned))
    _collect_garbage(store, engine, report, present_keys)
    changed = report.added or report.changed or report.removed or report.chunks_removed
    if changed or (not store.baseline_measured() and store.count()):  # or indexed before baselines existed
        report.index_version = store.bump_version(baseline=measure_corpus_baseline(store, embeddings))


def measure_corpus_baseline(store: PassageStore, embeddings) -> float | None:
    """The corpus's abstention baseline (see :mod:`assistant.answerability`), as the index holds it now.

    Each heading is embedded as a question and compared with its nearest passages and search keys;
    the best similarity among those of another file counts. About 150 searches: a second or two with
    the local model, whatever the corpus's size.
    """
    stored = store.collection.get(include=["metadatas"])
    headings = baseline_headings(zip(stored["ids"], stored["metadatas"], strict=True))
    collections = [(c, min(n, count)) for c, n in ((store.collection, 10), (store.keys, 20)) if (count := c.count())]

    def best_elsewhere(heading: str, source: str) -> float | None:
        vector = embeddings.embed_query(heading)
        best = None
        for collection, n in collections:
            found = collection.query(query_embeddings=[vector], n_results=n, include=["metadatas", "distances"])
            for meta, distance in zip(found["metadatas"][0], found["distances"][0], strict=True):
                if (meta or {}).get("source") != source:
                    best = max(best, 1.0 - float(distance)) if best is not None else 1.0 - float(distance)
        return best

    baseline = measure_baseline(headings, best_elsewhere)
    log.info("abstention baseline of %r: %s (from %d headings)", store.name, baseline, len(headings))
    return baseline


def _prepare(source, file: Path, previous, present, options, embeddings, report) -> _Pending | None:
    try:
        size = file.stat().st_size
        if size > options.max_file_bytes:
            raise UnreadableFile(
                f"too large ({size / 1e6:.1f} MB; the limit is {options.max_file_bytes / 1e6:.1f} MB)"
            )
        data = file.read_bytes()
        sha = options.fingerprint(data, source)
        if (
            previous is not None
            and (previous.sha256, previous.source) == (sha, source)
            and set(previous.chunk_ids) <= present
        ):
            report.unchanged += 1
            return None
        doc = load_bytes(data, name=file.name, max_bytes=options.max_file_bytes)
        chunks = chunk_markdown(
            doc.text,
            source=str(file),
            title=doc.title,
            count_tokens=embeddings.count_tokens,
            max_tokens=options.chunk_tokens,
            overlap_tokens=options.chunk_overlap_tokens,
        )
        if not chunks:
            raise UnreadableFile("no text to index")
    except (UnreadableFile, OSError) as exc:
        reason = str(exc) if isinstance(exc, UnreadableFile) else f"cannot read ({exc.strerror or exc})"
        report.failed[source] = reason
        log.info("skipped %s: %s", source, reason)
        return None
    except AssistantError:
        raise  # the embedding backend failed, not this file
    except Exception as exc:  # a parser bug on a hostile file fails that file, not the run
        report.failed[source] = f"could not be read ({type(exc).__name__}: {exc})"
        log.warning("skipped %s: unexpected error while reading it", source, exc_info=True)
        return None
    doc.metadata.setdefault("audience", options.audience_for(source) or [DEFAULT_AUDIENCE])
    keys, key_spans = [], []
    for chunk in chunks:
        pieces = search_keys(chunk.text, options.key_sentences)
        text = chunk.embedding_text(doc.title)
        keys.append([passage_text(doc.title, chunk.section, piece) for piece in pieces])
        key_spans.append([locate(text, piece, len(text) - len(chunk.text)) for piece in pieces])
    return _Pending(source, str(file), sha, size, doc, chunks, previous, keys, key_spans)


def _flush(pending: list[_Pending], store: PassageStore, embeddings, engine: Engine, report: IngestReport,
           present_keys: dict[str, set[str]], key_context: float = 0.0) -> None:
    """Embed and store the pending files' chunks and keys, then record each file in the manifest.

    ``present_keys`` (key ids by chunk, as stored when the run began) tells which keys of a kept
    chunk are stale: another ``key_sentences``, or a run interrupted before its manifest commit.
    """
    if not pending:
        return
    chunk_vectors, vectors = _vectors(pending, embeddings, key_context)
    for item, vecs in zip(pending, chunk_vectors, strict=True):
        metadatas = [_metadata(item, c) for c in item.chunks]
        store.upsert(ids=[c.id for c in item.chunks], embeddings=vecs, documents=[c.text for c in item.chunks],
                     metadatas=metadatas)
        key_ids, key_vectors, key_metadatas = [], [], []
        for chunk, meta, keys in zip(item.chunks, metadatas, item.keys, strict=True):
            for n, _ in enumerate(keys):
                key_ids.append(key_id(chunk.id, n))
                key_vectors.append(next(vectors))
                key_metadatas.append({**meta, PARENT_KEY: chunk.id})
        stale_keys = sorted(set(_keys_of([c.id for c in item.chunks], present_keys)) - set(key_ids))
        if stale_keys:
            store.delete_key_ids(stale_keys)
        if key_ids:
            store.upsert_keys(ids=key_ids, embeddings=key_vectors, metadatas=key_metadatas)
        new_ids = [c.id for c in item.chunks]
        old_ids = set(item.previous.chunk_ids) if item.previous else set()
        with Session(engine) as session:
            row = session.exec(
                select(IndexedFile).where(IndexedFile.collection == store.name, IndexedFile.path == item.path)
            ).first() or IndexedFile(collection=store.name, path=item.path)
            row.source, row.sha256, row.size = item.source, item.sha256, item.size
            row.title, row.kind, row.chunk_ids = item.doc.title, item.doc.kind, new_ids
            row.indexed_at = utcnow()
            session.add(row)
            session.commit()
        stale = sorted(old_ids - set(new_ids))
        store.delete(stale, _keys_of(stale, present_keys))
        report.chunks_added += len(set(new_ids) - old_ids)
        report.chunks_removed += len(stale)
        (report.changed if item.previous else report.added).append(item.source)


def _vectors(pending: list[_Pending], embeddings, key_context: float) -> tuple[list[list], Iterator]:
    """The pending chunks' vectors, by file, and an iterator over their search keys' vectors, in order.

    A key embedded alone loses what its passage says around it: "They are available 6am-9pm ET."
    does not say who "they" are, a list item not what its list is about. With a local model, a
    key's vector is ``key_context`` of its span read inside the whole passage (the mean of the
    passage's own token states over it, :meth:`~assistant.embeddings.OnnxEmbeddings.embed_in_context`)
    and the rest of the key embedded alone, normalised. The passage's own run gives the first part
    for free. Measured on the development handbooks, dense search with keys (recall@5, recall@1,
    AUC of the top similarity for answerable against unanswerable questions), keys alone and with
    0.25 / 0.5 / 0.75 / 1 in context: 18F recall@5 0.9375, 0.9375, 0.9375, 0.95, 0.925; PostHog
    0.829, 0.857, 0.886, 0.886, 0.886. Leave-one-handbook-out (best recall@5, then recall@3, on
    one handbook): fitted on 18F 0.75, which gives PostHog 0.886; fitted on PostHog 0.75 (ties
    with 0.5 and 1 broken by recall@3), which gives 18F 0.95. With the whole retrieval (hybrid, the
    default settings, ``onboard eval``), keys alone then 0.75 in context: PostHog recall@5 0.871 to
    0.929, MRR 0.772 to 0.796; 18F recall@5 0.9625 both, recall@1 0.775 to 0.825, MRR 0.853 to 0.879.
    Indexing costs the same: the passages' runs were made anyway. Embedding backends without token
    states (an OpenAI-compatible API) embed keys alone, as before.
    """
    texts = [c.embedding_text(p.doc.title) for p in pending for c in p.chunks]
    keys = [key for p in pending for chunk_keys in p.keys for key in chunk_keys]
    in_context = getattr(embeddings, "embed_in_context", None)
    if key_context <= 0 or in_context is None:
        flat = iter(embeddings.embed_documents(texts + keys))
        return [[next(flat) for _ in item.chunks] for item in pending], flat
    spans = [spans for p in pending for spans in p.key_spans]
    # One queue of runs: the passages (read for their keys' spans) and the keys alone.
    pooled, span_vectors = in_context(texts + keys, spans + [[] for _ in keys])
    passage_vectors, alone = pooled[: len(texts)], pooled[len(texts) :]
    contextual = [span for chunk_spans in span_vectors[: len(texts)] for span in chunk_spans]
    key_vectors = []
    for plain, read_in_context in zip(alone, contextual, strict=True):
        if read_in_context is not None:
            plain = normalised(key_context * read_in_context + (1 - key_context) * plain)
        key_vectors.append(plain.tolist())
    rows = iter(passage_vectors.tolist())
    return [[next(rows) for _ in item.chunks] for item in pending], iter(key_vectors)


def _metadata(item: _Pending, chunk: Chunk) -> dict:
    meta = {
        "source": item.source,
        "title": item.doc.title,
        "section": chunk.section,
        "chunk": chunk.index,
        "kind": item.doc.kind,
        "audience": item.doc.metadata["audience"],
    }
    if "url" in item.doc.metadata:
        meta["url"] = item.doc.metadata["url"]
    return meta


def _keys_of(chunk_ids, present_keys: dict[str, set[str]]) -> list[str]:
    """The ids of these chunks' search keys, as listed when the run began.

    Deleting by id spares Chroma a scan of every key's metadata (about 0.1 s per file at 250,000
    keys). Chunks removed in a run were stored before it began, so their keys are listed; a key
    missed all the same is collected at the end of the run (``_collect_garbage``).
    """
    return sorted(key for chunk in chunk_ids for key in present_keys.get(chunk, ()))


def _remove_missing(root: Path, known: dict, seen: set[str], store, engine, report,
                    present_keys: dict[str, set[str]]) -> None:
    """Files indexed before from inside ``root`` that are no longer there."""
    _remove([row for path, row in known.items() if _within(path, root) and path not in seen], store, engine, report,
            present_keys)


def _remove(rows: list[IndexedFile], store, engine, report, present_keys: dict[str, set[str]]) -> None:
    """Remove these files from Chroma and the manifest."""
    for row in rows:
        store.delete(list(row.chunk_ids), _keys_of(row.chunk_ids, present_keys))
        with Session(engine) as session:
            session.delete(session.get(IndexedFile, row.id))
            session.commit()
        report.removed.append(row.source)
        report.chunks_removed += len(row.chunk_ids)


def forget(engine: Engine, collection: str) -> None:
    """Drop the manifest of ``collection`` (with ``ingest --rebuild``, after dropping the vectors)."""
    with Session(engine) as session:
        for row in session.exec(select(IndexedFile).where(IndexedFile.collection == collection)):
            session.delete(row)
        session.commit()


def rebuilt_store(client, engine: Engine, name: str, model_id: str) -> PassageStore:
    """An empty collection ``name`` to index from scratch: the old vectors and manifest are dropped.

    Its versions go on from the dropped collection's, so a running app sees a new
    version and reloads (see :func:`assistant.vectors.drop_collection`).
    """
    previous_version = drop_collection(client, name)
    forget(engine, name)
    store = PassageStore(client, name, model_id)
    store.continue_from(previous_version)
    return store


def _collect_garbage(store: PassageStore, engine: Engine, report: IngestReport,
                     present_keys: dict[str, set[str]]) -> None:
    """Delete chunks no file owns, and search keys of chunks that are gone: leftovers of an interrupted run."""
    with Session(engine) as session:
        owned = {cid for ids in session.exec(select(IndexedFile.chunk_ids).where(IndexedFile.collection == store.name)) for cid in ids}
    orphans = sorted(store.ids() - owned)
    if orphans:
        store.delete(orphans, _keys_of(orphans, present_keys))
        report.chunks_removed += len(orphans)
        log.info("removed %d orphaned chunks", len(orphans))
    stray = {chunk: keys for chunk, keys in store.key_ids().items() if chunk not in owned}
    if stray:
        store.delete_key_ids(sorted(key for keys in stray.values() for key in keys))
        log.info("removed the search keys of %d chunks that are gone", len(stray))


def _save(engine: Engine, run_id: int, report: IngestReport, status: str | None = None) -> None:
    """Record what the run has done so far (after each batch: a run that dies keeps its counts), and its end."""
    with Session(engine) as session:
        run = session.get(IngestRun, run_id)
        if status is not None:
            run.status = status
            run.finished_at = utcnow()
        run.added, run.changed, run.removed = len(report.added), len(report.changed), len(report.removed)
        run.unchanged, run.skipped, run.failed = report.unchanged, len(report.skipped), len(report.failed)
        run.chunks_added, run.chunks_removed = report.chunks_added, report.chunks_removed
        run.index_version = report.index_version
        run.failures = [{"source": s, "reason": r} for s, r in sorted(report.failed.items())]
        session.add(run)
        session.commit()
