"""imgidx redact: faces and class-map regions covered in copies, originals untouched, format, quality and EXIF
kept, and every bad input refused in one line with nothing lost."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from face_photos import TURN_CLOCKWISE, EXIF_ORIENTATION, astronaut, group_photo
from fake_backbone import FakeBackbone
from indexer import images, pipeline, redact, store
from indexer.boxes import Box
from indexer.cli import cli

FIRE_ENGINE = 555
GPS_IFD = 0x8825
#: Pixels this far outside a padded face box are never touched.
AWAY = 2


def index_folder(folder: Path, db: Path, size: int = 96, with_objects: bool = False) -> None:
    """The fake backbone over ``folder``, without objects unless asked: the face pass then searches the whole
    tiling (the fake object detector finds no people in these photos to guide it)."""
    engine = store.open_index(str(db))
    try:
        pipeline.index(engine, [str(folder)], lambda s: FakeBackbone(), model="fake", size=size, precision="fp32",
                       with_objects=with_objects)
    finally:
        engine.dispose()


def run(*args):
    return CliRunner().invoke(cli, list(args))


def exif_with_gps() -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "imgidx test camera"  # Make
    gps = exif.get_ifd(GPS_IFD)
    gps[1], gps[2] = "N", (48.0, 51.0, 24.0)  # GPSLatitudeRef, GPSLatitude
    return exif


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """Photos with faces (PNG, JPEG with EXIF and GPS, a turned JPEG), a photo without, and their index."""
    root = tmp_path_factory.mktemp("library")
    photos = root / "photos"
    (photos / "trip").mkdir(parents=True)
    group, _ = group_photo((0.05, 0.08, 0.12), size=(600, 800))
    Image.fromarray(group).save(photos / "group.png")
    Image.fromarray(astronaut()).save(photos / "trip" / "astronaut.jpg", quality=90, exif=exif_with_gps())
    turned = exif_with_gps()
    turned[EXIF_ORIENTATION] = TURN_CLOCKWISE
    Image.fromarray(np.rot90(astronaut(), k=1)).save(photos / "trip" / "turned.jpg", quality=90, exif=turned)
    index_folder(photos, root / "index.db")
    return photos, root / "index.db"


def stored_faces(db: Path, path: Path) -> list[Box]:
    engine = store.open_index(str(db), create=False, readonly=True)
    try:
        with engine.connect() as conn:
            return store.image_report(conn, path=str(path)).faces
    finally:
        engine.dispose()


def padded(box: Box, margin: float) -> tuple[int, int, int, int]:
    pad_x, pad_y = (box.right - box.left) * margin, (box.bottom - box.top) * margin
    return (int(box.left - pad_x), int(box.top - pad_y), int(box.right + pad_x) + 1, int(box.bottom + pad_y) + 1)


def outside(shape, boxes) -> np.ndarray:
    keep = np.ones(shape[:2], bool)
    for x0, y0, x1, y1 in boxes:
        keep[max(0, y0 - AWAY) : y1 + AWAY, max(0, x0 - AWAY) : x1 + AWAY] = False
    return keep


def test_faces_are_blurred_and_nothing_else_changes(library, tmp_path):
    photos, db = library
    out = tmp_path / "public"
    before = (photos / "group.png").read_bytes()
    result = run("redact", "face", "--out", str(out), "--db", str(db))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"wrote 3 copies into {out}; blurred 5 faces in 3 photos\n"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.*")) == [
        "group.png", "trip/astronaut.jpg", "trip/turned.jpg"
    ]
    assert (photos / "group.png").read_bytes() == before
    original = images.load(photos / "group.png").pixels.astype(int)
    copy = images.load(out / "group.png").pixels.astype(int)
    found = stored_faces(db, photos / "group.png")
    assert len(found) == 3
    for face in found:
        x0, y0, x1, y1 = (int(v) for v in (face.left, face.top, face.right, face.bottom))
        assert np.abs(copy[y0:y1, x0:x1] - original[y0:y1, x0:x1]).mean() > 3  # the face itself changed
    untouched = outside(original.shape, [padded(f, redact.FACE_PADDING) for f in found])
    assert np.array_equal(copy[untouched], original[untouched])  # a lossless copy: identical elsewhere


def test_a_jpeg_copy_keeps_its_quality_exif_and_orientation(library, tmp_path):
    photos, db = library
    out = tmp_path / "public"
    assert run("redact", "face", "--out", str(out), "--db", str(db), "--strip-gps").exit_code == 0
    for name in ("astronaut.jpg", "turned.jpg"):
        with Image.open(photos / "trip" / name) as source, Image.open(out / "trip" / name) as copy:
            assert copy.format == "JPEG" and copy.quantization == source.quantization
            exif = copy.getexif()
            assert exif[0x010F] == "imgidx test camera" and GPS_IFD not in exif
            assert exif.get(EXIF_ORIENTATION, 1) == source.getexif().get(EXIF_ORIENTATION, 1)
    (face,) = stored_faces(db, photos / "trip" / "turned.jpg")
    upright = images.load(out / "trip" / "turned.jpg").pixels.astype(int)
    source = images.load(photos / "trip" / "turned.jpg").pixels.astype(int)
    assert upright.shape == source.shape == (512, 512, 3)
    x0, y0, x1, y1 = (int(v) for v in (face.left, face.top, face.right, face.bottom))
    assert np.abs(upright[y0:y1, x0:x1] - source[y0:y1, x0:x1]).mean() > 3
    untouched = outside(source.shape, [padded(face, redact.FACE_PADDING)])
    assert np.abs(upright[untouched] - source[untouched]).mean() < 1.5  # re-encoded with the same tables
    kept = run("redact", "face", "--out", str(tmp_path / "kept"), "--db", str(db), "--keep-gps")
    assert kept.exit_code == 0, kept.output
    with Image.open(tmp_path / "kept" / "trip" / "astronaut.jpg") as copy:
        assert GPS_IFD in copy.getexif()


def test_pixelate_makes_blocks(library, tmp_path):
    photos, db = library
    out = tmp_path / "public"
    assert run("redact", "face", "--out", str(out), "--db", str(db), "--pixelate").exit_code == 0
    (face,) = stored_faces(db, photos / "trip" / "astronaut.jpg")
    copy = np.asarray(Image.open(out / "trip" / "astronaut.jpg").convert("L"), dtype=int)
    x0, y0, x1, y1 = (int(v) for v in (face.left, face.top, face.right, face.bottom))
    centre = copy[y0 + 10 : y1 - 10, x0 + 10 : x1 - 10]
    source = np.asarray(Image.open(photos / "trip" / "astronaut.jpg").convert("L"), dtype=int)[
        y0 + 10 : y1 - 10, x0 + 10 : x1 - 10]
    # Blocks: neighbouring pixels mostly equal (up to JPEG noise), unlike the photo's own detail.
    assert np.abs(np.diff(centre, axis=1)).mean() < 0.5 * np.abs(np.diff(source, axis=1)).mean()


def test_an_imagenet_label_is_covered_through_the_class_map(tmp_path):
    """A red block on a grey wall is a fire engine to the fake model; at working size 320 a map position
    stands for 30 px of this 300x400 photo."""
    photos, db = tmp_path / "photos", tmp_path / "index.db"
    photos.mkdir()
    rng = np.random.default_rng(0)
    wall = np.clip(128 + rng.normal(0, 20, (300, 400, 3)), 0, 255).astype(np.uint8)
    wall[100:200, 133:266] = np.clip(np.array([255, 0, 0]) + rng.normal(0, 30, (100, 133, 3)), 0, 255)
    Image.fromarray(wall).save(photos / "wall.png")
    index_folder(photos, db, size=320)
    out = tmp_path / "public"
    engine = store.open_index(str(db), create=False, readonly=True)
    try:
        summary = redact.redact(engine, "fire engine", str(out), load_backbone=lambda s: FakeBackbone())
    finally:
        engine.dispose()
    assert list(summary.regions) == ["fire engine"] and (out / "wall.png").exists()
    original = images.load(photos / "wall.png").pixels.astype(int)
    copy = images.load(out / "wall.png").pixels.astype(int)
    assert np.abs(copy[110:190, 145:255] - original[110:190, 145:255]).mean() > 10  # the red block: blurred
    far = np.ones(original.shape[:2], bool)
    far[100 - 90 : 200 + 90, 133 - 90 : 266 + 90] = False  # three positions around it
    assert np.array_equal(copy[far], original[far])


def test_whole_run_refusals_are_one_line_and_write_nothing(library, tmp_path):
    photos, db = library
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    cases = [
        (["golden retriever"], tmp_path / "a", "Error: no photo matches 'golden retriever'; nothing written\n"),
        (["NOT face"], tmp_path / "b",
         "Error: 'NOT face' names nothing to cover (only NOT terms); name a label, e.g. face\n"),
        (["face"], photos / "trip" / "public",
         f"Error: --out {photos / 'trip' / 'public'} lies inside the indexed folder {photos}: the copies would be "
         "indexed with the originals; write them elsewhere\n"),
        (["face"], tmp_path / "notes.txt" / "x", f"Error: cannot write to {tmp_path / 'notes.txt' / 'x'}: Not a directory\n"),
        (["fac"], tmp_path / "c",  # as imgidx query shows a query error
         "Error: column 1: unknown label 'fac'; did you mean face, fan, fabric, surface or factory?\n  fac\n  ^\n"),
    ]
    for query, out, message in cases:
        result = run("redact", *query, "--out", str(out), "--db", str(db))
        assert (result.exit_code, result.stdout, result.stderr) == (1, "", message), query
        assert not out.exists()
    assert not (photos / "trip" / "public").exists()


def test_existing_copies_are_replaced_only_with_force(library, tmp_path):
    photos, db = library
    out = tmp_path / "public"
    (out / "trip").mkdir(parents=True)
    (out / "trip" / "astronaut.jpg").write_bytes(b"mine")
    result = run("redact", "face", "--out", str(out), "--db", str(db))
    assert (result.exit_code, result.stderr) == (
        1, f"Error: {out / 'trip' / 'astronaut.jpg'} exists; pass --force to replace the copies\n"
    )
    assert (out / "trip" / "astronaut.jpg").read_bytes() == b"mine" and not (out / "group.png").exists()
    assert run("redact", "face", "--out", str(out), "--db", str(db), "--force").exit_code == 0
    assert Image.open(out / "trip" / "astronaut.jpg").format == "JPEG"


def test_a_deleted_photo_is_skipped_and_a_changed_one_found_again(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(astronaut()).save(photos / "gone.png")
    Image.fromarray(astronaut()).save(photos / "moved.png")
    Image.fromarray(group_photo((0.1,), size=(400, 600))[0]).save(photos / "changed.png")
    db = tmp_path / "index.db"
    index_folder(photos, db)
    (photos / "gone.png").unlink()
    shifted = np.full_like(astronaut(), 128)
    shifted[:, 100:] = astronaut()[:, :-100]  # the face 100 px further right than indexed
    Image.fromarray(shifted).save(photos / "moved.png")
    out = tmp_path / "public"
    result = run("redact", "face", "--out", str(out), "--db", str(db))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"Error: skipped {photos / 'gone.png'}: deleted since it was indexed",
        f"note: {photos / 'moved.png'} changed since it was indexed: its faces were found again (1)",
    ]
    assert result.stdout == f"wrote 2 copies into {out}; blurred 2 faces in 2 photos; 1 photo skipped\n"
    copy = images.load(out / "moved.png").pixels.astype(int)
    moved_face = (275, 70, 377, 172)  # the astronaut's face, shifted
    x0, y0, x1, y1 = moved_face
    assert np.abs(copy[y0:y1, x0:x1] - shifted[y0:y1, x0:x1].astype(int)).mean() > 3
    assert np.array_equal(copy[:, :150], shifted[:, :150].astype(int))  # where the face was: untouched


def test_several_indexed_roots_keep_their_names():
    paths = ["/lib/a/x.jpg", "/lib/a/sub/y.jpg", "/other/b/z.png"]
    assert redact.indexed_roots(paths) == ["/lib/a", "/other/b"]
    assert redact.destinations(paths, redact.indexed_roots(paths), "/out") == [
        "/out/a/x.jpg", "/out/a/sub/y.jpg", "/out/b/z.png"
    ]
    assert redact.destinations(paths[:2], redact.indexed_roots(paths[:2]), "/out") == ["/out/x.jpg", "/out/sub/y.jpg"]


def test_roots_of_the_same_name_get_distinct_names_in_path_order():
    roots = ["/y/photos", "/x/photos", "/w/Photos", "/v/photos-2", "/"]
    assert redact.root_names(roots) == {
        "/": "root", "/v/photos-2": "photos-2", "/w/Photos": "Photos", "/x/photos": "photos-3", "/y/photos": "photos-4"
    }
    paths = ["/x/photos/a.jpg", "/y/photos/a.jpg"]
    assert redact.destinations(paths, redact.indexed_roots(paths), "/out") == [
        "/out/photos/a.jpg", "/out/photos-2/a.jpg"
    ]


def test_the_guard_refuses_what_this_run_wrote_also_through_a_hard_link(tmp_path):
    out, photo = tmp_path / "out", tmp_path / "lib" / "p.jpg"
    out.mkdir()
    photo.parent.mkdir()
    photo.write_bytes(b"original")
    guard = redact._Guard(str(out), [(str(photo), len(b"original"))], [str(photo.parent)])
    first, second = out / "a.jpg", out / "b.jpg"
    assert guard.refusal(str(first)) is None
    first.write_bytes(b"copy")
    guard.wrote(str(first))
    assert guard.refusal(str(first)) == "this run wrote a copy there already"
    second.hardlink_to(first)  # on a file system that folds case, say, two names reach one file
    assert guard.refusal(str(second)) == "this run wrote a copy there already"
    (out / "c.jpg").hardlink_to(photo)
    assert guard.refusal(str(out / "c.jpg")) == f"it is the indexed photo {photo} (a hard link)"


XMP = b'<x:xmpmeta><rdf:RDF><rdf:Description exif:GPSLatitude="48,51.4N"/></rdf:RDF></x:xmpmeta>'


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
def test_other_formats_leave_the_location_out_unless_kept(tmp_path, fmt):
    """PNG keeps XMP in a text chunk, WebP in its own chunk, TIFF in tag 700 beside IPTC (33723)."""
    from PIL import PngImagePlugin, TiffImagePlugin, TiffTags

    exif = exif_with_gps()
    exif.get_ifd(0x8769)[0x927C] = b"maker notes with a position"
    source = tmp_path / f"source.{fmt.lower()}"
    extra: dict = {"exif": exif}
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", XMP.decode())
        info.add_text("Comment", "kept")
        extra["pnginfo"] = info
    elif fmt == "WEBP":
        extra.update(xmp=XMP, lossless=True)
    else:
        tags = TiffImagePlugin.ImageFileDirectory_v2()
        tags[700], tags[33723], tags[0x010F] = XMP, b"\x1c\x02\x5a\x00\x05Paris", "imgidx test camera"
        tags.tagtype[33723] = TiffTags.UNDEFINED
        extra = {"tiffinfo": tags}
        exif = None
    Image.new("RGB", (40, 30), "red").save(source, fmt, **extra)
    for keep in (False, True):
        copy = tmp_path / f"copy-{keep}.{fmt.lower()}"
        images.save_copy(images.open_original(source.read_bytes(), str(source)), copy, keep_location=keep)
        data = copy.read_bytes()
        assert (b"GPSLatitude" in data, b"Paris" in data or b"maker notes" in data) == (keep, keep), (fmt, keep)
        with Image.open(copy) as written:
            assert written.getexif()[0x010F] == "imgidx test camera"
            assert (GPS_IFD in written.getexif()) == (keep and exif is not None)
            if fmt == "PNG":
                assert written.text["Comment"] == "kept"
    assert not list(tmp_path.glob(".*"))  # no partial file left behind


def test_boxes_reach_the_stored_pixels_for_every_orientation():
    """Cover a box drawn on the upright photo of every EXIF orientation: turned upright, the copy has it there."""
    photo = (np.arange(60 * 40 * 3) % 251).astype(np.uint8).reshape(40, 60, 3)
    box = (5, 7, 25, 19)
    for orientation, turn in images.UPRIGHT.items():
        stored = np.asarray(Image.fromarray(photo).transpose(images.UNDONE_BY.get(turn, turn)))
        original = images.Original(Image.fromarray(stored.copy()), "PNG", orientation)
        assert original.upright_size == (60, 40)
        mask = np.full((box[3] - box[1], box[2] - box[0]), 255, np.uint8)
        redact.cover(original, redact.Region(box, mask, 50.0), pixelate=True)
        upright = np.asarray(original.image.transpose(turn), dtype=int)
        changed = np.any(upright != photo, axis=2)
        assert changed[box[1] : box[3], box[0] : box[2]].mean() > 0.9, orientation
        changed[box[1] : box[3], box[0] : box[2]] = False
        assert not changed.any(), orientation


@pytest.mark.slow
def test_a_real_label_is_covered_where_the_real_model_sees_it(tmp_path, lite0_model):
    """EfficientNet-Lite0 on the astronaut: the crash helmet she holds, through the class map."""
    from indexer import inference

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(astronaut()).save(photos / "astronaut.png")
    db = tmp_path / "index.db"
    engine = store.open_index(str(db))
    try:
        pipeline.index(engine, [str(photos)], lambda s: lite0_model, model="efficientnet-lite0", precision="fp32",
                       with_faces=False)
        summary = redact.redact(engine, "crash helmet", str(tmp_path / "out"), load_backbone=lambda s: lite0_model,
                                min_score=0.3)  # the helmet in her lap is a faint label
    finally:
        engine.dispose()
    assert (summary.written, summary.photos) == (1, {"crash helmet": 1})
    segmentation = inference.segment(lite0_model, astronaut(), 448)
    region = redact.class_map_region(segmentation, frozenset({518}), tuple(range(9)), (512, 512))
    x0, y0, x1, y1 = region.box
    helmet = np.argwhere(segmentation.class_map == 518)
    assert sum(row > 7 and col > 7 for row, col in helmet) >= 2  # the one in her lap, bottom right
    for row, col in helmet:  # every position whose top class is the helmet is covered at its centre
        scale = 512 / segmentation.pixels.shape[0]
        y = int((segmentation.geometry.rows.centers()[row] + 0.5) * scale)
        x = int((segmentation.geometry.cols.centers()[col] + 0.5) * scale)
        assert region.mask[y - y0, x - x0] == 255
    copy = images.load(tmp_path / "out" / "astronaut.png").pixels.astype(int)
    original = astronaut().astype(int)
    assert not np.array_equal(copy[y0:y1, x0:x1], original[y0:y1, x0:x1])
    assert np.array_equal(copy[: y0 - 1], original[: y0 - 1]) and np.array_equal(copy[:, : x0 - 1], original[:, : x0 - 1])
