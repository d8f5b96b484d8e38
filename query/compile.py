"""A resolved query tree -> one SQLAlchemy ``select`` over ``cell_labels``; the ranking.

Semantics
---------
A term ``LABEL in REGION`` with classes C and minimum score t holds in a cell when its confidence there
reaches t (``>=``; ``>`` when the query says ``> t``). The confidence of C's ImageNet classes is the
index's calibration (`indexer.calibration`) of their summed evidence in the cell; it rises with the
evidence, so the condition runs on the stored evidence against the evidence that confidence t takes for
C. The detectors' classes (faces, COCO objects: `AS_STORED`) store probabilities: the best of them is the
cell's detector confidence. A term with classes of both kinds (``dog``, ``person``) reads
`indexer.calibration.fuse` of the two (`Calibration.label_confidence` computes the same value in Python);
under a rule of `MONOTONE_FUSIONS` (``max``) it is read in the evidence space of its ImageNet classes,
a detector probability p counting as the evidence that confidence p takes, so its threshold too runs on
evidence and the curve applies once per image, as for ImageNet's classes alone.
A term matches an image when it holds in at least one cell of its region; its *cells* are those cells and
its *score* is the best confidence among them. ``NOT x`` holds when x does not. Relations between two terms are decided from
their cells, (row, column) = divmod(cell, 3):

=============  ==============================================================================
``A left of B``   some cell of A lies in a column strictly left of some cell of B
``A right of B``  some cell of A lies in a column strictly right of some cell of B
``A above B``     some cell of A lies in a row strictly above some cell of B
``A below B``     some cell of A lies in a row strictly below some cell of B
``A next to B``   some cell of A is the same as, or touches (edge or corner), some cell of B
=============  ==============================================================================

Ranking (``score`` of a match, higher first; ties by path, compared byte by byte on every database): a
term scores its best cell's confidence; AND and a relation multiply the scores of their parts (the chance that
all hold, were they independent); OR takes the best score among the branches that hold; NOT only filters
(it counts as 1). So a query of NOT terms only (``NOT dog``, ``NOT (cat OR dog in center)``) scores every
match 1 and lists its matches by path.

Plan
----
The statement is one pivot: a ``UNION ALL`` of per-(image, cell) score rows, one column per term, grouped
by image into each term's score and cell mask, joined to ``images`` by primary key, filtered by the
boolean condition, ranked, paged. It has no other joins, so its plan does not hinge on SQLite's guesses.

The rows come from two sources:

- *read from the class index*: a term's cells where it reaches its threshold, straight from the
  ``(class_id, cell, score)`` index (for one class, or for detector classes alone, the threshold runs
  inside the index; for several ImageNet classes the rows are summed per image and cell; a term of both
  kinds under ``max`` holds where either part does, each read so; under another rule, the cells where
  either part reaches what `fuse_floor` asks of it are read from the index and their value computed from
  their own rows);
- *computed per candidate*: for each candidate image, its own rows of the classes asked for (the index
  ``(image_id, class_id, cell, score)``: one seek per candidate and class), summed per cell for every such
  term at once.

Candidates come from *drivers*, terms that must hold whenever the query holds. AND takes its cheap
children (at most `CHEAP_DRIVER` (class, cell) pairs: one class anywhere, a few classes in a few cells)
or else its narrowest child; OR needs a driver in every branch; NOT has none. Where the compiler may ask
the index (`query.search.prepare` lets it), an AND or a relation counts each child's class-index entries,
up to `ESTIMATE_CAP` (and a child stopped there on, up to `NARROW_RATIO` times the narrowest), and drops the
children that read more than `NARROW_RATIO` times its narrowest: a term in half the photos (``person``,
``face``) is then computed for the candidates of a rare one instead of read in full (``person above
wallet``). The counts choose how a query is computed, never what it answers. A relation's side drives only from
the cells where it can stand in the relation (`RELATION_SIDES`: ``A above B`` reads no A in the bottom row), and
its values still come from all its cells. A driving term of one class read as stored (the face, a COCO class, a
compound) lists its photos from ``image_labels`` instead, a row each: anywhere always (they are its cells'
photos, each once), and a relation's side where the counts show it fills two or more of its cells a photo
(`_Compiler.lists_photos`). Then:

1. one driving term: the candidates are its images; it and every other cheap term are read from the
   index, the broad ones (``dog``, ``vehicle``) computed per candidate;
2. an intersection (AND) of drivers: usually few images survive, so every term is computed for them;
3. a union (OR): cheap terms are read from the index, broad ones computed per candidate;
4. no driver but a term to rank by (``cat OR NOT dog``): every image is a candidate and every term is
   read from the index;
5. nothing but NOT terms (``NOT dog``): nothing to rank by, so no pivot. Images are read in path order
   (`_Compiler.in_path_order`) and each is tested against its own rows (a term: some cell of its region
   reaches the threshold; a relation: some pair of such cells is so placed) until the page is full. The
   count of matches stops past `COUNT_LIMIT` (or past the page's end, if further), and the total is then
   "more than" that. So ``NOT dog`` costs what its page costs, not what the index holds.

So ``dog in center AND flowerpot top-left`` costs about what the flowerpots cost, not all dog photos.

A query of one term or of an OR of terms (a page of it: not every match, not restricted, by score), less
terms of one class, is no pivot either: each image's best value (an OR's: the best of its terms') is read once,
and only the images that can reach the page are joined to ``images`` (`_Compiler.ranked`); the pivot would join
every match. Where each term is one class (a word several classes answer is one: `query.compounds`), each of
its cells is a stream the class index hands over in score order, and the page is cut from the rows reaching
the best of the streams' page-end scores, with the count stopped past `COUNT_LIMIT` as for NOT terms
(`_Compiler.ranked_streams`): grouping and counting every image of ``person in the bottom row`` (354,000 at
1M photos) cost more than half a second. So too for such a query less terms that leave most of its photos
(``minibus AND NOT truck``): each photo read is tested for them (`_Compiler.mostly_kept`). Nor is an AND of terms
each of one class, anywhere or in a region, where its candidates are many (``person AND animal``): a photo's
score of such a term is one row (`image_labels`, for a class read as stored anywhere) or the best of its rows in
the region, so each candidate's are looked up, one seek a term, and the page is cut as one term's is
(`_Compiler.ranked_photos`). So too a relation of two such terms that both drive: each candidate's rows of both
classes are read, a seek a class, and its values, its cells and the relation come from them.

A relation or an AND of two terms in many photos each, each one class (``face below person``, ``person AND dog``,
``face AND person in bottom-right``), is not computed in full where a sample of a side's photos expects it to
hold often (`_Compiler.broad_pair`): that side's best photos are read in score order (a class in a region, or a
model class, from its cells there) and each is tested from its own rows; the first `COUNT_LIMIT` matches are
counted (then "more than"), and the page is ranked from the photos where each side scores at least the k-th
best product among them (or among both sides' best rows) over the other side's best score
(`_Compiler.ranked_pair`). Where those photos do not tell, the same statement computes every candidate.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass, fields, replace
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import operators
from sqlalchemy.sql.visitors import InternalTraversal

from indexer.boxes import SCORE_FLOOR
from indexer.calibration import (
    AS_STORED, FUSION, FUSIONS, MONOTONE_FUSIONS, Calibration, UnknownFusionError, fuse, fuse_floor, read_as_stored,
    term_fusion,
)
from indexer.geometry import CELL_NAMES
from indexer.labels import NUM_CLASSES, class_ids
from indexer.store import Tables, bytewise
from indexer.words import JOINED, MAX_WORD, prefix_end
from query import COUNT_LIMIT, DEFAULT_MIN_SCORE
from query.compounds import COMPOUND_FLOOR, Compounds
from query.dates import SORT_SCORE, SORTS, order_by_date
from query.parser import And, Node, Not, Or, Region, Relation, Term
from query.resolve import Resolution

ALL_CELLS = tuple(range(9))
#: Terms over at most this many (class, cell) pairs drive together in an AND (single-class terms).
CHEAP_DRIVER = 9
#: A term of an AND that reads more than this many times the class-index entries of its narrowest term
#: does not drive, and is not read from the class index: it is computed per candidate (`_and_drive`).
NARROW_RATIO = 8
#: Class-index entries counted at most per term to choose the drivers (about a millisecond of reading).
ESTIMATE_CAP = 20_000
#: A relation or AND of two broad terms is read in one side's score order (`_Compiler.ranked_pair`) where a sample
#: of `RELATION_SAMPLE` photos spread over that side's best `RELATION_BUDGET` expects `RELATION_MARGIN` times
#: the `COUNT_LIMIT` + 1 matches it must find there (each photo tested from its own rows: about 7 µs at 1M, so
#: 70 ms at most; a sample of 250 at a share of 15% is within 15% of it, one standard error), and where the
#: statement finds them there and at most `RELATION_ABOVE` rows of either side score above that side's cut
#: (each looked up for the other side's score, and only those that reach the page tested). Both sides' best
#: `RELATION_SEED` rows are intersected for matches that raise the cut. ``French horn next to person`` finds
#: its 1,001 matches among 1,630 photos and has 9,155 cells above its cut.
RELATION_SAMPLE = 250
RELATION_BUDGET = 10_000
RELATION_MARGIN = 1.5
RELATION_ABOVE = 10_000
#: ... or at most this many where each is tested against the other side's list first (`RELATION_LIST_RATIO`):
#: a row then costs a read and a probe of the list, a lookup only where the photo is in both lists.
RELATION_LISTED_ABOVE = 30_000
RELATION_SEED = 10_000
#: The side a relation's page is read from tests its photos against a list of the other side's rows above
#: their cut where those are at most this many times its own: a row listed costs about a tenth of a lookup.
RELATION_LIST_RATIO = 8
#: A driving term of one class read as stored, anywhere, lists its photos (`_Compiler.photos_of`), a row
#: each, where the cells its drive reads are at least this many per photo: fewer rows, and not many more
#: candidates than its cells give (`_Compiler.reads_photos`).
CELLS_PER_PHOTO = 2
#: A quoted term's rows in the word index are counted up to this many to choose how it is read (`_Compiler.
#: word_counts`, `started_lines`): about a millisecond of reading a word.
WORD_COUNT_CAP = 10_000
#: An estimate of a term's entries within this factor of a count's bound is not taken for the count
#: (`_Compiler.entries_estimate`): it may err that far either side.
ESTIMATE_MARGIN = 1.25
#: A stored class's photos anywhere are estimated from this many ranges of image ids spread evenly over the
#: index, each the first `PHOTO_SAMPLE_SHARE`-th of its stretch (`_Compiler.photos_estimate`): one id in 256.
PHOTO_SAMPLE_RANGES = 16
PHOTO_SAMPLE_SHARE = 16
#: A row looked up in the table's key costs about as much as this many rows of a range of an index: at 1M
#: photos 2 µs warm and 170 µs from disk, against 0.7 and 1.1 µs (bench/RESULTS.md, session 16). So a term
#: of text reads rows by lookups only where a range would read this many times more (`_Compiler.word_range`,
#: `started_lines`).
LOOKUP_ROWS = 20
#: The parameter a one-term statement's page starts at (`CompiledQuery.at_offset`).
PAGE_OFFSET = "page_offset"


def _relation_masks() -> dict[str, tuple[int, ...]]:
    """For each relation and each cell b: the mask of the cells a with ``a RELATION b``."""
    def mask(test) -> tuple[int, ...]:
        return tuple(
            sum(1 << a for a in ALL_CELLS if test(divmod(a, 3), divmod(b, 3))) for b in ALL_CELLS
        )

    return {
        "left of": mask(lambda a, b: a[1] < b[1]),
        "right of": mask(lambda a, b: a[1] > b[1]),
        "above": mask(lambda a, b: a[0] < b[0]),
        "below": mask(lambda a, b: a[0] > b[0]),
        "next to": mask(lambda a, b: abs(a[0] - b[0]) <= 1 and abs(a[1] - b[1]) <= 1),
    }


RELATION_MASKS = _relation_masks()


def _relation_sides() -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """For each relation, the cells its left side and its right side can hold in: those with a partner cell
    (``A above B`` needs an A out of the bottom row and a B out of the top row)."""
    return {
        kind: (tuple(a for a in ALL_CELLS if any(m >> a & 1 for m in masks)),
               tuple(b for b in ALL_CELLS if masks[b]))
        for kind, masks in RELATION_MASKS.items()
    }


RELATION_SIDES = _relation_sides()


class _Driven(sa.sql.expression.Join):
    """A join whose left side drives: each of its rows looks up its own rows on the right. SQLite, without
    statistics, would rather scan the class index on the right for each listed class and look the candidates
    up, so there it is a CROSS JOIN, which keeps the left side outer; other databases plan it themselves."""

    inherit_cache = True
    #: The index SQLite must seek on the right, where it would pick another.
    index: str | None = None


class _DrivenByPhoto(_Driven):
    """A `_Driven` join whose right side is ``image_labels``, sought by (class, image) in the index that holds
    the score: SQLite prefers the primary key (image, class), which does not, so that each seek visits the
    table too. Warm, the two cost alike; from a cold page cache, ``person AND vehicle`` at 1M photos (76,243
    photos, two words looked up for each) took 0.27-0.29 s so and 3.6-6.0 s by the key."""

    inherit_cache = True
    index = "image_labels_class_by_image"


@compiles(_Driven, "sqlite")
def _cross_join(join: _Driven, compiler, **kw) -> str:
    kw.pop("asfrom", None)
    return (join.left._compiler_dispatch(compiler, asfrom=True, **kw) + " CROSS JOIN "
            + join.right._compiler_dispatch(compiler, asfrom=True, **kw)
            + (f" INDEXED BY {join.index}" if join.index else "") + " ON "
            + join.onclause._compiler_dispatch(compiler, **kw))


class _Piecewise(sa.sql.expression.ColumnElement):
    """A piecewise-linear function in SQL, ``CASE WHEN x IS NULL THEN NULL WHEN x' <= b0 THEN first WHEN x' <=
    b1 THEN (y0 + (x' - x0) * k0) * factor ... ELSE last END`` with ``x' = argument`` (``x``, or ``x`` times a
    scale). Built from operators, a calibration curve of 14 knots was ~800 objects a use, most of them in
    reference cycles that outlived the query and piled up for the collector's full passes (0.2-0.9 s each at
    1M photos); here a use is a few objects, and the knots' parameters are made once per calibration and
    shared by every statement (`_knot_parameters`). The SQL, its parameters and its arithmetic are those of
    the operator form, so the answers are bit for bit the same."""

    inherit_cache = True
    type = sa.Double()
    _traverse_internals = [
        ("value", InternalTraversal.dp_clauseelement),
        ("argument", InternalTraversal.dp_clauseelement),
        ("bounds", InternalTraversal.dp_clauseelement_tuple),
        ("first", InternalTraversal.dp_clauseelement),
        ("pieces", InternalTraversal.dp_clauseelement_tuple),
        ("factor", InternalTraversal.dp_clauseelement),
        ("last", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, value: sa.ColumnElement, argument: sa.ColumnElement, bounds: tuple, first: sa.ColumnElement,
                 pieces: tuple, factor: sa.ColumnElement | None, last: sa.ColumnElement):
        """``pieces``: ``(y, x, k)`` of each segment, flat; ``bounds``: each segment's upper end, after the
        first's lower one."""
        self.value = value
        self.argument = argument.self_group(against=operators.sub)
        self.bounds, self.first, self.pieces, self.factor, self.last = bounds, first, pieces, factor, last

    @property
    def _from_objects(self):
        return self.value._from_objects


@compiles(_Piecewise)
def _piecewise(element: _Piecewise, compiler, **kw) -> str:
    value = element.value.is_(None)._compiler_dispatch(compiler, **kw)
    x = element.argument._compiler_dispatch(compiler, **kw)
    bound = [b._compiler_dispatch(compiler, **kw) for b in element.bounds]
    pieces = [p._compiler_dispatch(compiler, **kw) for p in element.pieces]
    factor = None if element.factor is None else element.factor._compiler_dispatch(compiler, **kw)
    whens = [f"WHEN ({value}) THEN NULL", f"WHEN ({x} <= {bound[0]}) THEN "
             + element.first._compiler_dispatch(compiler, **kw)]
    for at, upper in enumerate(bound[1:]):
        y, x0, k = pieces[3 * at:3 * at + 3]
        segment = f"{y} + ({x} - {x0}) * {k}"
        whens.append(f"WHEN ({x} <= {upper}) THEN " + (segment if factor is None else f"({segment}) * {factor}"))
    return "CASE " + " ".join(whens) + " ELSE " + element.last._compiler_dispatch(compiler, **kw) + " END"


@dataclass(frozen=True)
class _Knots:
    """A calibration curve's numbers as bound parameters, for `_Piecewise`: ``u``, ``p`` of each knot, the
    slope of each segment both ways (``p`` over ``u`` for the curve, ``u`` over ``p`` for its inverse)."""

    u: tuple[sa.BindParameter, ...]
    p: tuple[sa.BindParameter, ...]
    slope: tuple[sa.BindParameter, ...]
    inverse_slope: tuple[sa.BindParameter, ...]
    zero: sa.BindParameter


def _number(value: float) -> sa.BindParameter:
    return sa.literal(value, sa.Double())


@functools.lru_cache(maxsize=8)
def _knot_parameters(knots: tuple[tuple[float, float], ...]) -> _Knots:
    """Made once per calibration: parameters are immutable and may sit in any number of statements."""
    pairs = list(zip(knots, knots[1:]))
    return _Knots(
        tuple(_number(u) for u, _ in knots), tuple(_number(p) for _, p in knots),
        tuple(_number((p1 - p0) / (u1 - u0)) for (u0, p0), (u1, p1) in pairs),
        tuple(_number((u1 - u0) / (p1 - p0)) for (u0, p0), (u1, p1) in pairs), _number(0.0),
    )


def calibrated(calibration: Calibration, evidence: sa.ColumnElement, classes: tuple[int, ...]) -> sa.ColumnElement:
    """`Calibration.curve` of ``evidence`` times the scale of ``classes``, in SQL."""
    k = _knot_parameters(calibration.knots)
    pieces = tuple(x for segment in zip(k.p, k.u, k.slope) for x in segment)
    return _Piecewise(evidence, evidence * _number(calibration.scale(classes)), k.u, k.p[0], pieces, None, k.p[-1])


def evidence_of(calibration: Calibration, probability: sa.ColumnElement, classes: tuple[int, ...]) -> sa.ColumnElement:
    """`Calibration.evidence_for` in SQL (the same arithmetic in the same order, so a detector probability
    equal to a threshold gives exactly that threshold's evidence): the evidence of ``classes`` whose
    confidence is ``probability``; the last knot's evidence above it, where a probability never is."""
    k, per_u = _knot_parameters(calibration.knots), 1.0 / calibration.scale(classes)
    pieces = tuple(x for segment in zip(k.u, k.p, k.inverse_slope) for x in segment)
    return _Piecewise(probability, probability, k.p, k.zero, pieces, _number(per_u),
                      _number(calibration.knots[-1][0] * per_u))


def cells_of(mask: int | None) -> list[str]:
    """Cell names of a 9-bit mask, in row-major order."""
    return [CELL_NAMES[c] for c in ALL_CELLS if mask and mask >> c & 1]


def image_columns(images: sa.Table) -> list[sa.ColumnElement]:
    """What a match reports of its image, in both shapes of statement (`query.search.execute` reads them)."""
    return [images.c.image_id, images.c.path, images.c.content_hash, images.c.width, images.c.height,
            images.c.taken_at, images.c.taken_source]


def labelled(images: sa.Table) -> sa.ColumnElement[bool]:
    """Images whose labels are current: not failed, and not waiting to be redone after ``--reindex``."""
    return sa.and_(images.c.error.is_(None), images.c.model.isnot(None))


def unlabelled(images: sa.Table) -> sa.ColumnElement[bool]:
    """The images `labelled` leaves out, spelled as the partial index ``images_unlabelled`` (schema.sql) is,
    so both backends read them from it: few or none, where the labelled ones are nearly all."""
    return sa.or_(images.c.error.isnot(None), images.c.model.is_(None))


@dataclass(eq=False)
class Spec:
    """One distinct term of the query (a term repeated verbatim is computed once)."""

    number: int  # 1-based, in order of first appearance
    term: Term
    resolution: Resolution
    classes: tuple[int, ...]
    cells: tuple[int, ...]
    threshold: float  # a confidence
    strict: bool
    evidence: float  # the summed evidence that confidence ``threshold`` takes for these classes
    positive: bool = False  # appears outside NOT, so it is reported
    #: Its values are confidences, compared with ``threshold`` as they are (detector classes alone, or both
    #: kinds under a rule outside `MONOTONE_FUSIONS`); else evidence, compared with ``evidence``.
    confidences: bool = False
    #: For a `fused` term: what each part must reach for the term to be able to hold: the detector classes'
    #: probability and the model classes' summed evidence (`fuse_floor`; the threshold itself under ``max``).
    floors: tuple[float, float] = (float("inf"), float("inf"))
    #: For a `fused` term: the `fuse` rule of its two parts (the query's, or the WordNet groups' own:
    #: `indexer.calibration.term_fusion`).
    rule: str = FUSION
    #: The term's own classes where ``classes`` is the compound that stores their fused value
    #: (`query.compounds`); empty otherwise.
    compounded: tuple[int, ...] = ()

    @property
    def region(self) -> Region:
        return self.term.region

    @property
    def label(self) -> str:
        if self.term.text:
            return f'"{self.term.label}"'
        return f"'{self.term.label}'" if self.term.quoted else self.term.label

    @property
    def words(self) -> tuple[str, ...]:
        """A term of text's words (`query.resolve.Resolution.words`); none for a label."""
        return self.resolution.words

    @property
    def is_text(self) -> bool:
        return bool(self.words)

    def describe(self) -> str:
        return self.term.describe(self.threshold)

    @property
    def cost(self) -> int:
        """(class, cell) pairs to read; a term of text reads a range of the word index: as cheap as one pair."""
        return 1 if self.is_text else len(self.classes) * len(self.cells)

    @property
    def stored_classes(self) -> tuple[int, ...]:
        """Classes whose scores are probabilities already (faces, COCO objects), read as stored."""
        return tuple(c for c in self.classes if read_as_stored(c))

    @property
    def model_classes(self) -> tuple[int, ...]:
        """Classes whose evidence is read through the calibration."""
        return tuple(c for c in self.classes if not read_as_stored(c))

    @property
    def box_classes(self) -> tuple[int, ...]:
        """The term's detector classes, whose boxes it draws and covers, whatever rows it is read from."""
        return tuple(c for c in self.compounded or self.classes if c in AS_STORED)

    @property
    def classifier_classes(self) -> tuple[int, ...]:
        """The term's ImageNet classes, whatever rows it is read from."""
        return tuple(c for c in self.compounded or self.classes if c not in AS_STORED)

    @property
    def fused(self) -> bool:
        """Both kinds (``dog``: 118 breeds and the detector's dog; ``person``: faces, the detector's person and
        ImageNet's groom, scuba diver, ballplayer): the term's value in a cell is then `fuse` of the detector
        classes' best probability and the model classes' confidence."""
        return bool(self.stored_classes) and bool(self.model_classes)



@dataclass
class CompiledQuery:
    """The statement plus what is needed to read its rows and to explain it."""

    statement: sa.Select
    specs: list[Spec]  # every distinct term; ``positive`` ones are reported per match
    plan: str  # one line: which shape was chosen and the driving terms
    calibration: Calibration
    count_limit: int | None = None  # the count of matches stops past this many (None: it counts them all)
    fusion: str = FUSION  # the query's `fuse` rule of the terms of both kinds (each term's own: `Spec.rule`)
    #: The parameter the statement's page starts at, where the offset is not the statement's own (one term).
    offset_parameter: str | None = None
    #: Where the count stops past `COUNT_LIMIT` or the page's end, whichever is further, with the page's
    #: offset as a parameter: the page's size (`at_offset` moves ``count_limit`` with the page).
    counted_page: int | None = None

    def at_offset(self, offset: int) -> "CompiledQuery":
        """The same query's page from ``offset`` on, compiled no further (a web page scrolling on)."""
        if self.offset_parameter is not None:
            count_limit = self.count_limit
            if self.counted_page is not None:
                count_limit = max(COUNT_LIMIT, offset + self.counted_page)
            return replace(self, statement=self.statement.params({self.offset_parameter: offset}),
                           count_limit=count_limit)
        return replace(self, statement=self.statement.offset(offset or None))

    @property
    def reported(self) -> list[Spec]:
        return [s for s in self.specs if s.positive]


# ------------------------------------------------------------------------------------------- drivers

@dataclass(frozen=True)
class _Drive:
    op: str  # "term", "and", "or", or "photos": those of a list (`compile_query`'s ``photos``)
    spec: Spec | None = None
    parts: tuple["_Drive", ...] = ()
    #: A term's cells that can hold a match, where fewer than its region's: a relation's side (`RELATION_SIDES`).
    narrowed: tuple[int, ...] | None = None
    #: The "photos" drive's image ids: a list, or an expanding parameter of one.
    photos: sa.ColumnElement | list[int] | None = None

    @property
    def cells(self) -> tuple[int, ...]:
        return self.spec.cells if self.narrowed is None else self.narrowed

    @property
    def cost(self) -> int:
        if self.op == "term":
            if self.narrowed is None or self.spec.is_text:
                return self.spec.cost
            return len(self.spec.classes) * len(self.narrowed)
        costs = [p.cost for p in self.parts]
        return min(costs) if self.op == "and" else sum(costs)

    def specs(self) -> list[Spec]:
        return [self.spec] if self.op == "term" else [s for p in self.parts for s in p.specs()]


def _combine(op: str, parts: list[_Drive]) -> _Drive:
    """``op`` over ``parts``, nested same-op drives flattened and repeated ones dropped."""
    flat: list[_Drive] = []
    for part in parts:
        for piece in part.parts if part.op == op else (part,):
            if piece not in flat:
                flat.append(piece)
    return flat[0] if len(flat) == 1 else _Drive(op, parts=tuple(flat))


#: How a compiler learns how many class-index entries a term reads (`_Compiler.entries`), counting up to a
#: bound: a function that runs a count statement (`query.search.prepare` gives one over its connection).
Count = Callable[[sa.Select], int]


def _and_drive(parts: list[_Drive], entries: Callable[[_Drive, int], int] | None = None,
               listed: Callable[[_Drive, int], int | None] | None = None) -> _Drive | None:
    """The drive of an AND (or a relation) of ``parts``: its cheap parts (few (class, cell) pairs), or its
    narrowest one. Where the index can be asked (``entries``: a part's class-index entries, counted up to a
    bound), those of them that read far more entries than the narrowest part (`NARROW_RATIO`) are left to be
    computed per candidate, and the narrowest part drives alone if none is left: ``person in center AND can
    opener in top-left`` is driven by the can openers, not by the people. Where every part passes
    `ESTIMATE_CAP`, they are counted again up to `NARROW_RATIO` times that (``chime next to person``: 24,000
    against 2 million), and a part stopped at the cap is counted on up to `NARROW_RATIO` times the narrowest
    (7,800 wallet entries against 2 million person entries). Each count reads at most what reading that part
    in full would. A part that lists its photos instead of its entries (``listed``: their count, or None where
    it reads its entries or they are too many) is weighed by them, as that is what the intersection reads:
    ``dining table next to frisbee`` at 1M photos, 490,000 table entries in 75,000 photos against 31,500
    frisbees, intersects the photos (20 ms) instead of looking each frisbee photo up for a table (98 ms)."""
    if not parts:
        return None
    cheap = [p for p in parts if p.cost <= CHEAP_DRIVER]
    chosen = cheap or [min(parts, key=lambda p: p.cost)]
    if entries is None or len(parts) < 2:
        return _combine("and", chosen)
    counted: dict[_Drive, int] = {}
    for cap in (ESTIMATE_CAP, ESTIMATE_CAP * NARROW_RATIO):  # the second only where every part passed the first
        bound = cap
        for part in sorted(parts, key=lambda p: p.cost):
            counted[part] = entries(part, bound)
            bound = min(bound, counted[part] * NARROW_RATIO)
        least = min(counted.values())
        if least <= cap:
            break
    else:  # every part is broad: the counts tell nothing
        return _combine("and", chosen)
    for part in counted:  # stopped at the cap, below what would make it broad: counted on, that far
        if counted[part] > cap and least * NARROW_RATIO > cap:
            counted[part] = entries(part, least * NARROW_RATIO)
    if listed is not None:
        photos = {part: listed(part, least * NARROW_RATIO) for part in counted}
        counted |= {part: count for part, count in photos.items() if count is not None}
        least = min(counted.values())
    # Fewest entries first: SQLite's bare INTERSECT (before `driver_ids` merged the parts) kept its left-most
    # part in a temporary B-tree and probed it with the others (36,000 against 181,000 entries: 85 ms that way
    # round, 110 ms the other). Merged, the order matters little.
    narrow = sorted((p for p in chosen if counted[p] <= least * NARROW_RATIO), key=counted.__getitem__)
    return _combine("and", narrow or [min(parts, key=counted.__getitem__)])


def _side(spec: Spec, cells: tuple[int, ...]) -> _Drive:
    """A relation's side as a driver, read only in the cells where it can stand in the relation: ``flute above
    Samoyed`` at 1M photos intersects 121,000 flute and 24,000 Samoyed entries instead of 181,000 and 36,000."""
    narrowed = tuple(c for c in spec.cells if c in cells)
    return _Drive("term", spec, narrowed=None if narrowed == spec.cells else narrowed)


def _drive(node: Node, spec_of, entries: Callable[[_Drive, int], int] | None = None,
           listed: Callable[[_Drive, int], int | None] | None = None) -> _Drive | None:
    if isinstance(node, Term):
        return _Drive("term", spec_of(node))
    if isinstance(node, Relation):  # its sides must both hold: chosen among as an AND's parts are
        sides = zip((node.left, node.right), RELATION_SIDES[node.kind])
        return _and_drive([_side(spec_of(term), cells) for term, cells in sides], entries, listed)
    if isinstance(node, Not):
        return None
    parts = [_drive(child, spec_of, entries, listed) for child in node.children]
    if isinstance(node, And):
        return _and_drive([p for p in parts if p is not None], entries, listed)
    if any(p is None for p in parts):
        return None
    return _combine("or", parts)


def _candidates(drive: _Drive) -> str:
    """The plan's words for the candidates ``drive`` admits."""
    if drive.op == "term":
        return f"candidates: images of term {drive.spec.number} ({drive.spec.describe()})"
    if drive.op == "and":
        numbers = sorted(s.number for s in drive.specs())
        return f"candidates: images common to terms {', '.join(str(n) for n in numbers)}"
    if drive.op == "photos":
        return "candidates: the photos listed"
    return f"candidates: images of any of terms {', '.join(str(s.number) for s in drive.specs())}"


# ------------------------------------------------------------------------------------------ compiler

@functools.lru_cache(maxsize=4)
def _bare(t: Tables) -> Tables:
    """``t``'s tables as bare table clauses, their names and typed columns only: a statement aliases them
    dozens of times, and an alias of a `sa.Table` copies its foreign keys, each registering an event listener
    (SQLAlchemy 2.1; ``yawl below person`` at 1M took 36 ms to prepare, 29 so)."""
    def bare(table: sa.Table) -> sa.TableClause:
        return sa.table(table.name, *(sa.column(column.name, column.type) for column in table.columns))
    return Tables(**{field.name: bare(getattr(t, field.name)) for field in fields(t)})


#: A further condition on the images a query may match (a folder, say): given ``images`` or an alias of it.
Within = Callable[[sa.FromClause], sa.ColumnElement]


class _Compiler:
    def __init__(self, t: Tables, tree: Node, resolutions: dict[Term, Resolution], min_score: float, dialect: str,
                 calibration: Calibration, within: Within | None = None, fusion: str = FUSION, sort: str = SORT_SCORE,
                 count: Count | None = None, compounds: Compounds | None = None):
        if sort not in SORTS:
            raise ValueError(f"sort must be one of {', '.join(SORTS)}, not {sort!r}")
        self.sort = sort
        self.t = _bare(t)
        self.count = count
        self.compounds = compounds
        self._entries: dict[tuple[int, tuple[int, ...], int], int] = {}
        self._reads_photos: dict[tuple[int, tuple[int, ...]], bool] = {}
        self._word_counts: dict[int, list[int]] = {}
        self._started_lines: dict[int, bool] = {}
        self._word_ranges: dict[tuple[int, int], sa.CTE] = {}
        self._photos: int | None = None  # `index_photos`
        self._photo_estimates: dict[int, int] = {}
        self._entry_estimates: dict[tuple[int, tuple[int, ...]], float] = {}
        self.calibration = calibration
        self.within = within
        self.tree = tree
        self.dialect = dialect
        if fusion not in FUSIONS:
            raise UnknownFusionError(f"unknown fusion rule {fusion!r}; the rules are {', '.join(FUSIONS)}")
        self.fusion = fusion
        self.greatest = sa.func.max if dialect == "sqlite" else sa.func.greatest
        self.least = sa.func.min if dialect == "sqlite" else sa.func.least
        self.specs: list[Spec] = []
        self.by_term: dict[Term, Spec] = {}
        self._hits: dict[int, sa.CTE] = {}
        #: `hits` read once, inside the candidates (`ranked_photos`): SQLite copied such a CTE into a table first
        #: (``person in top-center AND cat`` at 1M photos, 160,000 rows: 168 ms, 135 ms read in place).
        self._hits_inlined = False
        self._scores: dict[int, sa.ColumnElement] = {}
        self.per_image: sa.Subquery | None = None  # set by compile(): per spec its score and mask columns
        self._collect(tree, resolutions, min_score, {}, positive=True)

    def _collect(self, node: Node, resolutions, min_score, by_key: dict[tuple, Spec], positive: bool) -> None:
        if isinstance(node, (Term, Relation)):
            for term in (node,) if isinstance(node, Term) else (node.left, node.right):
                threshold = min_score if term.threshold is None else term.threshold
                strict = term.strict and term.threshold is not None
                classes = tuple(sorted(resolutions[term].classes))
                key = (classes, term.region.cells, threshold, strict)
                if resolutions[term].is_text:
                    key = (("text", *resolutions[term].words), term.region.cells, threshold, strict)
                spec = by_key.get(key)
                if spec is None and resolutions[term].is_text:  # the reader's confidence, read as it is
                    spec = Spec(len(self.specs) + 1, term, resolutions[term], (), *key[1:], threshold, confidences=True)
                    by_key[key] = spec
                    self.specs.append(spec)
                elif spec is None:
                    evidence = self.calibration.evidence_for(threshold, classes)
                    spec = Spec(len(self.specs) + 1, term, resolutions[term], *key, evidence)
                    spec.rule = term_fusion(self.fusion, resolutions[term].grouped)
                    spec.confidences = bool(spec.stored_classes) and not (spec.fused and spec.rule in MONOTONE_FUSIONS)
                    if spec.confidences:
                        spec.evidence = threshold if threshold <= 1.0 else float("inf")
                    if spec.fused:
                        floor = threshold if spec.rule in MONOTONE_FUSIONS else fuse_floor(threshold, spec.rule)
                        spec.floors = (floor if floor <= 1.0 else float("inf"),
                                       self.calibration.evidence_for(floor, spec.model_classes))
                    self.stored_compound(spec)
                    by_key[key] = spec
                    self.specs.append(spec)
                spec.positive |= positive
                self.by_term[term] = spec
        elif isinstance(node, Not):
            self._collect(node.child, resolutions, min_score, by_key, positive=False)
        else:
            for child in node.children:
                self._collect(child, resolutions, min_score, by_key, positive)

    def stored_compound(self, spec: Spec) -> None:
        """Read a term of several classes from its compound's rows (`query.compounds`) where the index holds
        them for this rule and from this threshold: then it is one class, read as stored."""
        if self.compounds is None or len(spec.classes) < 2 or spec.is_text or spec.threshold < COMPOUND_FLOOR:
            return
        class_id = self.compounds.class_of(spec.classes, spec.rule)
        if class_id is not None:
            spec.compounded, spec.classes, spec.confidences = spec.classes, (class_id,), True
            spec.evidence = spec.threshold if spec.threshold <= 1.0 else float("inf")
            spec.floors = (float("inf"), float("inf"))

    # -- building blocks
    def admitted(self, images: sa.FromClause) -> sa.ColumnElement:
        """The images (``images`` or an alias) a match may be: labelled, and within the query's restriction."""
        return labelled(images) if self.within is None else sa.and_(labelled(images), self.within(images))

    def class_filter(self, column: sa.ColumnElement, classes: tuple[int, ...]) -> sa.ColumnElement:
        if len(classes) == 1:
            return column == classes[0]
        if len(classes) > len(class_ids()) // 2:  # "entity", "object": name the few classes left out instead
            return column.not_in(sorted(set(class_ids()) - set(classes)))
        return column.in_(classes)

    def cell_filter(self, column: sa.ColumnElement, cells: tuple[int, ...]) -> sa.ColumnElement:
        if cells == ALL_CELLS:
            return sa.true()
        return self.index_cells(column, cells)

    @staticmethod
    def index_cells(column: sa.ColumnElement, cells: tuple[int, ...]) -> sa.ColumnElement:
        """``cells`` as a read of the class index ``(class_id, cell, score, image_id)`` takes them: listed even
        when they are all nine, so that a threshold on the score bounds each cell's range. Without them the
        index gives only the class, and every row of it is read down to the floor the writer stores: for a
        class anywhere, ten to thirty times the rows that reach a threshold (``cornet`` at 1M photos: 18 ms
        against 0.9 ms to count them)."""
        return column == cells[0] if len(cells) == 1 else column.in_(cells)

    def reaches(self, value: sa.ColumnElement, spec: Spec) -> sa.ColumnElement:
        """The evidence ``value`` gives ``spec`` its threshold's confidence."""
        if spec.evidence == float("inf"):
            return sa.false()
        return value > spec.evidence if spec.strict else value >= spec.evidence

    @staticmethod
    def stored_reaches(probability: sa.ColumnElement, spec: Spec) -> sa.ColumnElement:
        """A detector probability holds a term of both kinds read in evidence space (`either_hits`)."""
        threshold = spec.floors[0]
        if threshold == float("inf"):
            return sa.false()
        return probability > threshold if spec.strict else probability >= threshold

    @staticmethod
    def at_least(value: sa.ColumnElement, floor: float) -> sa.ColumnElement:
        return sa.false() if floor == float("inf") else value >= floor

    def confidence(self, evidence: sa.ColumnElement, spec: Spec) -> sa.ColumnElement:
        """`Calibration.probability` in SQL: the piecewise-linear curve over the scaled evidence; a term
        whose values are confidences already (`Spec.confidences`) as it is."""
        if spec.confidences:
            return evidence
        return calibrated(self.calibration, evidence, spec.model_classes)

    def entries(self, drive: _Drive, bound: int) -> int:
        """The class-index entries reading ``drive``'s candidates visits, counted up to ``bound`` (then
        ``bound + 1``): a term's entries of its classes in its cells from the lowest score its rows can count
        with, the narrowest part of an AND, the sum of an OR's."""
        if drive.op != "term":
            counts = [self.entries(part, bound) for part in drive.parts]
            return min(counts) if drive.op == "and" else min(bound + 1, sum(counts))
        spec = drive.spec
        key = (spec.number, drive.cells, bound)
        if key not in self._entries:
            estimate = self.entries_estimate(drive) if bound > ESTIMATE_CAP and self.estimable(drive) else None
            if estimate is not None and not bound / ESTIMATE_MARGIN <= estimate <= bound * ESTIMATE_MARGIN:
                self._entries[key] = min(round(estimate), bound + 1)
            else:
                self._entries[key] = self.counted(self.cell_entries(spec, drive.cells), bound + 1)
        return self._entries[key]

    def anywhere_listed(self, drive: _Drive) -> bool:
        """A term's drive lists its photos whatever the counts: one class read as stored, anywhere
        (`lists_photos`)."""
        return drive.op == "term" and drive.cells == ALL_CELLS and self.scored_in_order(drive.spec)

    def estimable(self, drive: _Drive) -> bool:
        """A term's drive whose entries can be estimated from a sample of its photos (`entries_estimate`): one
        class read as stored, anywhere or a relation's side of it (``person left of cow``: 41-43 ms of its 71
        of preparing were counts of the people left of some cell, to 330,000 entries, and of their photos)."""
        return drive.op == "term" and self.scored_in_order(drive.spec)

    def index_photos(self) -> int:
        """The index's photos, at most: its highest image id."""
        if self._photos is None:
            self._photos = self.count(sa.select(sa.func.coalesce(sa.func.max(self.t.images.c.image_id), 0)))
        return self._photos

    def entries_estimate(self, drive: _Drive) -> float:
        """The class-index entries of an `estimable` drive, estimated: its photos (`photos_estimate`) times
        its entries a photo in the drive's cells among its first photos (`cells_a_photo`). `entries` takes it
        in place of a count past `ESTIMATE_CAP`, and `listed` the photos in place of theirs, unless it is within
        `ESTIMATE_MARGIN` of the count's bound: ``car AND people`` at 1M photos spent 39 ms counting people
        entries up to 665,000, to learn that they were more than eight times the cars', and 16 ms counting
        photos; it was prepared in 89 ms, now in 44."""
        key = (drive.spec.number, drive.cells)
        if key not in self._entry_estimates:
            self._entry_estimates[key] = self.photos_estimate(drive.spec) * self.cells_a_photo(drive)
        return self._entry_estimates[key]

    def photos_estimate(self, spec: Spec) -> int:
        """The photos of a class read as stored where ``spec`` holds anywhere, estimated from `PHOTO_SAMPLE_RANGES`
        ranges of image ids spread over the index (a library's folders fill runs of ids), one id in
        `PHOTO_SAMPLE_RANGES` * `PHOTO_SAMPLE_SHARE`: 0.5-3 ms at 1M photos (`entries_estimate`)."""
        if spec.number not in self._photo_estimates:
            ids = max(self.index_photos(), 1)
            starts = [k * ids // PHOTO_SAMPLE_RANGES for k in range(PHOTO_SAMPLE_RANGES + 1)]
            ranges = [(start, start + max((end - start) // PHOTO_SAMPLE_SHARE, 1))
                      for start, end in zip(starts, starts[1:])]
            read = self.t.image_labels.alias("estimate_read")
            sampled = [sa.select(sa.func.count()).where(
                read.c.class_id == spec.classes[0], self.reaches(read.c.score, spec),
                read.c.image_id > low, read.c.image_id <= high).scalar_subquery() for low, high in ranges]
            found = self.count(sa.select(functools.reduce(operator.add, sampled)))
            self._photo_estimates[spec.number] = found * ids // sum(high - low for low, high in ranges)
        return self._photo_estimates[spec.number]

    def counted(self, rows: sa.Select, most: int) -> int:
        """How many ``rows`` there are, up to ``most``, counted on the index."""
        return self.count(sa.select(sa.func.count()).select_from(rows.limit(most).subquery("entries")))

    def cell_entries(self, spec: Spec, cells: tuple[int, ...]) -> sa.Select:
        """The class-index entries of ``spec`` in ``cells`` that reading it visits (`entries`); for a term of
        text, the rows of its leading word that reach its threshold, a row a line, in the word index: its
        region is read after them. So ``"menu" AND wine glass`` is driven by the rarer of the two."""
        if spec.is_text:
            words, lead = self.t.text_words, self.leading_word(spec)
            return sa.select(sa.literal(1).label("one")).where(
                words.c.position >= lead, self.word_matches(words.c.word, spec.words[lead]),
                self.reaches(words.c.confidence, spec))
        cl = self.t.cell_labels
        where = [self.class_filter(cl.c.class_id, spec.classes), self.index_cells(cl.c.cell, cells)]
        floor = self.entry_floor(spec)
        if floor > 0.0:
            where.append(cl.c.score >= floor)
        return sa.select(sa.literal(1).label("one")).where(*where)

    def reads_photos(self, drive: _Drive, photos: int | None = None) -> bool:
        """A driving term lists its photos (`photos_of`) rather than its cells: one class read as stored,
        anywhere, whose cells the drive reads (`entries`, as far as they were counted) are `CELLS_PER_PHOTO`
        or more a photo, its photos counted on the index up to that share. ``bowl below giraffe`` at 1M
        photos: 3.5 and 4.2 cells a photo, 364,000 cells against 97,000 photos; a cup beside a pizza, 1.1
        (its photos would add a third to the candidates, each then tested). Never where the index may not
        be asked. ``photos``: their number, where it is known."""
        if drive.op != "term" or self.count is None or not self.scored_in_order(drive.spec):
            return False
        key = (drive.spec.number, drive.cells)
        if key not in self._reads_photos:
            cells = self.cells_counted(drive) or self.entries(drive, ESTIMATE_CAP)  # at least this many
            if photos is None:
                photos = self.counted(self.photos_of(drive.spec, "photos_read"), cells // CELLS_PER_PHOTO + 1)
            reads = photos * CELLS_PER_PHOTO <= cells
            if not reads and photos > cells // CELLS_PER_PHOTO and self.cells_capped(drive):
                reads = self.cells_a_photo(drive) >= CELLS_PER_PHOTO  # both counts stopped: they tell nothing
            self._reads_photos[key] = reads
        return self._reads_photos[key]

    def cells_capped(self, drive: _Drive) -> bool:
        """A term's drive was counted up to a bound and has more entries (`entries`)."""
        return any(value > bound for (number, cells, bound), value in self._entries.items()
                   if number == drive.spec.number and cells == drive.cells)

    def cells_a_photo(self, drive: _Drive) -> float:
        """The class-index entries a term's drive reads per photo where it holds anywhere, among its first
        `RELATION_SAMPLE` photos in image order (one range of ``image_labels_class_by_image``, a seek a photo):
        where its counts stopped, for ``person right of bowl`` at 1M photos (both counted to 160,000 entries
        and 80,000 photos), the 481,000 people read as photos in place of 1.43 million entries sorted: 0.18 s
        against 0.64 s."""
        spec, read, own = drive.spec, self.t.image_labels.alias("sampled"), self.t.cell_labels.alias("sampled_cells")
        first = (sa.select(read.c.image_id).where(read.c.class_id == spec.classes[0], self.reaches(read.c.score, spec))
                 .order_by(read.c.image_id).limit(RELATION_SAMPLE).subquery("first_photos"))
        photos = self.count(sa.select(sa.func.count()).select_from(first))
        cells = self.count(sa.select(sa.func.count()).select_from(first.join(own, sa.and_(
            own.c.image_id == first.c.image_id, own.c.class_id == spec.classes[0],
            self.index_cells(own.c.cell, drive.cells), self.reaches(own.c.score, spec)))))
        return cells / max(photos, 1)

    def lists_photos(self, drive: _Drive) -> bool:
        """A driving term is read as its photos (`photos_of`), not its cells: where it fills
        `CELLS_PER_PHOTO` or more a photo (`reads_photos`), or where it is anywhere, one class read as stored
        (`scored_in_order`): its photos are then its cells' photos, each once, so never more. ``person AND
        animal`` at 1M photos intersects 481,000 and 182,000 photos instead of 2.4 million and 0.9 million
        cells: 1.7 s -> 1.0 s."""
        return self.anywhere_listed(drive) or self.reads_photos(drive)

    def cells_counted(self, drive: _Drive) -> int:
        """The most class-index entries of a term's drive counted so far (at least that many); 0 if none."""
        return max((value for (number, cells, _), value in self._entries.items()
                    if number == drive.spec.number and cells == drive.cells), default=0)

    def listed(self, drive: _Drive, bound: int) -> int | None:
        """The photos a driving term lists in place of its entries (`reads_photos`), where they are at most
        ``bound`` and at most one in `NARROW_RATIO` of the index's: intersected with another part, such a
        term is expected to leave at most that share of its candidates. None for a term that reads its
        entries, or is in more photos: ``French horn next to person`` at 1M photos keeps 51,000
        of 120,000 horns among 480,000 people, and the intersection (0.9 s) costs more than looking each horn
        up for a person (0.75 s)."""
        if self.count is None or not self.estimable(drive):
            return None
        most = min(bound, self.index_photos() // NARROW_RATIO)
        if self.cells_counted(drive) > most * len(ALL_CELLS):  # a photo has nine cells: too many photos
            return None
        estimate = self.photos_estimate(drive.spec) if self.cells_capped(drive) else None
        if estimate is not None and not most / ESTIMATE_MARGIN <= estimate <= most * ESTIMATE_MARGIN:
            photos = estimate  # far from the bound: a count would tell no more (`entries_estimate`)
        else:
            photos = self.counted(self.photos_of(drive.spec, "photos_read"), most + 1)
        return photos if photos <= most and self.reads_photos(drive, photos) else None

    @staticmethod
    def entry_floor(spec: Spec) -> float:
        """The lowest score of the rows `hits` reads of ``spec`` from the class index: its threshold where one
        row decides (one class, or detector classes alone), each part's floor for a term of both kinds with
        one model class (`either_hits`, `fused_hits`), else none (summed evidence)."""
        if len(spec.classes) == 1 or not spec.model_classes:
            return spec.evidence
        if spec.fused and len(spec.model_classes) == 1:
            return min(spec.floors[0], spec.floors[1] if spec.confidences else spec.evidence)
        return 0.0

    def broad(self, spec: Spec, lead: Spec) -> bool:
        """``spec`` read far more class-index entries than ``lead`` when they were counted (`_and_drive`)."""
        counted: dict[int, int] = {}
        for (number, _, _), value in self._entries.items():  # a relation's side is counted in fewer cells
            counted[number] = max(value, counted.get(number, 0))
        return spec.number in counted and lead.number in counted and counted[spec.number] > counted[lead.number] * NARROW_RATIO

    def hits(self, spec: Spec) -> sa.CTE:
        """(image_id, cell, s): the cells where ``spec`` holds, straight from the class index; one CTE
        per spec, so SQLite computes it once when both the candidates and the pivot read it."""
        if spec.number in self._hits:
            return self._hits[spec.number]
        if spec.is_text:
            self._hits[spec.number] = self.text_hits(spec).cte(f"hits_{spec.number}")
            return self._hits[spec.number]
        cl = self.t.cell_labels
        where = [self.class_filter(cl.c.class_id, spec.classes), self.index_cells(cl.c.cell, spec.cells)]
        if len(spec.classes) == 1:  # one row per (image, cell): the threshold runs inside the index
            query = sa.select(cl.c.image_id, cl.c.cell, cl.c.score.label("s")).where(*where, self.reaches(cl.c.score, spec))
        elif not spec.model_classes:  # the best of several probabilities: the threshold still runs in the index
            query = (
                sa.select(cl.c.image_id, cl.c.cell, sa.func.max(cl.c.score).label("s"))
                .where(*where, self.reaches(cl.c.score, spec))
                .group_by(cl.c.image_id, cl.c.cell)
            )
        elif spec.fused and not spec.confidences:
            query = self.either_hits(spec)
        elif spec.fused:
            query = self.fused_hits(spec)
        else:
            total = self.cell_value(spec, sa.true())
            query = (
                sa.select(cl.c.image_id, cl.c.cell, total.label("s"))
                .where(*where)
                .group_by(cl.c.image_id, cl.c.cell)
                .having(self.reaches(total, spec))
            )
        cte = query.cte(f"hits_{spec.number}")
        self._hits[spec.number] = cte.prefix_with("NOT MATERIALIZED") if self._hits_inlined else cte
        return self._hits[spec.number]

    def word_matches(self, column: sa.ColumnElement, word: str, longer: bool = False) -> sa.ColumnElement:
        """A stored word is ``word`` or starts with it (only starts with it, if ``longer``): a range of the word
        index (bytewise: `indexer.words`)."""
        if self.dialect == "postgresql":
            column = column.collate("C")
        return sa.and_(column > word if longer else column >= word, column < prefix_end(word))

    def word_counts(self, spec: Spec) -> list[int] | None:
        """How many rows of the word index each word of a quoted phrase reads (up to `WORD_COUNT_CAP`); None
        for one word, or where the index may not be asked."""
        if len(spec.words) < 2 or self.count is None:
            return None
        if spec.number not in self._word_counts:
            words = self.t.text_words
            self._word_counts[spec.number] = [
                self.counted(sa.select(words.c.image_id).where(words.c.position >= 0,
                                                               self.word_matches(words.c.word, word)),
                             WORD_COUNT_CAP)
                for word in spec.words]
        return self._word_counts[spec.number]

    def leading_word(self, spec: Spec) -> int:
        """Which word of a quoted phrase its lines are found from: the one with the fewest rows in the word index
        (`word_counts`), as each row found is joined to the others. ``"the menu"`` read from "the" would join
        every line with a "the"; the first word where the index may not be asked."""
        counts = self.word_counts(spec)
        return counts.index(min(counts)) if counts else 0

    def word_range(self, spec: Spec, k: int) -> sa.CTE | None:
        """The rows of the phrase's word ``k`` read as one range of the word index, if it has at most
        `LOOKUP_ROWS` times the leading word's: a range is read in index order where looking each
        leading row's next word up in the table's key reads a page of its own, from disk at first."""
        counts = self.word_counts(spec)
        if counts is None or counts[k] > LOOKUP_ROWS * counts[self.leading_word(spec)]:
            return None
        if (spec.number, k) not in self._word_ranges:
            words = self.t.text_words
            rows = sa.select(words.c.image_id, words.c.line, words.c.position).where(
                words.c.position >= k, self.word_matches(words.c.word, spec.words[k]))
            self._word_ranges[spec.number, k] = rows.cte(f"range_{spec.number}_{k}").prefix_with("MATERIALIZED")
        return self._word_ranges[spec.number, k]

    def text_paths(self, spec: Spec,
                   correlated: bool = False) -> list[tuple[sa.FromClause, sa.Alias, list[sa.ColumnElement]]]:
        """The two ways a line holds a term of text, each as (join, the alias whose row gives the line's cells
        and confidence, conditions): its words in order, each as it is or as its start (one ``text_words`` row
        per word), found from its `leading_word` and joined to the others' `word_range` or rows (one image's
        lines where ``correlated``); or the term's words run together as the start of the line's words run
        together (the row at `indexer.words.JOINED`), since OCR and people space codes differently (``MS 815
        AJ``, ``MS815AJ``); for a term of one word, only where the line's first word is shorter
        (`started_lines`)."""
        words = self.t.text_words
        lead = self.leading_word(spec)
        first = words.alias(f"words_{spec.number}_{lead}")
        joined: sa.FromClause = first
        # Every word row carries its line's cells and confidence; the lead word's position leaves room for the
        # words before it (and excludes the row run together).
        where = [first.c.position >= lead, self.word_matches(first.c.word, spec.words[lead]),
                 self.reaches(first.c.confidence, spec)]
        for k, word in enumerate(spec.words):
            if k == lead:
                continue
            place = (first.c.image_id, first.c.line, first.c.position + (k - lead))
            rows = None if correlated else self.word_range(spec, k)
            if rows is not None:
                # ``+ 0``: a key SQLite cannot seek the leading rows by, so it tests each against the range's set
                where.append(sa.tuple_(place[0] + 0, *place[1:]).in_(
                    sa.select(rows.c.image_id, rows.c.line, rows.c.position)))
                continue
            nth = words.alias(f"words_{spec.number}_{k}")
            joined = joined.join(nth, sa.and_(nth.c.image_id == place[0], nth.c.line == place[1],
                                              nth.c.position == place[2]))
            where.append(self.word_matches(nth.c.word, word))
        run = words.alias(f"run_{spec.number}")
        together = [self.word_matches(run.c.word, "".join(spec.words)[:MAX_WORD]),
                    self.reaches(run.c.confidence, spec)]
        if len(spec.words) > 1:
            return [(joined, first, where), (run, run, [run.c.position.in_((JOINED, 0)), *together])]
        shorter = self.started_lines(spec)
        if shorter is None:
            return [(joined, first, where), (run, run, [run.c.position == JOINED, *together])]
        if not shorter:
            return [(joined, first, where)]
        head = words.alias(f"head_{spec.number}")
        started = head.join(run, sa.and_(run.c.image_id == head.c.image_id, run.c.line == head.c.line,
                                         run.c.position == JOINED))
        return [(joined, first, where), (started, run, [head.c.position == 0, self.word_in(head.c.word, shorter),
                                                        *together])]

    def started_lines(self, spec: Spec) -> list[str] | None:
        """For a term of one word, the words shorter than it that it starts with (``"re16"``: "r", "re",
        "re1"), if lines are better found from those first words than from their words run together; else
        None. A line whose first word starts with the term is found by its words already, so the row run
        together adds only lines whose first word is shorter (a line of one word has none): read from the
        first words, a lookup each (`LOOKUP_ROWS`); read as a range, every line that starts with the term is
        read again (at 1M, 17,926 of "a2hm"'s 77,586 rows). Where the index may not be asked, the range."""
        term = spec.words[0]
        shorter = [term[:end] for end in range(1, len(term))]
        if not shorter:
            return []
        if self.count is None:
            return None
        if spec.number not in self._started_lines:
            words = self.t.text_words
            heads = self.counted(sa.select(words.c.image_id).where(words.c.position == 0,
                                                                   self.word_in(words.c.word, shorter)),
                                 WORD_COUNT_CAP)
            # The range where its rows cost less than the lookups, counted only that far, and past the word
            # itself: its every row sorts first there (a line run together into exactly it is rare).
            lookups = heads * LOOKUP_ROWS
            runs = sa.select(words.c.image_id).where(words.c.position == JOINED,
                                                     self.word_matches(words.c.word, term, longer=True))
            self._started_lines[spec.number] = heads == 0 or (
                heads < WORD_COUNT_CAP and self.counted(runs, lookups) >= lookups)
        return shorter if self._started_lines[spec.number] else None

    def word_in(self, column: sa.ColumnElement, words: list[str]) -> sa.ColumnElement:
        """A stored word is one of ``words``: equality on the word index (bytewise, as `word_matches`)."""
        return (column.collate("C") if self.dialect == "postgresql" else column).in_(words)

    def text_grid(self, spec: Spec) -> sa.Subquery:
        """The cells of a term of text's region, as rows."""
        grid = sa.union_all(*(sa.select(sa.literal(c, sa.SmallInteger).label("cell")) for c in spec.cells))
        return grid.subquery(f"cells_{spec.number}")

    @staticmethod
    def occupies(line: sa.Alias, grid: sa.Subquery) -> sa.ColumnElement:
        """The line's box occupies the grid row's cell (its stored mask: `indexer.boxes.occupied`)."""
        return line.c.cells.bitwise_and(sa.literal(1).bitwise_lshift(grid.c.cell)) != 0

    def text_hits(self, spec: Spec) -> sa.Select:
        """(image_id, cell, s) of a term of text: each cell of its region a matching line occupies (`text_paths`),
        with the best such line's confidence. The matching lines are read once (a materialized CTE: left to
        itself SQLite ran the word index's range once per cell of the region) and then spread over the cells."""
        lines = sa.union_all(*(sa.select(line.c.image_id, line.c.cells, line.c.confidence).select_from(joined)
                               .where(*where) for joined, line, where in self.text_paths(spec)))
        found = lines.cte(f"lines_{spec.number}").prefix_with("MATERIALIZED")
        grid = self.text_grid(spec)
        return (sa.select(found.c.image_id, grid.c.cell, sa.func.max(found.c.confidence).label("s"))
                .select_from(found.join(grid, self.occupies(found, grid)))
                .group_by(found.c.image_id, grid.c.cell))

    def text_lines(self, spec: Spec, cells: tuple[int, ...]) -> sa.Subquery:
        """(image_id, confidence): each matching line of a term of text that reaches one of ``cells``."""
        region = sum(1 << c for c in cells)
        return sa.union_all(*(
            sa.select(line.c.image_id, line.c.confidence).select_from(joined).where(
                *where, *([line.c.cells.bitwise_and(region) != 0] if cells != ALL_CELLS else []))
            for joined, line, where in self.text_paths(spec)
        )).subquery(f"matched_{spec.number}")

    def text_cells_of(self, spec: Spec, image: sa.FromClause) -> sa.CompoundSelect:
        """The cells of the image in ``image``'s row where a term of text holds."""
        grid = self.text_grid(spec)
        return sa.union(*(sa.select(grid.c.cell).select_from(joined.join(grid, self.occupies(line, grid)))
                          .where(*where, line.c.image_id == image.c.image_id).correlate(image)
                          for joined, line, where in self.text_paths(spec, correlated=True)))

    def either_hits(self, spec: Spec) -> sa.Select:
        """`hits` of a term of both kinds under a rule of `MONOTONE_FUSIONS`, in evidence space: it holds
        where either part does, so each part is read from the class index with its own threshold (the
        detector classes' probability as its evidence), and each cell keeps its better value."""
        cl = self.t.cell_labels
        in_cells = self.index_cells(cl.c.cell, spec.cells)
        stored_holds = self.stored_reaches(cl.c.score, spec)
        stored, model = (self.class_filter(cl.c.class_id, part) for part in (spec.stored_classes, spec.model_classes))
        as_evidence = evidence_of(self.calibration, cl.c.score, spec.model_classes)
        parts = [sa.select(cl.c.image_id, cl.c.cell, as_evidence.label("s")).where(stored, in_cells, stored_holds)]
        if len(spec.model_classes) == 1:
            parts.append(sa.select(cl.c.image_id, cl.c.cell, cl.c.score.label("s"))
                         .where(model, in_cells, self.reaches(cl.c.score, spec)))
        else:
            summed = sa.func.sum(cl.c.score)
            parts.append(sa.select(cl.c.image_id, cl.c.cell, summed.label("s")).where(model, in_cells)
                         .group_by(cl.c.image_id, cl.c.cell).having(self.reaches(summed, spec)))
        either = sa.union_all(*parts).subquery(f"either_{spec.number}")
        return (sa.select(either.c.image_id, either.c.cell, sa.func.max(either.c.s).label("s"))
                .group_by(either.c.image_id, either.c.cell))

    def fused_hits(self, spec: Spec) -> sa.Select:
        """`hits` of a term of both kinds: the cells where either part reaches its floor (`Spec.floors`),
        read from the class index, then each such cell's value from its own rows (primary key)."""
        cl = self.t.cell_labels
        cells = sa.select(cl.c.image_id, cl.c.cell).where(self.index_cells(cl.c.cell, spec.cells))
        stored_floor, model_floor = spec.floors
        stored, model = (self.class_filter(cl.c.class_id, part) for part in (spec.stored_classes, spec.model_classes))
        reached = [cells.where(stored, self.at_least(cl.c.score, stored_floor))]
        if len(spec.model_classes) == 1:
            reached.append(cells.where(model, self.at_least(cl.c.score, model_floor)))
        else:
            summed = sa.func.sum(cl.c.score)
            reached.append(cells.where(model).group_by(cl.c.image_id, cl.c.cell).having(self.at_least(summed, model_floor)))
        cand = sa.union(*reached).subquery(f"reached_{spec.number}")
        own = self.t.cell_labels.alias(f"own_{spec.number}")
        value = self.cell_value(spec, sa.true(), own, among=True)
        # "class_id + 0" keeps SQLite off the class index for these rows: each candidate cell's rows are read
        # by the primary key (probe_rows fixes its join order with `_Driven` instead).
        joined = cand.join(own, sa.and_(own.c.image_id == cand.c.image_id, own.c.cell == cand.c.cell,
                                        self.class_filter(own.c.class_id + 0, spec.classes)))
        return (
            sa.select(cand.c.image_id, cand.c.cell, value.label("s"))
            .select_from(joined)
            .group_by(cand.c.image_id, cand.c.cell)
            .having(self.reaches(value, spec))
        )

    def driver_ids(self, drive: _Drive, distinct: bool = True) -> sa.Select:
        """The image ids a driver admits (a superset of the matches), each once: a candidate listed twice
        would have its cells counted twice. A term's come grouped, not DISTINCT: SQLite then hands them over in
        image order, and each candidate's probe (`probe_rows`) lands near the last one in the index (17,000
        ``mailbag`` candidates probed for ``pizza`` at 1M photos: 32 ms against 44 ms in the class index's order).
        A term may list its photos instead (`reads_photos`), in image order where it drives alone. An AND's
        parts are intersected in image order (`kept_in_order`): SQLite merges them, each read in that order
        where it lists its photos (``image_labels_class_by_image``), else sorted; the bare ``INTERSECT``
        keeps the first in a temporary B-tree and probes it with the next (``syringe next to chiffonier`` at
        1M photos, 46,000 and 93,000 entries: 55 ms against 91 ms). An OR's parts are not: its
        ``UNION`` merged so was slower (``power drill in top row OR projectile in center``: 21 against 13 ms)."""
        if drive.op == "photos":
            return sa.select(self.t.images.c.image_id).where(self.t.images.c.image_id.in_(drive.photos))
        if self.lists_photos(drive):
            read = self.photos_of(drive.spec, f"photos_{drive.spec.number}")
            return read.order_by(read.selected_columns.image_id) if distinct else read
        if drive.op == "term" and drive.spec.is_text:  # its lines' photos, not spread over cells
            lines = self.text_lines(drive.spec, drive.cells)
            ids = sa.select(lines.c.image_id)
            return ids.group_by(lines.c.image_id) if distinct else ids
        if drive.op == "term":
            hits = self.hits(drive.spec)
            ids = sa.select(hits.c.image_id)
            if drive.narrowed is not None:  # SQLite takes the cells into the read of a CTE used once
                ids = ids.where(hits.c.cell.in_(drive.narrowed))
            return ids.group_by(hits.c.image_id) if distinct else ids
        parts = []
        for part in drive.parts:
            ids = self.driver_ids(part, distinct=False)  # INTERSECT and UNION drop repeats themselves
            if part.op != "term":  # SQLite takes no parenthesized compound inside a compound
                nested = ids.subquery()
                ids = sa.select(nested.c.image_id)
            parts.append(ids)
        compound = (sa.intersect if drive.op == "and" else sa.union)(*parts)
        if drive.op == "and":
            compound = self.kept_in_order(compound.order_by(parts[0].selected_columns.image_id))
        return compound

    def kept_in_order(self, ordered: sa.CompoundSelect) -> sa.CompoundSelect:
        """``ordered`` with its ORDER BY kept where a join reads it: SQLite drops the ORDER BY of a subquery
        in a join as useless unless it has a LIMIT, and an INTERSECT without it keeps its first part in a
        temporary B-tree instead of merging the parts in order (``person AND animal`` at 1M photos, 481,000
        and 182,000 photos: 0.57-0.58 s against 0.17 s merged, medians of five warm runs)."""
        return ordered.limit(sa.literal_column("-1")) if self.dialect == "sqlite" else ordered

    def wide(self, image_id, cell, values: dict[int, sa.ColumnElement]) -> list[sa.ColumnElement]:
        """A row of the pivot's input: image, cell, then one column per spec (NULL where not given)."""
        nothing = sa.cast(sa.null(), sa.Float)
        return [image_id.label("image_id"), cell.label("cell")] + [
            values.get(s.number, nothing).label(f"s{s.number}") for s in self.specs
        ]

    def text_probe_rows(self, cand: sa.CTE, spec: Spec) -> sa.Select:
        """Per candidate and cell of a term of text's region, the best confidence of the candidate's matching
        lines there: its own rows, found by the table's key (a few lines a photo), so a term of text in 50,000
        photos costs the candidates of a narrower one only."""
        grid = self.text_grid(spec)
        lines = sa.union_all(*(
            sa.select(cand.c.image_id, line.c.cells, line.c.confidence)
            .select_from(_Driven(cand, joined, line.c.image_id == cand.c.image_id)).where(*where)
            for joined, line, where in self.text_paths(spec, correlated=True)
        )).subquery(f"probed_lines_{spec.number}")
        return (sa.select(*self.wide(lines.c.image_id, grid.c.cell, {spec.number: sa.func.max(lines.c.confidence)}))
                .select_from(lines.join(grid, self.occupies(lines, grid)))
                .group_by(lines.c.image_id, grid.c.cell))

    def probe_rows(self, cand: sa.CTE, specs: list[Spec]) -> sa.Select:
        """Per candidate and cell, the summed score of each spec, from the candidate's own rows. One spec of
        one class has a row per candidate and cell already, its value: not grouped (``person next to cake``
        at 1M photos: 32,000 cakes, 78,000 person rows, 230 -> 205 ms)."""
        cl = self.t.cell_labels
        wanted = tuple(sorted({c for s in specs for c in s.classes}))
        cells = tuple(sorted({c for s in specs for c in s.cells}))
        # One seek per candidate and class in the index (image_id, class_id, cell, score).
        own = sa.and_(cl.c.image_id == cand.c.image_id, self.class_filter(cl.c.class_id, wanted),
                      self.cell_filter(cl.c.cell, cells))
        if len(wanted) == 1 and len(specs) == 1:
            return sa.select(*self.wide(cand.c.image_id, cl.c.cell, {specs[0].number: cl.c.score})).select_from(
                _Driven(cand, cl, own))
        sums = {s.number: self.cell_value(s, self.cell_filter(cl.c.cell, s.cells)) for s in specs}
        return (
            sa.select(*self.wide(cand.c.image_id, cl.c.cell, sums))
            .select_from(_Driven(cand, cl, own))
            .group_by(cand.c.image_id, cl.c.cell)
        )

    def cell_value(self, spec: Spec, where: sa.ColumnElement, cl: sa.FromClause | None = None,
                   among: bool = False) -> sa.ColumnElement:
        """A term's value in one (image, cell) group of ``cl``'s rows (``cell_labels`` or an alias; those
        meeting ``where``): its classes' summed evidence; the best probability of detector classes alone;
        for a `Spec.fused` term, `fuse` of the detector classes' best probability and the model classes'
        confidence, a part without a row counting 0 (NULL where neither has a row); under a rule of
        `MONOTONE_FUSIONS` the same in evidence space (`Spec.confidences`). ``among``: the rows are of the
        term's classes only, so a part is told by the class id's range, not by the list of its classes."""
        cl = self.t.cell_labels if cl is None else cl
        stored, model = (self.part(spec, kind, cl, where, among) for kind in ("stored", "model"))
        if not spec.stored_classes:
            return model
        if not spec.model_classes:
            return stored
        if spec.confidences:
            value = self.fuse(spec, sa.func.coalesce(stored, 0.0),
                              sa.func.coalesce(calibrated(self.calibration, model, spec.model_classes), 0.0))
        else:
            value = self.fuse(spec, sa.func.coalesce(evidence_of(self.calibration, stored, spec.model_classes), 0.0),
                              sa.func.coalesce(model, 0.0))
        return sa.case((sa.and_(stored.is_(None), model.is_(None)), sa.null()), else_=value)

    def part(self, spec: Spec, kind: str, cl: sa.FromClause, where: sa.ColumnElement, among: bool) -> sa.ColumnElement:
        """One part of a term's value in a group of rows: the best probability of its detector classes
        (``kind="stored"``) or the summed evidence of its model classes (``"model"``); see `cell_value`."""
        classes = spec.stored_classes if kind == "stored" else spec.model_classes
        aggregate = sa.func.max if kind == "stored" else sa.func.sum
        if not among:
            mine = self.class_filter(cl.c.class_id, classes)
        elif len(classes) == len(spec.classes):  # every row is of this part
            mine = sa.true()
        else:  # the detectors' classes come after the classifier's (`indexer.labels`)
            mine = cl.c.class_id >= NUM_CLASSES if kind == "stored" else cl.c.class_id < NUM_CLASSES
        tests = [test for test in (mine, where) if not isinstance(test, sa.sql.elements.True_)]
        return aggregate(sa.case((sa.and_(*tests), cl.c.score)) if tests else cl.c.score)

    def fuse(self, spec: Spec, detector: sa.ColumnElement, classifier: sa.ColumnElement) -> sa.ColumnElement:
        """`indexer.calibration.fuse` in this dialect's SQL, with the term's rule."""
        return fuse(detector, classifier, spec.rule, greatest=self.greatest, least=self.least)

    # -- boolean condition and score over the per-spec columns
    def score(self, spec: Spec) -> sa.ColumnElement:
        """The term's confidence in its best cell; NULL where it holds nowhere. Built once per term: the
        ranking and the reported columns share it (the curve's CASE is most of the compile time)."""
        if spec.number not in self._scores:
            self._scores[spec.number] = self.confidence(self.evidence(spec), spec)
        return self._scores[spec.number]

    def evidence(self, spec: Spec) -> sa.ColumnElement:
        return self.per_image.c[f"score_{spec.number}"]

    def mask(self, spec: Spec) -> sa.ColumnElement:
        return self.per_image.c[f"mask_{spec.number}"]

    def holds(self, spec: Spec) -> sa.ColumnElement:
        return self.evidence(spec).is_not(None)

    def condition(self, node: Node, image: sa.FromClause | None = None) -> sa.ColumnElement:
        """``node`` holds: read from the pivot's columns, or with ``image`` (``images`` or an alias of it) for
        that image's row, from its own label rows."""
        if isinstance(node, Term):
            spec = self.by_term[node]
            return self.holds(spec) if image is None else sa.exists(self.held_cells(spec, image))
        if isinstance(node, Relation):
            a, b = self.by_term[node.left], self.by_term[node.right]
            if image is not None:
                return self.related_cells(node.kind, self.held_cells(a, image), self.held_cells(b, image))
            return sa.and_(self.holds(a), self.holds(b), self.related(node.kind, self.mask(a), self.mask(b)))
        if isinstance(node, Not):
            return sa.not_(self.condition(node.child, image))
        parts = [self.condition(child, image) for child in node.children]
        return sa.and_(*parts) if isinstance(node, And) else sa.or_(*parts)

    def held_cells(self, spec: Spec, image: sa.FromClause, values: bool = False) -> sa.Select:
        """The cells of the image in ``image``'s row where ``spec`` holds, from the image's own rows; with
        ``values``, each once with the term's value there (`hits`'s ``s``), as (cell, value)."""
        if spec.is_text:
            return self.text_cells_of(spec, image)
        cl = self.t.cell_labels.alias()
        where = [cl.c.image_id == image.c.image_id, self.class_filter(cl.c.class_id, spec.classes),
                 self.cell_filter(cl.c.cell, spec.cells)]
        if len(spec.classes) == 1 or not spec.model_classes:  # some row reaches it
            held = sa.select(cl.c.cell).where(*where, self.reaches(cl.c.score, spec))
            if values:
                held = held.add_columns(sa.func.max(cl.c.score).label("value")).group_by(cl.c.cell)
        else:
            value = self.cell_value(spec, sa.true(), cl, among=True)
            if spec.fused and not spec.confidences:  # either part reaches it, each as it is stored
                stored, model = (self.part(spec, kind, cl, sa.true(), among=True) for kind in ("stored", "model"))
                reached = sa.or_(self.stored_reaches(stored, spec), self.reaches(model, spec))
            else:
                reached = self.reaches(value, spec)
            held = sa.select(cl.c.cell).where(*where).group_by(cl.c.cell).having(reached)
            if values:
                held = held.add_columns(value.label("value"))
        return held.correlate(image)

    def related_cells(self, kind: str, cells_a: sa.Select, cells_b: sa.Select) -> sa.ColumnElement:
        """Some cell of ``cells_a`` is in ``kind`` to some cell of ``cells_b`` (`RELATION_MASKS`)."""
        a, b = cells_a.subquery(), cells_b.subquery()
        reach = sa.case(dict(enumerate(RELATION_MASKS[kind])), value=b.c.cell)
        placed = sa.literal(1).bitwise_lshift(a.c.cell).bitwise_and(reach) != 0
        return sa.exists(sa.select(a.c.cell).select_from(a.join(b, placed)))

    def related(self, kind: str, mask_a: sa.ColumnElement, mask_b: sa.ColumnElement) -> sa.ColumnElement:
        """``(mask_a & R(mask_b)) != 0`` where R(mask_b) is every cell in ``kind`` to some cell of b."""
        table = RELATION_MASKS[kind]
        reach = None
        for b in ALL_CELLS:
            part = sa.case((mask_b.bitwise_and(1 << b) != 0, table[b]), else_=0)
            reach = part if reach is None else reach.bitwise_or(part)
        return mask_a.bitwise_and(reach) != 0

    def ranking(self, node: Node) -> sa.ColumnElement:
        if isinstance(node, Term):
            return self.score(self.by_term[node])
        if isinstance(node, Relation):
            return self.score(self.by_term[node.left]) * self.score(self.by_term[node.right])
        if isinstance(node, Not):
            return sa.literal(1.0)
        if isinstance(node, And):
            parts = [self.ranking(child) for child in node.children if not isinstance(child, Not)]
            if not parts:
                return sa.literal(1.0)
            product = parts[0]
            for part in parts[1:]:
                product = product * part
            return product
        branches = [sa.case((self.condition(child), self.ranking(child)), else_=0.0) for child in node.children]
        return self.greatest(*branches)

    # -- the statement
    def compile(self, limit: int | None, offset: int,
                photos: sa.ColumnElement | list[int] | None = None) -> CompiledQuery:
        if photos is not None:
            return self.pivot(_Drive("photos", photos=photos), limit, offset)
        shape = self.ranked_shape()
        if shape is not None and limit is not None and self.within is None and self.sort == SORT_SCORE:
            return self.ranked(*shape, limit, offset)
        sides = self.broad_pair() if limit is not None and self.within is None and self.sort == SORT_SCORE else None
        if sides is not None:
            return self.ranked_pair(*sides, limit, offset)
        counting = self.count is not None
        drive = _drive(self.tree, self.by_term.__getitem__, self.entries if counting else None,
                       self.listed if counting else None)
        if drive is None and not any(s.positive for s in self.specs):
            return self.filter_by_path(limit, offset)
        if self.from_photo_values(drive) and self.many_candidates(drive) and limit is not None \
                and self.within is None and self.sort == SORT_SCORE:
            return self.ranked_photos(drive, limit, sa.bindparam(PAGE_OFFSET, offset, type_=sa.Integer))
        return self.pivot(drive, limit, offset)

    def pivot(self, drive: _Drive | None, limit: int | None, offset: int | sa.ColumnElement) -> CompiledQuery:
        """Shapes 1-4 of the module docstring: the statement that computes every candidate."""
        images = self.t.images
        cheap = [s for s in self.specs if s.cost <= CHEAP_DRIVER]
        if drive is None:
            plan = "no driving term: every image is a candidate, every term is read from the class index"
            indexed, probed = list(self.specs), []
        else:
            plan = _candidates(drive)
            if drive.op == "term":
                lead = drive.spec
                # text other than the lead is looked up per candidate, however cheap its read
                indexed = [lead] + [s for s in cheap if s is not lead and not s.is_text and not self.broad(s, lead)]
            elif drive.op == "photos":
                indexed = []
            else:
                indexed = [] if drive.op == "and" else cheap
            probed = [s for s in self.specs if s not in indexed]
        if indexed:
            plan += (f"; term{'s' * (len(indexed) > 1)} {', '.join(str(s.number) for s in indexed)} read from the class "
                     f"index{' and the word index' * any(s.is_text for s in indexed)}")
        if probed:
            plan += f"; term{'s' * (len(probed) > 1)} {', '.join(str(s.number) for s in probed)} computed per candidate"

        parts: list[sa.Select] = []
        for spec in indexed:
            hits = self.hits(spec)
            parts.append(sa.select(*self.wide(hits.c.image_id, hits.c.cell, {spec.number: hits.c.s})))
        if probed:
            cand = self.driver_ids(drive).cte("cand")
            if any(not spec.is_text for spec in probed):
                parts.append(self.probe_rows(cand, [spec for spec in probed if not spec.is_text]))
            parts += [self.text_probe_rows(cand, spec) for spec in probed if spec.is_text]
        if drive is None:  # images where no term holds are candidates too
            no_cell = sa.cast(sa.null(), sa.SmallInteger)
            parts.append(sa.select(*self.wide(images.c.image_id, no_cell, {})).where(self.admitted(images)))
        rows = (parts[0] if len(parts) == 1 else sa.union_all(*parts)).subquery("cell_scores")

        columns = [rows.c.image_id]
        for spec in self.specs:
            value = rows.c[f"s{spec.number}"]
            holds = self.reaches(value, spec)
            columns.append(sa.func.max(sa.case((holds, value))).label(f"score_{spec.number}"))
            columns.append(
                sa.func.sum(sa.case((holds, sa.literal(1).bitwise_lshift(rows.c.cell)), else_=0)).label(f"mask_{spec.number}")
            )
        self.per_image = matches = sa.select(*columns).group_by(rows.c.image_id).subquery("per_image")

        score = sa.func.coalesce(self.ranking(self.tree), 0.0).label("score")
        columns = [*image_columns(images), score]
        for spec in self.specs:
            if spec.positive:
                columns += [self.score(spec).label(f"score_{spec.number}"), self.mask(spec).label(f"mask_{spec.number}")]
        columns.append(sa.func.count().over().label("total"))
        by_date = order_by_date(images, self.sort) if self.sort != SORT_SCORE else []
        statement = (
            sa.select(*columns)
            .select_from(matches.join(images, images.c.image_id == matches.c.image_id))
            .where(self.admitted(images), self.condition(self.tree))
            .order_by(*by_date, sa.desc("score"), bytewise(images.c.path, self.dialect))
            .limit(limit)
            .offset(offset if isinstance(offset, sa.ColumnElement) else offset or None)
        )
        return CompiledQuery(statement, self.specs, plan, self.calibration, fusion=self.fusion)

    def ranked_shape(self) -> tuple[list[Spec], list[Spec]] | None:
        """A query of one term or an OR of terms (``cat OR dog in center``), alone or AND NOT others that are
        listed straight from an index (text, or one class: ``"exit" AND NOT "emergency"``, ``cat AND NOT
        face``): the terms it ranks and the ones negated; None for any other query. A negated term of several
        classes (``cat AND NOT bird``) would be computed over every photo, where the pivot looks it up for the
        cat photos only. An OR with text is left to the pivot (`held_cells` gives text no value per cell)."""
        children = self.tree.children if isinstance(self.tree, And) else (self.tree,)
        kept = [child for child in children
                if isinstance(child, Term) or isinstance(child, Or) and all(isinstance(c, Term) for c in child.children)]
        negated = [child.child for child in children if isinstance(child, Not) and isinstance(child.child, Term)]
        if len(kept) != 1 or len(kept) + len(negated) != len(children):
            return None
        terms = kept[0].children if isinstance(kept[0], Or) else (kept[0],)
        specs = list(dict.fromkeys(self.by_term[term] for term in terms))
        without = list(dict.fromkeys(self.by_term[term] for term in negated))
        if any(spec in without for spec in specs) or any(len(other.classes) > 1 for other in without):
            return None
        if len(specs) > 1 and any(spec.is_text for spec in specs):
            return None
        return specs, without

    def best_per_image(self, spec: Spec) -> tuple[sa.Select, bool, str]:
        """(image_id, best): each image where ``spec`` holds and its best value there (evidence or confidence, as
        `hits`); whether those rows come one per image in the order of an index (so each reader reads them
        straight from it); and where they come from. A detector's class anywhere is its ``image_labels`` row
        (the best cell: `indexer.regions.with_boxes`) from the cells' floor up; text, its matching lines that
        reach the region, not spread over cells; else the cells `hits` reads."""
        il, cl = self.t.image_labels, self.t.cell_labels
        stored_alone = len(spec.classes) == 1 and read_as_stored(spec.classes[0])
        if stored_alone and spec.cells == ALL_CELLS and spec.evidence >= SCORE_FLOOR:
            rows = sa.select(il.c.image_id, il.c.score.label("best")).where(
                il.c.class_id == spec.classes[0], self.reaches(il.c.score, spec))
            return rows, True, "its photos' best cells, from the image labels"
        if len(spec.classes) == 1 and len(spec.cells) == 1 and not spec.is_text:  # a row per image already
            rows = sa.select(cl.c.image_id, cl.c.score.label("best")).where(
                cl.c.class_id == spec.classes[0], cl.c.cell == spec.cells[0], self.reaches(cl.c.score, spec))
            return rows, True, "its cell, from the class index"
        if spec.is_text:
            lines = self.text_lines(spec, spec.cells)
            rows = sa.select(lines.c.image_id, sa.func.max(lines.c.confidence).label("best"))
            return rows.group_by(lines.c.image_id), False, "its matching lines, from the word index"
        hits = self.hits(spec)
        rows = sa.select(hits.c.image_id, sa.func.max(hits.c.s).label("best")).group_by(hits.c.image_id)
        return rows, False, "its cells, from the class index"

    def ranked(self, specs: list[Spec], without: list[Spec], limit: int, offset: int) -> CompiledQuery:
        """A query of one term, or of an OR of terms (less the images where the ``without`` terms hold: a NOT
        counts 1 in the score). Each image's best value is computed once (a materialized CTE) unless an index
        holds it in order already; an OR's is the best of its terms' confidences there, as the pivot ranks
        it. The count is of those rows less the few unlabelled images among them (`unlabelled`), and the page
        joins ``images`` only for the images that can reach it: those scoring at least the (offset +
        limit)-th best labelled image (ties included, which the path orders). So a term in 50,000 photos reads
        ``images`` for a page, not for 50,000 rows (a common word at 1M: 237 -> 65 ms). Terms of one class
        each go further (`ranked_streams`), less negated ones where those leave most photos (`mostly_kept`)."""
        if len(specs) == 1:
            rows, in_order, source = self.best_per_image(specs[0])
            plan = f"one term: the best of {source} per image"
        else:
            plan = (f"terms {', '.join(str(s.number) for s in specs)} in an OR: the best confidence of each per "
                    "image, the best of them per image")
        streams = self.streams(specs)
        if streams is not None and (not without or self.mostly_kept(specs, without)):
            return self.ranked_streams(specs, streams, plan, limit, offset, without)
        if len(specs) == 1:
            def confidence(best: sa.ColumnElement) -> sa.ColumnElement:
                return self.confidence(best, specs[0])
        else:
            branches = []
            for spec in specs:  # one row per image where an index holds them so, else its cells' rows
                per_image, one_each, _ = self.best_per_image(spec)
                branch = per_image.subquery(f"branch_{spec.number}") if one_each else self.hits(spec)
                value = branch.c.best if one_each else branch.c.s
                branches.append(sa.select(branch.c.image_id, self.confidence(value, spec).label("best")))
            either = sa.union_all(*branches).subquery("either")
            rows = sa.select(either.c.image_id, sa.func.max(either.c.best).label("best")).group_by(either.c.image_id)
            in_order = False

            def confidence(best: sa.ColumnElement) -> sa.ColumnElement:
                return best
        less = []
        for other in without:
            if self.few_against(specs, other):  # each image's own rows: one seek in the index by image and class
                rows = rows.where(~sa.exists(self.held_cells(other, rows.selected_columns.image_id.table)))
                less.append(f"term {other.number} (tested per image)")
            else:  # the list of the images where it holds, read once
                held = self.best_per_image(other)[0].subquery(f"held_{other.number}")
                rows = rows.where(rows.selected_columns.image_id.not_in(sa.select(held.c.image_id)))
                less.append(f"term {other.number} (listed)")
        # Materialized where the rows are not one per image in an index's order, or where they leave images out:
        # each of the four readers below would otherwise build the list of those images anew.
        shared = None if in_order and not without else rows.cte(f"best_{specs[0].number}").prefix_with("MATERIALIZED")

        def best() -> sa.FromClause:
            return shared if shared is not None else rows.subquery()

        start = sa.bindparam(PAGE_OFFSET, offset, type_=sa.Integer)
        statement = self.page_of_best(best, confidence, specs, limit, start)
        if without:
            plan += f", less the images of {', '.join(less)}"
        plan += "; ranked; images read for the page's candidates only; the count from those rows"
        return CompiledQuery(statement, self.specs, plan, self.calibration, fusion=self.fusion,
                             offset_parameter=PAGE_OFFSET)

    def page_of_best(self, best: Callable[[], sa.FromClause],
                     confidence: Callable[[sa.ColumnElement], sa.ColumnElement], specs: list[Spec], limit: int,
                     start: sa.ColumnElement, alone: bool | None = None) -> sa.Select:
        """The statement of a page of ``best()``'s rows (image_id, best: an image's value, one row an image),
        ranked by their ``confidence`` (rising with ``best``) from ``start``: counted less the unlabelled
        images among them, and ``images`` joined only for the rows reaching the (start + limit)-th best."""
        images = self.t.images
        excluded = sa.select(images.c.image_id).where(unlabelled(images))
        ranking = best()
        # The curve rises with the evidence, so the (offset + limit)-th best confidence is the curve's value at
        # the (offset + limit)-th best evidence, which an index can hand over in order.
        kth = (sa.select(ranking.c.best).where(ranking.c.image_id.not_in(excluded)).order_by(sa.desc(ranking.c.best))
               .limit(1).offset(start + (limit - 1)).subquery("kth"))
        last = sa.select(confidence(kth.c.best)).scalar_subquery()
        every, left_out = best(), best()
        left_out_count = sa.select(sa.func.count()).select_from(left_out).where(left_out.c.image_id.in_(excluded))
        total = sa.select(sa.func.count()).select_from(every).scalar_subquery() - left_out_count.scalar_subquery()
        candidates = best()
        score = confidence(candidates.c.best)
        page = (
            sa.select(*image_columns(images), score.label("score"))
            .select_from(candidates.join(images, images.c.image_id == candidates.c.image_id))
            .where(labelled(images), score >= sa.func.coalesce(last, score))
            .order_by(sa.desc("score"), bytewise(images.c.path, self.dialect))
            .limit(limit)
            .offset(start)
            .subquery("page")
        )
        return self.with_terms(specs, page, total, alone)

    def many_candidates(self, drive: _Drive) -> bool:
        """``drive`` reads more than `ESTIMATE_CAP` class-index entries (`entries`, where the index may be
        asked): `ranked_photos` pays a few milliseconds that the pivot of fewer does not (``dog in bottom-left
        AND spoon in top-left`` at 1M photos: 6 ms by the pivot, 12 so)."""
        return self.count is not None and self.entries(drive, ESTIMATE_CAP) > ESTIMATE_CAP

    def photo_terms(self) -> list[Spec] | None:
        """The terms of a query that is an AND of terms alone or one relation, each one class in any region
        (`read_in_order`: ``person AND animal``, ``face AND vehicle in left column``, ``pomegranate right of
        French horn``): a photo's score of each is one row, or the best of its rows in the region, so its match
        and its score are read from those (`ranked_photos`). None for any other query."""
        node = self.tree
        if isinstance(node, Relation):
            children = [node.left, node.right]
        elif isinstance(node, And) and all(isinstance(child, Term) for child in node.children):
            children = node.children
        else:
            return None
        specs = [self.by_term[child] for child in children]
        return specs if all(self.read_in_order(spec) for spec in specs) else None

    def from_photo_values(self, drive: _Drive) -> bool:
        """`ranked_photos` can compute the query from the photos ``drive`` admits: an AND of `photo_terms`, or
        their relation where both sides drive (the pivot reads a side that drives alone from the class index,
        and its rows would be read again for each photo: ``face right of frisbee``'s statement at 1M photos,
        medians of five warm runs, 0.25 s so against 0.22 s by the pivot)."""
        return self.photo_terms() is not None and (drive.op == "and" or not isinstance(self.tree, Relation))

    def ranked_photos(self, drive: _Drive, limit: int, start: sa.ColumnElement) -> CompiledQuery:
        """`photo_terms`' query computed from the photos ``drive`` admits, each term's value looked up for each:
        its ``image_labels`` row where it is one class read as stored, anywhere (`scored_in_order`), else the
        best of its rows in its region (`held_value`); one seek a photo and term either way. The pivot reads
        each candidate's cells of every term, groups them by cell and again by photo, and joins every match
        to ``images``: ``person AND animal`` at 1M photos, 39,785 matches, 1.0-1.1 s so and 0.6-0.75 s this
        way. A relation's sides are read together from the photo's rows of their classes, their cells too
        (`own_cells`), and the relation tested from those. The page is cut as one term's is (`page_of_best`);
        its cells are read for the page alone (`with_terms`)."""
        terms = self.photo_terms()
        specs = list(dict.fromkeys(terms))
        self._hits_inlined = True
        carried = drive.op == "term" and drive.narrowed is None
        cand = (self.lead_values(drive) if carried else self.driver_ids(drive)).cte("candidates")
        joined, values, image_id, tests = cand, {}, cand.c.image_id, []
        relation = isinstance(self.tree, Relation)
        for spec in [] if relation else specs:
            if carried and spec is drive.spec:
                values[spec] = cand.c.s
            elif self.scored_in_order(spec):  # a join drops the photos without one as it reads them
                read = self.t.image_labels.alias(f"photo_{spec.number}")
                joined = _DrivenByPhoto(joined, read, sa.and_(read.c.image_id == cand.c.image_id,
                                                              read.c.class_id == spec.classes[0],
                                                              self.reaches(read.c.score, spec)))
                values[spec] = read.c.score
            else:  # NULL where it holds in none of its cells: the product too
                values[spec] = self.held_value(spec, cand.c.image_id)
        if relation:  # each side's value and cells, from one read of the photo's rows
            rows = self.own_cells(cand, specs)
        elif any(not spec.confidences and not self.scored_in_order(spec) for spec in specs):
            # SQLite computes a scalar subquery again at each mention, and a model class's calibration
            # (`confidence`) mentions its value once a knot (``pomegranate AND coffeepot`` at 1M: 432 -> 170 ms).
            rows = sa.select(cand.c.image_id, *(values[spec].label(f"v{spec.number}") for spec in specs))
            rows = rows.select_from(joined)
        else:
            rows = None
        if rows is not None:  # each value read once, into a table
            read = rows.cte("photo_values").prefix_with("MATERIALIZED")
            joined, image_id, values = read, read.c.image_id, {spec: read.c[f"v{spec.number}"] for spec in specs}
            tests = [value.is_not(None) for value in values.values()]
            if relation:
                masks = [read.c[f"m{self.by_term[side].number}"] for side in (self.tree.left, self.tree.right)]
                tests.append(self.related(self.tree.kind, *masks))
        product = None
        for spec in terms:  # a term given twice counts twice, as the pivot ranks it
            value = self.confidence(values[spec], spec)
            product = value if product is None else product * value
        # Where the values are looked up in place, a photo where one holds nowhere has a NULL product, dropped
        # where the rows are read (`found`): tested in the CTE, each lookup was computed twice.
        matches = sa.select(image_id, product.label("best")).select_from(joined).where(*tests)
        shared = matches.cte("photo_matches").prefix_with("MATERIALIZED")

        def found() -> sa.Subquery:
            return sa.select(shared).where(shared.c.best.is_not(None)).subquery()

        statement = self.page_of_best(found, lambda best: best, specs, limit, start, alone=False)
        plan = (f"{_candidates(drive)}; each term's value in each looked up; ranked; images read for the page's "
                "candidates only; the count from those rows")
        return CompiledQuery(statement, self.specs, plan, self.calibration, fusion=self.fusion,
                             offset_parameter=PAGE_OFFSET)

    def own_cells(self, cand: sa.CTE, specs: list[Spec]) -> sa.Select:
        """(image_id, v<n>, m<n>): each of the photos ``cand`` lists, with each `read_in_order` term's value
        in its best cell (as `hits`: NULL where it holds in none) and the mask of the cells where it holds,
        from the photo's own rows of their classes, a seek a class in the index that holds their scores."""
        own = self.t.cell_labels.alias("own")
        columns = [cand.c.image_id]
        for spec in specs:
            holds = sa.and_(own.c.class_id == spec.classes[0], self.cell_filter(own.c.cell, spec.cells),
                            self.reaches(own.c.score, spec))
            columns += [sa.func.max(sa.case((holds, own.c.score))).label(f"v{spec.number}"),
                        sa.func.sum(sa.case((holds, sa.literal(1).bitwise_lshift(own.c.cell)), else_=0))
                        .label(f"m{spec.number}")]
        classes = tuple(sorted({spec.classes[0] for spec in specs}))
        mine = sa.and_(own.c.image_id == cand.c.image_id, self.class_filter(own.c.class_id, classes))
        return sa.select(*columns).select_from(_Driven(cand, own, mine)).group_by(cand.c.image_id)

    def lead_values(self, drive: _Drive) -> sa.Select:
        """(image_id, s): the photos a term's drive admits, as `driver_ids` lists them, each with the term's value
        there (`held_value`), read with them."""
        if self.lists_photos(drive):
            return self.labels_in_order(drive.spec, f"photos_{drive.spec.number}").order_by(None).order_by("image_id")
        hits = self.hits(drive.spec)
        return sa.select(hits.c.image_id, sa.func.max(hits.c.s).label("s")).group_by(hits.c.image_id)

    def held_value(self, spec: Spec, image_id: sa.ColumnElement) -> sa.ScalarSelect:
        """A `read_in_order` term's value in the photo ``image_id`` (as `hits`: its best cell of its region
        where it holds), from the photo's own rows of its class: one seek of an index that holds them; NULL
        where it holds in none."""
        read, own = self.own_rows(spec, image_id)
        return sa.select(sa.func.max(read.c.score)).where(*own, self.reaches(read.c.score, spec)).scalar_subquery()

    def pair(self) -> tuple[Term, Term] | None:
        """The two terms of a query that is one relation (``face below person``) or an AND of two terms
        (``person AND dog``): a match's score is the product of theirs either way (`ranking`)."""
        node = self.tree
        if isinstance(node, Relation):
            return node.left, node.right
        if isinstance(node, And) and len(node.children) == 2 and all(isinstance(c, Term) for c in node.children):
            return node.children[0], node.children[1]
        return None

    def broad_pair(self) -> tuple[Spec, Spec] | None:
        """A query of two terms in many photos each (`pair`: ``face below person``, ``French horn next to
        person``, ``person AND dog``), each one class (`read_in_order`), where a sample of either
        side expects `RELATION_MARGIN` times the `COUNT_LIMIT` + 1 matches it must find among its best
        `RELATION_BUDGET` photos (`expected_matches`): (the side expecting more, read in score order; the
        other). Such sides have tens of thousands of candidates in common at 1M photos (`ranked_pair`);
        None for any other query, or where the index may not be asked."""
        terms = self.pair()
        if terms is None or self.count is None:
            return None
        sides = (self.by_term[terms[0]], self.by_term[terms[1]])
        if sides[0] is sides[1] or not all(self.read_in_order(spec) for spec in sides):
            return None
        node = self.tree
        cells = RELATION_SIDES[node.kind] if isinstance(node, Relation) else (ALL_CELLS, ALL_CELLS)
        if any(self.entries(_side(spec, side_cells), ESTIMATE_CAP) <= ESTIMATE_CAP
               for spec, side_cells in zip(sides, cells)):
            return None
        expected = [self.expected_matches(spec) for spec in sides]
        lead = 0 if expected[0] >= expected[1] else 1
        if expected[lead] < RELATION_MARGIN * (COUNT_LIMIT + 1):
            return None
        return sides[lead], sides[1 - lead]

    def held_in_sample(self, side: Spec, test: Callable[[sa.FromClause], sa.ColumnElement]) -> int | None:
        """How many of ``side``'s best `RELATION_SAMPLE` photos by its ``image_labels`` rows pass ``test`` (of a
        subquery of them, with ``image_id``); None where it has fewer photos."""
        # Two counts, each over the sample (a sum over it of a CASE of the test read the second side's cells in
        # full for each photo, SQLite 3.40). An estimate: a failed photo's stale rows may count (testing each
        # photo for that read a list of them).
        best = self.labels_in_order(side, "sample_read").limit(RELATION_SAMPLE).subquery("best")
        held = sa.select(sa.func.count()).select_from(best).where(test(best)).scalar_subquery()
        photos = sa.select(sa.func.count()).select_from(best).scalar_subquery()
        found = self.count(sa.select(sa.case((photos < RELATION_SAMPLE, -1), else_=held)))
        return None if found < 0 else found

    @staticmethod
    def counts_within_budget(held: int) -> bool:
        """``held`` of a sample of `RELATION_SAMPLE` photos is a share that finds `COUNT_LIMIT` + 1 within
        `RELATION_BUDGET` photos (at least 26 of 250)."""
        return held * RELATION_BUDGET >= (COUNT_LIMIT + 1) * RELATION_SAMPLE

    def expected_matches(self, side: Spec) -> float:
        """The matches among ``side``'s best `RELATION_BUDGET` photos by its ``image_labels`` rows: the relation's
        share of those of them whose id is a multiple of their number over `RELATION_SAMPLE` (about that many
        photos spread over all of them, in no order of score), times their number; infinite where it has fewer
        photos than a sample (all of them are read, at little cost). A class's best photos are the ones it
        fills alone: a sample at the top finds few matches where its photos further down hold many (``person
        left of running shoe`` at 1M: 2 of the best 250 running shoes, 1,001 matches among the best 2,720).
        A term of a region is sampled among its class's photos anywhere (its best cell: one range of one
        index), so fewer of them hold it: the estimate errs low, towards computing the query in full."""
        read = self.labels_in_order(side, "sample_read")
        # Ties in image order, as SQLite's index reads them: the same sample in PostgreSQL.
        best = (read.order_by(sa.desc(read.selected_columns.image_id)).limit(RELATION_BUDGET)
                .cte("sample_read_best").prefix_with("MATERIALIZED"))
        photos = sa.select(sa.func.count()).select_from(best).scalar_subquery()
        picked = best.c.image_id % self.greatest(photos // RELATION_SAMPLE, 1) == 0
        sampled = sa.select(sa.func.count()).select_from(best).where(picked).scalar_subquery()
        held = (sa.select(sa.func.count()).select_from(best).where(picked, self.condition(self.tree, best))
                .scalar_subquery())
        share = sa.cast(held, sa.Float) / self.greatest(sampled, 1)
        found = self.count(sa.select(sa.case((photos < RELATION_SAMPLE, -1.0), else_=share * photos)))
        return float("inf") if found < 0 else found

    def photos_in_order(self, spec: Spec, name: str, floor: sa.ColumnElement | None = None) -> sa.Select:
        """(image_id, s): the photos where a `read_in_order` term holds, best first, with its value in its best
        cell (as `hits`: evidence or confidence); from ``floor`` (such a value) up if given (then the one bound
        of the index's range: with the threshold as a second, SQLite read down to the threshold). A class read
        as stored, anywhere, from its ``image_labels`` index (`photos_listed`); a model class, or a term of a
        region, from its cells there, each photo at the best of them. Photos a query leaves out
        (`unlabelled`) too: the reader drops them (`matchable`), once rather than in each of nine parts (a
        list of 5,000 such photos at 1M, built nine times: 5 ms)."""
        if not self.photos_listed(spec):
            return self.best_cells_in_order(spec, name, floor)
        return self.labels_in_order(spec, name, floor)

    @staticmethod
    def photos_listed(spec: Spec) -> bool:
        """A `read_in_order` term's photos and their scores are its ``image_labels`` rows: a class read as
        stored, anywhere. Else (a model class, or a region) they are read from its cells."""
        return read_as_stored(spec.classes[0]) and spec.cells == ALL_CELLS

    def labels_in_order(self, spec: Spec, name: str, floor: sa.ColumnElement | None = None) -> sa.Select:
        """`photos_in_order` from the ``image_labels`` index: every photo of a class read as stored; of a model
        class, those that list it among their `indexer.regions.IMAGE_TOP_K` classes: nearly all its best
        ones, enough for a sample (`expected_matches`: one range of one index, against nine ranges and a seek
        for each photo)."""
        read = self.t.image_labels.alias(name)
        return (sa.select(read.c.image_id, read.c.score.label("s"))
                .where(read.c.class_id == spec.classes[0], *self.from_floor(read.c.score, spec, floor))
                .order_by(sa.desc(read.c.score)))

    def matchable(self, image_id: sa.ColumnElement) -> sa.ColumnElement:
        """The photo may match a query: not one `unlabelled` leaves out."""
        images = self.t.images
        return image_id.not_in(sa.select(images.c.image_id).where(unlabelled(images)))

    def from_floor(self, score: sa.ColumnElement, spec: Spec, floor: sa.ColumnElement | None) -> list:
        """``score`` reaches ``spec``'s threshold, and ``floor`` if given, spelled so an index's range has one
        lower bound (`photos_in_order`)."""
        if floor is None:
            return [self.reaches(score, spec)]
        return [score >= self.greatest(floor, spec.evidence), self.reaches(score + 0, spec)]

    def best_cells_in_order(self, spec: Spec, name: str, floor: sa.ColumnElement | None) -> sa.CompoundSelect:
        """`photos_in_order` of one model class: its ``image_labels`` rows are only the photo's
        `indexer.regions.IMAGE_TOP_K` classes, so some photos where it holds have none. Its nine cells' ranges
        of the class index are merged instead (SQLite merges the ordered parts of a ``UNION ALL`` and stops at
        its LIMIT), each photo kept at its best cell (ties: the lowest): one seek of the photo's rows of the
        class, about 5.5 µs a photo at 1M warm (``French horn``'s best 10,000 photos: 55 ms), against 1 µs from
        ``image_labels``."""
        return self.cells_from(spec, name, floor, best_only=True).order_by(sa.desc("s"))

    def rows_above(self, spec: Spec, name: str, floor: sa.ColumnElement | None = None) -> sa.Select:
        """(image_id, s): rows of a `read_in_order` term from ``floor`` up (if given), in no order, and among
        them each photo's best (`photos_in_order`'s row): for a model class or a term of a region its cells
        there, a photo's other cells too. Its photos are as many or fewer, and listed without the seek that
        finds a photo's best cell (``French horn next to person`` at 1M: 8,466 photos, 9,155 cells above its
        cut)."""
        if self.photos_listed(spec):
            return self.photos_in_order(spec, name, floor)
        return self.cells_from(spec, name, floor, best_only=False)

    def cells_from(self, spec: Spec, name: str, floor: sa.ColumnElement | None, best_only: bool) -> sa.CompoundSelect:
        """(image_id, s): a class's rows in each of the term's cells from ``floor`` up, one part a cell; with
        ``best_only``, a row only where no other of those cells of its photo scores higher (or as high, lower)."""
        class_id, parts = spec.classes[0], []
        # One alias for all nine parts, each its own scope: an alias costs SQLAlchemy a column object of each
        # column, for each use (a ranked relation's four reads of nine parts: 40 ms a query).
        read, mine = self.t.cell_labels.alias(name), self.t.cell_labels.alias(f"{name}_others")
        bound = self.from_floor(read.c.score, spec, floor)
        for cell in spec.cells:
            where = [read.c.class_id == class_id, read.c.cell == cell, *bound]
            if best_only and len(spec.cells) > 1:
                higher = sa.or_(mine.c.score > read.c.score,
                                sa.and_(mine.c.score == read.c.score, mine.c.cell < cell))
                # A column of the index: ``SELECT *`` read the table too.
                where.append(sa.not_(sa.select(mine.c.cell).where(
                    mine.c.image_id == read.c.image_id, mine.c.class_id == class_id,
                    self.cell_filter(mine.c.cell, spec.cells), higher).exists()))
            parts.append(sa.select(read.c.image_id, read.c.score.label("s")).where(*where))
        return sa.union_all(*parts)

    def best_confidence(self, spec: Spec) -> sa.ScalarSelect:
        """The highest confidence a `read_in_order` term has in any photo where it holds (the top of its index)."""
        if self.photos_listed(spec):
            read = self.t.image_labels.alias("best_of_all")
            return (sa.select(sa.func.max(read.c.score))
                    .where(read.c.class_id == spec.classes[0], self.reaches(read.c.score, spec)).scalar_subquery())
        tops, read = [], self.t.cell_labels.alias("best_in_cell")  # one alias: `best_cells_in_order`
        for cell in spec.cells:
            tops.append(sa.select(sa.func.max(read.c.score).label("top")).where(
                read.c.class_id == spec.classes[0], read.c.cell == cell, self.reaches(read.c.score, spec)))
        top = sa.union_all(*tops).subquery("tops")
        return sa.select(self.confidence(sa.func.max(top.c.top), spec)).scalar_subquery()

    def confidence_in(self, spec: Spec, image_id: sa.ColumnElement) -> sa.ScalarSelect:
        """A `read_in_order` term's confidence in one photo's best cell of its region, from the photo's cells
        there: one seek of an index that holds them (``image_labels`` gives a stored class's best cell too,
        but its key's index does not hold the score, so that the lookup visits the table as well: 6 µs
        against 4.5 at 1M)."""
        read, own = self.own_rows(spec, image_id)
        return sa.select(self.confidence(sa.func.max(read.c.score), spec)).where(*own).scalar_subquery()

    def own_rows(self, spec: Spec, image_id: sa.ColumnElement) -> tuple[sa.Alias, list[sa.ColumnElement]]:
        """A `read_in_order` term's rows in one photo, its class's in its region (`confidence_in`,
        `held_value`): an alias of ``cell_labels`` and the conditions that pick them, one seek of the index
        that holds their scores."""
        read = self.t.cell_labels.alias()
        # The cell as a value, not a key: for one cell SQLite sought the primary key (image_id, cell, class_id)
        # instead, which does not hold the score.
        return read, [read.c.image_id == image_id, read.c.class_id == spec.classes[0],
                      self.cell_filter(read.c.cell + 0, spec.cells)]

    def photos_of(self, spec: Spec, name: str) -> sa.Select:
        """(image_id): the photos where a `scored_in_order` term holds somewhere, a row each, from its
        ``image_labels`` index (a photo's row is its best cell). A superset of a relation's side, whose cells
        are not narrowed here, read far faster than its cells: ``bowl below giraffe`` at 1M photos intersects
        65,000 and 32,000 photos in 36 ms, against 230,000 and 134,000 cells in 86 ms."""
        read = self.t.image_labels.alias(name)
        return sa.select(read.c.image_id).where(read.c.class_id == spec.classes[0], self.reaches(read.c.score, spec))

    @staticmethod
    def scored_in_order(spec: Spec) -> bool:
        """Each image's score of ``spec`` is its ``image_labels`` row (the best cell), in score order in its
        index: one class read as stored (a detector's, a compound), anywhere, from the cells' floor up."""
        return _Compiler.read_in_order(spec) and _Compiler.photos_listed(spec)

    @staticmethod
    def read_in_order(spec: Spec) -> bool:
        """``spec``'s photos can be read best first (`photos_in_order`): one class, in any region, read as
        stored from the cells' floor up (`scored_in_order` where it is anywhere), or a model class, whose
        confidence rises with its evidence (`indexer.calibration`); so its best cells first are its best
        photos first."""
        if len(spec.classes) != 1 or spec.evidence == float("inf"):
            return False
        if read_as_stored(spec.classes[0]):
            return bool(spec.confidences) and SCORE_FLOOR <= spec.evidence
        return not spec.confidences

    def ranked_pair(self, lead: Spec, other: Spec, limit: int, offset: int) -> CompiledQuery:
        """`broad_pair`'s query, computing only what reaches its page where it can. ``lead``'s best
        `RELATION_BUDGET` photos are read in score order (`photos_in_order`), each tested for the
        relation from its own rows. Where `COUNT_LIMIT` of them match (or the page's end, if further), those
        are the count ("more than" that) and a sample: the k-th best score among them (k = offset + limit)
        is at most the page's last, as is the k-th best among the matches of both sides' best
        `RELATION_SEED` rows (`seed_rows`), often higher: the best photos of one side are seldom the best
        of the other. A match's score is the product of its sides' scores, so no photo where either side
        scores below that over the other side's best score can reach the page, and the page is ranked from
        the photos above both cuts alone: read from the side with fewer rows above its cut, where those are
        at most `RELATION_ABOVE`, and each tested against the other side's rows above its own where those
        are at most `RELATION_LIST_RATIO` times as many (then `RELATION_LISTED_ABOVE` rows may be read: ``face
        AND person in bottom-right`` at 1M, 24,000 people in that cell above their cut against 15,700 faces
        above theirs). Where fewer match but the lead has no more photos, the matches found are all of them,
        and the page is ranked from them. Otherwise (too few matches among the best photos, or too many rows
        above both cuts) the statement computes every candidate as the pivot does (an AND as `ranked_photos`
        does); the test of which is made once, before either is read. ``face below person`` at 1M photos:
        63,288 matches, 3.5-3.9 s computed in full, 0.12 s so; ``person left of running shoe``, 34,994
        matches, 0.77 s and 0.09 s; ``face AND person``, 338,692 matches, 4.6 s and 0.07 s (bench/RESULTS.md).
        An AND is read so as its two terms' relation is: its test is that both hold."""
        node, images = self.tree, self.t.images
        start = sa.bindparam(PAGE_OFFSET, offset, type_=sa.Integer)
        lead_is_left = lead is self.by_term[self.pair()[0]]

        def scores(image_id: sa.ColumnElement, s: sa.ColumnElement, side: Spec = lead) -> sa.ColumnElement:
            """The match's score from ``side``'s value ``s``, multiplied as the pivot multiplies it (`ranking`):
            left side first."""
            known, looked_up = (lead, other) if side is lead else (other, lead)
            mine, theirs = self.confidence(s, known), self.confidence_in(looked_up, image_id)
            return mine * theirs if (side is lead) == lead_is_left else theirs * mine

        def held(rows: sa.Subquery) -> sa.Select:
            return sa.select(rows.c.image_id, rows.c.s).where(self.matchable(rows.c.image_id),
                                                              self.condition(node, rows))

        def count_of(rows: sa.Select, most: int) -> sa.ScalarSelect:
            """`counted` inside the statement: its rows up to ``most``, counted when it runs."""
            return sa.select(sa.func.count()).select_from(rows.limit(most).subquery()).scalar_subquery()

        def kth_of(rows: sa.Subquery) -> sa.ScalarSelect:
            """The k-th best score of the matches ``rows`` (with the lead's values); NULL where they are fewer."""
            return (sa.select(scores(rows.c.image_id, rows.c.s).label("p")).order_by(sa.desc("p"))
                    .limit(1).offset(start + (limit - 1)).scalar_subquery())

        stop = self.greatest(sa.literal(COUNT_LIMIT), start + limit) + 1
        best = self.photos_in_order(lead, "best_read").limit(RELATION_BUDGET).subquery("best")
        first = held(best).limit(stop).cte("first_matches").prefix_with("MATERIALIZED")
        seed = held(self.seed_rows(lead, other)).subquery("seed_matches")
        # Named once: each use of a scalar subquery computes it again (its sort of the matches: 15 ms at 1M).
        kths = sa.select(kth_of(first).label("first"), kth_of(seed).label("seed")).subquery("kths")
        kth = self.greatest(kths.c.first, sa.func.coalesce(kths.c.seed, kths.c.first))
        # Either side scores at most its best photo's score, so the other scores at least the cut over that
        # (a hair below, for rounding: REAL is four bytes in PostgreSQL): a confidence, read from its value. A
        # best confidence of 0 is read as a tiny one: every match then scores 0, every photo is above the cut.
        their_best, my_best = (self.greatest(self.best_confidence(spec), _number(1e-30)) for spec in (other, lead))
        lowest = (sa.select((kth / their_best * (1 - 1e-6)).label("p"), (kth / my_best * (1 - 1e-6)).label("q"),
                            (kth * (1 - 1e-6)).label("k"))
                  .select_from(kths).cte("cut_confidence").prefix_with("MATERIALIZED"))
        cut = (sa.select(self.value_of(lowest.c.p, lead).label("v"), self.value_of(lowest.c.q, other).label("w"),
                         lowest.c.k)
               .cte("cut").prefix_with("MATERIALIZED"))
        floor, other_floor = (sa.select(column).scalar_subquery() for column in (cut.c.v, cut.c.w))
        found = sa.select(sa.func.count()).select_from(first).scalar_subquery()
        # Which rows the page is read from, decided once, each count read only where the one before does not
        # decide: 0 the matches found (all of them: the lead's photos were all read), n > 0 the lead's n rows
        # above its cut, n < 0 the other side's -n rows above its own; NULL (or more rows than
        # `RELATION_ABOVE`, `RELATION_LISTED_ABOVE` where they are tested against the other side's list) where the
        # statement computes every candidate. Of a model class, its cells are counted: its photos are as many
        # or fewer.
        all_read = count_of(self.rows_above(lead, "all_read"), RELATION_BUDGET) < RELATION_BUDGET
        above_cut = self.rows_above(lead, "above_cut", floor)
        other_above_cut = self.rows_above(other, "other_above_cut", other_floor)
        mine, theirs = (count_of(rows, RELATION_LISTED_ABOVE + 1) for rows in (above_cut, other_above_cut))

        def listable(rows: sa.Select, read: sa.ColumnElement) -> sa.ColumnElement:
            """1 where ``rows`` (the other side's above its cut) are at most `RELATION_LIST_RATIO` times the
            ``read`` rows of the side the page is read from, else 0: counted only that far."""
            bound = read * RELATION_LIST_RATIO
            return sa.case((count_of(rows, bound + 1) <= bound, 1), else_=0)

        taken = (sa.select(sa.case((found < stop, sa.case((all_read, 0), else_=None)),
                                   (mine <= theirs, mine), else_=-theirs).label("rows"),
                           sa.case((found < stop, None), (mine <= theirs, listable(other_above_cut, mine)),
                                   else_=listable(above_cut, theirs)).label("listed"))
                 .cte("taken").prefix_with("MATERIALIZED"))
        # Decided in one more CTE, each of its uses one reference: SQLite copies a CTE's tree for each reference
        # to it, and stops at 65,535 references to a table (two ImageNet classes' nine cells each).
        most = sa.case((taken.c.listed == 1, RELATION_LISTED_ABOVE), else_=RELATION_ABOVE)
        decided = (sa.select(taken.c.rows, taken.c.listed,
                             sa.and_(taken.c.rows.is_not(None), sa.func.abs(taken.c.rows) <= most).label("ok"))
                   .cte("decided").prefix_with("MATERIALIZED"))
        read_rows, listed, ok = (sa.select(column).scalar_subquery() for column in decided.c)

        def above(side: Spec, rows: sa.Select, name: str, theirs: sa.Select) -> sa.Select:
            """The matches among ``side``'s photos above its cut (``rows``) that reach the k-th best score, with
            their scores: a photo not among ``theirs`` (the other side's rows above its cut, where `listable`:
            one list of them) or whose match would score below it is not tested (its other side's score is
            one key lookup, the relation two reads of its cells). Each photo once, in image order: grouped
            before the lookups, which then walk the index by photo (``French horn next to person`` at 1M:
            9,155 rows, 8,466 photos, 10 ms less than looking its rows up in the order they were read)."""
            read = rows.subquery()
            photos = (sa.select(read.c.image_id, sa.func.max(read.c.s).label("s"))
                      .group_by(read.c.image_id).subquery(name))
            score = scores(photos.c.image_id, photos.c.s, side)
            their_photos = theirs.subquery()
            among_theirs = sa.or_(listed == 0,
                                  photos.c.image_id.in_(sa.select(their_photos.c.image_id)))
            return (sa.select(photos.c.image_id, score.label("score"))
                    .where(among_theirs, self.matchable(photos.c.image_id),
                           score >= sa.select(cut.c.k).scalar_subquery(), self.condition(node, photos)))

        def if_read(rows: sa.Select, reads: sa.ColumnElement, most: sa.ColumnElement | int) -> sa.Select:
            """``rows`` (``most`` of them at most) where ``reads`` (a test of `taken` alone), cut by a LIMIT of 0
            elsewhere: a LIMIT is read before its rows are (a WHERE on such a test ran the full computation,
            then dropped its rows)."""
            return sa.select(rows.limit(sa.case((reads, most), else_=0)).subquery())

        candidates = sa.union_all(
            if_read(sa.select(first.c.image_id, scores(first.c.image_id, first.c.s).label("score")), read_rows == 0,
                    stop),
            if_read(above(lead, above_cut, "lead_above_in_image_order", other_above_cut), read_rows > 0,
                    RELATION_LISTED_ABOVE),
            if_read(above(other, other_above_cut, "other_above_in_image_order", above_cut), read_rows < 0,
                    RELATION_LISTED_ABOVE),
        ).subquery("candidates")
        page = (
            sa.select(*image_columns(images), candidates.c.score)
            .select_from(candidates.join(images, images.c.image_id == candidates.c.image_id))
            .order_by(sa.desc("score"), bytewise(images.c.path, self.dialect))
            .limit(limit)
            .offset(start)
            .subquery("page")
        )
        specs = [spec for spec in self.specs if spec.positive]
        read_so = self.with_terms(specs, page, found)
        # Planned from the query alone (both sides intersected): counting the sides' entries to choose cost
        # every such query up to 80 ms (``French horn next to person`` at 1M: 1.26 million person entries),
        # where the plan they chose saved 22 ms of the branch's 270 where it ran (``pizza right of cup``).
        drive = _drive(node, self.by_term.__getitem__)
        in_full = (self.ranked_photos(drive, limit, start) if self.from_photo_values(drive)
                   else self.pivot(drive, limit, start))
        computed = in_full.statement
        # Each branch is cut by a LIMIT of 0 where the other answers: a LIMIT is read before its rows are (a WHERE
        # on the test ran the full computation, then dropped its rows).
        chosen = sa.union_all(
            sa.select(read_so.limit(sa.case((ok == sa.true(), limit), else_=0)).subquery("read_so_if_taken")),
            sa.select(computed.limit(sa.case((ok == sa.true(), 0), else_=limit)).subquery("in_full_if_not")),
        )
        either = chosen.subquery("answer")
        statement = sa.select(either).order_by(sa.desc(either.c.score), bytewise(either.c.path, self.dialect))
        what = "one relation" if isinstance(node, Relation) else "an AND"
        plan = (f"{what} of two broad terms: term {lead.number}'s best {RELATION_BUDGET:,} photos in score "
                f"order, each tested; where {max(COUNT_LIMIT, offset + limit):,} of them match, those counted and "
                f"the page ranked from the photos where each side scores above the k-th best of them (or of "
                f"both sides' best rows) over the other's best; where fewer match and those are all, from "
                f"them; else {in_full.plan}")
        return CompiledQuery(statement, self.specs, plan, self.calibration, max(COUNT_LIMIT, offset + limit),
                             self.fusion, offset_parameter=PAGE_OFFSET, counted_page=limit)

    def seed_rows(self, lead: Spec, other: Spec) -> sa.Subquery:
        """(image_id, s): the photos among both sides' best `RELATION_SEED` rows (cells, for a model class),
        each with the lead's value: where many photos hold each side and few both, their matches score higher
        than the lead's best photos' do (``person left of running shoe`` at 1M: the 20 best of the lead's
        first 1,001 matches score 0.92, of the 42 matches among both sides' best 10,000 rows, 1.0)."""
        def best_rows(spec: Spec, name: str) -> sa.Subquery:
            rows = self.rows_above(spec, name)
            if not self.photos_listed(spec):
                rows = rows.order_by(sa.desc("s"))
            return rows.limit(RELATION_SEED).subquery(name)

        mine, theirs = best_rows(lead, "seed_lead"), best_rows(other, "seed_other")
        return (sa.select(mine.c.image_id, sa.func.max(mine.c.s).label("s"))
                .where(mine.c.image_id.in_(sa.select(theirs.c.image_id)))
                .group_by(mine.c.image_id).subquery("seed_rows"))

    def value_of(self, confidence: sa.ColumnElement, spec: Spec) -> sa.ColumnElement:
        """The value ``spec``'s rows store for ``confidence``: itself for a class stored as a confidence, else
        its evidence (`evidence_of`)."""
        return confidence if spec.confidences else evidence_of(self.calibration, confidence, spec.model_classes)

    def few_against(self, specs: list[Spec], other: Spec) -> bool:
        """The terms ``specs`` (an OR) read far fewer class-index entries than ``other`` (`NARROW_RATIO`), so
        testing each of their images for ``other`` costs less than listing every image where it holds (a
        query of one term AND NOT a word in a fifth of the photos); only where the index may be asked, and
        for terms of the class index (text's words are not counted)."""
        if self.count is None or other.is_text or any(spec.is_text for spec in specs):
            return False
        drive = _combine("or", [_Drive("term", spec) for spec in specs])
        few = self.entries(drive, ESTIMATE_CAP)
        return few <= ESTIMATE_CAP and self.entries(_Drive("term", other), few * NARROW_RATIO) > few * NARROW_RATIO

    def mostly_kept(self, specs: list[Spec], without: list[Spec]) -> bool:
        """The ``without`` terms leave enough of the photos of ``specs`` that reading their streams and testing
        each photo as it comes (`ranked_streams`) soon fills the page and the count: as many of each term's best
        `RELATION_SAMPLE` photos as would find `COUNT_LIMIT` matches within `RELATION_BUDGET` of them
        (`counts_within_budget`); a term in fewer photos is read whole. So
        ``minibus AND NOT truck`` at 1M (103,042 matches) is counted to 1,000 instead of each match being
        grouped, tested against the list of trucks and counted: 230 -> 70 ms. Where the terms hold in most of
        them, each photo tested would be wasted (``face AND NOT person``: none left): the matches are
        listed and counted in full (`ranked`), as they are where the terms read at most `COUNT_LIMIT`
        class-index entries: every photo is then tested and counted either way, and the sample would cost more
        than it saves (3-5 ms). Only where the index may be asked."""
        if self.count is None:
            return False
        if self.entries(_combine("or", [_Drive("term", spec) for spec in specs]), COUNT_LIMIT) <= COUNT_LIMIT:
            return False
        for spec in specs:
            held = self.held_in_sample(spec, lambda best: sa.and_(*self.left_by(without, best)))
            if held is not None and not self.counts_within_budget(held):
                return False
        return True

    def left_by(self, without: list[Spec], rows: sa.FromClause) -> list[sa.ColumnElement]:
        """None of the ``without`` terms holds in the image of each of ``rows`` (with ``image_id``), each
        tested from the image's own rows."""
        return [sa.not_(sa.exists(self.held_cells(other, rows))) for other in without]

    def with_terms(self, specs: list[Spec], page: sa.Subquery, total: sa.ColumnElement,
                   alone: bool | None = None) -> sa.Select:
        """The statement of a ranked ``page``: its rows, each term's score and cells, the total. ``alone``: the
        page's score is its one term's (by default where there is one term; not so for ``face AND face``)."""
        # The page's cells once it is cut, not for every candidate tied at its last score.
        reported, alone = [], len(specs) == 1 if alone is None else alone
        for spec in specs:
            cells = self.held_cells(spec, page, values=not alone).subquery(f"cells_{spec.number}")
            mask = sa.select(sa.func.sum(sa.literal(1).bitwise_lshift(cells.c.cell))).scalar_subquery()
            if alone:
                reported += [page.c.score.label(f"score_{spec.number}"), mask.label(f"mask_{spec.number}")]
            else:  # each term's own confidence in its best cell, NULL where it does not hold
                value = sa.select(self.confidence(sa.func.max(cells.c.value), spec)).scalar_subquery()
                reported += [value.label(f"score_{spec.number}"), mask.label(f"mask_{spec.number}")]
        return (
            sa.select(*image_columns(page), page.c.score, *reported, total.label("total"))
            .order_by(sa.desc(page.c.score), bytewise(page.c.path, self.dialect))
        )

    def streams(self, specs: list[Spec]) -> list[tuple[Spec, Callable[[sa.ColumnElement], sa.Select]]] | None:
        """Each term's rows as streams an index hands over in score order, one row per image in each: a class
        in each of its cells, or a detector's class anywhere from the image labels; each a function of the
        lowest score to read (None: the term's threshold) giving (image_id, s). None where a term has no such
        rows (several classes summed, text) or none can hold."""
        il, cl = self.t.image_labels, self.t.cell_labels
        found = []
        for spec in specs:
            if len(spec.classes) != 1 or spec.is_text:
                return None
            if spec.evidence == float("inf"):  # a threshold above 1: it holds nowhere
                continue
            class_id = spec.classes[0]
            if read_as_stored(class_id) and spec.cells == ALL_CELLS and spec.evidence >= SCORE_FLOOR:
                sources = [(il, [il.c.class_id == class_id])]
            else:
                sources = [(cl, [cl.c.class_id == class_id, cl.c.cell == cell]) for cell in spec.cells]
            for table, where in sources:
                found.append((spec, functools.partial(self.stream, spec, table, where)))
        return found or None

    def stream(self, spec: Spec, table: sa.Table, where: list[sa.ColumnElement],
               floor: sa.ColumnElement | None = None) -> sa.Select:
        """One of `streams`: the rows of ``table`` meeting ``where`` where ``spec`` holds, from ``floor`` up
        if given (one lower bound for the index's range: the threshold is then tested beside it)."""
        score = table.c.score
        if floor is None:
            return sa.select(table.c.image_id, score.label("s")).where(*where, self.reaches(score, spec))
        return sa.select(table.c.image_id, score.label("s")).where(*where, score >= floor,
                                                                    self.reaches(score + 0, spec))

    def ranked_streams(self, specs: list[Spec], streams: list[tuple[Spec, Callable[..., sa.Select]]], plan: str,
                       limit: int, offset: int, without: list[Spec]) -> CompiledQuery:
        """`ranked` for terms of one class each, whose images may be too many to group or count them all
        (``person in the bottom row``: 354,000 photos at 1M, 587 ms). Each stream (a class in a cell) holds
        k = offset + limit distinct images scoring at least its k-th best, so the page's last score is at
        least the best of the streams' k-th confidences: only the rows reaching that cut are grouped per image
        and ranked. The count reads distinct images off the streams and stops past `COUNT_LIMIT` or the
        page's end (then the total is "more than" that). Images where a ``without`` term holds are left out
        of each as it is read, each tested from its own rows (`mostly_kept`)."""
        images = self.t.images
        excluded = sa.select(images.c.image_id).where(unlabelled(images))
        start = sa.bindparam(PAGE_OFFSET, offset, type_=sa.Integer)

        def kept(rows: sa.FromClause) -> list[sa.ColumnElement]:
            """The image of each of ``rows`` may match: labelled, and left by the ``without`` terms."""
            return [rows.c.image_id.not_in(excluded), *self.left_by(without, rows)]

        kths = []
        for number, (spec, stream) in enumerate(streams):
            read = stream().subquery(f"stream_{number}")
            kths.append(sa.select(read.c.s).where(*kept(read)).order_by(sa.desc(read.c.s))
                        .limit(1).offset(start + (limit - 1)).scalar_subquery().label(f"kth_{number}"))
        # Each read once (the curve repeats its argument): the streams' k-th values, then the cut and each
        # stream's evidence for it (a hair below, for the rounding of the inverse).
        kth = sa.select(*kths).cte("kth").prefix_with("MATERIALIZED")
        cuts = [sa.func.coalesce(self.confidence(kth.c[f"kth_{n}"], spec), -1.0) for n, (spec, _) in enumerate(streams)]
        cut = sa.select((cuts[0] if len(cuts) == 1 else self.greatest(*cuts)).label("cut")).cte("cut").prefix_with("MATERIALIZED")
        floors = {spec.number: self.greatest(spec.evidence, cut.c.cut if spec.confidences else
                                             evidence_of(self.calibration, cut.c.cut, spec.model_classes)
                                             * (1 - 1e-9) - 1e-12)
                  for spec in dict.fromkeys(spec for spec, _ in streams)}
        floor = sa.select(cut.c.cut, *(value.label(f"floor_{number}") for number, value in floors.items()))
        floor = floor.cte("floor").prefix_with("MATERIALIZED")
        least = sa.select(floor.c.cut).scalar_subquery()
        reached = []
        for spec, stream in streams:
            # The index's range from the cut's evidence up, then the cut itself on the confidence.
            rows = stream(sa.select(floor.c[f"floor_{spec.number}"]).scalar_subquery()).subquery()
            value = self.confidence(rows.c.s, spec)
            reached.append(sa.select(rows.c.image_id, value.label("best")).where(value >= least))
        either = sa.union_all(*reached).subquery("reached") if len(reached) > 1 else reached[0].subquery("reached")
        candidates = (sa.select(either.c.image_id, sa.func.max(either.c.best).label("best"))
                      .group_by(either.c.image_id).subquery("candidates"))
        page = (
            sa.select(*image_columns(images), candidates.c.best.label("score"))
            .select_from(candidates.join(images, images.c.image_id == candidates.c.image_id))
            .where(labelled(images), *self.left_by(without, candidates))
            .order_by(sa.desc("score"), bytewise(images.c.path, self.dialect))
            .limit(limit)
            .offset(start)
            .subquery("page")
        )
        ids = sa.union_all(*(stream() for _, stream in streams)) if len(streams) > 1 else streams[0][1]()
        ids = ids.subquery("ids")
        stop = self.greatest(sa.literal(COUNT_LIMIT), start + limit) + 1
        first = sa.select(ids.c.image_id).where(*kept(ids)).distinct().limit(stop).subquery("first_matches")
        total = sa.select(sa.func.count()).select_from(first).scalar_subquery()
        if without:
            named = ", ".join(str(s.number) for s in without)
            plan += f", less the images where {f'terms {named} hold' if len(without) > 1 else f'term {named} holds'}"
        plan += (f"; ranked from the rows reaching the best of {len(streams)} streams' page-end scores; images read "
                 f"for those only; matches counted up to {max(COUNT_LIMIT, offset + limit):,}")
        return CompiledQuery(self.with_terms(specs, page, total), self.specs, plan, self.calibration,
                             max(COUNT_LIMIT, offset + limit), self.fusion, offset_parameter=PAGE_OFFSET,
                             counted_page=limit)

    def filter_by_path(self, limit: int | None, offset: int) -> CompiledQuery:
        """Shape 5 of the module docstring: NOT terms only, so every match scores 1 and they list by path."""
        images = self.t.images
        plan = ("no driving term, nothing to rank by: images in path order, each tested against its own rows "
                "until the page is full")
        if limit is None:  # every match is read anyway
            total, count_limit = sa.func.count().over(), None
        else:
            count_limit = max(COUNT_LIMIT, offset + limit)
            counted = images.alias("counted")
            first = (
                sa.select(counted.c.image_id)
                .where(self.admitted(counted), self.condition(self.tree, counted))
                .limit(count_limit + 1)
                .subquery("first_matches")
            )
            total = sa.select(sa.func.count()).select_from(first).scalar_subquery()
            plan += f"; matches counted up to {count_limit:,}"
        ordered = self.in_path_order(images) if self.sort == SORT_SCORE else images
        by_date = order_by_date(ordered, self.sort) if self.sort != SORT_SCORE else []
        statement = (
            sa.select(*image_columns(ordered), sa.literal(1.0).label("score"), total.label("total"))
            .where(self.admitted(ordered), self.condition(self.tree, ordered))
            .order_by(*by_date, bytewise(ordered.c.path, self.dialect))
            .limit(limit)
            .offset(offset or None)
        )
        return CompiledQuery(statement, self.specs, plan, self.calibration, count_limit, self.fusion)

    def in_path_order(self, images: sa.Table) -> sa.FromClause:
        """``images`` to be read in path order and tested one by one until a page is full. SQLite reads them
        so from the index on path. PostgreSQL's index on path follows the database's collation, not the
        bytes, so it would test every image and then sort the matches: it gets the images sorted behind
        "OFFSET 0" (which keeps the tests above the sort), and tests them only until the page is full."""
        if self.dialect != "postgresql":
            return images
        by_path = sa.select(images).order_by(bytewise(images.c.path, self.dialect))
        return by_path.offset(sa.literal_column("0")).subquery("in_path_order")


def compile_query(
    tables: Tables,
    tree: Node,
    resolutions: dict[Term, Resolution],
    *,
    min_score: float = DEFAULT_MIN_SCORE,
    limit: int | None = 20,
    offset: int = 0,
    dialect: str = "sqlite",
    calibration: Calibration,
    within: Within | None = None,
    fusion: str = FUSION,
    sort: str = SORT_SCORE,
    count: Count | None = None,
    compounds: Compounds | None = None,
    photos: sa.ColumnElement | list[int] | None = None,
) -> CompiledQuery:
    """The one statement that answers ``tree`` on an index read with ``calibration``; ``limit=None`` returns
    every match; ``within`` restricts the images that may match (the page and the count alike); ``fusion``
    is the `fuse` rule of terms of both kinds; ``sort`` orders the matches by score or by date taken
    (`query.dates.SORTS`: undated photos last); ``count`` runs the counts that choose the driving terms
    (`_and_drive`; without it they are chosen from the query alone); ``compounds`` are those the index's rows
    hold (`query.compounds.stored`), read in place of their classes. The answer is the same either way.
    ``photos`` (a list of image ids, or an expanding parameter of them) makes it the statement of those photos'
    rows alone, every term computed per photo: a page ranked elsewhere (`query.runs`)."""
    compiler = _Compiler(tables, tree, resolutions, min_score, dialect, calibration, within, fusion, sort, count,
                         compounds)
    return compiler.compile(limit, offset, photos)
