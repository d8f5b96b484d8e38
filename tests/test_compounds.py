"""Words of several classes stored as one (`query.compounds`): which words they are, that a stored row holds
the value a query computes, that queries answer the same from them as from the classes' rows, and that the
writer, a later run on an older index and a merge keep them."""

from __future__ import annotations

import math
import sqlite3

import pytest
from hypothesis import given, settings, strategies as st

from indexer import calibration, pipeline, store
from indexer.calibration import AS_STORED, FUSION
from indexer.labels import COMPOUND_BASE, FACE_CLASS, object_class
from indexer.store import IndexSettings, tables
from indexer.writer import derive_compounds
from query.compounds import COMPOUND_FLOOR, COMPOUNDS_KEY, compounds
from query.resolve import find
from query.search import execute, prepare
from tests.query_helpers import (
    BEAGLE, GOLDEN_RETRIEVER, LABRADOR, SCHOOL_BUS, TABBY, TIGER_CAT, make_index, random_images,
)

SETTINGS = IndexSettings("efficientnet-lite0", 448, "int8")
CALIBRATION = calibration.for_model(SETTINGS.model)
HELD = compounds(SETTINGS.objects, SETTINGS.calibration)
PERSON, DOG, CAT, CAR = (object_class(k) for k in (0, 16, 15, 2))
SCUBA_DIVER, GROOM, CAB, CONVERTIBLE = 983, 982, 468, 511
CLASSES = (FACE_CLASS, PERSON, SCUBA_DIVER, GROOM, DOG, GOLDEN_RETRIEVER, LABRADOR, BEAGLE, CAT, TABBY, TIGER_CAT,
           CAR, CAB, CONVERTIBLE, SCHOOL_BUS)
SCORES = (0.02, 0.1, 0.25, 0.4, 0.55, 0.8, 0.97)


def test_every_word_of_several_classes_is_a_compound_and_no_other():
    for word in ("person", "people", "dog", "dogs", "car", "cat", "vehicle", "animal", "tv", "bottle", "monkey"):
        resolution = find(word)
        rule = calibration.term_fusion(FUSION, resolution.grouped)
        assert HELD.class_of(resolution.classes, rule) is not None, word
    for word in ("beagle", "face", "school bus", "entity", "object"):  # one class, or nearly every class
        resolution = find(word)
        assert HELD.class_of(resolution.classes, calibration.term_fusion(FUSION, resolution.grouped)) is None, word
    assert all(c.class_id >= COMPOUND_BASE for c in HELD.items)
    assert HELD.digest != compounds(False, SETTINGS.calibration).digest  # without objects: another rule


cell_rows = st.lists(st.tuples(st.integers(0, 8), st.sampled_from(CLASSES), st.floats(0.005, 1.0)), max_size=40)


@settings(max_examples=60, deadline=None)
@given(cell_rows)
def test_a_compound_row_holds_the_confidence_of_its_classes_rows(rows):
    """For classifier classes alone and under the weighted rule, `Calibration.label_confidence` (what `show`
    reports) computes what the query does; the rule of WordNet groups reads detectors in evidence space (the
    query test below covers it)."""
    unique = {(cell, class_id): score for cell, class_id, score in rows}
    rows = [(cell, class_id, score) for (cell, class_id), score in unique.items()]
    whole, cells = HELD.derive(rows, CALIBRATION)
    by_cell: dict[int, dict[int, float]] = {}
    for cell, class_id, score in rows:
        by_cell.setdefault(cell, {})[class_id] = score
    expected_cells, expected_best = {}, {}
    weighted = {c.class_id for c in HELD.items if c.rule in ("weighted", None)}
    cells = [row for row in cells if row[1] in weighted]
    whole = [row for row in whole if row[0] in weighted]
    for compound in (c for c in HELD.items if c.class_id in weighted):
        for cell, scores in by_cell.items():
            value = CALIBRATION.label_confidence(scores, compound.classes, compound.rule)
            if value is None:
                continue
            expected_best[compound.class_id] = max(expected_best.get(compound.class_id, 0.0), value)
            if value >= COMPOUND_FLOOR:
                expected_cells[(cell, compound.class_id)] = value
    got = {(cell, class_id): value for cell, class_id, value in cells}
    assert got.keys() == expected_cells.keys()
    assert all(math.isclose(got[key], expected_cells[key], abs_tol=1e-12) for key in got)
    assert dict(whole).keys() == {k for k, v in expected_best.items() if v >= COMPOUND_FLOOR}
    assert all(math.isclose(v, expected_best[k], abs_tol=1e-12) for k, v in whole)


def _with_compounds(engine) -> None:
    t = tables(engine)
    with engine.begin() as conn:
        store.write_settings(conn, t, SETTINGS)
        store.add_classes(conn, t, HELD.class_rows())
        ids = [row[0] for row in conn.execute(t.images.select().with_only_columns(t.images.c.image_id))]
        derive_compounds(conn, t, ids, HELD, CALIBRATION)
        store.write_meta(conn, t, COMPOUNDS_KEY, HELD.digest)


@pytest.fixture(scope="module")
def indexes(new_index_url):
    """The same photos twice: with their compounds' rows, and (as an index from before them) without."""
    images = random_images(5, 90, {c: 0.5 if c in AS_STORED else 0.2 for c in CLASSES}, SCORES)
    held, plain = make_index(new_index_url(), images), make_index(new_index_url(), images)
    _with_compounds(held)
    with plain.begin() as conn:
        store.write_settings(conn, tables(plain), SETTINGS)
    yield held, plain
    held.dispose()
    plain.dispose()


QUERIES = (
    "person", "people in center", "dog", "dog in top row", "cat in bottom-left", "vehicle", "car in right column",
    "person left of dog", "dog above car", "person in top-left AND dog in center", "person AND tabby in center",
    "cat OR dog in center", "person AND NOT car", "dog AND NOT person in center", "person > 0.7", "dog >= 0.2",
    "animal in center AND face", "NOT person", "domestic cat in center", "car OR wheeled vehicle in top row",
)


def _answer(engine, query: str, min_score: float, limit: int | None, offset: int) -> tuple:
    prepared = prepare(engine, query, min_score=min_score, limit=limit, offset=offset)
    result = execute(engine, prepared)
    matches = [(m.rank, m.path, m.score, [(h.score, h.cells) for h in m.terms]) for m in result.matches]
    stored = any(c >= COMPOUND_BASE for spec in prepared.compiled.specs for c in spec.classes)
    return matches, result.total, stored


def _same(a: list, b: list) -> bool:
    close = lambda x, y: x is y is None or (x is not None and y is not None and math.isclose(x, y, abs_tol=1e-9))
    return len(a) == len(b) and all(
        (ra, pa, ca) == (rb, pb, cb) and close(sa, sb) and all(close(x, y) and u == v for (x, u), (y, v) in zip(ha, hb))
        for (ra, pa, sa, ha), (rb, pb, sb, hb) in zip(a, b)
        for ca, cb in [(len(ha), len(hb))]
    )


@pytest.mark.parametrize("min_score", [0.4, 0.15, 0.05])
def test_queries_answer_the_same_from_compounds_as_from_their_classes(indexes, min_score):
    held, plain = indexes
    used = 0
    for query in QUERIES:
        for limit, offset in ((None, 0), (4, 3)):
            matches, total, stored = _answer(held, query, min_score, limit, offset)
            expected, expected_total, plain_stored = _answer(plain, query, min_score, limit, offset)
            assert not plain_stored
            assert total == expected_total and _same(matches, expected), (query, min_score, limit, offset)
            used += stored
    # the compounds answered (``person > 0.7`` at any --min-score), where a threshold reaches their floor only
    assert used > 0
    for word in ("person", "domestic cat in center"):  # both kinds; the classifier's classes alone
        _, found, stored = _answer(held, word, min_score, None, 0)
        assert found > 0 and stored == (min_score >= COMPOUND_FLOOR), word


def test_labels_of_a_photo_leave_compounds_out(indexes):
    held, _ = indexes
    with held.connect() as conn:
        report = store.image_report(conn, "/d/001.jpg")
        stats = store.index_stats(conn)
        holds = conn.execute(store.tables(conn).cell_labels.select().where(
            store.tables(conn).cell_labels.c.class_id >= COMPOUND_BASE).limit(1)).first()
    assert holds is not None  # the photos hold compound rows, which what lists labels leaves out
    assert report.labels and all(label.class_id < COMPOUND_BASE for label in report.labels)
    assert all(label.class_id < COMPOUND_BASE for cell in report.cells for label in cell)
    assert stats.top_labels and all(class_id < COMPOUND_BASE for class_id, _, _ in stats.top_labels)


def _compound_rows(db) -> list:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT path, cell, class_id, round(score, 9) FROM cell_labels JOIN images USING (image_id) "
            "WHERE class_id >= ? ORDER BY 1, 2, 3", (COMPOUND_BASE,)).fetchall()


def test_an_older_index_gains_its_compounds_on_its_next_run_without_the_model(tmp_path):
    from tests.test_merge import build, photos

    db = build(tmp_path / "index.db", [photos(tmp_path / "photos", 4)])
    stored = _compound_rows(db)
    assert stored
    with sqlite3.connect(db) as conn:  # as an index from before compounds holds it
        conn.execute("DELETE FROM cell_labels WHERE class_id >= ?", (COMPOUND_BASE,))
        conn.execute("DELETE FROM image_labels WHERE class_id >= ?", (COMPOUND_BASE,))
        conn.execute("DELETE FROM meta WHERE key = ?", (COMPOUNDS_KEY,))
        conn.execute("DELETE FROM classes WHERE class_id >= ?", (COMPOUND_BASE,))
    engine = store.open_index(str(db))
    summary = pipeline.index(engine, [str(tmp_path / "photos")], lambda s: pytest.fail("no model runs"),
                             model="fake", size=96, precision="fp32", batch=4)
    engine.dispose()
    assert (summary.indexed, summary.compounded) == (0, 4)
    assert _compound_rows(db) == stored
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = ?", (COMPOUNDS_KEY,)).fetchone() is not None
