"""Who is using the assistant, and what they may open and read.

Streamlit's login (``st.login``) hands the page the ID-token claims in
``st.user``. This module turns those claims into an :class:`Identity` with a
fixed set of roles, without importing Streamlit:

- every signed-in person is an ``employee``;
- ``pilot`` comes from membership of a pilot group or the pilot e-mail list,
  and tries features before everyone else (see :mod:`service.rollout`);
- ``admin`` comes from an admin group or the admin e-mail list, and implies
  ``pilot`` and ``employee``.

An e-mail address is trusted (for the e-mail lists and ``allowed_domains``)
only when the provider says it is verified (``email_verified`` is JSON
``true`` or the string ``"true"``), or when the operator declares that
provider's addresses verified (``trusted_email_providers``) and the token does
not say otherwise. Anything else, a missing claim included, is unverified:
Entra ID sends no ``email_verified`` at all, and its ``email`` is whatever the
account's profile says, so a role list of e-mails would otherwise admit
anyone who can type the boss's address into a profile. Groups claims are
unaffected.

Documents carry an audience; :attr:`Identity.audiences` is the set a person
may read (``"all"``, their roles, and their groups except those named like a
role: an identity-provider group called ``admin`` is not the admin role, see
:attr:`Identity.memberships`). :func:`pages_for` says which pages a person may
open, from the :data:`PAGE_ROLES` table.

:func:`check_auth_config` checks the ``[auth]`` section of
``.streamlit/secrets.toml`` before the app relies on it, and
:func:`token_expired` covers what Streamlit does not: the ID token's ``exp``.
"""

from __future__ import annotations

import itertools
import math
import re
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

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
#: Least entropy of a production cookie secret, in bits, estimated from its characters' frequencies (length times
#: Shannon entropy per character). 32 random hex digits score 93 to 110; 32 times "a" scores 0.
MIN_COOKIE_SECRET_BITS = 80
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
    #: Providers whose e-mail addresses count as verified when the token has no ``email_verified`` claim
    #: (Entra ID sends none): names of ``[auth.<name>]`` sections, ``default`` for a provider in ``[auth]`` itself.
    trusted_email_providers: list[str] = []

    @field_validator("admin_emails", "pilot_emails")
    @classmethod
    def _lower_emails(cls, value: list[str]) -> list[str]:
        return [e.strip().lower() for e in value if e.strip()]

    @field_validator("allowed_domains")
    @classmethod
    def _lower_domains(cls, value: list[str]) -> list[str]:
        return [d.strip().lower().lstrip("@") for d in value if d.strip()]

    @field_validator("trusted_email_providers")
    @classmethod
    def _lower_providers(cls, value: list[str]) -> list[str]:
        return [p.strip().lower() for p in value if p.strip()]


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
    def memberships(self) -> frozenset[str]:
        """Roles and groups, where a group named like a role does not count: only the role gives its name.

        With ``ONBOARD_ACCESS__ADMIN_GROUPS=["it-admins"]``, someone in an identity-provider group called
        ``admin`` is not an admin, so must not read ``audience: admin`` documents either.
        """
        return (self.groups - ROLES) | self.roles

    @property
    def audiences(self) -> frozenset[str]:
        """Document audiences this person may read: ``all`` and their :attr:`memberships`."""
        return frozenset({"all"}) | self.memberships


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


#: Streamlit's name for the provider configured in ``[auth]`` itself (it adds ``provider`` to ``st.user``).
DEFAULT_PROVIDER = "default"


def email_is_verified(claims: Mapping[str, Any], settings: AccessSettings) -> bool:
    """Whether the e-mail of these claims may be trusted for roles and allowed domains.

    The provider's own word wins: ``email_verified`` JSON ``true`` or ``"true"``
    is verified, any other value present (``false``, ``0``, ``"no"``) is not.
    Without the claim, only a provider the operator declared in
    ``trusted_email_providers`` is believed; ``provider`` is the name Streamlit
    writes into ``st.user`` from the login it made (not a claim of the token).
    """
    if "email_verified" in claims and claims["email_verified"] is not None:
        flag = claims["email_verified"]
        return flag is True or (isinstance(flag, str) and flag.strip().lower() == "true")
    provider = claims.get("provider")
    return isinstance(provider, str) and provider.strip().lower() in settings.trusted_email_providers


def identity_from_claims(claims: Mapping[str, Any], settings: AccessSettings) -> Identity:
    """Map ID-token claims to an :class:`Identity`, or raise :class:`AccessDenied`.

    An e-mail that is not verified (:func:`email_is_verified`) is dropped: it
    neither grants a role nor satisfies ``allowed_domains``, and is not stored.
    """
    subject = str(claims.get("sub") or "").strip()
    if not subject:
        raise AccessDenied("Your sign-in did not say who you are (no subject). Please sign in again or contact IT.")
    raw_email = str(claims.get("email") or "").strip().lower()
    email = raw_email if email_is_verified(claims, settings) else ""
    groups = parse_groups(claims.get(settings.groups_claim))

    if settings.allowed_domains:
        domain = email.rpartition("@")[2] if "@" in email else ""
        if not domain:
            raise AccessDenied(
                "Your account has no verified e-mail address, so we cannot tell whether you may use "
                "the assistant. Please verify your e-mail address with your sign-in provider, or tell IT."
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


def secret_bits(secret: str) -> float:
    """Estimated entropy of ``secret`` in bits: its length times the Shannon entropy of its characters."""
    counts = Counter(secret)
    return -sum(n * math.log2(n / len(secret)) for n in counts.values())


def _repeat_period(secret: str) -> int | None:
    """The length of the block ``secret`` repeats (``abcabcab``: 3), if it repeats one at least twice."""
    for period in range(1, len(secret) // 2 + 1):
        if all(secret[i] == secret[i - period] for i in range(period, len(secret))):
            return period
    return None


def _mostly_runs(secret: str) -> bool:
    """Whether most neighbouring characters are next to each other in the alphabet (``abcdef``, ``9876``)."""
    steps = [abs(ord(b) - ord(a)) for a, b in itertools.pairwise(secret)]
    return sum(step == 1 for step in steps) > len(steps) / 2


def _weak_secret(secret: str) -> str | None:
    """Why ``secret`` is too weak to sign login cookies, or ``None``; never quotes the secret (the page shows this)."""
    if len(secret) < MIN_COOKIE_SECRET_CHARS:
        return f"cookie_secret is shorter than {MIN_COOKIE_SECRET_CHARS} characters"
    lowered = secret.lower()
    for word in PLACEHOLDER_WORDS:
        if word in lowered:
            return f"cookie_secret looks like a placeholder (contains {word!r})"
    advice = "use a random value, e.g. the output of: python -c 'import secrets; print(secrets.token_hex(32))'"
    if (period := _repeat_period(secret)) is not None:
        return f"cookie_secret repeats the same {period}-character block; {advice}"
    if _mostly_runs(secret):
        return f"cookie_secret is mostly runs of neighbouring characters (like abcd or 4321); {advice}"
    if (bits := secret_bits(secret)) < MIN_COOKIE_SECRET_BITS:
        return (f"cookie_secret is too predictable: its characters carry about {bits:.0f} bits of entropy "
                f"(length times the Shannon entropy of their frequencies), at least {MIN_COOKIE_SECRET_BITS} are "
                f"needed; {advice}")
    return None


def _insecure_redirect(uri: str) -> str | None:
    """Why a production ``redirect_uri`` is refused, or ``None``: it must be https, localhost included.

    The login cookie and the provider's code travel to this address; in production people reach the app from
    other machines, through a proxy that terminates TLS, so the address they are sent back to is an https one.
    """
    try:
        parts = urlsplit(uri.strip())
        host = parts.hostname
    except ValueError:  # an unbalanced [ in the host
        return "redirect_uri is not a valid address"
    if parts.scheme.lower() != "https" or not host:
        return (f"redirect_uri must be an https:// address in production (got {parts.scheme or 'no'} scheme): "
                "put the app behind a proxy that serves https and register https://<host>/oauth2callback")
    return None


def check_auth_config(secrets: Mapping[str, Any] | None, *, production: bool,
                      trusted_email_providers: Iterable[str] = ()) -> list[str]:
    """Problems with the ``[auth]`` section of the Streamlit secrets; empty when fine.

    ``secrets`` is the whole secrets mapping (``st.secrets`` or a parsed TOML).
    Without ``[auth]`` the app runs in local mode, which only development allows.
    Missing keys are problems in any environment (login cannot work); a weak
    ``cookie_secret`` (short, a placeholder, a repeated block, runs like
    ``abcd``, or under :data:`MIN_COOKIE_SECRET_BITS` of entropy) and a
    ``redirect_uri`` that is not https are problems in production only. Providers may sit in
    ``[auth]`` itself or in named sub-sections (``[auth.google]``). A name in
    ``trusted_email_providers`` that is no configured provider is a problem
    too: a typo there would quietly leave every e-mail unverified.
    """
    auth = (secrets or {}).get("auth")
    if not auth:
        return ["[auth] section is missing from secrets.toml; production requires login"] if production else []

    problems = [f"[auth] {key} is missing" for key in REQUIRED_AUTH_KEYS if not auth.get(key)]
    secret = auth.get("cookie_secret")
    if secret and production and (weak := _weak_secret(str(secret))):
        problems.append(f"[auth] {weak}")
    redirect = auth.get("redirect_uri")
    if redirect and production and (insecure := _insecure_redirect(str(redirect))):
        problems.append(f"[auth] {insecure}")

    providers = {name: auth[name] for name in login_providers(secrets)} or {"": auth}
    for label, provider in providers.items():
        section = f"[auth.{label}]" if label else "[auth]"
        problems += [f"{section} {key} is missing" for key in REQUIRED_PROVIDER_KEYS if not provider.get(key)]
    names = {name.lower() for name in providers if name} or {DEFAULT_PROVIDER}
    problems += [f"ONBOARD_ACCESS__TRUSTED_EMAIL_PROVIDERS names {name!r}, which is not a provider of [auth] "
                 f"(configured: {', '.join(sorted(names))})"
                 for name in trusted_email_providers if name.lower() not in names]
    return problems


def login_providers(secrets: Mapping[str, Any] | None) -> list[str]:
    """The named providers of ``[auth]`` (``[auth.google]``, ``[auth.okta]``), in order; empty for one unnamed."""
    auth = (secrets or {}).get("auth") or {}
    return [name for name, value in auth.items() if isinstance(value, Mapping)]


def pages_for(identity: Identity) -> set[str]:
    """Page keys this person may open (see :data:`PAGE_ROLES`)."""
    return {page for page, role in PAGE_ROLES.items() if role in identity.roles}
