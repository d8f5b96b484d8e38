"""The web app: a search page, a photo page and an overview over one index, opened read-only.

Every page is a Jinja2 template with autoescaping; the only scripts are the package's own files, and the
Content-Security-Policy header forbids any other. Files are reached only through an image id of the index
(`thumbnail`, `original`): no request names a path. Library errors become one line in the page; an
unexpected error becomes one line too (and one line on the server's standard error).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import urlencode

import jinja2
from markupsafe import Markup
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from indexer import store, thumbnails
from indexer.calibration import percent
from indexer.errors import DamagedIndexError, ImageReadError, ImgidxError
from indexer.geometry import CELL_NAMES
from indexer.models import DEBUG_ENV
from indexer.names import printable, restored, stored
from indexer.taken import TAKEN_MTIME
from query import DEFAULT_MIN_SCORE, browse, relax, search
from query.dates import SORT_NEWEST, SORT_OLDEST, SORT_SCORE, SORTS, DateFilter, both, taken_text
from query.parser import KEYWORDS, MAX_QUERY_CHARS, QueryError
from query.render import term_names, where
from query.resolve import lookup
from query import complete as grammar
from serve import ask as asking, labels as label_browser, selection
from serve.collector import Collector

#: Matches per page of results (the URL's ``n`` may ask for 1 to `MAX_PAGE_SIZE`).
PAGE_SIZE = 48
MAX_PAGE_SIZE = 200
#: The longest value of a date field that is read (a date is at most 10 characters; the message quotes 40).
MAX_DATE_CHARS = 64
#: The largest offset asked for: SQLite's and PostgreSQL's integers are 64-bit.
MAX_OFFSET = 2**62
GRID_THUMBNAIL, PHOTO_THUMBNAIL = thumbnails.SIZES
#: Ranks looked at on either side of a photo for its previous and next match.
NEIGHBOURS = 8
#: Labels listed per cell on the photo page, and for the whole photo.
CELL_LABELS, PHOTO_LABELS = 3, 12
#: Compiled searches kept for paging (a compile costs more than most queries' execution).
PREPARED_SEARCHES = 256
#: Seconds the overview's counts are reused (counting a million photos takes a minute on 2 cores), and
#: seconds a request waits for a first count before the page says it is still counting.
STATS_SECONDS, STATS_WAIT_S = 300, 3.0
#: Thumbnails made at once: each decodes a whole photo.
DECODES_AT_ONCE = 2
#: Searches run at once; more wait their turn. Below SQLAlchemy's pool (5 + 10 connections, 30 s to get
#: one), so a crowd of clients queues here instead of failing for want of a connection.
SEARCHES_AT_ONCE = 8
#: Term colours on the result grid (CSS classes ``t1``...), repeating after this many.
TERM_COLOURS = 6
#: Four thirds: the shape a photo of unknown size is drawn with.
DEFAULT_ASPECT = (4, 3)
#: Example queries the start page offers at most, the recent photos they are drawn from, and the most
#: searches run to check that they match.
EXAMPLES, EXAMPLE_PHOTOS, EXAMPLE_SEARCHES = 3, 8, 10
#: Seconds checking the examples may take in all, and one check at most: a label in half of a million photos
#: takes seconds to find on 2 cores (`person`: 36 s to rank, over 5 s to find one), so it is skipped, not waited for.
EXAMPLES_BUDGET_S, EXAMPLE_CHECK_S = 1.0, 0.25
#: The templates a search renders, compiled as the app is made, so that the first search does not wait for it.
SEARCH_TEMPLATES = ("search.html", "cards.html")
#: Labels named in a card's alt text (what the photo shows).
ALT_LABELS = 3
#: Steps of the "where a label scores" tint (CSS classes ``h0``... ``h10``): no script sets a colour.
HEAT_STEPS = 10
#: Photo overlays a page may ask for (``?mode=``), as the radio buttons name them.
MODES = ("off", "matches", "labels", "classmap", "heat")
#: A box whose top lies this close to the photo's top edge (a fraction of its height) has its label inside
#: it, not above it, where the photo's edge would cut it off; one whose left lies past this has it right-aligned.
TAG_ROOM_TOP, TAG_RIGHT_FROM = 0.08, 0.6

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}

#: The names (Host headers) the app answers by unless told others (`create_app`): this machine's loopback. A
#: page elsewhere that points a name of its own at 127.0.0.1 (DNS rebinding) sends that name, and is refused,
#: so it cannot read the library through the visitor's browser.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
#: The largest photo id an index can hold (a signed 64-bit integer, SQLite's and PostgreSQL's): an id above it
#: names no photo, and is not handed to the database, which would refuse to bind it.
MAX_PHOTO_ID = 2**63 - 1

log = logging.getLogger("imgidx.serve")


def host_name(header: str) -> str:
    """The name in a Host header, without its port, in lower case: ``[::1]:8765`` -> ``::1``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.index("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class IndexReplacedError(ImgidxError):
    """The index file was deleted or replaced by another while the server ran."""


def _identity(path: Path | None) -> tuple[int, int] | None:
    """The file's device and inode: a file moved over it (a rebuilt index) has others."""
    if path is None:
        return None
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_dev, status.st_ino


class ServerStopping(ImgidxError):
    """The server is stopping: no statement starts any more."""


class Index:
    """The open index and what every request reuses: the engine, its tables, its calibration, the overview."""

    def __init__(self, db: str, thumbnail_folder: str | os.PathLike | None = None):
        self.db = db
        self.file = store.sqlite_path(store.parse_url(db))
        self._identity = _identity(self.file)
        engine = store.open_index(db, create=False, readonly=True)  # SQLite mode=ro, PostgreSQL read-only sessions
        self.engine = engine
        self.stopping = False
        self._running: set = set()  # DBAPI connections checked out now, to interrupt when stopping
        sa.event.listen(engine.pool, "checkout", lambda dbapi, record, proxy: self._running.add(dbapi))
        sa.event.listen(engine.pool, "checkin", lambda dbapi, record: self._running.discard(dbapi))
        sa.event.listen(engine, "before_cursor_execute", self._refuse_when_stopping)
        with engine.connect() as conn:
            self.calibration = store.read_calibration(conn)
        self.tables = store.tables(engine)
        self.thumbnail_folder = Path(thumbnail_folder) if thumbnail_folder is not None else thumbnails.thumbnail_folder()
        self.decodes = threading.BoundedSemaphore(DECODES_AT_ONCE)
        self.searches = threading.BoundedSemaphore(SEARCHES_AT_ONCE)
        self._stats: tuple[float, store.IndexStats] | None = None
        self._prepared: OrderedDict[tuple, search.Prepared] = OrderedDict()
        self._lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._counting: threading.Thread | None = None
        self._count_error: DamagedIndexError | None = None
        self._examples: tuple[tuple, list[str]] | None = None

    def check_file(self) -> None:
        """Raise `IndexReplacedError` when the SQLite file the server opened is gone or another file took its
        place. The server does not reopen it: photo ids are the index's own, so pages open in a browser (and
        their links) would silently show other photos; it answers 503 saying to restart it instead."""
        if self.file is not None and _identity(self.file) != self._identity:
            gone = "deleted" if not self.file.exists() else "replaced by another file"
            raise IndexReplacedError(
                f"the index {printable(str(self.file))} was {gone} while the server ran: restart imgidx serve "
                "to serve it again")

    def state(self) -> tuple:
        """What changes when the index does: an SQLite file's (and its write-ahead log's) size and time, or
        the newest photo id of a PostgreSQL index. Keys what is derived from the contents (`examples`)."""
        if self.file is not None:
            stats = []
            for path in (self.file, Path(f"{self.file}-wal")):
                try:
                    status = path.stat()
                    stats.append((status.st_mtime_ns, status.st_size))
                except OSError:
                    stats.append(None)
            return tuple(stats)
        with self.engine.connect() as conn:
            return (conn.execute(sa.select(sa.func.max(self.tables.images.c.image_id))).scalar(),)

    def examples(self) -> list[str]:
        """Example queries that match something in this index (`example_queries`), kept until it changes."""
        state = self.state()
        cached = self._examples
        if cached is not None and cached[0] == state:
            return cached[1]
        found = example_queries(self)
        self._examples = (state, found)
        return found

    def prepare(self, ask: "SearchRequest") -> search.Prepared:
        """The search ``ask`` makes, compiled once per query, minimum score, folder and page size and then
        only paged (`PREPARED_SEARCHES` kept): scrolling through matches compiles nothing again."""
        key = (ask.text, ask.min_score, ask.folder, ask.page, ask.dates, ask.sort)
        with self._lock:
            prepared = self._prepared.get(key)
            if prepared is not None:
                self._prepared.move_to_end(key)
        if prepared is None:
            prepared = search.prepare(
                self.engine, ask.text, min_score=ask.min_score, limit=ask.page, tables=self.tables,
                calibration=self.calibration, within=ask.within(), sort=ask.sort,
            )
            with self._lock:
                self._prepared[key] = prepared
                if len(self._prepared) > PREPARED_SEARCHES:
                    self._prepared.popitem(last=False)
        if not ask.offset:
            return prepared
        return replace(prepared, compiled=prepared.compiled.at_offset(ask.offset), offset=ask.offset)

    def stats(self) -> store.IndexStats | None:
        """The overview's counts: counted in the background (minutes on a million photos) and kept for
        `STATS_SECONDS`; waits up to `STATS_WAIT_S` for a first count, else None (still counting)."""
        with self._stats_lock:
            stale = self._stats is None or time.monotonic() - self._stats[0] > STATS_SECONDS
            if stale and (self._counting is None or not self._counting.is_alive()):
                self._counting = threading.Thread(target=self._count, name="imgidx-overview", daemon=True)
                self._counting.start()
            counting = self._counting
        if self._stats is None and counting is not None:
            counting.join(STATS_WAIT_S)
        if self._count_error is not None:
            raise self._count_error
        return self._stats[1] if self._stats is not None else None

    def _count(self) -> None:
        try:
            with self.engine.connect() as conn:
                self._stats = (time.monotonic(), store.index_stats(conn))
            self._count_error = None
        except sa.exc.DBAPIError as exc:
            if not self.stopping:
                log.error("cannot count the index: %s", store.error_reason(exc))
        except DamagedIndexError as exc:  # shown by the overview (503), not as a thread's traceback
            self._count_error = exc

    def image_row(self, conn: sa.Connection, image_id: int) -> sa.RowMapping | None:
        if not 0 <= image_id <= MAX_PHOTO_ID:
            return None
        images = self.tables.images
        return conn.execute(sa.select(images).where(images.c.image_id == image_id)).mappings().first()

    def original(self, image_id: int, failed_too: bool = False) -> thumbnails.Original:
        """The indexed photo behind ``image_id``; 404 for an id the index has no readable photo for (with
        ``failed_too``, a file that failed to decode is one too: its bytes are what was indexed)."""
        with self.engine.connect() as conn:
            row = self.image_row(conn, image_id)
        if row is None:
            raise HTTPException(404, f"no photo {image_id} in the index")
        if row["content_hash"] is None or (row["error"] is not None and not failed_too):
            raise HTTPException(404, f"photo {image_id} failed when it was indexed: {failure_reason(row)}")
        return thumbnails.Original(restored(row["path"]), row["size_bytes"], row["mtime_ns"], row["content_hash"])

    def interrupt(self) -> None:
        """Stop the statements running now, as the server stops: SQLite's interrupt, PostgreSQL's cancel.
        A search over a million photos can take seconds; Ctrl-C should not wait for it."""
        self.stopping = True
        for dbapi in list(self._running):
            stop = getattr(dbapi, "interrupt", None) or getattr(dbapi, "cancel", None)
            if stop is not None:
                try:
                    stop()
                except Exception:  # noqa: BLE001 (a connection closing meanwhile: nothing to stop)
                    pass

    def _refuse_when_stopping(self, conn, cursor, statement, parameters, context, executemany) -> None:
        """No statement starts once the server is stopping. `interrupt` stops the statements running, and
        SQLite's interrupt does nothing to a connection between two statements: a page's next statement
        would then run to its end (a minute, for a long one) before the server could stop. Raised as a
        database error, which every reader of the index already handles."""
        if self.stopping:
            raise sa.exc.OperationalError(statement, parameters, ServerStopping("the server is stopping"))

    def close(self) -> None:
        self.engine.dispose()


# ------------------------------------------------------------------------------------------- requests


class BadRequest(ImgidxError):
    """A request parameter out of its range."""


#: The search form's fields of the date filter, as its messages name them (`query.dates.DateFilter`).
DATE_FIELDS = ("taken", "after", "before")
#: The search form's orders, as it offers them.
SORT_NAMES = {SORT_SCORE: "best match", SORT_OLDEST: "oldest first", SORT_NEWEST: "newest first"}


@dataclass(frozen=True)
class SearchRequest:
    """What a search URL asks for: ``/?q=QUERY&folder=FOLDER&n=PAGE&min=SCORE&offset=N``, and the date
    filter and order: ``&taken=2019&after=DATE&before=DATE&sort=oldest`` (`query.dates`)."""

    text: str
    folder: str
    offset: int
    page: int
    min_score: float
    dates: DateFilter = DateFilter()
    sort: str = SORT_SCORE

    @classmethod
    def of(cls, request: Request) -> "SearchRequest":
        params = request.query_params
        text = params.get("q", "")
        if len(text) > MAX_QUERY_CHARS:  # before anything else reads it
            raise BadRequest(f"query too long: {len(text):,} characters, the most is {MAX_QUERY_CHARS:,}")
        folder = params.get("folder", "").strip()
        if len(folder) > MAX_QUERY_CHARS:
            raise BadRequest(f"folder too long: {len(folder):,} characters, the most is {MAX_QUERY_CHARS:,}")
        sort = params.get("sort", "") or SORT_SCORE
        if sort not in SORTS:
            raise BadRequest(f"sort must be one of {', '.join(SORTS)}, not {printable(sort[:40])!r}")
        dates = DateFilter(*(params.get(name, "").strip()[:MAX_DATE_CHARS] for name in DATE_FIELDS))
        return cls(
            text.strip(),
            folder,
            _number(params, "offset", int, 0, 0, MAX_OFFSET),
            _number(params, "n", int, PAGE_SIZE, 1, MAX_PAGE_SIZE),
            _number(params, "min", float, DEFAULT_MIN_SCORE, 0.0, 1.0),
            dates,
            sort,
        )

    def within(self):
        """The photos this search may find (`query.search.prepare`'s ``within``): under its folder, taken in
        its dates; None: all of them. A `DateFilterError` names the field of a value that is no date."""
        return both(browse.in_folder(self.folder) if self.folder else None,
                    self.dates.within(DATE_FIELDS) if self.dates else None)

    def photo_url(self, image_id: int, rank: int) -> str:
        """``url(f"/photo/{image_id}", rank=rank, offset=0)``, with this search's part encoded once: a page
        lays out 48 cards, and encoding it for each was a millisecond of every search page."""
        return f"/photo/{image_id}{self._photo_query}rank={rank}"

    @cached_property
    def _photo_query(self) -> str:
        query = self.url("", offset=0)
        return query + "&" if query else "?"

    def date_fields(self) -> list[tuple[str, str]]:
        """The date filter and order as given (defaults left out): what a new search from the header keeps."""
        values = [(name, getattr(self.dates, name)) for name in DATE_FIELDS] + [("sort", self.sort)]
        return [(name, value) for name, value in values if value and value != SORT_SCORE]

    def url(self, path: str = "/", **changes: Any) -> str:
        """This search's URL on ``path``, with ``changes``; defaults left out, so links stay short."""
        values = {"q": self.text, "folder": self.folder, "n": self.page, "min": self.min_score, "offset": self.offset,
                  **{name: getattr(self.dates, name) for name in DATE_FIELDS}, "sort": self.sort}
        values.update(changes)
        defaults = {"q": "", "folder": "", "n": PAGE_SIZE, "min": DEFAULT_MIN_SCORE, "offset": 0, "taken": "",
                    "after": "", "before": "", "sort": SORT_SCORE}
        kept = {k: v for k, v in values.items() if v != defaults.get(k)}
        return path + ("?" + urlencode(kept) if kept else "")


def _number(params, name: str, kind: type, default, low, high):
    text = params.get(name, "")
    if text == "":
        return default
    try:
        value = kind(text)
    except ValueError:
        raise BadRequest(f"{name} must be a number, not {printable(text[:40])!r}") from None
    if value < low or (high is not None and value > high) or value != value:
        upper = f" to {high:g}" if high is not None else " or more"
        raise BadRequest(f"{name} must be {low:g}{upper}, not {printable(text[:40])}")
    return value


#: The phases of a search request its Server-Timing header names, and what each one is (shown by a browser's
#: developer tools beside the request; no commas, which a naive reader would split metrics at): ``query`` is
#: the library's answer alone, as `query.search.search` gives it, so a request's total less ``query`` is what
#: serving it added.
PHASES = {
    "wait": "waiting for a search slot",
    "query": "the library's answer (parse to fetch)",
    "copies": "identical photos folded",
    "labels": "each card's top labels (alt text)",
    "cards": "cards laid out",
    "render": "HTML",
}


@dataclass
class Phases:
    """How long each named phase (`PHASES`) of one request took, in milliseconds, for its Server-Timing header."""

    durations: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def timing(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.durations[name] = self.durations.get(name, 0.0) + (time.perf_counter() - started) * 1000

    def header(self) -> str:
        """``wait;dur=0.0;desc="...", query;dur=12.3;desc="...", ...`` (W3C Server Timing)."""
        return ", ".join(f'{name};dur={ms:.1f};desc="{PHASES[name]}"' for name, ms in self.durations.items())


@dataclass
class Page:
    """One page of matches, ready for the templates."""

    result: search.Result
    cards: list[dict]
    legend: list[tuple[int, str]]
    notes: list[str]
    milliseconds: float
    next_url: str | None  # the next page's cards (`results`), for the script
    more_url: str | None  # the next page as a whole page, for a browser without scripts
    phases: Phases = field(default_factory=Phases)


def run_search(index: Index, ask: SearchRequest) -> Page:
    """Run the search of ``ask`` (a `QueryError` or `FolderFilterError` propagates) and lay out its cards."""
    phases = Phases()
    with phases.timing("wait"):
        index.searches.acquire()
    try:
        started = time.perf_counter()
        with index.engine.connect() as conn:
            with phases.timing("query"):
                prepared = index.prepare(ask)
                result = search.execute(conn, prepared)
            with phases.timing("copies"):
                shown = browse.fold_copies(conn, index.tables, result.matches)
            with phases.timing("labels"):
                labels = browse.top_labels(conn, index.tables, (s.match.image_id for s in shown), ALT_LABELS)
        elapsed = (time.perf_counter() - started) * 1000
    finally:
        index.searches.release()
    with phases.timing("cards"):
        names = term_names(result)
        # Numbered as shown, copies folded: #1, #2, #3 (the page's script renumbers the pages it appends).
        folder_urls: dict[str, str | None] = {}
        cards = [_card(s, names, ask, ask.offset + number, labels.get(s.match.image_id, []), folder_urls)
                 for number, s in enumerate(shown, start=1)]
        legend = [(n, describe(spec)) for n, spec in enumerate(result.prepared.compiled.reported, start=1)]
    end = ask.offset + len(result.matches)
    # An uncounted total (a query of NOT terms only) is a lower bound: a full page may have a next one.
    more = result.total is not None and end < result.total or not result.counted and len(result.matches) == ask.page
    return Page(
        result, cards, legend, prepared.notes(), elapsed,
        ask.url("/results", offset=end) if more else None, ask.url("/", offset=end) if more else None, phases,
    )


def _fit(width: int | None, height: int | None, box: int) -> tuple[int, int]:
    """The size a photo is drawn at inside a ``box`` square (its thumbnail's size)."""
    width, height = (width, height) if width and height else DEFAULT_ASPECT
    scale = box / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def describe(spec) -> str:
    """A term of the query with its threshold in percent, as the scores beside it: ``cat in center >= 30%``."""
    text = replace(spec.term, threshold=None).describe()
    return f"{text} {'>' if spec.strict else '>='} {percent(spec.threshold)}"


def alt_text(labels: list[str], name: str) -> str:
    """What a photo shows, for a reader who cannot see it: its top labels (its name when it has none)."""
    return ", ".join(labels) if labels else f"{name} (no labels)"


def _card(shown: browse.Shown, names: list[str], ask: SearchRequest, position: int, labels: list[str],
          folder_urls: dict[str, str | None]) -> dict:
    """One result card; ``folder_urls`` keeps the folder links made for this page's cards (most share folders)."""
    m = shown.match
    marks: list[list[int]] = [[] for _ in CELL_NAMES]
    for number, hit in enumerate(m.terms, start=1):
        for cell in hit.cells:
            marks[CELL_NAMES.index(cell)].append(number)
    width, height = _fit(m.width, m.height, GRID_THUMBNAIL)
    folder, name = os.path.split(m.path)
    if folder not in folder_urls:
        folder_urls[folder] = ask.url(folder=folder, offset=0) if stored(folder) == folder else None
    return {
        "id": m.image_id,
        "rank": m.rank,
        "number": position,
        "alt": alt_text(labels, printable(name)),
        "score": percent(m.score),
        "taken": (m.taken_at[:10] + (" (file time)" if m.taken_source == TAKEN_MTIME else "")) if m.taken_at else None,
        "taken_note": taken_text(m.taken_at, None, m.taken_source),
        "path": printable(m.path),
        "name": printable(name),
        "folder": printable(folder),
        "folder_url": folder_urls[folder],
        "hash": shown.content_hash or "",
        "copies": shown.copies,
        "thumbnail": thumbnail_url(m.image_id, GRID_THUMBNAIL, shown.content_hash),
        "width": width,
        "height": height,
        "photo_url": ask.photo_url(m.image_id, m.rank),
        "cells": [{"name": CELL_NAMES[c], "terms": marks[c]} for c in range(len(CELL_NAMES))],
        "grid": matched_cells_html(tuple(map(tuple, marks))),
        "terms": [
            {"number": n, "name": name, "where": where(hit.cells) if hit.score is not None else None,
             "score": percent(hit.score) if hit.score is not None else None}
            for n, (name, hit) in enumerate(zip(names, m.terms), start=1)
        ],
    }


@lru_cache(maxsize=4096)
def matched_cells_html(marks: tuple[tuple[int, ...], ...]) -> Markup:
    """A card's (and the photo page's) nine cells, with the numbers of the terms that hold in each
    (``marks``, in `CELL_NAMES`' order), as HTML: built here and kept per pattern, since a page's cards share
    a few. As nested loops in the template they cost about 1 ms of the 7 a search page spends outside the
    library. Numbers and cell names only: nothing to escape."""
    def colour(number: int) -> int:
        return (number - 1) % TERM_COLOURS + 1

    spans = []
    for name, numbers in zip(CELL_NAMES, marks):
        hit = f" hit t{colour(numbers[0])}" if numbers else ""
        inside = "".join(f'<span class="n t{colour(n)}">{n}</span>' for n in numbers)
        spans.append(f'<span class="cell{hit}" data-cell="{name}">{inside}</span>')
    return Markup("".join(spans))


def thumbnail_url(image_id: int, size: int, content_hash: str | None) -> str:
    """The thumbnail's URL, which changes with the photo's content (so a browser never shows a stale one)."""
    return f"/thumbnail/{image_id}/{size}" + (f"?v={content_hash[:16]}" if content_hash else "")


def label_query(name: str) -> str:
    """A class name as a query term: quoted when it holds a keyword (``'black and gold garden spider'``; double
    quotes hold text to find in the photos)."""
    return f"'{name}'" if set(name.lower().split()) & set(KEYWORDS) else name


# ------------------------------------------------------------------------------------------- guard


#: Where `Guard` notes a response's status in the request's scope, for the access log; the most of a
#: request's path and query a log line shows.
STATUS_KEY, LOGGED_CHARS = "imgidx.status", 300


class Guard:
    """Answers only requests for the names the server was started for (421 otherwise: `LOOPBACK_HOSTS`),
    and none (503) once the index file is deleted or replaced (``check``); adds the security headers to
    every response, logs a line per request with ``access_log``, and turns an unexpected error into a one-line page
    (and one line on standard error; the traceback only with IMGIDX_DEBUG set). A damaged index is no
    bug of the server's: its page says what is wrong and how to rebuild it, with status 503."""

    def __init__(self, app, error_page: Callable[[str, int], Response], stopping: Callable[[], bool],
                 hosts: frozenset[str], check: Callable[[], None] = lambda: None, access_log: bool = False,
                 collector: Collector | None = None):
        self.app = app
        self.collector = collector
        self.error_page = error_page
        self.stopping = stopping
        self.hosts = hosts
        self.check = check
        self.access_log = access_log
        self.told_replaced = False

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        if self.collector is not None:
            self.collector.request_started()
        try:
            await self.guarded(scope, receive, send)
        finally:
            if self.collector is not None:
                self.collector.request_ended()
            if self.access_log:  # one line per request: method, path and query, status, milliseconds
                query = scope.get("query_string", b"").decode("latin-1")
                target = scope.get("path", "") + ("?" + query if query else "")
                log.info("%s %s %s %.0f ms", scope.get("method"), printable(_clipped(target)), scope.get(STATUS_KEY, 500),
                         (time.perf_counter() - began) * 1000)

    async def guarded(self, scope, receive, send) -> None:
        started = False

        async def secured(message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                scope[STATUS_KEY] = message["status"]
                MutableHeaders(scope=message).update(SECURITY_HEADERS)
            await send(message)

        header = dict(scope.get("headers") or ()).get(b"host", b"").decode("latin-1")
        if host_name(header) not in self.hosts:
            names = ", ".join(sorted(self.hosts))
            await self.error_page(f"this server answers only by {names}, not {printable(header) or 'no name'} "
                                  "(imgidx serve --allow-host NAME adds one)", 421)(scope, receive, secured)
            return
        if not scope.get("path", "").startswith("/static/"):
            try:
                self.check()
            except IndexReplacedError as exc:
                if not self.told_replaced:
                    log.error("%s", exc.shown())
                    self.told_replaced = True
                await self.error_page(exc.shown(), 503)(scope, receive, secured)
                return
        try:
            await self.app(scope, receive, secured)
        except DamagedIndexError as exc:  # no request can be served right: unavailable, not a bug
            log.error("%s %s: %s", scope.get("method"), scope.get("path"), exc.shown())
            if not started:
                await self.error_page(exc.shown(), 503)(scope, receive, secured)
        except Exception as exc:
            if self.stopping():  # a statement interrupted by Ctrl-C: no error of the request's
                if not started:
                    await self.error_page("the server is stopping", 503)(scope, receive, secured)
                return
            if os.environ.get(DEBUG_ENV):
                raise
            line = printable(f"internal error: {type(exc).__name__}: {exc}")
            log.error("%s %s: %s (set %s=1 for the traceback)", scope.get("method"), scope.get("path"), line, DEBUG_ENV)
            if not started:
                await self.error_page(line, 500)(scope, receive, secured)


def _clipped(text: str) -> str:
    return text if len(text) <= LOGGED_CHARS else text[:LOGGED_CHARS - 3] + "..."


def _static_files() -> dict[str, tuple[bytes, str, str]]:
    """The package's static files by name: content, media type, ETag. Read once, served from memory, so no
    request reaches the file system through them."""
    kinds = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".txt": "text/plain; charset=utf-8",
             ".svg": "image/svg+xml"}
    files = {}
    for entry in resources.files("serve").joinpath("static").iterdir():
        suffix = os.path.splitext(entry.name)[1]
        if entry.is_file() and suffix in kinds:
            data = entry.read_bytes()
            files[entry.name] = (data, kinds[suffix], f'"{hashlib.sha256(data).hexdigest()[:16]}"')
    return files


# ------------------------------------------------------------------------------------------- boxes


def boxes_of(conn: sa.Connection, image_id: int) -> list[dict]:
    """The detectors' boxes to draw on the photo page (`store.box_overlays`: faces and objects a query
    would find): ``left``, ``top``, ``width``, ``height`` as fractions of the photo, a ``label`` ("person
    87%") and ``face``; none for an index built without the detectors."""
    return store.box_overlays(conn, image_id)


# ------------------------------------------------------------------------------------------- app


def create_app(index: Index, hosts: Iterable[str] = LOOPBACK_HOSTS, access_log: bool = False,
               collector: Collector | None = None) -> Starlette:
    """The Starlette app over ``index`` (which the caller closes), answering requests for ``hosts`` only;
    with ``access_log``, a line per request on the ``imgidx.serve`` logger (at level INFO); with
    ``collector``, garbage is collected out of the requests' way (`serve.collector`)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("serve", "templates"), autoescape=True, trim_blocks=True, lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.globals.update(
        max_query=MAX_QUERY_CHARS, term_colours=TERM_COLOURS, page_size=PAGE_SIZE, default_min=DEFAULT_MIN_SCORE,
        text="", folder="", ask=None, page=None, error=None, caret=None, examples=(), meant=(),  # a page that is no search
        tag_room_top=TAG_ROOM_TOP, tag_right_from=TAG_RIGHT_FROM,
        sort_names=SORT_NAMES, relaxed=(), relaxed_url=None, untried=0,
    )
    for name in SEARCH_TEMPLATES:
        env.get_template(name)  # compiled now and kept by the environment
    static = _static_files()
    catalog = label_browser.CatalogCache(index.engine, index.tables, index.calibration, lambda: index.stopping)

    def page(template: str, status: int = 200, /, **context) -> HTMLResponse:
        return HTMLResponse(env.get_template(template).render(**context), status_code=status)

    def searched(template: str, found: Page, /, **context) -> HTMLResponse:
        """A page of ``found``'s matches, with the time each phase took in its Server-Timing header."""
        with found.phases.timing("render"):
            body = env.get_template(template).render(page=found, **context)
        return HTMLResponse(body, headers={"server-timing": found.phases.header()})

    def error_page(message: str, status: int) -> HTMLResponse:
        return page("error.html", status, message=printable(message), status=status)

    def search_page(request: Request) -> Response:
        try:
            ask = SearchRequest.of(request)
        except BadRequest as exc:
            return page("search.html", 400, ask=None, text="", folder="", error=exc.shown(), caret=None)
        context = dict(ask=ask, text=ask.text, folder=ask.folder, error=None, caret=None)
        if not ask.text:
            return page("search.html", **context, examples=[(text, "/?" + urlencode({"q": text}))
                                                            for text in index.examples()])
        try:
            found = run_search(index, ask)
        except QueryError as exc:
            head, _, caret = exc.shown().partition("\n")
            return page("search.html", 400, **{**context, "error": head, "caret": caret or None,
                                               "position": exc.position, "meant": _meant(exc, ask)})
        except ImgidxError as exc:
            return page("search.html", _status(exc), **{**context, "error": exc.shown()})
        if found.result.total == 0 and not ask.offset:  # looser queries: counted on their own page
            context["relaxed_url"] = ask.url("/looser", offset=0)
        return searched("search.html", found, **context)

    def results(request: Request) -> Response:
        """The next page of cards, for the search page's script to append."""
        try:
            ask = SearchRequest.of(request)
            found = run_search(index, ask)
        except ImgidxError as exc:
            return page("fragment_error.html", _status(exc), message=exc.shown())
        return searched("cards.html", found)

    def complete(request: Request) -> Response:
        text = request.query_params.get("text", "")[:MAX_QUERY_CHARS]
        found = grammar.complete(text, catalog.counts())
        return JSONResponse({"start": found.start, "names": found.names})

    def photo(request: Request) -> Response:
        image_id = request.path_params["image_id"]
        params = request.query_params
        try:
            ask = SearchRequest.of(request)
            rank = _number(params, "rank", int, 1, 1, None)
            mode = params.get("mode", "")
            if mode and mode not in MODES:
                raise BadRequest(f"mode must be one of {', '.join(MODES)}, not {printable(mode[:40])!r}")
        except BadRequest as exc:
            return error_page(exc.shown(), 400)
        context = _photo_context(index, image_id, ask, rank)
        context.update(rank=rank, heat=None, chosen="")
        label = params.get("label", "").strip()[:MAX_QUERY_CHARS]
        if label and context["error"] is None:  # a browser without scripts: where the label scores, as a page
            context["chosen"] = label
            try:
                context["heat"] = _heat(index, image_id, label)
                mode = "heat"
            except ImgidxError as exc:
                context["heat_error"] = exc.shown()
        if mode and (mode != "matches" or context["mode"] == "matches"):
            context["mode"] = mode
        return page("photo.html", **context)

    def boxes_css(request: Request) -> Response:
        """Where the photo page's boxes stand, as a style sheet of the server's own: the page needs no
        script to place them, and the Content-Security-Policy still allows no inline style."""
        image_id = request.path_params["image_id"]
        with index.engine.connect() as conn:
            boxes = boxes_of(conn, image_id) if index.image_row(conn, image_id) is not None else []
        rules = "".join(
            f"#box-{n} {{ left: {100 * b['left']:.3f}%; top: {100 * b['top']:.3f}%; width: {100 * b['width']:.3f}%; "
            f"height: {100 * b['height']:.3f}%; }}\n" for n, b in enumerate(boxes))
        return Response(rules, media_type="text/css; charset=utf-8", headers={"cache-control": "private, no-cache"})

    def scores(request: Request) -> Response:
        """Where one label scores in one photo, from the stored evidence: nine confidences (or null)."""
        image_id = request.path_params["image_id"]
        text = request.query_params.get("label", "").strip()[:MAX_QUERY_CHARS]
        try:
            resolution, cells = _label_cells(index, image_id, text)
        except ImgidxError as exc:
            return JSONResponse({"error": exc.shown()}, status_code=400)
        return JSONResponse({
            "label": text, "classes": len(resolution.classes),
            "cells": [None if p is None else {"value": round(p, 4), "text": percent(p)} for p in cells],
        })

    def thumbnail(request: Request) -> Response:
        image_id, size = request.path_params["image_id"], request.path_params["size"]
        if size not in thumbnails.SIZES:
            raise HTTPException(404, f"thumbnails come in the sizes {', '.join(map(str, thumbnails.SIZES))}")
        original = index.original(image_id)
        etag = f'"{original.content_hash[:32]}-{size}"'
        headers = {"etag": etag, "cache-control": "private, no-cache"}
        if request.headers.get("if-none-match") == etag and thumbnails.unchanged(original):
            return Response(status_code=304, headers=headers)
        try:
            path = thumbnails.cached(original, size, index.thumbnail_folder)
            if path is None:
                with index.decodes:
                    path = thumbnails.thumbnail(original, size, index.thumbnail_folder)
            data = path.read_bytes()
        except ImageReadError as exc:
            return _placeholder(index, image_id, size, _note(exc, original.path))
        return Response(data, media_type="image/jpeg", headers=headers)

    def original(request: Request) -> Response:
        image_id = request.path_params["image_id"]
        found = index.original(image_id, failed_too=True)
        try:
            data = thumbnails.read_original(found)
        except ImageReadError as exc:
            raise HTTPException(404, f"{printable(found.path)}: {_note(exc, found.path)}") from None
        kind = thumbnails.media_type(data)
        name = os.path.basename(found.path)
        disposition = "inline" if kind else "attachment"
        headers = {"content-disposition": f"{disposition}; filename*=UTF-8''{_rfc5987(name)}",
                   "cache-control": "private, no-cache"}
        return Response(data, media_type=kind or "application/octet-stream", headers=headers)

    def overview(request: Request) -> Response:
        stats = index.stats()
        if stats is None:
            return page("counting.html", db=printable(store.shown(index.db)))
        return page("overview.html", stats=stats, db=printable(store.shown(index.db)), calibration=index.calibration,
                    labels=[(n, name, c, "/?" + urlencode({"q": label_query(name)})) for c, name, n in stats.top_labels],
                    printable=printable)

    def static_file(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in static:
            raise HTTPException(404, "no such file")
        data, kind, etag = static[name]
        headers = {"etag": etag, "cache-control": "no-cache"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(data, media_type=kind, headers=headers)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        allowed = [m.strip() for m in (exc.headers or {}).get("Allow", "GET").split(",") if m.strip() != "HEAD"]
        allowed = " and ".join(sorted(allowed))
        message = exc.detail if exc.status_code != 405 else f"this address only answers {allowed}"
        if exc.status_code == 404 and exc.detail == "Not Found":
            message = "no such page"
        return error_page(str(message), exc.status_code)

    routes = [
        Route("/", search_page),
        Route("/results", results),
        Route("/api/complete", complete),
        Route("/api/scores/{image_id:int}", scores),
        Route("/photo/{image_id:int}", photo),
        Route("/photo/{image_id:int}/boxes.css", boxes_css),
        Route("/thumbnail/{image_id:int}/{size:int}", thumbnail),
        Route("/original/{image_id:int}", original),
        Route("/overview", overview),
        Route("/static/{name}", static_file),
        Route("/api/terms", asking.terms_endpoint),
        Route("/api/rewrite", asking.rewrite_endpoint),
        Route("/looser", asking.looser_endpoint(index, SearchRequest.of, page, _status)),
        Route("/download", selection.download_endpoint(index, lambda fields: SearchRequest.of(_Params(fields)), error_page),
              methods=["POST"]),
        *label_browser.routes(catalog, page, label_query, lambda i, h: thumbnail_url(i, GRID_THUMBNAIL, h)),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(Guard, error_page=error_page, stopping=lambda: index.stopping,
                               hosts=frozenset(host_name(h) for h in hosts), check=index.check_file,
                               access_log=access_log, collector=collector)],
        exception_handlers={HTTPException: http_error},
    )


@dataclass(frozen=True)
class _Params:
    """A form's fields where `SearchRequest.of` reads a URL's."""

    query_params: dict


def _status(exc: ImgidxError) -> int:
    """A damaged index is the server's trouble (503, as `Guard` answers it), anything else the request's."""
    return 503 if isinstance(exc, DamagedIndexError) else 400


def _note(exc: ImageReadError, path: str) -> str:
    """Why a photo is not shown, without its name (the page shows that): ``no such file``."""
    return "photo not shown: " + exc.shown().removeprefix(printable(path) + ": ")


def _rfc5987(name: str) -> str:
    from urllib.parse import quote

    return quote(os.fsencode(name), safe="")


def _placeholder(index: Index, image_id: int, size: int, note: str) -> Response:
    """An SVG the size of the photo's thumbnail, saying why the photo is not shown (never cached)."""
    with index.engine.connect() as conn:
        row = index.image_row(conn, image_id)
    width, height = _fit(row["width"], row["height"], size)
    head, _, reason = printable(note).partition(": ")
    lines = [head + ":", *_wrap(reason, max(12, width // 7))] if reason else _wrap(head, max(12, width // 7))
    escape = jinja2.utils.markupsafe.escape
    text = "".join(
        f'<text x="50%" y="{(height / 2) + 16 * (i - (len(lines) - 1) / 2):.0f}" text-anchor="middle">{escape(line)}</text>'
        for i, line in enumerate(lines)
    )
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
        f'<rect width="100%" height="100%" fill="#ccc"/><g font-family="sans-serif" font-size="13" fill="#333">'
        f"{text}</g></svg>"
    )
    return Response(svg, media_type="image/svg+xml", headers={"cache-control": "no-store"})


def _wrap(text: str, width: int, lines: int = 4) -> list[str]:
    import textwrap

    wrapped = textwrap.wrap(text, width) or [""]
    return wrapped[:lines - 1] + ["…"] if len(wrapped) > lines else wrapped


def example_queries(index: Index) -> list[str]:
    """Up to `EXAMPLES` queries for the empty search page, each one checked to match a photo of this index
    (one of each kind first: a label, a label in a cell, one left of another, one without another). They come
    from the labels leading the photos indexed last and from the cells of a few of them, so they cost a few
    indexed lookups and at most `EXAMPLE_SEARCHES` searches of one match, within `EXAMPLES_BUDGET_S`."""
    with index.engine.connect() as conn:
        leaders = browse.recent_leaders(conn, index.tables)
        images = index.tables.images
        recent = conn.execute(
            sa.select(images.c.path).where(browse.labelled(images)).order_by(images.c.image_id.desc())
            .limit(EXAMPLE_PHOTOS)).scalars().all()
        reports = [report for path in recent if (report := store.image_report(conn, path=restored(path)))]
    labels, regions, relations = list(leaders), [], []
    for report in reports:
        tops = [cell[0] if cell else None for cell in report.cells]
        best = max((c for c in range(len(tops)) if tops[c]), key=lambda c: tops[c].score, default=None)
        if best is not None:
            labels.append(tops[best].name)
            regions.append(f"{label_query(tops[best].name)} in {CELL_NAMES[best]}")
        left, right = tops[3], tops[5]  # the middle row's ends
        if left and right and left.name != right.name:
            relations.append(f"{label_query(left.name)} left of {label_query(right.name)}")
    labels = list(dict.fromkeys(labels))
    negations = [f"{label_query(labels[0])} AND NOT {label_query(labels[1])}"] if len(labels) > 1 else []
    kinds = [[label_query(name) for name in labels], regions, relations, negations]
    candidates = list(dict.fromkeys(text for kind in kinds for text in kind[:1]))  # one of each kind first
    candidates += [text for kind in kinds for text in kind[1:] if text not in candidates]
    found: list[str] = []
    deadline = time.monotonic() + EXAMPLES_BUDGET_S
    with index.engine.connect() as conn:
        for text in candidates[:EXAMPLE_SEARCHES]:
            started = time.monotonic()
            if started > deadline:
                break
            try:  # one match found, unordered and uncounted, or None when its time ran out
                matches = relax.count(conn, text, DEFAULT_MIN_SCORE, index.tables, index.calibration, cap=1,
                                      deadline=min(deadline, started + EXAMPLE_CHECK_S))
            except ImgidxError:
                continue
            if matches:
                found.append(text)
                if len(found) == EXAMPLES:
                    break
    return found


def _meant(exc: QueryError, ask: SearchRequest) -> list[tuple[str, str]]:
    """The labels an unknown one may have meant, each with the URL of the query that names it instead."""
    if not exc.suggestions or exc.span is None:
        return []
    start, end = exc.span
    return [(name, ask.url(q=ask.text[:start] + label_query(name) + ask.text[end:], offset=0))
            for name in exc.suggestions]


def _label_cells(index: Index, image_id: int, text: str) -> tuple[Any, list[float | None]]:
    """The classes a typed label names, and its confidence in each cell of the photo (None: not stored)."""
    quoted = len(text) > 1 and text[0] == text[-1] == "'"
    resolution = lookup(text[1:-1] if quoted else text, quoted=quoted)
    with index.engine.connect() as conn:
        row = index.image_row(conn, image_id)
        report = store.image_report(conn, path=restored(row["path"])) if row is not None else None
    if report is None:
        raise HTTPException(404, f"no photo {image_id} in the index")
    return resolution, browse.cell_confidences(report, resolution.classes, index.calibration, grouped=resolution.grouped)


def _heat(index: Index, image_id: int, text: str) -> dict:
    """Where a typed label scores, for the page itself: each cell's tint step and its confidence."""
    resolution, cells = _label_cells(index, image_id, text)
    return {
        "label": text, "classes": len(resolution.classes),
        "cells": [None if p is None else {"step": round(p * HEAT_STEPS), "text": percent(p)} for p in cells],
    }


# ------------------------------------------------------------------------------------------- photo page


def _photo_context(index: Index, image_id: int, ask: SearchRequest, rank: int) -> dict:
    with index.engine.connect() as conn:
        row = index.image_row(conn, image_id)
        if row is None:
            raise HTTPException(404, f"no photo {image_id} in the index")
        report = store.image_report(conn, path=restored(row["path"]))
        copies = browse.copies_of(conn, index.tables, row["content_hash"]) if row["content_hash"] else []
        boxes = boxes_of(conn, image_id)
    neighbours = _neighbours(index, image_id, ask, rank) if ask.text else None
    path = restored(row["path"])
    note = None
    if row["content_hash"]:
        original = thumbnails.Original(path, row["size_bytes"], row["mtime_ns"], row["content_hash"])
        if not thumbnails.unchanged(original):
            try:
                thumbnails.read_original(original)
            except ImageReadError as exc:
                note = exc.shown()
    failed = row["error"] is not None
    if not row["content_hash"]:
        original_note = "no original file to offer: it could not be read when it was indexed"
    elif note:
        original_note = "the original file is not offered: " + _note_reason(note, path)
    else:
        original_note = None
    width, height = _fit(row["width"], row["height"], PHOTO_THUMBNAIL)
    class_colours: dict[int, int] = {}
    for cell in report.cells:
        if cell and cell[0].class_id not in class_colours:
            class_colours[cell[0].class_id] = len(class_colours)
    cells = [
        {
            "name": CELL_NAMES[c],
            "labels": [{"name": label.name, "score": percent(label.score), "query": label_query(label.name)}
                       for label in report.cells[c][:CELL_LABELS]],
            "colour": class_colours[report.cells[c][0].class_id] if report.cells[c] else None,
        }
        for c in range(len(CELL_NAMES))
    ]
    marks = neighbours["marks"] if neighbours and neighbours["match"] else [[]] * len(CELL_NAMES)
    names = {cell[0].class_id: cell[0].name for cell in report.cells if cell}
    legend = [(colour, names[class_id]) for class_id, colour in class_colours.items()]
    return {
        "ask": ask,
        "text": ask.text,
        "folder": ask.folder,
        "id": image_id,
        "path": printable(path),
        "name": printable(os.path.basename(path)),
        "report": report,
        "error": failure_reason(row) if failed else None,
        "note": note if not failed else None,
        "original_url": f"/original/{image_id}" if original_note is None else None,
        "original_note": original_note,
        "size": f"{row['width']}x{row['height']}" if row["width"] else None,
        "taken": taken_text(row["taken_at"], row["taken_offset"], row["taken_source"]) if not failed else None,
        "camera": printable(row["camera"]) if row["camera"] else None,
        "indexed": human_time(row["indexed_at"]),
        "alt": alt_text([label.name for label in report.labels[:ALT_LABELS]] if report else [], printable(os.path.basename(path))),
        "image": thumbnail_url(image_id, PHOTO_THUMBNAIL, row["content_hash"]) if row["content_hash"] and not failed else None,
        "width": width,
        "height": height,
        "cells": cells,
        "matched": matched_cells_html(tuple(map(tuple, marks))),
        "legend": legend,
        "labels": [{"name": label.name, "score": percent(label.score), "url": "/?" + urlencode({"q": label_query(label.name)})}
                   for label in report.labels[:PHOTO_LABELS]],
        "copies": [(other, printable(restored(p))) for other, p in copies if other != image_id],
        "boxes": boxes,
        "neighbours": neighbours,
        "mode": "matches" if neighbours and neighbours["match"] else "labels",
        "search_url": ask.url(offset=0) if ask.text else None,
    }


def failure_reason(row: sa.RowMapping) -> str:
    """Why a file failed (or was skipped) when it was indexed, as the index recorded it, without its name
    (the page shows that): ``cannot identify image file``."""
    error = printable(row["error"] or "it was not read")
    return error.removeprefix(printable(restored(row["path"])) + ": ")


def _note_reason(note: str, path: str) -> str:
    return note.removeprefix(printable(path) + ": ")


def human_time(stored_time: str | None) -> str | None:
    """An index's ISO 8601 time (UTC) as people write it: ``5 Dec 2026, 23:24 UTC``."""
    if not stored_time:
        return None
    try:
        moment = datetime.fromisoformat(stored_time)
    except ValueError:
        return printable(stored_time)
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return f"{moment.day} {moment:%b %Y, %H:%M} UTC"


def _neighbours(index: Index, image_id: int, ask: SearchRequest, rank: int) -> dict:
    """The photo's match in the search it came from, and the previous and next photo shown there (copies
    folded as on the result grid), looked for around ``rank``."""
    window = replace(ask, offset=max(0, rank - 1 - NEIGHBOURS), page=2 * NEIGHBOURS + 1)
    found = {"match": None, "previous": None, "next": None, "legend": [], "marks": None}
    try:
        cards = run_search(index, window)
    except ImgidxError:
        return found
    found["legend"] = cards.legend
    ids = [card["id"] for card in cards.cards]
    if image_id not in ids:
        return found
    position = ids.index(image_id)
    link = lambda card: ask.url(f"/photo/{card['id']}", rank=card["rank"], offset=0)  # noqa: E731
    match = cards.cards[position]
    found.update(
        match=match,
        marks=[cell["terms"] for cell in match["cells"]],
        previous=link(cards.cards[position - 1]) if position > 0 else None,
        next=link(cards.cards[position + 1]) if position + 1 < len(cards.cards) else None,
    )
    return found
