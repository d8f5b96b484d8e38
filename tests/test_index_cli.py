"""`imgidx index`, `imgidx show` and `imgidx stats` as a user runs them (fake model, real files, and a real
index in SQLite and in PostgreSQL)."""

import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from fake_backbone import FakeBackbone
from fresh_cli import run_fresh
from indexer import pipeline, regions, store
from indexer.cli import cli
from indexer.models import weights
from test_pipeline import BLUE, RED, paint

ROOT = Path(__file__).parent.parent

MODEL = ["--model", "efficientnet-lite0", "--precision", "fp32", "--size", "96"]
SUMMARY = re.compile(
    r"^(\d+) indexed, (\d+) unchanged, (\d+) moved, (?:(\d+) copied, )?(\d+) pruned, (\d+) failed"
    r"(?:, \d+ still failing)? in \d+\.\d s "
    r"\((efficientnet-lite0 at size 96 \(fp32\), model loaded in [\d.]+ s, [\d.]+ images/s|no model run)\)$"
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


STILL_FAILING_NOTE = (
    "note: still failing ({}): unchanged since they failed before, so they do not fail the run unless --strict; "
    "imgidx stats lists them\n"
)


def test_bad_files_are_listed_and_make_the_exit_status_1_until_they_are_still_failing(tmp_path, models, index_url):
    photos = tmp_path / "photos"
    paint(photos / "good.jpg", {0: RED})
    bad = photos / "bad.jpg"
    bad.write_text("not a photo")
    result = imgidx("index", photos, "--db", index_url, *MODEL)
    assert result.exit_code == 1
    assert result.stderr == f"failed {bad}: not an image (unknown format)\n"
    assert summary(result)[:6] == (1, 0, 0, 0, 0, 1)

    # The nightly run: the same broken photo, unchanged, is no new failure.
    result = imgidx("index", photos, "--db", index_url)
    assert (result.exit_code, result.stderr) == (0, STILL_FAILING_NOTE.format(1))
    assert summary(result)[:6] == (0, 1, 0, 0, 0, 0) and ", 0 failed, 1 still failing in " in result.stdout
    result = imgidx("index", photos, "--db", index_url, "-q", "--strict")
    assert (result.exit_code, result.stderr) == (1, "")
    assert ", 0 failed, 1 still failing in " in result.stdout

    bad.write_text("still not a photo, but another file")  # changed: a failure again
    result = imgidx("index", photos, "--db", index_url, "-q")
    assert (result.exit_code, result.stderr) == (1, "")
    assert summary(result)[:6] == (0, 1, 0, 0, 0, 1) and "still failing" not in result.stdout


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
    assert lines[2].startswith("  taken ") and lines[2].endswith(" (the file's modification time: no EXIF date)")
    assert lines[3] == "  camera not recorded"
    assert lines[4] == "labels (confidence in the best cell, share of the photo):"
    grid = lines[lines.index("grid (leading class and confidence per cell):") + 1 :]
    assert grid[10:] == ["faces: 0", "objects: 0"]  # painted cells have none
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
        "detectors: faces on, objects on",
        "images: 4 (3 labelled, 1 failed, 0 stale)",
        *[line for line in result.stdout.splitlines() if line.startswith(("label rows", "last indexed"))],
        *[line for line in result.stdout.splitlines()
          if line.startswith("dates taken: ") and line.endswith("; 3 by file time (no EXIF date)")],
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


def test_stats_says_which_detectors_the_index_runs(tmp_path, models):
    paint(tmp_path / "photos/a.jpg", {0: RED})
    db = tmp_path / "index.db"
    assert imgidx("index", tmp_path / "photos", "--db", db, *MODEL, "--no-faces", "--no-objects").exit_code == 0
    assert imgidx("stats", "--db", db).stdout.splitlines()[2] == "detectors: faces off, objects off"


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


def no_weights_error(cache: Path) -> str:
    return (
        f"Error: no VGG-16 weights found: run `imgidx weights fetch vgg16` (downloads 513 MB into {cache}/vgg16), "
        "or pass `--weights PATH` or set IMGIDX_VGG16_WEIGHTS to a vgg_16.ckpt, vgg_16_2016_08_28.tar.gz or "
        "vgg16_weights_tf_dim_ordering_tf_kernels.h5; `--model efficientnet-lite0` works offline\n"
    )


def test_the_default_model_without_its_weights_stops_at_once_and_makes_no_file(tmp_path):
    """The README's first command on a machine without the VGG-16 checkpoint: one line, well under a second of
    work, no TensorFlow, and no empty index (nor lock file) left behind."""
    paint(tmp_path / "photos/a.jpg", {0: RED})
    cache, db = tmp_path / "cache", tmp_path / "new" / "index.db"
    (tmp_path / "new").mkdir()
    env = {k: v for k, v in os.environ.items() if k not in (weights.WEIGHTS_ENV, store.DB_ENV)}
    env.update({weights.CACHE_ENV: str(cache), "PYTHONPATH": str(ROOT)})
    argv = ["index", str(tmp_path / "photos"), "--db", str(db)]
    code = (
        "import sys\nfrom indexer.cli import cli\n"
        f"try:\n    cli({argv!r}, prog_name='imgidx')\nexcept SystemExit as exit:\n    status = exit.code\n"
        "print(status, 'tensorflow' in sys.modules)"
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_seconds = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert (done.stdout, done.stderr) == ("1 False\n", no_weights_error(cache))
    assert list((tmp_path / "new").iterdir()) == [] and not cache.exists()
    assert cpu_seconds < 1, f"the refusal cost {cpu_seconds:.2f} s of CPU"


def test_an_index_whose_model_lost_its_weights_is_refused_before_the_walk(tmp_path, models, monkeypatch):
    photos = tmp_path / "photos"
    paint(photos / "a.jpg", {0: RED})
    checkpoint = tmp_path / "vgg_16.ckpt"
    checkpoint.write_bytes(b"found, not read: the fake model stands in")
    db = tmp_path / "index.db"
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(weights.WEIGHTS_ENV, raising=False)
    vgg = ["--model", "vgg16", "--precision", "fp32", "--size", "96"]
    assert imgidx("index", photos, "--db", db, *vgg, "--weights", checkpoint).exit_code == 0
    paint(photos / "b.jpg", {1: RED})
    walks = []
    real_walk = pipeline.walk
    monkeypatch.setattr(pipeline, "walk", lambda *args: walks.append(args) or real_walk(*args))
    result = imgidx("index", photos, "--db", db)  # the index's own model, vgg16
    assert (result.exit_code, result.stderr) == (1, no_weights_error(tmp_path / "cache"))
    assert walks == [] and len(models) == 1 and not Path(f"{db}.lock").exists()
    result = imgidx("index", photos, "--db", db, "--model", "efficientnet-lite0", "--reindex", "--size", "96",
                    "--runtime", "tf")
    assert (result.exit_code, result.stderr) == (0, "")  # another model needs no VGG-16 weights


def test_exclude_globs_and_the_roots_imgidxignore_leave_files_and_folders_out(tmp_path, models):
    photos = tmp_path / "photos"
    for name in ("a.jpg", "a.tmp.jpg", "raw/b.png", "2019/raw/c.jpg", "2019/drafts/d.jpg", "2019/e.jpg",
                 "@eaDir/f.jpg", "2020/@eaDir/g.jpg", "2020/h.jpg"):
        paint(photos / name, {0: RED})
    (photos / ".imgidxignore").write_text("# thumbnails a NAS makes\n\n@eaDir/\n2019/drafts\n")
    db = tmp_path / "index.db"
    result = imgidx("index", photos, "--db", db, *MODEL, "--exclude", "*.tmp.*", "--exclude", "/raw")
    assert (result.exit_code, result.stderr) == (0, "")
    indexed = json.loads(imgidx("stats", "--db", db, "--json").stdout)["images"]
    assert indexed == 4  # a.jpg, 2019/raw/c.jpg (/raw is the root's own raw only), 2019/e.jpg, 2020/h.jpg
    assert imgidx("show", photos / "2019/raw/c.jpg", "--db", db).exit_code == 0
    assert imgidx("show", photos / "raw/b.png", "--db", db).exit_code == 1

    # Excluding more later prunes what the index held of it.
    result = imgidx("index", photos, "--db", db, "--exclude", "2019/", "--exclude", "*.tmp.*", "--exclude", "/raw")
    assert summary(result)[:6] == (0, 2, 0, 0, 2, 0)

    result = imgidx("index", photos, "--db", db, "--exclude", "/")
    assert (result.exit_code, result.stderr) == (
        1, "Error: --exclude: '/' is no pattern; give a name or path glob such as '*.tmp' or 'raw/'\n"
    )
    (photos / ".imgidxignore").write_text("ok/\n  \n//\n")
    result = imgidx("index", photos, "--db", db)
    assert (result.exit_code, result.stderr) == (
        1, f"Error: {photos / '.imgidxignore'}, line 3: '//' is no pattern; give a name or path glob such as "
        "'*.tmp' or 'raw/'\n"
    )


def test_the_bar_and_the_summary_count_the_same_files_over_the_same_span_without_the_models_loading(
    tmp_path, monkeypatch
):
    """A bar that started its clock before a slow model load showed a third of the summary's rate (issue 14)."""
    load_seconds, per_batch = 1.5, 0.1

    def slow_load(name, weights=None, precision="auto"):
        time.sleep(load_seconds)
        model = FakeBackbone(delay=per_batch)
        model.name, model.precision = name, precision
        return model

    monkeypatch.setattr("indexer.models.load_model", slow_load)
    photos = tmp_path / "photos"
    for i in range(24):
        paint(photos / f"{i:02}.png", {i % 9: RED}, hw=(48, 64))
    (photos / "bad.jpg").write_text("not a photo")  # a file done too: counted by both
    result = imgidx("index", photos, "--db", tmp_path / "index.db", *MODEL, "--batch", "4", "--progress")
    assert result.exit_code == 1, result.output
    screen = result.stderr.replace("\r", "\n")
    loaded = float(re.search(r"^model loaded in (\d+\.\d) s$", screen, re.MULTILINE).group(1))
    bar_rate = float(re.findall(r"indexing: 100%\|.*\| 25/25 \[[\d:]+<00:00, +([\d.]+)img/s\]", screen)[-1])
    match = re.search(r" in (\d+\.\d) s \(.*, model loaded in (\d+\.\d) s, ([\d.]+) images/s\)$", result.stdout.strip())
    assert match, result.stdout
    total, summary_rate = float(match.group(1)), float(match.group(3))
    assert float(match.group(2)) == loaded >= load_seconds
    assert abs(bar_rate - summary_rate) <= 0.15 * summary_rate, (bar_rate, summary_rate)
    # The loading is not in the rate: the files' span and the loading fit in the run's time together, which
    # they would not if the span held the loading too. (Comparing with a rate that includes the loading
    # needs the loading to be a good part of the run, which a busy machine's slow files make it not.)
    rounding = 0.1 + 0.01 * total  # the times' one decimal, the rate's
    assert 25 / summary_rate + loaded <= total + rounding, (25 / summary_rate, loaded, total)
