"""The index database: the schema SQLAlchemy sees matches schema.sql; the write and read-back paths."""

import re

import pytest
import sqlalchemy as sa

from indexer import store
from indexer.regions import CellLabel, ImageLabel, Regions
from indexer.store import FileRow, IndexSettings

SETTINGS = IndexSettings("fake", 64, "fp32")


def _split_top_level(body: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in body:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    return parts + [current.strip()]


def declared_schema():
    """Tables (columns, types, NOT NULL, primary key, unique) and indexes as schema.sql writes them."""
    tables, indexes = {}, {}
    for statement in store.schema_statements():
        if match := re.match(r"CREATE TABLE IF NOT EXISTS (\w+) \((.*)\)$", statement, re.S):
            name, body = match.groups()
            columns, primary, unique = {}, [], []
            for part in _split_top_level(body):
                if table_pk := re.match(r"PRIMARY KEY \(([^)]*)\)", part):
                    primary = [c.strip() for c in table_pk.group(1).split(",")]
                    continue
                column, col_type = part.split()[:2]
                columns[column] = (col_type, "NOT NULL" in part or "PRIMARY KEY" in part)
                if "PRIMARY KEY" in part:
                    primary = [column]
                if "UNIQUE" in part:
                    unique.append([column])
            tables[name] = (columns, primary, unique)
        elif match := re.match(r"CREATE INDEX IF NOT EXISTS (\w+) ON (\w+) \(([^)]*)\)$", statement):
            name, table, cols = match.groups()
            indexes[name] = (table, [c.strip() for c in cols.split(",")])
    return tables, indexes


def test_reflected_tables_match_schema_sql(tmp_path):
    tables, indexes = declared_schema()
    assert set(tables) == set(store.TABLE_NAMES)
    engine = store.open_index(str(tmp_path / "index.db"))
    inspector = sa.inspect(engine)
    for name, (columns, primary, unique) in tables.items():
        reflected = inspector.get_columns(name)
        assert [c["name"] for c in reflected] == list(columns), name
        for column in reflected:
            declared_type, not_null = columns[column["name"]]
            assert str(column["type"]) == declared_type, (name, column["name"])
            assert column["nullable"] is not not_null or column["name"] in primary, (name, column["name"])
        assert inspector.get_pk_constraint(name)["constrained_columns"] == primary, name
        # SQLite keeps an inline UNIQUE as an automatic unique index (as it does a non-rowid primary key);
        # SQLAlchemy reports some of them as unique constraints too.
        reflected_unique = {tuple(u["column_names"]) for u in inspector.get_unique_constraints(name)} | {
            tuple(i["column_names"])
            for i in inspector.get_indexes(name, include_auto_indexes=True)
            if i["name"].startswith("sqlite_autoindex") and i["unique"] and i["column_names"] != primary
        }
        assert reflected_unique == {tuple(u) for u in unique}, name
        reflected_indexes = {i["name"]: (name, i["column_names"]) for i in inspector.get_indexes(name)}
        assert reflected_indexes == {k: v for k, v in indexes.items() if v[0] == name}, name
    t = store.tables(engine)
    assert {fk.column.table.name for fk in t.cell_labels.foreign_keys} == {"images", "classes"}
    engine.dispose()


def regions(class_id: int, score: float = 0.5) -> Regions:
    return Regions(
        [ImageLabel(class_id, score, 1.0)],
        [CellLabel(cell, class_id, score, 1.0) for cell in range(9)],
    )


@pytest.fixture
def engine(tmp_path):
    engine = store.open_index(str(tmp_path / "index.db"))
    yield engine
    engine.dispose()


def label_rows(engine):
    with engine.connect() as conn:
        return (
            conn.execute(sa.text("SELECT i.path, l.class_id FROM image_labels l JOIN images i USING (image_id)")).all(),
            conn.execute(sa.text("SELECT COUNT(*) FROM cell_labels")).scalar_one(),
        )


def test_save_replaces_a_paths_row_and_its_labels(engine):
    t = store.tables(engine)
    row = FileRow("/p/a.jpg", 10, 1, "h1", 40, 30, "fake", 64)
    with engine.begin() as conn:
        store.write_settings(conn, t, SETTINGS)
        store.save_images(conn, t, [(row, regions(5)), (FileRow("/p/bad.jpg", 3, 1, None, error="bad"), None)])
    with engine.begin() as conn:
        store.save_images(conn, t, [(FileRow("/p/a.jpg", 11, 2, "h2", 40, 30, "fake", 64), regions(6))])
    assert label_rows(engine) == ([("/p/a.jpg", 6)], 9)
    with engine.connect() as conn:
        records = {r.path: r for r in store.file_records(conn, t)}
        assert store.read_settings(conn) == SETTINGS
    assert (records["/p/a.jpg"].size_bytes, records["/p/a.jpg"].content_hash) == (11, "h2")
    assert records["/p/a.jpg"].is_current(SETTINGS) and not records["/p/bad.jpg"].is_current(SETTINGS)


def test_copy_update_and_delete(engine):
    t = store.tables(engine)
    with engine.begin() as conn:
        store.save_images(conn, t, [(FileRow("/p/a.jpg", 10, 1, "h1", 40, 30, "fake", 64), regions(5))])
    with engine.connect() as conn:
        source = store.file_records(conn, t)[0]
    with engine.begin() as conn:
        store.copy_images(conn, t, [(FileRow("/q/copy.jpg", 10, 7, "h1", 40, 30, "fake", 64), source.image_id)])
        store.update_files(conn, t, [(source.image_id, "/p/moved.jpg", 10, 9)])
    assert sorted(label_rows(engine)[0]) == [("/p/moved.jpg", 5), ("/q/copy.jpg", 5)]
    assert label_rows(engine)[1] == 18
    with engine.begin() as conn:
        store.delete_images(conn, t, [source.image_id])
    assert label_rows(engine) == ([("/q/copy.jpg", 5)], 9)


def test_settings_reset_drops_or_keeps_labels(engine):
    t = store.tables(engine)
    with engine.begin() as conn:
        store.save_images(conn, t, [(FileRow("/p/a.jpg", 10, 1, "h1", 40, 30, "fake", 64), regions(5))])
        store.mark_all_stale(conn, t, drop_labels=False)
    assert label_rows(engine)[1] == 9
    with engine.connect() as conn:
        assert not store.file_records(conn, t)[0].is_current(SETTINGS)
    with engine.begin() as conn:
        store.mark_all_stale(conn, t, drop_labels=True)
    assert label_rows(engine) == ([], 0)


def test_read_back_for_show_and_stats(engine):
    t = store.tables(engine)
    with engine.begin() as conn:
        store.write_settings(conn, t, SETTINGS)
        store.save_images(
            conn,
            t,
            [
                (FileRow("/p/a.jpg", 10, 1, "h1", 40, 30, "fake", 64), regions(281, 0.7)),
                (FileRow("/p/b.jpg", 10, 1, "h2", 40, 30, "fake", 64), regions(281, 0.6)),
                (FileRow("/p/c.jpg", 10, 1, "h3", 40, 30, "fake", 64), regions(967, 0.9)),
                (FileRow("/p/x.jpg", 0, 1, None, error="/p/x.jpg: empty file"), None),
            ],
        )
    with engine.connect() as conn:
        report = store.image_report(conn, path="/p/a.jpg")
        assert report.labels[0].name == "tabby" and report.labels[0].score == pytest.approx(0.7)
        assert [cell[0].class_id for cell in report.cells] == [281] * 9
        assert store.image_report(conn, path="/nope.jpg") is None
        assert store.image_report(conn, path="/nope.jpg", content_hash="h3").path == "/p/c.jpg"
        stats = store.index_stats(conn, top=5)
    assert (stats.images, stats.labelled, stats.failed, stats.stale) == (4, 3, 1, 0)
    assert stats.top_labels == [(281, "tabby", 2), (967, "espresso", 1)]
    assert stats.models == [("fake", 64, 3)]
    assert stats.failures == [("/p/x.jpg", "/p/x.jpg: empty file")]
    assert (stats.image_label_rows, stats.cell_label_rows) == (3, 27)
