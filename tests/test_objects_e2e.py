"""End to end with every real model: photos of people and furniture indexed by `imgidx index` (EfficientNet-Lite0,
NanoDet-m, BlazeFace) and searched by `imgidx query` with the words people type.

The photos are three of ``shared/realscenes-dev`` (COCO train2017: in the detector's training set, so this is a
check that the pieces are joined right, not a measure of quality; bench/retrieval_quality.py measures). They are
read where they lie, beside the checkout, never copied into the project.
"""

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from indexer import pipeline
from indexer.cli import cli

DEV = Path(__file__).resolve().parents[2] / "shared" / "realscenes-dev"
#: A family at a dining table on chairs; a person on a couch; a room with a tv.
TABLE, COUCH, TV = "c128_000000000110.jpg", "c128_000000000241.jpg", "c128_000000000643.jpg"

pytestmark = pytest.mark.slow


def run(*argv):
    return CliRunner().invoke(cli, [str(a) for a in argv], prog_name="imgidx")


@pytest.fixture(scope="module")
def rooms(tmp_path_factory):
    """The three photos (symbolic links to them) indexed with the real detectors, at the defaults."""
    if not DEV.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{DEV} is missing: CI runs with shared/ beside the checkout", pytrace=False)
        pytest.skip(f"{DEV} is not beside this checkout")
    folder = tmp_path_factory.mktemp("rooms")
    for name in (TABLE, COUCH, TV):
        (folder / name).symlink_to(DEV / "images" / name)
    db = folder.parent / "rooms.db"
    saved = pipeline.default_object_detectors  # the suite's fake (conftest.py): these runs use the real one
    pipeline.default_object_detectors = real_detectors
    try:
        result = run("index", folder, "--db", db, "--model", "efficientnet-lite0", "-q")
    finally:
        pipeline.default_object_detectors = saved
    assert result.exit_code == 0, result.output
    return folder, db


def real_detectors():
    from indexer import objects

    return objects.Detectors(threads=pipeline.OBJECT_DETECTOR_THREADS)


def found(db, query: str) -> list[str]:
    result = run("query", query, "--db", db, "--paths")
    assert result.exit_code == 0, result.output
    return [Path(line).name for line in result.stdout.splitlines()]


def test_people_and_furniture_are_found_by_the_words_people_type(rooms):
    _, db = rooms
    assert found(db, "person AND dining table AND chair") == [TABLE]
    assert found(db, "couch AND people") == [COUCH]
    assert found(db, "sofa") == [COUCH]
    assert TV in found(db, "tv")


def test_the_mission_query_shape_places_the_person_and_the_table(rooms):
    """``A in CELL1 AND B in CELL2``, and the cells a match reports: in the table photo a person fills the
    centre and a small table (COCO's box 119-263 x 75-151 of 640x480) lies for two thirds in the top-left cell."""
    _, db = rooms
    result = run("query", "person AND dining table", "--db", db, "--json")
    assert result.exit_code == 0, result.output
    (match,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert Path(match["path"]).name == TABLE
    person, table = (set(term["cells"]) for term in match["terms"])
    assert "center" in person and "top-left" in table
    tables = [box["box"] for box in match["boxes"] if box["name"] == "dining table"]
    assert {"person", "dining table"} <= {box["name"] for box in match["boxes"]}
    assert any(x0 < 191 < x1 and y0 < 113 < y1 for x0, y0, x1, y1 in tables)  # the true box's centre
    assert found(db, "person in center AND dining table in top-left") == [TABLE]
    assert TABLE not in found(db, "person in center AND couch") + found(db, "tv")  # neither is in the photo


def test_show_lists_the_objects_found_with_their_boxes(rooms):
    folder, db = rooms
    shown = json.loads(run("show", folder / TABLE, "--db", db, "--json").stdout)
    named = {box["name"] for box in shown["objects"] if box["confidence"] >= 0.4}
    assert {"person", "dining table", "chair"} <= named
    for box in shown["objects"]:
        x0, y0, x1, y1 = box["box"]
        assert 0 <= x0 < x1 <= shown["width"] and 0 <= y0 < y1 <= shown["height"]
