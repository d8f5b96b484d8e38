"""The latency benches' ``--kinds`` (`bench/query_latency.py`, `bench/serve_latency.py`): a kind whose name holds
a comma can be chosen alone, and an unknown name is one line, not a KeyError."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _bench_module(name: str):
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture(scope="module")
def query_latency():
    yield from _bench_module("query_latency")


KNOWN = ["1 term", "2-term spatial AND", "2-term AND, any region", "relation", "hierarchy term",
         "hierarchy AND term", "OR / NOT", "NOT alone"]


@pytest.mark.parametrize("text, chosen", [
    ("2-term AND, any region", ["2-term AND, any region"]),
    ("relation,2-term AND, any region,1 term", ["relation", "2-term AND, any region", "1 term"]),
    ("hierarchy AND term, hierarchy term", ["hierarchy AND term", "hierarchy term"]),
    ("OR / NOT,NOT alone", ["OR / NOT", "NOT alone"]),
])
def test_kinds_are_chosen_by_their_whole_names(query_latency, text, chosen):
    assert query_latency.chosen_kinds(text, KNOWN) == chosen


def test_an_unknown_kind_is_one_line(query_latency):
    with pytest.raises(SystemExit) as stopped:
        query_latency.chosen_kinds("relation,2-term AND", KNOWN)
    assert str(stopped.value) == f"unknown query kind '2-term AND'; the kinds: {', '.join(KNOWN)}"


@pytest.mark.parametrize("mine, theirs, agree", [
    ("51353", "1000+", True), ("1000+", "51353", True), ("1000+", "1000+", True), ("12", "12", True),
    ("1000", "1000+", False), ("900", "1000+", False), ("12", "13", False), ("1500+", "1000+", False),
])
def test_a_count_stopped_at_n_agrees_with_one_of_more_than_n(query_latency, mine, theirs, agree):
    assert query_latency.counts_agree(mine, theirs) == agree


@pytest.fixture(scope="module")
def postings_ceiling():
    yield from _bench_module("postings_ceiling")


@pytest.mark.slow
def test_the_posting_lists_ceiling_gives_the_searchs_page_and_count(query_latency, postings_ceiling, tmp_path):
    """`bench/postings_ceiling.py` times the same answers as `query.search`, ImageNet classes' calibration,
    regions, relations and ties by path included, or its figures mean nothing."""
    import sqlite3

    import sqlalchemy as sa

    from indexer.store import open_index, tables
    from query.compile import unlabelled
    from query.search import execute, prepare

    db = tmp_path / "synthetic.db"
    query_latency.build(db, 3000, log=lambda *_: None)
    # the commonest ImageNet classes: their values pass through the calibration's curve
    first, second = [name for name in query_latency.popular_labels(db, 6)[0] if name not in ("person", "face")][:2]
    engine = open_index(str(db), create=False, readonly=True)
    t = tables(engine)
    left_out = str(sa.select(t.images.c.image_id).where(unlabelled(t.images))
                   .compile(engine, compile_kwargs={"literal_binds": True}))
    index = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    out = postings_ceiling.open_postings(tmp_path / "postings.db")
    queries = ["animal AND people", "face AND vehicle in left column", f"person in top row AND {first}",
               f"{first} right of {second}", f"person left of {first}", f"face next to {second}",
               f"{second} below person"]
    answered = 0
    for text in queries:
        prepared = prepare(engine, text, tables=t)
        for spec in prepared.compiled.specs:
            postings_ceiling.write_postings(index, out, spec.classes[0])
        result = execute(engine, prepared)
        page, total = postings_ceiling.from_postings(index, out, prepared, left_out, 20)
        assert page == [(m.image_id, m.score) for m in result.matches], text
        assert total == result.total if result.counted else total > result.total, text
        answered += bool(page)
    assert answered >= 5
    engine.dispose()
