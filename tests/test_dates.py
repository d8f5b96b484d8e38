"""When photos were taken (issue 25, "Missing" 3): the EXIF date and camera stored at indexing, every other
source marked; an index of schema 4 dated by its next run without the model; the query filters and orders,
`show`, the web app and `merge` carrying the dates. The fake backbone labels (tests/fake_backbone.py)."""

import json
import os
import warnings
from datetime import datetime

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from PIL import ExifTags, Image

from indexer import images, merge, pipeline, report, store
from indexer.cli import cli
from indexer.store import TAKEN_COLUMNS
from indexer.taken import Taken, with_fallback
from test_pipeline import RED, paint

#: mtime of the photo without EXIF (2021-03-04 12:00 UTC), and the placeholder time of another (the epoch).
PLAIN_MTIME_S, PLACEHOLDER_MTIME_S = 1614859200, 0
DATE_ERROR = "Error: {option}: {value!r} is not a date; give YYYY, YYYY-MM or YYYY-MM-DD\n"


def exif_photo(path, cell, original=None, offset=None, digitized=None, make=None, model=None):
    """A painted JPEG (`test_pipeline.paint`) with the EXIF tags given, written as a camera writes them."""
    paint(path, {cell: RED})
    exif = Image.Exif()
    block = exif.get_ifd(ExifTags.IFD.Exif)
    for tags, tag, value in ((exif, ExifTags.Base.Make, make), (exif, ExifTags.Base.Model, model),
                             (block, ExifTags.Base.DateTimeOriginal, original),
                             (block, ExifTags.Base.OffsetTimeOriginal, offset),
                             (block, ExifTags.Base.DateTimeDigitized, digitized)):
        if value is not None:
            tags[tag] = value
    with Image.open(path) as picture:
        picture.load()
    picture.save(path, "JPEG", quality=95, exif=exif)
    return path


@pytest.fixture
def folder(tmp_path):
    """Four photos: a camera's (DateTimeOriginal with its offset), a scan's (DateTimeDigitized only), one
    without EXIF (dated by its file time) and one without EXIF whose file time is a tool's placeholder."""
    photos = tmp_path / "photos"
    exif_photo(photos / "beach.jpg", 0, "2019:06:01 14:03:27", "+02:00", make="Canon", model="Canon EOS 5D")
    exif_photo(photos / "scan.jpg", 1, digitized="2019:12:31 23:59:59", make="Apple", model="iPhone 12")
    os.utime(exif_photo(photos / "plain.jpg", 2), (PLAIN_MTIME_S, PLAIN_MTIME_S))
    os.utime(exif_photo(photos / "zero.jpg", 3), (PLACEHOLDER_MTIME_S, PLACEHOLDER_MTIME_S))
    return photos


class Loader:
    """``load_backbone``: the fake backbone, counting how often the model was asked for."""

    def __init__(self):
        self.loads = 0

    def __call__(self, settings):
        from fake_backbone import FakeBackbone

        self.loads += 1
        return FakeBackbone()


def build(db, folder, loader=None) -> pipeline.Summary:
    engine = store.open_index(str(db))
    try:
        return pipeline.index(engine, [str(folder)], loader or Loader(), model="fake", size=96, precision="fp32",
                              batch=4, with_faces=False, with_objects=False)
    finally:
        engine.dispose()


def dates(db) -> dict[str, tuple]:
    """Per file name: taken_at, taken_offset, taken_source, camera."""
    engine = sa.create_engine(store.as_url(str(db)).replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT path, {', '.join(TAKEN_COLUMNS)} FROM images")).all()
    finally:
        engine.dispose()
    return {os.path.basename(path): tuple(row) for path, *row in rows}


def expected_dates() -> dict[str, tuple]:
    local = datetime.fromtimestamp(PLAIN_MTIME_S).astimezone()
    offset = local.strftime("%z")
    return {
        "beach.jpg": ("2019-06-01T14:03:27", "+02:00", "exif", "Canon EOS 5D"),
        "scan.jpg": ("2019-12-31T23:59:59", None, "exif-digitized", "Apple iPhone 12"),
        "plain.jpg": (local.strftime("%Y-%m-%dT%H:%M:%S"), f"{offset[:3]}:{offset[3:]}", "mtime", None),
        "zero.jpg": (None, None, "none", None),
    }


def imgidx(*argv):
    return CliRunner().invoke(cli, [str(a) for a in argv])


def test_indexing_stores_the_exif_date_and_camera_and_marks_every_other_source(folder, tmp_path):
    build(tmp_path / "index.db", folder)
    assert dates(tmp_path / "index.db") == expected_dates()
    # the header read of an older index's photos finds what the decode found
    assert images.read_taken(folder / "beach.jpg", 0) == Taken(*expected_dates()["beach.jpg"])


def as_schema_4(url: str) -> None:
    """What an index of schema version 4 looked like: no date columns nor their index (SQLite or PostgreSQL)."""
    engine = sa.create_engine(store.as_url(url).replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP INDEX images_taken")
            for column in TAKEN_COLUMNS:
                conn.exec_driver_sql(f"ALTER TABLE images DROP COLUMN {column}")
            conn.exec_driver_sql("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    finally:
        engine.dispose()


def labels_of(url: str) -> list:
    engine = store.open_index(url, create=False, readonly=True)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(
                "SELECT path, cell, class_id, score FROM cell_labels JOIN images USING (image_id) "
                "ORDER BY path, cell, class_id")).all()
    finally:
        engine.dispose()


def test_a_schema_4_index_gains_its_dates_on_its_next_run_without_the_model(folder, index_url):
    build(index_url, folder)
    labels = labels_of(index_url)
    as_schema_4(index_url)
    shown = store.shown(index_url)
    refused = imgidx("query", "fire engine", "--db", index_url)
    assert (refused.exit_code, refused.stderr) == (1, (
        f"Error: {shown} has schema version 4, from before photo dates; bring it up to date (its labels are kept, "
        f"and the dates are read from the photos' headers without the model): imgidx index FOLDER --db {shown}\n"
    ))
    loader = Loader()
    summary = build(index_url, folder, loader)
    assert (loader.loads, summary.model_loaded, summary.indexed, summary.unchanged, summary.dated) == (0, False, 0, 4, 4)
    assert report.summary_text(summary).startswith("0 indexed, 4 unchanged, 4 dated, 0 moved")
    assert dates(index_url) == expected_dates()
    assert labels_of(index_url) == labels
    again = build(index_url, folder, loader)
    assert (loader.loads, again.dated) == (0, 0)


@pytest.fixture
def dated_index(folder, tmp_path):
    db = tmp_path / "index.db"
    build(db, folder)
    return db


def names(result) -> list[str]:
    assert result.exit_code == 0, result.output
    return [os.path.basename(line) for line in result.stdout.split()]


def test_query_filters_and_orders_by_date_and_names_the_option_of_a_bad_date(folder, index_url):
    build(index_url, folder)
    query = ("query", "fire engine", "--db", index_url, "--paths")
    assert names(imgidx(*query, "--sort", "oldest")) == ["beach.jpg", "scan.jpg", "plain.jpg", "zero.jpg"]
    assert names(imgidx(*query, "--sort", "newest")) == ["plain.jpg", "scan.jpg", "beach.jpg", "zero.jpg"]
    assert names(imgidx(*query, "--taken", "2019", "--sort", "oldest")) == ["beach.jpg", "scan.jpg"]
    assert names(imgidx(*query, "--taken", "2019-06")) == ["beach.jpg"]
    assert names(imgidx(*query, "--taken", "2019-12-31")) == ["scan.jpg"]
    assert names(imgidx(*query, "--after", "2019-07", "--sort", "oldest")) == ["scan.jpg", "plain.jpg"]
    assert names(imgidx(*query, "--before", "2020", "--after", "2019-06-02")) == ["scan.jpg"]
    assert names(imgidx(*query, "--taken", "2020")) == []
    for option, value in (("--taken", "2019-13"), ("--after", "yesterday"), ("--before", "2019-02-30")):
        result = imgidx(*query, option, value)
        assert (result.exit_code, result.stderr) == (1, DATE_ERROR.format(option=option, value=value))
    lines = [json.loads(line) for line in imgidx(*query[:-1], "--json", "--taken", "2019-06").stdout.splitlines()]
    assert [(line["taken"], line["taken_source"]) for line in lines] == [("2019-06-01T14:03:27", "exif")]
    help_text = " ".join(imgidx("query", "--help").stdout.split())
    assert "--taken DATE Only photos taken in this year, month or day (YYYY, YYYY-MM or YYYY-MM-DD)" in help_text
    assert "one without any date is left out by a date filter and comes last by date" in help_text
    assert "--sort [score|oldest|newest]" in help_text


def test_show_and_stats_say_when_photos_were_taken_and_where_that_comes_from(dated_index, folder):
    def shown(name):
        result = imgidx("show", folder / name, "--db", dated_index)
        assert result.exit_code == 0, result.output
        return result.stdout.splitlines()[2:4]

    assert shown("beach.jpg") == ["  taken 2019-06-01 14:03:27 +02:00 (EXIF DateTimeOriginal)", "  camera Canon EOS 5D"]
    assert shown("scan.jpg") == [
        "  taken 2019-12-31 23:59:59 (EXIF DateTimeDigitized, when it was digitized: no DateTimeOriginal)",
        "  camera Apple iPhone 12",
    ]
    assert shown("plain.jpg")[0].endswith("(the file's modification time: no EXIF date)")
    assert shown("zero.jpg") == ["  taken unknown (no EXIF date, and the file's time is a placeholder)",
                                 "  camera not recorded"]
    latest = expected_dates()["plain.jpg"][0].replace("T", " ")
    assert f"dates taken: 2019-06-01 14:03:27 to {latest}; 1 by EXIF, 1 by EXIF DateTimeDigitized, 1 by file time " \
        "(no EXIF date), 1 without a date" in imgidx("stats", "--db", dated_index).stdout.splitlines()
    assert json.loads(imgidx("stats", "--db", dated_index, "--json").stdout)["dates"] == {
        "earliest": "2019-06-01T14:03:27", "latest": expected_dates()["plain.jpg"][0],
        "sources": {"exif": 1, "exif-digitized": 1, "mtime": 1, "none": 1}}
    record = json.loads(imgidx("show", folder / "beach.jpg", "--db", dated_index, "--json").stdout)
    assert [record[key] for key in ("taken", "taken_offset", "taken_source", "camera")] == list(
        expected_dates()["beach.jpg"])


def test_merge_carries_the_dates(folder, tmp_path):
    build(tmp_path / "source.db", folder)
    merge.merge([str(tmp_path / "source.db")], str(tmp_path / "merged.db"))
    assert dates(tmp_path / "merged.db") == expected_dates()


def test_the_web_app_shows_filters_and_sorts_by_date(dated_index):
    pytest.importorskip("starlette", reason="needs the web extra: pip install 'imgidx[serve]'")
    with warnings.catch_warnings():  # as tests/test_serve.py: Starlette 1.x would rather have httpx2
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
        from starlette.testclient import TestClient

    from serve.app import Index, create_app

    index = Index(str(dated_index))
    try:
        client = TestClient(create_app(index), base_url="http://localhost")

        def found(**params):
            """The photos on the page, in the order shown, and the page."""
            page = client.get("/", params={"q": "fire engine", **params})
            assert page.status_code == 200, page.text
            shown = [name for name in ("beach.jpg", "scan.jpg", "plain.jpg", "zero.jpg") if f">{name}</a>" in page.text]
            return sorted(shown, key=lambda name: page.text.index(f">{name}</a>")), page.text

        listed, text = found(sort="oldest")
        assert listed == ["beach.jpg", "scan.jpg", "plain.jpg", "zero.jpg"]
        assert '<option value="oldest" selected>oldest first</option>' in text
        assert '<span class="taken" title="taken 2019-06-01 14:03:27 (EXIF DateTimeOriginal)">2019-06-01</span>' in text
        assert found(taken="2019-06")[0] == ["beach.jpg"]
        assert found(after="2019-07", before="2021")[0] == ["scan.jpg"]
        assert found(sort="newest")[0] == ["plain.jpg", "scan.jpg", "beach.jpg", "zero.jpg"]
        # a new search from the header keeps the date filter
        assert '<input type="hidden" name="taken" value="2019">' in found(taken="2019")[1]
        bad = client.get("/", params={"q": "fire engine", "after": "June"})
        assert bad.status_code == 400 and "after: &#39;June&#39; is not a date; give YYYY, YYYY-MM or YYYY-MM-DD" in bad.text
        assert client.get("/", params={"q": "fire engine", "sort": "size"}).status_code == 400
        # a search that found nothing in its dates offers looser queries counted in those dates too
        assert '<span class="count">no matches</span>' in found(taken="2018")[1]
        looser = client.get("/looser", params={"q": "fire engine", "taken": "2018"}).text
        assert "No looser query finds a photo either" in looser, looser[looser.index("<main"):]
        with index.engine.connect() as conn:
            ids = dict(conn.execute(sa.text("SELECT path, image_id FROM images")).all())
        beach = next(image_id for path, image_id in ids.items() if path.endswith("beach.jpg"))
        photo = client.get(f"/photo/{beach}")
        assert ('<p class="taken" id="taken">taken 2019-06-01 14:03:27 +02:00 (EXIF DateTimeOriginal) · camera '
                'Canon EOS 5D</p>') in photo.text
    finally:
        index.close()


def test_the_ray_engines_reading_tasks_carry_the_dates_to_the_driver(folder):
    """`ray_engine.read_batch` is the Ray task's own code, called here without Ray: the dates it reads travel
    as string columns (`TAKEN_KEYS`) and come back as the local engine reads them."""
    import numpy as np

    from indexer import ray_engine

    paths = [str(folder / "beach.jpg"), str(folder / "plain.jpg")]
    batch = {"path": np.array(paths), "record_hash": np.array(["", ""]), "record_current": np.array([False, False])}
    out = ray_engine.read_batch(batch, np.array([], dtype="S32"), 96)
    assert [ray_engine._taken_of(out, i) for i in range(2)] == [Taken(*expected_dates()["beach.jpg"]), None]


def test_exif_values_that_are_no_date_are_not_taken_for_one():
    def exif(**tags):
        block = Image.Exif()
        for name, value in tags.items():
            (block if name in ("DateTime", "Make", "Model") else block.get_ifd(ExifTags.IFD.Exif))[
                ExifTags.Base[name]] = value
        return block

    unknown = exif(DateTimeOriginal="0000:00:00 00:00:00", DateTime="2018:01:02 03:04:05")
    assert images.taken_of(unknown) == Taken("2018-01-02T03:04:05", None, "exif-datetime", None)
    odd_offset = exif(DateTimeOriginal="2019:06:01 14:03:27\x00", OffsetTimeOriginal="+25:00")
    assert images.taken_of(odd_offset) == Taken("2019-06-01T14:03:27", None, "exif", None)
    camera_only = images.taken_of(exif(Make="NIKON CORPORATION", Model="NIKON D750"))
    assert camera_only == Taken(None, None, "none", "NIKON D750")
    assert with_fallback(camera_only, PLAIN_MTIME_S * 10**9) == Taken(*expected_dates()["plain.jpg"][:3], "NIKON D750")
    assert images.taken_of(Image.Exif()) is None
