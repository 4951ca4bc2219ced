"""Shared fixtures: every test gets its own data folder, database and Chroma.

``TEST_DATABASE_URL`` (set by ``.ci/run``) makes the database fixtures run on
PostgreSQL as well as on SQLite.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, text

from assistant.vectors import ChromaLocation, PassageStore, make_client
from onboard import db
from onboard.settings import Settings

FIXTURES = Path(__file__).parent / "fixtures"


class FakeEmbeddings:
    """Deterministic bag-of-words hashing embeddings: fast, offline, and close for shared words."""

    model_id = "fake:hashing-64"
    dimension = 64

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def _vector(self, text: str) -> list[float]:
        vec = np.zeros(self.dimension, dtype=np.float32)
        for word in re.findall(r"\w+", text.lower()):
            vec[int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dimension] += 1.0
        norm = np.linalg.norm(vec)
        return (vec / norm if norm else vec + 1 / np.sqrt(self.dimension)).tolist()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        return [self._vector(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vector(text)


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    """One folder for the quantised local model, shared by the whole run."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch, model_cache):
    """No test reads the developer's .env or data folder."""
    for key in list(os.environ):
        if key.startswith("ONBOARD_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ONBOARD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ONBOARD_EMBEDDING__CACHE_DIR", str(model_cache))


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture(scope="session")
def local_embeddings(model_cache):
    """The real default embedding model (built once per run)."""
    from onboard.factories import make_embeddings

    return make_embeddings(Settings(data_dir=model_cache.parent, embedding={"cache_dir": model_cache}))


def _postgres_url() -> str | None:
    return os.environ.get("TEST_DATABASE_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """A fresh, empty database: a SQLite file, and a new PostgreSQL database when available."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    base = _postgres_url()
    if not base:
        pytest.skip("TEST_DATABASE_URL not set")
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield base.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def engine(database_url):
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_engine(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'kb.db'}")
    db.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def api_embeddings(monkeypatch):
    """A real local OpenAI-compatible embeddings endpoint (hashing vectors), configured as the app's embeddings."""
    from helpers_embedding_server import embedding_server

    with embedding_server() as server:
        monkeypatch.setenv("ONBOARD_EMBEDDING__BACKEND", "openai")
        monkeypatch.setenv("ONBOARD_EMBEDDING__BASE_URL", server.base_url)
        monkeypatch.setenv("ONBOARD_EMBEDDING__MODEL", "hashing-test")
        yield server


@pytest.fixture
def fake_embeddings() -> FakeEmbeddings:
    return FakeEmbeddings()


@pytest.fixture
def chroma_client(tmp_path):
    return make_client(ChromaLocation(path=tmp_path / "chroma"))


@pytest.fixture
def store(chroma_client, fake_embeddings) -> PassageStore:
    return PassageStore(chroma_client, f"test-{uuid.uuid4().hex[:8]}", fake_embeddings.model_id)
