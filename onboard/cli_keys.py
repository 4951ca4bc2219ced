"""``onboard keys``: create, list and revoke the REST API's keys from a shell.

A separate Typer app, added to ``onboard`` as ``keys``, so that the key
commands sit in one small module; the storage rules (hashing, cleaning,
limits) are :mod:`feedback.keys`'. The database is opened as every other
command opens it (the settings, then :func:`onboard.factories.make_engine`,
which migrates the embedded SQLite database; PostgreSQL needs ``onboard db
upgrade``). The secret of a new key is printed once, alone on standard output
(``KEY=$(onboard keys create ...)`` captures it); what the key is and the
warning that it cannot be shown again go to standard error. Nothing prints a
key's hash.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated

import typer

keys_app = typer.Typer(help="Create, list and revoke the REST API's keys.", no_args_is_help=True)

LIST_COLUMNS = ("id", "prefix", "name", "team", "groups", "on_behalf", "rate/min", "created", "expires",
                "last used", "revoked")


@contextmanager
def _session() -> Iterator:
    """A session on the configured database, inside the CLI's friendly errors (storage refusals included)."""
    from sqlmodel import Session

    from feedback.store import FeedbackError
    from onboard import factories
    from onboard.cli import _fail, _friendly_errors, _settings

    with _friendly_errors():
        engine = factories.make_engine(_settings())
        try:
            with Session(engine) as session:
                yield session
        except FeedbackError as error:
            _fail(str(error))
        finally:
            engine.dispose()


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "-"


def _shown(prefix: str) -> str:
    return f"onb_{prefix}…"


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Option(help="What the key is for (a bot, an integration).")],
    team: Annotated[str, typer.Option(help="The team the key's usage and cost are counted for.")],
    groups: Annotated[str, typer.Option(help="Comma-separated groups: the documents the key may read.")] = "",
    expires_days: Annotated[int | None, typer.Option(min=1, help="Refuse the key this many days from now.")] = None,
    on_behalf: Annotated[bool, typer.Option("--on-behalf", help="May ask on behalf of a person (X-On-Behalf-Of).")]
    = False,
    rate_per_minute: Annotated[int | None, typer.Option(min=1, help="Requests per minute (default: settings).")]
    = None,
    created_by: Annotated[str, typer.Option(help="Who is creating it, as recorded with the key.")] = "cli",
) -> None:
    """Create a key and print it once: it cannot be shown again."""
    from feedback import keys

    with _session() as session:
        key, secret = keys.create_key(
            session, name=name, team=team, groups=[group for group in groups.split(",")], expires_days=expires_days,
            on_behalf=on_behalf, rate_per_minute=rate_per_minute, created_by=created_by)
        details = [f"groups: {', '.join(key.groups) or 'none'}", f"expires: {_when(key.expires_at)}",
                   f"{key.rate_per_minute or 'default'} requests/minute"]
        if key.on_behalf:
            details.append("may ask on behalf of a person")
        typer.echo(f"created API key {key.id} ({key.name}) for team {key.team}: {'; '.join(details)}", err=True)
    typer.echo(secret)
    typer.secho("Store this key now: it cannot be shown again (only its hash is kept).", err=True,
                fg=typer.colors.YELLOW)


@keys_app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per key instead of a table.")] = False,
) -> None:
    """List every key, revoked and expired ones too (never the key itself nor its hash)."""
    from feedback import keys

    with _session() as session:
        rows = [{
            "id": key.id, "prefix": _shown(key.prefix), "name": key.name, "team": key.team, "groups": key.groups,
            "on_behalf": key.on_behalf, "rate_per_minute": key.rate_per_minute, "state": keys.state(key),
            "created": key.created_at, "created_by": key.created_by, "expires": key.expires_at,
            "last_used": key.last_used_at, "revoked": key.revoked_at,
        } for key in keys.list_keys(session)]
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row, default=lambda value: value.isoformat(), ensure_ascii=False))
        return
    if not rows:
        typer.echo("no API keys (create one with `onboard keys create --name NAME --team TEAM`)")
        return
    table = [LIST_COLUMNS, *([
        str(row["id"]), row["prefix"], row["name"], row["team"], ",".join(row["groups"]) or "-",
        "yes" if row["on_behalf"] else "no", str(row["rate_per_minute"] or "default"), _when(row["created"]),
        _when(row["expires"]) + (" (expired)" if row["state"] == "expired" else ""), _when(row["last_used"]),
        _when(row["revoked"]),
    ] for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(LIST_COLUMNS))]
    for line in table:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


@keys_app.command("revoke")
def revoke(key_id: Annotated[int, typer.Argument(help="The key's id (see `onboard keys list`).")]) -> None:
    """Refuse a key from now on (its record stays, for the list and the usage figures)."""
    from feedback import keys

    with _session() as session:
        before = keys.get_key(session, key_id).revoked_at
        key = keys.revoke_key(session, key_id)
        if before is not None:
            typer.echo(f"API key {key.id} ({key.name}, {_shown(key.prefix)}) was already revoked on "
                       f"{_when(key.revoked_at)}")
        else:
            typer.echo(f"revoked API key {key.id} ({key.name}, {_shown(key.prefix)})")
