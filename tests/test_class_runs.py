"""`indexer.store.runs`: the class runs hold exactly the label rows after every path that writes them."""

import shutil
import sqlite3

import numpy as np
import pytest

from fake_backbone import FakeBackbone
from indexer import merge, pipeline, store
from indexer.labels import COMPOUND_BASE
from indexer.regions import CellLabel, ImageLabel, Regions
from indexer.store import FileRow, IndexSettings
from test_pipeline import BLUE, RED, paint


def runs_and_rows(db) -> tuple[list, list]:
    """The runs decoded as (class, cell, image, score) entries, and the label rows as such, both sorted; each
    run's ids checked ascending and inside its run."""
    with sqlite3.connect(db) as conn:
        entries = []
        for class_id, cell, run, ids, scores in conn.execute("SELECT * FROM class_runs"):
            ids, scores = np.frombuffer(ids, "<u4"), np.frombuffer(scores, "<f8")
            assert len(ids) == len(scores) > 0 and np.all(np.diff(ids.astype(np.int64)) > 0)
            assert np.all(ids // store.RUN_IDS == run)
            entries += [(class_id, cell, int(i), float(s)) for i, s in zip(ids, scores)]
        rows = conn.execute("SELECT class_id, cell, image_id, score FROM cell_labels UNION ALL "
                            "SELECT class_id, -1, image_id, score FROM image_labels").fetchall()
    return sorted(entries), sorted(rows)


def assert_mirrored(db) -> int:
    entries, rows = runs_and_rows(db)
    assert entries == rows
    return len(rows)


def build(db, folders, **options):
    engine = store.open_index(str(db))
    pipeline.index(engine, [str(f) for f in folders], lambda s: FakeBackbone(), model="fake", size=96,
                   precision="fp32", batch=4, **options)
    engine.dispose()
    return db


def photos(folder, count, offset=0):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        paint(folder / f"{i}.jpg", {(i + offset) % 9: RED, (8 - i) % 9: BLUE})
    return folder


def test_indexing_adding_changing_copying_and_removing_photos_keeps_the_runs_equal_to_the_rows(tmp_path):
    folder = photos(tmp_path / "photos", 7)
    db = build(tmp_path / "index.db", [folder])
    assert assert_mirrored(db) > 0
    photos(folder, 3, offset=4)  # three photos changed: their rows replaced under the same ids
    shutil.copy(folder / "5.jpg", folder / "copy.jpg")  # a copy: its labels copied from the original's rows
    (folder / "6.jpg").unlink()  # a photo gone: pruned
    photos(folder / "more", 2, offset=1)
    build(db, [folder])
    assert sql_count(db, "SELECT count(*) FROM images WHERE path LIKE '%copy.jpg'") == 1
    assert sql_count(db, "SELECT count(*) FROM images WHERE path LIKE '%/6.jpg'") == 0
    assert_mirrored(db)
    build(db, [folder], reindex=True)  # every photo labelled again
    assert_mirrored(db)


def sql_count(db, statement) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute(statement).fetchone()[0]


def test_merging_indexes_keeps_the_runs_equal_to_the_rows(tmp_path):
    sources = [build(tmp_path / f"src{n}.db", [photos(tmp_path / f"disk{n}", 4, n)]) for n in range(2)]
    into = tmp_path / "merged.db"
    merge.merge([str(s) for s in sources], str(into))
    assert assert_mirrored(into) == sum(len(runs_and_rows(s)[1]) for s in sources)
    merge.merge([str(sources[0])], str(into))  # nothing newer: nothing changes
    assert_mirrored(into)


def test_compound_rows_replaced_and_a_reset_keep_the_runs_equal_to_the_rows(tmp_path):
    db = tmp_path / "index.db"
    engine = store.open_index(str(db))
    t = store.tables(engine)
    many = store.RUN_IDS + 5  # ids in two runs
    with engine.begin() as conn:
        store.write_settings(conn, t, IndexSettings("efficientnet-lite0", 448, "fp32"))
        store.save_images(conn, t, [
            (FileRow(f"/p/{i}.jpg", 1, 1, f"h{i}", 40, 30, "efficientnet-lite0", 448),
             Regions([ImageLabel(i % 7, 0.5 + i / 1e5, 1.0)], [CellLabel(i % 9, i % 7, 0.5 + i / 1e5, 1.0)]))
            for i in range(many)
        ])
    assert assert_mirrored(db) == 2 * many
    with engine.begin() as conn:
        store.add_classes(conn, t, [{"class_id": COMPOUND_BASE, "wnid": "n0", "name": "both", "names": "both"}])
        ids = [1, 2, store.RUN_IDS + 2]
        store.replace_compound_rows(conn, t, ids, [{"image_id": i, "class_id": COMPOUND_BASE, "score": 0.3,
                                                    "share": 0.0} for i in ids],
                                    [{"image_id": i, "cell": 4, "class_id": COMPOUND_BASE, "score": 0.3,
                                      "coverage": 0.0} for i in ids])
    assert assert_mirrored(db) == 2 * many + 6
    with engine.begin() as conn:
        store.replace_compound_rows(conn, t, ids[:2], [], [])
        store.delete_images(conn, t, [3, store.RUN_IDS + 1])
    assert assert_mirrored(db) == 2 * many + 2 - 4
    with engine.begin() as conn:
        store.mark_all_stale(conn, t, drop_labels=True)
    assert assert_mirrored(db) == 0
    engine.dispose()


def test_a_version_9_index_gains_runs_made_from_its_rows(tmp_path):
    db = build(tmp_path / "old.db", [photos(tmp_path / "photos", 5)])
    with sqlite3.connect(db) as conn:  # as version 9 left it
        conn.execute("DROP TABLE class_runs")
        conn.execute("UPDATE meta SET value = '9' WHERE key = 'schema_version'")
    store.open_index(str(db)).dispose()
    assert sql_count(db, "SELECT value FROM meta WHERE key = 'schema_version'") == str(store.SCHEMA_VERSION)
    assert assert_mirrored(db) > 0


def test_postgresql_keeps_no_runs(tmp_path, pg_url):
    engine = store.open_index(pg_url)
    t = store.tables(engine)
    with engine.begin() as conn:
        store.write_settings(conn, t, IndexSettings("efficientnet-lite0", 448, "fp32"))
        store.save_images(conn, t, [(FileRow("/p/a.jpg", 1, 1, "h", 40, 30, "efficientnet-lite0", 448),
                                     Regions([ImageLabel(3, 0.5, 1.0)], [CellLabel(4, 3, 0.5, 1.0)]))])
        assert not store.keeps_runs(conn)
        assert conn.execute(t.class_runs.select()).all() == []
    engine.dispose()


@pytest.mark.parametrize("scores", [[0.25, 0.5], [1e-9, 3.0]])
def test_runs_hold_the_rows_scores_bit_for_bit(tmp_path, scores):
    """Ranking from the runs ties where the statement ties only if the doubles are the same."""
    db = tmp_path / "index.db"
    engine = store.open_index(str(db))
    t = store.tables(engine)
    with engine.begin() as conn:
        store.save_images(conn, t, [(FileRow(f"/p/{n}.jpg", 1, 1, f"h{n}", 40, 30, "m", 448),
                                     Regions([ImageLabel(5, s / 3, 1.0)], [])) for n, s in enumerate(scores)])
    with engine.connect() as conn:
        found = store.read_runs(conn, 5, [store.ANYWHERE])[store.ANYWHERE]
    engine.dispose()
    assert found[0].tolist() == [1, 2] and found[1].tolist() == [s / 3 for s in scores]
