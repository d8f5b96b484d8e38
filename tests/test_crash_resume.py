"""`kill -9` in the middle of a run leaves a consistent index, and the next run continues where it stopped
(SQLite and PostgreSQL)."""

import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from fake_backbone import FakeBackbone
from indexer import pipeline, regions, store
from test_pipeline import BLUE, RED, labels_by_path, paint

COUNT = 120
BATCH = 4
#: Seconds per model call in the child, so a run lasts long enough to be killed at several points.
MODEL_DELAY = 0.04
#: Kill the child once this many images are committed (then once more, later).
KILL_AT = (1, 45)
POLL_S = 0.005
#: Seconds a test waits for a child to commit what it waits for: only against a hang, never reached on a
#: machine however busy (the children hold before the end: `FakeBackbone`'s ``hold_after``).
PATIENCE_S = 600
CHILD = """
import sys
sys.path.insert(0, {tests!r})
from fake_backbone import FakeBackbone
import fake_detector; fake_detector.install()
from indexer import pipeline, store
engine = store.open_index({db!r})
pipeline.index(engine, [{root!r}], lambda s: FakeBackbone(delay={delay}, hold_after={hold}), model="fake",
               size=96, precision="fp32", batch={batch}, workers=2)
"""


def held_after(count: int) -> int:
    """The model views a child runs before it holds: all but the last batch's images, so a kill or a
    Ctrl-C always finds it running."""
    return (count - BATCH) * len(regions.SCALES)


class Watcher:
    """Reads an index the way a second process would, while a child writes it."""

    def __init__(self, db: str):
        self.db = db
        self.engine = None if "://" not in db else store.create_engine(db)

    def committed(self) -> int:
        """Images committed so far; 0 before the index exists."""
        if self.engine is None:
            try:
                with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5) as conn:
                    return conn.execute("SELECT COUNT(*) FROM images").fetchone()[0]
            except sqlite3.OperationalError:  # not created yet
                return 0
        try:
            with self.engine.connect() as conn:
                return conn.execute(sa.text("SELECT COUNT(*) FROM images")).scalar_one()
        except sa.exc.ProgrammingError:  # not created yet
            return 0

    def check_consistent(self) -> int:
        """Every committed image has its full labels, nothing dangles; returns the number of images."""
        if self.engine is None:
            with sqlite3.connect(self.db) as conn:
                assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        engine = self.engine or store.create_engine(self.db)
        try:
            with engine.connect() as conn:
                def count(sql: str) -> int:
                    return conn.execute(sa.text(sql)).scalar_one()

                images = count("SELECT COUNT(*) FROM images")
                cells = count("SELECT COUNT(*) FROM (SELECT DISTINCT image_id, cell FROM cell_labels) c")
                labelled = count("SELECT COUNT(DISTINCT image_id) FROM image_labels")
                orphans = count("SELECT COUNT(*) FROM cell_labels WHERE image_id NOT IN (SELECT image_id FROM images)")
                assert count("SELECT COUNT(*) FROM images WHERE error IS NOT NULL") == 0
                assert count("SELECT COUNT(*) FROM (SELECT path FROM images GROUP BY path HAVING COUNT(*) > 1) d") == 0
        finally:
            if engine is not self.engine:
                engine.dispose()
        assert (cells, labelled, orphans) == (9 * images, images, 0)
        return images

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
@pytest.mark.slow
def test_kill_9_mid_run_then_resume_loses_and_duplicates_nothing(tmp_path, index_url):
    photos = tmp_path / "photos"
    for i in range(COUNT):
        paint(photos / f"{i:03}.png", {i % 9: RED, (i * 7 + 3) % 9: BLUE})
    db = Watcher(index_url)
    tests = str(Path(__file__).parent)
    script = CHILD.format(tests=tests, db=index_url, root=str(photos), delay=MODEL_DELAY, batch=BATCH,
                          hold=held_after(COUNT))
    rng = random.Random(0)
    for threshold in KILL_AT:
        child = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
        deadline = time.monotonic() + PATIENCE_S
        while db.committed() < threshold and child.poll() is None and time.monotonic() < deadline:
            time.sleep(POLL_S)
        time.sleep(rng.uniform(0, MODEL_DELAY))
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert child.returncode == -signal.SIGKILL, child.stderr.read().decode()
        done = db.check_consistent()
        assert threshold <= done < COUNT

    engine = store.open_index(index_url)
    model = FakeBackbone()
    summary = pipeline.index(engine, [str(photos)], lambda s: model, batch=BATCH)
    assert (summary.unchanged, summary.indexed, summary.failed) == (done, COUNT - done, 0)
    assert model.images == (COUNT - done) * len(regions.SCALES)  # committed images are not run again
    assert db.check_consistent() == COUNT
    db.close()

    reference = store.open_index(str(tmp_path / "reference.db"))
    pipeline.index(reference, [str(photos)], lambda s: FakeBackbone(), model="fake", size=96, precision="fp32")
    assert labels_by_path(engine) == labels_by_path(reference)
    engine.dispose()
    reference.dispose()


INTERRUPTED_CLI = """
import signal, sys
# Ctrl-C as a terminal delivers it, also where this test runs as a background job of a shell without job
# control, whose children inherit SIGINT ignored (the child then held until PATIENCE_S ran out).
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path.insert(0, {tests!r})
from fake_backbone import FakeBackbone
import fake_detector; fake_detector.install()
import indexer.models
def load_model(name, weights=None, precision="auto"):
    model = FakeBackbone(delay={delay}, hold_after={hold})
    model.name, model.precision = name, precision
    return model
indexer.models.load_model = load_model
from indexer.cli import main
sys.argv = ["imgidx", "index", {root!r}, "--db", {db!r}, "--model", "efficientnet-lite0", "--precision", "fp32",
            "--size", "96", "--batch", "4"]
main()
"""


def test_ctrl_c_stops_the_cli_cleanly_and_the_next_run_continues(tmp_path, index_url):
    photos = tmp_path / "photos"
    for i in range(60):
        paint(photos / f"{i:03}.png", {i % 9: RED, (i * 7 + 3) % 9: BLUE})
    db = Watcher(index_url)
    script = INTERRUPTED_CLI.format(tests=str(Path(__file__).parent), db=index_url, root=str(photos), delay=MODEL_DELAY,
                                    hold=held_after(60))
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + PATIENCE_S
    while db.committed() < 8 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(POLL_S)
    child.send_signal(signal.SIGINT)
    stdout, stderr = child.communicate(timeout=PATIENCE_S)
    assert child.returncode == 130, stderr
    assert stderr.endswith("interrupted: what was committed is kept; run the same command to continue\n")
    assert stdout == ""
    done = db.check_consistent()
    db.close()
    assert 8 <= done < 60
    model = FakeBackbone()
    model.name = "efficientnet-lite0"
    engine = store.open_index(index_url)
    summary = pipeline.index(engine, [str(photos)], lambda s: model)
    engine.dispose()
    assert (summary.unchanged, summary.indexed) == (done, 60 - done)
