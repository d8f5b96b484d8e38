"""The label browser (``/labels``): every label of the index with its photos and its best photo, grouped
(`query.catalog`), each a link to its search. The catalog is made once per state of the index, in the
background, and kept: no search page waits for it or scans the index for it (completion ranks labels by
its counts when they are there, and alphabetically until then)."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable
from urllib.parse import urlencode

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from indexer import store
from indexer.errors import DamagedIndexError
from query import catalog

#: Seconds between two looks at whether the index changed (two stat calls for SQLite, one max() otherwise).
STATE_CHECK_S = 10.0
#: Seconds a request for the label page waits for a first catalog before saying it is still counting.
WAIT_S = 3.0

log = logging.getLogger("imgidx.serve")


class CatalogCache:
    """`query.catalog.catalog` of one open index, made again in the background when the index changes:
    for SQLite, when the database file or its WAL changes size or time; otherwise when its largest image id
    does, looked at no more than every `STATE_CHECK_S`."""

    def __init__(self, engine: sa.Engine, tables: store.Tables, calibration, stopping: Callable[[], bool]):
        self.engine, self.tables, self.calibration, self.stopping = engine, tables, calibration, stopping
        self._made: tuple[object, catalog.Catalog] | None = None
        self._checked = (float("-inf"), None)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._error: DamagedIndexError | None = None

    def state(self) -> object:
        """What changes when the index does."""
        url = self.engine.url
        if url.get_backend_name() == "sqlite" and url.database:
            path = url.database.removeprefix("file:").split("?")[0]
            marks = []
            for name in (path, path + "-wal"):
                try:
                    status = os.stat(name)
                    marks.append((status.st_size, status.st_mtime_ns))
                except OSError:
                    marks.append(None)
            return tuple(marks)
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.max(self.tables.images.c.image_id))).scalar()

    def current(self, wait: float = 0.0) -> catalog.Catalog | None:
        """The catalog of the index as it is (made again in the background if it changed); waits up to
        ``wait`` seconds for a first one, else None."""
        now = time.monotonic()
        with self._lock:
            checked_at, state = self._checked
            if now - checked_at > STATE_CHECK_S:
                state = self.state()
                self._checked = (now, state)
            stale = self._made is None or self._made[0] != state
            if stale and (self._thread is None or not self._thread.is_alive()):
                self._thread = threading.Thread(target=self._make, args=(state,), name="imgidx-labels", daemon=True)
                self._thread.start()
            thread = self._thread
        if self._made is None and thread is not None and wait:
            thread.join(wait)
        if self._error is not None:
            raise self._error
        return self._made[1] if self._made is not None else None

    def counts(self) -> dict[int, int] | None:
        """Photos per class, when a catalog is made (never waits)."""
        made = self.current()
        return made.counts_by_class() if made is not None else None

    def _make(self, state: object) -> None:
        try:
            with self.engine.connect() as conn:
                self._made = (state, catalog.catalog(conn, self.tables, self.calibration))
            self._error = None
        except sa.exc.DBAPIError as exc:
            if not self.stopping():
                log.error("cannot count the labels: %s", store.error_reason(exc))
        except DamagedIndexError as exc:
            self._error = exc


def routes(cache: CatalogCache, page: Callable[..., Response], link: Callable[[str], str],
           thumbnail: Callable[[int, str | None], str]) -> list[Route]:
    """The label browser's route; ``page`` renders a template, ``link`` spells a class name as a query
    term, ``thumbnail(image_id, content_hash)`` is a grid thumbnail's URL."""

    def labels_page(request: Request) -> Response:
        found = cache.current(wait=WAIT_S)
        if found is None:
            return page("labels.html", groups=None, total=0)
        groups = [
            {
                "kind": group.kind,
                "name": group.name,
                "url": "/?" + urlencode({"q": link(group.name)}) if group.wnid else None,
                "broader": [(name, "/?" + urlencode({"q": link(name)})) for name in group.broader[-3:]],
                "entries": [
                    {"name": e.name, "photos": e.photos, "url": "/?" + urlencode({"q": link(e.name)}),
                     "thumbnail": thumbnail(e.best_image, e.best_hash)}
                    for e in group.entries
                ],
            }
            for group in found.groups
        ]
        return page("labels.html", groups=groups, total=len(found.entries))

    return [Route("/labels", labels_page)]
