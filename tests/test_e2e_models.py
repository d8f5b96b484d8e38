"""End to end: `imgidx classify` and `imgidx segment` on real photos with real (offline) weights."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from indexer.cli import cli

PHOTOS = Path(__file__).parent / "photos"
DOMESTIC_CATS = range(281, 286)
ESPRESSO, CUP = 967, 968

pytestmark = pytest.mark.slow


def run(*argv):
    return CliRunner().invoke(cli, list(argv), prog_name="imgidx")


def test_classify_finds_the_cat_and_the_coffee():
    result = run(
        "classify", str(PHOTOS / "chelsea.jpg"), str(PHOTOS / "coffee.jpg"), "--model", "efficientnet-lite0", "--json"
    )
    assert result.exit_code == 0, result.output
    chelsea, coffee = (json.loads(line) for line in result.stdout.splitlines())
    assert chelsea["top"][0]["class"] in DOMESTIC_CATS
    assert coffee["top"][0]["class"] in (ESPRESSO, CUP)
    assert len(chelsea["top"]) == 5
    scores = [p["score"] for p in chelsea["top"]]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores) and scores[0] > 0.5


def test_one_photo_reads_the_same_confidence_in_classify_show_and_query(tmp_path):
    """The calibrated number a person reads for a class of a photo is one number, whichever command shows it."""
    folder = tmp_path / "photos"
    folder.mkdir()
    photo = folder / "chelsea.jpg"
    photo.write_bytes((PHOTOS / "chelsea.jpg").read_bytes())
    db = str(tmp_path / "index.db")
    assert run("index", str(folder), "--db", db, "--model", "efficientnet-lite0", "-q").exit_code == 0
    top = json.loads(run("classify", str(photo), "--model", "efficientnet-lite0", "--json").stdout)["top"][0]
    shown = {label["class"]: label["score"] for label in json.loads(run("show", str(photo), "--db", db, "--json").stdout)["labels"]}
    name = top["name"]
    found = json.loads(run("query", f"'{name}'", "--db", db, "--json", "--min-score", "0").stdout.splitlines()[0])
    assert top["score"] == pytest.approx(shown[top["class"]], abs=2e-3)
    assert found["terms"][0]["score"] == pytest.approx(top["score"], abs=2e-3)
    assert found["score"] == pytest.approx(top["score"], abs=2e-3)
    assert f"{round(100 * top['score'])}%" in run("classify", str(photo), "--model", "efficientnet-lite0").stdout


def test_classify_text_output_reads_like_the_seed():
    result = run("classify", str(PHOTOS / "chelsea.jpg"), "--model", "efficientnet-lite0", "--top", "3")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == str(PHOTOS / "chelsea.jpg")
    assert len(lines) == 4 and all(line.startswith("  ") and "%" in line for line in lines[1:])


def test_vgg16_segments_through_the_real_loader(vgg_files):
    """Random weights make the names meaningless, but the command, loader and map shape are the real ones. On
    TensorFlow: building VGG-16's int8 model took 80 s of the suite, and test_openvino builds it already."""
    result = run("segment", str(PHOTOS / "chelsea.jpg"), "--weights", str(vgg_files.checkpoint), "--text",
                 "--runtime", "tf")
    assert result.exit_code == 0, result.output
    # 300x451 at shorter side 448 -> 448x672 input -> (448 - 224) / 32 + 1 = 8 rows, 15 columns; then the boxes.
    body, boxes = result.stdout.rstrip("\n").split("\nfaces: ", 1)
    assert boxes.splitlines()[0] == "0" and boxes.splitlines()[1].startswith("objects: ")
    grid, legend = body.split("\n\n")
    assert [len(row.split(" ")) for row in grid.splitlines()] == [15] * 8
    assert {key for row in grid.splitlines() for key in row.split(" ")} == {
        entry.split("=", 1)[0] for line in legend.splitlines() for entry in line.split("  ")
    }


def test_segment_writes_the_figure_and_prints_the_map(tmp_path):
    out = tmp_path / "figures" / "coffee-map.png"
    result = run("segment", str(PHOTOS / "coffee.jpg"), "--model", "efficientnet-lite0", "--out", str(out), "--text")
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith(f"wrote {out}\n")
    body, boxes = result.stdout.removesuffix(f"wrote {out}\n").rstrip("\n").split("\nfaces: ", 1)
    assert boxes.splitlines()[0] == "0" and boxes.splitlines()[1].startswith("objects: ")
    grid, legend = body.split("\n\n")
    assert len(grid.splitlines()) == 14  # 448 px / stride 32 rows for the 400x600 photo at working size 448
    assert legend.startswith("A=espresso") or legend.startswith("A=cup")  # keys go to the largest class first
    figure = np.asarray(Image.open(out))
    assert figure.shape[0] > 300 and figure.shape[1] > 2.5 * figure.shape[0]  # photo, class map, overlay


def test_segment_refuses_a_size_the_network_cannot_map(vgg_files):
    result = run(
        "segment", str(PHOTOS / "coffee.jpg"), "--weights", str(vgg_files.checkpoint), "--text", "--size", "100"
    )
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == "Error: --size must be at least 224 for vgg16, got 100"
