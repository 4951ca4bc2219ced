"""The API's request and response bodies (they make the OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

#: Message ids are 32-bit in the database: a larger one is refused (422), not looked up.
MAX_ID = 2**31 - 1
MessageId = Annotated[int, Path(ge=1, le=MAX_ID, description="An answer's id (`message_id` of an ask).")]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not silently ignored


class AskRequest(_Request):
    question: str = Field(min_length=1, description="The question, as the person typed it.")
    conversation_id: str | None = Field(None, description="Continue this conversation (a follow-up question).")
    stream: bool = Field(False, description="Answer as server-sent events: `delta` events of text, then `answer`.")


class Citation(BaseModel):
    n: int = Field(description="The number of the `[n]` marker in the answer.")
    title: str
    section: str
    source: str = Field(description="The document's path in the indexed folder.")
    url: str | None = Field(None, description="The document's web address: only ever `http` or `https`.")


class AskResponse(BaseModel):
    conversation_id: str
    question_id: int
    message_id: int = Field(description="The answer's id: rate it with POST /messages/{message_id}/rating.")
    answer: str = Field(description="Markdown with `[n]` citation markers. Treat it as text: never render its "
                                    "links or HTML.")
    band: Literal["answered", "unsure", "abstained"]
    abstained: bool
    citations: list[Citation]
    closest: list[Citation] = Field(default_factory=list,
                                    description="When the assistant abstained: the passages that came closest.")
    notice: str | None = Field(None, description="Something the reader should know, e.g. the model failed and "
                                                 "the passages are quoted instead.")
    model: str | None
    latency_ms: int | None


class RatingRequest(_Request):
    thumb: Literal["up", "down"]
    reasons: list[str] = Field(default_factory=list)
    comment: str | None = Field(None, max_length=2000)


class RatingResponse(BaseModel):
    message_id: int
    thumb: Literal["up", "down"]
    reasons: list[str]
    comment: str | None


class ConversationSummary(BaseModel):
    id: str
    title: str
    created_at: datetime
    updated_at: datetime | None = None


class MessageOut(BaseModel):
    id: int
    role: Literal["user", "assistant"]
    content: str
    status: str
    band: str | None = None
    citations: list[Citation] = Field(default_factory=list)
    created_at: datetime
    thumb: Literal["up", "down"] | None = None


class ConversationOut(ConversationSummary):
    messages: list[MessageOut]


class SearchRequest(_Request):
    query: str = Field(min_length=1)
    k: int = Field(5, ge=1, le=20)


class Passage(BaseModel):
    title: str
    section: str
    source: str
    url: str | None = None
    text: str


class SearchResponse(BaseModel):
    band: Literal["answered", "unsure", "abstained"] = Field(
        description="How the assistant would treat these passages: `answered` (they likely answer the query), "
                    "`unsure` (related), `abstained` (nothing related).")
    passages: list[Passage]


class ProblemRequest(_Request):
    text: str = Field(min_length=1, max_length=4000)
    conversation_id: str | None = None
    message_id: int | None = Field(None, ge=1, le=MAX_ID)


class ProblemResponse(BaseModel):
    id: int


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)
