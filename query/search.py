"""Run a query string against an index: parse -> resolve -> compile -> one SQL statement -> matches."""

from __future__ import annotations

from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, replace
from typing import Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from indexer import boxes as box_rules
from indexer import labels
from indexer.boxes import Box
from indexer.calibration import AS_STORED, Calibration, fusion_for
from indexer.labels import FACE_CLASS
from indexer.names import restored
from indexer.store import (
    Tables, boxes_of, keeps_runs, read_calibration, read_meta, read_settings, read_texts, tables as reflect_tables,
)
from indexer.words import joined, searchable
from query import DEFAULT_MIN_SCORE, compounds, runs
from query.compile import CompiledQuery, Count, Spec, Within, cells_of, compile_query
from query.dates import SORT_SCORE
from query.parser import Node, QueryError, Term, dump, parse
from query.resolve import Resolution, resolve


#: `prepare`'s default ``count``: the counts that choose the driving terms run on the index queried.
ON_THE_INDEX = "on the index"


@dataclass(frozen=True)
class TermMatch:
    """Where one reported term matched in one image (``score`` None: it did not, e.g. another OR branch)."""

    spec: Spec
    score: float | None
    cells: tuple[str, ...]


@dataclass(frozen=True)
class Match:
    """One matching file; ``content_hash`` (sha256 of its bytes) is shared by identical copies (`query.copies`)."""

    rank: int
    image_id: int
    path: str
    width: int | None
    height: int | None
    score: float
    terms: tuple[TermMatch, ...]
    content_hash: str | None = None
    #: The boxes (photo pixels) of the box classes of the terms that matched, in those terms' regions
    #: (`indexer.boxes.of_terms`), best first: what `--html` outlines.
    boxes: tuple[Box, ...] = ()
    #: When the photo was taken (`query.dates`: local time, and where it comes from); None: not known.
    taken_at: str | None = None
    taken_source: str | None = None
    #: The lines of text (`indexer.words.Line`) a quoted term of the query matched, in its region: outlined too.
    texts: tuple = ()


@dataclass
class Prepared:
    """A query ready to run: the tree, what each label resolved to, and the statement."""

    text: str
    tree: Node
    resolutions: dict[Term, Resolution]
    compiled: CompiledQuery
    min_score: float
    offset: int
    #: The query asks for faces of an index built without them (``imgidx index --no-faces``).
    faces_missing: bool = False
    #: The query asks for objects of an index built without them (``imgidx index --no-objects``).
    objects_missing: bool = False
    #: The query asks for text of an index built without it (``imgidx index --no-text``).
    text_missing: bool = False
    #: Answered from the class runs (`query.runs`), the statement giving only the page's rows; None: the statement.
    runs: runs.RunsPlan | None = None

    @property
    def statement(self) -> sa.Select:
        return self.compiled.statement

    def notes(self) -> list[str]:
        """One line per ambiguous label: which senses it covers."""
        seen: set[str] = set()
        lines = []
        for spec in self.compiled.specs:
            res: Resolution = spec.resolution
            if res.ambiguous and res.text not in seen:
                seen.add(res.text)
                senses = "; ".join(s.describe() for s in res.senses)
                lines.append(f"'{res.text}' is ambiguous and matches all of: {senses} (use a WordNet id to pick one)")
        if self.faces_missing:
            lines.append("this index was built without faces (--no-faces), so face terms find none; "
                         "imgidx index FOLDER --faces --reindex finds them")
        if self.objects_missing:
            lines.append("this index was built without objects (--no-objects), so the object detector's classes "
                         "find none; imgidx index FOLDER --objects --reindex finds them")
        if self.text_missing:
            lines.append("this index was built without text (--no-text), so quoted text finds none; "
                         "imgidx index FOLDER --text --reindex reads it")
        return lines


def explain(bind: Engine | sa.Connection, prepared: Prepared, max_classes: int = 12) -> str:
    """The parsed tree, each label's classes, the plan, the SQL, and the database's query plan."""
    dialect = bind.dialect
    sql = prepared.statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
    lines = [f"query: {prepared.text}", "parsed:", dump(prepared.tree, prepared.min_score, indent="  "), "labels:"]
    seen = set()
    for spec in prepared.compiled.specs:
        if spec.term.label not in seen:
            seen.add(spec.term.label)
            lines += ["  " + line for line in spec.resolution.describe(max_classes).splitlines()]
    lines.append(f"thresholds (calibration {prepared.compiled.calibration.version}):")
    lines += [_threshold_line(spec, spec.rule) for spec in prepared.compiled.specs]
    lines += [f"plan: {prepared.compiled.plan}", "SQL (values shown inline; the query binds them as parameters):"]
    lines += ["  " + line for line in str(sql).splitlines()]
    if dialect.name == "sqlite":
        with _connected(bind) as conn:
            plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + str(sql)).all()
        depth = {0: 0}
        lines.append("SQLite query plan:")
        for node, parent, _, detail in plan:
            depth[node] = depth.get(parent, 0) + 1
            lines.append("  " * depth[node] + detail)
    elif dialect.name == "postgresql":
        with _connected(bind) as conn:
            literal = str(sql).replace("%", "%%") if dialect.paramstyle in ("format", "pyformat") else str(sql)
            plan = conn.exec_driver_sql("EXPLAIN " + literal).scalars().all()
        lines.append("PostgreSQL query plan:")
        lines += ["  " + line for line in plan]
    return "\n".join(lines)


def _threshold_line(spec: Spec, fusion: str) -> str:
    sign = ">" if spec.strict else ">="
    sources = sorted({labels.source(c) for c in spec.box_classes}, key=labels.SOURCES.index)
    detectors = sources[0].removeprefix("the ") if len(sources) == 1 else "detectors"
    whose = f"{detectors}'" if detectors.endswith("s") else f"{detectors}'s"
    if spec.is_text:
        return f"  term {spec.number}: confidence {sign} {spec.threshold:g}, as the text reader gave it"
    if not spec.confidences:
        line = f"  term {spec.number}: confidence {sign} {spec.threshold:g} means evidence {sign} {spec.evidence:.4g}"
        if spec.fused:
            line += f", or the {whose} confidence {sign} {spec.threshold:g} (fused by the rule {fusion})"
        return line
    if not spec.fused and not spec.compounded:
        return f"  term {spec.number}: confidence {sign} {spec.threshold:g}, as the {detectors} gave it"
    stored = ", as the index stores it for this word (query.compounds)" if spec.compounded else ""
    if not spec.box_classes:
        return (f"  term {spec.number}: confidence {sign} {spec.threshold:g}, the calibration's reading of its "
                f"classes' summed evidence{stored}")
    return (f"  term {spec.number}: confidence {sign} {spec.threshold:g}, the {whose} and the calibration's "
            f"reading of the other classes' evidence, fused by the rule {spec.rule if spec.compounded else fusion}{stored}")


@dataclass
class Result:
    prepared: Prepared
    matches: list[Match]
    total: int | None  # matches in all, ignoring limit and offset (None: the offset is past the end)
    counted: bool = True  # False: the count stopped (`CompiledQuery.count_limit`), there are more than ``total``

    @property
    def offset(self) -> int:
        return self.prepared.offset


def prepare(
    bind: Engine | sa.Connection,
    text: str,
    *,
    min_score: float = DEFAULT_MIN_SCORE,
    limit: int | None = 20,
    offset: int = 0,
    tables: Tables | None = None,
    calibration: Calibration | None = None,
    within: Within | None = None,
    fusion: str | None = None,
    sort: str = SORT_SCORE,
    count: Count | None | str = ON_THE_INDEX,
) -> Prepared:
    """Parse, resolve and compile ``text``; raise `QueryError` for a malformed query or unknown label.

    ``tables`` and ``calibration`` are read from the index unless given (a caller running many queries);
    ``within`` restricts the images that may match (`query.browse.in_folder`, `query.dates.DateFilter`);
    ``fusion`` names the `indexer.calibration.fuse` rule (the bench compares them); by default the index's
    (`fusion_for`); ``sort`` orders the matches (`query.dates.SORTS`); ``count`` runs the counts of
    class-index entries that choose the driving terms (`compile_query`): by default on ``bind``, None to
    choose them from the query alone (the answer is the same)."""
    if not 0.0 <= min_score <= 1.0:
        raise QueryError(f"the minimum score lies between 0 and 1, not {min_score:g}", text, 0)
    tree, resolutions = resolve(parse(text), text)
    t = tables if tables is not None else reflect_tables(bind)
    if calibration is None:
        with _connected(bind) as conn:
            calibration = read_calibration(conn)
    stored = {c for resolution in resolutions.values() for c in resolution.classes if c in AS_STORED}
    settings, held = None, None
    wants_text = any(resolution.is_text for resolution in resolutions.values())
    several = any(len(resolution.classes) > 1 for resolution in resolutions.values())
    if stored or wants_text or several:
        with _connected(bind) as conn:
            settings = read_settings(conn)
            if settings is not None and several:
                held = compounds.stored(read_meta(conn), settings.objects, settings.calibration)
    if fusion is None:  # an index that records no settings records no object pass either
        fusion = fusion_for(settings is not None and settings.objects)
    with ExitStack() as connection:
        opened: list[sa.Connection] = []

        def on_the_index(statement: sa.Select) -> int:
            """A count on ``bind``, through one connection opened at the first (most queries need none)."""
            if not opened:
                opened.append(connection.enter_context(_connected(bind)))
            return opened[0].execute(statement).scalar_one()

        plan = None
        if runs.shaped(tree) and limit and within is None and sort == SORT_SCORE and keeps_runs(bind):
            # The statement of the page's photos alone; the specs say whether the runs can rank them.
            compiled = compile_query(
                t, tree, resolutions, min_score=min_score, limit=limit, dialect=bind.dialect.name,
                calibration=calibration, fusion=fusion, compounds=held, photos=runs.PAGE,
            )
            if runs.answerable(compiled.specs):
                plan = runs.plan_for(t, tree, compiled.specs, calibration, limit)
                compiled = replace(compiled, plan=f"{plan.described}; the page's rows: {compiled.plan}")
        if plan is None:
            compiled = compile_query(
                t, tree, resolutions, min_score=min_score, limit=limit or None, offset=offset,
                dialect=bind.dialect.name, calibration=calibration, within=within, fusion=fusion, sort=sort,
                count=on_the_index if count == ON_THE_INDEX else count, compounds=held,
            )
    faces_missing = settings is not None and not settings.faces and FACE_CLASS in stored
    objects_missing = settings is not None and not settings.objects and bool(stored - {FACE_CLASS})
    text_missing = settings is not None and not settings.text and wants_text
    return Prepared(text, tree, resolutions, compiled, min_score, offset, faces_missing, objects_missing,
                    text_missing, plan)


@contextmanager
def _connected(bind: Engine | sa.Connection) -> Iterator[sa.Connection]:
    """A connection: a new one from an engine (closed after), or the one given (left open)."""
    with bind.connect() if isinstance(bind, Engine) else nullcontext(bind) as conn:
        yield conn


def execute(bind: Engine | sa.Connection, prepared: Prepared) -> Result:
    """Run the prepared statement (once); ranks count from the first match, before the offset."""
    reported = prepared.compiled.reported
    with _connected(bind) as conn:
        if prepared.runs is not None:
            with runs.one_snapshot(conn):
                page, total = runs.ranked(conn, prepared.runs, prepared.offset)
                # the page's photos are given: no offset, whatever a scrolling page set (`CompiledQuery.at_offset`)
                statement = prepared.statement.offset(None)
                rows = conn.execute(statement, {runs.PAGE.key: page}).all() if page else []
        else:
            rows = conn.execute(prepared.statement).all()
            total = rows[0]._mapping["total"] if rows else None
        found_boxes = {}
        box_classes = frozenset(c for spec in reported for c in spec.box_classes)
        if rows and box_classes:
            found_boxes = boxes_of(conn, [row._mapping["image_id"] for row in rows], classes=box_classes)
        found_texts = {}
        if rows and any(spec.is_text for spec in reported):
            found_texts = read_texts(conn, [row._mapping["image_id"] for row in rows])
    matches = []
    for rank, row in enumerate(rows, start=prepared.offset + 1):
        mapping = row._mapping
        photo_boxes: tuple[Box, ...] = ()
        if found_boxes.get(mapping["image_id"]) and mapping["width"] and mapping["height"]:
            matched = [(spec.box_classes, spec.cells, spec.threshold) for spec in reported
                       if mapping[f"score_{spec.number}"] is not None]
            photo_boxes = tuple(box_rules.of_terms(found_boxes[mapping["image_id"]], matched, mapping["width"],
                                                   mapping["height"]))
        matches.append(
            Match(
                rank,
                mapping["image_id"],
                restored(mapping["path"]),
                mapping["width"],
                mapping["height"],
                float(mapping["score"]),
                tuple(
                    TermMatch(
                        spec,
                        mapping[f"score_{spec.number}"],
                        tuple(cells_of(mapping[f"mask_{spec.number}"])) if mapping[f"score_{spec.number}"] is not None else (),
                    )
                    for spec in reported
                ),
                mapping["content_hash"],
                photo_boxes,
                mapping["taken_at"],
                mapping["taken_source"],
                matched_lines(found_texts.get(mapping["image_id"], []), reported, mapping),
            )
        )
    if not rows:
        total = None if prepared.offset else 0
    count_limit = prepared.compiled.count_limit
    if count_limit is not None and total is not None and total > count_limit:
        return Result(prepared, matches, count_limit, counted=False)
    return Result(prepared, matches, total)


def line_matches(line, spec: Spec, width: int, height: int) -> bool:
    """A line of text (`indexer.words.Line`) holds a quoted term ``spec``: its words in order (each as a word or
    its start) or run together (`indexer.words.joined`), reaching a cell of the term's region, from its threshold up: the compiled query's rule."""
    words = searchable(line.text)
    in_order = any(all(words[i + k].startswith(w) for k, w in enumerate(spec.words))
                   for i in range(len(words) - len(spec.words) + 1)) or joined(words).startswith(joined(spec.words))
    box = Box(0, line.left, line.top, line.right, line.bottom, line.confidence)
    return in_order and line.confidence >= spec.threshold and box_rules.reaches(box, width, height, spec.cells)


def matched_lines(lines: list, reported: list[Spec], mapping) -> tuple:
    """The lines of text of one match that a quoted term holding there matched (`line_matches`)."""
    if not lines or not mapping["width"] or not mapping["height"]:
        return ()
    held = [spec for spec in reported if spec.is_text and mapping[f"score_{spec.number}"] is not None]
    return tuple(line for line in lines
                 if any(line_matches(line, spec, mapping["width"], mapping["height"]) for spec in held))


def search(
    bind: Engine | sa.Connection,
    text: str,
    *,
    min_score: float = DEFAULT_MIN_SCORE,
    limit: int | None = 20,
    offset: int = 0,
    tables: Tables | None = None,
    calibration: Calibration | None = None,
    within: Within | None = None,
    fusion: str | None = None,
    sort: str = SORT_SCORE,
) -> Result:
    """Matches of ``text``, best first (or by date: ``sort``): ``limit`` of them (None or 0: all) after
    skipping ``offset``."""
    prepared = prepare(
        bind, text, min_score=min_score, limit=limit, offset=offset, tables=tables, calibration=calibration,
        within=within, fusion=fusion, sort=sort,
    )
    return execute(bind, prepared)
