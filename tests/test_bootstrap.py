"""The app's first start indexes the sample handbook once, and completes a first indexing that was cut off.

(Two processes starting together: ``test_cross_process.py``.)
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from helpers_kb import runs

from assistant.ingest import ingest
from onboard import factories
from onboard.settings import Settings


class DiesAfterFirstBatch:
    """The configured embeddings, until the second batch: then the process "dies" (KeyboardInterrupt)."""

    def __init__(self, inner) -> None:
        self.inner, self.model_id, self.count_tokens = inner, inner.model_id, inner.count_tokens
        self.calls = 0

    def embed_documents(self, texts):
        self.calls += 1
        if self.calls > 1:
            raise KeyboardInterrupt
        return self.inner.embed_documents(texts)


@pytest.fixture
def app_settings(api_embeddings, database_url, engine, monkeypatch):
    monkeypatch.setenv("ONBOARD_DATABASE_URL", database_url)
    return Settings()


def test_a_first_indexing_cut_off_is_completed_by_the_next_start(app_settings, engine):
    embeddings = factories.make_embeddings(app_settings)
    store = factories.make_store(app_settings, embeddings)
    with pytest.raises(KeyboardInterrupt):  # the first start, stopped after its first batch
        ingest([factories.SAMPLE_HANDBOOK], store=store, embeddings=DiesAfterFirstBatch(embeddings), engine=engine,
               options=replace(factories.ingest_options(app_settings), embed_batch=1))
    assert 0 < store.count()

    factories.bootstrap_knowledge_base(app_settings, warm=False)

    cut, completed = runs(engine, store.name)
    assert (cut.status, completed.status) == ("interrupted", "completed")
    files = len(list(factories.SAMPLE_HANDBOOK.rglob("*.md")))
    assert cut.added + completed.added == files and completed.unchanged == cut.added

    factories.bootstrap_knowledge_base(app_settings, warm=False)  # complete now: not indexed again
    assert len(runs(engine, store.name)) == 2
