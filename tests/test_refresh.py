# ruff: noqa: F811  (the fixtures imported from test_chat_app and test_dashboard_page are parameters here)
"""Keeping the index fresh (issue #19 item 4): ``--watch``, ``onboard worker`` and the dashboard's "Index" tab.

The watch runs on real ``watchfiles`` notifications driven by files the test
writes, the schedule on a fake clock (no sleeping), two real ``onboard worker``
processes on one SQLite or PostgreSQL database, and the dashboard through AppTest.
Waits are bounded; nothing asserts on how long anything took.
"""

from __future__ import annotations

import itertools
import os
import queue
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import pytest
from helpers_kb import HANDBOOK, embedded_texts, manifest, runs, write_docs
from test_chat_app import _fresh_resources, data_dir, indexed_handbook, ok  # noqa: F401
from test_dashboard_page import audited_dashboard, open_tab  # noqa: F401
from typer.testing import CliRunner

from assistant.indexlock import IndexBusy
from assistant.ingest import ingest
from assistant.manifest import IngestRun
from assistant.refresh import Schedule, run_schedule, watch
from onboard.cli import app
from onboard.settings import Settings

WAIT_S = 120  # bound on any wait for a run: a failure, never a measurement


# --- the watch -------------------------------------------------------------------------------------------------

def _watching(root, run, **timing):
    """Start :func:`watch` on ``root`` in a thread; returns the stop event and the thread."""
    stop = threading.Event()
    thread = threading.Thread(target=watch, args=([root], run), kwargs={"stop": stop, **timing}, daemon=True)
    thread.start()
    return stop, thread


def _next(reports: queue.Queue):
    try:
        return reports.get(timeout=WAIT_S)
    except queue.Empty:
        pytest.fail(f"no indexing run within {WAIT_S} s of a change")


def _settle(root, reports: queue.Queue) -> None:
    """Write a file until a run indexes it (the watcher is then running), then write one more file once and wait
    for the run that indexes it: every earlier change has then been consumed, and the watch is quiet."""
    path = root / "sync.md"
    for attempt in range(WAIT_S * 4):
        path.write_text(f"# Sync\n\nSync {attempt}.\n", encoding="utf-8")
        try:
            reports.get(timeout=0.25)
            break
        except queue.Empty:
            continue
    else:
        pytest.fail("the watcher never reported a change")
    (root / "settled.md").write_text("# Settled\n\nQuiet from here.\n", encoding="utf-8")
    while "settled.md" not in _next(reports).added:
        pass


def test_a_file_saved_twice_within_the_debounce_is_indexed_once_with_its_final_content(
        tmp_path, store, fake_embeddings, engine):
    root = write_docs(tmp_path / "docs", {"intro.md": "# Intro\n\nWelcome aboard.\n"})
    ingest([root], store=store, embeddings=fake_embeddings, engine=engine)  # what `onboard ingest` did first
    reports: queue.Queue = queue.Queue()

    def run(roots):
        report = ingest(roots, store=store, embeddings=fake_embeddings, engine=engine)
        reports.put(report)
        return report

    stop, thread = _watching(root, run, step_ms=3000, debounce_ms=30_000)
    try:
        _settle(root, reports)
        before = len(runs(engine, store.name))
        fake_embeddings.calls.clear()

        page = root / "parking.md"
        page.write_text("# Parking\n\nPark in the south garage.\n", encoding="utf-8")
        stop.wait(0.3)  # an editor saving again a moment later, well within the window
        page.write_text("# Parking\n\nPark in the north garage, level 2.\n", encoding="utf-8")
        first = _next(reports)
        (root / "bikes.md").write_text("# Bikes\n\nBikes go in the basement.\n", encoding="utf-8")
        second = _next(reports)
    finally:
        stop.set()
        thread.join(timeout=WAIT_S)

    assert not thread.is_alive()
    assert (first.added, first.changed) == (["parking.md"], [])
    # The next run is the next change's: no second run came from the second save.
    assert (second.added, second.changed, second.unchanged) == (["bikes.md"], [], 4)
    assert len(runs(engine, store.name)) == before + 2
    texts = " ".join(embedded_texts(fake_embeddings))
    assert "north garage, level 2" in texts and "south garage" not in texts
    assert manifest(engine, store.name)["parking.md"].size == page.stat().st_size


def test_the_watch_ignores_hidden_and_template_files(tmp_path, store, fake_embeddings, sqlite_engine):
    root = write_docs(tmp_path / "docs", {"intro.md": "# Intro\n\nWelcome.\n"})
    reports: queue.Queue = queue.Queue()
    stop, thread = _watching(root, lambda roots: reports.put(
        ingest(roots, store=store, embeddings=fake_embeddings, engine=sqlite_engine)), step_ms=500)
    try:
        _settle(root, reports)
        write_docs(root, {".draft.md": "# Draft\n", "_layouts/page.html": "<p>x</p>"})
        (root / "after.md").write_text("# After\n\nThe next real change.\n", encoding="utf-8")
        report = _next(reports)
    finally:
        stop.set()
        thread.join(timeout=WAIT_S)
    assert report.added == ["after.md"]  # the only run; a hidden file or a template would have made one first
    assert reports.empty()


# --- the schedule ---------------------------------------------------------------------------------------------

class FakeClock:
    """Time that moves only when the code under test sleeps or a run says it took a while."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_the_schedule_runs_each_source_at_start_then_on_its_grid():
    clock, stop, ran = FakeClock(), threading.Event(), []

    def run(index: int):
        ran.append((index, clock.now - 1000))
        clock.now += 5 if index == 0 else 1  # each run takes a little time
        if len(ran) >= 9:
            stop.set()

    run_schedule([60, 150], run, stop=stop, clock=clock, sleep=clock.sleep)

    # Both at the start; then source 0 at 60, 120, 180, ... and source 1 at 150, 300 (after source 0, due then
    # too): no drift from the time runs take.
    assert ran == [(0, 0), (1, 5), (0, 60), (0, 120), (1, 150), (0, 180), (0, 240), (0, 300), (1, 305)]
    assert all(s > 0 for s in clock.sleeps)


def test_a_run_that_overruns_skips_the_ticks_it_missed():
    schedule = Schedule([60], start=0)
    assert schedule.due(0) == [0]
    schedule.ran(0, now=200)  # the run took 200 s: ticks 60, 120 and 180 are gone
    assert schedule.next_at == [240]
    assert schedule.due(239) == [] and schedule.wait_s(239) == 1
    with pytest.raises(ValueError):
        Schedule([0], start=0)


def test_a_busy_collection_is_skipped_until_the_next_tick_and_errors_do_not_stop_the_worker():
    clock, stop, outcomes = FakeClock(), threading.Event(), []
    plan = iter([IndexBusy("busy"), RuntimeError("embedding service down"), "report"])

    def run(index: int):
        result = next(plan)
        if isinstance(result, Exception):
            raise result
        stop.set()
        return result

    run_schedule([60], run, stop=stop, clock=clock, sleep=clock.sleep,
                 on_outcome=lambda o: outcomes.append((clock.now - 1000, o.busy, str(o.error or ""), o.report)))

    assert outcomes == [(0, True, "", None), (60, False, "embedding service down", None), (120, False, "", "report")]


def test_setting_stop_ends_the_wait_of_the_real_schedule():
    stop = threading.Event()
    thread = threading.Thread(target=run_schedule, args=([3600], lambda i: None), kwargs={"stop": stop}, daemon=True)
    thread.start()
    stop.set()  # the worker is waiting an hour for its next tick
    thread.join(timeout=WAIT_S)
    assert not thread.is_alive()


# --- the settings ---------------------------------------------------------------------------------------------

def test_sources_are_read_from_json(monkeypatch, tmp_path):
    monkeypatch.setenv("ONBOARD_INGEST__SOURCES", f'[{{"paths": ["{tmp_path}"], "every_minutes": 15}},'
                                                  f' {{"paths": ["{tmp_path}"], "every_minutes": 0.5, "collection": "help"}}]')
    first, second = Settings().ingest.sources
    assert (first.paths, first.every_minutes, first.collection) == ([tmp_path], 15, None)
    assert (second.every_minutes, second.collection) == (0.5, "help")
    assert Settings.model_fields["ingest"].default.sources == []


@pytest.mark.parametrize("value, message", [
    ('[{"paths": ["docs"], "every_minutes": 0}]',
     "invalid setting ONBOARD_INGEST__SOURCES (item 1, every_minutes): Input should be greater than 0"),
    ('[{"paths": [], "every_minutes": 5}]',
     "invalid setting ONBOARD_INGEST__SOURCES (item 1, paths): List should have at least 1 item"),
    ('[{"paths": ["docs"], "every_minutes": 5}, {"paths": ["docs"], "evry_minutes": 5}]',
     "invalid setting ONBOARD_INGEST__SOURCES (item 2, evry_minutes): Extra inputs are not permitted"),
    ('[{"paths": ["docs"], "every_minutes": 5, "collection": "x"}]',
     "invalid setting ONBOARD_INGEST__SOURCES (item 1, collection)"),
    ('[{"paths": ["docs"], every_minutes: 5}]', "cannot parse ONBOARD_INGEST__SOURCES"),
    ('[]', "no sources to keep fresh: set ONBOARD_INGEST__SOURCES"),
    ('[{"paths": ["nowhere"], "every_minutes": 5}]', "ONBOARD_INGEST__SOURCES names paths that do not exist: nowhere"),
])
def test_the_worker_refuses_bad_sources_with_a_clear_message(value, message, tmp_path):
    (tmp_path / "docs").mkdir()  # the working directory
    result = CliRunner().invoke(app, ["worker"], env={"COLUMNS": "200", "ONBOARD_INGEST__SOURCES": value})
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


# --- two workers on one database ---------------------------------------------------------------------------------

def test_two_workers_on_one_database_never_index_a_collection_at_the_same_time(
        tmp_path, api_embeddings, database_url, engine, monkeypatch):
    root = write_docs(tmp_path / "docs", {**HANDBOOK, **{f"extra-{i}.md": f"# Extra {i}\n\nPage {i}.\n" * 40
                                                         for i in range(30)}})
    monkeypatch.setenv("ONBOARD_DATABASE_URL", database_url)
    monkeypatch.setenv("ONBOARD_INGEST__SOURCES", f'[{{"paths": ["{root}"], "every_minutes": 0.01}}]')
    workers = [subprocess.Popen([sys.executable, "-m", "onboard.cli", "worker"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=os.environ.copy()) for _ in range(2)]
    try:
        done = threading.Event()

        def watch_rows() -> None:
            while not done.wait(0.5):
                finished = [r for r in runs(engine, "handbook") if r.status == "completed"]
                if len(finished) >= 8 or any(w.poll() is not None for w in workers):
                    done.set()

        poller = threading.Thread(target=watch_rows, daemon=True)
        poller.start()
        poller.join(timeout=300)
        assert done.is_set(), "the workers did not complete 8 runs"
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        outputs = [worker.communicate(timeout=WAIT_S) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    for worker, (out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err
        assert "stopped" in err
        assert "keeping 1 source(s) fresh" in err
    recorded = sorted(runs(engine, "handbook"), key=lambda r: r.started_at)
    printed = sum(out.count("source 1 (handbook): run ") for out, _ in outputs)
    assert 8 <= printed <= len(recorded), outputs  # one line per run (a run stopped by SIGTERM prints none)
    assert recorded[0].added == len(HANDBOOK) + 30
    assert sum(r.added for r in recorded) == len(HANDBOOK) + 30  # indexed once, not once per worker
    for earlier, later in itertools.pairwise(recorded):
        assert earlier.finished_at is not None and earlier.finished_at <= later.started_at, (earlier, later)
    assert {r.status for r in recorded} <= {"completed", "interrupted"}


# --- the dashboard ---------------------------------------------------------------------------------------------

def test_the_dashboard_lists_the_last_index_runs_with_their_failures_as_text(audited_dashboard):
    at, session = audited_dashboard
    now = datetime.now(UTC)
    session.add(IngestRun(collection="handbook", started_at=now - timedelta(hours=3), finished_at=now - timedelta(hours=3),
                          status="completed", added=12, unchanged=0, index_version=4))
    session.add(IngestRun(collection="handbook", started_at=now - timedelta(hours=1), finished_at=now - timedelta(hours=1),
                          status="completed", changed=2, removed=1, unchanged=9, failed=1, index_version=5,
                          failures=[{"source": "bad.pdf", "reason": "**not a PDF** [x](javascript:alert(1)) <b>"}]))
    session.add(IngestRun(collection="support", started_at=now - timedelta(minutes=5), status="running"))
    for minutes in range(30):  # older runs beyond the last 20
        session.add(IngestRun(collection="old", started_at=now - timedelta(days=2, minutes=minutes), status="completed"))
    session.commit()

    at = open_tab(at, "Index")
    table = next(df.value for df in at.dataframe if "index_version" in df.value.columns)
    assert len(table) == 20
    top = table.head(3)[["collection", "status", "added", "changed", "removed", "unchanged", "failed", "index_version"]]
    assert top.values.tolist() == [["support", "running", 0, 0, 0, 0, 0, 0],
                                   ["handbook", "complete", 0, 2, 1, 9, 1, 5],
                                   ["handbook", "complete", 12, 0, 0, 0, 0, 4]]
    assert table["failures"].iloc[1] == "bad.pdf: **not a PDF** [x](javascript:alert(1)) <b>"
    assert set(table["collection"].iloc[3:]) == {"old"}
    assert not [m for m in at.markdown if "<b>" in m.value and m.allow_html]
