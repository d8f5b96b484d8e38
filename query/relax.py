"""Queries a little looser than one that found nothing, each with how many photos it finds: a term's region
dropped, a cell widened to its row or its column (the cell's neighbours along it), the confidence lowered.

Each is the query's own text with one term rewritten (`query.parser.Term.describe`), so it can be copied
to ``imgidx query`` as it is; the lower confidence is the search's minimum score. The work is bounded: at
most `MAX_CANDIDATES` queries, each counted only up to `COUNT_CAP` matches, all within `BUDGET_S`: no new
count starts after it, and one running then is stopped (SQLite's progress handler, PostgreSQL's
statement timeout) and counts as untried.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Iterator

import sqlalchemy as sa

from indexer.calibration import Calibration
from indexer.errors import ImgidxError
from indexer.store import Tables
from query.compile import Within
from query.parser import ANYWHERE, REGIONS, Region, Term, parse, terms
from query.search import prepare

#: Looser queries tried at most for one query that found nothing.
MAX_CANDIDATES = 6
#: A looser query's matches are counted up to this many ("100 or more").
COUNT_CAP = 100
#: The lower confidence offered: the minimum score times this.
LOWER_FACTOR = 0.5
#: The lowest minimum score offered.
LOWEST_MIN = 0.05
#: Seconds after which no further looser query is counted.
BUDGET_S = 2.0
#: SQLite virtual-machine steps between two looks at the clock while a count runs.
CLOCK_STEPS = 10_000


@dataclass(frozen=True)
class Relaxed:
    """A looser query (text and minimum score), why it is looser, and its matches up to `COUNT_CAP`."""

    text: str
    min_score: float
    change: str
    matches: int

    @property
    def capped(self) -> bool:
        return self.matches >= COUNT_CAP


def region_of_cells(cells: tuple[int, ...]) -> Region | None:
    """The parser's region of exactly these cells, under its canonical name."""
    for region in REGIONS.values():
        if region.cells == cells:
            return region
    return None


def _widened(region: Region) -> list[Region]:
    """A cell's row and column: the cell with its neighbours along each."""
    if len(region.cells) != 1:
        return []
    row, col = divmod(region.cells[0], 3)
    found = [region_of_cells(tuple(range(row * 3, row * 3 + 3))), region_of_cells((col, col + 3, col + 6))]
    return [r for r in found if r is not None]


def rewrite(text: str, term: Term, **changes) -> str | None:
    """``text`` with ``term`` spelled again with ``changes`` (region, threshold, strict), or None when the
    term's span does not hold what changes (a region a group gives its terms) or the result does not parse."""
    changed = replace(term, **changes)
    new_text = text[: term.start] + changed.describe() + text[term.end:]
    try:
        reparsed = [t for t in terms(parse(new_text)) if t.start == term.start]
    except ImgidxError:
        return None
    if not reparsed or (reparsed[0].region, reparsed[0].threshold) != (changed.region, changed.threshold):
        return None
    return new_text


def candidates(text: str, min_score: float) -> list[tuple[str, float, str]]:
    """The looser queries of ``text`` (a query that parses), in the order they are offered, at most
    `MAX_CANDIDATES`: ``(text, min_score, what changed)``."""
    found: list[tuple[str, float, str]] = []
    seen = {text}
    for term in dict.fromkeys(terms(parse(text))):
        if term.region is ANYWHERE:
            continue
        options = [(ANYWHERE, f"'{term.label}' anywhere")]
        options += [(wider, f"'{term.label}' in the {wider.name}") for wider in _widened(term.region)]
        for region, change in options:
            new_text = rewrite(text, term, region=region)
            if new_text is not None and new_text not in seen:
                seen.add(new_text)
                found.append((new_text, min_score, change))
    found = found[: MAX_CANDIDATES - 1]  # room for the lower confidence
    lower = max(LOWEST_MIN, round(min_score * LOWER_FACTOR, 2))
    if lower < min_score:
        lowered = text
        for term in sorted({t for t in terms(parse(text)) if t.threshold is not None}, key=lambda t: -t.start):
            lowered = rewrite(lowered, term, threshold=min(term.threshold, max(LOWEST_MIN, term.threshold * LOWER_FACTOR)),
                              strict=False) or lowered
        found.append((lowered, lower, f"confidence {lower:.0%} or more (--min-score {lower:g})"))
    return found[:MAX_CANDIDATES]


@contextmanager
def stopping_at(conn: sa.Connection, deadline: float | None) -> Iterator[None]:
    """Statements run on ``conn`` inside stop at ``deadline`` (`time.monotonic`) with a `sa.exc.OperationalError`:
    SQLite's progress handler, PostgreSQL's statement timeout (for this transaction only)."""
    if deadline is None:
        yield
        return
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SET LOCAL statement_timeout = {max(1, round((deadline - time.monotonic()) * 1000))}")
        yield
        return
    raw = conn.connection.dbapi_connection
    watch = getattr(raw, "set_progress_handler", None)
    if watch is None:
        yield
        return
    watch(lambda: time.monotonic() > deadline, CLOCK_STEPS)
    try:
        yield
    finally:
        watch(None, 0)


def count(conn: sa.Connection, text: str, min_score: float, tables: Tables, calibration: Calibration,
          within: Within | None = None, cap: int | None = None, deadline: float | None = None) -> int | None:
    """Matches of ``text``, counted up to ``cap``: the search's statement without its order, total and page;
    None when ``deadline`` came first."""
    prepared = prepare(conn, text, min_score=min_score, limit=None, tables=tables, calibration=calibration, within=within)
    statement = prepared.statement
    ids = statement.with_only_columns(statement.selected_columns["image_id"], maintain_column_froms=True).order_by(None)
    first = ids.limit(COUNT_CAP if cap is None else cap).offset(None).subquery("first_matches")
    try:
        with stopping_at(conn, deadline):
            return conn.execute(sa.select(sa.func.count()).select_from(first)).scalar_one()
    except sa.exc.OperationalError:
        if deadline is None or time.monotonic() <= deadline:
            raise
        conn.rollback()  # PostgreSQL's transaction ends with the cancelled statement
        return None


@dataclass(frozen=True)
class Looser:
    """The looser queries that find photos, and how many candidates were left untried for want of time."""

    found: list[Relaxed]
    untried: int


def relaxed(conn: sa.Connection, text: str, min_score: float, tables: Tables, calibration: Calibration,
            within: Within | None = None, budget_s: float | None = None) -> Looser:
    """The `candidates` of ``text`` that find something, with their counts (up to `COUNT_CAP`), counted
    until ``budget_s`` (`BUDGET_S`) has passed."""
    deadline = time.monotonic() + (BUDGET_S if budget_s is None else budget_s)
    found = []
    tried = candidates(text, min_score)
    for number, (new_text, new_min, change) in enumerate(tried):
        if time.monotonic() > deadline:
            return Looser(found, len(tried) - number)
        matches = count(conn, new_text, new_min, tables, calibration, within, deadline=deadline)
        if matches is None:
            return Looser(found, len(tried) - number)
        if matches:
            found.append(Relaxed(new_text, new_min, change, matches))
    return Looser(found, 0)
