"""Secrets never reach the log: configured values and token shapes are redacted from messages and tracebacks.

Records go through real handlers and the standard formatter into a string, so
what is asserted is what a log file would hold. ``test_login_browser`` checks
the same during a real ``streamlit run``: a model endpoint echoing the key in
its error.
"""

from __future__ import annotations

import io
import logging

import pytest
from pydantic import SecretStr

from onboard import logs
from onboard.logs import REDACTED, RedactSecrets, install, secrets_of
from onboard.settings import Settings

KEY = "northwind-answers-7Kq2Vb9Lm4Xz"  # no shape of its own: only the configured value can be found
EMBEDDING_KEY = "emb-key-55Jd0aPq"
CHROMA_TOKEN = "chroma-tok-Wm3Rt8"


def logged(logger_name: str, emit, redactor: RedactSecrets | None) -> str:
    """What a handler with the standard formatter writes for the records ``emit(logger)`` makes."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    if redactor is not None:
        handler.addFilter(redactor)
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        emit(logger)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    return out.getvalue()


def provider_error(logger: logging.Logger) -> None:
    """A provider's error that quotes the key, logged with its traceback as the app does."""
    try:
        try:
            raise RuntimeError(f"Error code: 401 - Incorrect API key provided: {KEY}")
        except RuntimeError as cause:
            raise ValueError(f"chat model failed, key={KEY}") from cause
    except ValueError as exc:
        logger.exception("chat model failed: %s", exc)  # noqa: TRY401  (the message must be redacted too)


def test_a_configured_key_is_redacted_from_the_message_and_the_traceback():
    text = logged("test.logs.provider", provider_error, RedactSecrets([KEY]))
    assert KEY not in text
    assert f"chat model failed: chat model failed, key={REDACTED}" in text
    assert f"RuntimeError: Error code: 401 - Incorrect API key provided: {REDACTED}" in text
    assert "Traceback (most recent call last)" in text and "The above exception was the direct cause" in text


def test_without_the_filter_the_key_is_in_the_log():
    """The test above is not vacuous: the record holds the key in both places."""
    assert logged("test.logs.provider", provider_error, None).count(KEY) == 3


@pytest.mark.parametrize(("text", "kept"), [
    ("Incorrect API key provided: sk-proj-abcDEF1234567890xyz", "Incorrect API key provided: sk-"),
    ("headers: {'Authorization': 'Bearer eyJhbGciOi.J9eyJzdWIi.OiIxMjM0'}", "'Authorization': 'Bearer "),
    ("GET /v1/models?api_key=Zz81hdk2Kq&x=1", "GET /v1/models?api_key="),
    ('{"api-key": "Zz81hdk2Kq", "model": "gpt-4o-mini"}', '{"api-key": "'),
    ("client_secret=onboard-client-123 and password: hunter22", "client_secret="),
    ("cannot connect to postgresql+psycopg://app:Pg-pass-9@db:5432/onboard", "postgresql+psycopg://app:"),
    ("token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhZGEifQ.c2lnbmF0dXJl in the cookie", "token "),
    ("Authorization: Basic YWxhZGRpbjpvcGVuc2VzYW1l", "Authorization: Basic "),
    ("X-API-Key header was onb_Qm9vLXNlY3JldC1rZXk and it failed", "X-API-Key header was onb_"),
])
def test_common_token_shapes_are_redacted_whoever_configured_them(text, kept):
    redacted = RedactSecrets().redact(text)
    assert kept + REDACTED in redacted, redacted
    for secret in ("abcDEF1234567890xyz", "Zz81hdk2Kq", "onboard-client-123", "hunter22", "Pg-pass-9",
                   "c2lnbmF0dXJl", "YWxhZGRpbjpvcGVuc2VzYW1l", "OiIxMjM0", "Qm9vLXNlY3JldC1rZXk"):
        assert secret not in redacted


def test_ordinary_text_and_short_values_are_left_alone():
    redactor = RedactSecrets(["s", "abc", KEY])
    text = "max_tokens=512, 3 tokens left; the secret handshake; cookie_secret is shorter than 32 characters"
    assert redactor.redact(text) == text
    assert redactor.secrets == (KEY,)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "answered %s in %d ms", ("q1", 12), None)
    assert redactor.filter(record) and (record.msg, record.args) == ("answered %s in %d ms", ("q1", 12))


def test_a_secret_redacted_once_is_not_redacted_again_into_brackets():
    redactor = RedactSecrets([KEY])
    once = redactor.redact(f"api_key={KEY} Bearer {KEY}")
    assert once == f"api_key={REDACTED} Bearer {REDACTED}"
    assert redactor.redact(once) == once


def test_a_record_whose_arguments_do_not_fit_is_still_redacted():
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed %s %s", (KEY,), None)
    RedactSecrets([KEY]).filter(record)
    assert KEY not in record.getMessage()


def test_secrets_of_lists_the_configured_keys_tokens_and_passwords():
    settings = Settings(
        answer={"api_key": KEY},
        embedding={"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": EMBEDDING_KEY},
        chroma_token=CHROMA_TOKEN,
        database_url="postgresql+psycopg://app:Pg-pass-9@db:5432/onboard",
        rollout={"features": {"gpt5": {"answer": {"model": "gpt-5", "api_key": "rollout-key-7Hq"}}}},
    )
    auth = {"auth": {"cookie_secret": "cookie-k7Qz2mV9pL4w", "redirect_uri": "https://x/oauth2callback",
                     "staff": {"client_id": "onboard", "client_secret": "staff-client-s3cr"}}}
    found = set(secrets_of(settings, auth))
    assert {KEY, EMBEDDING_KEY, CHROMA_TOKEN, "Pg-pass-9", "rollout-key-7Hq", "cookie-k7Qz2mV9pL4w",
            "staff-client-s3cr"} <= found
    assert not found & {"onboard", "https://x/oauth2callback", "gpt-5", "http://127.0.0.1:9/v1"}
    assert secrets_of(Settings()) == []


def test_configured_secrets_come_from_the_environment_and_survive_invalid_settings(monkeypatch):
    monkeypatch.setenv("ONBOARD_ANSWER__API_KEY", KEY)
    assert logs.configured_secrets() == [KEY]
    monkeypatch.setenv("ONBOARD_RETRIEVAL__K", "abc")
    assert logs.configured_secrets() == []  # the command reports the invalid setting itself


@pytest.fixture
def clean_logging():
    """Whatever install() changes in this process is put back."""
    root = logging.getLogger()
    factory, handlers, installed = logging.getLogRecordFactory(), list(root.handlers), logs._installed
    filters = {h: list(h.filters) for h in handlers}
    logs._installed = None
    yield
    logging.setLogRecordFactory(factory)
    root.handlers[:] = handlers
    for handler, kept in filters.items():
        handler.filters[:] = kept
    logs._installed = installed


def test_install_covers_root_handlers_and_loggers_with_their_own(clean_logging):
    """Streamlit's loggers have their own handlers and do not propagate: their records are redacted too."""
    out = io.StringIO()
    root_handler = logging.StreamHandler(out)
    logging.getLogger().addHandler(root_handler)
    install([KEY])
    assert any(isinstance(f, RedactSecrets) for f in root_handler.filters)
    own = logged("test.logs.streamlit_like", provider_error, None)  # a handler without the filter
    logging.getLogger("test.logs.app").warning("the model said: %s", KEY)
    assert KEY not in own and REDACTED in own
    assert KEY not in out.getvalue() and f"the model said: {REDACTED}" in out.getvalue()


def test_installing_again_replaces_the_secrets_and_adds_no_second_filter(clean_logging):
    root_handler = logging.StreamHandler(io.StringIO())
    logging.getLogger().addHandler(root_handler)
    first = install([KEY])
    second = install([EMBEDDING_KEY])
    assert first is second and second.secrets == (EMBEDDING_KEY,)
    assert sum(isinstance(f, RedactSecrets) for f in root_handler.filters) == 1


def test_install_gives_a_root_without_handlers_one(clean_logging):
    root = logging.getLogger()
    root.handlers[:] = []
    install([KEY])
    assert len(root.handlers) == 1 and any(isinstance(f, RedactSecrets) for f in root.handlers[0].filters)


def test_secret_str_values_are_found_in_nested_models():
    from pydantic import BaseModel

    class Inner(BaseModel):
        token: SecretStr

    class Outer(BaseModel):
        inner: list[Inner]

    assert list(logs._secret_values(Outer(inner=[Inner(token="deep-token-9")]))) == ["deep-token-9"]


def test_a_command_s_error_message_is_printed_without_the_key(clean_logging, capsys):
    """`onboard` prints provider errors itself (not through logging): they are redacted too."""
    import typer

    from onboard import cli, logs

    key = "live-0123456789abcdefXYZ"
    logs.install([key])
    with pytest.raises(typer.Exit):
        cli._fail(f"Chroma refused the request: invalid token {key}")
    printed = capsys.readouterr().err
    assert key not in printed and "invalid token [redacted]" in printed
