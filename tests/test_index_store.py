"""The index database: the schema SQLAlchemy sees matches schema.sql; the write and read-back paths."""

import re
import sqlite3

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from indexer import calibration, store
from indexer.errors import SchemaVersionError
from indexer.regions import CellLabel, ImageLabel, Regions
from indexer.store import FileRow, IndexSettings

SETTINGS = IndexSettings("fake", 64, "fp32")


def declared_schema():
    """Tables (columns, types, NOT NULL, primary key, unique, foreign keys) and indexes as schema.sql writes them."""
    tables, indexes = {}, {}
    for statement in store.schema_statements():
        if match := re.match(r"CREATE TABLE IF NOT EXISTS (\w+) \((.*)\)$", statement, re.S):
            name, body = match.groups()
            columns, primary, unique, foreign = {}, [], [], set()
            for part in store.top_level_items(body):
                if table_pk := re.match(r"PRIMARY KEY \(([^)]*)\)", part):
                    primary = [c.strip() for c in table_pk.group(1).split(",")]
                    continue
                column, col_type = part.split()[:2]
                columns[column] = (col_type, "NOT NULL" in part or "PRIMARY KEY" in part)
                if "PRIMARY KEY" in part:
                    primary = [column]
                if "UNIQUE" in part:
                    unique.append([column])
                if ref := re.search(r"REFERENCES (\w+) \((\w+)\)( ON DELETE CASCADE)?", part):
                    foreign.add(((column,), ref.group(1), (ref.group(2),), "CASCADE" if ref.group(3) else None))
            tables[name] = (columns, primary, unique, foreign)
        elif match := re.match(r"CREATE INDEX IF NOT EXISTS (\w+) ON (\w+) \(([^)]*)\)(?: WHERE [^;]*)?$", statement):
            name, table, cols = match.groups()
            indexes[name] = (table, [c.strip() for c in cols.split(",")])
    return tables, indexes


def test_reflected_tables_match_schema_sql(tmp_path):
    tables, indexes = declared_schema()
    assert set(tables) == set(store.TABLE_NAMES)
    engine = store.open_index(str(tmp_path / "index.db"))
    inspector = sa.inspect(engine)
    for name, (columns, primary, unique, _) in tables.items():
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


#: How PostgreSQL holds schema.sql's types (`store.PG_REWRITES`); the rest are the same on both.
PG_TYPES = {"REAL": "DOUBLE PRECISION", "BLOB": "BYTEA"}


def described(engine) -> dict:
    """Each table as SQLAlchemy reflects it, in one shape for both backends: columns (name, type as
    PostgreSQL holds it, nullable), primary key, unique column sets, foreign keys (with ON DELETE),
    indexes, and the number of CHECK constraints."""
    inspector = sa.inspect(engine)
    sqlite = engine.dialect.name == "sqlite"
    tables = {}
    for name in store.TABLE_NAMES:
        primary = inspector.get_pk_constraint(name)["constrained_columns"]
        columns = [
            (c["name"], PG_TYPES.get(str(c["type"]), str(c["type"])), c["nullable"] and c["name"] not in primary)
            for c in inspector.get_columns(name)
        ]
        unique = {tuple(u["column_names"]) for u in inspector.get_unique_constraints(name)}
        indexes = {}
        for index in inspector.get_indexes(name, **({"include_auto_indexes": True} if sqlite else {})):
            if index["name"].startswith("sqlite_autoindex"):
                if index["column_names"] != primary:
                    unique.add(tuple(index["column_names"]))
            elif not index.get("duplicates_constraint"):
                indexes[index["name"]] = (tuple(index["column_names"]), bool(index["unique"]))
        if sqlite:  # SQLAlchemy does not read ON DELETE back from SQLite: its own pragma does
            with engine.connect() as conn:
                foreign = {
                    ((row[3],), row[2], (row[4],), None if row[6] == "NO ACTION" else row[6])
                    for row in conn.exec_driver_sql(f"PRAGMA foreign_key_list({name})")
                }
        else:
            foreign = {
                (tuple(fk["constrained_columns"]), fk["referred_table"], tuple(fk["referred_columns"]),
                 fk["options"].get("ondelete"))
                for fk in inspector.get_foreign_keys(name)
            }
        checks = len(inspector.get_check_constraints(name))
        tables[name] = (columns, primary, unique, foreign, indexes, checks)
    return tables


def handles_described(t: store.Tables) -> dict:
    """`store.tables`' handles in the shape of `described`, without the indexes and CHECKs they leave out."""
    pg = postgresql.dialect()
    return {
        table.name: (
            [(c.name, c.type.compile(dialect=pg), c.nullable) for c in table.columns],
            [c.name for c in table.primary_key.columns],
            {(c.name,) for c in table.columns if c.unique},
            {((fk.parent.name,), fk.column.table.name, (fk.column.name,), fk.ondelete) for fk in table.foreign_keys},
        )
        for table in vars(t).values()
    }


def test_table_handles_are_the_live_tables_without_reflection(index_url):
    engine = store.open_index(index_url)
    statements = []
    sa.event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    t = store.tables(engine)
    assert statements == []  # nothing read from the database: schema.sql says what the tables are
    assert handles_described(t) == {name: shape[:4] for name, shape in described(engine).items()}
    engine.dispose()


def declared_described() -> dict:
    """schema.sql's tables in the shape of `described`."""
    tables, indexes = declared_schema()
    return {
        name: (
            [(c, PG_TYPES.get(col_type, col_type), not not_null) for c, (col_type, not_null) in columns.items()],
            primary,
            {tuple(u) for u in unique},
            foreign,
            {k: (tuple(cols), False) for k, (table, cols) in indexes.items() if table == name},
            1 if name in ("cell_labels", "class_runs") else 0,
        )
        for name, (columns, primary, unique, foreign) in tables.items()
    }


def test_postgresql_holds_the_same_schema_as_sqlite_and_schema_sql(tmp_path, pg_url):
    pg, lite = store.open_index(pg_url), store.open_index(str(tmp_path / "index.db"))
    try:
        assert described(pg) == described(lite) == declared_described()
        inspector = sa.inspect(pg)
        identities = {
            (table, c["name"]) for table in store.TABLE_NAMES for c in inspector.get_columns(table) if c.get("identity")
        }
        assert identities == {("images", "image_id")}  # numbered by the database, as SQLite's rowid is
        with pg.connect() as conn:
            checks = conn.exec_driver_sql(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'cell_labels'::regclass "
                "AND contype = 'c'"
            ).scalars().all()
        assert checks == ["CHECK (((cell >= 0) AND (cell <= 8)))"]
    finally:
        pg.dispose()
        lite.dispose()


def test_postgresql_schema_is_schema_sql_with_the_named_rewrites():
    lite, pg = store.schema_statements("sqlite"), store.schema_statements("postgresql")
    assert [name for name, _, _ in store.PG_REWRITES] == [
        "image ids numbered by the database", "scores as 8-byte doubles",
        "words ordered by their bytes, so a prefix is a range of the index", "blobs as byte strings",
    ]
    changed = [(a, b) for a, b in zip(lite, pg, strict=True) if a != b]
    word_index = [(a, b) for a, b in changed if a.startswith("CREATE INDEX")]
    assert word_index == [(a, a.replace("(word,", '(word COLLATE "C",')) for a, _ in word_index]
    assert len(word_index) == 1
    changed = [pair for pair in changed if pair not in word_index]
    assert [re.match(r"CREATE TABLE IF NOT EXISTS (\w+)", a).group(1) for a, _ in changed] == [
        "images", "image_labels", "cell_labels", "boxes", "texts", "text_words", "class_runs"
    ]
    for a, b in changed:
        identity = r"\1INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
        retyped = a.replace(" REAL ", " DOUBLE PRECISION ").replace(" BLOB ", " BYTEA ")
        assert b == re.sub(r"(image_id +)INTEGER PRIMARY KEY", identity, retyped)
    assert "DOUBLE PRECISION" not in "".join(lite) and " REAL " not in "".join(pg) and " BLOB " not in "".join(pg)


def regions(class_id: int, score: float = 0.5) -> Regions:
    return Regions(
        [ImageLabel(class_id, score, 1.0)],
        [CellLabel(cell, class_id, score, 1.0) for cell in range(9)],
    )


@pytest.fixture
def engine(index_url):
    """An empty index, once in SQLite and once in PostgreSQL."""
    engine = store.open_index(index_url)
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


def test_upsert_inserts_or_replaces_by_path_and_returns_ids_in_row_order(engine):
    t = store.tables(engine)
    with engine.begin() as conn:
        b, a = store.upsert_images(conn, t, [FileRow("/p/b.jpg", 1, 1, "hb"), FileRow("/p/a.jpg", 1, 1, "ha")])
        conn.execute(t.image_labels.insert(), [{"image_id": a, "class_id": 5, "score": 0.5, "share": 1.0}])
        conn.execute(t.cell_labels.insert(), [{"image_id": b, "cell": 0, "class_id": 5, "score": 0.5, "coverage": 1.0}])
    assert a != b
    rows = [
        FileRow("/p/c.jpg", 3, 3, "hc"), FileRow("/p/a.jpg", 2, 2, "ha2", model="fake"), FileRow("/p/b.jpg", 2, 2, "hb")
    ]
    with engine.begin() as conn:
        c, a2, b2 = store.upsert_images(conn, t, rows, ["2001-01-01T00:00:00+00:00"] * 3)
    assert (a2, b2) == (a, b) and c not in (a, b)
    assert label_rows(engine) == ([], 0)  # the replaced rows' labels are gone
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT path, size_bytes, content_hash, model, indexed_at FROM images")).all()
    assert sorted(stored) == [
        ("/p/a.jpg", 2, "ha2", "fake", "2001-01-01T00:00:00+00:00"),
        ("/p/b.jpg", 2, "hb", None, "2001-01-01T00:00:00+00:00"),
        ("/p/c.jpg", 3, "hc", None, "2001-01-01T00:00:00+00:00"),
    ]
    with engine.begin() as conn:
        assert store.upsert_images(conn, t, []) == []


def test_upsert_reads_the_ids_back_where_sqlite_has_no_returning(tmp_path):
    engine = store.open_index(str(tmp_path / "index.db"))
    engine.dialect.insert_returning = engine.dialect.insert_executemany_returning = False  # as SQLite < 3.35
    t = store.tables(engine)
    with engine.begin() as conn:
        first = store.upsert_images(conn, t, [FileRow("/p/b.jpg", 1, 1, "hb"), FileRow("/p/a.jpg", 1, 1, "ha")])
        again = store.upsert_images(conn, t, [FileRow("/p/a.jpg", 2, 2, "ha"), FileRow("/p/c.jpg", 1, 1, "hc")])
    assert again[0] == first[1] and again[1] not in first
    assert rows_by_path(engine) == {"/p/a.jpg": 2, "/p/b.jpg": 1, "/p/c.jpg": 1}
    engine.dispose()


def rows_by_path(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT path, size_bytes FROM images")).all())


def test_settings_are_replaced_in_place(engine):
    t = store.tables(engine)
    other = IndexSettings("fake", 128, "bf16")
    for settings in (SETTINGS, SETTINGS, other):
        with engine.begin() as conn:
            store.write_settings(conn, t, settings)
    with engine.connect() as conn:
        assert store.read_settings(conn) == other
        assert store.read_settings_locked(conn, t, exclusive=True) == other
        assert conn.execute(sa.text("SELECT COUNT(*) FROM meta")).scalar_one() == 10  # schema_version and nine


def test_label_ties_and_failures_list_in_the_same_order_on_both_backends(engine):
    t = store.tables(engine)
    tied = Regions(
        [ImageLabel(7, 0.25, 0.5), ImageLabel(3, 0.25, 0.5)], [CellLabel(0, 7, 0.25, 0.5), CellLabel(0, 3, 0.25, 0.5)]
    )
    failed = ["/p/b.jpg", "/p/B.jpg", "/p/a_b.jpg", "/p/a-c.jpg", "/p/ab.jpg"]
    with engine.begin() as conn:
        store.write_settings(conn, t, SETTINGS)
        store.save_images(conn, t, [(FileRow("/p/x.jpg", 1, 1, "h", 40, 30, "fake", 64), tied)])
        store.save_images(conn, t, [(FileRow(p, 0, 1, None, error=f"{p}: bad"), None) for p in failed])
    with engine.connect() as conn:
        report = store.image_report(conn, path="/p/x.jpg")
        stats = store.index_stats(conn)
    assert [label.class_id for label in report.labels] == [3, 7]
    assert [label.class_id for label in report.cells[0]] == [3, 7]
    assert [path for path, _ in stats.failures] == sorted(failed)  # by bytes, as SQLite orders text


def test_stats_ranks_each_images_labels_by_calibrated_confidence_as_show_does(engine):
    """Pizza (963) is a class the network names often, a cougar (286) one it names rarely: with less evidence,
    the cougar is the likelier label. Faces (1000) are read as stored."""
    t = store.tables(engine)
    settings = IndexSettings("efficientnet-lite0", 448, "fp32")
    cal = calibration.for_model(settings.model)
    assert cal.probability(0.1, (286,)) > cal.probability(0.2, (963,))
    assert cal.probability(0.3, (963,)) < 0.99

    def labelled(scores: dict[int, float]) -> Regions:
        return Regions([ImageLabel(k, e, 1.0) for k, e in scores.items()],
                       [CellLabel(4, k, e, 1.0) for k, e in scores.items()])

    photos = {"/p/a.jpg": {963: 0.2, 286: 0.1}, "/p/b.jpg": {963: 0.2, 286: 0.1}, "/p/c.jpg": {963: 0.9},
              "/p/d.jpg": {963: 0.3, 1000: 0.99}}
    with engine.begin() as conn:
        store.write_settings(conn, t, settings)
        store.save_images(conn, t, [(FileRow(p, 10, 1, p, 40, 30, settings.model, 448), labelled(scores))
                                    for p, scores in photos.items()])
    with engine.connect() as conn:
        stats = store.index_stats(conn)
        leaders = [store.image_report(conn, path=p).labels[0].class_id for p in photos]
    assert leaders == [286, 286, 963, 1000]
    assert stats.top_labels == [(286, "cougar", 2), (963, "pizza", 1), (1000, "face", 1)]


def test_stats_leaders_are_shows_leaders_for_random_labels(engine):
    """Random evidence over classes of every prior, faces among them, ties at the curve's flat ends: each
    image's top label in `stats` is the first label `show` lists."""
    import collections
    import random

    t = store.tables(engine)
    settings = IndexSettings("efficientnet-lite0", 448, "fp32")
    rng = random.Random(21)
    photos = {}
    for i in range(60):
        classes = rng.sample(range(1000), 6) + ([1000] if i % 3 == 0 else [])
        photos[f"/p/{i:02}.jpg"] = {  # mostly where priors decide, some at the flat ends
            k: rng.choice([rng.uniform(0, 0.3)] * 5 + [rng.uniform(0, 1e-4), rng.choice([1.0, 1.5])]) for k in classes
        }
    with engine.begin() as conn:
        store.write_settings(conn, t, settings)
        store.save_images(conn, t, [
            (FileRow(p, 10, 1, p, 40, 30, settings.model, 448),
             Regions([ImageLabel(k, e, 1.0) for k, e in scores.items()],
                     [CellLabel(4, k, e, 1.0) for k, e in scores.items()]))
            for p, scores in photos.items()
        ])
    with engine.connect() as conn:
        leaders = collections.Counter(store.image_report(conn, path=p).labels[0].class_id for p in photos)
        stats = store.index_stats(conn, top=len(photos))
    assert {class_id: count for class_id, _, count in stats.top_labels} == dict(leaders)


def _refused_read_only_then_upgraded(db, version: int) -> None:
    """An index of an older ``version`` that only gains indexes: a read-only opening names the command that
    brings it up to date, and an opening for writing does."""
    with pytest.raises(SchemaVersionError) as refused:
        store.open_index(str(db), readonly=True)
    assert str(refused.value) == (f"{db} has schema version {version}; bring it up to date (it gains indexes for "
                                  f"faster queries, and nothing is read again): imgidx index FOLDER --db {db}")
    store.open_index(str(db)).dispose()


def test_a_version_6_index_gains_the_indexes_of_one_term_queries(tmp_path):
    db = tmp_path / "old.db"
    store.open_index(str(db)).dispose()
    with sqlite3.connect(db) as conn:  # as version 6 left it
        conn.execute("DROP INDEX images_unlabelled")
        conn.execute("DROP INDEX image_labels_class_image")
        conn.execute("CREATE INDEX image_labels_class ON image_labels (class_id, score)")
        conn.execute("UPDATE meta SET value = '6' WHERE key = 'schema_version'")
    _refused_read_only_then_upgraded(db, 6)
    with sqlite3.connect(db) as conn:
        names = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
    assert version == str(store.SCHEMA_VERSION) == "10"
    assert {"images_unlabelled", "image_labels_class_image"} <= names and "image_labels_class" not in names


@pytest.mark.parametrize("version, index, table, row, columns", [
    (7, "cell_labels_image_class", "cell_labels", {"image_id": 1, "cell": 4, "class_id": 281, "score": 0.5,
                                                   "coverage": 1.0}, "(image_id, class_id, cell, score)"),
    (8, "image_labels_class_by_image", "image_labels", {"image_id": 1, "class_id": 281, "score": 0.5, "share": 1.0},
     "(class_id, image_id, score)"),
])
def test_a_version_7_or_8_index_gains_the_index_it_lacks_and_keeps_its_rows(tmp_path, version, index, table, row,
                                                                             columns):
    """Version 8's index: terms computed per candidate; version 9's: a class's photos in image order."""
    db = tmp_path / "old.db"
    engine = store.open_index(str(db))
    t = store.tables(engine)
    with engine.begin() as conn:
        conn.execute(t.images.insert().values(image_id=1, path="/p/a.jpg", size_bytes=1, mtime_ns=1, model="m",
                                              indexed_at="2026-01-01T00:00:00Z"))
        conn.execute(getattr(t, table).insert().values(**row))
    engine.dispose()
    with sqlite3.connect(db) as conn:  # as that version left it
        conn.execute(f"DROP INDEX {index}")
        conn.execute("DROP TABLE class_runs")
        conn.execute(f"UPDATE meta SET value = '{version}' WHERE key = 'schema_version'")
    _refused_read_only_then_upgraded(db, version)
    with sqlite3.connect(db) as conn:
        indexed = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (index,)).fetchone()
        found = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
        kept = conn.execute(f"SELECT {', '.join(row)} FROM {table}").fetchall()
    assert found == str(store.SCHEMA_VERSION) == "10" and kept == [tuple(row.values())]
    assert indexed[0].endswith(f"ON {table} {columns}")


def test_an_index_whose_making_was_cut_short_is_made_again_by_the_next_run(tmp_path, monkeypatch):
    import indexer.store.opening as opening

    def killed(*_):
        raise KeyboardInterrupt  # as a kill -9 after the tables and before the schema version

    db = tmp_path / "index.db"
    with monkeypatch.context() as patched:
        patched.setattr(opening, "_fill_classes", killed)
        with pytest.raises(KeyboardInterrupt):
            store.open_index(str(db))
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == []
    engine = store.open_index(str(db))
    with engine.connect() as conn:
        version = conn.execute(sa.text("SELECT value FROM meta WHERE key = 'schema_version'")).scalar_one()
    engine.dispose()
    assert version == str(store.SCHEMA_VERSION)
