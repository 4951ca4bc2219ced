"""``onboard batch``: answer a file of questions from a shell, with a progress bar, resumable.

A module of its own so that ``onboard/cli.py`` only registers the command;
what a row is, how ids are made and how a killed run resumes are
:mod:`service.batch`'s rules, and every question goes through the service
layer (:func:`onboard.factories.make_chat_service`) like the page's and the
API's. The bar and the rows that could not be answered go to standard error;
the summary line to standard output.

Exit codes: 0 every row answered, 1 some rows failed or were invalid (they are
in the output with their reason; failed ones are asked again by the next run),
2 the run could not start (unreadable input, wrong --out, settings),
130 stopped by Ctrl-C or SIGTERM (run the same command again to continue).
"""

from __future__ import annotations

import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

STOPPED_EXIT = 130


def batch(
    file: Annotated[Path, typer.Argument(help="The questions: .jsonl (\"question\", optional \"id\" per line) or "
                                         ".csv (a question column, optional id column).", exists=True,
                                         dir_okay=False)],
    out: Annotated[Path, typer.Option("--out", help="The answers, one JSON line per question. If it exists, the "
                                      "run resumes it: rows answered are skipped.", dir_okay=False)],
    groups: Annotated[str, typer.Option(help="Comma-separated groups to ask as: they decide which documents "
                                        "the answers may use (audience).")] = "",
    team: Annotated[str, typer.Option(help="The team the questions are charged to.")] = "unassigned",
) -> None:
    """Answer every question of FILE against the live index and write one JSON line per question to OUT.

    Each row is asked in a conversation of its own as "Batch (TEAM)" (user batch:TEAM),
    on channel batch, reading only the documents whose audience is all, employee or one
    of --groups. Output rows: id, question, answer, band, abstained, citations (n, title,
    section, source, url), latency_ms, status, conversation_id, message_id, error, batch.

    Rows without an id get q- and a hash of the question. Interrupted (Ctrl-C, SIGTERM,
    a crash), the same command continues where it stopped: rows in OUT are skipped, rows
    that failed are asked again, a half-written last line is repaired. Rows that cannot
    be asked (no question, too long, broken JSON) are written as invalid with the reason.
    """
    from onboard import factories
    from onboard.cli import _fail, _friendly_errors, _settings
    from service.batch import BatchError, batch_identity, run_batch

    with _friendly_errors():
        try:
            who = batch_identity(team=team, groups=groups.split(","))
            settings = _settings()
            service = factories.make_chat_service(settings)
            with _stop_on_sigterm(), _progress() as (started, answered):
                summary = run_batch(service, who, file, out, on_start=started, on_row=answered)
        except BatchError as exc:
            _fail(str(exc))
        except KeyboardInterrupt:
            typer.secho(f"stopped: the rows answered are in {out}; run the same command again to continue.",
                        fg=typer.colors.YELLOW, err=True)
            raise typer.Exit(code=STOPPED_EXIT) from None
    done = f"{summary.answered} answered"
    if summary.invalid:
        done += f", {summary.invalid} invalid"
    if summary.failed:
        done += f", {summary.failed} failed (asked again by the next run)"
    typer.echo(f"{done}, {summary.skipped} already in {out}: {summary.total} rows in {file.name}")
    if summary.invalid or summary.failed:
        raise typer.Exit(code=1)


@contextmanager
def _progress():
    """A bar on standard error (only on a terminal) and one line there per row that was not answered."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True, highlight=False)
    columns = (TextColumn("answering"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task("", total=None)

        def started(todo: int, output) -> None:
            if output.repaired:
                console.print(f"{output.path}: removed a half-written last line (its row is asked again)",
                              style="yellow", markup=False, soft_wrap=True)
            if dropped := sum(output.dropped.values()):
                console.print(f"{output.path}: {dropped} row(s) that failed or were invalid are tried again",
                              style="yellow", markup=False, soft_wrap=True)
            bar.update(task, total=todo)

        def answered(question, row) -> None:
            if row["status"] == "invalid":
                console.print(f"invalid {row['id']}: {row['error']}", style="yellow", markup=False, soft_wrap=True)
            elif row["status"] not in ("complete", "abstained", "interrupted"):
                console.print(f"{row['status']} {row['id']}: {row['error']}", style="red", markup=False, soft_wrap=True)
            bar.advance(task)

        yield started, answered


@contextmanager
def _stop_on_sigterm():
    """SIGTERM (``docker stop``, systemd, a scheduler's timeout) stops the run as Ctrl-C does."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
