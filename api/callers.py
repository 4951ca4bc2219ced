"""Who is calling: the API key in ``Authorization: Bearer onb_...``, its rate limit, and the person it acts for.

A key stands for an identity of its own (``apikey:<id>``): its groups decide
which documents it may read, its team pays for its answers. A key created
with the on-behalf scope may name a person in ``X-On-Behalf-Of: email``; the
conversations are then stored per person and key (``apikey:<id>:person:<email>``:
separate from that person's sign-in at the web page, whose groups the API
cannot know, and from what another key stored for them, which its groups may
not allow this one to read), still with the key's groups and team. Every request of a key counts against
its per-minute limit, held in the database so it holds across processes.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.problems import Problem, guarded
from assistant.text import clean
from feedback import keys, limits
from feedback.models import ApiKey
from service.access import Identity

log = logging.getLogger(__name__)

ON_BEHALF_HEADER = "X-On-Behalf-Of"
#: Enough to tell an e-mail address from anything else; the identity provider, not the API, owns addresses.
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{1,63}$")

bearer = HTTPBearer(auto_error=False, description="An API key made with `onboard keys create`.")


@dataclass(frozen=True)
class Caller:
    """The key that called, and the identity the request is answered as."""

    key: ApiKey
    identity: Identity


def key_identity(key: ApiKey) -> Identity:
    return Identity(subject=f"apikey:{key.id}", email="", name=f"API key {key.name}",
                    groups=frozenset(key.groups or ()), roles=frozenset(), team=key.team)


def person_identity(key: ApiKey, email: str) -> Identity:
    """The person a key acts for, as that key sees them: their conversations hold what the key's groups allowed,
    so another key (with other groups) acting for the same address must not read them back."""
    return Identity(subject=f"apikey:{key.id}:person:{email}", email=email, name=email,
                    groups=frozenset(key.groups or ()), roles=frozenset(), team=key.team)


def caller(request: Request,
           credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Caller:
    """The dependency of every endpoint that needs a key: 401 without a valid one, 429 over its limit."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Problem(401, "Send an API key: Authorization: Bearer onb_...", headers={"WWW-Authenticate": "Bearer"})
    # A database that does not answer (or a knowledge base that cannot open) is a 503, as for every route.
    key, allowance = guarded(lambda: _check(request, credentials.credentials))
    headers = {"RateLimit-Limit": str(allowance.limit), "RateLimit-Remaining": str(allowance.remaining),
               "RateLimit-Reset": str(allowance.reset_s)}
    if not allowance.allowed:
        log.info("API key %s over its limit of %d requests per minute", key.id, allowance.limit)
        raise Problem(429, f"Too many requests: this key may make {allowance.limit} per minute. "
                           f"Try again in {allowance.retry_after_s} s.",
                      headers={**headers, "Retry-After": str(allowance.retry_after_s)})
    request.state.rate_limit_headers = headers  # added to whatever response the route returns (api.app)
    on_behalf = request.headers.get(ON_BEHALF_HEADER)
    if on_behalf is None:
        return Caller(key, key_identity(key))
    if not key.on_behalf:
        raise Problem(403, f"This key may not ask on behalf of a person ({ON_BEHALF_HEADER}): create a key with "
                           "--on-behalf for that.")
    email = clean(on_behalf).strip().lower()
    if not _EMAIL.match(email):
        raise Problem(422, f"{ON_BEHALF_HEADER} must be an e-mail address.")
    return Caller(key, person_identity(key, email))


def _check(request: Request, secret: str) -> tuple[ApiKey, limits.Allowance]:
    """The key of ``secret`` (401 if none is valid), and this request counted against its limit."""
    settings = request.app.state.settings
    with request.app.state.service().session() as session:
        try:
            key = keys.authenticate(session, secret)
        except keys.KeyRejected as exc:
            raise Problem(401, str(exc), headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}) from None
        return key, limits.hit(session, key_id=key.id, per_minute=key.rate_per_minute or settings.api.rate_per_minute)


#: The parameter type of an endpoint that needs a key: ``who: Authenticated``.
Authenticated = Annotated[Caller, Depends(caller)]
