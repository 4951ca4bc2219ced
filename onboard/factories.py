"""Build the heavy resources from the settings.

Each factory takes the :class:`~onboard.settings.Settings` and returns a ready
object; callers cache them (the CLI holds them for one command, the Streamlit
pages through ``st.cache_resource``). Nothing here runs on import.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import replace
from pathlib import Path

from sqlalchemy import Engine

from assistant.embeddings import LOCAL_MODELS, ApiEmbeddings, OnnxEmbeddings
from assistant.errors import AssistantError
from assistant.ingest import IngestOptions
from assistant.retrieval import KnowledgeBase
from assistant.vectors import ChromaLocation, PassageStore, make_client
from onboard import db
from onboard.settings import Settings

SAMPLE_HANDBOOK = Path(__file__).parent / "sample_handbook"


def make_embeddings(settings: Settings):
    cfg = settings.embedding
    if cfg.backend == "openai":
        return ApiEmbeddings(
            base_url=cfg.base_url,
            model=cfg.model,
            api_key=cfg.api_key.get_secret_value() if cfg.api_key else None,
            timeout_s=cfg.timeout_s,
            batch_size=cfg.batch_size,
        )
    if cfg.model not in LOCAL_MODELS:
        known = ", ".join(sorted(LOCAL_MODELS))
        raise AssistantError(f"Unknown local embedding model {cfg.model!r}; choose one of: {known}")
    cache_dir = db.private_dir(cfg.cache_dir) if cfg.cache_dir else None  # on a first start, the data folder too
    return OnnxEmbeddings(LOCAL_MODELS[cfg.model], threads=cfg.threads, cache_dir=cache_dir)


def chroma_location(settings: Settings) -> ChromaLocation:
    token = settings.chroma_token.get_secret_value() if settings.chroma_token else None
    return ChromaLocation(path=settings.chroma_path, url=settings.chroma_url, token=token)


def make_store(settings: Settings, embeddings, client=None) -> PassageStore:
    client = client or make_client(chroma_location(settings))
    return PassageStore(client, settings.collection, embeddings.model_id)


def make_knowledge_base(settings: Settings, embeddings=None, store: PassageStore | None = None) -> KnowledgeBase:
    embeddings = embeddings or make_embeddings(settings)
    store = store or make_store(settings, embeddings)
    return KnowledgeBase(store, embeddings, settings.retrieval)


def bootstrap_knowledge_base(settings: Settings, on_first_index=None, *, warm: bool = True,
                             on_wait=None) -> KnowledgeBase:
    """The knowledge base, ready to answer: the sample handbook indexed into it if it is empty (the first
    start), its keyword index loaded and its embedding model run once (see :meth:`KnowledgeBase.warm_up`).

    ``on_first_index(folder)`` is called before that indexing, so a caller can say what is happening.
    ``warm=False`` skips the warm-up, for a process that will not answer questions.

    Several processes starting together index it once: the first holds the collection's indexing lock
    (:mod:`assistant.indexlock`); the others wait for it (``on_wait(collection)`` is told), then find the
    index filled and use it. A first indexing cut off (its process killed) is completed by the next start.
    """
    embeddings = make_embeddings(settings)
    store = make_store(settings, embeddings)
    if SAMPLE_HANDBOOK.is_dir():
        engine = make_engine(settings)
        try:
            if _needs_sample(store, engine):
                _index_sample(settings, store, embeddings, engine, on_first_index, on_wait)
        finally:
            engine.dispose()
    knowledge_base = make_knowledge_base(settings, embeddings, store)
    if warm:
        knowledge_base.warm_up()
    return knowledge_base


#: The knowledge bases open in this process, by settings: the pages and the API of one ``onboard serve`` share one
#: (one embedding model and keyword index in memory). Weak: one nobody uses any more is closed.
_OPEN: weakref.WeakValueDictionary[str, KnowledgeBase] = weakref.WeakValueDictionary()
_OPENING = threading.Lock()


def shared_knowledge_base(settings: Settings, on_first_index=None) -> KnowledgeBase:
    """:func:`bootstrap_knowledge_base` once per process for these settings; every caller after gets the same."""
    key = settings.model_dump_json()
    with _OPENING:
        knowledge_base = _OPEN.get(key)
        if knowledge_base is None:
            knowledge_base = bootstrap_knowledge_base(settings, on_first_index)
            _OPEN[key] = knowledge_base
        return knowledge_base


def _index_sample(settings: Settings, store: PassageStore, embeddings, engine: Engine, on_first_index,
                  on_wait) -> None:
    """Index the sample handbook, unless another process did while this one waited for the lock."""
    from assistant.indexlock import index_lock
    from assistant.ingest import ingest

    with index_lock(engine, store.name, on_wait=on_wait) as lock:
        if lock.waited:
            store.reopen()  # what the other process wrote: a local Chroma client loads it again
        if not _needs_sample(store, engine):  # another process indexed it since the first look
            return
        if on_first_index is not None:
            on_first_index(SAMPLE_HANDBOOK)
        ingest([SAMPLE_HANDBOOK], store=store, embeddings=embeddings, engine=engine,
               options=ingest_options(settings), lock=replace(lock, waited=False))  # reopened already


def _needs_sample(store: PassageStore, engine: Engine) -> bool:
    """Whether the index is empty, or its last run indexed the sample handbook and did not complete."""
    from sqlmodel import Session, select

    from assistant.manifest import IngestRun

    if store.count() == 0:
        return True
    with Session(engine) as session:
        last = session.exec(
            select(IngestRun).where(IngestRun.collection == store.name).order_by(IngestRun.id.desc()).limit(1)
        ).first()
    return last is not None and last.status != "completed" and last.roots == [str(SAMPLE_HANDBOOK.resolve())]


def make_engine(settings: Settings, *, migrate: bool | None = None) -> Engine:
    """The database engine; the embedded SQLite default is migrated on first use."""
    engine = db.make_engine(settings.database_url)
    if migrate is None:
        migrate = engine.dialect.name == "sqlite"
    if migrate:
        db.upgrade(engine)
    return engine


def ingest_options(settings: Settings) -> IngestOptions:
    cfg = settings.ingest
    return IngestOptions(
        max_file_bytes=int(cfg.max_file_mb * 1_000_000),
        chunk_tokens=cfg.chunk_tokens,
        chunk_overlap_tokens=cfg.chunk_overlap_tokens,
        key_sentences=cfg.key_sentences,
        key_context=cfg.key_context,
        folder_audiences=dict(cfg.folder_audiences),
    )


def make_assistant(settings: Settings, knowledge_base: KnowledgeBase | None = None):
    """The question-answering assistant; with ``answer.mode == "llm"``, its chat model too."""
    from assistant.answering import Assistant
    from assistant.chat_model import make_chat_model

    knowledge_base = knowledge_base or make_knowledge_base(settings)
    chat_model = make_chat_model(settings.answer) if settings.answer.mode == "llm" else None
    return Assistant(knowledge_base=knowledge_base, config=settings.answer, chat_model=chat_model)


def make_support_desk(settings: Settings, knowledge_base: KnowledgeBase, engine: Engine):
    """The support bot, sharing the handbook's embedding model and Chroma client, its documentation indexed."""
    from service.support import SupportDesk

    desk = SupportDesk(settings=settings, embeddings=knowledge_base.embeddings, client=knowledge_base.store.client,
                       engine=engine, ingest_options=ingest_options(settings))
    desk.refresh(force=True)
    return desk


def settings_for(settings: Settings, features) -> Settings:
    """``settings`` with the answering options the given rollout features change (pilot groups may get another
    model or prompt); ``settings`` itself when they change none."""
    from service.rollout import answer_overrides

    overrides = answer_overrides(features, settings.rollout)
    return settings.model_copy(update={"answer": settings.answer.model_copy(update=overrides)}) if overrides else settings


def assistant_variants(settings: Settings, knowledge_base: KnowledgeBase):
    """``assistant_for(features)``: one assistant per answering configuration the rollout features make
    (:func:`settings_for`), built on first use and shared by every caller after."""
    built: dict[str, object] = {}
    lock = threading.Lock()

    def assistant_for(features) -> object:
        variant = settings_for(settings, features)
        key = variant.answer.model_dump_json()
        with lock:
            if key not in built:
                built[key] = make_assistant(variant, knowledge_base)
            return built[key]

    return assistant_for


def make_chat_service(settings: Settings, *, knowledge_base: KnowledgeBase | None = None,
                      engine: Engine | None = None, on_first_index=None):
    """The service every channel asks through (:class:`service.chat.ChatService`), outside Streamlit (the API,
    batch, benchmarks): the database migrated, the knowledge base opened (the sample handbook indexed on a
    first start), the support desk built on first use if the in-app help is on."""
    from service.chat import ChatService

    engine = engine or make_engine(settings)
    knowledge_base = knowledge_base or shared_knowledge_base(settings, on_first_index)
    desk: list = []
    lock = threading.Lock()

    def support():
        if not settings.support.enabled:
            return None
        with lock:
            if not desk:
                desk.append(make_support_desk(settings, knowledge_base, engine))
        desk[0].refresh()
        return desk[0]

    return ChatService(engine=engine, settings=settings, assistant_for=assistant_variants(settings, knowledge_base),
                       support=support)
