"""The support bot: answers questions about the app itself, from the project's own documentation.

It is the same machinery as the handbook assistant (:class:`~assistant.answering.Assistant`
over a :class:`~assistant.retrieval.KnowledgeBase`) pointed at a collection of
its own, filled from ``docs/`` only. The documentation is indexed at start and
re-indexed (incrementally: only changed files) whenever a file in the folder
changes, checked at most every few seconds (one process at a time: see
:mod:`assistant.indexlock`). Admin documentation carries
``audience: admin`` in its front matter and is filtered out for everyone else,
exactly like handbook pages with an audience. When the documentation does not
answer, the bot says so and points to "Report a problem". No Streamlit here.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from pydantic import BaseModel, Field
from sqlalchemy import Engine

from assistant.answering import Assistant
from assistant.chat_model import make_chat_model
from assistant.errors import IndexMismatch
from assistant.indexlock import IndexBusy, index_lock
from assistant.ingest import IngestOptions, IngestReport, ingest, rebuilt_store
from assistant.retrieval import KnowledgeBase
from assistant.vectors import CollectionName, PassageStore

log = logging.getLogger(__name__)

DOCS_DIR = Path(__file__).resolve().parent.parent / "docs"
#: Document types the support bot indexes.
DOC_SUFFIXES = (".md", ".markdown", ".txt")


class SupportSettings(BaseModel):
    """The in-app help (``ONBOARD_SUPPORT__*``)."""

    enabled: bool = True
    #: The documentation it answers from; default: the project's ``docs/`` folder.
    docs_dir: Path = DOCS_DIR
    collection: CollectionName = "support"
    #: How often (seconds) the folder is checked for changed documents.
    check_every_s: float = Field(5.0, ge=0)
    #: Where the support bot sends people when the documentation has no answer.
    contact: str = "the team that runs this app: use “Report a problem” below"
    #: Passages per answer (the documentation is small and its sections short).
    k: int = Field(4, ge=1, le=20)
    #: Abstain below this similarity. Calibrated on ``eval/support_qa.jsonl`` with
    #: ``onboard eval --corpus docs --k 4 --calibrate 0.92``: answers 94% and abstains on all 5 off-topic
    #: questions (before search keys: 0.357, 4 of 5).
    min_similarity: float = Field(0.403, ge=0, le=1)


def fingerprint(folder: Path) -> tuple:
    """What changes when a document is added, edited, renamed or removed (names, sizes, modification times)."""
    if not folder.is_dir():
        return ()
    return tuple(sorted(
        (str(path.relative_to(folder)), stat.st_size, stat.st_mtime_ns)
        for path in folder.rglob("*")
        if path.suffix.lower() in DOC_SUFFIXES and path.is_file() and (stat := path.stat())
    ))


class SupportDesk:
    """The support bot's knowledge base and assistant, kept in step with the documentation folder."""

    def __init__(self, *, settings, embeddings, client, engine: Engine, ingest_options=None) -> None:
        support: SupportSettings = settings.support
        self.folder = Path(support.docs_dir)
        self.check_every_s = support.check_every_s
        self.engine = engine
        self.embeddings = embeddings
        self.ingest_options = ingest_options or IngestOptions()
        self.store = self._open_store(client, support.collection, embeddings.model_id)
        abstention = settings.retrieval.abstention.model_copy(update={"min_similarity": support.min_similarity})
        retrieval = settings.retrieval.model_copy(update={"k": support.k, "abstention": abstention})
        self.knowledge_base = KnowledgeBase(self.store, embeddings, retrieval)
        config = settings.answer.model_copy(update={"contact": support.contact, "source_name": "documentation",
                                                   "answer_prompt": "support-answer"})
        chat_model = make_chat_model(config) if config.mode == "llm" else None
        self.assistant = Assistant(knowledge_base=self.knowledge_base, config=config, chat_model=chat_model)
        self._lock = threading.Lock()
        self._seen: tuple | None = None
        self._checked = 0.0
        self.last_report: IngestReport | None = None

    def _open_store(self, client, name: str, model_id: str) -> PassageStore:
        """The help index; rebuilt when it was made with another embedding model (the docs are the app's own)."""
        try:
            return PassageStore(client, name, model_id)
        except IndexMismatch as exc:
            with index_lock(self.engine, name):
                try:
                    return PassageStore(client, name, model_id)  # another process rebuilt it while this one waited
                except IndexMismatch:
                    log.info("re-indexing the support documentation with %s: %s", model_id, exc)
                    return rebuilt_store(client, self.engine, name, model_id)

    def refresh(self, *, force: bool = False) -> IngestReport | None:
        """Re-index the documentation if a file changed since the last look; the report, or ``None``.

        When another process is indexing it, ``force`` (the start) waits for that run and then finds
        its files unchanged; a page's look does not wait, and looks again after ``check_every_s``.
        """
        now = time.monotonic()
        if not force and now - self._checked < self.check_every_s:
            return None
        with self._lock:
            self._checked = time.monotonic()
            current = fingerprint(self.folder)
            if not force and current == self._seen:
                return None
            if not current:
                log.warning("the support documentation folder %s is missing or empty", self.folder)
            try:
                report = ingest([self.folder], store=self.store, embeddings=self.embeddings, engine=self.engine,
                                options=self.ingest_options, wait=force) if current else None
            except IndexBusy:
                log.info("the support documentation is being indexed by another process; looking again later")
                return None
            self._seen, self.last_report = current, report
            self.knowledge_base.refresh(force=True)  # the keyword index follows at once, not after refresh_s
            if report is not None:
                log.info("support documentation indexed from %s: %s", self.folder, report)
            return report
