"""Keeping the index fresh without anyone running ``onboard ingest``: watching folders, and a schedule.

Two ways, both ending in a normal incremental run of :func:`assistant.ingest.ingest`
(which takes the collection's indexing lock, so one process indexes a collection at
a time, and records a ``kb_run`` row):

* :func:`watch` (``onboard ingest --watch``) waits for files under the paths to
  change and runs once per burst of changes. The waiting and the grouping are
  ``watchfiles``'s (OS notifications, with polling where there are none): a burst
  ends after ``step_ms`` without a change, or ``debounce_ms`` after it began, so a
  file saved twice in a row is indexed once. Changes made during a run are kept
  and start the next run. A run covers the watched paths, not only the files
  named: unchanged files are skipped by their hash, and a deleted or renamed file
  is removed, as ``onboard ingest`` would.
* :class:`Schedule` and :func:`run_schedule` (``onboard worker``) run each
  configured source at start and then every ``every_minutes``, on a fixed grid
  from the start (a run that overruns skips the ticks it missed rather than
  running them back to back). The clock and the wait are parameters, so tests
  drive time instead of sleeping. When another process holds the lock, the run
  is skipped (``IndexBusy``) and the source tried again at its next tick: that
  process is refreshing the index already, and a queue of waiting workers would
  only repeat its work.

What one run does (which store, which embeddings) is the caller's: this module
takes a function, so it stays free of settings, Streamlit and FastAPI.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from assistant.indexlock import IndexBusy

log = logging.getLogger(__name__)

#: Default burst handling of ``--watch``: a burst ends after this long without a change ...
STEP_MS = 1500
#: ... or this long after its first change, whichever comes first.
DEBOUNCE_MS = 10_000


def _indexable(root_paths: Sequence[Path]) -> Callable[[object, str], bool]:
    """watchfiles' default filter (editor swap files, ``.git``, ``__pycache__``), plus what
    :func:`assistant.ingest.discover` leaves out: hidden files and folders, and folders starting with ``_``."""
    import watchfiles

    default = watchfiles.DefaultFilter()

    def accept(change, path: str) -> bool:
        if not default(change, path):
            return False
        file = Path(path)
        for root in root_paths:
            folder = root if root.is_dir() else root.parent
            if file == root or file.is_relative_to(folder):
                parts = file.relative_to(folder).parts
                return not any(p.startswith(".") for p in parts) and not any(p.startswith("_") for p in parts[:-1])
        return False

    return accept


def changes(paths: Iterable[Path], *, step_ms: int = STEP_MS, debounce_ms: int = DEBOUNCE_MS,
            stop: threading.Event | None = None) -> Iterator[set[str]]:
    """The files changed under ``paths``, one set per burst of changes, until ``stop`` is set."""
    import watchfiles

    roots = [Path(p).resolve() for p in paths]
    for batch in watchfiles.watch(*roots, watch_filter=_indexable(roots), step=step_ms, debounce=debounce_ms,
                                  stop_event=stop, raise_interrupt=False):
        yield {path for _, path in batch}


def watch(paths: Iterable[Path], run: Callable[[list[Path]], object], *, step_ms: int = STEP_MS,
          debounce_ms: int = DEBOUNCE_MS, stop: threading.Event | None = None,
          on_changes: Callable[[set[str]], None] | None = None) -> int:
    """Call ``run(paths)`` once per burst of changes under ``paths`` until ``stop`` is set; the number of runs.

    An error of one run (say the embedding service is down) is logged and the watch goes on;
    the next change tries again.
    """
    roots = [Path(p).resolve() for p in paths]
    count = 0
    for changed in changes(roots, step_ms=step_ms, debounce_ms=debounce_ms, stop=stop):
        if on_changes is not None:
            on_changes(changed)
        try:
            run(roots)
        except IndexBusy as exc:  # only when the caller asked not to wait
            log.warning("%s", exc)
        except Exception as exc:
            log.error("re-indexing failed (%s); waiting for the next change", exc)
            log.info("details", exc_info=True)
        count += 1
    return count


class Schedule:
    """When each source runs next: at the start, then on a grid of its interval from the start."""

    def __init__(self, intervals_s: Sequence[float], start: float) -> None:
        if any(not s > 0 for s in intervals_s):
            raise ValueError("every interval must be above zero")
        self.start = start
        self.intervals = list(intervals_s)
        self.next_at = [start] * len(intervals_s)

    def due(self, now: float) -> list[int]:
        """The sources whose time has come, in configured order."""
        return [i for i, at in enumerate(self.next_at) if at <= now]

    def ran(self, index: int, now: float) -> None:
        """Source ``index`` ran (or was skipped) and it is now ``now``: its next tick is the first grid point after it."""
        every = self.intervals[index]
        ticks = math.floor((now - self.start) / every) + 1
        self.next_at[index] = self.start + ticks * every

    def wait_s(self, now: float) -> float:
        """Seconds until the next source is due (0 when one is)."""
        return max(0.0, min(self.next_at, default=math.inf) - now)


@dataclass
class Outcome:
    """What happened to one scheduled run: its report, or that it was skipped or failed."""

    index: int
    report: object | None = None
    busy: bool = False
    error: BaseException | None = None


def run_schedule(intervals_s: Sequence[float], run: Callable[[int], object], *,
                 stop: threading.Event, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], object] | None = None,
                 on_outcome: Callable[[Outcome], None] | None = None) -> None:
    """Run ``run(index)`` for each source when due, until ``stop`` is set.

    ``run`` should not wait for the indexing lock (``wait=False``): a source whose
    collection another process is indexing is skipped until its next tick. Any other
    error is reported and the schedule goes on. ``sleep`` defaults to waiting on ``stop``,
    so setting it ends the wait at once.
    """
    sleep = sleep or stop.wait
    schedule = Schedule(intervals_s, clock())
    while not stop.is_set():
        for index in schedule.due(clock()):
            if stop.is_set():
                return
            outcome = Outcome(index)
            try:
                outcome.report = run(index)
            except IndexBusy:
                outcome.busy = True
            except Exception as exc:
                outcome.error = exc
                log.info("scheduled indexing of source %d failed", index + 1, exc_info=True)
            schedule.ran(index, clock())
            if on_outcome is not None:
                on_outcome(outcome)
        if not stop.is_set():
            sleep(schedule.wait_s(clock()))
