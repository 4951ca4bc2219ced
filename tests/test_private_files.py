"""The data folder, the database and the index are readable by their owner only.

A fresh data folder is created 0700 at every level (``mkdir -p`` gave 0755),
the SQLite file and its ``-wal``/``-shm`` 0600, the local Chroma folder 0700.
A database file of ours that others could read is tightened; an existing
folder is left as it is (it may be shared on purpose). Modes are read with
``os.stat``, which tells the truth when the tests run as root too (``os.access``
would not).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from sqlalchemy import text

from assistant.vectors import ChromaLocation, make_client
from onboard import db, factories
from onboard.settings import Settings


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_sqlite_database_and_its_folders_are_private(tmp_path):
    path = tmp_path / "data" / "deeper" / "onboard.db"
    engine = db.make_engine(f"sqlite:///{path}")
    db.upgrade(engine)
    with engine.connect() as connection:  # an open connection in WAL mode keeps -wal and -shm
        connection.execute(text("CREATE TABLE IF NOT EXISTS probe (x INTEGER)"))
        connection.execute(text("INSERT INTO probe VALUES (1)"))
        connection.commit()
        side_files = [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]
        assert all(f.exists() for f in side_files)
        assert {f.name: mode(f) for f in [path, *side_files]} == {
            "onboard.db": 0o600, "onboard.db-wal": 0o600, "onboard.db-shm": 0o600}
    engine.dispose()
    assert (mode(tmp_path / "data"), mode(tmp_path / "data" / "deeper")) == (0o700, 0o700)


def test_the_default_data_folder_of_a_first_start_is_private(tmp_path, monkeypatch):
    made = {}

    class FakeOnnx:  # stands in for the local model, which would quantise itself into cache_dir
        def __init__(self, spec, *, threads, cache_dir):
            made["cache_dir"] = cache_dir

    monkeypatch.setattr(factories, "OnnxEmbeddings", FakeOnnx)
    monkeypatch.delenv("ONBOARD_EMBEDDING__CACHE_DIR")  # the default: inside the data folder
    settings = Settings(data_dir=tmp_path / "fresh" / "data")
    factories.make_embeddings(settings)  # the first thing a start makes: the model cache inside the data folder
    assert made["cache_dir"] == tmp_path / "fresh" / "data" / "models"
    assert [mode(p) for p in (tmp_path / "fresh", tmp_path / "fresh" / "data", made["cache_dir"])] == [0o700] * 3
    factories.make_engine(settings).dispose()
    assert mode(tmp_path / "fresh" / "data" / "onboard.db") == 0o600


def test_a_local_chroma_folder_is_private(tmp_path):
    client = make_client(ChromaLocation(path=tmp_path / "data" / "chroma"))
    client.get_or_create_collection("probe")
    assert (mode(tmp_path / "data"), mode(tmp_path / "data" / "chroma")) == (0o700, 0o700)


def test_an_existing_database_of_ours_is_tightened_and_an_existing_folder_left_alone(tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    path = folder / "onboard.db"
    db.upgrade(db.make_engine(f"sqlite:///{path}"))
    path.chmod(0o644)
    wal = path.with_name(path.name + "-wal")
    wal.write_bytes(b"")
    wal.chmod(0o664)
    db.make_engine(f"sqlite:///{path}").dispose()
    assert (mode(path), mode(wal), mode(folder)) == (0o600, 0o600, 0o755)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="only root can give a file away")
def test_root_leaves_a_database_owned_by_someone_else_as_it_is(tmp_path):
    path = tmp_path / "theirs.db"
    db.upgrade(db.make_engine(f"sqlite:///{path}"))
    path.chmod(0o640)
    os.chown(path, 65534, 65534)  # nobody
    db.make_engine(f"sqlite:///{path}").dispose()
    assert mode(path) == 0o640 and os.stat(path).st_uid == 65534


def test_sqlite_connections_use_wal_with_normal_sync_and_a_busy_timeout(tmp_path):
    """WAL + synchronous=NORMAL: crash-safe for the app, no disk sync per commit (see onboard/db.py)."""

    engine = db.make_engine(f"sqlite:///{tmp_path / 'app.db'}")
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 30000
    engine.dispose()


def test_another_engine_on_the_same_file_keeps_this_process_s_sqlite_locks(tmp_path):
    """Opening and closing the database file drops every POSIX lock the process holds on it, SQLite's too: a
    second process that then exits thinks it was the last connection, deletes the WAL and the shared memory,
    and this process's connections fail with "disk I/O error" (ratings were lost under a lock fault)."""
    import subprocess
    import sys

    from sqlalchemy import text

    path = tmp_path / "app.db"
    engine = db.make_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (x INTEGER)"))
    held = engine.connect()
    assert held.execute(text("SELECT count(*) FROM t")).scalar() == 0
    held.commit()
    db.make_engine(f"sqlite:///{path}").dispose()  # what a second factory call in the same process does
    writer = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('INSERT INTO t VALUES (1)'); " \
             "c.commit(); c.close()"
    subprocess.run([sys.executable, "-c", writer, str(path)], check=True, timeout=60)
    assert path.with_name("app.db-wal").exists()  # not removed under this process's feet
    assert held.execute(text("SELECT count(*) FROM t")).scalar() == 1
    held.close()
    engine.dispose()
