"""The REST API's routes: ask (whole or streamed), rate, conversations, search, problem reports, health.

:func:`create_app` makes the FastAPI application with its routes at its root;
it is always served under ``/api/v1``: mounted beside the pages by
``onboard serve`` (``asgi.py``), or alone by ``onboard api``
(:func:`standalone`). Each route authenticates the key (:mod:`api.callers`),
calls :class:`service.chat.ChatService` once as the caller's identity and maps
the result to the response body (:mod:`api.schemas`); errors are problem
details (:mod:`api.problems`). The routes are plain functions, run in
FastAPI's thread pool, because the service blocks (database, model calls).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import APIRouter, FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.sse import EventSourceResponse
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.routing import Mount

from api import problems, schemas
from api.callers import Authenticated
from api.problems import Problem
from assistant.text import web_url
from service.chat import ASSISTANT_KIND, Asked, ChatService
from service.history import ANSWERED

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
CHANNEL = "api"
#: Seconds a streamed answer may stay silent before the client is told it failed (the model's own retries and
#: timeouts end far sooner).
STREAM_SILENCE_S = 300.0
THUMBS = {"up": 1, "down": 0}


def create_app(settings=None, service: Callable[[], ChatService] | None = None) -> FastAPI:
    """The API; ``service()`` returns the chat service (default: built from ``settings`` on first use)."""
    from onboard.settings import Settings

    settings = settings or Settings()
    app = FastAPI(
        title="Onboarding assistant API",
        version="1",
        summary="Answers from the company's documents, with citations; conversations, ratings, problem reports.",
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        max_body_size=settings.api.max_body_bytes,
    )
    app.state.settings = settings
    app.state.service = service or _built_once(settings)
    problems.install(app)
    app.include_router(router)

    @app.middleware("http")
    async def _rate_limit_headers(request: Request, call_next):
        """The key's ``RateLimit-*`` headers on every response of the request, whatever the route returned."""
        response = await call_next(request)
        response.headers.update(getattr(request.state, "rate_limit_headers", None) or {})
        return response

    return app


def mountable(settings=None, service: Callable[[], ChatService] | None = None):
    """The API as it is mounted under ``/api/v1``: :func:`create_app` behind :class:`problems.BodyLimit`."""
    app = create_app(settings, service)
    return problems.BodyLimit(app, app.state.settings.api.max_body_bytes)


def standalone(settings=None, service: Callable[[], ChatService] | None = None) -> Starlette:
    """The API alone, under ``/api/v1`` as beside the pages (``onboard api``)."""
    return Starlette(routes=[Mount(PREFIX, app=mountable(settings, service))])


def _built_once(settings) -> Callable[[], ChatService]:
    lock, built = threading.Lock(), []

    def service() -> ChatService:
        with lock:
            if not built:
                from onboard.factories import make_chat_service

                built.append(make_chat_service(settings))
            return built[0]

    return service


router = APIRouter()


def _service(request: Request) -> ChatService:
    return request.app.state.service()


# -- asking ---------------------------------------------------------------------------------------------------------


@router.post("/ask", response_model=schemas.AskResponse, tags=["ask"],
             responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
                              "description": "The answer; with `stream`, server-sent events: `delta` "
                                             "(`{\"text\"}`) as it is written, then `answer` (this object) or "
                                             "`error` (a problem detail)."},
                        401: {"description": "No valid API key"}, 404: {"description": "No such conversation"},
                        422: {"description": "Empty or too long question"},
                        429: {"description": "Over the key's rate limit"},
                        503: {"description": "The answer failed; the question is stored"}})
def ask(body: schemas.AskRequest, request: Request, who: Authenticated):
    """Ask a question; the question and its answer are stored in the caller's conversation."""
    service = _service(request)
    if not body.stream:
        return _answered(problems.guarded(lambda: service.ask(who.identity, body.question, conversation_id=body.conversation_id,
                                                      channel=CHANNEL)))
    events: queue.Queue = queue.Queue()

    def run() -> None:
        try:
            asked = service.ask(who.identity, body.question, conversation_id=body.conversation_id, channel=CHANNEL,
                                write=lambda deltas: [events.put(("delta", d)) for d in deltas])
            events.put(("answer", asked))
        except BaseException as exc:  # noqa: BLE001  (handed to the request's thread)
            events.put(("error", exc))

    threading.Thread(target=run, name="api-ask", daemon=True).start()
    kind, value = _next(events)  # before the first text the status can still say what went wrong
    if kind == "error":
        problems.guarded(lambda: _raise(value))
    if kind == "answer":
        _answered(value)  # a failed answer raises its problem here
    return EventSourceResponse(_stream(kind, value, events))


def _stream(kind: str, value, events: queue.Queue) -> Iterator[str]:
    """The events after the first: text as it is written, then the answer (or what went wrong)."""
    while True:
        if kind == "delta":
            yield _event("delta", {"text": value})
        elif kind == "answer":
            try:
                yield _event("answer", _answered(value).model_dump(mode="json"))
            except Problem as problem:
                yield _event("error", problems.body(problem.status, problem.detail, **problem.extra))
            return
        else:
            log.error("a streamed answer failed after its first text", exc_info=value)
            yield _event("error", problems.body(503, "The answer failed midway. Your question is saved: try again."))
            return
        kind, value = _next(events)


def _next(events: queue.Queue):
    try:
        return events.get(timeout=STREAM_SILENCE_S)
    except queue.Empty:
        return "error", TimeoutError("the answer stayed silent")


def _event(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _raise(exc: BaseException):
    raise exc


def _answered(asked: Asked) -> schemas.AskResponse:
    """The response for a stored answer; a problem (503) when there is none to give."""
    outcome, message = asked.outcome, asked.outcome.message
    if message is None or outcome.status not in ANSWERED:
        raise Problem(503, outcome.error or "The answer could not be made or stored. Your question is saved: try "
                      "again in a moment.", headers={"Retry-After": "5"}, conversation_id=asked.conversation_id,
                      question_id=asked.question.id)
    sources = message.sources or []
    return schemas.AskResponse(
        conversation_id=asked.conversation_id,
        question_id=asked.question.id,
        message_id=message.id,
        answer=message.content,
        band=message.band or ("abstained" if message.status == "abstained" else "answered"),
        abstained=message.status == "abstained",
        citations=[_citation(s) for s in sources if s.get("cited", True)],
        closest=[_citation(s) for s in sources if not s.get("cited", True)],
        notice=message.error,
        model=message.model,
        latency_ms=message.latency_ms,
    )


def _citation(source: dict) -> schemas.Citation:
    return schemas.Citation(n=int(source.get("n") or 0), title=str(source.get("title") or ""),
                            section=str(source.get("section") or ""), source=str(source.get("source") or ""),
                            url=web_url(source.get("url")))


# -- ratings, conversations, problem reports ---------------------------------------------------------------------


@router.post("/messages/{message_id}/rating", response_model=schemas.RatingResponse, tags=["ratings"])
def rate(message_id: schemas.MessageId, body: schemas.RatingRequest, request: Request, who: Authenticated):
    """Rate an answer (thumbs up or down, with optional reasons and a comment); rating again replaces it."""
    rating = problems.guarded(lambda: _service(request).rate(who.identity, message_id, THUMBS[body.thumb], body.reasons,
                                                     body.comment))
    return schemas.RatingResponse(message_id=message_id, thumb="up" if rating.thumb else "down",
                                  reasons=list(rating.reasons or []), comment=rating.comment)


@router.get("/conversations", response_model=list[schemas.ConversationSummary], tags=["conversations"])
def conversations(request: Request, who: Authenticated,
                  limit: Annotated[int, Query(ge=1, le=100, description="At most this many, newest first.")] = 100):
    """The caller's conversations, newest first."""
    found = problems.guarded(lambda: _service(request).conversations(who.identity, kind=ASSISTANT_KIND, limit=limit))
    return [schemas.ConversationSummary(id=c.id, title=c.title, created_at=c.created_at,
                                        updated_at=getattr(c, "updated_at", None)) for c in found]


@router.get("/conversations/{conversation_id}", response_model=schemas.ConversationOut, tags=["conversations"])
def conversation(conversation_id: str, request: Request, who: Authenticated):
    """One of the caller's conversations, every question and answer in order (regenerated answers too)."""
    found, shown = problems.guarded(lambda: _service(request).conversation(who.identity, conversation_id))
    messages = []
    for turn in shown:
        messages.append(_message(turn.question, None))
        messages += [_message(answer, rating) for answer, rating in turn.answers]
    return schemas.ConversationOut(id=found.id, title=found.title, created_at=found.created_at,
                                   updated_at=getattr(found, "updated_at", None), messages=messages)


def _message(message, rating) -> schemas.MessageOut:
    cited = [_citation(s) for s in (message.sources or []) if s.get("cited", True)]
    return schemas.MessageOut(id=message.id, role=message.role, content=message.content, status=message.status,
                              band=message.band, citations=cited, created_at=message.created_at,
                              thumb=None if rating is None else ("up" if rating.thumb else "down"))


@router.delete("/conversations/{conversation_id}", status_code=204, tags=["conversations"])
def delete_conversation(conversation_id: str, request: Request, who: Authenticated):
    """Delete one of the caller's conversations (erased for good at the administrators' next purge)."""
    problems.guarded(lambda: _service(request).delete(who.identity, conversation_id))
    return Response(status_code=204)


@router.post("/problems", response_model=schemas.ProblemResponse, status_code=201, tags=["problems"])
def report_problem(body: schemas.ProblemRequest, request: Request, who: Authenticated):
    """Report a problem to the administrators (attached to a conversation or answer of the caller's, if given)."""
    number = problems.guarded(lambda: _service(request).report_problem(who.identity, body.text, page="api",
                                                               conversation_id=body.conversation_id,
                                                               message_id=body.message_id))
    return schemas.ProblemResponse(id=number)


# -- search -------------------------------------------------------------------------------------------------------


@router.post("/search", response_model=schemas.SearchResponse, tags=["search"])
def search(body: schemas.SearchRequest, request: Request, who: Authenticated):
    """The passages the caller may read that best match the query; nothing is answered or stored."""
    found = problems.guarded(lambda: _service(request).search(who.identity, body.query, k=body.k))
    return schemas.SearchResponse(
        band=found.answerability.band,
        passages=[schemas.Passage(title=str(d.metadata.get("title") or ""), section=str(d.metadata.get("section") or ""),
                                  source=str(d.metadata.get("source") or ""), url=web_url(d.metadata.get("url")),
                                  text=d.page_content) for d in found.documents],
    )


# -- health -------------------------------------------------------------------------------------------------------


@router.get("/health", response_model=schemas.Health, tags=["health"])
def health():
    """The process is alive (no dependency is checked)."""
    return schemas.Health(status="ok")


@router.get("/ready", response_model=schemas.Health, tags=["health"],
            responses={503: {"model": schemas.Health, "description": "The database or the index is unreachable"}})
def ready(request: Request):
    """The database and the index answer; 503 (with what failed) otherwise."""
    checks: dict[str, str] = {}
    try:
        service = _service(request)
    except Exception as exc:  # noqa: BLE001  (the knowledge base could not open: not ready)
        log.error("the API is not ready: %s", exc)
        return JSONResponse({"status": "unavailable", "checks": {"service": "cannot start"}}, status_code=503)
    try:
        with service.session() as session:
            session.exec(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001
        log.error("readiness: the database did not answer: %s", type(exc).__name__)
        checks["database"] = "unreachable"
    try:
        service.assistant_for([]).knowledge_base.store.collection.count()
        checks["index"] = "ok"
    except Exception as exc:  # noqa: BLE001
        log.error("readiness: the index did not answer: %s", type(exc).__name__)
        checks["index"] = "unreachable"
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503)
