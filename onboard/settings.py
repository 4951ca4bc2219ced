"""The one settings object of the application.

Every option is read from an environment variable prefixed ``ONBOARD_`` (or
from a ``.env`` file in the working directory), validated once, and passed
down. Nothing else in the code reads ``os.environ``. Nested groups use a
double underscore: ``ONBOARD_RETRIEVAL__K=8``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from assistant.answering import AnswerConfig
from assistant.retrieval import RetrievalConfig
from assistant.vectors import CollectionName
from feedback.store import DEFAULT_REASONS
from service.access import AccessSettings
from service.rollout import RolloutSettings
from service.support import SupportSettings


class EmbeddingSettings(BaseModel):
    """Which model turns text into vectors."""

    backend: Literal["local", "openai"] = "local"
    #: For ``local``: a model name known to :mod:`assistant.embeddings`.
    #: For ``openai``: the model name sent to the endpoint.
    model: str = "all-MiniLM-L6-v2-int8"
    base_url: str | None = None
    api_key: SecretStr | None = None
    #: Texts per request to an embeddings endpoint. The local model runs each text alone (see
    #: :meth:`assistant.embeddings.OnnxEmbeddings.embed_array`), so its vectors never depend on batching.
    batch_size: int = Field(32, ge=1, le=2048)
    threads: int = Field(0, ge=0, description="local model: cores used; 0 = all this process may use")
    timeout_s: float = Field(30.0, gt=0)
    #: Where a local model's quantised copy is kept; default: ``data_dir/models``.
    cache_dir: Path | None = None


class IngestSource(BaseModel):
    """Paths that ``onboard worker`` indexes at start and then every ``every_minutes``."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not a source that never runs

    paths: list[Path] = Field(min_length=1)
    every_minutes: float = Field(gt=0, le=60 * 24 * 31)
    #: Collection to index into; default: ``ONBOARD_COLLECTION``.
    collection: CollectionName | None = None


class IngestSettings(BaseModel):
    """Limits applied to files being indexed, and what ``onboard worker`` keeps fresh."""

    max_file_mb: float = Field(20.0, gt=0)
    chunk_tokens: int = Field(220, ge=32, le=2048)
    chunk_overlap_tokens: int = Field(30, ge=0)
    #: Sentences in each search key of a passage (0: none; changing it re-indexes every file).
    key_sentences: int = Field(2, ge=0, le=10)
    #: Share of a search key's vector read in its passage's context, with a local embedding model
    #: (0: keys embedded alone; changing it re-indexes every file, whatever the model). See ``assistant.ingest._vectors``.
    key_context: float = Field(0.75, ge=0.0, le=1.0)
    #: Audience by folder, e.g. ``{"hr": ["hr"], "managers": ["managers", "hr"]}``
    #: (``ONBOARD_INGEST__FOLDER_AUDIENCES`` as JSON); front matter ``audience`` wins.
    folder_audiences: dict[str, list[str]] = {}
    #: What ``onboard worker`` re-indexes, and how often (``ONBOARD_INGEST__SOURCES`` as JSON), e.g.
    #: ``[{"paths": ["/srv/handbook"], "every_minutes": 15}]``.
    sources: list[IngestSource] = []


class ChatSettings(BaseModel):
    """What the chat page offers and accepts."""

    #: Offered as buttons on an empty chat.
    starter_questions: list[str] = [
        "How much PTO do I get?",
        "Who do I ask about my laptop?",
        "When do I get my first paycheck?",
    ]
    #: Longest question accepted; a longer one is refused and kept for editing.
    max_message_chars: int = Field(4000, ge=100, le=100_000)
    #: Reason tags offered after a thumbs down.
    feedback_reasons: list[str] = list(DEFAULT_REASONS)


class ModelPrice(BaseModel):
    """USD per million tokens."""

    input: float = Field(0.0, ge=0)
    output: float = Field(0.0, ge=0)


class CostSettings(BaseModel):
    """What tokens cost, and what each team may spend (``ONBOARD_COSTS__*``, JSON)."""

    #: ``{"gpt-4o-mini": {"input": 0.15, "output": 0.6}}``: USD per million tokens, by model name as
    #: stored with each answer (the Azure deployment name for Azure). Unpriced models cost nothing.
    prices: dict[str, ModelPrice] = {}
    #: ``{"Engineering": 200}``: USD per calendar month, shown against each team's spend.
    team_budgets: dict[str, float] = {}


class DashboardSettings(BaseModel):
    """The admin dashboard."""

    #: Days shown when the page opens.
    default_days: int = Field(30, ge=1, le=3660)
    #: Questions at least this similar (cosine) fall in one knowledge-gap topic.
    gap_similarity: float = Field(0.45, gt=0, lt=1)
    #: Most recent gap questions grouped into topics.
    gap_questions: int = Field(1000, ge=10, le=20_000)


class ApiSettings(BaseModel):
    """The REST API under ``/api/v1`` (``ONBOARD_API__*``): served by ``onboard serve`` beside the pages, or
    alone by ``onboard api``."""

    enabled: bool = True
    #: Requests per minute per key, for keys created without their own limit (held in the database, so the
    #: limit holds across several app processes).
    rate_per_minute: int = Field(60, ge=1, le=100_000)
    #: Larger request bodies are refused with 413 before they are read whole.
    max_body_bytes: int = Field(64_000, ge=1_000, le=10_000_000)


class Settings(BaseSettings):
    """All configuration of the onboarding assistant."""

    model_config = SettingsConfigDict(
        env_prefix="ONBOARD_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    environment: Literal["development", "production"] = "development"
    data_dir: Path = Path("data")
    #: SQLAlchemy URL; default: a SQLite file in ``data_dir``.
    database_url: str | None = None
    #: Chroma persistent folder; default: ``data_dir/chroma``.
    chroma_path: Path | None = None
    #: ``http://host:port`` of a Chroma server; when set, ``chroma_path`` is unused.
    chroma_url: str | None = None
    chroma_token: SecretStr | None = None
    collection: CollectionName = "handbook"

    embedding: EmbeddingSettings = EmbeddingSettings()
    retrieval: RetrievalConfig = RetrievalConfig()
    ingest: IngestSettings = IngestSettings()
    chat: ChatSettings = ChatSettings()
    answer: AnswerConfig = AnswerConfig()
    access: AccessSettings = AccessSettings()
    rollout: RolloutSettings = RolloutSettings()
    costs: CostSettings = CostSettings()
    dashboard: DashboardSettings = DashboardSettings()
    api: ApiSettings = ApiSettings()
    support: SupportSettings = SupportSettings()

    @model_validator(mode="after")
    def _fill_paths(self) -> Settings:
        if self.database_url is None:
            self.database_url = f"sqlite:///{(self.data_dir / 'onboard.db').as_posix()}"
        if self.embedding.cache_dir is None:
            self.embedding.cache_dir = self.data_dir / "models"
        if self.chroma_path is None:
            self.chroma_path = self.data_dir / "chroma"
        if self.embedding.backend == "openai" and not self.embedding.base_url:
            raise ValueError("ONBOARD_EMBEDDING__BASE_URL is required with the openai embedding backend")
        return self
