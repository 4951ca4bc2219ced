"""The application database: engine factory and schema migrations.

SQLite (the embedded default) gets WAL mode and a busy timeout so the app and
a concurrent ``onboard ingest`` do not trip over each other, and syncs to disk
at checkpoints rather than at every commit (``synchronous=NORMAL``); PostgreSQL is
used as configured. The schema is shaped only by Alembic migrations in
``onboard/migrations``; ``upgrade`` brings any database to the newest one.

The SQLite file holds every question and answer: it is created readable by
its owner only (0600; SQLite gives its ``-wal`` and ``-shm`` files the same
mode), in folders created 0700 (:func:`private_dir`; ``mkdir -p`` would make
them 0755). A database file of ours that others can read is tightened to
0600 too. A folder that already exists is left as it is: the data folder may
be one the operator chose and shares, and the files in it are private anyway.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

MIGRATIONS = Path(__file__).parent / "migrations"
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
#: Files SQLite keeps next to a database in WAL mode.
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")

log = logging.getLogger(__name__)


def private_dir(path: Path) -> Path:
    """``path`` as a folder, each level created here made 0700 (existing ones are left alone); returns ``path``."""
    missing = [folder for folder in (path, *path.parents) if not folder.exists()]
    for folder in reversed(missing):  # outermost first
        folder.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
        folder.chmod(PRIVATE_DIR_MODE)  # exactly, whatever the umask
    return path


def _ours(path: Path) -> bool:
    """Whether this process's user owns ``path`` (root does not take over other people's files)."""
    geteuid = getattr(os, "geteuid", None)
    return geteuid is not None and path.stat().st_uid == geteuid()


def private_sqlite_file(path: Path) -> None:
    """Create the SQLite file 0600 before SQLite does (with the umask: 0644), and tighten ours that others can read."""
    private_dir(path.parent)
    # Never open an existing database file here: closing any descriptor of a file drops every POSIX lock this
    # process holds on it, SQLite's included. Another process (an `onboard ingest`, a backup) then believes it
    # is the last connection, deletes the WAL and its shared memory on exit, and this process's connections
    # fail with "disk I/O error" (seen under benchmarks/load.py's lock fault).
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE))  # an empty file is an empty db
    except FileExistsError:
        pass
    for file in (path, *(path.with_name(path.name + suffix) for suffix in SQLITE_SIDE_FILES)):
        if file.exists() and _ours(file) and stat.S_IMODE(file.stat().st_mode) & 0o077:
            file.chmod(PRIVATE_FILE_MODE)
            log.warning("%s could be read by other users: now readable by its owner only (0600)", file)


def make_engine(url: str) -> Engine:
    """An engine for ``url``; creates a SQLite file (and its folder) readable by its owner only."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
        private_sqlite_file(Path(parsed.database))
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # In WAL mode NORMAL is crash-safe for the app (a killed process loses nothing committed); only a power cut
        # or an OS crash may lose the last commits. FULL syncs the disk on every commit, and the commits of a chat
        # turn are serialised: 50 concurrent users on one process ran 36.6 turns/s with FULL, 60.4 with NORMAL.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


def _alembic_config(engine: Engine):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply every migration up to ``revision``."""
    from alembic import command

    command.upgrade(_alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
