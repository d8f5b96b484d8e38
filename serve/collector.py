"""The server's garbage collection, kept out of the searches' way.

A full pass of Python's collector walks every object the process tracks, and a server's grow with what it
keeps: compiled statements (SQLAlchemy's cache), prepared searches (`serve.app.PREPARED_SEARCHES`). Left to
itself, the collector ran a full pass whenever those had grown by a quarter, each in the middle of some
search and longer than the last: eleven in a server's first 650 requests on 1M photos, the last ones
240-270 ms (bench/RESULTS.md). So what has lived through a request is frozen as the request ends
(`gc.freeze`: automatic passes skip it, and the young generations stay small). The frozen objects get a
full pass only at a pause (no request for `IDLE_S`) once they have grown by `IDLE_GROWTH` (Python's own
rule, moved to a pause), or, under load that never pauses, every `PASS_EVERY` requests (so memory stays
bounded). Not at every pause: a person who clicks again just then would wait up to 300 ms, and only about
1% of what is frozen was garbage (cycles that died after being frozen: an evicted cache entry). Counting the
frozen objects walks them all (5 ms at 700,000), so it is done once a pause, or when a pass is overdue,
never between requests under load. Objects freed by their reference count are freed at once, frozen or not.
"""

from __future__ import annotations

import gc
import threading
import time

#: Seconds without a request after which the frozen objects may be collected in full,
IDLE_S = 2.0
#: if they grew by this share of what the last full pass kept.
IDLE_GROWTH = 0.25
#: Requests after which a full pass runs, idle or not: what the caches hold is bounded, and garbage came to
#: about 10 objects a search, so this many leave about a million (some 100 MB) for it.
PASS_EVERY = 100_000


class Collector:
    """Freezes after each request; collects in full in a daemon thread once requests pause (or memory grows)."""

    def __init__(self, idle_s: float = IDLE_S, pass_every: int = PASS_EVERY):
        self.idle_s = idle_s
        self.pass_every = pass_every
        self._kept = gc.get_freeze_count()
        self._since_pass = 0
        self._pause_checked: float | None = None  # the pause (its last request's end) already looked at
        self._lock = threading.Lock()
        self._running = 0
        self._last = time.monotonic()
        self._stopped = threading.Event()
        self.full_passes = 0

    def request_started(self) -> None:
        with self._lock:
            self._running += 1

    def request_ended(self) -> None:
        with self._lock:
            self._running -= 1
            self._last = time.monotonic()
            self._since_pass += 1
        gc.freeze()

    def collect_if_due(self) -> bool:
        """One full pass over everything, frozen objects included, if no request ran for `idle_s` and the
        frozen objects grew by `IDLE_GROWTH` since the last one, or after ``pass_every`` requests; whether it ran."""
        with self._lock:
            idle = self._running == 0 and time.monotonic() - self._last >= self.idle_s
            overdue = self._since_pass >= self.pass_every
            if not overdue and (not idle or self._pause_checked == self._last):
                return False
            self._pause_checked = self._last
        grown = gc.get_freeze_count() - self._kept
        if not (grown > 0 and (overdue or grown >= IDLE_GROWTH * self._kept)):
            return False
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self._kept = gc.get_freeze_count()
        self._since_pass = 0
        self.full_passes += 1
        return True

    def start(self) -> None:
        """Watch for idle time from now on (the server's start-up objects frozen already)."""
        self._kept = gc.get_freeze_count()
        threading.Thread(target=self._watch, name="imgidx-collector", daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()

    def _watch(self) -> None:
        while not self._stopped.wait(self.idle_s / 2):
            self.collect_if_due()
