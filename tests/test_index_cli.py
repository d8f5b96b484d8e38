"""`imgidx index`, `imgidx show` and `imgidx stats` as a user runs them (fake model, real files, and a real
index in SQLite and in PostgreSQL)."""

import json
import re
import shutil

import pytest
from click.testing import CliRunner

from fake_backbone import FakeBackbone
from fresh_cli import run_fresh
from indexer import pipeline, regions, store
from indexer.cli import cli
from test_pipeline import BLUE, RED, paint

MODEL = ["--model", "efficientnet-lite0", "--precision", "fp32", "--size", "96"]
SUMMARY = re.compile(
    r"^(\d+) indexed, (\d+) unchanged, (\d+) moved, (?:(\d+) copied, )?(\d+) pruned, (\d+) failed in \d+\.\d s "
    r"\((efficientnet-lite0 at size 96 \(fp32\), [\d.]+ images/s|no model run)\)$"
)


@pytest.fixture
def models(monkeypatch):
    """Every model the CLI loads is a fake named as asked; the list shows how many were loaded."""
    loaded = []

    def load_model(name, weights=None, precision="auto"):
        model = FakeBackbone()
        model.name, model.precision = name, precision
        loaded.append(model)
        return model

    monkeypatch.setattr("indexer.models.load_model", load_model)
    return loaded


def imgidx(*argv):
    return CliRunner().invoke(cli, [str(a) for a in argv], prog_name="imgidx")


def summary(result):
    match = SUMMARY.match(result.stdout.splitlines()[-1])
    assert match, result.stdout
    indexed, unchanged, moved, copied, pruned, failed, how = match.groups()
    return int(indexed), int(unchanged), int(moved), int(copied or 0), int(pruned), int(failed), how


def test_a_thousand_images_with_progress_then_a_rerun_that_runs_no_model(tmp_path, models, index_url):
    photos = tmp_path / "photos"
    for i in range(1000):
        paint(photos / f"{i // 100}/{i:04}.png", {i % 9: RED}, hw=(48, 64))
    db = index_url
    result = imgidx("index", photos, "--db", db, *MODEL, "--progress")
    assert result.exit_code == 0, result.output
    assert summary(result)[:6] == (1000, 0, 0, 0, 0, 0)
    bar = result.stderr.replace("\r", "\n").splitlines()
    assert any(re.search(r"indexing: 100%\|.*\| 1000/1000 \[\d\d:\d\d<00:00, +[\d.]+img/s\]", line) for line in bar)
    assert any(re.search(r"\| \d+/1000 \[\d\d:\d\d<\d\d:\d\d", line) for line in bar)  # the ETA while running
    assert len(models) == 1 and models[0].images == 1000 * len(regions.SCALES)

    result = imgidx("index", photos, "--db", db)
    assert result.exit_code == 0, result.output
    assert summary(result) == (0, 1000, 0, 0, 0, 0, "no model run")
    assert result.stderr == "" and len(models) == 1  # not a terminal: no bar; and no model loaded


def test_bad_files_are_listed_and_make_the_exit_status_1(tmp_path, models, index_url):
    photos = tmp_path / "photos"
    paint(photos / "good.jpg", {0: RED})
    (photos / "bad.jpg").write_text("not a photo")
    result = imgidx("index", photos, "--db", index_url, *MODEL)
    assert result.exit_code == 1
    assert result.stderr == f"failed {photos / 'bad.jpg'}: not an image (unknown format)\n"
    assert summary(result)[:6] == (1, 0, 0, 0, 0, 1)
    result = imgidx("index", photos, "--db", index_url, "-q")
    assert (result.exit_code, result.stderr) == (1, "")
    assert summary(result)[:6] == (0, 1, 0, 0, 0, 1)


def test_moves_and_deletions_are_reported(tmp_path, models, index_url):
    photos = tmp_path / "photos"
    for i in range(3):
        paint(photos / f"{i}.jpg", {i: RED})
    db = index_url
    assert imgidx("index", photos, "--db", db, *MODEL).exit_code == 0
    shutil.move(photos / "0.jpg", photos / "zero.jpg")
    (photos / "1.jpg").unlink()
    result = imgidx("index", photos, "--db", db)
    assert summary(result) == (0, 1, 1, 0, 1, 0, "no model run")


def test_usage_and_settings_errors(tmp_path, models, index_url):
    photos = tmp_path / "photos"
    paint(photos / "a.jpg", {0: RED})
    db = index_url
    result = imgidx("index", tmp_path / "nope", "--db", db)
    assert result.exit_code == 2
    assert f"Error: Invalid value for 'FOLDER...': Path '{tmp_path / 'nope'}' does not exist." in result.stderr
    assert imgidx("index", photos, "--db", db, *MODEL).exit_code == 0
    result = imgidx("index", photos, "--db", db, "--size", "128")
    assert (result.exit_code, result.stderr) == (
        1,
        "Error: the index holds labels from efficientnet-lite0 at size 96 (fp32), not efficientnet-lite0 at size "
        "128 (fp32); pass --reindex to rebuild it, or leave out --model/--size/--precision to keep its settings\n",
    )
    result = imgidx("index", photos, "--db", db, "--size", "128", "--reindex")
    assert result.exit_code == 0
    assert result.stdout.startswith("1 indexed, 0 unchanged")
    assert "(efficientnet-lite0 at size 128 (fp32)" in result.stdout
    assert "efficientnet-lite0 at size 128" in imgidx("stats", "--db", db).stdout


def test_show_prints_labels_and_the_grid(tmp_path, models, index_url):
    photos = tmp_path / "photos"
    path = paint(photos / "a.jpg", {0: RED, 8: BLUE}, hw=(240, 320))
    db = index_url
    assert imgidx("index", photos, "--db", db, *MODEL).exit_code == 0
    result = imgidx("show", path, "--db", db)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == str(path)
    assert re.fullmatch(r"  320x240 px, efficientnet-lite0 at size 96, indexed \d{4}-\d\d-\d\dT[\d:]+\+00:00", lines[1])
    assert lines[2] == "labels (confidence in the best cell, share of the photo):"
    grid = lines[lines.index("grid (leading class and confidence per cell):") + 1 :]
    assert grid[10:] == ["faces: 0"]  # painted cells have none
    grid = grid[:10]
    assert grid[0] == grid[3] == grid[9] == "+" + "+".join(["-" * 24] * 3) + "+"
    assert re.fullmatch(r"\| fire engine +\| stone wall +\| stone wall +\|", grid[1])
    assert re.fullmatch(r"\| \d+% +\| \d+% +\| \d+% +\|", grid[2])
    assert re.fullmatch(r"\| stone wall +\| stone wall +\| swimming trunks +\|", grid[7])

    data = json.loads(imgidx("show", path, "--db", db, "--json").stdout)
    assert data["path"] == str(path) and (data["width"], data["height"]) == (320, 240)
    leading = [cell["labels"][0]["name"] for cell in data["cells"]]
    assert leading[::4] == ["fire engine", "stone wall", "swimming trunks"]
    assert data["cells"][0]["name"] == "top-left" and 0 < data["cells"][0]["labels"][0]["coverage"] <= 1
    assert data["labels"][0] == {**data["labels"][0], "name": "stone wall"}

    moved = tmp_path / "elsewhere.jpg"
    shutil.move(path, moved)
    assert json.loads(imgidx("show", moved, "--db", db, "--json").stdout)["path"] == str(path)  # found by content
    result = imgidx("show", tmp_path / "nope.jpg", "--db", db)
    assert (result.exit_code, result.stderr) == (
        1,
        f"Error: {tmp_path / 'nope.jpg'} is not in the index; add it with: imgidx index FOLDER\n",
    )


def test_stats_counts_models_labels_and_failures(tmp_path, models, index_url):
    photos = tmp_path / "photos"
    for i in range(3):
        paint(photos / f"{i}.jpg", {i: RED})
    (photos / "empty.jpg").write_bytes(b"")
    db = index_url
    imgidx("index", photos, "--db", db, *MODEL)
    result = imgidx("stats", "--db", db)
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        f"index: {db}",
        "settings: efficientnet-lite0 at size 96 (fp32)",
        "images: 4 (3 labelled, 1 failed, 0 stale)",
        *[line for line in result.stdout.splitlines() if line.startswith(("label rows", "last indexed"))],
        "models used:",
        "  efficientnet-lite0 at size 96: 3 images",
        "most frequent labels (images they lead):",
        "  3  stone wall (825)",
        "failed files (1):",
        f"  {photos / 'empty.jpg'}: empty file",
    ]
    data = json.loads(imgidx("stats", "--db", db, "--json").stdout)
    assert (data["images"], data["labelled"], data["failed"]) == (4, 3, 1)
    assert data["top_labels"] == [{"class": 825, "name": "stone wall", "images": 3}]
    result = imgidx("stats", "--db", tmp_path / "none.db")
    assert (result.exit_code, result.stderr) == (
        1,
        f"Error: no index at {tmp_path / 'none.db'}; build one with: imgidx index FOLDER --db {tmp_path / 'none.db'}\n",
    )


@pytest.mark.parametrize("command", ["show", "stats"])
def test_show_and_stats_do_not_import_tensorflow(tmp_path, command, index_url):
    photo = paint(tmp_path / "photos/a.jpg", {0: RED})
    db = index_url
    engine = store.open_index(db)
    pipeline.index(engine, [tmp_path / "photos"], lambda s: FakeBackbone(), model="fake", size=96, precision="fp32")
    engine.dispose()
    argv = [command, str(photo)] if command == "show" else [command]
    out, imported_tensorflow = run_fresh(argv + ["--db", db])
    assert "stone wall" in out
    assert not imported_tensorflow
