"""PostgreSQL as the index: the driver, one-line errors, the query plan, and concurrent writers.

Every other suite (store, pipeline, CLI, queries) runs on PostgreSQL too, through `index_url`; these are
the things only PostgreSQL has: a server to fail to reach, roles, a planner, several writers at once.
"""

import random
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from conftest import _free_port, pg_database
from fake_backbone import FakeBackbone
from indexer import pipeline, regions, store
from indexer.calibration import FUSION, FUSIONS, for_model
from indexer.errors import StoreError
from indexer.store import FileRow, IndexSettings
from query.compile import compile_query
from query.parser import parse
from query.resolve import resolve
from query.search import explain, prepare, search
from query_helpers import FLOWERPOT, SCHOOL_BUS
from test_pipeline import BLUE, GREEN, RED, labels_by_path, paint, rows

LITE0 = for_model("efficientnet-lite0")  # a fitted curve, so the statements carry its CASE

TESTS = str(Path(__file__).parent)


# --- Driver and errors --------------------------------------------------------------------------------


def test_a_bare_postgresql_url_uses_psycopg_3(pg_url):
    assert pg_url.startswith("postgresql://")
    engine = store.open_index(pg_url)
    assert (engine.dialect.name, engine.dialect.driver) == ("postgresql", "psycopg")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW application_name").scalar_one() == "imgidx"
    engine.dispose()


def test_a_missing_driver_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if psycopg were not installed
    with pytest.raises(StoreError) as missing:
        store.open_index("postgresql://someone@127.0.0.1:1/index")
    assert str(missing.value) == "a PostgreSQL index needs the psycopg driver: pip install 'imgidx[postgres]'"


def test_other_databases_are_refused_in_one_line():
    with pytest.raises(StoreError) as refused:
        store.open_index("mysql://someone:secret@localhost/index")
    assert str(refused.value) == (
        "an index lives in SQLite or PostgreSQL, not mysql: mysql://someone:***@localhost/index"
    )


def test_an_unreachable_server_is_one_line_without_the_password():
    port = _free_port()
    with pytest.raises(StoreError) as refused:
        store.open_index(f"postgresql://imgidx:s3cret@127.0.0.1:{port}/photos")
    assert str(refused.value) == (
        f"cannot open index postgresql://imgidx:***@127.0.0.1:{port}/photos: connection failed: "
        f'connection to server at "127.0.0.1", port {port} failed: Connection refused'
    )


def test_a_missing_database_or_role_is_one_line(pg_url):
    url = sa.engine.make_url(pg_url)
    missing = url.set(database="no_such_imgidx_db", password="s3cret")
    with pytest.raises(StoreError) as refused:
        store.open_index(missing.render_as_string(hide_password=False))
    assert str(refused.value) == (
        f"cannot open index {missing.render_as_string()}: connection failed: connection to server at "
        f'"{url.host}", port {url.port} failed: FATAL: database "no_such_imgidx_db" does not exist'
    )
    nobody = url.set(username="no_such_imgidx_role")
    with pytest.raises(StoreError, match=r'FATAL: role "no_such_imgidx_role" does not exist$'):
        store.open_index(nobody.render_as_string(hide_password=False))


def test_a_database_with_other_tables_or_nothing_in_it_is_refused(pg_url):
    with pytest.raises(StoreError, match=r"^postgresql://.* is an empty database, not an imgidx index$"):
        store.open_index(pg_url, create=False)
    other = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    with other.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    other.dispose()
    with pytest.raises(StoreError) as refused:
        store.open_index(pg_url)
    assert str(refused.value) == f"{pg_url} is not an imgidx index (it has other tables)"


@pytest.fixture
def reader_url(pg_url):
    """``pg_url`` as a role with a password that may read the index but not write it."""
    engine = store.open_index(pg_url)
    role = f"imgidx_reader_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN PASSWORD 's3cret'")
        conn.exec_driver_sql(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    engine.dispose()
    yield sa.engine.make_url(pg_url).set(username=role, password="s3cret").render_as_string(hide_password=False)
    admin = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    with admin.begin() as conn:
        conn.exec_driver_sql(f"DROP OWNED BY {role}")
        conn.exec_driver_sql(f"DROP ROLE {role}")
    admin.dispose()


def test_an_index_the_role_cannot_write_is_a_one_line_error_without_the_password(reader_url, tmp_path):
    paint(tmp_path / "photos/a.jpg", {0: RED})
    engine = store.open_index(reader_url)  # reading is allowed
    shown = sa.engine.make_url(reader_url).render_as_string()
    assert "s3cret" not in shown
    with pytest.raises(StoreError) as refused:
        pipeline.index(engine, [str(tmp_path / "photos")], lambda s: FakeBackbone(), model="fake", size=96,
                       precision="fp32")
    assert str(refused.value) == f"cannot write to the index {shown}: permission denied for table meta"
    engine.dispose()


def test_the_cli_reads_through_a_url_and_never_prints_its_password(pg_url, reader_url, tmp_path):
    from click.testing import CliRunner

    from indexer.cli import cli

    photo = paint(tmp_path / "photos/a.jpg", {0: RED})
    engine = store.open_index(pg_url)
    pipeline.index(engine, [str(tmp_path / "photos")], lambda s: FakeBackbone(), model="fake", size=96,
                   precision="fp32")
    engine.dispose()
    shown = sa.engine.make_url(reader_url).render_as_string()

    def imgidx(*argv):
        result = CliRunner().invoke(cli, [*argv, "--db", reader_url], prog_name="imgidx")
        assert result.exit_code == 0, result.output
        assert "s3cret" not in result.output
        return result.stdout

    assert imgidx("stats").splitlines()[:4] == [
        f"index: {shown}", "settings: fake at size 96 (fp32)", "detectors: faces on, objects on",
        "images: 1 (1 labelled, 0 failed, 0 stale)",
    ]
    assert f'"db": "{shown}"' in imgidx("stats", "--json")
    assert imgidx("show", str(photo)).startswith(f"{photo}\n")
    assert imgidx("query", "fire engine top-left", "--paths") == f"{photo}\n"
    explained = imgidx("query", "fire engine top-left", "--explain")
    assert "\nPostgreSQL query plan:\n  " in explained and "cell_labels" in explained


# --- Queries: one statement shape, the covering index -------------------------------------------------

SHAPE_QUERIES = [
    "school bus in center AND flower pot top-left",
    "dog in center AND flower pot top-left",
    "school bus OR crane",
    "cat left of dog",
    "NOT dog",
    "(crane OR dog in center > 0.5) AND NOT cat left of flower pot OR NOT school bus",
]
#: What the dialects spell differently; nothing else may differ: PostgreSQL's images sorted by path for a
#: query of NOT terms only (`query.compile._Compiler.in_path_order`; SQLite reads its index on path), bind
#: parameters (with PostgreSQL's casts), SQLite's many-argument max() for PostgreSQL's greatest(), and the
#: byte order of paths; how a LIMIT is written (SQLite adds an OFFSET to each, so the numbers of the
#: parameters after it differ too); SQLite's CROSS JOIN where candidates look up their own rows
#: (`query.compile._Driven`: the same join, its order fixed), and the index it names there; and SQLite's LIMIT
#: that keeps an intersection's ORDER BY (`query.compile._Compiler.kept_in_order`).
SPELLINGS = [
    (r"\s*\n LIMIT -1 OFFSET \?", ""), (r" INDEXED BY \w+", ""),
    (r'\(SELECT images\.image_id AS image_id, [^()]*\sFROM images ORDER BY images\.path COLLATE "C"\s+LIMIT ALL '
     r"OFFSET 0\) AS in_path_order", "images"),
    (r"\bin_path_order\.", "images."),
    (r"%\(\w+\)s(::[A-Z]+(?: PRECISION)?)?", "?"), (r"\bgreatest\(", "max("), (r"\bleast\(", "min("),
    (r' COLLATE "C" ?', ""),
    (r"\s*\n LIMIT \?( OFFSET \?)?", "\n LIMIT ? OFFSET ?"), (r"POSTCOMPILE_\w+", "POSTCOMPILE"),
    (r" CROSS JOIN ", " JOIN "),
]


def _normalised(sql: str) -> str:
    for pattern, replacement in SPELLINGS:
        sql = re.sub(pattern, replacement, sql)
    return sql


@pytest.mark.parametrize("query", SHAPE_QUERIES)
def test_a_query_compiles_to_the_same_statement_shape_for_both(tmp_path, query):
    engine = store.open_index(str(tmp_path / "index.db"))
    t = store.tables(engine)
    tree, found = resolve(parse(query), query)
    compiled = {
        name: str(compile_query(t, tree, found, dialect=name, limit=3, offset=2, calibration=LITE0).statement.compile(dialect=dialect))
        for name, dialect in (("sqlite", sqlite.dialect()), ("postgresql", postgresql.dialect(driver="psycopg")))
    }
    assert compiled["sqlite"] != compiled["postgresql"]
    assert _normalised(compiled["postgresql"]) == _normalised(compiled["sqlite"])
    engine.dispose()


#: Queries with terms of both sources (the detector's classes and ImageNet's), for every fusion rule.
FUSED_QUERIES = ["dog in center AND zebra top-left", "person left of giraffe", "NOT (cat OR car in center)"]


@pytest.mark.parametrize("rule", FUSIONS)
@pytest.mark.parametrize("query", FUSED_QUERIES)
def test_fused_terms_compile_to_the_same_statement_shape_for_both(tmp_path, query, rule):
    engine = store.open_index(str(tmp_path / "index.db"))
    t = store.tables(engine)
    tree, found = resolve(parse(query), query)
    compiled = {
        name: str(compile_query(t, tree, found, dialect=name, limit=3, calibration=LITE0, fusion=rule)
                  .statement.compile(dialect=dialect))
        for name, dialect in (("sqlite", sqlite.dialect()), ("postgresql", postgresql.dialect(driver="psycopg")))
    }
    assert _normalised(compiled["postgresql"]) == _normalised(compiled["sqlite"])
    engine.dispose()


#: Images of the planner test: enough that reading a few (class, cell) pairs beats reading the table.
PLANNED_IMAGES = 4000


@pytest.fixture(scope="module")
def big_index(pg_server):
    """A PostgreSQL index of `PLANNED_IMAGES` images, vacuumed and analysed: in each cell up to five of the
    1000 classes (drawn by hash), scores 0.05, 0.1, 0.3 or 0.6; and in every 50th image a school bus in the
    center and a flowerpot top-left."""
    with pg_database(pg_server) as url:
        engine = store.open_index(url)
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO images (image_id, path, size_bytes, mtime_ns, content_hash, width, height, model, "
                "working_size, indexed_at) SELECT i, '/big/' || lpad(i::text, 5, '0') || '.jpg', 1, 0, md5(i::text), "
                f"640, 480, 'fake', 96, '2025-01-01T00:00:00+00:00' FROM generate_series(1, {PLANNED_IMAGES}) i"
            )
            conn.exec_driver_sql(
                "INSERT INTO cell_labels (image_id, cell, class_id, score, coverage) "
                f"SELECT i, 4, {SCHOOL_BUS}, 0.6, 0.5 FROM generate_series(50, {PLANNED_IMAGES}, 50) i UNION ALL "
                f"SELECT i, 0, {FLOWERPOT}, 0.3, 0.5 FROM generate_series(50, {PLANNED_IMAGES}, 50) i"
            )
            conn.exec_driver_sql(
                "INSERT INTO cell_labels (image_id, cell, class_id, score, coverage) "
                "SELECT i, c, abs(hashtext(i || '/' || c || '/' || j)) %% 1000, "
                "(ARRAY[0.05, 0.1, 0.3, 0.6])[1 + abs(hashtext(j || '/' || c || '/' || i)) %% 4], 0.2 "
                f"FROM generate_series(1, {PLANNED_IMAGES}) i, generate_series(0, 8) c, generate_series(0, 4) j "
                "ON CONFLICT DO NOTHING"
            )
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
        yield engine
        engine.dispose()


@pytest.mark.parametrize(
    "query, rule",
    [("school bus in center AND flower pot top-left", FUSION), ("school bus in center", FUSION),
     ("flower pot left of school bus", FUSION), ("flower pot top-left AND NOT school bus in center", FUSION),
     *((fused, rule) for fused in ("zebra in center AND flower pot top-left", "giraffe top-left", "zebra in center")
       for rule in FUSIONS)],
)
def test_postgresql_reads_spatial_terms_from_the_covering_index(big_index, query, rule):
    text = explain(big_index, prepare(big_index, query, fusion=rule))
    plan = text[text.index("PostgreSQL query plan:"):]
    assert re.search(r"(Index Only Scan using|Index Scan using|Bitmap Index Scan on) cell_labels_class_cell_image\b",
                     plan), plan
    assert "Seq Scan on cell_labels" not in plan, plan


def test_the_big_index_answers_as_sqlite_would(big_index):
    """The planner test's index is a real one: a spatial AND finds what its rows say."""
    with big_index.connect() as conn:
        expected = conn.exec_driver_sql(
            f"SELECT path FROM images JOIN cell_labels a USING (image_id) JOIN cell_labels b USING (image_id) "
            f"WHERE a.class_id = {SCHOOL_BUS} AND a.cell = 4 AND a.score >= 0.2 "
            f"AND b.class_id = {FLOWERPOT} AND b.cell = 0 AND b.score >= 0.2 ORDER BY path"
        ).scalars().all()
    found = search(big_index, "school bus in center AND flower pot top-left", min_score=0.2, limit=None).matches
    assert sorted(m.path for m in found) == expected
    assert len(expected) >= PLANNED_IMAGES // 50


# --- Concurrent writers -------------------------------------------------------------------------------


def test_many_openers_of_an_empty_database_create_the_index_once(pg_url):
    errors, engines = [], []
    start = threading.Barrier(6)

    def open_it():
        start.wait()
        try:
            engines.append(store.open_index(pg_url))
        except Exception as exc:  # noqa: BLE001 - the test reports whatever went wrong
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with engines[0].connect() as conn:
        assert conn.execute(sa.text("SELECT key, value FROM meta")).all() == [("schema_version", str(store.SCHEMA_VERSION))]
        assert conn.execute(sa.text("SELECT COUNT(*) FROM classes")).scalar_one() == 1000 + 1 + 80  # the face and the COCO objects
    for engine in engines:
        engine.dispose()


def test_concurrent_upserts_of_the_same_paths_neither_duplicate_nor_deadlock(pg_url):
    engine = store.open_index(pg_url)
    t = store.tables(engine)
    paths = [f"/c/{i:03}.jpg" for i in range(200)]
    errors = []
    rounds = 5
    start = threading.Barrier(4)

    def writer(seed: int):
        rng = random.Random(seed)
        for _ in range(rounds):
            chosen = rng.sample(paths, 120)  # overlapping sets, each in its own order
            start.wait()
            try:
                with engine.begin() as conn:
                    ids = store.upsert_images(conn, t, [FileRow(p, seed, 1, "h") for p in chosen])
                    conn.execute(t.image_labels.insert(),
                                 [{"image_id": i, "class_id": seed, "score": 0.5, "share": 1.0} for i in ids])
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

    threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert rows(engine, "SELECT COUNT(*), COUNT(DISTINCT path) FROM images") == [(len(paths), len(paths))]
    # each row has exactly the label of the writer that wrote it last
    assert rows(engine, "SELECT COUNT(*) FROM images i JOIN image_labels l USING (image_id) "
                        "WHERE l.class_id <> i.size_bytes") == [(0,)]
    assert rows(engine, "SELECT COUNT(*) FROM image_labels") == [(len(paths),)]
    engine.dispose()


def test_a_transaction_aborted_to_break_a_deadlock_is_run_again(pg_url):
    """What PostgreSQL guarantees, not which victim it picks: a deadlock happens, so some transaction runs
    again; each ends committed, within `store.TRANSACTION_ATTEMPTS`; and both rows hold what one of them
    wrote, never a mix. (On a busy machine PostgreSQL may abort either, or each once.)"""
    engine = store.open_index(pg_url)
    t = store.tables(engine)
    with engine.begin() as conn:
        a, b = store.upsert_images(conn, t, [FileRow("/d/a.jpg", 0, 0, None), FileRow("/d/b.jpg", 0, 0, None)])
    attempts, errors = [], []
    both_hold_one = threading.Barrier(2)

    def work(first: int, second: int, size: int):
        def transaction(conn):
            attempts.append(size)
            touch = t.images.update().values(size_bytes=size)
            conn.execute(touch.where(t.images.c.image_id == first))
            if attempts.count(size) == 1:
                both_hold_one.wait()  # each holds one row and wants the other's: PostgreSQL aborts one
            conn.execute(touch.where(t.images.c.image_id == second))

        try:
            store.transaction(engine, transaction)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=args) for args in ((a, b, 1), (b, a, 2))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    tries = {size: attempts.count(size) for size in (1, 2)}
    assert max(tries.values()) >= 2 and max(tries.values()) <= store.TRANSACTION_ATTEMPTS, attempts
    assert rows(engine, "SELECT DISTINCT size_bytes FROM images") in ([(1,)], [(2,)])  # one whole transaction
    engine.dispose()


RUN = """
import sys, time
sys.path.insert(0, {tests!r})
from pathlib import Path
from fake_backbone import FakeBackbone
import fake_detector; fake_detector.install()
from indexer import pipeline, store
from indexer.errors import ImgidxError
Path({ready!r}).touch()
while not Path({go!r}).exists():
    time.sleep(0.002)
try:
    engine = store.open_index({db!r})
    model = lambda s: FakeBackbone(delay={delay}, hold_after={hold_after}, gate={gate!r}, held={held!r})
    summary = pipeline.index(engine, {roots!r}, model, model="fake", size={size}, precision="fp32", batch=4,
                             workers=2, reindex={reindex})
except ImgidxError as exc:
    print(type(exc).__name__, exc)
    sys.exit(1)
print("ok", summary.indexed + summary.unchanged + summary.copied + summary.moved, summary.failed, summary.indexed)
"""


#: Seconds a test waits for a child run: only against a hang, never an assertion about speed.
PATIENCE_S = 600


class Runs:
    """`pipeline.index` in child processes on one index, released together once all have started."""

    def __init__(self, folder: Path, db: str):
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.db = db
        self.go = folder / "go"
        self.children: list[subprocess.Popen] = []

    def start(self, roots, size=96, delay=0.0, reindex=False, hold_after=None, gate=None) -> subprocess.Popen:
        """A run, started once `release` is called; with ``hold_after`` its model holds after that many views
        until ``gate`` exists (`FakeBackbone`), having said so (`wait_held`)."""
        number = len(self.children)
        ready = self.folder / f"ready-{number}"
        held = str(self.folder / f"held-{number}") if hold_after is not None else None
        script = RUN.format(tests=TESTS, ready=str(ready), go=str(self.go), db=self.db, roots=[str(r) for r in roots],
                            delay=delay, size=size, reindex=reindex, hold_after=hold_after, gate=gate, held=held)
        child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
        self.children.append(child)
        self._wait_for(ready, child)
        return child

    def release(self) -> None:
        self.go.touch()

    def wait_held(self) -> None:
        """Until every run started with ``hold_after`` holds its model."""
        for number, child in enumerate(self.children):
            self._wait_for(self.folder / f"held-{number}", child)

    @staticmethod
    def _wait_for(path: Path, child: subprocess.Popen) -> None:
        deadline = time.monotonic() + PATIENCE_S
        while not path.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)

    def results(self) -> list[tuple[int, str, str]]:
        done = []
        for child in self.children:
            stdout, stderr = child.communicate(timeout=PATIENCE_S)
            done.append((child.returncode, stdout.strip(), stderr))
        return done


def _photos(root: Path, count: int) -> list[Path]:
    colours = [RED, GREEN, BLUE]
    return [paint(root / f"{i:03}.png", {i % 9: colours[i % 3], (i * 5 + 2) % 9: colours[(i + 1) % 3]})
            for i in range(count)]


def _reference(tmp_path: Path, roots, size: int = 96) -> dict:
    """What one process alone stores for ``roots`` (in SQLite)."""
    engine = store.open_index(str(tmp_path / f"reference-{size}.db"))
    pipeline.index(engine, [str(r) for r in roots], lambda s: FakeBackbone(), model="fake", size=size,
                   precision="fp32")
    labels = labels_by_path(engine)
    engine.dispose()
    return labels


@pytest.mark.slow
def test_concurrent_runs_on_the_same_and_overlapping_folders_store_every_file_once(pg_url, tmp_path):
    photos = tmp_path / "photos"
    files = _photos(photos / "a", 40) + _photos(photos / "b", 40)
    runs = Runs(tmp_path, pg_url)
    gate = tmp_path / "all-planned"
    for roots in ([photos], [photos], [photos / "b"], [photos / "b", photos / "a"]):
        runs.start(roots, delay=0.01, hold_after=0, gate=str(gate))
    runs.release()
    runs.wait_held()  # each has planned its files and holds its first model call: they overlap
    gate.touch()
    results = runs.results()
    assert [(code, out.split()[0], err) for code, out, err in results] == [(0, "ok", "")] * 4, results
    counts = [[int(n) for n in out.split()[1:]] for _, out, _ in results]  # files, failed, model-indexed
    assert [(files, failed) for files, failed, _ in counts] == [(80, 0), (80, 0), (40, 0), (80, 0)]
    assert [indexed for _, _, indexed in counts] == [80, 80, 40, 80]  # they ran at once: all planned everything
    engine = store.open_index(pg_url)
    assert rows(engine, "SELECT COUNT(*), COUNT(DISTINCT path) FROM images") == [(80, 80)]
    assert labels_by_path(engine) == _reference(tmp_path, [photos])
    assert set(labels_by_path(engine)) == {str(f) for f in files}
    assert rows(engine, "SELECT COUNT(*) FROM (SELECT DISTINCT image_id, cell FROM cell_labels) c") == [(9 * 80,)]
    assert rows(engine, "SELECT COUNT(DISTINCT image_id) FROM image_labels") == [(80,)]
    with engine.connect() as conn:
        assert store.read_settings(conn) == IndexSettings("fake", 96, "fp32")
    engine.dispose()


def _one_settings(engine) -> set:
    return set(rows(engine, "SELECT model, working_size FROM images"))


@pytest.mark.slow
def test_concurrent_runs_with_other_settings_never_mix_them(pg_url, tmp_path):
    photos = tmp_path / "photos"
    _photos(photos, 40)
    runs = Runs(tmp_path, pg_url)
    runs.start([photos], size=96, delay=0.01)
    runs.start([photos], size=128, delay=0.01)
    runs.release()
    results = runs.results()
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 1], results
    (winner,) = [size for size, (code, _, _) in zip((96, 128), results) if code == 0]
    (loser,) = [out for code, out, _ in results if code == 1]
    assert loser.startswith("IndexSettingsError "), loser
    assert f"from fake at size {winner} (fp32)" in loser
    engine = store.open_index(pg_url)
    with engine.connect() as conn:
        assert store.read_settings(conn) == IndexSettings("fake", winner, "fp32")
    assert _one_settings(engine) == {("fake", winner)}
    assert labels_by_path(engine) == _reference(tmp_path, [photos], size=winner)
    engine.dispose()


@pytest.mark.slow
def test_a_reindex_while_another_run_writes_stops_that_run_and_never_mixes(pg_url, tmp_path):
    photos = tmp_path / "photos"
    _photos(photos / "a", 12)
    engine = store.open_index(pg_url)
    pipeline.index(engine, [str(photos)], lambda s: FakeBackbone(), model="fake", size=96, precision="fp32")
    _photos(photos / "b", 60)  # new files: a slow run at size 96 starts on them
    slow = Runs(tmp_path / "slow", pg_url)
    reindexed = tmp_path / "reindexed"
    views = len(regions.SCALES)
    slow.start([photos / "b"], size=96, hold_after=8 * views, gate=str(reindexed))  # holds after 8 of its 60
    slow.release()
    slow.wait_held()
    deadline = time.monotonic() + PATIENCE_S
    while rows(engine, "SELECT COUNT(*) FROM images")[0][0] < 12 + 8 and time.monotonic() < deadline:
        time.sleep(0.01)
    reindex = Runs(tmp_path / "reindex", pg_url)
    reindex.start([photos], size=128, reindex=True)
    reindex.release()
    assert reindex.results() == [(0, "ok 72 0 72", "")]
    reindexed.touch()  # the slow run goes on, into settings it did not plan for
    ((code, out, err),) = slow.results()
    assert (code, err) == (1, "")
    assert out == (
        "IndexSettingsError another imgidx index stored labels from fake at size 128 (fp32) meanwhile, not fake at "
        "size 96 (fp32); this run stopped rather than mix them: pass --reindex to rebuild the index, or leave out "
        "--model/--size/--precision to keep its settings"
    )
    assert _one_settings(engine) == {("fake", 128)}
    assert labels_by_path(engine) == _reference(tmp_path, [photos], size=128)
    engine.dispose()
