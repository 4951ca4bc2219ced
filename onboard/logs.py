"""Keep secrets out of the log.

Provider errors echo what they were sent: an OpenAI-compatible endpoint that
refuses a key answers "Incorrect API key provided: sk-…", an HTTP client puts
the ``Authorization`` header or a URL with its password into its exception.
Logged as a warning or a traceback, that lands in ``docker logs`` and in
whatever collects them. People only ever see short messages; the log must not
hold the keys either.

:class:`RedactSecrets` is a logging filter that rewrites each record it sees:
its message (with its arguments) and its exception and stack text, where every
configured secret value, and every token of a common shape (``sk-…``,
``Bearer …``, ``api_key=…``, a URL's password, a JWT), becomes
``[redacted]``. A record with nothing to hide is left untouched.
:func:`install` puts one filter on the root logger's handlers and passes every
new record through it, so records of loggers with handlers of their own
(Streamlit's, which do not propagate) are redacted too; installing again only
replaces the secret values. :func:`secrets_of` lists the secret values of the
settings and of the ``[auth]`` login secrets.

A formatter that renders ``exc_info`` itself, ignoring ``exc_text``, would
bypass the filter; the standard library's do not.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pydantic import BaseModel, SecretStr
from sqlalchemy.engine import make_url

REDACTED = "[redacted]"
#: Shorter configured values are not searched for: they would blot out ordinary words (and are weak anyway).
MIN_SECRET_CHARS = 6
#: Secret keys of ``[auth]`` and of each ``[auth.<provider>]`` section.
AUTH_SECRET_KEYS = ("cookie_secret", "client_secret")

#: Tokens recognisable by their shape, whoever configured them. Each keeps what says what it is (``Bearer``,
#: ``api_key=``) and loses the value.
_SHAPES = [
    re.compile(r"\b(sk-)[A-Za-z0-9_\-]{8,}"),  # OpenAI-style keys: sk-..., sk-proj-..., sk-ant-...
    re.compile(r"\b(onb_)[A-Za-z0-9_\-]{8,}"),  # this app's own API keys (feedback/keys.py), wherever they show up
    re.compile(r"\b((?:Bearer|Basic)\s+)[A-Za-z0-9._~+/=\-]{8,}", re.IGNORECASE),
    re.compile(r"\b((?:client[_-]?secret|cookie[_-]?secret|api[_-]?key|apikey|access[_-]?token|refresh[_-]?token|"
               r"id[_-]?token|auth[_-]?token|token|secret|password|passwd|pwd)[\"']?\s*[:=]\s*[\"']?)"
               r"[^\s\"'&,;{}\[\]]+", re.IGNORECASE),
    re.compile(r"(://[^\s/:@]+:)[^\s/@]+(?=@)"),  # the password of scheme://user:password@host
    re.compile(r"()\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*"),  # a JWT (ID or access token)
]


#: Names under which a plain mapping holds a secret value.
_SECRET_NAME = re.compile(r"key|secret|token|password", re.IGNORECASE)


class RedactSecrets(logging.Filter):
    """Replaces configured secret values and token-shaped strings in a record's message and exception text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = secrets

    @property
    def secrets(self) -> tuple[str, ...]:
        return self._secrets

    @secrets.setter
    def secrets(self, values: Iterable[str]) -> None:
        kept = {v for v in (str(v).strip() for v in values) if len(v) >= MIN_SECRET_CHARS}
        self._secrets = tuple(sorted(kept, key=len, reverse=True))  # a secret that contains another goes first
        self._literal = re.compile("|".join(map(re.escape, self._secrets))) if self._secrets else None

    def redact(self, text: str) -> str:
        """``text`` with every secret value and token-shaped string replaced by ``[redacted]``."""
        if self._literal is not None:
            text = self._literal.sub(REDACTED, text)
        for shape in _SHAPES:
            text = shape.sub(lambda m: m.group(1) + REDACTED, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001  (arguments that do not fit the message: logging reports that itself)
            message = f"{record.msg} {record.args!r}"
        if (redacted := self.redact(message)) != message:
            record.msg, record.args = redacted, None
        if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


_installed: RedactSecrets | None = None


def redact(text: str) -> str:
    """``text`` as the log would hold it (the installed secret values and token shapes removed), for messages a
    command prints itself."""
    return (_installed or RedactSecrets()).redact(text)


def install(secrets: Iterable[str] = ()) -> RedactSecrets:
    """Redact ``secrets`` and token shapes from every record of this process from now on.

    The filter goes on the root logger's handlers (a standard-error handler is
    added first if root has none, so the application's warnings are formatted
    and filtered rather than printed by logging's last resort), and the record
    factory passes each new record through it: loggers with their own handlers
    are covered too. Calling it again replaces the secret values only.
    """
    global _installed
    if _installed is None:
        _installed = RedactSecrets(secrets)
        root = logging.getLogger()
        if not root.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            root.addHandler(handler)
        _redact_new_records(_installed)
    else:
        _installed.secrets = secrets
    for handler in logging.getLogger().handlers:
        if _installed not in handler.filters:
            handler.addFilter(_installed)
    return _installed


def _redact_new_records(redactor: RedactSecrets) -> None:
    make_record = logging.getLogRecordFactory()

    def redacted_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        redactor.filter(record)
        return record

    logging.setLogRecordFactory(redacted_record)


def configured_secrets() -> list[str]:
    """:func:`secrets_of` the settings as configured now; none when they do not validate (the command says why)."""
    from onboard.settings import Settings

    try:
        return secrets_of(Settings())
    except Exception:  # noqa: BLE001  (invalid settings are reported by the command itself, as one clear line)
        return []


def secrets_of(settings: BaseModel | None, auth_secrets: Mapping[str, Any] | None = None) -> list[str]:
    """The secret values to keep out of the log: every ``SecretStr`` of the settings (API keys, the Chroma
    token, rollout overrides), the database URL's password, and the ``[auth]`` cookie and client secrets."""
    found = list(_secret_values(settings)) if settings is not None else []
    database_url = getattr(settings, "database_url", None)
    if database_url:
        try:
            password = make_url(database_url).password
        except Exception:  # noqa: BLE001  (an unparsable URL holds no password we could find)
            password = None
        if password:
            found.append(str(password))
    auth = (auth_secrets or {}).get("auth") or {}
    for section in (auth, *(v for v in auth.values() if isinstance(v, Mapping))):
        found += [str(section[key]) for key in AUTH_SECRET_KEYS if section.get(key)]
    return found


def _secret_values(value: Any) -> Iterator[str]:
    if isinstance(value, SecretStr):
        yield value.get_secret_value()
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _secret_values(getattr(value, name))
    elif isinstance(value, Mapping):  # e.g. a rollout feature's answer overrides: {"api_key": "..."}
        for key, item in value.items():
            if isinstance(item, str) and _SECRET_NAME.search(str(key)):
                yield item
            else:
                yield from _secret_values(item)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from _secret_values(item)
