"""`kill -9` in the middle of a run leaves a consistent index, and the next run continues where it stopped."""

import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fake_backbone import FakeBackbone
from indexer import pipeline, store
from test_pipeline import BLUE, RED, labels_by_path, paint

COUNT = 120
BATCH = 4
#: Seconds per model call in the child, so a run lasts long enough to be killed at several points.
MODEL_DELAY = 0.04
#: Kill the child once this many images are committed (then once more, later).
KILL_AT = (1, 45)
POLL_S = 0.005
CHILD = """
import sys
sys.path.insert(0, {tests!r})
from fake_backbone import FakeBackbone
from indexer import pipeline, store
engine = store.open_index({db!r})
pipeline.index(engine, [{root!r}], lambda s: FakeBackbone(delay={delay}), model="fake", size=96,
               precision="fp32", batch={batch}, workers=2)
"""


def committed(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def check_consistent(db: Path) -> int:
    """Every committed image has its full labels, nothing dangles; returns the number of images."""
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        images = conn.execute("SELECT COUNT(*) FROM images").fetchone()[0]
        cells = conn.execute("SELECT COUNT(DISTINCT image_id || '/' || cell) FROM cell_labels").fetchone()[0]
        labelled = conn.execute("SELECT COUNT(DISTINCT image_id) FROM image_labels").fetchone()[0]
        orphans = conn.execute(
            "SELECT COUNT(*) FROM cell_labels WHERE image_id NOT IN (SELECT image_id FROM images)"
        ).fetchone()[0]
        assert conn.execute("SELECT COUNT(*) FROM images WHERE error IS NOT NULL").fetchone()[0] == 0
    assert (cells, labelled, orphans) == (9 * images, images, 0)
    return images


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_kill_9_mid_run_then_resume_loses_and_duplicates_nothing(tmp_path):
    photos = tmp_path / "photos"
    for i in range(COUNT):
        paint(photos / f"{i:03}.png", {i % 9: RED, (i * 7 + 3) % 9: BLUE})
    db = tmp_path / "index.db"
    tests = str(Path(__file__).parent)
    script = CHILD.format(tests=tests, db=str(db), root=str(photos), delay=MODEL_DELAY, batch=BATCH)
    rng = random.Random(0)
    for threshold in KILL_AT:
        child = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while committed(db) < threshold and child.poll() is None and time.monotonic() < deadline:
            time.sleep(POLL_S)
        time.sleep(rng.uniform(0, MODEL_DELAY))
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert child.returncode == -signal.SIGKILL, child.stderr.read().decode()
        done = check_consistent(db)
        assert threshold <= done < COUNT

    engine = store.open_index(str(db))
    model = FakeBackbone()
    summary = pipeline.index(engine, [str(photos)], lambda s: model, batch=BATCH)
    assert (summary.unchanged, summary.indexed, summary.failed) == (done, COUNT - done, 0)
    assert model.images == COUNT - done  # committed images are not run again
    assert check_consistent(db) == COUNT

    reference = store.open_index(str(tmp_path / "reference.db"))
    pipeline.index(reference, [str(photos)], lambda s: FakeBackbone(), model="fake", size=96, precision="fp32")
    assert labels_by_path(engine) == labels_by_path(reference)
    engine.dispose()
    reference.dispose()


INTERRUPTED_CLI = """
import sys
sys.path.insert(0, {tests!r})
from fake_backbone import FakeBackbone
import indexer.models
def load_model(name, weights=None, precision="auto"):
    model = FakeBackbone(delay={delay})
    model.name, model.precision = name, precision
    return model
indexer.models.load_model = load_model
from indexer.cli import main
sys.argv = ["imgidx", "index", {root!r}, "--db", {db!r}, "--model", "efficientnet-lite0", "--precision", "fp32",
            "--size", "96", "--batch", "4"]
main()
"""


def test_ctrl_c_stops_the_cli_cleanly_and_the_next_run_continues(tmp_path):
    photos = tmp_path / "photos"
    for i in range(60):
        paint(photos / f"{i:03}.png", {i % 9: RED, (i * 7 + 3) % 9: BLUE})
    db = tmp_path / "index.db"
    script = INTERRUPTED_CLI.format(tests=str(Path(__file__).parent), db=str(db), root=str(photos), delay=MODEL_DELAY)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while committed(db) < 8 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(POLL_S)
    child.send_signal(signal.SIGINT)
    stdout, stderr = child.communicate(timeout=60)
    assert child.returncode == 130, stderr
    assert stderr.endswith("interrupted: what was committed is kept; run the same command to continue\n")
    assert stdout == ""
    done = check_consistent(db)
    assert 8 <= done < 60
    model = FakeBackbone()
    model.name = "efficientnet-lite0"
    engine = store.open_index(str(db))
    summary = pipeline.index(engine, [str(photos)], lambda s: model)
    engine.dispose()
    assert (summary.unchanged, summary.indexed) == (done, 60 - done)
