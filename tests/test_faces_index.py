"""Faces in the index: cell scores, the boxes table, schema 2 upgraded in place, every query form on the face
label (SQLite and PostgreSQL), and the indexer finding faces with the real detector."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from PIL import Image

from face_photos import group_photo, rotated_jpeg, upright_jpeg
from fake_backbone import FakeBackbone
from fake_detector import FakeObjectDetector
from index_dump import dump_index
from indexer import boxes, calibration, detect, faces, images, merge, pipeline, regions, store
from indexer.boxes import Box
from indexer.cli import cli
from indexer.errors import IndexSettingsError, SchemaVersionError
from indexer.labels import COMPOUND_BASE, FACE_CLASS, OBJECT_CLASS_BASE
from indexer.regions import CellLabel, ImageLabel, Regions
from indexer.store import FileRow, IndexSettings
from query import DEFAULT_MIN_SCORE, render
from query.search import explain, prepare, search

MODEL = "efficientnet-lite0"
GOLDEN_RETRIEVER, GROOM = 207, 982
#: Faces without the object detector (``--no-objects``): a face and the classifier's people are fused by the
#: rule of such an index (`calibration.WITHOUT_OBJECTS`); tests/test_query_fusion.py has the detector's rule.
SETTINGS = IndexSettings(MODEL, 448, "fp32", objects=False)
TOP_CENTER, CENTER_LEFT, CENTER, CENTER_RIGHT = 1, 3, 4, 5


# --- cell scores ------------------------------------------------------------------------------------------


def face(x0, y0, x1, y1, confidence) -> Box:
    return Box(FACE_CLASS, x0, y0, x1, y1, confidence)


def test_a_face_counts_with_its_confidence_in_the_cells_it_occupies():
    scores, coverage = boxes.cell_scores([face(10, 10, 40, 40, 0.9)], 300, 300)
    assert scores[0] == pytest.approx(0.9) and scores[1:].max() == 0
    assert coverage[0] == pytest.approx(30 * 30 / 100 / 100)
    scores, _ = boxes.cell_scores([face(80, 10, 120, 50, 0.8)], 300, 300)  # half in cell 0, half in cell 1
    assert scores[:2] == pytest.approx([0.8, 0.8]) and scores[2:].max() == 0
    # a wide face covers the top row whole and a fifth of each cell below: under OCCUPIES_CELL, not there
    scores, _ = boxes.cell_scores([face(0, 0, 300, 120, 0.7)], 300, 300)
    assert boxes.OCCUPIES_CELL > 0.2
    assert scores[:3] == pytest.approx([0.7] * 3) and scores[3:].max() == 0
    scores, _ = boxes.cell_scores([face(10, 10, 40, 40, 0.9), face(50, 50, 60, 60, 0.4)], 300, 300)
    assert scores[0] == pytest.approx(0.9)  # the better face: near-duplicate boxes are no independent evidence


def test_with_boxes_adds_the_face_label_and_keeps_the_model_rows():
    base = Regions([ImageLabel(GOLDEN_RETRIEVER, 0.5, 0.2)], [CellLabel(CENTER, GOLDEN_RETRIEVER, 0.5, 0.4)])
    found = regions.with_boxes(base, [face(110, 10, 190, 90, 0.95)], 300, 300)
    assert found.boxes == (Box(FACE_CLASS, 110.0, 10.0, 190.0, 90.0, 0.95),)
    assert found.image_labels[0] == base.image_labels[0]
    assert found.image_labels[1] == ImageLabel(FACE_CLASS, pytest.approx(0.95), pytest.approx(80 * 80 / 300 / 300))
    assert [c for c in found.cell_labels if c.class_id == FACE_CLASS] == [
        CellLabel(TOP_CENTER, FACE_CLASS, pytest.approx(0.95), pytest.approx(0.64))
    ]
    assert regions.with_boxes(base, [], 300, 300) == base


def test_calibration_reads_faces_as_stored():
    cal = calibration.for_model(MODEL)
    assert cal.probability(0.42, (FACE_CLASS,)) == pytest.approx(0.42)
    assert cal.evidence_for(0.3, (FACE_CLASS,)) == pytest.approx(0.3)
    assert cal.evidence_for(1.5, (FACE_CLASS,)) == float("inf")
    assert cal.prior((GROOM, FACE_CLASS)) == cal.prior((GROOM,))  # faces have no prior in the curve


# --- the faces table --------------------------------------------------------------------------------------


def labelled(path, width=300, height=300) -> FileRow:
    return FileRow(path, 1000, 1, path.encode().hex()[:64].ljust(64, "0"), width, height, MODEL, 448)


def with_face(*found, model_rows=()) -> Regions:
    cells = [CellLabel(cell, cls, score, 0.5) for cell, cls, score in model_rows]
    images = [ImageLabel(cls, score, 0.1) for _, cls, score in model_rows]
    return regions.with_boxes(Regions(images, cells), [face(*box) for box in found], 300, 300)


def test_faces_are_stored_copied_and_dropped_with_their_image(index_url):
    engine = store.open_index(index_url)
    try:
        t = store.tables(engine)
        with engine.begin() as conn:
            store.write_settings(conn, t, SETTINGS)
            store.save_images(conn, t, [(labelled("/p/a.jpg"), with_face((1, 2, 30, 40, 0.9), (200, 5, 250, 60, 0.7)))])
            (a,) = conn.execute(sa.select(t.images.c.image_id)).scalars()
            store.copy_images(conn, t, [(labelled("/p/copy.jpg"), a)])
        with engine.connect() as conn:
            ids = dict(conn.execute(sa.select(t.images.c.path, t.images.c.image_id)).all())
            expected = [face(1, 2, 30, 40, 0.9), face(200, 5, 250, 60, 0.7)]
            assert store.read_boxes(conn, ids["/p/a.jpg"]) == expected
            assert store.read_boxes(conn, ids["/p/copy.jpg"]) == expected
            assert store.boxes_of(conn, list(ids.values())) == {i: expected for i in ids.values()}
            assert store.image_report(conn, path="/p/copy.jpg").faces == expected
            assert store.box_overlays(conn, ids["/p/a.jpg"])[0] == {
                "left": 1 / 300, "top": 2 / 300, "width": 29 / 300, "height": 38 / 300, "label": "face 90%",
                "face": True,
            }
        with engine.begin() as conn:
            store.delete_images(conn, t, [ids["/p/a.jpg"]])
            store.save_images(conn, t, [(labelled("/p/copy.jpg"), with_face())])  # re-labelled: no face now
        with engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(t.boxes)).scalar_one() == 0
            assert store.image_report(conn, path="/p/copy.jpg").faces == []
    finally:
        engine.dispose()


def fake_index(db, folder, **kwargs):
    """The fake backbone over ``folder``; a new index without objects unless asked (the face pass then
    searches the whole tiling, as these tests expect: the fake object detector finds no people here)."""
    engine = store.open_index(str(db), upgrade=kwargs.get("reindex", False))
    with engine.connect() as conn:
        new = store.read_settings(conn) is None
    kwargs.setdefault("with_objects", False if new or kwargs.get("reindex") else None)
    try:
        return pipeline.index(engine, [str(folder)], lambda s: FakeBackbone(), model="fake", size=448,
                              precision="fp32", **kwargs)
    finally:
        engine.dispose()


def as_schema_2(db: Path) -> None:
    """What an index of schema version 2 looked like: no faces (nor boxes) table, no face or object class, no
    faces or objects setting."""
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE boxes")
        conn.execute(f"DELETE FROM classes WHERE class_id >= {FACE_CLASS}")
        conn.execute("DELETE FROM meta WHERE key IN ('faces', 'objects')")
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")


def schema_2_index(tmp_path) -> tuple[Path, Path]:
    """A folder with the astronaut and an index of it as schema version 2 left it."""
    photos = tmp_path / "photos"
    photos.mkdir()
    upright_jpeg(photos / "astronaut.jpg")
    db = tmp_path / "index.db"
    fake_index(db, photos, with_faces=False, with_objects=False)
    as_schema_2(db)
    return photos, db


#: The models' label rows, not the compounds' (`query.compounds`), which an older index gains on its next run.
MODEL_ROWS = f"SELECT * FROM cell_labels WHERE class_id < {COMPOUND_BASE} ORDER BY image_id, cell, class_id"


def test_a_schema_2_index_is_upgraded_in_place_keeping_its_labels(tmp_path):
    photos, db = schema_2_index(tmp_path)
    with sqlite3.connect(db) as conn:
        labels_before = conn.execute(MODEL_ROWS).fetchall()
    before = db.read_bytes()
    message = (
        f"{db} has schema version 2, from before faces; bring it up to date (its labels are kept): "
        f"imgidx index FOLDER --db {db}, with --reindex to find faces too"
    )
    for command in (["query", "face"], ["stats"], ["show", str(photos / "astronaut.jpg")]):
        result = CliRunner().invoke(cli, [*command, "--db", str(db)])
        assert (result.exit_code, result.stderr) == (1, f"Error: {message}\n"), command
    assert db.read_bytes() == before
    summary = fake_index(db, photos)
    assert (summary.indexed, summary.unchanged) == (0, 1)
    with sqlite3.connect(db) as conn:
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        assert (meta["schema_version"], meta["faces"], meta["objects"]) == (str(store.SCHEMA_VERSION), "off", "off")
        assert conn.execute(MODEL_ROWS).fetchall() == labels_before
        assert conn.execute(f"SELECT name FROM classes WHERE class_id = {FACE_CLASS}").fetchall() == [("face",)]
        assert conn.execute(f"SELECT COUNT(*) FROM classes WHERE class_id > {FACE_CLASS} AND class_id < {COMPOUND_BASE}"
                            ).fetchall() == [(80,)]
    with pytest.raises(IndexSettingsError) as refused:
        fake_index(db, photos, with_faces=True)
    assert str(refused.value) == (
        "the index holds labels from fake at size 448 (fp32, without faces), not fake at size 448 (fp32, with faces); "
        "pass --reindex to rebuild it, or leave out --model/--size/--precision/--faces/--no-faces to keep its settings"
    )
    summary = fake_index(db, photos, with_faces=True, reindex=True)
    assert (summary.indexed, summary.faces_found) == (1, 1)


def test_a_schema_1_index_goes_straight_to_this_version_with_reindex(tmp_path):
    photos, db = schema_2_index(tmp_path)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    with pytest.raises(SchemaVersionError, match="schema version 1"):
        fake_index(db, photos)
    summary = fake_index(db, photos, reindex=True)
    assert (summary.indexed, summary.faces_found) == (1, 1)


# --- queries ----------------------------------------------------------------------------------------------


def confident(classes, confidence=0.8) -> float:
    """The evidence that gives ``classes`` this confidence in the shipped calibration."""
    return calibration.for_model(MODEL).evidence_for(confidence, classes)


#: name -> (faces, model rows (cell, class, evidence)); photos are 300x300, cells 100x100.
PHOTOS = {
    "a_face_top_dog_right": ([(120, 10, 180, 80, 0.9)], [(CENTER_RIGHT, GOLDEN_RETRIEVER, "dog")]),
    "b_dog_only": ([], [(CENTER, GOLDEN_RETRIEVER, "dog")]),
    "c_groom": ([], [(CENTER, GROOM, "groom")]),
    "d_face_left_dog_right": ([(10, 110, 60, 170, 0.75)], [(CENTER_RIGHT, GOLDEN_RETRIEVER, "dog")]),
    "e_faint_face": ([(210, 210, 260, 260, 0.62)], []),
}


@pytest.fixture(scope="module")
def query_index(new_index_url):
    engine = store.open_index(new_index_url())
    t = store.tables(engine)
    evidence = {"dog": confident((GOLDEN_RETRIEVER,)), "groom": confident((981, GROOM, 983), 0.7)}  # as person reads it
    with engine.begin() as conn:
        store.write_settings(conn, t, SETTINGS)
        store.save_images(conn, t, [
            (labelled(f"/p/{name}.jpg"), with_face(*boxes, model_rows=[(c, k, evidence[e]) for c, k, e in rows]))
            for name, (boxes, rows) in PHOTOS.items()
        ])
    yield engine
    engine.dispose()


def names(engine, text, **kwargs):
    return sorted(m.path.rsplit("/", 1)[1].split("_", 1)[0] for m in search(engine, text, limit=None, **kwargs).matches)


@pytest.mark.parametrize("text, expected", [
    ("face", ["a", "d", "e"]),
    ("faces in the top row", ["a"]),
    ("face in center-left", ["d"]),
    ("face > 0.7", ["a", "d"]),
    ("NOT face", ["b", "c"]),
    ("face left of golden retriever", ["a", "d"]),
    ("face above golden retriever", ["a"]),
    ("golden retriever AND NOT face", ["b"]),
    ("person", ["a", "c", "d", "e"]),
    ("people in center", ["c"]),
    ("person > 0.8", ["a"]),
    ("human face OR groom", ["a", "c", "d", "e"]),
])
def test_every_query_form_works_on_faces(query_index, text, expected):
    assert names(query_index, text) == expected


def test_face_scores_are_the_detectors_confidence_and_person_the_better_part(query_index):
    found = {m.path.rsplit("/", 1)[1][0]: m for m in search(query_index, "person", limit=None).matches}
    assert found["a"].score == pytest.approx(0.9) and found["a"].terms[0].cells == ("top-center",)
    assert found["e"].score == pytest.approx(0.62) and found["e"].terms[0].cells == ("bottom-right",)
    assert found["c"].score == pytest.approx(0.7, abs=1e-6) and found["c"].terms[0].cells == ("center",)


def test_explain_and_grid_name_the_face_class(query_index):
    prepared = prepare(query_index, "face left of golden retriever")
    text = explain(query_index, prepared)
    assert "  class 1000 face, human face (n05600637)" in text
    assert f"term 1: confidence >= {DEFAULT_MIN_SCORE:g}, as the face detector gave it" in text
    grid = render.grids(search(query_index, "face left of golden retriever"), unicode=False)
    assert "1=face: center-left (75%)" in grid and "2=golden retriever: center-right" in grid


def test_show_lists_the_faces(query_index):
    with query_index.connect() as conn:
        report = store.image_report(conn, path="/p/a_face_top_dog_right.jpg")
    from indexer.report import image_json, image_text

    assert image_text(report, 5).endswith(
        "\nfaces: 1\n  1.  90%  x 120-180, y 10-80 (60x70 px)\nobjects: not looked for (indexed with --no-objects)"
    )
    assert image_json(report)["faces"] == [{"box": [120.0, 10.0, 180.0, 80.0], "confidence": 0.9}]
    assert image_json(report)["objects"] is None


# --- indexing with the real detector ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def face_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faces")
    upright_jpeg(folder / "astronaut.jpg")
    rotated_jpeg(folder / "astronaut-turned.jpg")
    photo, _ = group_photo((0.03, 0.05, 0.08, 0.12))
    Image.fromarray(photo).save(folder / "group.jpg", quality=95)
    Image.fromarray(np.full((300, 400, 3), 90, np.uint8)).save(folder / "wall.png")
    return folder


def stored_faces(db) -> dict[str, tuple[list, list]]:
    """path name -> (faces, face cells with their scores)."""
    with sqlite3.connect(db) as conn:
        found = {name.rsplit("/", 1)[1]: ([], []) for (name,) in conn.execute("SELECT path FROM images")}
        for name, *box in conn.execute(
            f"SELECT path, x0, y0, x1, y1, confidence FROM boxes JOIN images USING (image_id) "
            f"WHERE class_id = {FACE_CLASS} ORDER BY path, box"
        ):
            found[name.rsplit("/", 1)[1]][0].append(box)
        for name, cell, score in conn.execute(
            f"SELECT path, cell, score FROM cell_labels JOIN images USING (image_id) WHERE class_id = {FACE_CLASS} "
            "ORDER BY path, cell"
        ):
            found[name.rsplit("/", 1)[1]][1].append((cell, score))
    return found


def test_the_indexer_finds_faces_where_a_person_sees_them(tmp_path, face_folder):
    db = tmp_path / "index.db"
    summary = fake_index(db, face_folder)
    assert summary.faces_found == 1 + 1 + 4 and summary.face_seconds > 0
    found = stored_faces(db)
    (face,) = found["astronaut.jpg"][0]
    assert face[4] > 0.85
    assert max(found["astronaut.jpg"][1], key=lambda c: c[1])[0] == TOP_CENTER
    turned_faces, turned_cells = found["astronaut-turned.jpg"]
    assert np.allclose(turned_faces, found["astronaut.jpg"][0], atol=4)
    assert [cell for cell, _ in turned_cells] == [cell for cell, _ in found["astronaut.jpg"][1]]
    assert len(found["group.jpg"][0]) == 4
    assert found["wall.png"] == ([], [])
    engine = store.open_index(str(db), create=False, readonly=True)
    try:
        bottom = [m.path.rsplit("/", 1)[1] for m in search(engine, "face in the bottom row", limit=None).matches]
        assert bottom == ["group.jpg"]
        hits = [m.path.rsplit("/", 1)[1] for m in search(engine, "face in top-center", limit=None).matches]
        assert sorted(hits) == ["astronaut-turned.jpg", "astronaut.jpg"]
        with engine.connect() as conn:
            (astronaut,) = [m.image_id for m in search(conn, "face", limit=None).matches if m.path.endswith("/astronaut.jpg")]
            (box,) = store.box_overlays(conn, astronaut)
        (x0, y0, x1, y1, confidence), width = face, 512  # the astronaut is 512 px square
        assert box == pytest.approx(
            {"left": x0 / width, "top": y0 / width, "width": (x1 - x0) / width, "height": (y1 - y0) / width,
             "label": f"face {calibration.percent(confidence)}", "face": True}
        )
    finally:
        engine.dispose()


class WatchedDetector:
    """A real detector that records the threads searching with it, and whether two ever did at once."""

    def __init__(self, detector: faces.FaceDetector):
        self.detector = detector
        self.threads: set[str] = set()
        self.busy = threading.Lock()
        self.overlapped = False

    def detect(self, pixels, photo_size=None, people=None):
        self.threads.add(threading.current_thread().name)
        if not self.busy.acquire(blocking=False):
            self.overlapped = True
            self.busy.acquire()
        try:
            return self.detector.detect(pixels, photo_size, people=people)
        finally:
            self.busy.release()


def face_rows(regions_: Regions) -> tuple[list, list, list]:
    """The face label's share of a photo's rows, as `dump_index` sorts them: image label, cells, faces."""
    image = sorted((label.class_id, label.score, label.share) for label in regions_.image_labels)
    cells = sorted((c.cell, c.class_id, c.score, c.coverage) for c in regions_.cell_labels)
    found = sorted((n, *box) for n, box in enumerate(regions_.boxes))
    return image, cells, found


def only_faces(dumped: tuple) -> tuple[list, list, list]:
    _, image_labels, cell_labels, found = dumped
    return ([label for label in image_labels if FACE_CLASS <= label[0] < COMPOUND_BASE],
            [label for label in cell_labels if FACE_CLASS <= label[1] < COMPOUND_BASE], found)


@pytest.mark.parametrize("with_objects", [False, True])
def test_face_threads_store_what_one_detector_finds_photo_by_photo(tmp_path, face_folder, with_objects):
    """The box pass runs on detector threads, each with detectors of its own, and stores, to the last bit,
    what one face detector finds searching the photos one by one as the writer thread did before (and the
    Ray engine does): over the whole tiling without objects, guided by the (fake) object detector's people
    with them."""
    photos = tmp_path / "photos"
    shutil.copytree(Path(__file__).parent / "photos", photos)
    for name in ("astronaut.jpg", "group.jpg", "wall.png"):
        shutil.copy(face_folder / name, photos / f"skimage-{name}")
    reference = faces.Detectors()()
    objects = FakeObjectDetector() if with_objects else None
    expected = {}
    for path in sorted(photos.iterdir()):
        decoded = images.decode(images.read_file(path), str(path), 448)
        size = (decoded.width, decoded.height)
        found = detect.find([faces.detection_pixels(decoded.pixels)], [size], reference, objects).boxes[0]
        expected[path.name] = face_rows(regions.with_boxes(Regions([], []), found, *size))
    # The astronauts and the group at least; guided by no people, the group's small faces go unsearched.
    assert sum(len(rows[2]) for rows in expected.values()) >= (1 + 1 + 1 if with_objects else 1 + 4 + 1)

    source, watched = faces.Detectors(), []

    def load_detector():
        watched.append(WatchedDetector(source()))
        return watched[-1]

    dumps = {}
    for workers in (1, 3):
        db = tmp_path / f"workers-{workers}.db"
        summary = fake_index(db, photos, workers=workers, batch=2, load_detector=load_detector,
                             with_objects=with_objects)
        assert summary.indexed == len(expected) and summary.face_seconds > 0
        assert summary.faces_found == sum(len(rows[2]) for rows in expected.values())
        dumps[workers] = {Path(path).name: rows for path, rows in dump_index(str(db)).items() if path != "<settings>"}
        assert {name: only_faces(rows) for name, rows in dumps[workers].items()} == expected
        assert 1 <= len(watched) <= workers
        assert all(thread.startswith("imgidx-detect") for w in watched for thread in w.threads)
        assert not any(w.overlapped for w in watched)
        watched.clear()
    assert dumps[1] == dumps[3]

    (photos / "astronaut.jpg").rename(photos / "moved.jpg")
    shutil.copy(photos / "coffee.jpg", photos / "copied.jpg")
    summary = fake_index(tmp_path / "workers-3.db", photos, workers=3, load_detector=load_detector)
    assert (summary.moved, summary.copied, summary.indexed, summary.face_seconds) == (1, 1, 0, 0)
    assert watched == []  # labels carried over: no face is searched again


def test_the_web_photo_page_outlines_the_faces_the_indexer_found(tmp_path, face_folder, monkeypatch):
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from serve.app import Index, create_app

    db = tmp_path / "index.db"
    fake_index(db, face_folder)
    with sqlite3.connect(db) as conn:
        ids = {path.rsplit("/", 1)[1]: image_id for image_id, path in conn.execute("SELECT image_id, path FROM images")}
    index = Index(str(db), thumbnail_folder=tmp_path / "thumbnails")
    try:
        with TestClient(create_app(index), base_url="http://localhost") as client:
            faces_drawn = {name: client.get(f"/photo/{ids[name]}").text.count('<span class="bbox face" ') for name in ids}
    finally:
        index.close()
    assert faces_drawn == {"astronaut.jpg": 1, "astronaut-turned.jpg": 1, "group.jpg": 4, "wall.png": 0}


def test_no_faces_skips_the_detector_and_says_so_in_the_settings(tmp_path, face_folder):
    db = tmp_path / "index.db"

    def no_detector():
        raise AssertionError("the detector must not be loaded with --no-faces")

    summary = fake_index(db, face_folder, with_faces=False, with_objects=True, load_detector=no_detector)
    assert summary.faces_found == 0
    assert stored_faces(db)["astronaut.jpg"] == ([], [])
    with sqlite3.connect(db) as conn:
        assert dict(conn.execute("SELECT key, value FROM meta"))["faces"] == "off"
    result = CliRunner().invoke(cli, ["show", str(face_folder / "astronaut.jpg"), "--db", str(db)])
    assert result.exit_code == 0 and "faces: not looked for (indexed with --no-faces)" in result.stdout
    result = CliRunner().invoke(cli, ["query", "person", "--db", str(db)])
    assert result.stderr == (
        "note: this index was built without faces (--no-faces), so face terms find none; "
        "imgidx index FOLDER --faces --reindex finds them\n"
    )


def test_merge_carries_faces_and_refuses_to_mix_with_an_index_without(tmp_path, face_folder):
    with_faces, without = tmp_path / "with.db", tmp_path / "without.db"
    fake_index(with_faces, face_folder)
    fake_index(without, face_folder, with_faces=False)
    into = tmp_path / "into.db"
    merge.merge([str(with_faces)], str(into))
    assert stored_faces(into) == stored_faces(with_faces)
    with pytest.raises(merge.MergeError) as refused:
        merge.merge([str(with_faces), str(without)], str(tmp_path / "both.db"))
    assert "(fp32, with faces)" in str(refused.value) and "(fp32, without faces)" in str(refused.value)


def test_the_html_gallery_outlines_the_faces(query_index):
    page = render.html_page(search(query_index, "face"))
    assert page.count('<div class="bbox face"') == 3
    assert ('<div class="bbox face" title="face 90%" style="left:40.00%;top:3.33%;width:20.00%;height:23.33%">'
            '<span>face 90%</span></div>') in page
    assert '<div class="bbox' not in render.html_page(search(query_index, "golden retriever"))


def test_index_cli_takes_no_faces_and_refuses_to_mix(tmp_path, face_folder, monkeypatch):
    def load_model(name, weights=None, precision="auto"):
        model = FakeBackbone()
        model.name, model.precision = name, precision
        return model

    monkeypatch.setattr("indexer.models.load_model", load_model)
    db = str(tmp_path / "index.db")
    args = ["index", str(face_folder), "--db", db, "--model", "efficientnet-lite0", "--precision", "fp32",
            "--no-objects"]
    first = CliRunner().invoke(cli, [*args, "--no-faces"])
    assert first.exit_code == 0 and "faces found" not in first.stdout
    refused = CliRunner().invoke(cli, [*args, "--faces"])
    assert (refused.exit_code, refused.stderr) == (1, (
        "Error: the index holds labels from efficientnet-lite0 at size 448 (fp32, without faces), not efficientnet-lite0 "
        "at size 448 (fp32, with faces); pass --reindex to rebuild it, or leave out --model/--size/--precision"
        "/--faces/--no-faces to keep its settings\n"
    ))
    kept = CliRunner().invoke(cli, args)  # no flag: the index's own setting
    assert kept.exit_code == 0 and kept.stdout.startswith("0 indexed, 4 unchanged")
    rebuilt = CliRunner().invoke(cli, [*args, "--faces", "--reindex"])
    assert rebuilt.exit_code == 0 and rebuilt.stdout.endswith("); 6 faces found\n")
