"""The ``onboard`` command: index documents, evaluate retrieval, manage the database, run the app.

Every command reads the same settings (``ONBOARD_*`` environment variables or
``.env``); ``onboard COMMAND --help`` describes each one.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from assistant.errors import AssistantError
from onboard import logs
from onboard.cli_batch import batch
from onboard.cli_keys import keys_app

app = typer.Typer(
    help="Onboarding assistant: answers new employees from the company's own documents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Manage the application database.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.command("batch")(batch)

log = logging.getLogger("onboard")


def _settings(**overrides):
    from onboard.settings import Settings

    return Settings(**overrides)


def _fail(message: str) -> None:
    # Errors quote what providers answered, which may echo a key: printed as the log would hold them.
    typer.secho(f"error: {logs.redact(message)}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


@contextmanager
def _friendly_errors():
    """Configuration and connection errors become one or two lines; ``--verbose`` logs the traceback."""
    from chromadb.errors import ChromaError
    from pydantic import ValidationError
    from pydantic_settings import SettingsError
    from sqlalchemy.exc import DBAPIError

    try:
        yield
    except AssistantError as exc:
        _fail(str(exc))
    except (ValidationError, SettingsError, DBAPIError, ChromaError, ValueError) as exc:
        if isinstance(exc, ValidationError):
            message = _invalid_settings(exc)
        elif isinstance(exc, SettingsError):
            message = _unparsable_setting(exc)
        elif isinstance(exc, DBAPIError):
            reason = str(exc.orig or exc).strip().splitlines()[0]
            message = f"cannot use the database (ONBOARD_DATABASE_URL): {reason}"
        elif isinstance(exc, ChromaError):
            message = f"Chroma refused the request: {exc}"
        elif "Chroma" in str(exc):  # chromadb's HttpClient raises a bare ValueError when the server is down
            message = f"cannot reach the Chroma server (ONBOARD_CHROMA_URL): {exc}"
        else:
            raise
        log.info("details", exc_info=True)
        _fail(message + "\n(run `onboard --verbose ...` for the details)")


def _invalid_settings(exc) -> str:
    lines = []
    for error in exc.errors():
        loc = list(error["loc"])
        item = next((i for i, part in enumerate(loc) if isinstance(part, int)), None)
        name = "ONBOARD_" + "__".join(str(part) for part in loc[:item]).upper()
        if item is not None:  # an entry of a JSON list, e.g. ONBOARD_INGEST__SOURCES's second source
            name += f" (item {loc[item] + 1}{', ' if loc[item + 1:] else ''}{'.'.join(map(str, loc[item + 1:]))})"
        if isinstance(error.get("input"), dict):  # a group's own check, e.g. answer mode llm without a key
            name += "__*"
        if name == "ONBOARD_COLLECTION":
            name += " (or --collection)"
        got = f" (got {error['input']!r})" if isinstance(error.get("input"), (str, int, float)) else ""
        lines.append(f"invalid setting {name}: {error['msg'].removeprefix('Value error, ')}{got}")
    return "\n".join(lines)


def _unparsable_setting(exc) -> str:
    """pydantic-settings names the group (``ingest``), not the variable: find the value that is not JSON."""
    field = re.search(r'field "(\w+)"', str(exc))
    prefix = f"ONBOARD_{field.group(1).upper() if field else ''}"
    suspects = []
    for name, value in os.environ.items():
        if name.upper().startswith(prefix):
            try:
                json.loads(value)
            except ValueError:
                suspects.append(name)
    where = ", ".join(sorted(suspects)) or f"a {prefix}__* value (environment or .env)"
    return f"cannot parse {where}: lists and mappings must be written as JSON, e.g. '{{\"hr\": [\"hr\"]}}' ({exc.__cause__ or exc})"


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log details to stderr.")] = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logs.install(logs.configured_secrets())  # no API key, token or password in what is logged
    logging.getLogger("bm25s").setLevel(logging.WARNING)


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to index.", exists=True)],
    rebuild: Annotated[bool, typer.Option(help="Drop the index first (needed after changing the embedding model).")] = False,
    prune: Annotated[bool, typer.Option(help="Remove indexed files that are not under these paths.")] = False,
    collection: Annotated[str | None, typer.Option(help="Collection to index into (default: settings).")] = None,
    wait: Annotated[
        bool, typer.Option(help="When another run is indexing the collection, wait for it (--no-wait: exit at once).")
    ] = True,
    watch: Annotated[
        bool, typer.Option("--watch", help="After this run, keep watching the paths and re-index as files change "
                           "(Ctrl-C to stop).")
    ] = False,
    quiet_ms: Annotated[
        int, typer.Option(min=50, help="--watch: re-index once files have been quiet this long (milliseconds).")
    ] = 1500,
    debounce_ms: Annotated[
        int, typer.Option(min=100, help="--watch: ... or at the latest this long after the first change.")
    ] = 10_000,
) -> None:
    """Index documents (Markdown, text, HTML, PDF, DOCX); unchanged files are skipped.

    Folders are walked recursively; hidden files and folders starting with "." or "_"
    (site templates) are left out. Citations show paths relative to the folder given,
    or, for a path inside a folder indexed before, to that folder. The sample handbook
    indexed by the first `onboard serve` is removed when you index your own documents.
    One run indexes a collection at a time (across processes and machines sharing the
    database); a run whose process died is marked interrupted by the next one.

    With --watch, the command then stays running: each burst of changes under the paths
    (saved files, new, deleted or renamed ones) starts one more incremental run, printed
    as one line; a file saved twice in a row is indexed once.
    """
    from assistant.indexlock import index_lock
    from assistant.ingest import ingest as run_ingest
    from assistant.ingest import rebuilt_store
    from assistant.vectors import make_client
    from onboard import factories

    def waiting(name: str) -> None:
        typer.secho(f"another run is indexing the collection {name!r}: waiting for it to finish (Ctrl-C to stop)",
                    fg=typer.colors.YELLOW, err=True)

    retire = _retired_with(paths)
    with _friendly_errors():
        settings = _settings(**({"collection": collection} if collection else {}))
        embeddings = factories.make_embeddings(settings)
        client = make_client(factories.chroma_location(settings))
        engine = factories.make_engine(settings)
        with index_lock(engine, settings.collection, wait=wait, on_wait=waiting) as lock:  # --rebuild too
            if rebuild:
                store = rebuilt_store(client, engine, settings.collection, embeddings.model_id)
            else:
                store = factories.make_store(settings, embeddings, client)
            report = _with_progress(
                lambda progress: run_ingest(
                    paths,
                    store=store,
                    embeddings=embeddings,
                    engine=engine,
                    options=factories.ingest_options(settings),
                    progress=progress,
                    prune=prune,
                    retire=retire,
                    lock=lock,
                )
            )
    _print_report(report)
    if watch:
        def again(roots: list[Path]):
            store.reopen()  # another process may have written to a local Chroma folder since
            report = _with_progress(lambda progress: run_ingest(
                roots, store=store, embeddings=embeddings, engine=engine, options=factories.ingest_options(settings),
                progress=progress, prune=prune, retire=retire, wait=wait, on_wait=waiting))
            _print_report(report)
            return report

        _watch(paths, again, quiet_ms=quiet_ms, debounce_ms=debounce_ms)


def _retired_with(paths: list[Path]) -> list[Path]:
    """The sample handbook, removed from the index when these paths are indexed, unless they hold it."""
    from onboard import factories

    sample = factories.SAMPLE_HANDBOOK.resolve()
    given = [Path(p).resolve() for p in paths]
    keep_sample = any(p == sample or sample in p.parents or p in sample.parents for p in given)
    return [] if keep_sample else [sample]


def _print_report(report, prefix: str = "") -> None:
    """What ``onboard ingest`` prints about a run: warnings on stderr, then one summary line."""
    from onboard import factories

    sample = factories.SAMPLE_HANDBOOK.resolve()
    for run_id in report.interrupted_runs:
        typer.secho(f"run {run_id} had stopped before it finished (its process died): marked interrupted",
                    fg=typer.colors.YELLOW, err=True)
    for source, reason in sorted(report.failed.items()):
        typer.secho(f"skipped {source}: {reason}", fg=typer.colors.YELLOW, err=True)
    typer.echo(
        f"{prefix}run {report.run_id}: {len(report.added)} added, {len(report.changed)} changed, "
        f"{len(report.removed)} removed, {report.unchanged} unchanged, {len(report.failed)} failed, "
        f"{len(report.skipped)} not supported; chunks +{report.chunks_added} -{report.chunks_removed}; "
        f"index version {report.index_version}"
    )
    retired = [p for p in report.pruned if Path(p).is_relative_to(sample)]
    if retired:
        typer.echo(f"removed the sample handbook ({len(retired)} files) from the index")
    if len(report.pruned) > len(retired):
        typer.echo(f"removed {len(report.pruned) - len(retired)} files outside these paths")
    if report.outside:
        typer.secho(
            f"The index also holds {len(report.outside)} files outside these paths (e.g. {report.outside[0]}); "
            "remove them with `onboard ingest --prune PATH...` or re-index with --rebuild",
            fg=typer.colors.YELLOW, err=True,
        )


@contextmanager
def _stoppable():
    """SIGTERM (``docker stop``, systemd) stops the command as Ctrl-C does: a run under way is marked
    interrupted and its lock released (the next run completes it); then the command exits with 0."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    except KeyboardInterrupt:
        typer.echo("stopped", err=True)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _watch(paths: list[Path], again, *, quiet_ms: int, debounce_ms: int) -> None:
    from assistant.refresh import watch

    typer.echo(f"watching {', '.join(str(p) for p in paths)} for changes (Ctrl-C to stop)", err=True)
    with _stoppable():
        watch(paths, again, step_ms=quiet_ms, debounce_ms=max(debounce_ms, quiet_ms),
              on_changes=lambda changed: log.info("changed: %s", ", ".join(sorted(changed))))


@app.command()
def worker() -> None:
    """Keep the index fresh: index each source of ONBOARD_INGEST__SOURCES at start and then every
    every_minutes, until stopped (Ctrl-C or SIGTERM).

    Example: ONBOARD_INGEST__SOURCES='[{"paths": ["/srv/handbook"], "every_minutes": 15}]'
    (optional "collection" per source). Each run is an incremental `onboard ingest` of the
    source's paths, printed as one line. When another process is indexing the collection,
    the source is skipped until its next tick. Sources are never pruned: a file removed
    from a source's folder is removed from the index, files of other sources stay.
    """
    import threading
    from datetime import datetime

    from assistant.ingest import ingest as run_ingest
    from assistant.refresh import run_schedule
    from assistant.vectors import make_client
    from onboard import factories

    with _friendly_errors():
        settings = _settings()
        sources = settings.ingest.sources
        if not sources:
            _fail('no sources to keep fresh: set ONBOARD_INGEST__SOURCES, e.g. '
                  '\'[{"paths": ["/srv/handbook"], "every_minutes": 15}]\'')
        missing = [str(p) for source in sources for p in source.paths if not p.exists()]
        if missing:
            _fail(f"ONBOARD_INGEST__SOURCES names paths that do not exist: {', '.join(missing)}")
        embeddings = factories.make_embeddings(settings)
        client = make_client(factories.chroma_location(settings))
        engine = factories.make_engine(settings)
    stores = {}

    def run(index: int):
        source = sources[index]
        configured = settings.model_copy(update={"collection": source.collection or settings.collection})
        if configured.collection not in stores:
            stores[configured.collection] = factories.make_store(configured, embeddings, client)
        store = stores[configured.collection]
        store.reopen()  # another process may have written to a local Chroma folder since the last run
        return run_ingest(source.paths, store=store, embeddings=embeddings, engine=engine,
                          options=factories.ingest_options(configured), retire=_retired_with(source.paths), wait=False)

    def said(outcome) -> None:
        source = sources[outcome.index]
        prefix = f"{datetime.now().astimezone():%Y-%m-%d %H:%M:%S} source {outcome.index + 1} " \
                 f"({source.collection or settings.collection}): "
        if outcome.report is not None:
            _print_report(outcome.report, prefix)
        elif outcome.busy:
            typer.secho(f"{prefix}another process is indexing this collection: skipped until the next run in "
                        f"{source.every_minutes:g} min", fg=typer.colors.YELLOW, err=True)
        else:
            typer.secho(f"{prefix}failed: {logs.redact(str(outcome.error))} (tried again in "
                        f"{source.every_minutes:g} min)", fg=typer.colors.RED, err=True)

    typer.echo(f"keeping {len(sources)} source(s) fresh (Ctrl-C to stop)", err=True)
    with _stoppable():
        run_schedule([s.every_minutes * 60 for s in sources], run, stop=threading.Event(), on_outcome=said)
    engine.dispose()


def _with_progress(work):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("indexing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), TextColumn("{task.description}"))
    with Progress(*columns, transient=True, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task("", total=None)

        def progress(source: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, description=source[-50:])

        return work(progress)


@app.command("eval")
def evaluate(
    dataset: Annotated[Path, typer.Option(help="JSONL questions with gold_files.", exists=True, dir_okay=False)],
    corpus: Annotated[Path, typer.Option(help="Folder the gold_files are relative to.", exists=True, file_okay=False)],
    retriever: Annotated[str, typer.Option(help="hybrid, dense or keyword.")] = "hybrid",
    k: Annotated[int, typer.Option(help="Passages retrieved per question.", min=1)] = 5,
    out: Annotated[Path | None, typer.Option(help="Also write the figures and per-question rows here.")] = None,
    calibrate: Annotated[
        float | None,
        typer.Option(help="Also print the abstention threshold that answers this share (0 to 1) of answerable questions."),
    ] = None,
    answers: Annotated[
        bool,
        typer.Option(
            "--answers",
            help="Also run the answerer on every question (quote_hit_rate, bands, citations, length, turn latency).",
        ),
    ] = False,
    groups: Annotated[
        str | None,
        typer.Option(help='Ask as a user in these comma-separated groups (documents for "all" plus theirs); '
                     "default: no filter."),
    ] = None,
    compare: Annotated[
        tuple[Path, Path] | None,
        typer.Option(
            help="Two env files (ONBOARD_* lines) A and B: run both configurations on the same questions, with "
            "answers, and print each figure side by side with B - A and McNemar's exact test. Their lines "
            "take precedence over the environment and .env.",
            exists=True, dir_okay=False, show_default=False,
        ),
    ] = None,
) -> None:
    """Index CORPUS into a fresh temporary store and measure retrieval and abstention on DATASET."""
    from assistant.evaluation import calibrate as run_calibration
    from assistant.evaluation import compare as run_compare
    from assistant.evaluation import load_dataset

    if retriever not in ("hybrid", "dense", "keyword"):
        _fail("--retriever must be hybrid, dense or keyword")
    if calibrate is not None and not 0 < calibrate <= 1:
        _fail(f"--calibrate must be a share of the answerable questions, above 0 and at most 1 (got {calibrate})")
    if calibrate is not None and compare:
        _fail("--calibrate and --compare cannot be combined: calibrate each configuration on its own")
    where = None
    if groups is not None:
        where = {"audience": sorted({"all", *(g.strip() for g in groups.split(",") if g.strip())})}
    try:
        cases = load_dataset(dataset)
    except ValueError as exc:
        _fail(str(exc))
    for env_file in compare or ():
        foreign = [key for key in _env_lines(env_file) if not key.upper().startswith("ONBOARD_")]
        if foreign:
            _fail(f"{env_file}: not ONBOARD_ settings: {', '.join(foreign)}")
    run = _EvalRun(cases=cases, dataset=dataset, corpus=corpus, retriever=retriever, k=k, where=where)
    with _friendly_errors(), tempfile.TemporaryDirectory(prefix="onboard-eval-") as tmp:
        if not compare:
            summary, rows = run.measure(_eval_settings(Path(tmp), None), answers=answers)
            if calibrate is not None:
                summary["calibration"] = run_calibration(rows, calibrate)
            typer.echo(json.dumps(summary))
            if out:
                out.write_text(json.dumps({"summary": summary, "questions": rows}, indent=1), encoding="utf-8")
            return
        first, second = (_eval_settings(Path(tmp) / side, env) for side, env in zip("ab", compare, strict=True))
        if first.model_dump(exclude={"data_dir"}) == second.model_dump(exclude={"data_dir"}):
            typer.secho(f"warning: {compare[0]} and {compare[1]} configure the same settings", fg="yellow", err=True)
        summary_a, rows_a = run.measure(first, answers=True)
        summary_b, rows_b = run.measure(second, answers=True)
    result = {
        "a": {"env": str(compare[0]), "settings": _env_lines(compare[0]), "summary": summary_a},
        "b": {"env": str(compare[1]), "settings": _env_lines(compare[1]), "summary": summary_b},
        "shared_index": run.indexed == 1,
        **run_compare(summary_a, rows_a, summary_b, rows_b),
    }
    typer.echo(json.dumps(result))
    if out:
        written = result | {"questions": {"a": rows_a, "b": rows_b}}
        out.write_text(json.dumps(written, indent=1), encoding="utf-8")


def _eval_settings(data_dir: Path, env_file: Path | None):
    """Settings for an evaluation in ``data_dir``: the configured ones, or those ``env_file`` overrides."""
    configured = _settings_from(env_file)  # the configured model, and the folder its quantised copy is kept in
    return _settings_from(
        env_file, data_dir=data_dir, database_url=None, chroma_path=None, chroma_url=None, collection="eval",
        embedding=configured.embedding, answer=configured.answer, retrieval=configured.retrieval,
    )


def _settings_from(env_file: Path | None, **overrides):
    """:class:`Settings`, with ``env_file``'s lines (when given) before the environment and ``.env``."""
    from pydantic_settings import DotEnvSettingsSource

    from onboard.settings import Settings

    if env_file is None:
        return Settings(**overrides)

    class FromFile(Settings):
        @classmethod
        def settings_customise_sources(
            cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
        ):
            from_file = DotEnvSettingsSource(settings_cls, env_file=env_file)
            return init_settings, from_file, env_settings, dotenv_settings, file_secret_settings

    return FromFile(**overrides)


_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|DATABASE_URL", re.IGNORECASE)


def _env_lines(env_file: Path) -> dict[str, str | None]:
    """The settings an env file sets, secrets' values hidden: what a comparison was between."""
    from dotenv import dotenv_values

    values = dotenv_values(env_file)
    return {key: "***" if value and _SECRET_NAME.search(key) else value for key, value in values.items()}


class _EvalRun:
    """One dataset on one corpus, measured under one or more settings; the corpus is indexed once per
    embedding and ingest configuration."""

    def __init__(self, *, cases, dataset: Path, corpus: Path, retriever: str, k: int, where) -> None:
        self.cases, self.dataset, self.corpus = cases, dataset, corpus
        self.retriever, self.k, self.where = retriever, k, where
        self._indexes: dict[str, tuple] = {}

    @property
    def indexed(self) -> int:
        return len(self._indexes)

    def measure(self, settings, *, answers: bool) -> tuple[dict, list[dict]]:
        from assistant.evaluation import evaluate as run_eval
        from assistant.evaluation import evaluate_answers, summarise_with_history
        from onboard import factories

        embeddings, store, report = self._index(settings)
        kb = factories.make_knowledge_base(settings, embeddings, store)
        summary, rows = run_eval(kb, self.cases, mode=self.retriever, k=self.k, where=self.where)
        if answers:
            kb.config = kb.config.model_copy(update={"mode": self.retriever})
            assistant = factories.make_assistant(settings, kb)
            answer_summary, answer_rows = evaluate_answers(assistant, self.cases, where=self.where)
            summary |= answer_summary
            rows = [r | {"answer": a} for r, a in zip(rows, answer_rows, strict=True)]
        followups = summarise_with_history(rows)
        summary = {"retriever": self.retriever, "k": self.k, "embedding_model": embeddings.model_id,
                   "audiences": self.where["audience"] if self.where else None, **summary,
                   "corpus_files_failed": len(report.failed)}
        if followups is not None:
            summary["with_history"] = followups
        return summary, rows

    def _index(self, settings):
        from assistant.ingest import ingest as run_ingest
        from onboard import factories

        options = factories.ingest_options(settings)
        key = json.dumps([settings.embedding.model_dump(mode="json"), repr(options)], sort_keys=True, default=str)
        if key not in self._indexes:
            embeddings = factories.make_embeddings(settings)
            store = factories.make_store(settings, embeddings)
            engine = factories.make_engine(settings, migrate=True)
            report = _with_progress(
                lambda progress: run_ingest(
                    [self.corpus], store=store, embeddings=embeddings, engine=engine, options=options, progress=progress,
                )
            )
            engine.dispose()
            _check_gold_files(self.cases, report.added, self.dataset, self.corpus)
            self._indexes[key] = (embeddings, store, report)
        return self._indexes[key]


def _check_gold_files(cases, indexed: list[str], dataset: Path, corpus: Path) -> None:
    """Warn about gold files the corpus did not yield; fail when it yielded none (a wrong --corpus)."""
    from assistant.evaluation import missing_gold_files

    gold = {g for case in cases for g in case.gold_files}
    missing = missing_gold_files(cases, indexed)
    if gold and len(missing) == len(gold):
        _fail(
            f"none of the {len(gold)} gold files of {dataset} was indexed from {corpus} (e.g. {missing[0]}); "
            "--corpus must be the folder the gold_files are relative to"
        )
    if missing:
        typer.secho(
            f"warning: {len(missing)} of the {len(gold)} gold files are missing or unreadable in {corpus}, "
            f"so their questions cannot score: {', '.join(missing)}",
            fg=typer.colors.YELLOW, err=True,
        )


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply the database migrations (PostgreSQL in production; SQLite upgrades itself)."""
    from onboard import db

    with _friendly_errors():
        settings = _settings()
        engine = db.make_engine(settings.database_url)
        db.upgrade(engine, revision)
        typer.echo(f"database at revision {db.current_revision(engine)}")


@db_app.command("purge")
def db_purge(
    older_than_days: Annotated[int, typer.Option(min=0, help="Remove conversations deleted more than this many days ago.")] = 30,
) -> None:
    """Remove deleted conversations for good, with their messages, ratings and triage."""
    from datetime import timedelta

    from sqlmodel import Session

    from feedback.models import utcnow
    from feedback.store import purge_deleted
    from onboard import factories

    with _friendly_errors(), Session(factories.make_engine(_settings())) as session:
        purged = purge_deleted(session=session, before=utcnow() - timedelta(days=older_than_days))
    typer.echo(f"purged {purged} deleted conversation(s)")


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8501,
    address: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
) -> None:
    """Start the web app, with the REST API under /api/v1 on the same port (indexes the sample handbook first if
    the index is empty)."""

    from onboard import factories

    with _friendly_errors():
        settings = _settings()
        engine = factories.make_engine(settings)  # the embedded database is migrated before the app starts
        knowledge_base = factories.bootstrap_knowledge_base(  # not warmed: the app's own process answers
            settings, on_first_index=lambda folder: typer.echo(f"indexing the sample handbook ({folder}) ..."),
            warm=False,
        )
        if settings.support.enabled:  # the Help panel's documentation, indexed now rather than on the first page
            desk = factories.make_support_desk(settings, knowledge_base, engine)
            if desk.last_report is not None and (desk.last_report.added or desk.last_report.changed):
                typer.echo(f"indexed the help documentation ({desk.folder})")
        engine.dispose()
    # asgi.py serves streamlit_app.py's pages and mounts the REST API beside them, on the same port (/api/v1).
    candidates = [Path.cwd() / "asgi.py", Path(__file__).resolve().parent.parent / "asgi.py"]
    app_file = next((path for path in candidates if path.is_file()), None)
    if app_file is None:
        _fail("asgi.py not found: run `onboard serve` from the project folder")
    command = [sys.executable, "-m", "streamlit", "run", str(app_file), "--server.address", address,
               "--server.port", str(port), "--browser.gatherUsageStats", "false"]
    sys.stdout.flush()
    # Streamlit takes this process's place, so a stop signal (`docker stop`, systemd, Ctrl-C) reaches it directly.
    os.execv(sys.executable, command)


@app.command("api")
def serve_api(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    address: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
) -> None:
    """Serve only the REST API under /api/v1 (no pages): for deployments that want the API alone."""
    import uvicorn

    from api.app import standalone
    from onboard import factories

    with _friendly_errors():
        settings = _settings()
        service = factories.make_chat_service(
            settings, on_first_index=lambda folder: typer.echo(f"indexing the sample handbook ({folder}) ..."))
    typer.echo(f"API on http://{address}:{port}/api/v1 (docs: /api/v1/docs)")
    uvicorn.run(standalone(settings, service=lambda: service), host=address, port=port, log_level="info",
                log_config=None)


if __name__ == "__main__":
    app()
