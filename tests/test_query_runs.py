"""`query.runs`: an AND or a relation of two words answered from the class runs gives the statement's page and
count."""

from __future__ import annotations

import importlib
import random
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa

import query.search
from indexer import store
from query.search import execute, explain, prepare

BENCH = Path(__file__).resolve().parent.parent / "bench"


def answers(engine, text: str, offset: int = 0, limit: int = 20, **options):
    """What a person sees of ``text``'s page: ranks, photos, scores, each term's score and cells; the count."""
    prepared = prepare(engine, text, offset=offset, limit=limit, **options)
    result = execute(engine, prepared)
    page = [(m.rank, m.path, m.score, [(term.score, term.cells) for term in m.terms]) for m in result.matches]
    return prepared, page, result.total, result.counted


def assert_same_as_the_statement(engine, text: str, monkeypatch, **options) -> bool:
    """The page and count from the runs are the statement's (a count the statement stopped at N: more than N);
    whether the runs answered."""
    prepared, page, total, counted = answers(engine, text, **options)
    with monkeypatch.context() as patched:
        patched.setattr(query.search, "keeps_runs", lambda bind: False)
        statement, their_page, their_total, their_counted = answers(engine, text, **options)
    assert statement.runs is None
    assert page == their_page, text
    assert counted and (total == their_total if their_counted else total > their_total), text
    return prepared.runs is not None


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A 3,000-photo synthetic index as `bench/query_latency.py` builds it: both sources' classes, compounds,
    calibrated ImageNet classes, failed photos, and ties (its photos copy 126 real photos' detector rows)."""
    sys.path.insert(0, str(BENCH))
    try:
        latency = importlib.import_module("query_latency")
    finally:
        sys.path.remove(str(BENCH))
    db = tmp_path_factory.mktemp("runs") / "synthetic.db"
    latency.build(db, 3000, log=lambda *_: None)
    names = [name for name in latency.popular_labels(db, 12)[0] if name not in ("person", "face")]
    engine = store.open_index(str(db), create=False, readonly=True)
    yield engine, names
    engine.dispose()


@pytest.mark.slow
def test_ands_of_two_words_from_the_runs_are_the_statements(synthetic, monkeypatch):
    engine, names = synthetic
    typed = ["person", "people", "face", "dog", "cat", "car", "chair", "cup", "animal", "vehicle", *names[:6]]
    regions = ["", " in top row", " in left column", " in center", " in bottom-right", " > 0.7"]
    rng = random.Random(26)
    queries = ["animal AND people", "people AND people in top row", f"{names[0]} AND {names[1]}",
               f"person in top row AND {names[0]}"]
    queries += [f"{rng.choice(typed)}{rng.choice(regions)} AND {rng.choice(typed)}{rng.choice(regions)}"
                for _ in range(40)]
    answered = 0
    for text in queries:
        for offset, limit in ((0, 20), (20, 20), (0, 5), (3, 1)):
            answered += assert_same_as_the_statement(engine, text, monkeypatch, offset=offset, limit=limit)
    assert answered >= 100  # most of them: words of several classes summed are the statement's


@pytest.mark.slow
def test_relations_of_two_words_from_the_runs_are_the_statements(synthetic, monkeypatch):
    """Each relation, sides in regions and at thresholds of their own, a word of photo rows (``face``) and a
    word of the calibration's curve on either side: the cells a side holds decide, its best cell's value
    ranks."""
    engine, names = synthetic
    typed = ["person", "face", "dog", "cat", "car", "chair", "cup", *names[:6]]
    regions = ["", "", " in top row", " in left column", " in center", " > 0.7"]
    relations = ["left of", "right of", "above", "below", "next to"]
    rng = random.Random(27)
    queries = [f"{names[0]} {kind} {names[1]}" for kind in relations] + ["face below person", "person left of face"]
    queries += [f"{rng.choice(typed)}{rng.choice(regions)} {rng.choice(relations)} {rng.choice(typed)}"
                f"{rng.choice(regions)}" for _ in range(30)]
    answered = 0
    for text in queries:
        for offset, limit in ((0, 20), (20, 20), (3, 1)):
            answered += assert_same_as_the_statement(engine, text, monkeypatch, offset=offset, limit=limit)
    assert answered >= 80


@pytest.mark.slow
def test_a_page_scrolled_on_from_the_runs_is_the_page_asked_at_that_offset(synthetic):
    """`imgidx serve` moves a prepared query's page on (`CompiledQuery.at_offset`) without preparing it again."""
    engine, _ = synthetic
    prepared = prepare(engine, "animal AND people")
    scrolled = execute(engine, replace(prepared, compiled=prepared.compiled.at_offset(20), offset=20))
    asked = execute(engine, prepare(engine, "animal AND people", offset=20))
    assert prepared.runs is not None and len(asked.matches) == 20
    assert [(m.rank, m.image_id) for m in scrolled.matches] == [(m.rank, m.image_id) for m in asked.matches]
    assert scrolled.total == asked.total


@pytest.mark.slow
def test_other_queries_and_options_stay_with_the_statement(synthetic, monkeypatch):
    engine, names = synthetic
    for text, options in (("animal AND people", {"limit": None}), ("dog AND cat", {"sort": "newest"}),
                          ("dog AND cat", {"within": lambda images: images.c.image_id > 1000}),
                          ("dog left of dog", {}), ('"exit" left of dog', {}), ("dog AND cat AND person", {}),
                          ("dog AND NOT cat", {}), ("dog left of cat AND person", {}), ('"exit" AND dog', {})):
        prepared = prepare(engine, text, **options)
        assert prepared.runs is None, text


@pytest.mark.slow
def test_explain_names_the_runs(synthetic):
    engine, _ = synthetic
    prepared = prepare(engine, "animal AND people")
    assert prepared.runs is not None
    assert "plan: an AND of two words intersected from the class runs (query.runs); the page's rows: candidates: " \
           "the photos listed" in explain(engine, prepared)
    relation = prepare(engine, "person left of dog")
    assert relation.runs is not None
    assert "plan: 'left of' of two words tested from the class runs (query.runs); the page's rows: " \
           in explain(engine, relation)


@pytest.mark.parametrize("looked_up", [0, 10**6])
def test_photos_due_again_are_left_out_of_the_runs_answers_as_of_the_statements(tmp_path, monkeypatch, looked_up):
    """A ``--reindex`` run marks every photo due and keeps its rows until it is labelled again (`query.compile.
    unlabelled`): the runs still hold them, and both ways of finding those left out (each match looked up, or
    every photo left out read) leave them out."""
    from indexer.labels import FACE_CLASS
    from query_helpers import SCHOOL_BUS, TABBY, make_index, random_images

    monkeypatch.setattr("query.runs.LOOKED_UP", looked_up)
    engine = make_index(tmp_path / "index.db", random_images(5, 80, {TABBY: 0.4, SCHOOL_BUS: 0.3, FACE_CLASS: 0.5},
                                                            (0.05, 0.3, 0.5, 0.9)))
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE images SET model = NULL WHERE image_id % 4 = 0")
    for text in ("tabby AND school bus", "face in top row AND tabby", "face AND school bus > 0.5",
                 "tabby left of school bus", "face above tabby"):
        assert assert_same_as_the_statement(engine, text, monkeypatch, limit=50), text
    engine.dispose()


@pytest.mark.parametrize("text", ["tabby AND school bus", "tabby left of school bus"])
def test_a_writer_committing_between_the_runs_reads_shows_in_none_of_them(tmp_path, monkeypatch, text):
    """An `imgidx index` run beside `imgidx serve`: the runs' reads and the page's statement see the index as
    it was when the first of them read it (`query.runs.one_snapshot`), not the photos deleted meanwhile."""
    import query.runs
    from query_helpers import SCHOOL_BUS, TABBY, make_index, random_images

    db = tmp_path / "index.db"
    engine = make_index(db, random_images(7, 60, {TABBY: 0.4, SCHOOL_BUS: 0.4}, (0.3, 0.5, 0.9)))
    prepared, before, total, _ = answers(engine, text, limit=50)
    assert prepared.runs is not None and total > 20
    writer = store.open_index(str(db), create=False)
    read_runs, reads = query.runs.read_runs, []

    def then_delete_every_photo(*args, **kwargs):
        found = read_runs(*args, **kwargs)
        if not reads:
            with writer.begin() as conn:
                t = store.tables(conn)
                store.delete_images(conn, t, list(conn.execute(sa.select(t.images.c.image_id)).scalars()))
        reads.append(args)
        return found

    monkeypatch.setattr(query.runs, "read_runs", then_delete_every_photo)
    _, during, total_during, _ = answers(engine, text, limit=50)
    assert len(reads) == 2 and (during, total_during) == (before, total)
    _, after, total_after, _ = answers(engine, text, limit=50)
    assert (after, total_after) == ([], 0)
    writer.dispose()
    engine.dispose()
