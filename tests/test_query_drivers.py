"""The driving terms chosen from counts of class-index entries (`query.compile._and_drive`) change how a
query is computed, never what it answers: every kind of query of `bench/query_latency.py`, on an index where
some labels are in most photos and others in few, gives the same matches, order, scores, cells and count
with the drivers chosen from the query alone (the plan before the counts), from the index's counts, and
from counts that lie."""

from __future__ import annotations

import contextlib
import random
import re
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from indexer.calibration import for_model
from indexer.labels import FACE_CLASS
from indexer.store import tables
from query.compile import (
    COUNT_LIMIT, ESTIMATE_CAP, NARROW_RATIO, RELATION_BUDGET, RELATION_MARGIN, RELATION_SIDES, _and_drive, _Compiler,
    _Drive, _side, compile_query,
)
from query.parser import parse
from query.resolve import resolve
from query.search import execute, prepare
from tests.query_helpers import (
    BEAGLE, CHIHUAHUA, CRANE_BIRD, FLOWERPOT, GOLDEN_RETRIEVER, LABRADOR, SCHOOL_BUS, TABBY, TIGER_CAT, make_index,
    random_images,
)

pytestmark = pytest.mark.usefixtures("statement_only")

#: In most photos (the broad labels), and in few.
COMMON = (TABBY, GOLDEN_RETRIEVER, FACE_CLASS)
RARE = (SCHOOL_BUS, FLOWERPOT, CRANE_BIRD, BEAGLE, LABRADOR, CHIHUAHUA, TIGER_CAT)
SCORES = (0.05, 0.2, 0.35, 0.5, 0.7, 0.9)


def _images(seed: int, n: int) -> dict:
    return random_images(seed, n, {**{c: 0.6 for c in COMMON}, **{c: 0.05 for c in RARE}}, SCORES)


#: One query or more of each kind `bench/query_latency.py` times, broad and narrow terms mixed.
QUERIES = {
    "1 term": ["tabby in center", "school bus"],
    "2-term spatial AND": ["tabby in center AND school bus in top-left", "face in center AND flowerpot in center"],
    "2-term AND, any region": ["tabby AND crane in the top row", "golden retriever in center AND school bus"],
    "3-term AND": ["tabby AND face in center AND school bus in the left column"],
    "relation": ["tabby left of school bus", "school bus above face", "face next to flowerpot"],
    "hierarchy term": ["dog in center", "cat in the top row"],
    "hierarchy AND term": ["dog in center AND school bus in center", "cat in top-left AND flowerpot"],
    "OR / NOT": ["tabby in center OR school bus", "school bus AND NOT dog", "face in center AND tabby AND NOT crane",
                 "school bus OR flowerpot AND NOT tabby"],
    "NOT alone": ["NOT dog"],
}


@pytest.fixture(scope="module")
def skewed(new_index_url):
    engine = make_index(new_index_url(), _images(11, 120))
    yield engine, tables(engine)
    engine.dispose()


def _answer(engine, t, query: str, count, limit: int | None, offset: int) -> tuple:
    """Everything a search reports, with the drivers chosen by ``count`` (None: from the query alone)."""
    base = prepare(engine, query, tables=t, limit=limit, offset=offset, calibration=CALIBRATION, count=count)
    result = execute(engine, base)
    matches = [(m.rank, m.path, round(m.score, 9), [(h.score and round(h.score, 9), h.cells) for h in m.terms])
               for m in result.matches]
    return matches, result.total, result.counted, base.compiled.plan


CALIBRATION = for_model("efficientnet-lite0")


def _lying(seed: int):
    """Counts drawn at random, from one entry to more than any bound: every choice of drivers comes up."""
    rng = random.Random(seed)
    return lambda statement: rng.choice((1, 30, 10**9))


#: Kinds with an AND of two terms or more, or a relation, so that the counts can choose among drivers.
CHOOSING = ("2-term spatial AND", "2-term AND, any region", "3-term AND", "relation", "hierarchy AND term",
            "OR / NOT")


@pytest.mark.parametrize("kind", list(QUERIES))
def test_every_kind_answers_the_same_whatever_drives(skewed, kind):
    engine, t = skewed
    plans = set()
    with engine.connect() as conn:
        counted = lambda statement: conn.execute(statement).scalar_one()
        counts = {"the index's counts": counted, **{f"random counts {seed}": _lying(seed) for seed in range(3)}}
        for query in QUERIES[kind]:
            for limit, offset in ((None, 0), (4, 3)):
                before = _answer(engine, t, query, None, limit, offset)
                plans.add(before[3])
                for name, count in counts.items():
                    after = _answer(engine, t, query, count, limit, offset)
                    plans.add(after[3])
                    assert after[:3] == before[:3], (query, name, limit, offset)
    # the queries found something, and (where there is a choice) were computed in more than one way
    assert any(_answer(engine, t, q, None, None, 0)[1] for q in QUERIES[kind])
    assert len(plans) > len(QUERIES[kind]) or kind not in CHOOSING, plans


def test_a_broad_term_is_computed_per_candidate_of_a_narrow_one(skewed):
    engine, t = skewed
    plan = prepare(engine, "tabby in center AND school bus in top-left", tables=t).compiled.plan
    assert plan == ("candidates: images of term 2 (school bus in top-left >= 0.4); term 2 read from the class "
                    "index; term 1 computed per candidate")
    # from the query alone both single-class terms would drive, and the tabbies be read in full
    tree, found = resolve(parse("tabby in center AND school bus in top-left"), "")
    alone = compile_query(t, tree, found, dialect=engine.dialect.name, calibration=CALIBRATION)
    assert alone.plan.startswith("candidates: images common to terms 1, 2")


def test_terms_alike_in_size_still_drive_together(skewed):
    engine, t = skewed
    plan = prepare(engine, "school bus in top-left AND flowerpot in top-left", tables=t).compiled.plan
    assert plan.startswith("candidates: images common to terms 1, 2")


def test_a_relations_broad_side_is_computed_per_candidate_of_its_narrow_side(skewed):
    engine, t = skewed
    plan = prepare(engine, "tabby left of school bus", tables=t).compiled.plan
    assert plan == ("candidates: images of term 2 (school bus >= 0.4); term 2 read from the class index; term 1 "
                    "computed per candidate")


@dataclass(frozen=True)
class _Sized:
    """A stand-in for a term's `query.compile.Spec`: what `_and_drive` reads of it."""

    name: str
    entries: int
    cost: int = 9


@pytest.mark.parametrize("narrow, broad, drivers", [
    (100, 100 * NARROW_RATIO + 1, ["narrow"]),
    (100, 100 * NARROW_RATIO, ["narrow", "broad"]),
    # both past the first count's cap: counted on to eight times the narrow one
    (5_000, 5_000 * NARROW_RATIO + 1, ["narrow"]),
    (5_000, 30_000, ["narrow", "broad"]),
    (ESTIMATE_CAP, 10**7, ["narrow"]),
    # every part past the cap: counted again, up to eight times the cap
    (ESTIMATE_CAP + 1, 10**7, ["narrow"]),
    (3 * ESTIMATE_CAP, 10**7, ["narrow"]),
    (3 * ESTIMATE_CAP, 20 * ESTIMATE_CAP, ["narrow", "broad"]),
    # past that too: the counts tell nothing, and the parts drive in the query's order
    (ESTIMATE_CAP * NARROW_RATIO + 1, 10**7, ["broad", "narrow"]),
])
def test_a_part_far_broader_than_the_narrowest_does_not_drive(narrow, broad, drivers):
    asked = []

    def entries(drive: _Drive, bound: int) -> int:
        asked.append((drive.spec.name, bound))
        return min(drive.spec.entries, bound + 1)

    parts = [_Drive("term", _Sized("broad", broad)), _Drive("term", _Sized("narrow", narrow))]
    chosen = _and_drive(parts, entries)
    assert [s.name for s in chosen.specs()] == drivers  # the narrowest first: the INTERSECT's left-most part
    # what a count may cost: the first cap, or eight times the narrowest part
    assert max(bound for _, bound in asked) <= max(ESTIMATE_CAP, min(narrow, broad) * NARROW_RATIO)


def test_a_broad_negated_term_is_tested_per_image_of_a_narrow_one(skewed):
    engine, t = skewed
    narrow = prepare(engine, "school bus AND NOT face", tables=t).compiled.plan
    assert narrow.startswith("one term: the best of its cells, from the class index per image, less the images of "
                             "term 2 (tested per image);")
    broad = prepare(engine, "face AND NOT school bus", tables=t).compiled.plan
    assert "less the images of term 2 (listed);" in broad
    alone = prepare(engine, "school bus AND NOT face", tables=t, count=None).compiled.plan
    assert "less the images of term 2 (listed);" in alone


def _sampled(kept: int):
    """Counts past every bound, and a sample of a term's best photos of which the negated terms leave ``kept``
    (`_Compiler.mostly_kept`)."""
    def count(statement) -> int:
        return kept if "sample_read" in str(statement.compile(compile_kwargs={"literal_binds": True})) else 10**9
    return count


@pytest.mark.parametrize("kept, streamed", [(250, True), (26, True), (25, False), (0, False)])
def test_a_term_less_others_is_read_from_its_streams_where_its_sample_is_mostly_left(skewed, kept, streamed):
    """26 of 250 photos left find 1,001 matches within 10,000 photos read; 25 do not: the matches are then
    listed and counted in full."""
    engine, t = skewed
    plan = prepare(engine, "school bus AND NOT face", tables=t, count=_sampled(kept)).compiled.plan
    assert ("less the images where term 2 holds" in plan and "streams' page-end scores" in plan) == streamed, plan
    assert ("less the images of term 2 (listed)" in plan) != streamed, plan


@pytest.mark.parametrize("query", ["school bus AND NOT face", "face AND NOT school bus in center",
                                   "tabby in the top row AND NOT flowerpot AND NOT face",
                                   "(tabby OR face) AND NOT school bus"])
@pytest.mark.parametrize("capped", [True, False])
def test_a_term_less_others_read_from_its_streams_pages_and_counts_as_in_full(skewed, monkeypatch, query, capped):
    """Where the negated terms leave most photos of a term with more class-index entries than `COUNT_LIMIT`,
    each stream is read with them tested per photo, and the count stops past that: the page of the full
    computation, its count or "more than" the limit (3, or as many as match)."""
    engine, t = skewed
    everything = _answer(engine, t, query, None, None, 0)
    assert everything[1] > 3
    count_limit = 3 if capped else everything[1]
    monkeypatch.setattr("query.compile.COUNT_LIMIT", count_limit)
    for limit, offset in ((1, 0), (4, 2), (3, everything[1] - 1)):
        with engine.connect() as conn:
            page = _answer(engine, t, query, lambda statement: conn.execute(statement).scalar_one(), limit, offset)
        assert "less the images where term" in page[3] and "streams' page-end scores" in page[3], page[3]
        assert page[0] == everything[0][offset:offset + limit], (query, limit, offset)
        shown = max(count_limit, offset + limit)
        assert page[1:3] == ((shown, False) if everything[1] > shown else everything[1:3]), (query, limit, offset)


def test_a_relations_sides_are_read_only_where_they_can_stand_in_it():
    everywhere = tuple(range(9))
    assert RELATION_SIDES["above"] == ((0, 1, 2, 3, 4, 5), (3, 4, 5, 6, 7, 8))
    assert RELATION_SIDES["below"] == ((3, 4, 5, 6, 7, 8), (0, 1, 2, 3, 4, 5))
    assert RELATION_SIDES["left of"] == ((0, 1, 3, 4, 6, 7), (1, 2, 4, 5, 7, 8))
    assert RELATION_SIDES["right of"] == ((1, 2, 4, 5, 7, 8), (0, 1, 3, 4, 6, 7))
    assert RELATION_SIDES["next to"] == (everywhere, everywhere)


#: Relations of every kind, with sides in regions the relation narrows, empties, or leaves as they are.
RELATIONS = ["tabby above school bus", "school bus below face", "face left of flowerpot", "tabby right of crane",
             "school bus next to tabby", "tabby in the right column left of school bus",
             "face in the top row below school bus", "tabby in center above flowerpot in the bottom row",
             "school bus left of tabby AND face", "(school bus above tabby) OR crane right of face",
             "tabby above school bus AND NOT flowerpot"]


@pytest.mark.parametrize("query", RELATIONS)
def test_reading_a_relations_sides_only_where_they_can_stand_changes_no_answer(skewed, monkeypatch, query):
    engine, t = skewed
    with engine.connect() as conn:
        counted = lambda statement: conn.execute(statement).scalar_one()
        for count in (None, counted, _lying(0)):
            narrowed = _answer(engine, t, query, count, None, 0)
            with monkeypatch.context() as unnarrowed:
                unnarrowed.setattr("query.compile.RELATION_SIDES", {k: (tuple(range(9)),) * 2 for k in RELATION_SIDES})
                everywhere = _answer(engine, t, query, count, None, 0)
            assert narrowed[:3] == everywhere[:3], (query, count)


def test_a_relations_candidates_come_from_the_cells_it_can_hold_in(skewed):
    engine, t = skewed
    sql = str(prepare(engine, "school bus above flowerpot", tables=t).statement.compile(
        engine, compile_kwargs={"literal_binds": True}))
    assert "hits_1.cell IN (0, 1, 2, 3, 4, 5)" in sql and "hits_2.cell IN (3, 4, 5, 6, 7, 8)" in sql


# ------------------------------------------------------- a relation or an AND of two broad terms (`ranked_pair`)

FIRE_HYDRANT, FRISBEE = 1011, 1030  # COCO classes, read as stored, as the face is
BROAD_RELATIONS = ["face below fire hydrant", "fire hydrant above face", "frisbee left of face",
                   "face right of frisbee > 0.6", "fire hydrant next to frisbee", "frisbee below fire hydrant"]
#: ANDs of two such terms, read as their relations are (`_Compiler.pair`), and terms of a region, read from their
#: cells there (`_Compiler.photos_listed`).
BROAD_ANDS = ["face AND fire hydrant", "frisbee AND face", "fire hydrant > 0.6 AND frisbee"]
IN_REGIONS = ["face in center below fire hydrant", "frisbee in top row AND face",
              "face in left column AND fire hydrant in bottom-right",
              "fire hydrant in middle row right of frisbee > 0.6"]


def _ranked(plan: str) -> bool:
    """The plan is `_Compiler.ranked_pair`'s: a relation's or an AND's."""
    return plan.startswith(("one relation of two broad terms", "an AND of two broad terms"))


@pytest.fixture(scope="module")
def detected(new_index_url):
    """Photos where the face and two COCO classes are each in most photos, at scores with many ties; no
    frisbee scores above 0.8 (the cut divides by a side's best score)."""
    found = random_images(5, 90, {FACE_CLASS: 0.3, FIRE_HYDRANT: 0.25, FRISBEE: 0.2}, (0.3, 0.45, 0.6, 0.8, 0.95, 1.0))
    for cells in filter(None, found.values()):
        for scores in cells.values():
            if FRISBEE in scores:
                scores[FRISBEE] = min(scores[FRISBEE], 0.8)
    engine = make_index(new_index_url(), found)
    yield engine, tables(engine), found
    engine.dispose()


def _broad(statement) -> int:
    """Counts past every bound: each side of a relation is broad."""
    return 10**9


@pytest.mark.parametrize("query", BROAD_RELATIONS + BROAD_ANDS + IN_REGIONS)
def test_a_relation_of_broad_terms_pages_as_the_full_computation_does(detected, query):
    engine, t, _ = detected
    everything = _answer(engine, t, query, None, None, 0)
    assert everything[1] > 10  # many matches, so that pages and cuts fall inside them
    for limit, offset in ((1, 0), (4, 0), (4, 3), (10, 20), (5, everything[1] - 2), (3, everything[1] + 4)):
        page = _answer(engine, t, query, _broad, limit, offset)
        assert page[3].startswith("an AND" if " AND " in query else "one relation"), page[3]
        assert _ranked(page[3]), page[3]
        assert page[0] == everything[0][offset:offset + limit], (query, limit, offset)
        assert page[1:3] == everything[1:3] or page[1:3] == (None, True) and offset >= everything[1]


def test_a_relation_of_broad_terms_counts_past_the_limit_as_more_than(detected, monkeypatch):
    engine, t, _ = detected
    everything = _answer(engine, t, "face below fire hydrant", None, None, 0)
    monkeypatch.setattr("query.compile.COUNT_LIMIT", 5)
    page = _answer(engine, t, "face below fire hydrant", _broad, 4, 0)
    assert page[0] == everything[0][:4]
    assert page[1:3] == (5, False)
    later = _answer(engine, t, "face below fire hydrant", _broad, 4, 6)  # the count runs to the page's end
    assert later[0] == everything[0][6:10] and later[1:3] == (10, False)


def test_a_relation_with_a_narrow_side_or_of_several_classes_keeps_its_drivers(detected):
    engine, t, _ = detected
    narrow = lambda statement: 10**9 if "1011" in str(statement.compile(compile_kwargs={"literal_binds": True})) else 3
    assert not _answer(engine, t, "face below fire hydrant", narrow, 4, 0)[3].startswith("one relation")
    assert not _answer(engine, t, "face below dog", _broad, 4, 0)[3].startswith("one relation")
    assert not _answer(engine, t, "face below face", _broad, 4, 0)[3].startswith("one relation")


@pytest.mark.parametrize("query", ["face AND fire hydrant AND frisbee", "face AND NOT frisbee", "face AND face",
                                   "face AND (fire hydrant OR frisbee)", "face AND dog"])
def test_an_and_of_other_than_two_terms_of_one_class_keeps_its_drivers(detected, query):
    engine, t, _ = detected
    everything = _answer(engine, t, query, None, None, 0)
    page = _answer(engine, t, query, _broad, 4, 0)
    assert not _ranked(page[3]), page[3]
    assert page[0] == everything[0][:4] and page[1:3] == everything[1:3]


#: ANDs of terms each one class, in any region: each candidate's value of each looked up (`_Compiler.ranked_photos`).
PHOTO_ANDS = ["face AND fire hydrant", "frisbee AND face", "fire hydrant > 0.6 AND frisbee",
              "face AND fire hydrant AND frisbee", "face AND face", "frisbee > 0.6 AND frisbee",
              "face in top row AND fire hydrant", "frisbee in center AND face in left column"]
MODEL_ANDS = ["tabby AND fire hydrant", "golden retriever > 0.6 AND tabby", "tabby in top row AND fire hydrant",
              "face in bottom row AND tabby in top row", "tabby AND golden retriever AND face",
              "tabby in middle row AND tabby"]
#: Relations of such terms, both sides driving: each candidate's values and cells read from its own rows.
PHOTO_RELATIONS = ["face below fire hydrant", "frisbee left of face", "face in center below fire hydrant",
                   "fire hydrant in middle row right of frisbee > 0.6"]
IMAGENET_RELATIONS = ["tabby left of fire hydrant", "golden retriever > 0.6 above tabby", "tabby next to face",
                      "face in bottom row below tabby in top row"]


def _from_photos(plan: str) -> bool:
    return "each term's value in each looked up" in plan


def _pages_from_values_as_the_pivot(engine, t, monkeypatch, query: str):
    """With every part counted past `ESTIMATE_CAP` (a cap of 1 here) and no pair read in score order, the
    pages and counts of the pivot."""
    with monkeypatch.context() as pivot_only:
        pivot_only.setattr(_Compiler, "photo_terms", lambda self: None)
        everything = _answer(engine, t, query, None, None, 0)
    assert everything[1] > 10 and not _from_photos(everything[3])
    monkeypatch.setattr("query.compile.ESTIMATE_CAP", 1)
    monkeypatch.setattr(_Compiler, "broad_pair", lambda self: None)
    with engine.connect() as conn:
        counted = lambda statement: conn.execute(statement).scalar_one()
        for count in (counted, _lying(1), _lying(2), None):
            for limit, offset in ((1, 0), (4, 3), (10, 20), (5, everything[1] - 2), (3, everything[1] + 4)):
                page = _answer(engine, t, query, count, limit, offset)
                assert _from_photos(page[3]) or count is not counted, page[3]
                assert page[0] == everything[0][offset:offset + limit], (query, count, limit, offset)
                assert page[1:3] == everything[1:3] or page[1:3] == (None, True) and offset >= everything[1]


@pytest.mark.parametrize("query", PHOTO_ANDS + PHOTO_RELATIONS)
def test_an_and_of_terms_of_one_class_each_pages_from_their_values_looked_up_as_the_pivot_does(detected, monkeypatch,
                                                                                              query):
    _pages_from_values_as_the_pivot(*detected[:2], monkeypatch, query)


@pytest.mark.parametrize("query", MODEL_ANDS + IMAGENET_RELATIONS)
def test_an_and_with_imagenet_classes_pages_from_their_values_looked_up_as_the_pivot_does(classified, monkeypatch,
                                                                                        query):
    _pages_from_values_as_the_pivot(*classified, monkeypatch, query)


def test_an_and_of_words_read_from_their_photos_merges_their_lists_and_seeks_the_index_of_their_scores(
        detected, monkeypatch):
    """SQLite merges the photo lists read in image order (not a temporary B-tree of the first), and seeks each
    candidate's score of a word in ``image_labels_class_by_image``, not the key's index (`_DrivenByPhoto`)."""
    engine, t, _ = detected
    if engine.dialect.name != "sqlite":
        pytest.skip("the plan of SQLite")
    monkeypatch.setattr("query.compile.ESTIMATE_CAP", 1)
    monkeypatch.setattr(_Compiler, "broad_pair", lambda self: None)
    with engine.connect() as conn:
        base = prepare(engine, "face AND fire hydrant", tables=t, limit=4, calibration=CALIBRATION,
                       count=lambda statement: conn.execute(statement).scalar_one())
        sql = base.statement.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True})
        plan = [row[3] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")]
    assert _from_photos(base.compiled.plan) and "MERGE (INTERSECT)" in plan, plan
    lookups = [step for step in plan if step.startswith("SEARCH photo_")]
    assert len(lookups) == 2 and all("COVERING INDEX image_labels_class_by_image" in step for step in lookups), plan


def test_an_and_of_terms_of_one_class_each_with_few_entries_keeps_the_pivot(detected):
    """Where the index may not be asked, or its parts read at most `ESTIMATE_CAP` entries; else the pair is read
    in score order (`_Compiler.ranked_pair`), computed in full from the values looked up where that does not
    tell."""
    engine, t, _ = detected
    with engine.connect() as conn:
        counted = lambda statement: conn.execute(statement).scalar_one()
        for count in (None, counted):
            assert not _from_photos(_answer(engine, t, "face AND fire hydrant", count, 4, 0)[3])
    broad = _answer(engine, t, "face AND fire hydrant", _broad, 4, 0)[3]
    assert _ranked(broad) and _from_photos(broad), broad  # read in score order, else from the values looked up


@pytest.mark.parametrize("query", ["face AND NOT frisbee", "face AND dog",
                                   "face AND (fire hydrant OR frisbee)", "face below frisbee > 0.9"])
def test_an_and_with_a_term_of_several_classes_or_not_a_term_keeps_the_pivot(detected, monkeypatch, query):
    engine, t, _ = detected
    monkeypatch.setattr("query.compile.ESTIMATE_CAP", 1)
    with engine.connect() as conn:
        plan = _answer(engine, t, query, lambda statement: conn.execute(statement).scalar_one(), 4, 0)[3]
    assert not _from_photos(plan), plan


@pytest.mark.parametrize("count_limit, chosen", [(3, True), (10**4, False)])
def test_a_relation_of_broad_terms_is_read_in_score_order_only_where_it_holds_often(detected, monkeypatch,
                                                                                      count_limit, chosen):
    engine, t, _ = detected
    everything = _answer(engine, t, "face below fire hydrant", None, None, 0)
    for name, value in (("ESTIMATE_CAP", 1), ("RELATION_SAMPLE", 10), ("COUNT_LIMIT", count_limit)):
        monkeypatch.setattr(f"query.compile.{name}", value)
    with engine.connect() as conn:
        counted = lambda statement: conn.execute(statement).scalar_one()
        page = _answer(engine, t, "face below fire hydrant", counted, 4, 2)
    assert page[3].startswith("one relation of two broad terms") == chosen, page[3]
    assert page[0] == everything[0][2:6]
    shown = max(count_limit, 2 + 4)  # the count runs to the page's end
    assert page[1:3] == (everything[1:3] if everything[1] <= shown or not chosen else (shown, False))


def _shares(shares: dict[int, float]):
    """Counts past every bound, and samples of a relation's sides (`_Compiler.expected_matches`) where it holds
    in ``shares[class_id]`` of the photos sampled of that class, `RELATION_BUDGET` photos or more."""
    def count(statement) -> float:
        sql = str(statement.compile(compile_kwargs={"literal_binds": True}))
        if "sample_read" not in sql:
            return 10**9
        return shares[int(re.search(r"sample_read.class_id = (\d+)", sql).group(1))] * RELATION_BUDGET
    return count


#: The share of a side's sample that just reaches the margin of matches, and one just short of it.
ENOUGH = RELATION_MARGIN * (COUNT_LIMIT + 1) / RELATION_BUDGET
SHORT = ENOUGH * 0.99


@pytest.mark.parametrize("face, hydrant, lead", [(ENOUGH, 0.0, 1), (0.0, ENOUGH, 2), (0.5, ENOUGH, 1),
                                                 (SHORT, SHORT, None), (0.0, 0.0, None)])
def test_a_relation_is_read_in_score_order_from_the_side_whose_sample_expects_enough_matches(
        detected, face, hydrant, lead):
    """Read from the side expecting more matches within its best `RELATION_BUDGET` photos, where they are at
    least `RELATION_MARGIN` times the `COUNT_LIMIT` + 1 it must find; else computed in full."""
    engine, t, _ = detected
    everything = _answer(engine, t, "face below fire hydrant", None, None, 0)
    page = _answer(engine, t, "face below fire hydrant", _shares({FACE_CLASS: face, FIRE_HYDRANT: hydrant}), 4, 2)
    chosen = page[3].startswith("one relation of two broad terms")
    assert chosen == (lead is not None), page[3]
    assert not chosen or page[3].startswith(f"one relation of two broad terms: term {lead}'s best"), page[3]
    assert page[0] == everything[0][2:6] and page[1:3] == everything[1:3]


def test_a_sides_sample_is_spread_over_its_best_photos(detected, monkeypatch):
    """The expected matches are the relation's share of the photos among a side's best `RELATION_BUDGET`
    whose id is a multiple of their number over `RELATION_SAMPLE`, times that number; infinite for a side
    with fewer photos than a sample (all of them are read)."""
    engine, t, _ = detected
    query = "face below fire hydrant"
    everything = _answer(engine, t, query, None, None, 0)
    held = {int(path[3:6]) + 1 for _, path, _, _ in everything[0]}  # make_index numbers the photos from 1
    expected = {}
    real = _Compiler.expected_matches
    monkeypatch.setattr(_Compiler, "expected_matches",
                        lambda self, side: expected.setdefault(side.classes[0], real(self, side)))
    monkeypatch.setattr("query.compile.ESTIMATE_CAP", 1)
    best = sa.text("SELECT image_id FROM image_labels WHERE class_id = :c AND score >= 0.4 "
                   "ORDER BY score DESC, image_id DESC LIMIT :n")
    for budget in (40, 10**6):
        monkeypatch.setattr("query.compile.RELATION_BUDGET", budget)
        monkeypatch.setattr("query.compile.RELATION_SAMPLE", 10)
        expected.clear()
        with engine.connect() as conn:
            _answer(engine, t, query, lambda statement: conn.execute(statement).scalar_one(), 4, 0)
            for class_id in (FACE_CLASS, FIRE_HYDRANT):
                read = conn.execute(best, {"c": class_id, "n": budget}).scalars().all()
                sampled = [image_id for image_id in read if image_id % (len(read) // 10) == 0]
                share = sum(image_id in held for image_id in sampled) / len(sampled)
                assert expected[class_id] == pytest.approx(share * len(read)), (budget, class_id)
        assert budget > 40 or len(read) == 40
    monkeypatch.setattr("query.compile.RELATION_SAMPLE", 10**4)
    expected.clear()
    with engine.connect() as conn:
        _answer(engine, t, query, lambda statement: conn.execute(statement).scalar_one(), 4, 0)
    assert expected == {FACE_CLASS: float("inf"), FIRE_HYDRANT: float("inf")}


#: (`RELATION_BUDGET`, `RELATION_ABOVE` (twice that `RELATION_LISTED_ABOVE`), `COUNT_LIMIT`, `RELATION_SEED`):
#: too few matches among a side's best photos, too many rows above the cuts, both, neither, counts that stop
#: early or do not, seeds that find nothing, some matches or all of them, and rows above a cut past
#: `RELATION_ABOVE` read against the other side's list (the last two).
FALLBACKS = [(1, 1, 1000, 10**6), (3, 3, 3, 10**6), (8, 10**6, 1000, 10**6), (10**6, 8, 3, 10**6),
             (40, 40, 3, 10**6), (10**6, 10**6, 3, 10**6), (10**6, 10**6, 3, 1), (10**6, 30, 3, 1), (40, 8, 3, 20),
             (10**6, 50, 3, 1), (40, 50, 3, 20)]


def _falls_back_as_in_full(engine, t, queries: list[str], monkeypatch, budget: int, above: int, count_limit: int,
                           seed: int):
    """Either branch of each query's statement gives the page and the count of the full computation."""
    expected = {query: _answer(engine, t, query, None, None, 0) for query in queries}
    for name, value in (("RELATION_BUDGET", budget), ("RELATION_ABOVE", above), ("RELATION_LISTED_ABOVE", above * 2),
                        ("COUNT_LIMIT", count_limit), ("RELATION_SEED", seed)):
        monkeypatch.setattr(f"query.compile.{name}", value)
    for query, everything in expected.items():
        for limit, offset in ((1, 0), (4, 3), (2, 9)):
            page = _answer(engine, t, query, _broad, limit, offset)
            assert _ranked(page[3]) and "else candidates" in page[3], page[3]
            assert page[0] == everything[0][offset:offset + limit], (query, limit, offset)
            shown = max(count_limit, offset + limit)
            assert page[1:3] == ((shown, False) if everything[1] > shown else everything[1:3]), (query, limit, offset)


@pytest.mark.parametrize("budget, above, count_limit, seed", FALLBACKS)
def test_a_relation_of_broad_terms_computed_in_full_where_its_best_photos_do_not_tell(detected, monkeypatch, budget,
                                                                                       above, count_limit, seed):
    engine, t, _ = detected
    _falls_back_as_in_full(engine, t, BROAD_RELATIONS + BROAD_ANDS + IN_REGIONS, monkeypatch, budget, above,
                           count_limit, seed)


#: Relations with a side of one ImageNet class or two, read in score order from its cells
#: (`_Compiler.best_cells_in_order`).
MODEL_RELATIONS = ["tabby below fire hydrant", "face left of tabby", "fire hydrant next to golden retriever",
                   "golden retriever above face > 0.6", "golden retriever > 0.9 right of fire hydrant",
                   "tabby next to golden retriever", "golden retriever below tabby > 0.6",
                   "tabby AND fire hydrant", "golden retriever > 0.6 AND tabby", "tabby in top row AND fire hydrant",
                   "golden retriever in middle row next to tabby", "face in bottom row AND tabby in top row",
                   "tabby in right column above face"]


@pytest.fixture(scope="module")
def classified(new_index_url):
    """Two ImageNet classes and two detector classes in most photos. The ImageNet classes' evidence is drawn
    from a few values, so a photo's best cell is often tied with another and many photos tie at a confidence
    of 1; a third of their photos have no ``image_labels`` row of them, as `indexer.regions.IMAGE_TOP_K`
    leaves a class out of a photo's rows while its cells keep it."""
    found = random_images(8, 90, {TABBY: 0.25, GOLDEN_RETRIEVER: 0.2, FACE_CLASS: 0.3, FIRE_HYDRANT: 0.25},
                          (0.03, 0.05, 0.1, 0.2, 0.45, 0.8, 0.95))
    engine = make_index(new_index_url(), found)
    t = tables(engine)
    with engine.begin() as conn:
        conn.execute(t.image_labels.delete().where(t.image_labels.c.class_id.in_((TABBY, GOLDEN_RETRIEVER)),
                                                   t.image_labels.c.image_id % 3 == 0))
    yield engine, t
    engine.dispose()


@pytest.mark.parametrize("query", MODEL_RELATIONS)
def test_a_relation_with_a_side_of_one_imagenet_class_pages_as_the_full_computation_does(classified, query):
    engine, t = classified
    everything = _answer(engine, t, query, None, None, 0)
    assert everything[1] > 10
    for limit, offset in ((1, 0), (4, 0), (4, 3), (10, 20), (5, everything[1] - 2), (3, everything[1] + 4)):
        page = _answer(engine, t, query, _broad, limit, offset)
        assert _ranked(page[3]), page[3]
        assert page[0] == everything[0][offset:offset + limit], (query, limit, offset)
        assert page[1:3] == everything[1:3] or page[1:3] == (None, True) and offset >= everything[1]


@pytest.mark.parametrize("budget, above, count_limit, seed", FALLBACKS)
def test_a_relation_with_a_side_of_one_imagenet_class_counts_and_falls_back_as_the_full_computation(
        classified, monkeypatch, budget, above, count_limit, seed):
    engine, t = classified
    _falls_back_as_in_full(engine, t, MODEL_RELATIONS, monkeypatch, budget, above, count_limit, seed)


#: Relations and ANDs with a side of one class read as stored, anywhere, and sides that are not (a region).
STORED_SIDES = [*BROAD_RELATIONS, "face AND fire hydrant", "frisbee in center AND face", "face above frisbee in center",
                "(face left of fire hydrant) OR frisbee in top-left", "fire hydrant next to frisbee AND NOT face"]


def _sized(cells, photos, total: int = 10**9):
    """Counts where each class fills ``cells(class)`` cells and ``photos(class)`` photos (each count up to its
    bound) of an index of ``total`` photos (its highest image id: `_Compiler.listed`)."""
    def count(statement) -> int:
        sql = str(statement.compile(compile_kwargs={"literal_binds": True}))
        if "LIMIT" not in sql:
            return total
        bound = int(re.findall(r"LIMIT (\d+)", sql)[-1])
        class_id = int(re.search(r"class_id = (\d+)", sql).group(1))
        return min(bound, (photos if "image_labels AS photos_read" in sql else cells)(class_id))
    return count


def _photos_against_cells(photos: int, cells: int):
    """Counts where a stored class fills ``photos`` photos and ``cells`` cells (each count up to its bound)."""
    return _sized(lambda _: cells, lambda _: photos)


@pytest.mark.parametrize("query", STORED_SIDES)
def test_a_stored_class_anywhere_drives_from_its_photos_rows_with_the_same_answers(detected, monkeypatch, query):
    """Its ``image_labels`` rows (`_Compiler.photos_of`), a photo each, in place of its cells: a relation's
    side no longer narrowed to the cells it can stand in, so more candidates, the same answers."""
    engine, t, _ = detected
    with engine.connect() as conn:
        counted = lambda statement: conn.execute(statement).scalar_one()
        for count in (None, counted, _lying(1), _photos_against_cells(10, 10**6), _photos_against_cells(10, 19)):
            for limit, offset in ((None, 0), (4, 3)):
                from_photos = _answer(engine, t, query, count, limit, offset)
                with monkeypatch.context() as cells_only:
                    cells_only.setattr(_Compiler, "scored_in_order", staticmethod(lambda spec: False))
                    from_cells = _answer(engine, t, query, count, limit, offset)
                assert from_photos[:3] == from_cells[:3], (query, limit, offset)
    assert _answer(engine, t, query, None, None, 0)[1]  # it matches something


@pytest.mark.parametrize("total, common", [(10**6, True), (3_000, False)])
def test_a_side_that_lists_its_photos_is_weighed_by_them_where_they_are_few_in_the_index(detected, total, common):
    """``face below fire hydrant`` with 5,000 face cells in 500 photos against 400 hydrant cells: the faces
    read more than `NARROW_RATIO` times the hydrants' entries, but listed as photos they read 500 rows, so
    the two are intersected; unless 500 photos are more than one in `NARROW_RATIO` of the index's, where
    the intersection would keep most hydrants and each is looked up for a face instead."""
    engine, t, _ = detected
    count = _sized({FACE_CLASS: 5_000, FIRE_HYDRANT: 400}.__getitem__, {FACE_CLASS: 500, FIRE_HYDRANT: 300}.__getitem__,
                   total)
    everything = _answer(engine, t, "face below fire hydrant", None, None, 0)
    page = _answer(engine, t, "face below fire hydrant", count, None, 0)
    assert page[3].startswith("candidates: images common to terms 1, 2" if common else
                              "candidates: images of term 2"), page[3]
    assert page[:3] == everything[:3]


@pytest.mark.parametrize("photos, cells, listed", [(10, 20, True), (10, 10**6, True), (10, 19, False),
                                                   (10**6, 10**9, False), (None, None, False)])
def test_a_stored_class_lists_its_photos_where_it_fills_two_cells_of_each(detected, photos, cells, listed):
    engine, t, _ = detected
    count = None if photos is None else _photos_against_cells(photos, cells)
    sql = str(prepare(engine, "face below fire hydrant", tables=t, count=count).statement.compile(
        engine, compile_kwargs={"literal_binds": True}))
    assert ("FROM image_labels AS photos_1" in sql and "FROM image_labels AS photos_2" in sql) == listed
    assert "INTERSECT" in sql


def _faces_everywhere_hydrants_in_one_cell() -> dict:
    """40 photos, each with a face in all nine cells and a fire hydrant in the top-left one."""
    return {f"/d/{i:03d}.jpg": {cell: {FACE_CLASS: 0.9, **({FIRE_HYDRANT: 0.8} if cell == 0 else {})}
                                for cell in range(9)} for i in range(40)}


def test_a_side_whose_counts_stopped_lists_its_photos_where_a_sample_of_them_fills_two_cells_each(
        new_index_url, monkeypatch):
    """Every count stops at its bound (`ESTIMATE_CAP` of 1), so neither tells how many cells a photo holds:
    the faces, in the six cells of their side in each of their photos, are read as photos; the hydrants, in
    one, as cells. The answers are the same either way."""
    engine = make_index(new_index_url(), _faces_everywhere_hydrants_in_one_cell())
    t = tables(engine)
    everything = _answer(engine, t, "face below fire hydrant", None, None, 0)
    monkeypatch.setattr("query.compile.ESTIMATE_CAP", 1)
    monkeypatch.setattr(_Compiler, "broad_pair", lambda self: None)
    with engine.connect() as conn:
        count = lambda statement: conn.execute(statement).scalar_one()
        sql = str(prepare(engine, "face below fire hydrant", tables=t, count=count).statement.compile(
            engine, compile_kwargs={"literal_binds": True}))
        assert "FROM image_labels AS photos_1" in sql and "FROM image_labels AS photos_2" not in sql
        assert _answer(engine, t, "face below fire hydrant", count, None, 0)[:3] == everything[:3]
    assert everything[1] == 40
    engine.dispose()


@contextlib.contextmanager
def _counting_compiler(engine, text: str):
    """A compiler of ``text`` that may ask the index, and the list of the count statements it has run."""
    tree, resolutions = resolve(parse(text), text)
    with engine.connect() as conn:
        run = []

        def count(statement) -> int:
            run.append(statement)
            return conn.execute(statement).scalar_one()

        yield _Compiler(tables(engine), tree, resolutions, 0.4, engine.dialect.name, CALIBRATION, count=count), run


def test_a_word_anywhere_counted_past_the_cap_is_estimated_from_a_sample_of_its_photos(new_index_url, monkeypatch):
    """The faces fill the nine cells of each of 40 photos, the hydrants one: estimated from a sample of their
    photos and of those photos' cells, 360 and 40 entries. Past `ESTIMATE_CAP`, the estimate stands for a count
    unless it is within `ESTIMATE_MARGIN` of the count's bound."""
    engine = make_index(new_index_url(), _faces_everywhere_hydrants_in_one_cell())
    monkeypatch.setattr("query.compile.ESTIMATE_CAP", 1)
    with _counting_compiler(engine, "face AND fire hydrant") as (compiler, run):
        face, hydrant = (_Drive("term", spec) for spec in compiler.specs)
        assert compiler.photos_estimate(face.spec) == 40
        assert compiler.entries_estimate(face) == 360 and compiler.entries_estimate(hydrant) == 40
        run.clear()
        assert compiler.entries(face, 100) == 101 and compiler.entries(face, 1000) == 360 and not run
        assert compiler.entries(face, 300) == 301 and len(run) == 1  # within the margin: counted
    engine.dispose()


def test_a_relations_side_counted_past_the_cap_is_estimated_in_its_cells(new_index_url, monkeypatch):
    """``face below fire hydrant`` reads the faces only in the six cells below the top row (`RELATION_SIDES`):
    40 photos of them, six such cells each, 240 entries estimated, and standing for a count as anywhere."""
    engine = make_index(new_index_url(), _faces_everywhere_hydrants_in_one_cell())
    monkeypatch.setattr("query.compile.ESTIMATE_CAP", 1)
    with _counting_compiler(engine, "face below fire hydrant") as (compiler, run):
        face = _side(compiler.specs[0], RELATION_SIDES["below"][0])
        assert face.cells == (3, 4, 5, 6, 7, 8) and compiler.estimable(face)
        assert compiler.entries_estimate(face) == 240
        run.clear()
        assert compiler.entries(face, 100) == 101 and compiler.entries(face, 1000) == 240 and not run
        assert compiler.entries(face, 200) == 201 and len(run) == 1  # within the margin: counted
    engine.dispose()


@pytest.mark.parametrize("photos, cells", [(None, None), (10, 19)])
def test_a_stored_class_anywhere_lists_its_photos_whatever_the_counts(detected, photos, cells):
    """Anywhere, its photos are its cells' photos, each once (`_Compiler.lists_photos`): even where the index
    may not be asked, or its cells are fewer than two a photo."""
    engine, t, _ = detected
    count = None if photos is None else _photos_against_cells(photos, cells)
    sql = str(prepare(engine, "face next to fire hydrant", tables=t, count=count).statement.compile(
        engine, compile_kwargs={"literal_binds": True}))
    assert "FROM image_labels AS photos_1" in sql and "FROM image_labels AS photos_2" in sql
    assert "INTERSECT" in sql
