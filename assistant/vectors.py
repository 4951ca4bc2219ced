"""The Chroma collection that holds the passages, and the facts recorded with it.

The collection's metadata records which embedding model built it and the index
version (bumped by every ingestion run that changed something). Opening an
index with a different model than the one configured is refused: vectors of two
models cannot be compared.

It also records the corpus's abstention baseline (see
:mod:`assistant.answerability`), written with the version it was measured for in
the same update, so an app that sees a new version reads the baseline of that
version: no second store is needed, and a Chroma server shares it with every
process.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field

from assistant.errors import IndexMismatch

MODEL_KEY = "embedding_model"
VERSION_KEY = "index_version"
#: The corpus baseline for abstention, and the index version it was measured for (absent: never measured;
#: the version without the baseline: measured, but the corpus has too few headings to tell).
BASELINE_KEY = "abstention_baseline"
BASELINE_VERSION_KEY = "abstention_baseline_of"
#: Metadata of a search key naming the passage it finds (see :func:`assistant.chunking.search_keys`).
PARENT_KEY = "of"


def key_id(passage_id: str, n: int) -> str:
    """The id of a passage's ``n``-th search key."""
    return f"{passage_id}:{n}"


def key_passage(key: str) -> str:
    """The id of the passage a search key points at, read from the key's id (passage ids hold no ``:``)."""
    return key.rpartition(":")[0]


def keys_name(name: str) -> str:
    """The collection holding the search keys of the passages in collection ``name``."""
    return f"{name}-keys"


def _not_a_keys_name(name: str) -> str:
    if name.endswith("-keys"):
        raise ValueError(f"{name!r} ends in '-keys', which names the search keys of collection {name[:-5]!r}")
    return name


#: A passages collection's name, as settings accept it.
CollectionName = Annotated[str, Field(min_length=3, max_length=63), AfterValidator(_not_a_keys_name)]


@dataclass(frozen=True)
class ChromaLocation:
    """A local folder or a server URL (``http://host:port``)."""

    path: Path | None = None
    url: str | None = None
    token: str | None = None


def make_client(location: ChromaLocation):
    """A Chroma client for a persistent folder, or for a server when a URL is given."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if location.url:
        parts = urlsplit(location.url)
        headers = {"Authorization": f"Bearer {location.token}"} if location.token else None
        return chromadb.HttpClient(
            host=parts.hostname or "localhost",
            port=parts.port or (443 if parts.scheme == "https" else 8000),
            ssl=parts.scheme == "https",
            headers=headers,
            settings=chroma_settings,
        )
    assert location.path is not None
    for folder in reversed([f for f in (location.path, *location.path.parents) if not f.exists()]):
        folder.mkdir(mode=0o700, exist_ok=True)  # private at each level made here (mkdir -p: 0755)
    # Chroma creates its schema when a process first opens a folder, and two processes doing so at once collide
    # ("table collections already exists": an app and a worker started together on a new data folder). Opening is
    # serialised across processes by a file lock beside the folder (released by the kernel if the holder dies).
    from filelock import FileLock

    with FileLock(location.path.with_name(location.path.name + ".open.lock"), thread_local=False):
        return chromadb.PersistentClient(path=str(location.path), settings=chroma_settings)


class PassageStore:
    """One Chroma collection of passages, bound to the embedding model that built it, and one of their search keys.

    A search key is a smaller piece of a passage (a sentence window, a table
    row) with its own vector and the passage's metadata; it only ever points
    at its passage (``of``), which is what retrieval returns.
    """

    def __init__(self, client, name: str, model_id: str) -> None:
        self.client = client
        self.name = name
        self.model_id = model_id
        #: The passages and keys collections, replaced together (one assignment) when reopened.
        self._collections = (self._open(name), self._open(keys_name(name)))

    @property
    def collection(self):
        """The passages collection."""
        return self._collections[0]

    @property
    def keys(self):
        """The search keys collection."""
        return self._collections[1]

    def _open(self, name: str):
        collection = self.client.get_or_create_collection(
            name,
            configuration={"hnsw": {"space": "cosine"}},
            metadata={MODEL_KEY: self.model_id, VERSION_KEY: 0},
            embedding_function=None,
        )
        recorded = (collection.metadata or {}).get(MODEL_KEY)
        if recorded != self.model_id:
            raise IndexMismatch(
                f"The index {self.name!r} was built with the embedding model {recorded!r}, "
                f"but {self.model_id!r} is configured. Re-index with `onboard ingest --rebuild PATH...` "
                "or configure the original model."
            )
        return collection

    @property
    def version(self) -> int:
        """The index version as stored now (read again each time: another process may have indexed)."""
        passages = self.client.get_collection(self.name, embedding_function=None)
        if passages.id != self.collection.id:  # rebuilt by another process: take both new collections
            return self.current()[2]
        return int((passages.metadata or {}).get(VERSION_KEY, 0))

    def current(self) -> tuple[object, object, int]:
        """The passages and keys collections as stored now, and the index version: one consistent view.

        Fetched again each time: another process may have rebuilt (dropped and re-created) both
        collections. The handles this store holds are replaced in one assignment, so a concurrent
        reader never pairs one index's passages with another's keys; readers that need a stable
        view across several calls keep the tuple this returns (see ``KnowledgeBase``).
        """
        passages = self.client.get_collection(self.name, embedding_function=None)
        keys = self._open(keys_name(self.name))
        self._collections = (passages, keys)
        return passages, keys, int((passages.metadata or {}).get(VERSION_KEY, 0))

    def reopen(self) -> bool:
        """See what another process (``onboard ingest``) wrote to a local Chroma folder; whether it reopened.

        A local client keeps the vector index in memory: it sees the new rows
        and metadata but searches the old vectors (deleted passages included)
        until a new client loads the folder again. Chroma shares one client per
        folder in a process, so that cache is cleared first; clients already
        handed out keep working. A server needs nothing of the kind.
        """
        settings = self.client.get_settings()
        if not settings.is_persistent or not settings.persist_directory:
            return False
        type(self.client).clear_system_cache()
        self.client = make_client(ChromaLocation(path=Path(settings.persist_directory)))
        self._collections = (self.client.get_collection(self.name, embedding_function=None),
                             self._open(keys_name(self.name)))
        return True

    def continue_from(self, version: int) -> None:
        """Number this (new, rebuilt) collection's versions on from an earlier one's."""
        if version > self.version:
            self._write_metadata({VERSION_KEY: version})

    def bump_version(self, *, baseline: float | None | bool = False) -> int:
        """The next index version, recorded with its abstention ``baseline`` when one is given (``None``:
        measured, none found); ``False`` keeps what is recorded."""
        version = self.version + 1
        updates: dict = {VERSION_KEY: version}
        drop: tuple[str, ...] = ()
        if baseline is not False:
            updates[BASELINE_VERSION_KEY] = version
            if baseline is None:
                drop = (BASELINE_KEY,)
            else:
                updates[BASELINE_KEY] = float(baseline)
        self._write_metadata(updates, drop)
        return version

    def baseline_measured(self) -> bool:
        """Whether the abstention baseline was ever measured for this collection (even if none was found)."""
        metadata = self.client.get_collection(self.name, embedding_function=None).metadata or {}
        return BASELINE_VERSION_KEY in metadata

    def _write_metadata(self, updates: dict, drop: tuple[str, ...] = ()) -> None:
        """Chroma replaces a collection's metadata as a whole: keep what is recorded, change ``updates``."""
        current = self.client.get_collection(self.name, embedding_function=None).metadata or {}
        kept = {k: v for k, v in current.items() if not k.startswith("hnsw:") and k not in drop}
        self.collection.modify(metadata={**kept, MODEL_KEY: self.model_id, **updates})

    def ids(self) -> set[str]:
        return set(self.collection.get(include=[])["ids"])

    def count(self) -> int:
        return self.collection.count()

    def upsert(self, *, ids: list[str], embeddings, documents: list[str], metadatas: list[dict]) -> None:
        step = 2000  # stay well under Chroma's maximum batch size
        for start in range(0, len(ids), step):
            end = start + step
            self.collection.upsert(
                ids=ids[start:end],
                embeddings=embeddings[start:end],
                documents=documents[start:end],
                metadatas=metadatas[start:end],
            )

    def upsert_keys(self, *, ids: list[str], embeddings, metadatas: list[dict]) -> None:
        """Search keys; each metadata names its passage under ``of``."""
        step = 2000
        for start in range(0, len(ids), step):
            end = start + step
            self.keys.upsert(ids=ids[start:end], embeddings=embeddings[start:end], metadatas=metadatas[start:end])

    def delete(self, ids: list[str], key_ids: list[str] | None = None) -> None:
        """Passages, with their search keys: ``key_ids`` if the caller knows them, else found by metadata.

        Finding them by metadata scans every key (about 0.1 s per call at 250,000 keys); by id it
        does not.
        """
        if key_ids is None:
            self.delete_keys(ids)
        else:
            self.delete_key_ids(key_ids)
        step = 2000
        for start in range(0, len(ids), step):
            self.collection.delete(ids=ids[start : start + step])

    def delete_keys(self, ids: list[str]) -> None:
        """The search keys of these passages."""
        step = 500
        for start in range(0, len(ids), step):
            self.keys.delete(where={PARENT_KEY: {"$in": ids[start : start + step]}})

    def delete_key_ids(self, key_ids: list[str]) -> None:
        """Search keys by their own ids."""
        step = 2000
        for start in range(0, len(key_ids), step):
            self.keys.delete(ids=key_ids[start : start + step])

    def key_ids(self) -> dict[str, set[str]]:
        """The stored search keys' ids by the passage they point at (some may be gone: leftovers of a crash).

        Read from the keys' ids (``<passage id>:<n>``), which costs far less than their metadata
        (about 1 s at 250,000 keys).
        """
        keys: dict[str, set[str]] = {}
        for key in self.keys.get(include=[])["ids"]:
            keys.setdefault(key_passage(key), set()).add(key)
        return keys


def baseline_of(collection) -> float | None:
    """The abstention baseline recorded with a passages collection (``None``: not measured, or too few headings)."""
    value = (collection.metadata or {}).get(BASELINE_KEY)
    return float(value) if isinstance(value, int | float) else None


def drop_collection(client, name: str) -> int:
    """Remove a collection and its search keys if they exist (used by ``ingest --rebuild``); returns its last
    index version (or 0).

    The rebuilt collection continues from that version (:meth:`PassageStore.continue_from`), so a running
    app sees a new version and reloads, instead of mistaking the rebuilt index for the one it has.
    """
    existing = {getattr(c, "name", c) for c in client.list_collections()}
    version = 0
    if name in existing:  # the passages first: keys left by a crash in between are then stray, and collected
        version = int((client.get_collection(name, embedding_function=None).metadata or {}).get(VERSION_KEY, 0))
        client.delete_collection(name)
    if keys_name(name) in existing:
        client.delete_collection(keys_name(name))
    return version
