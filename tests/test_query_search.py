"""Queries against real indexes, in SQLite and in PostgreSQL: semantics, ranking, paging, one bound
statement, the plan, and a differential test of the compiled SQL against a brute-force evaluator on random
indexes and queries."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.labels import FACE_CLASS
from indexer.store import tables
from query import browse, render
from query import compile as compile_module
from query.parser import And, QueryError, parse
from query.resolve import resolve
from query.search import execute, explain, prepare
from query.search import search as _search
from query_helpers import (
    BEAGLE, CHIHUAHUA, CRANE_BIRD, CRANE_MACHINE, EGYPTIAN_CAT, FLOWERPOT, GOLDEN_RETRIEVER, LABRADOR, SCHOOL_BUS,
    TABBY, TIGER_CAT, cells_where, holds, make_index, score,
)

#: The scores below are laid out around this threshold, whatever the product's default is.
FIXTURE_MIN_SCORE = 0.2


def search(*args, **kwargs):
    return _search(*args, **{"min_score": FIXTURE_MIN_SCORE, **kwargs})


IMAGES = {
    "/p/a_bus_and_pot.jpg": {4: {SCHOOL_BUS: 0.8}, 0: {FLOWERPOT: 0.5}},
    "/p/b_bus.jpg": {4: {SCHOOL_BUS: 0.6}, 5: {SCHOOL_BUS: 0.3}},
    "/p/c_pot.jpg": {0: {FLOWERPOT: 0.7}},
    "/p/d_dog_breeds.jpg": {4: {GOLDEN_RETRIEVER: 0.12, LABRADOR: 0.1, BEAGLE: 0.05, FLOWERPOT: 0.3}},
    "/p/e_cat_left_dog_right.jpg": {3: {TABBY: 0.6}, 5: {BEAGLE: 0.7}},
    "/p/f_cat_above_dog.jpg": {1: {TABBY: 0.5}, 7: {LABRADOR: 0.5}},
    "/p/g_cat_diagonal_dog.jpg": {0: {TIGER_CAT: 0.4}, 4: {CHIHUAHUA: 0.4}},
    "/p/h_bus_half.jpg": {4: {SCHOOL_BUS: 0.5}},
    "/p/i_crane_machine.jpg": {8: {CRANE_MACHINE: 0.9}},
    "/p/j_crane_bird.jpg": {2: {CRANE_BIRD: 0.9}, 6: {EGYPTIAN_CAT: 0.25}},
    "/p/k_bus_faint.jpg": {4: {SCHOOL_BUS: 0.1}},
    "/p/l_failed.jpg": None,
    "/p/m_nothing.jpg": {},
}


@pytest.fixture(scope="module")
def engine(new_index_url):
    engine = make_index(new_index_url(), IMAGES)
    yield engine
    engine.dispose()


def names(engine, query: str, **kw) -> list[str]:
    return [m.path.rsplit("/", 1)[1].split("_", 1)[0] for m in search(engine, query, limit=None, **kw).matches]


def test_term_in_region(engine):
    assert names(engine, "school bus in center") == ["a", "b", "h"]
    assert names(engine, "school bus in the middle row") == ["a", "b", "h"]
    assert names(engine, "school bus center-right") == ["b"]
    assert names(engine, "flower pot top-left") == ["c", "a"]


def test_term_reports_best_score_and_cells(engine):
    (b,) = [m for m in search(engine, "school bus").matches if m.path.endswith("b_bus.jpg")]
    (hit,) = b.terms
    assert hit.score == pytest.approx(0.6) and hit.cells == ("center", "center-right")
    assert b.score == pytest.approx(0.6) and (b.width, b.height) == (640, 480)


def test_hierarchy_term_sums_its_classes_per_cell(engine):
    result = search(engine, "dog in center")
    by_name = {m.path.rsplit("/", 1)[1][0]: m for m in result.matches}
    assert set(by_name) == {"d", "g"}  # d: 0.12 + 0.10 + 0.05 = 0.27 although every breed is below 0.2
    assert by_name["d"].terms[0].score == pytest.approx(0.27)
    assert names(engine, "golden retriever in center") == []


def test_thresholds(engine):
    assert names(engine, "school bus in center > 0.5") == ["a", "b"]
    assert names(engine, "school bus in center >= 0.5") == ["a", "b", "h"]
    assert names(engine, "school bus in center", min_score=0.05) == ["a", "b", "h", "k"]
    assert names(engine, "school bus in center > 5%") == ["a", "b", "h", "k"]
    assert names(engine, "school bus in center", min_score=0.7) == ["a"]
    assert names(engine, "school bus in center > 0.55", min_score=0.7) == ["a", "b"]  # a term's own wins


def test_boolean_operators(engine):
    assert names(engine, "school bus in center AND flower pot top-left") == ["a"]
    assert set(names(engine, "school bus in center OR flower pot top-left")) == {"a", "b", "c", "h"}
    assert names(engine, "school bus in center AND NOT flower pot") == ["b", "h"]
    assert set(names(engine, "(cat OR dog) AND NOT dog in center")) == {"e", "f", "j"}


def test_not_alone_covers_every_indexed_image_but_failed_ones(engine):
    assert set(names(engine, "NOT school bus")) == {"c", "d", "e", "f", "g", "i", "j", "k", "m"}
    assert names(engine, "NOT NOT crane") == ["i", "j"]


def test_ambiguous_label_matches_all_senses(engine):
    assert names(engine, "crane") == ["i", "j"]
    assert names(engine, "n03126707") == ["i"]
    prepared = prepare(engine, "crane AND cat")
    assert prepared.notes() == [
        "'crane' is ambiguous and matches all of: class 134 crane (n02012849); class 517 crane (n03126707) "
        "(use a WordNet id to pick one)"
    ]


@pytest.mark.parametrize(
    "query, expected",
    [
        ("cat left of dog", ["e", "g"]),  # e: column 0 vs 2; g: column 0 vs 1; f: same column
        ("dog left of cat", []),
        ("dog right of cat", ["e", "g"]),
        ("cat above dog", ["f", "g"]),  # f: row 0 vs 2; g: row 0 vs 1; e: same row
        ("dog below cat", ["f", "g"]),
        ("cat below dog", []),
        ("cat next to dog", ["g"]),  # g: diagonal neighbours; e and f are two cells apart
        ("dog next to dog", ["d", "e", "f", "g"]),  # the same cell counts
        ("cat in the left column left of dog", ["e", "g"]),
        ("cat in the top row left of dog", ["g"]),
    ],
)
def test_relations(engine, query, expected):
    assert sorted(names(engine, query)) == expected


def test_ranking_multiplies_and_takes_best_or(engine):
    result = search(engine, "school bus in center AND flower pot top-left")
    assert result.matches[0].score == pytest.approx(0.8 * 0.5)
    result = search(engine, "crane OR school bus")
    assert [round(m.score, 6) for m in result.matches] == [0.9, 0.9, 0.8, 0.6, 0.5]
    assert [m.path for m in result.matches][:2] == ["/p/i_crane_machine.jpg", "/p/j_crane_bird.jpg"]  # tie: by path
    assert search(engine, "school bus in center AND NOT crane").matches[0].score == pytest.approx(0.8)


def test_or_reports_the_branch_that_matched(engine):
    result = search(engine, "crane OR flower pot")
    top = {m.path: [(h.score is not None, h.cells) for h in m.terms] for m in result.matches}
    assert top["/p/c_pot.jpg"] == [(False, ()), (True, ("top-left",))]
    assert top["/p/i_crane_machine.jpg"] == [(True, ("bottom-right",)), (False, ())]


def test_negated_terms_are_not_reported(engine):
    result = search(engine, "school bus AND NOT flower pot")
    assert [spec.describe() for spec in result.prepared.compiled.reported] == ["school bus >= 0.2"]
    assert all(len(m.terms) == 1 for m in result.matches)


def test_repeated_term_is_computed_once(engine):
    result = search(engine, "dog left of cat OR dog above cat")
    assert len(result.prepared.compiled.specs) == 2


def test_limit_offset_total(engine):
    everything = names(engine, "NOT school bus")
    page = search(engine, "NOT school bus", limit=3, offset=2)
    assert [m.path.rsplit("/", 1)[1].split("_")[0] for m in page.matches] == everything[2:5]
    assert [m.rank for m in page.matches] == [3, 4, 5] and page.total == len(everything)
    assert search(engine, "NOT school bus", limit=0).total == len(everything)
    past = search(engine, "NOT school bus", limit=3, offset=50)
    assert past.matches == [] and past.total is None
    none = search(engine, "school bus > 0.99")
    assert none.matches == [] and none.total == 0


def test_bad_min_score_is_a_query_error(engine):
    with pytest.raises(QueryError, match="minimum score lies between 0 and 1"):
        prepare(engine, "dog", min_score=1.5)


# ------------------------------------------------------------------------- one statement, bound

def test_one_statement_with_bound_parameters(engine):
    prepared = prepare(engine, "school bus in center > 0.37 AND dog top-left OR NOT crane left of cat")
    statements = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        execute(engine, prepared)
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    # The query, then the boxes of its detector classes among the matches (dog and cat: COCO's too).
    assert len(statements) == 2 and "FROM boxes" in statements[1][0]
    sql, params = statements[0]
    values = list(params.values()) if isinstance(params, dict) else list(params)  # psycopg binds by name
    assert "0.37" not in sql and "779" not in sql and "207" not in sql
    assert 0.37 in values and 779 in values and 207 in values


def _plan(engine, query: str) -> list[str]:
    """The database's plan, one step a line; PostgreSQL's as if its tables were big (no sequential scans
    where an index serves, which on this tiny index it would otherwise prefer)."""
    sql = prepare(engine, query).statement.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True})
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            return [row[3] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")]
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        return [line.strip().removeprefix("-> ") for (line,) in conn.exec_driver_sql(f"EXPLAIN {sql}")]


@pytest.mark.parametrize(
    "query",
    ["school bus in center AND flower pot top-left", "dog in center AND flower pot top-left", "school bus OR crane",
     "cat left of dog", "dog AND cat"],
)
@pytest.mark.usefixtures("statement_only")
def test_plans_never_scan_cell_labels(engine, query):
    plan = _plan(engine, query)
    assert not [step for step in plan if step.startswith(("SCAN cell_labels", "Seq Scan on cell_labels"))], plan
    assert any("cell_labels_class_cell" in step for step in plan), plan


@pytest.mark.usefixtures("statement_only")
def test_plan_shapes(engine):
    assert prepare(engine, "school bus in center AND flower pot top-left").compiled.plan.startswith(
        "candidates: images common to terms 1, 2"
    )
    assert prepare(engine, "dog in center AND flower pot top-left", min_score=0.2).compiled.plan == (
        "candidates: images of term 2 (flower pot in top-left >= 0.2); term 2 read from the class index; "
        "term 1 computed per candidate"
    )
    assert prepare(engine, "NOT dog").compiled.plan.startswith("no driving term")


# --------------------------------------------------------------------------- against an oracle

POOL = [GOLDEN_RETRIEVER, LABRADOR, BEAGLE, CHIHUAHUA, TABBY, TIGER_CAT, EGYPTIAN_CAT, 286, SCHOOL_BUS, 654,
        FLOWERPOT, CRANE_BIRD, CRANE_MACHINE, 0, FACE_CLASS]


def _random_images(seed: int, n: int) -> dict:
    rng = random.Random(seed)
    images = {}
    for i in range(n):
        cells = {}
        for cell in range(9):
            chosen = rng.sample(POOL, rng.choice((0, 0, 1, 2, 3, 4)))
            scores = [rng.choice((0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 0.7)) for _ in chosen]
            total = sum(scores)
            cells[cell] = {c: round(s / max(1.0, total), 3) for c, s in zip(chosen, scores)}
        images[f"/r/{i:03d}.jpg"] = None if rng.random() < 0.05 else cells
    return images


RANDOM_IMAGES = _random_images(3, 90)


@pytest.fixture(scope="module")
def random_engine(new_index_url):
    engine = make_index(new_index_url(), RANDOM_IMAGES)
    yield engine, tables(engine)
    engine.dispose()


_LABEL = st.sampled_from(["dog", "cat", "school bus", "bus", "flowerpot", "pot", "crane", "tabby", "beagle", "tench",
                          "domestic cat", "n02012849", "face"])
_REGION = st.sampled_from(["", " in center", " top-left", " in the top row", " on the left", " bottom right",
                           " middle column", " corners"])
_THRESHOLD = st.sampled_from(["", "", " > 0.25", " >= 0.1", " > 0.5"])
_TERM = st.builds(lambda l, r, t: l + r + t, _LABEL, _REGION, _THRESHOLD)
_QUERY = st.recursive(
    _TERM,
    lambda inner: st.one_of(
        st.builds(lambda a, op, b: f"({a} {op} {b})", inner, st.sampled_from(["AND", "OR"]), inner),
        st.builds(lambda a: f"NOT ({a})", inner),
        st.builds(lambda a, rel, b: f"{a} {rel} {b}", _TERM,
                  st.sampled_from(["left of", "right of", "above", "below", "next to"]), _TERM),
    ),
    max_leaves=5,
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=_QUERY, min_score=st.sampled_from([0.2, 0.1, 0.3]))
def test_sql_agrees_with_brute_force(random_engine, query, min_score):
    engine, t = random_engine
    result = search(engine, query, min_score=min_score, limit=None, tables=t)
    tree, found = resolve(parse(query), query)
    expected = {
        path: score(tree, found, cells, min_score)
        for path, cells in RANDOM_IMAGES.items()
        if cells is not None and holds(tree, found, cells, min_score)
    }
    got = {m.path: m.score for m in result.matches}
    assert set(got) == set(expected)
    assert result.total == len(expected)
    for path, value in got.items():
        assert value == pytest.approx(expected[path], abs=1e-9)
    ordered = [(-m.score, m.path) for m in result.matches]
    assert all(a[0] <= b[0] + 1e-9 for a, b in zip(ordered, ordered[1:]))


@settings(max_examples=240, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=_TERM, second=_TERM, joined=st.sampled_from(["AND", "left of", "right of", "above", "below", "next to"]),
       min_score=st.sampled_from([0.2, 0.1, 0.3]), offset=st.sampled_from([0, 2, 7]))
def test_a_page_of_two_terms_and_their_count_agree_with_brute_force(random_engine, first, second, joined, min_score,
                                                                    offset):
    """An AND or a relation of two terms with a page: on SQLite its terms of one class are intersected from the
    class runs (`query.runs`), every other from the statement."""
    engine, t = random_engine
    query = f"{first} {joined} {second}"
    result = search(engine, query, min_score=min_score, limit=5, offset=offset, tables=t)
    tree, found = resolve(parse(query), query)
    expected = {path: score(tree, found, cells, min_score) for path, cells in RANDOM_IMAGES.items()
                if cells is not None and holds(tree, found, cells, min_score)}
    best = sorted(expected.values(), reverse=True)[offset:offset + 5]
    # the page's scores are the best from the offset; a photo's is its own (sums tie only up to rounding)
    assert [m.score for m in result.matches] == pytest.approx(best, abs=1e-9)
    assert all(m.score == pytest.approx(expected[m.path], abs=1e-9) for m in result.matches)
    assert len({m.path for m in result.matches}) == len(result.matches)
    assert result.total == (len(expected) if best or not offset else None)
    reported = {s.term: s for s in result.prepared.compiled.reported}
    for m in result.matches:
        for hit in m.terms:
            mask = cells_where(hit.spec.term, found[hit.spec.term], RANDOM_IMAGES[m.path], min_score)
            assert sum(1 << ["top-left", "top-center", "top-right", "center-left", "center", "center-right",
                             "bottom-left", "bottom-center", "bottom-right"].index(c) for c in hit.cells) == mask
    assert len(reported) == len(result.prepared.compiled.reported)


_ONE_LABEL = st.builds(lambda l, r, t: l + r + t,
                       st.sampled_from(["dog", "cat", "tabby", "crane", "face", "n02012849"]), _REGION, _THRESHOLD)
#: One term or an OR of terms, alone or less others (``(tabby OR crane) AND NOT dog in center``):
#: `_Compiler.ranked_shape`.
_ONE_TERM = st.builds(lambda terms, nots: " AND ".join([f"({' OR '.join(terms)})" if len(terms) > 1 else terms[0]]
                                                       + [f"NOT {n}" for n in nots]),
                      st.lists(_ONE_LABEL, min_size=1, max_size=3), st.lists(_ONE_LABEL, max_size=2))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=_ONE_TERM, min_score=st.sampled_from([0.2, 0.1, 0.001]), limit=st.sampled_from([1, 3, 20]),
       offset=st.sampled_from([0, 2, 9, 200]))
def test_a_page_of_one_term_is_the_page_of_every_match(random_engine, query, min_score, limit, offset):
    """The ranked shape (`_Compiler.ranked`: one term or an OR of terms, AND NOT others) cuts the page before
    reading the images and counts without them: the same page (order, scores, each term's cells) and total as
    the general statement (taken under a restriction that restricts nothing), and the brute force's matches."""
    engine, t = random_engine
    fast = search(engine, query, min_score=min_score, limit=limit, offset=offset, tables=t)
    general = search(engine, query, min_score=min_score, limit=limit, offset=offset, tables=t,
                     within=lambda images: sa.true())
    tree, found = resolve(parse(query), query)
    kept, *negated = [getattr(child, "child", child) for child in (tree.children if isinstance(tree, And) else (tree,))]
    ranked = getattr(kept, "children", (kept,))

    def key(term):  # what makes two terms one (`_Compiler._collect`)
        return (found[term].classes, term.region.cells, min_score if term.threshold is None else term.threshold,
                term.strict and term.threshold is not None)

    pivot = ({key(term) for term in ranked} & {key(term) for term in negated}
             or any(len(found[term].classes) > 1 for term in negated))
    shape = "one term" if len({key(term) for term in ranked}) == 1 else "terms "
    assert fast.prepared.compiled.plan.startswith(shape) is not bool(pivot)  # a term AND NOT itself, or a group
    assert general.prepared.compiled.plan.startswith("candidates")

    def page(result):
        return [(m.rank, m.path, [h.cells for h in m.terms]) for m in result.matches], result.total

    def scores(result):  # a label of several classes sums their evidence in the order each plan reads the rows
        return [value for m in result.matches for value in (m.score, *(h.score for h in m.terms))]

    assert page(fast) == page(general)
    assert scores(fast) == pytest.approx(scores(general), abs=1e-12)  # PostgreSQL: 0.963, 0.9630000000000001
    expected = {path for path, cells in RANDOM_IMAGES.items()
                if cells is not None and holds(tree, found, cells, min_score)}
    assert fast.total == (len(expected) if offset < len(expected) else None if offset else 0)  # None: past the end
    assert {m.path for m in fast.matches} <= expected
    assert len(fast.matches) == max(0, min(limit, len(expected) - offset))


@pytest.mark.parametrize("query", ["face", "tabby", "tabby in the top row", "tabby OR flowerpot",
                                   "tabby in corners OR face in center",
                                   "flowerpot on the left OR tabby OR n02012849 bottom right"])
def test_a_broad_ranked_query_counts_up_to_a_limit(random_engine, monkeypatch, query):
    """Terms of one class each (one, or an OR of them; a detector's class anywhere is one stream, another class
    one per cell) rank only the rows reaching the best of their streams' page-end scores
    (`_Compiler.ranked_streams`) and count up to `COUNT_LIMIT` or the page's end: the same pages as the
    general statement at every offset (and scrolled on with `at_offset`), and the total "more than" the
    limit where there are more."""
    engine, t = random_engine
    monkeypatch.setattr(compile_module, "COUNT_LIMIT", 5)
    first = prepare(engine, query, limit=3, offset=0, tables=t, min_score=FIXTURE_MIN_SCORE)
    assert "streams' page-end scores" in first.compiled.plan and "matches counted up to 5" in first.compiled.plan
    everything = search(engine, query, limit=None, tables=t)
    assert everything.total > 8  # the limit is reached, and pages run past it
    for offset in (0, 2, 4, 6, everything.total - 1):
        fast = search(engine, query, limit=3, offset=offset, tables=t)
        scrolled = execute(engine, replace(first, compiled=first.compiled.at_offset(offset), offset=offset))
        general = search(engine, query, limit=3, offset=offset, tables=t, within=lambda images: sa.true())
        assert general.prepared.compiled.plan.startswith("candidates")

        def page(result):
            return [(m.rank, m.path, m.score, [(h.score, h.cells) for h in m.terms]) for m in result.matches]

        limit = max(5, offset + 3)
        for result in (fast, scrolled):
            assert page(result) == page(general) == page(everything)[offset:offset + 3]
            assert (result.total, result.counted) == ((limit, False) if everything.total > limit
                                                      else (everything.total, True)), offset


def test_one_term_leaves_out_photos_waiting_to_be_redone(tmp_path):
    """A photo marked for ``--reindex`` (model NULL) keeps its rows until it is redone; the count and the page
    of one term leave it out as every query does, through the partial index made for it."""
    photos = {f"/p/{i}.jpg": {4: {FACE_CLASS: 0.9 - i / 100, TABBY: 0.8}} for i in range(6)}
    engine = make_index(str(tmp_path / "i.db"), photos)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE images SET model = NULL WHERE path IN ('/p/0.jpg', '/p/3.jpg')"))
    for query in ("face", "tabby", "face in center", "tabby in the middle column"):
        result = search(engine, query, limit=2, offset=1)
        assert result.prepared.compiled.plan.startswith("one term"), query
        assert ([m.path for m in result.matches], result.total) == (["/p/2.jpg", "/p/4.jpg"] if "face" in query
                                                                    else ["/p/2.jpg", "/p/4.jpg"], 4), query
    with engine.connect() as conn:
        plan = explain(conn, prepare(conn, "face", limit=2))
    engine.dispose()
    assert "USING INDEX images_unlabelled" in plan


@pytest.mark.usefixtures("statement_only")
def test_random_queries_reach_every_plan_shape(random_engine):
    engine, t = random_engine
    queries = ["dog", "dog AND NOT tabby", "dog AND NOT crane left of tabby", "tabby AND flowerpot", "tabby OR crane",
               "tabby OR crane left of flowerpot", "NOT dog", "tabby AND NOT dog"]
    plans = {q: prepare(engine, q, tables=t).compiled.plan for q in queries}
    assert plans["dog"].startswith("one term: the best of its cells")
    assert plans["dog AND NOT tabby"].startswith("one term: the best of its cells, from the class index per image, "
                                                 "less the images of term 2")
    assert plans["tabby AND NOT dog"].startswith("candidates: images of term 1")  # dog: 118 classes, looked up
    assert plans["dog AND NOT crane left of tabby"].startswith("candidates: images of term 1")
    assert plans["tabby AND flowerpot"].startswith("candidates: images common to terms 1, 2")
    assert plans["tabby OR crane"].startswith("terms 1, 2 in an OR: the best confidence of each per image")
    assert plans["tabby OR crane left of flowerpot"].startswith("candidates: images of any of terms 1, ")
    assert plans["NOT dog"].startswith("no driving term")


def test_statement_compiles_for_postgresql(engine):
    """schema.sql is meant to run on PostgreSQL too: nothing SQLite-only in the statement but max()."""
    from sqlalchemy.dialects import postgresql

    from indexer.calibration import for_model
    from query.compile import compile_query

    query = "(crane OR dog in center > 0.5) AND NOT cat left of flower pot OR NOT school bus"
    tree, found = resolve(parse(query), query)
    compiled = compile_query(
        tables(engine), tree, found, dialect="postgresql", calibration=for_model("efficientnet-lite0")
    )
    sql = str(compiled.statement.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    assert "greatest(" in sql and "max(CASE" in sql and "count(*) OVER ()" in sql
    assert " << " in sql and " & " in sql and " | " in sql


def test_images_waiting_to_be_reindexed_match_nothing(index_url):
    """After `imgidx index --reindex` drops old labels, a not-yet-redone image (model NULL) is no match."""
    engine = make_index(index_url, IMAGES)
    before = set(names(engine, "NOT school bus"))
    t = tables(engine)
    with engine.begin() as conn:
        conn.execute(t.images.update().where(t.images.c.path == "/p/c_pot.jpg").values(model=None))
    assert "c" in before and set(names(engine, "NOT school bus")) == before - {"c"}
    engine.dispose()


def test_ties_list_by_the_bytes_of_their_paths(index_url):
    """As SQLite compares text, whatever the PostgreSQL database's collation (en-US would put "a_b" first)."""
    paths = ["/t/b.jpg", "/t/B.jpg", "/t/a_b.jpg", "/t/a-c.jpg", "/t/ab.jpg", "/t/Ab.jpg"]
    engine = make_index(index_url, {path: {4: {SCHOOL_BUS: 0.5}} for path in paths})
    assert [m.path for m in search(engine, "school bus", limit=None).matches] == sorted(paths)
    assert [m.path for m in search(engine, "school bus", limit=2, offset=2).matches] == sorted(paths)[2:4]
    engine.dispose()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=_QUERY, limit=st.sampled_from([1, 3, 8]), offset=st.sampled_from([0, 2, 5, 60]))
def test_not_only_queries_page_through_their_matches_by_path(random_engine, query, limit, offset):
    """Nothing to rank by: every match scores 1, in path order, and a page is that list's slice."""
    engine, t = random_engine
    query = f"NOT ({query})"
    result = search(engine, query, limit=limit, offset=offset, tables=t)
    assert result.prepared.compiled.plan.startswith("no driving term, nothing to rank by")
    tree, found = resolve(parse(query), query)
    expected = sorted(path for path, cells in RANDOM_IMAGES.items()
                      if cells is not None and holds(tree, found, cells, FIXTURE_MIN_SCORE))
    page = expected[offset : offset + limit]
    assert [m.path for m in result.matches] == page
    assert [m.rank for m in result.matches] == list(range(offset + 1, offset + 1 + len(page)))
    assert all(m.score == 1.0 and m.terms == () for m in result.matches)
    assert (result.total, result.counted) == (len(expected) if page or not offset else None, True)


def test_a_not_only_count_stops_past_its_limit(engine, monkeypatch):
    monkeypatch.setattr(compile_module, "COUNT_LIMIT", 3)
    everything = names(engine, "NOT school bus")
    assert len(everything) == 9  # all matches asked for: all counted
    first = search(engine, "NOT school bus", limit=2)
    assert (first.total, first.counted) == (3, False)
    assert render.summary(first) == "matches 1-2 of more than 3 (next page: --offset 2)"
    later = search(engine, "NOT school bus", limit=2, offset=5)  # counted to the page's end, 7
    assert [m.path.rsplit("/", 1)[1].split("_", 1)[0] for m in later.matches] == everything[5:7]
    assert (later.total, later.counted) == (7, False)
    assert render.summary(later) == "matches 6-7 of more than 7 (next page: --offset 7)"
    last = search(engine, "NOT school bus", limit=5, offset=6)
    assert (last.total, last.counted, render.summary(last)) == (9, True, "matches 7-9 of 9")


def test_a_not_only_query_tests_images_in_path_order_until_the_page_is_full(engine):
    """SQLite reads images from the path index and stops at the page's end, with no sort of the matches;
    PostgreSQL sorts the images, then tests them as it reads them (the test is above the sort)."""
    prepared = prepare(engine, "NOT (dog OR cat left of flowerpot)", limit=5)
    text = explain(engine, prepared)
    if engine.dialect.name == "sqlite":
        plan = text.split("SQLite query plan:")[1]
        assert "SCAN images USING INDEX" in plan and "TEMP B-TREE" not in plan
    else:
        plan = [line.strip() for line in text.split("PostgreSQL query plan:")[1].splitlines()]
        scan = next(i for i, line in enumerate(plan) if "Subquery Scan on in_path_order" in line)
        assert plan[scan + 1].startswith("Filter: ") and "SubPlan" in plan[scan + 1], plan
        assert any(line.startswith("Sort Key: images.path") for line in plan[scan + 2 :]), plan


def test_a_restriction_holds_for_the_page_and_the_count(index_url):
    """`prepare`'s ``within`` (a folder) narrows both shapes of statement, count included."""
    engine = make_index(index_url, {
        **{f"/x/{i}.jpg": {4: {TABBY: 0.5}} for i in range(3)},
        "/x/bus.jpg": {4: {SCHOOL_BUS: 0.9}},
        **{f"/y/{i}.jpg": {4: {TABBY: 0.5}} for i in range(4)},
        "/y/bus.jpg": {4: {SCHOOL_BUS: 0.8}},
    })
    in_x = browse.in_folder("/x")
    page = search(engine, "NOT school bus", limit=2, offset=1, within=in_x)
    assert [m.path for m in page.matches] == ["/x/1.jpg", "/x/2.jpg"] and (page.total, page.counted) == (3, True)
    assert search(engine, "NOT school bus", limit=2).total == 7
    assert [m.path for m in search(engine, "school bus", within=in_x).matches] == ["/x/bus.jpg"]
    assert search(engine, "tabby OR NOT school bus", within=browse.in_folder("/y/")).total == 4
    engine.dispose()
