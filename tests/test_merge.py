"""`imgidx merge`: indexes built apart merge into the index one run over all their folders would build."""

import re
import shutil
import sqlite3

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from fake_backbone import FakeBackbone
from fresh_cli import run_fresh
from indexer import merge, pipeline, store
from indexer.cli import cli
from indexer.errors import MergeError, SchemaVersionError, StoreError
from indexer.labels import COMPOUND_BASE
from test_pipeline import BLUE, FIRE_ENGINE, RED, SWIMMING_TRUNKS, paint

OLD, NEW = "2024-01-01T10:00:00+00:00", "2024-06-01T10:00:00+00:00"


def build(db, folders, size=96):
    """An index of ``folders`` by the fake backbone, as `imgidx index` builds it."""
    engine = store.open_index(str(db))
    pipeline.index(
        engine, [str(f) for f in folders], lambda s: FakeBackbone(), model="fake", size=size, precision="fp32", batch=4
    )
    engine.dispose()
    return db


def photos(folder, count, offset=0, bad=False):
    for i in range(count):
        paint(folder / f"{i}.jpg", {(i + offset) % 9: RED, (8 - i) % 9: BLUE})
    if bad:
        (folder / "bad.jpg").write_text("not a photo")
    return folder


def sql(db, statement, *params):
    with sqlite3.connect(db) as conn:
        return conn.execute(statement, params).fetchall()


def dump(db, ids=False):
    """Settings, and per path the images row (without image_id and indexed_at unless ``ids``) and its labels."""
    engine = store.open_index(str(db), create=False)
    with engine.connect() as conn:
        settings = store.read_settings(conn)
        rows = {}
        for row in conn.execute(sa.text("SELECT * FROM images")).mappings():
            kept = {k: v for k, v in row.items() if ids or k not in ("image_id", "indexed_at")}
            rows[row["path"]] = [kept, [], []]
        for n, table in ((1, "image_labels"), (2, "cell_labels")):
            for path, *label in conn.execute(
                sa.text(f"SELECT i.path, l.* FROM {table} l JOIN images i ON i.image_id = l.image_id")
            ):
                rows[path][n].append(tuple(label[1:]))
    engine.dispose()
    for row in rows.values():
        row[1].sort()
        row[2].sort()
    return settings, rows


def leading(db, path, cell):
    return sql(
        db,
        "SELECT class_id FROM cell_labels JOIN images USING (image_id) WHERE path = ? AND cell = ? "
        "AND class_id < ? ORDER BY score DESC LIMIT 1",
        str(path), cell, COMPOUND_BASE,
    )[0][0]


@pytest.fixture
def three(tmp_path):
    """Three indexes of three folders (one with a failed file), and one index of all three folders."""
    folders = [photos(tmp_path / "disk1", 5, bad=True), photos(tmp_path / "disk2/deep", 4, 1),
               photos(tmp_path / "disk3", 3, 2)]
    sources = [str(build(tmp_path / f"src{n}.db", [folder])) for n, folder in enumerate(folders)]
    return sources, build(tmp_path / "all.db", folders)


def test_the_merged_index_holds_what_one_run_over_all_folders_holds(tmp_path, three):
    sources, whole = three
    into = tmp_path / "merged/index.db"
    into.parent.mkdir()  # a new index's folder must exist (issue 21)
    events = []
    summary = merge.merge(sources, str(into), events.append, chunk=2)
    settings, merged = dump(into)
    assert settings == store.IndexSettings("fake", 96, "fp32")
    assert len(merged) == 13 and merged == dump(whole)[1]
    assert [(c.source, c.images, c.added, c.replaced, c.skipped, c.failed) for c in summary.sources] == [
        (sources[0], 6, 6, 0, 0, 1), (sources[1], 4, 4, 0, 0, 0), (sources[2], 3, 3, 0, 0, 0)
    ]
    assert (summary.total("added"), summary.total("failed"), summary.into) == (13, 1, str(into))
    assert events[0] == merge.SourceStarted(sources[2], 3)
    assert events[-1] == merge.Progress(sources[0], 6, 6)
    assert merge.Progress(sources[0], 2, 6) in events  # chunks of 2
    # The image ids are the destination's own: 1..13, none taken over from a source.
    assert sorted(i for (i,) in sql(into, "SELECT image_id FROM images")) == list(range(1, 14))


def test_merging_again_changes_nothing(tmp_path, three):
    sources, _ = three
    into = tmp_path / "merged.db"
    merge.merge(sources, str(into), chunk=4)
    first = dump(into, ids=True)
    summary = merge.merge(sources, str(into), chunk=4)
    assert dump(into, ids=True) == first
    assert (summary.total("added"), summary.total("replaced"), summary.total("skipped")) == (0, 0, 13)


class Stop(Exception):
    pass


def test_an_interrupted_merge_finishes_when_run_again(tmp_path, three):
    sources, whole = three

    def crash(event):
        if event == merge.Progress(sources[0], 2, 6):  # after sources 2 and 1 and one chunk of source 0
            raise Stop

    into = tmp_path / "merged.db"
    with pytest.raises(Stop):
        merge.merge(sources, str(into), crash, chunk=2)
    assert len(dump(into)[1]) == 7 + 2
    summary = merge.merge(sources, str(into), chunk=2)
    assert (summary.total("added"), summary.total("skipped")) == (4, 9)
    assert dump(into)[1] == dump(whole)[1]


def test_the_newest_row_of_a_path_wins_and_ties_go_to_the_later_source(tmp_path):
    folder = tmp_path / "photos"
    path = paint(folder / "a.jpg", {0: RED})
    paint(folder / "b.jpg", {0: RED})
    red = build(tmp_path / "red.db", [folder])
    paint(path, {0: BLUE})
    (folder / "b.jpg").write_text("truncated since")
    blue = build(tmp_path / "blue.db", [folder])
    sql(red, "UPDATE images SET indexed_at = ?", OLD)
    sql(blue, "UPDATE images SET indexed_at = ?", NEW)

    for order in ([red, blue], [blue, red]):  # the newer wins whatever the order
        into = tmp_path / f"into-{order[0].stem}.db"
        summary = merge.merge([str(db) for db in order], str(into))
        assert leading(into, path, 0) == SWIMMING_TRUNKS
        # A newer failure beats older labels: the file was found damaged later.
        assert sql(into, "SELECT error FROM images WHERE path = ?", str(folder / "b.jpg")) == [
            (f"{folder / 'b.jpg'}: not an image (unknown format)",)
        ]
        assert sql(into, "SELECT COUNT(*) FROM image_labels JOIN images USING (image_id) WHERE path = ?",
                   str(folder / "b.jpg")) == [(0,)]
        counts = {c.source: (c.added, c.replaced, c.skipped, c.failed) for c in summary.sources}
        # The later source on the command line is copied first; the other then adds or replaces nothing.
        if order[0] == red:
            assert counts == {str(blue): (2, 0, 0, 1), str(red): (0, 0, 2, 0)}
        else:
            assert counts == {str(blue): (0, 2, 0, 1), str(red): (2, 0, 0, 0)}

    sql(blue, "UPDATE images SET indexed_at = ?", OLD)  # a tie: the later source wins
    for first, last, colour in ((red, blue, SWIMMING_TRUNKS), (blue, red, FIRE_ENGINE)):
        into = tmp_path / f"tie-{last.stem}.db"
        merge.merge([str(first), str(last)], str(into))
        assert leading(into, path, 0) == colour

    # The destination's own row is kept when a source's is not newer.
    into = tmp_path / "tie-blue.db"  # holds blue's rows, as old as red's
    summary = merge.merge([str(red)], str(into))
    assert leading(into, path, 0) == SWIMMING_TRUNKS
    assert (summary.sources[0].skipped, summary.total("replaced")) == (2, 0)
    sql(red, "UPDATE images SET indexed_at = ? WHERE path = ?", NEW, str(path))
    summary = merge.merge([str(red)], str(into))
    assert leading(into, path, 0) == FIRE_ENGINE and summary.total("replaced") == 1


def test_stale_rows_are_copied_as_they_are(tmp_path):
    source = build(tmp_path / "src.db", [photos(tmp_path / "p", 2)])
    sql(source, "UPDATE images SET model = NULL, working_size = NULL WHERE path LIKE '%0.jpg'")
    merge.merge([str(source)], str(tmp_path / "into.db"))
    assert dump(tmp_path / "into.db") == dump(source)


def test_other_settings_are_refused_before_anything_is_written(tmp_path):
    a = str(build(tmp_path / "a.db", [photos(tmp_path / "p1", 2)]))
    b = str(build(tmp_path / "b.db", [photos(tmp_path / "p2", 2)], size=128))
    into = tmp_path / "into.db"
    with pytest.raises(MergeError) as refused:
        merge.merge([a, b], str(into))
    assert str(refused.value) == (
        f"cannot merge {b}: it holds labels from fake at size 128 (fp32), but {a} from fake at size 96 (fp32); "
        "indexes built with other settings cannot be merged"
    )
    assert not into.exists()

    before = dump(a, ids=True)
    with pytest.raises(MergeError) as refused:
        merge.merge([b], a)
    assert str(refused.value) == (
        f"cannot merge {b}: it holds labels from fake at size 128 (fp32), but {a} from fake at size 96 (fp32); "
        "indexes built with other settings cannot be merged"
    )
    assert dump(a, ids=True) == before

    # An index nothing was indexed into yet has no settings, and fits any.
    empty = tmp_path / "empty.db"
    store.open_index(str(empty)).dispose()
    summary = merge.merge([str(empty), b], str(empty.with_name("into-empty.db")))
    assert summary.settings == store.IndexSettings("fake", 128, "fp32")
    merge.merge([str(empty)], a)
    assert dump(a, ids=True) == before


def test_an_index_is_not_merged_into_itself(tmp_path, monkeypatch):
    a = build(tmp_path / "a.db", [photos(tmp_path / "p", 1)])
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    for spelling in ("../a.db", f"sqlite:///{a}", f"sqlite:///{tmp_path}/sub/../a.db"):
        with pytest.raises(MergeError, match=re.escape(f"cannot merge {spelling} into itself")):
            merge.merge([spelling], str(a))
    (tmp_path / "link.db").symlink_to(a)
    with pytest.raises(MergeError, match="into itself"):
        merge.merge([str(tmp_path / "link.db")], str(a))


def test_missing_and_other_version_sources_are_refused_before_anything_is_written(tmp_path):
    a = build(tmp_path / "a.db", [photos(tmp_path / "p", 1)])
    into = tmp_path / "into.db"
    with pytest.raises(StoreError) as refused:
        merge.merge([str(a), str(tmp_path / "nope.db")], str(into))
    assert str(refused.value) == (
        f"no index at {tmp_path / 'nope.db'}; build one with: imgidx index FOLDER --db {tmp_path / 'nope.db'}"
    )
    other = tmp_path / "other.db"
    shutil.copy(a, other)
    sql(other, "UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(SchemaVersionError) as refused:
        merge.merge([str(a), str(other)], str(into))
    assert str(refused.value) == f"{other} has schema version 999, newer than this imgidx reads ({store.SCHEMA_VERSION}); upgrade imgidx"
    assert not into.exists()


def test_a_destination_being_indexed_is_not_merged_into(tmp_path):
    a = build(tmp_path / "a.db", [photos(tmp_path / "p", 1)])
    into = tmp_path / "into.db"
    engine = store.open_index(str(into))
    with pipeline.writer_lock(engine), pytest.raises(StoreError, match="another imgidx index is writing to"):
        merge.merge([str(a)], str(into))
    engine.dispose()
    assert dump(into)[1] == {}


def test_a_merge_stops_if_another_writer_changes_the_destinations_settings_meanwhile(tmp_path, three):
    sources, _ = three
    into = tmp_path / "merged.db"

    def other_writer(event):
        if event == merge.Progress(sources[2], 2, 3):
            sql(into, "UPDATE meta SET value = '128' WHERE key = 'working_size'")

    with pytest.raises(MergeError) as stopped:
        merge.merge(sources, str(into), other_writer, chunk=2)
    assert str(stopped.value) == (
        f"another imgidx index stored labels from fake at size 128 (fp32) in {into} meanwhile, not fake at size 96 "
        "(fp32); the merge stopped rather than mix them"
    )
    assert len(dump(into)[1]) == 2


def test_sqlite_indexes_merge_into_postgresql(tmp_path, three, pg_url):
    sources, whole = three
    summary = merge.merge(sources, pg_url, chunk=4)
    assert summary.total("added") == 13
    assert dump(pg_url) == dump(whole)
    first = dump(pg_url, ids=True)
    assert merge.merge(sources, pg_url).total("skipped") == 13
    assert dump(pg_url, ids=True) == first
    with pytest.raises(MergeError, match=re.escape(f"cannot merge {pg_url} into itself")):
        merge.merge([sources[0], pg_url], pg_url)
    result = imgidx("query", "fire engine top-left", "--db", pg_url, "--paths")
    assert result.exit_code == 0, result.output
    assert result.stdout == imgidx("query", "fire engine top-left", "--db", whole, "--paths").stdout


# --- The command line ---


def imgidx(*argv):
    return CliRunner().invoke(cli, [str(a) for a in argv], prog_name="imgidx")


SOURCE_LINE = r"  {}: (\d+) images?: (\d+) added, (\d+) replaced, (\d+) not newer than the destination's; (\d+) failed files? carried"
TOTALS = (
    r"merged {} index(?:es)? into {} in \d+\.\d s: (\d+) added, (\d+) replaced, (\d+) not newer than the "
    r"destination's; (\d+) failed files? carried \(fake at size 96 \(fp32\)\)"
)


def test_cli_merge_prints_a_line_per_source_and_the_totals_then_query_and_show_use_the_result(tmp_path, three):
    sources, _ = three
    into = tmp_path / "merged.db"
    result = imgidx("merge", *sources, "--into", into)
    assert (result.exit_code, result.stderr) == (0, ""), result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 4
    assert re.fullmatch(SOURCE_LINE.format(re.escape(sources[0])), lines[0]).groups() == ("6", "6", "0", "0", "1")
    assert re.fullmatch(SOURCE_LINE.format(re.escape(sources[2])), lines[2]).groups() == ("3", "3", "0", "0", "0")
    assert re.fullmatch(TOTALS.format(3, re.escape(str(into))), lines[3]).groups() == ("13", "0", "0", "1")

    result = imgidx("merge", *sources, "--into", into, "-q")
    assert result.exit_code == 0
    assert re.fullmatch(TOTALS.format(3, re.escape(str(into))), result.stdout.strip()).groups() == ("0", "0", "13", "0")

    result = imgidx("query", "fire engine in the top row", "--db", into, "--paths")
    assert result.exit_code == 0, result.output
    found = result.stdout.split()
    assert str(tmp_path / "disk1/0.jpg") in found and str(tmp_path / "disk2/deep/0.jpg") in found
    assert found == imgidx("query", "fire engine in the top row", "--db", tmp_path / "all.db", "--paths").stdout.split()
    photo = tmp_path / "disk2/deep/0.jpg"
    result = imgidx("show", photo, "--db", into)
    assert result.exit_code == 0, result.output

    def when_aside(text):
        return re.sub(r"indexed \S+", "indexed WHEN", text)

    assert when_aside(result.stdout) == when_aside(imgidx("show", photo, "--db", tmp_path / "all.db").stdout)
    assert "fake at size 96" in result.stdout


def test_cli_merge_errors_are_one_line(tmp_path):
    a = str(build(tmp_path / "a.db", [photos(tmp_path / "p1", 1)]))
    b = str(build(tmp_path / "b.db", [photos(tmp_path / "p2", 1)], size=128))
    into = tmp_path / "into.db"
    cases = [
        (("merge", a, b, "--into", into), 1,
         f"Error: cannot merge {b}: it holds labels from fake at size 128 (fp32), but {a} from fake at size 96 "
         "(fp32); indexes built with other settings cannot be merged\n"),
        (("merge", a, "--into", a), 1, f"Error: cannot merge {a} into itself\n"),
        (("merge", tmp_path / "nope.db", "--into", into), 1,
         f"Error: no index at {tmp_path / 'nope.db'}; build one with: imgidx index FOLDER --db {tmp_path / 'nope.db'}\n"),
    ]
    for argv, code, stderr in cases:
        result = imgidx(*argv)
        assert (result.exit_code, result.stderr, result.stdout) == (code, stderr, "")
    assert not into.exists()
    result = imgidx("merge", a)
    assert result.exit_code == 2 and result.stderr.endswith("Error: Missing option '--into'.\n")
    result = imgidx("merge", "--into", into)
    assert result.exit_code == 2 and result.stderr.endswith("Error: Missing argument 'SRC...'.\n")
    assert not into.exists()


def test_cli_merge_help():
    result = imgidx("merge", "--help")
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: imgidx merge [OPTIONS] SRC...\n")
    text = " ".join(result.stdout.split())
    assert "the row indexed last wins, even a failed file over labels" in text
    assert "ties go to the --into index's own row, then to the later SRC on the command line" in text
    assert "an index merged into itself" in text and "running the same command again finishes it" in text


def test_cli_merge_does_not_import_tensorflow(tmp_path):
    a = build(tmp_path / "a.db", [photos(tmp_path / "p", 1)])
    argv = ["merge", str(a), "--into", str(tmp_path / "into.db")]
    out, imported_tensorflow = run_fresh(argv)
    assert "merged 1 index into" in out
    assert not imported_tensorflow
