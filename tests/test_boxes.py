"""Boxes from the detectors as one concept (issue 20): the rule from boxes to cell rows, the boxes table of
schema 4 and its upgrades from schema 3 (SQLite and PostgreSQL), the indexing run with the (fake) object
detector and the face pass it guides, and every command that shows or uses boxes."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from PIL import Image

from face_photos import astronaut
from fake_backbone import FakeBackbone
from fake_detector import COLOURS, FakeObjectDetectors
from indexer import boxes, calibration, detect, faces, merge, pipeline, redact, regions, store
from indexer.boxes import Box
from indexer.cli import cli
from indexer.errors import IndexSettingsError, SchemaVersionError
from indexer.labels import COCO_CLASSES, COMPOUND_BASE, FACE_CLASS, OBJECT_CLASS_BASE, object_class
from indexer.regions import CellLabel, ImageLabel, Regions
from indexer.store import FileRow, IndexSettings
from query import DEFAULT_MIN_SCORE, render
from query.search import search

PERSON, CAR, DOG = (object_class(COCO_CLASSES.index(name)) for name in ("person", "car", "dog"))
MAGENTA, CYAN = (colour for colour, class_id in COLOURS.items() if class_id in (PERSON, CAR))
GOLDEN_RETRIEVER = 207
#: The fake detector's 0.9 as `show --json` reads it, through the box calibration (a person reads 100%).
SHOWN_0_9 = round(calibration.box_confidence(PERSON, 0.9), calibration.JSON_DECIMALS)
TOP_LEFT, TOP_CENTER, CENTER, BOTTOM_RIGHT = 0, 1, 4, 8


# --- the rule --------------------------------------------------------------------------------------------


def test_an_object_counts_in_a_cell_as_a_face_does():
    face = boxes.cell_scores([Box(FACE_CLASS, 80, 10, 120, 50, 0.8)], 300, 300)
    car = boxes.cell_scores([Box(CAR, 80, 10, 120, 50, 0.8)], 300, 300)
    assert np.array_equal(face[0] > 0, car[0] > 0) and np.array_equal(face[1], car[1])  # the same cells
    assert face[0][:2] == pytest.approx([0.8, 0.8])  # half the box in each cell: it occupies both
    assert car[0][:2] == pytest.approx([calibration.box_confidence(CAR, 0.8)] * 2)
    two, _ = boxes.cell_scores([Box(CAR, 10, 10, 40, 40, 0.5), Box(CAR, 50, 50, 90, 90, 0.6)], 300, 300)
    assert two[TOP_LEFT] == pytest.approx(calibration.box_confidence(CAR, 0.6))  # the best box, not a sum


def test_box_classes_are_read_as_stored_and_their_confidence_is_the_detectors():
    assert calibration.AS_STORED == frozenset(range(FACE_CLASS, OBJECT_CLASS_BASE + len(COCO_CLASSES)))
    cal = calibration.for_model("efficientnet-lite0")
    assert cal.probability(0.42, (PERSON,)) == pytest.approx(0.42)
    assert cal.evidence_for(0.3, (CAR, DOG)) == pytest.approx(0.3)
    assert calibration.box_confidence(FACE_CLASS, 0.37) == 0.37  # no annotated faces to fit a curve on
    objects = [calibration.box_confidence(c, 0.37) for c in calibration.AS_STORED if c != FACE_CLASS]
    assert set(objects) == {calibration.boxes().probability(0.37)}  # one curve for every COCO class
    assert calibration.box_confidence(CAR, 0.3) < calibration.box_confidence(CAR, 0.37) < 1
    assert boxes.SHOWN_FROM == DEFAULT_MIN_SCORE


def test_with_boxes_adds_each_class_and_stores_the_boxes_best_first():
    base = Regions([ImageLabel(GOLDEN_RETRIEVER, 0.5, 0.2)], [CellLabel(CENTER, GOLDEN_RETRIEVER, 0.5, 0.4)])
    found = [Box(CAR, 200, 200, 290, 290, 0.6), Box(FACE_CLASS, 110, 10, 190, 90, 0.95),
             Box(PERSON, 100, 0, 200, 300, 0.7), Box(DOG, 0, 0, 10, 10, boxes.STORED_FROM / 2)]
    result = regions.with_boxes(base, found, 300, 300)
    assert [b.class_id for b in result.boxes] == [FACE_CLASS, PERSON, CAR]  # best first; the faint dog is not kept
    assert result.image_labels[0] == base.image_labels[0]
    images = {label.class_id: label for label in result.image_labels[1:]}
    assert set(images) == {FACE_CLASS, PERSON, CAR}
    assert images[CAR] == ImageLabel(CAR, pytest.approx(calibration.box_confidence(CAR, 0.6)),
                                     pytest.approx(90 * 90 / 300 / 300))
    person_cells = {c.cell: c.score for c in result.cell_labels if c.class_id == PERSON}
    assert person_cells == pytest.approx({cell: calibration.box_confidence(PERSON, 0.7) for cell in (1, 4, 7)})
    assert [c.cell for c in result.cell_labels if c.class_id == CAR] == [BOTTOM_RIGHT]


def test_one_label_and_one_placement_for_every_box():
    face = Box(FACE_CLASS, 30, 60, 90, 300, 0.8712)
    assert boxes.label(face) == "face 87%"
    assert boxes.overlay(face, 300, 600) == {
        "left": 0.1, "top": 0.1, "width": 0.2, "height": 0.4, "label": "face 87%", "face": True,
    }
    person = face._replace(class_id=PERSON)  # an object's confidence is read through its calibration
    shown = calibration.box_confidence(PERSON, 0.8712)
    assert boxes.label(person) == f"person {round(100 * shown)}%" and shown != pytest.approx(0.8712, abs=0.005)
    assert boxes.overlay(person, 300, 600)["face"] is False


def test_the_boxes_of_a_term_are_its_classes_in_its_region_from_its_threshold():
    found = [Box(PERSON, 0, 0, 50, 50, 0.9), Box(PERSON, 250, 250, 300, 300, 0.9), Box(CAR, 0, 0, 50, 50, 0.9),
             Box(PERSON, 10, 10, 20, 20, 0.2)]
    assert boxes.of_terms(found, [((PERSON,), (TOP_LEFT,), 0.3)], 300, 300) == [found[0]]
    faint = calibration.box_confidence(PERSON, 0.2)
    assert boxes.of_terms(found, [((PERSON, CAR), range(9), faint)], 300, 300) == found
    assert boxes.of_terms(found, [((PERSON, CAR), range(9), faint + 0.001)], 300, 300) == found[:3]
    assert boxes.reaches(Box(CAR, 99, 0, 101, 10, 1), 300, 300, (TOP_CENTER,))


# --- the table -------------------------------------------------------------------------------------------

MODEL = "efficientnet-lite0"
SETTINGS = IndexSettings(MODEL, 448, "fp32")


def labelled(path: str) -> FileRow:
    return FileRow(path, 1000, 1, path.encode().hex()[:64].ljust(64, "0"), 300, 300, MODEL, 448)


def test_boxes_are_stored_read_by_class_and_split_into_faces_and_objects(index_url):
    engine = store.open_index(index_url)
    found = [Box(FACE_CLASS, 110, 10, 190, 90, 0.95), Box(PERSON, 100, 0, 200, 300, 0.7),
             Box(CAR, 200, 200, 290, 290, 0.2)]
    try:
        t = store.tables(engine)
        with engine.begin() as conn:
            store.write_settings(conn, t, SETTINGS)
            store.save_images(conn, t, [(labelled("/p/a.jpg"), regions.with_boxes(Regions([], []), found, 300, 300))])
            (a,) = conn.execute(sa.select(t.images.c.image_id)).scalars()
            store.copy_images(conn, t, [(labelled("/p/b.jpg"), a)])
        with engine.connect() as conn:
            ids = dict(conn.execute(sa.select(t.images.c.path, t.images.c.image_id)).all())
            assert store.read_boxes(conn, ids["/p/a.jpg"]) == found
            assert store.read_boxes(conn, ids["/p/b.jpg"], classes=frozenset({PERSON, CAR})) == found[1:]
            assert store.boxes_of(conn, list(ids.values()), classes=frozenset({CAR})) == {
                i: [found[2]] for i in ids.values()
            }
            report = store.image_report(conn, path="/p/b.jpg")
            assert (report.faces, report.objects) == (found[:1], found[1:])
            assert [o["label"] for o in store.box_overlays(conn, ids["/p/a.jpg"])] == [
                "face 95%", boxes.label(found[1]),
            ]
        with engine.begin() as conn:
            store.write_settings(conn, t, IndexSettings(MODEL, 448, "fp32", objects=False))
        with engine.connect() as conn:
            report = store.image_report(conn, path="/p/a.jpg")
            assert (report.faces, report.objects) == (found[:1], None)
        with engine.begin() as conn:
            store.delete_images(conn, t, list(ids.values()))
        with engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(t.boxes)).scalar_one() == 0
    finally:
        engine.dispose()


# --- the indexing run --------------------------------------------------------------------------------------


def scene(path: Path, blocks: dict[tuple[int, int, int], tuple[int, int, int, int]], hw=(300, 400)) -> Path:
    """A grey photo with a block of each colour at ``(x0, y0, x1, y1)``: the fake detector's objects."""
    pixels = np.full((*hw, 3), 128, np.uint8)
    for colour, (x0, y0, x1, y1) in blocks.items():
        pixels[y0:y1, x0:x1] = colour
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def index(db, folder, **kwargs) -> pipeline.Summary:
    engine = store.open_index(str(db), upgrade=kwargs.get("reindex", False))
    try:
        return pipeline.index(engine, [str(folder)], lambda s: FakeBackbone(), model="fake", size=96,
                              precision="fp32", **kwargs)
    finally:
        engine.dispose()


def rows(db, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture
def street(tmp_path) -> Path:
    folder = tmp_path / "photos"
    scene(folder / "street.png", {MAGENTA: (20, 20, 100, 280), CYAN: (280, 200, 390, 290)})
    scene(folder / "empty.png", {})
    for k in range(5):
        scene(folder / f"car-{k}.png", {CYAN: (10 * k, 10, 10 * k + 100, 90)})
    return folder


def test_the_index_stores_the_objects_where_they_are_in_batches_on_the_detector_threads(tmp_path, street):
    db = tmp_path / "index.db"
    loader = FakeObjectDetectors()
    summary = index(db, street, load_object_detector=loader, workers=2, batch=8)
    assert (summary.indexed, summary.objects_found, summary.faces_found) == (7, 2 + 5, 0)
    assert summary.object_seconds > 0
    found = rows(db, "SELECT path, box, class_id, x0, y0, x1, y1 FROM boxes JOIN images USING (image_id) "
                     "WHERE path LIKE '%street.png' ORDER BY box")
    assert [r[1:] for r in found] == [(0, PERSON, 20, 20, 100, 280), (1, CAR, 280, 200, 390, 290)]
    cells = rows(db, f"SELECT class_id, cell FROM cell_labels JOIN images USING (image_id) WHERE path LIKE '%street.png' "
                     f"AND class_id > {FACE_CLASS} AND class_id < {COMPOUND_BASE} ORDER BY class_id, cell")
    assert cells == [(PERSON, 0), (PERSON, 3), (PERSON, 6), (CAR, 8)]
    assert 1 <= len(loader.built) <= 2
    batches = [n for built in loader.built for n in built.batches]
    assert sum(batches) == 7 and max(batches) <= pipeline.DEFAULT_DETECT_BATCH
    assert all(name.startswith("imgidx-detect") for built in loader.built for name in built.threads)
    assert dict(rows(db, "SELECT key, value FROM meta"))["objects"] == "on"


def test_no_objects_loads_no_object_detector_and_asking_again_needs_reindex(tmp_path, street):
    db = tmp_path / "index.db"

    def no_detector():
        raise AssertionError("the object detector must not be loaded with --no-objects")

    summary = index(db, street, with_objects=False, load_object_detector=no_detector)
    assert summary.objects_found == 0 and rows(db, "SELECT COUNT(*) FROM boxes") == [(0,)]
    with pytest.raises(IndexSettingsError) as refused:
        index(db, street, with_objects=True)
    assert str(refused.value) == (
        "the index holds labels from fake at size 96 (fp32, without objects), not fake at size 96 (fp32, with "
        "objects); pass --reindex to rebuild it, or leave out --model/--size/--precision/--objects/--no-objects "
        "to keep its settings"
    )
    assert index(db, street).indexed == 0  # no flag: the index's own setting
    assert index(db, street, with_objects=True, reindex=True).objects_found == 7


class FixedFaces:
    """A face detector that finds the given faces wherever it is asked, and records the people it was given."""

    def __init__(self, found):
        self.found, self.people = found, []

    def detect(self, pixels, photo_size=None, levels=faces.LEVELS, people=None):
        self.people.append(people)
        return list(self.found)


def test_faces_are_searched_over_the_people_and_a_face_on_no_one_needs_more_confidence():
    person = Box(PERSON, 100, 50, 200, 350, 0.6)
    faint_person = Box(PERSON, 300, 50, 390, 350, detect.GUIDE_MIN_CONFIDENCE / 2)
    on_person = Box(FACE_CLASS, 130, 60, 170, 100, 0.65)
    too_small = Box(FACE_CLASS, 140, 200, 142, 202, 0.65)  # inside the person, far smaller than a face of theirs
    elsewhere = Box(FACE_CLASS, 10, 10, 40, 40, 0.7)
    sure = Box(FACE_CLASS, 220, 10, 260, 50, detect.ALONE_MIN_CONFIDENCE)
    detector = FixedFaces([on_person, too_small, elsewhere, sure])
    objects = FakeObjectDetectors()()
    objects.boxes = lambda pixels, size: [person, faint_person]
    found = detect.find([np.zeros((400, 400, 3), np.uint8)], [(400, 400)], detector, objects)
    assert detector.people == [[(100, 50, 200, 350)]]
    assert found.boxes[0] == [person, faint_person, on_person, sure]
    without = detect.find([np.zeros((400, 400, 3), np.uint8)], [(400, 400)], detector, None)
    assert detector.people[-1] is None and len(without.boxes[0]) == 4  # the whole tiling, every face


def test_finer_scales_are_searched_only_over_people_whose_face_they_may_need(monkeypatch):
    height, width = 600, 800
    whole, coarse, fine = faces.search_levels(height, width)
    assert faces.search_levels(height, width, people=[]) == [whole]
    tall = (0, 0, 60, 590)  # a face of FACE_IN_PERSON x 590 = 35 px: the whole photo's 50 px are too coarse
    levels = faces.search_levels(height, width, people=[tall])
    assert [level.scale for level in levels] == [whole.scale, coarse.scale]
    assert set(levels[1].corners) < set(coarse.corners)
    assert all(x < 60 * coarse.scale for x, _ in levels[1].corners)
    small = (700, 500, 720, 560)  # faces down to 4 px: the finest tiles, over it only
    levels = faces.search_levels(height, width, people=[small])
    assert [level.scale for level in levels] == [whole.scale, coarse.scale, fine.scale]
    assert len(levels[2].corners) < len(fine.corners)
    monkeypatch.setattr(faces, "FACE_IN_PERSON", 0.1)
    portrait = faces.search_levels(width, height)[0]  # 600 x 800: the whole photo finds faces from 50 px
    tallest = (0, 0, 600, 800)  # its face (a tenth of it, now) is no smaller than that
    assert faces.search_levels(width, height, people=[tallest]) == [portrait]


def test_a_real_face_pass_guided_by_people_finds_the_astronaut_and_nothing_on_a_plain_wall():
    detector = faces.Detectors()()
    photo = astronaut()
    guided = detect.guided_faces(detector, photo, (512, 512), [(0, 0, 512, 512)])
    assert len(guided) == 1 and guided[0].confidence > 0.85
    assert detect.guided_faces(detector, np.full((480, 640, 3), 90, np.uint8), (640, 480), []) == []


# --- schema 3 upgraded in place ------------------------------------------------------------------------------

UPGRADE_MESSAGE = (
    "{db} has schema version 3, from before objects; bring it up to date (its labels and faces are kept): "
    "imgidx index FOLDER --db {db}, with --objects --reindex to find objects too"
)


def as_schema_3(conn: sa.Connection) -> None:
    """What an index of schema version 3 looked like: faces in a table of their own, no object classes, no
    objects setting (``conn`` in a transaction; SQLite or PostgreSQL)."""
    real = "DOUBLE PRECISION" if conn.dialect.name == "postgresql" else "REAL"
    conn.exec_driver_sql(
        "CREATE TABLE faces (image_id INTEGER NOT NULL REFERENCES images (image_id) ON DELETE CASCADE, "
        f"face SMALLINT NOT NULL, x0 {real} NOT NULL, y0 {real} NOT NULL, x1 {real} NOT NULL, y1 {real} NOT NULL, "
        f"confidence {real} NOT NULL, PRIMARY KEY (image_id, face))"
    )
    conn.exec_driver_sql(f"INSERT INTO faces SELECT image_id, box, x0, y0, x1, y1, confidence FROM boxes "
                         f"WHERE class_id = {FACE_CLASS}")
    conn.exec_driver_sql("DROP TABLE boxes")
    conn.exec_driver_sql(f"DELETE FROM image_labels WHERE class_id > {FACE_CLASS}")
    conn.exec_driver_sql(f"DELETE FROM cell_labels WHERE class_id > {FACE_CLASS}")
    conn.exec_driver_sql(f"DELETE FROM class_ancestors WHERE class_id > {FACE_CLASS}")
    conn.exec_driver_sql(f"DELETE FROM classes WHERE class_id > {FACE_CLASS}")
    conn.exec_driver_sql("DELETE FROM meta WHERE key = 'objects'")
    conn.exec_driver_sql("UPDATE meta SET value = '3' WHERE key = 'schema_version'")


@pytest.fixture
def schema_3(tmp_path) -> tuple[Path, Path, list, list]:
    """A folder of the astronaut and a street, its index as schema 3 left it (faces, no objects), and its faces
    and label rows."""
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(astronaut()).save(folder / "astronaut.png")
    scene(folder / "street.png", {MAGENTA: (20, 20, 100, 280)})
    db = tmp_path / "index.db"
    index(db, folder, with_objects=False)
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        as_schema_3(conn)
    engine.dispose()
    faces_before = rows(db, "SELECT * FROM faces ORDER BY image_id, face")
    labels_before = rows(db, f"SELECT * FROM cell_labels WHERE class_id < {COMPOUND_BASE} ORDER BY image_id, cell, class_id")
    assert len(faces_before) == 1
    return folder, db, faces_before, labels_before


def test_a_schema_3_index_is_refused_read_only_and_left_as_it_was(schema_3):
    folder, db, _, _ = schema_3
    before = db.read_bytes()
    for command in (["query", "face"], ["stats"], ["show", str(folder / "astronaut.png")], ["query", "cat", "--json"]):
        result = CliRunner().invoke(cli, [*command, "--db", str(db)])
        assert (result.exit_code, result.stderr) == (1, f"Error: {UPGRADE_MESSAGE.format(db=db)}\n"), command
    with pytest.raises(SchemaVersionError):
        store.open_index(str(db), create=False, readonly=True)
    assert db.read_bytes() == before


def test_a_schema_3_index_is_upgraded_in_place_by_an_index_run_keeping_its_faces_and_labels(schema_3):
    folder, db, faces_before, labels_before = schema_3
    summary = index(db, folder)
    assert (summary.indexed, summary.unchanged) == (0, 2)
    meta = dict(rows(db, "SELECT key, value FROM meta"))
    assert (meta["schema_version"], meta["faces"], meta["objects"]) == (str(store.SCHEMA_VERSION), "on", "off")
    assert rows(db, "SELECT name FROM sqlite_master WHERE name = 'faces'") == []
    assert rows(db, f"SELECT image_id, box, x0, y0, x1, y1, confidence FROM boxes WHERE class_id = {FACE_CLASS} "
                    "ORDER BY image_id, box") == faces_before
    assert rows(db, "SELECT COUNT(*) FROM boxes") == [(1,)]
    assert rows(db, f"SELECT * FROM cell_labels WHERE class_id < {COMPOUND_BASE} ORDER BY image_id, cell, class_id") == labels_before
    assert rows(db, f"SELECT COUNT(*) FROM classes WHERE class_id > {FACE_CLASS} AND class_id < {COMPOUND_BASE}") == [
        (len(COCO_CLASSES),)]
    shown = CliRunner().invoke(cli, ["show", str(folder / "astronaut.png"), "--db", str(db)])
    assert shown.exit_code == 0
    assert shown.stdout.splitlines()[-3] == "faces: 1"
    assert shown.stdout.splitlines()[-1] == "objects: not looked for (indexed with --no-objects)"
    engine = store.open_index(str(db), create=False, readonly=True)
    try:
        assert [m.path.rsplit("/", 1)[1] for m in search(engine, "face").matches] == ["astronaut.png"]
    finally:
        engine.dispose()
    refused = CliRunner().invoke(cli, ["index", str(folder), "--db", str(db), "--objects"])
    assert (refused.exit_code, refused.stderr) == (1, (
        "Error: the index holds labels from fake at size 96 (fp32, without objects), not fake at size 96 (fp32, "
        "with objects); pass --reindex to rebuild it, or leave out --model/--size/--precision/--objects/--no-objects "
        "to keep its settings\n"
    ))


def test_objects_reindex_finds_the_objects_of_an_upgraded_index(schema_3):
    folder, db, _, _ = schema_3
    index(db, folder)  # the upgrade
    summary = index(db, folder, with_objects=True, reindex=True)
    assert (summary.indexed, summary.objects_found, summary.faces_found) == (2, 1, 1)
    assert rows(db, "SELECT class_id FROM boxes JOIN images USING (image_id) WHERE path LIKE '%street.png'") == [
        (PERSON,)
    ]


def test_a_schema_3_postgresql_index_is_upgraded_in_place(pg_url, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(astronaut()).save(folder / "astronaut.png")
    index(pg_url, folder, with_objects=False)
    engine = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.begin() as conn:
            before = conn.exec_driver_sql("SELECT image_id, box, x0, y0, x1, y1, confidence FROM boxes").all()
            as_schema_3(conn)
        with pytest.raises(SchemaVersionError, match="schema version 3, from before objects"):
            store.open_index(pg_url, create=False, readonly=True)
        store.open_index(pg_url).dispose()  # a writing open upgrades
        with engine.connect() as conn:
            assert conn.exec_driver_sql(f"SELECT image_id, box, x0, y0, x1, y1, confidence FROM boxes "
                                        f"WHERE class_id = {FACE_CLASS}").all() == before
            meta = dict(conn.exec_driver_sql("SELECT key, value FROM meta").all())
            assert (meta["schema_version"], meta["objects"]) == (str(store.SCHEMA_VERSION), "off")
            assert not sa.inspect(conn).has_table("faces")
    finally:
        engine.dispose()
    assert index(pg_url, folder).unchanged == 1


# --- what shows and uses boxes ---------------------------------------------------------------------------------


@pytest.fixture
def street_index(tmp_path, street) -> tuple[Path, Path]:
    db = tmp_path / "index.db"
    index(db, street)
    return street, db


def test_show_lists_the_objects_per_class_with_their_boxes(street_index):
    folder, db = street_index
    result = CliRunner().invoke(cli, ["show", str(folder / "street.png"), "--db", str(db)])
    assert result.exit_code == 0
    assert result.stdout.endswith(
        "faces: 0\n"
        "objects: 2 (1 person, 1 car)\n"
        "  1. person 100%  x 20-100, y 20-280 (80x260 px)\n"
        "  2. car 100%     x 280-390, y 200-290 (110x90 px)\n"
    )
    shown = json.loads(CliRunner().invoke(cli, ["show", str(folder / "street.png"), "--db", str(db), "--json"]).stdout)
    assert shown["faces"] == []
    assert shown["objects"] == [
        {"class": PERSON, "name": "person", "box": [20.0, 20.0, 100.0, 280.0], "confidence": SHOWN_0_9},
        {"class": CAR, "name": "car", "box": [280.0, 200.0, 390.0, 290.0], "confidence": SHOWN_0_9},
    ]


def test_the_gallery_outlines_and_labels_the_boxes_of_the_terms_that_matched(street_index):
    _, db = street_index
    engine = store.open_index(str(db), readonly=True)
    try:
        page = render.html_page(search(engine, "car in the bottom row"))
        assert page.count('<div class="bbox"') == 1  # the cars of the top row are not the term's
        assert ('<div class="bbox" title="car 100%" style="left:70.00%;top:66.67%;width:27.50%;height:30.00%">'
                '<span>car 100%</span></div>') in page
        assert '<div class="bbox' not in render.html_page(search(engine, "NOT car"))
    finally:
        engine.dispose()


def test_redact_blurs_the_boxes_of_person_and_car_padded(street_index, tmp_path):
    folder, db = street_index
    original = np.asarray(Image.open(folder / "street.png")).astype(int)
    for term, expected, box in (("person", "1 person box", (20, 20, 100, 280)), ("car in the bottom row", "1 car box",
                                                                                  (280, 200, 390, 290))):
        out = tmp_path / term.split()[0]
        result = CliRunner().invoke(cli, ["redact", term, "--out", str(out), "--db", str(db)])
        assert result.exit_code == 0, result.output
        assert result.stdout == f"wrote 1 copy into {out}; blurred {expected} in 1 photo\n"
        copy = np.asarray(Image.open(out / "street.png")).astype(int)
        x0, y0, x1, y1 = box
        pad_x, pad_y = (x1 - x0) * redact.OBJECT_PADDING, (y1 - y0) * redact.OBJECT_PADDING
        changed = np.argwhere(np.abs(copy - original).sum(axis=-1) > 0)
        assert changed[:, 1].min() >= x0 - pad_x - 1 and changed[:, 1].max() <= x1 + pad_x
        assert changed[:, 0].min() >= y0 - pad_y - 1 and changed[:, 0].max() <= y1 + pad_y
        assert np.abs(copy[y0:y1, x0:x1] - original[y0:y1, x0:x1]).sum(axis=-1).mean() > 10  # its edges blurred in


def test_merge_carries_the_boxes_and_refuses_to_mix_with_an_index_without_objects(tmp_path, street):
    with_objects, without = tmp_path / "with.db", tmp_path / "without.db"
    index(with_objects, street)
    index(without, street, with_objects=False)
    into = tmp_path / "into.db"
    merge.merge([str(with_objects)], str(into))
    query = "SELECT path, box, class_id, x0, y0, x1, y1, confidence FROM boxes JOIN images USING (image_id) ORDER BY path, box"
    assert rows(into, query) == rows(with_objects, query) and len(rows(into, query)) == 7
    with pytest.raises(merge.MergeError) as refused:
        merge.merge([str(with_objects), str(without)], str(tmp_path / "both.db"))
    assert "(fp32, with objects)" in str(refused.value) and "(fp32, without objects)" in str(refused.value)


def test_the_web_photo_page_draws_the_objects_with_their_labels(street_index, tmp_path):
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from serve.app import Index, create_app

    folder, db = street_index
    ids = dict(rows(db, "SELECT path, image_id FROM images"))
    index_ = Index(str(db), thumbnail_folder=tmp_path / "thumbnails")
    try:
        with TestClient(create_app(index_), base_url="http://localhost") as client:
            page = client.get(f"/photo/{ids[str(folder / 'street.png')]}").text
    finally:
        index_.close()
    assert ('<span class="bbox" id="box-0" data-left="0.05" data-top="0.06666666666666667" data-width="0.2" '
            'data-height="0.8666666666666667"><span class="tag inside">person 100%</span></span>') in page
    assert page.count('<span class="bbox') == 2


def test_segment_lists_and_draws_the_boxes(tmp_path, monkeypatch):
    def load_network(*args, **kwargs):
        model = FakeBackbone()
        model.name = "fake"
        return model

    monkeypatch.setattr("indexer.cli.photo.load_network", load_network)
    monkeypatch.setattr("indexer.objects.load_detector", lambda *a, **k: FakeObjectDetectors()())
    photo = scene(tmp_path / "street.png", {MAGENTA: (20, 20, 100, 280), CYAN: (280, 200, 390, 290)})
    result = CliRunner().invoke(cli, ["segment", str(photo), "--text", "--size", "96"])
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith(
        "faces: 0\nobjects: 2 (1 person, 1 car)\n"
        "  1. person 100%  x 20-100, y 20-280 (80x260 px)\n"
        "  2. car 100%     x 280-390, y 200-290 (110x90 px)\n"
    )
    out = tmp_path / "map.png"
    result = CliRunner().invoke(cli, ["segment", str(photo), "--out", str(out), "--size", "96", "--no-faces"])
    assert result.exit_code == 0 and out.exists()
    no_boxes = CliRunner().invoke(cli, ["segment", str(photo), "--text", "--size", "96", "--no-faces", "--no-objects"])
    assert "objects:" not in no_boxes.stdout and "faces:" not in no_boxes.stdout


def test_an_index_without_objects_redacts_an_object_word_through_its_class_map_and_says_so_to_a_query(
    tmp_path, street
):
    db = tmp_path / "index.db"
    index(db, street, with_objects=False)
    engine = store.open_index(str(db), create=False, readonly=True)
    try:
        with engine.connect() as conn:
            assert redact.detected_classes(store.read_settings(conn)) == {FACE_CLASS}
    finally:
        engine.dispose()
    result = CliRunner().invoke(cli, ["query", "car", "--db", str(db)])
    assert result.stderr.splitlines()[-1] == (
        "note: this index was built without objects (--no-objects), so the object detector's classes find none; "
        "imgidx index FOLDER --objects --reindex finds them"
    )
    indexed = tmp_path / "objects.db"
    index(indexed, street)
    assert "without objects" not in CliRunner().invoke(cli, ["query", "car", "--db", str(indexed)]).stderr
