"""Errors as JSON problem details (RFC 9457, ``application/problem+json``), never a traceback.

Every error the API returns has ``type``, ``title``, ``status`` and
``detail`` (a sentence for the integrator), and sometimes more members
(``errors`` for invalid fields, ``conversation_id`` for a failed answer).
Unexpected exceptions are logged with their traceback and answered with a
plain 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException

from assistant.errors import AssistantError
from feedback import store

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"


class Problem(Exception):
    """An error to answer with: its status, a sentence, extra members and headers."""

    def __init__(self, status: int, detail: str, *, headers: dict[str, str] | None = None, **extra) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers, self.extra = status, detail, headers or {}, extra


def body(status: int, detail: str, **extra) -> dict:
    """A problem detail's members (as an HTTP error's body, or a streamed ``error`` event's data)."""
    return {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status, "detail": detail, **extra}


def response(status: int, detail: str, *, headers: dict[str, str] | None = None, **extra) -> JSONResponse:
    return JSONResponse(body(status, detail, **extra), status_code=status, headers=headers, media_type=MEDIA_TYPE)


def guarded(call: Callable):
    """``call()``, with the known failures of the service below it as problems: not found (or another caller's)
    404, refused input 422, a database or index that does not answer 503 with ``Retry-After`` (one log line each,
    no traceback: an outage would write one per request)."""
    try:
        return call()
    except store.NotFound:
        raise Problem(404, "Not found (or not yours).") from None
    except store.FeedbackError as exc:
        raise Problem(422, str(exc)) from None
    except (OperationalError, InterfaceError) as exc:
        log.error("the database did not answer: %s", type(exc).__name__)
        raise Problem(503, "The database is not available right now. Try again in a moment.",
                      headers={"Retry-After": "5"}) from None
    except AssistantError as exc:
        log.error("the assistant failed: %s", exc)
        raise Problem(503, "The handbook search is not available right now. Try again in a moment.",
                      headers={"Retry-After": "5"}) from None


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` as a problem detail."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem):
        return response(exc.status, exc.detail, headers=exc.headers, **exc.extra)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).description
        if exc.status_code == 413:
            detail = "The request body is too large."
        if exc.status_code == 400:  # the body could not be parsed at all (FastAPI's own 400): bad JSON, as 422
            return response(422, "The request body is not valid JSON.")
        return response(exc.status_code, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errors = [{"field": ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body",
                   "message": e.get("msg", "invalid")} for e in exc.errors()]
        first = errors[0] if errors else {"field": "body", "message": "invalid"}
        detail = ("The request body is not valid JSON." if any(e.get("type") == "json_invalid" for e in exc.errors())
                  else f"Invalid request: {first['field']}: {first['message']}.")
        return response(422, detail, errors=errors)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("API request %s %s failed", request.method, request.url.path)
        return response(500, "Something went wrong on the server. Try again in a moment.")


class BodyLimit:
    """Refuse a request whose announced body (``Content-Length``) is larger than ``limit`` with a problem detail,
    before it is read; FastAPI's own ``max_body_size`` still stops one that grows past it unannounced."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            length = dict(scope.get("headers") or ()).get(b"content-length", b"")
            if length.isdigit() and int(length) > self.limit:
                await response(413, f"The request body is larger than {self.limit:,} bytes.")(scope, receive, send)
                return
        await self.app(scope, receive, send)
