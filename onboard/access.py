"""Who is using the assistant, and what they may open and read.

Streamlit's login (``st.login``) hands the page the ID-token claims in
``st.user``. This module turns those claims into an :class:`Identity` with a
fixed set of roles, without importing Streamlit:

- every signed-in person is an ``employee``;
- ``pilot`` comes from membership of a pilot group or the pilot e-mail list,
  and tries features before everyone else (see :mod:`onboard.rollout`);
- ``admin`` comes from an admin group or the admin e-mail list, and implies
  ``pilot`` and ``employee``.

Documents carry an audience; :attr:`Identity.audiences` is the set a person
may read (``"all"``, their groups and their roles). :func:`pages_for` says
which pages a person may open, from the :data:`PAGE_ROLES` table.

:func:`check_auth_config` checks the ``[auth]`` section of
``.streamlit/secrets.toml`` before the app relies on it, and
:func:`token_expired` covers what Streamlit does not: the ID token's ``exp``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, field_validator

EMPLOYEE = "employee"
PILOT = "pilot"
ADMIN = "admin"
ROLES = frozenset({EMPLOYEE, PILOT, ADMIN})
#: The team of someone no claim or group places in one.
UNASSIGNED = "unassigned"

#: Page key -> the role needed to open it. Add a page here, not in an ``if``.
PAGE_ROLES: dict[str, str] = {
    "chat": EMPLOYEE,
    "admin": ADMIN,
}

#: Words that mark a cookie secret copied from an example rather than generated.
PLACEHOLDER_WORDS = ("change", "secret", "xxx", "example", "placeholder")
MIN_COOKIE_SECRET_CHARS = 32
#: Keys every OIDC provider needs (Streamlit refuses to log in without them).
REQUIRED_PROVIDER_KEYS = ("client_id", "client_secret", "server_metadata_url")
REQUIRED_AUTH_KEYS = ("redirect_uri", "cookie_secret")


class AccessDenied(Exception):
    """A signed-in person who may not use the assistant; ``reason`` is meant for them."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AccessSettings(BaseModel):
    """Who may sign in, and who is a pilot or an admin (``ONBOARD_ACCESS__*``)."""

    #: The claim that holds groups or roles: a list, or a space/comma separated string.
    groups_claim: str = "groups"
    admin_groups: list[str] = ["admin"]
    pilot_groups: list[str] = ["pilot"]
    admin_emails: list[str] = []
    pilot_emails: list[str] = []
    #: E-mail domains allowed to sign in (exact match, no subdomains); empty = any.
    allowed_domains: list[str] = []
    #: A person must be in one of these groups to sign in; empty = any.
    allowed_groups: list[str] = []
    #: The claim that names a person's team or business unit (usage and cost per team).
    team_claim: str = "team"
    #: Team by group, for providers that send no team claim: ``{"eng-all": "Engineering"}``.
    group_teams: dict[str, str] = {}

    @field_validator("admin_emails", "pilot_emails")
    @classmethod
    def _lower_emails(cls, value: list[str]) -> list[str]:
        return [e.strip().lower() for e in value if e.strip()]

    @field_validator("allowed_domains")
    @classmethod
    def _lower_domains(cls, value: list[str]) -> list[str]:
        return [d.strip().lower().lstrip("@") for d in value if d.strip()]


@dataclass(frozen=True)
class Identity:
    """A signed-in person, as the rest of the application sees them."""

    subject: str
    email: str
    name: str
    groups: frozenset[str]
    roles: frozenset[str]
    #: Team or business unit, for usage and cost per team.
    team: str = UNASSIGNED

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles

    @property
    def is_pilot(self) -> bool:
        return PILOT in self.roles

    @property
    def audiences(self) -> frozenset[str]:
        """Document audiences this person may read."""
        return frozenset({"all"}) | self.groups | self.roles


#: Local mode is one developer on their own laptop with no login configured.
#: They get every role so the admin dashboard and pilot features are reachable.
LOCAL_IDENTITY = Identity(
    subject="local",
    email="",
    name="Local developer",
    groups=frozenset(),
    roles=ROLES,
)


def parse_groups(value: Any) -> frozenset[str]:
    """Groups from a claim value: a list, or a string separated by spaces or commas."""
    if value is None:
        return frozenset()
    if isinstance(value, str):
        items: Iterable[Any] = re.split(r"[\s,]+", value)
    elif isinstance(value, Iterable):
        items = value
    else:
        items = [value]
    return frozenset(str(item).strip() for item in items if str(item).strip())


def _email_is_verified(claims: Mapping[str, Any]) -> bool:
    verified = claims.get("email_verified")
    if isinstance(verified, str):  # some providers send "false"
        return verified.strip().lower() != "false"
    return verified is not False


def identity_from_claims(claims: Mapping[str, Any], settings: AccessSettings) -> Identity:
    """Map ID-token claims to an :class:`Identity`, or raise :class:`AccessDenied`.

    An e-mail whose ``email_verified`` is false is dropped: it neither grants a
    role nor satisfies ``allowed_domains``.
    """
    subject = str(claims.get("sub") or "").strip()
    if not subject:
        raise AccessDenied("Your sign-in did not say who you are (no subject). Please sign in again or contact IT.")
    raw_email = str(claims.get("email") or "").strip().lower()
    email = raw_email if _email_is_verified(claims) else ""
    groups = parse_groups(claims.get(settings.groups_claim))

    if settings.allowed_domains:
        domain = email.rpartition("@")[2] if "@" in email else ""
        if not domain:
            raise AccessDenied(
                "Your account has no verified e-mail address, so we cannot tell whether you may use "
                "the assistant. Please verify your e-mail address with your sign-in provider."
            )
        if domain not in settings.allowed_domains:
            raise AccessDenied(
                f"Accounts from {domain} cannot use the assistant. Please sign in with your work "
                f"account ({', '.join(settings.allowed_domains)})."
            )
    if settings.allowed_groups and not groups & set(settings.allowed_groups):
        raise AccessDenied(
            "Your account is not in a group that may use the assistant yet. Ask your manager or IT to add you."
        )

    roles = {EMPLOYEE}
    if groups & set(settings.admin_groups) or (email and email in settings.admin_emails):
        roles |= {ADMIN, PILOT}
    if groups & set(settings.pilot_groups) or (email and email in settings.pilot_emails):
        roles.add(PILOT)

    name = str(claims.get("name") or claims.get("preferred_username") or email or subject).strip()
    return Identity(subject=subject, email=email, name=name, groups=groups, roles=frozenset(roles),
                    team=team_of(claims, groups, settings))


def team_of(claims: Mapping[str, Any], groups: Iterable[str], settings: AccessSettings) -> str:
    """The team from the team claim, else from the first group (alphabetically) with a team, else unassigned."""
    claimed = claims.get(settings.team_claim)
    if isinstance(claimed, list):
        claimed = claimed[0] if claimed else None
    if claimed is not None and str(claimed).strip():
        return str(claimed).strip()[:128]
    for group in sorted(groups):
        if group in settings.group_teams:
            return settings.group_teams[group]
    return UNASSIGNED


def token_expired(claims: Mapping[str, Any], now: float | datetime | None = None, leeway_s: float = 30) -> bool:
    """Whether the ID token's ``exp`` (plus ``leeway_s``) has passed.

    No ``exp`` means the provider set no expiry: not expired. An ``exp`` that is
    not a number counts as expired, so a malformed token fails closed.
    """
    exp = claims.get("exp")
    if exp is None:
        return False
    if isinstance(now, datetime):
        now = now.timestamp()
    elif now is None:
        now = time.time()
    try:
        exp_s = float(exp)
    except (TypeError, ValueError):
        return True
    return now > exp_s + leeway_s


def _weak_secret(secret: str) -> str | None:
    if len(secret) < MIN_COOKIE_SECRET_CHARS:
        return f"cookie_secret is shorter than {MIN_COOKIE_SECRET_CHARS} characters"
    lowered = secret.lower()
    for word in PLACEHOLDER_WORDS:
        if word in lowered:
            return f"cookie_secret looks like a placeholder (contains {word!r})"
    return None


def check_auth_config(secrets: Mapping[str, Any] | None, *, production: bool) -> list[str]:
    """Problems with the ``[auth]`` section of the Streamlit secrets; empty when fine.

    ``secrets`` is the whole secrets mapping (``st.secrets`` or a parsed TOML).
    Without ``[auth]`` the app runs in local mode, which only development allows.
    Missing keys are problems in any environment (login cannot work); a weak
    ``cookie_secret`` is a problem in production only. Providers may sit in
    ``[auth]`` itself or in named sub-sections (``[auth.google]``).
    """
    auth = (secrets or {}).get("auth")
    if not auth:
        return ["[auth] section is missing from secrets.toml; production requires login"] if production else []

    problems = [f"[auth] {key} is missing" for key in REQUIRED_AUTH_KEYS if not auth.get(key)]
    secret = auth.get("cookie_secret")
    if secret and production and (weak := _weak_secret(str(secret))):
        problems.append(f"[auth] {weak}")

    providers = {name: auth[name] for name in login_providers(secrets)} or {"": auth}
    for label, provider in providers.items():
        section = f"[auth.{label}]" if label else "[auth]"
        problems += [f"{section} {key} is missing" for key in REQUIRED_PROVIDER_KEYS if not provider.get(key)]
    return problems


def login_providers(secrets: Mapping[str, Any] | None) -> list[str]:
    """The named providers of ``[auth]`` (``[auth.google]``, ``[auth.okta]``), in order; empty for one unnamed."""
    auth = (secrets or {}).get("auth") or {}
    return [name for name, value in auth.items() if isinstance(value, Mapping)]


def pages_for(identity: Identity) -> set[str]:
    """Page keys this person may open (see :data:`PAGE_ROLES`)."""
    return {page for page, role in PAGE_ROLES.items() if role in identity.roles}
