"""End to end with real weights: composites of real photos indexed with EfficientNet-Lite0 by `imgidx index`,
then `imgidx query --json --limit 0` returns exactly the composites whose placements satisfy each query.

The expected sets come from the placements alone (`query_truth.expected`); `query_truth.LABELS` says which
photos each label stands for with Lite0 (the rocket photo has no reliable label of its own, see there).
`bench/query_accuracy.py` runs the same over a larger set and many more queries.
"""

import json
from dataclasses import replace

import pytest
from click.testing import CliRunner

from indexer.cli import cli
from indexer.geometry import CELL_NAMES
from query_truth import (
    BOTTOM_ROW, CORNERS, LEFT_COLUMN, MIDDLE_COLUMN, MIDDLE_ROW, RIGHT_COLUMN, TOP_ROW,
    And, Not, Or, Query, Rel, T, composite_set, expected, leaky, positive_terms, result_names, write_set,
)

pytestmark = pytest.mark.slow

#: 36 composites: 2 empty, 10 with two photos, 24 with 1-3 photos.
SAMPLES = composite_set(36, seed=0, empty=2, pairs=10)

QUERIES = [
    # single cell
    Query("cell", "cat in top-left", T("cat", (0,))),
    Query("cell", "coffee in the center", T("coffee", (4,))),
    Query("cell", "motorcycle at bottom-right", T("motorcycle", (8,))),
    Query("cell", "espresso in the upper right corner", T("espresso", (2,))),
    # row / column / corners
    Query("row/column", "coffee in the bottom row", T("coffee", BOTTOM_ROW)),
    Query("row/column", "motorcycle left column", T("motorcycle", LEFT_COLUMN)),
    Query("row/column", "cat in the middle column", T("cat", MIDDLE_COLUMN)),
    Query("row/column", "motorcycle on the top edge", T("motorcycle", TOP_ROW)),
    Query("row/column", "coffee right side", T("coffee", RIGHT_COLUMN)),
    Query("row/column", "cat in a corner", T("cat", CORNERS)),
    # AND
    Query("AND", "cat AND coffee", And(T("cat"), T("coffee"))),
    Query("AND", "cat in top row AND motorcycle in bottom row", And(T("cat", TOP_ROW), T("motorcycle", BOTTOM_ROW))),
    Query("AND", "coffee and motorcycle and cat", And(T("coffee"), T("motorcycle"), T("cat"))),
    # OR
    Query("OR", "cat in center OR coffee in center", Or(T("cat", (4,)), T("coffee", (4,)))),
    Query("OR", "motorcycle top row or coffee left column", Or(T("motorcycle", TOP_ROW), T("coffee", LEFT_COLUMN))),
    # NOT
    Query("NOT", "NOT cat", Not(T("cat"))),
    Query("NOT", "coffee AND NOT motorcycle", And(T("coffee"), Not(T("motorcycle")))),
    Query("NOT", "NOT (cat OR coffee OR motorcycle)", Not(Or(T("cat"), T("coffee"), T("motorcycle")))),
    Query("NOT", "motorcycle AND NOT cat in left column", And(T("motorcycle"), Not(T("cat", LEFT_COLUMN)))),
    # relations
    Query("relation", "cat left of coffee", Rel("left of", T("cat"), T("coffee"))),
    Query("relation", "motorcycle above cat", Rel("above", T("motorcycle"), T("cat"))),
    Query("relation", "coffee next to motorcycle", Rel("next to", T("coffee"), T("motorcycle"))),
    Query("relation", "cat right of motorcycle", Rel("right of", T("cat"), T("motorcycle"))),
    Query("relation", "coffee below cat", Rel("below", T("coffee"), T("cat"))),
    Query("relation", "motorcycle to the left of coffee", Rel("left of", T("motorcycle"), T("coffee"))),
    Query("relation", "cat beside motorcycle", Rel("next to", T("cat"), T("motorcycle"))),
    Query("relation", "cat above coffee AND NOT motorcycle", And(Rel("above", T("cat"), T("coffee")), Not(T("motorcycle")))),
    # hierarchy labels (WordNet ancestors and plurals)
    Query("hierarchy", "feline", T("feline")),
    Query("hierarchy", "cats", T("cats")),
    Query("hierarchy", "domestic cat in the left column", T("domestic cat", LEFT_COLUMN)),
    Query("hierarchy", "mammal in the bottom row", T("mammal", BOTTOM_ROW)),
    Query("hierarchy", "beverage", T("beverage")),
    Query("hierarchy", "n00021265 in top row", T("n00021265", TOP_ROW)),  # WordNet's food, by id
    Query("hierarchy", "wheeled vehicle", T("wheeled vehicle")),
    Query("hierarchy", "motor vehicle in the right column", T("motor vehicle", RIGHT_COLUMN)),
    # a hierarchy label with its own threshold
    Query("own threshold", "feline > 0.8", T("feline > 0.8")),
    Query("own threshold", "feline in the middle row > 0.8", T("feline > 0.8", MIDDLE_ROW)),
    Query("own threshold", "motorcycle above feline > 0.8", Rel("above", T("motorcycle"), T("feline > 0.8"))),
    # the seed's phrasing
    Query("seed-style", "the cat is located in the top left corner", T("cat", (0,))),
    Query("seed-style", "a motorcycle is found in the middle", T("motorcycle", (4,))),
    Query("seed-style", "the coffee sits at the bottom right", T("coffee", (8,))),
    Query(
        "seed-style",
        "The cat is located in the middle row AND the coffee is located in the bottom row",
        And(T("cat", MIDDLE_ROW), T("coffee", BOTTOM_ROW)),
    ),
]


@pytest.fixture(scope="module")
def composites(tmp_path_factory):
    work = tmp_path_factory.mktemp("query-e2e")
    folder = work / "composites"
    write_set(folder, SAMPLES, truth=work / "truth.json")
    return folder


@pytest.fixture(scope="module")
def db(composites, new_index_url):
    """The composites, indexed once by `imgidx index` with EfficientNet-Lite0 (into SQLite, then PostgreSQL).
    Without objects: in this process the object detector is the fake one, blind to real photos, and an index
    that claimed a detector had looked would read the classifier's evidence as a second opinion
    (`calibration.fusion_for`); tests/test_objects_e2e.py runs the real detector."""
    db = new_index_url()
    done = CliRunner().invoke(cli, ["index", str(composites), "--db", db, "--model", "efficientnet-lite0", "-q",
                                    "--no-objects"])
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith(f"{len(SAMPLES)} indexed, 0 unchanged, 0 moved, 0 pruned, 0 failed"), done.stdout
    return db


def run(db, text: str) -> list[dict]:
    done = CliRunner().invoke(cli, ["query", text, "--db", str(db), "--json", "--limit", "0"])
    assert done.exit_code == 0, done.output
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_the_set_has_every_kind_of_composite():
    layouts = [s.cells for s in SAMPLES]
    assert len({s.placements for s in SAMPLES}) == len(SAMPLES) - 1  # only the two empty ones alike
    assert sum(not cells for cells in layouts) == 2
    assert {len(cells) for cells in layouts} == {0, 1, 2, 3}
    assert all(len(set(cells.values())) == len(cells) for cells in layouts)  # a photo at most once each


@pytest.mark.parametrize("query", QUERIES, ids=[q.text for q in QUERIES])
def test_a_query_returns_the_composites_that_satisfy_it_and_at_most_leaks_into_neighbouring_cells(db, query):
    want = expected(query.expr, SAMPLES)
    assert 0 < len(want) < len(SAMPLES), "the set does not tell this query's matches from its misses"
    least, most = expected(leaky(query.expr, False), SAMPLES), expected(leaky(query.expr), SAMPLES)
    matches = run(db, query.text)
    got = result_names(m["path"] for m in matches)
    assert len(matches) == len(got)
    assert least <= got <= most, f"missing: {sorted(least - got)}, beyond any leak: {sorted(got - most)}"


@pytest.mark.parametrize("query", [q for q in QUERIES if positive_terms(q.expr)], ids=lambda q: q.text)
def test_each_match_reports_the_cells_of_each_term(db, query):
    """Where each reported term matched is where its photos are (inside its region), and nowhere else."""
    by_name = {s.filename: s for s in SAMPLES}
    terms = positive_terms(query.expr)
    for match in run(db, query.text):
        sample = by_name[result_names([match["path"]]).pop()]
        assert len(match["terms"]) == len(terms)
        for reported, term in zip(match["terms"], terms):
            cells = {CELL_NAMES.index(c) for c in reported["cells"]}
            assert term.where(sample) <= cells <= replace(term, leak=True).where(sample), (match["path"], reported)
            assert (reported["score"] is None) == (not cells)
            if reported["score"] is not None:
                assert reported["score"] >= term.threshold
