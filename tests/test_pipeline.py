"""The batch indexer on real files and a real index (SQLite and PostgreSQL), with a fake backbone of real geometry."""

import os
import zlib
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image

from composites import as_phone_photo
from fake_backbone import FakeBackbone
from indexer import pipeline, regions, store
from indexer.labels import COMPOUND_BASE
from indexer.errors import FolderError, IndexBusyError, IndexSettingsError, StoreError, WorkingSizeError

SIZE = 96
#: The model sees each photo once per scale (`indexer.regions.SCALES`).
VIEWS = len(regions.SCALES)
FIRE_ENGINE, SWIMMING_TRUNKS, GREEN_SNAKE = 555, 842, 55
RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 255, 0)
FORMATS = {".jpg": "JPEG", ".png": "PNG", ".tif": "TIFF", ".webp": "WEBP", ".bmp": "BMP", ".gif": "GIF"}


def paint(path: Path, cells: dict[int, tuple[int, int, int]], hw=(120, 160), orientation=None) -> Path:
    """A grey picture with ``cells`` (0..8) filled with a colour, saved in the format of its suffix.

    A few pixels in a corner encode the path, so no two pictures have the same content by accident.
    """
    height, width = hw
    pixels = np.full((height, width, 3), 128, dtype=np.uint8)
    for cell, colour in cells.items():
        r, c = divmod(cell, 3)
        pixels[r * height // 3 : (r + 1) * height // 3, c * width // 3 : (c + 1) * width // 3] = colour
    pixels[-1, :4] = np.frombuffer(zlib.crc32(str(path).encode()).to_bytes(4, "little"), dtype=np.uint8)[:, None]
    path.parent.mkdir(parents=True, exist_ok=True)
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        Image.fromarray(as_phone_photo(pixels)).save(path, "JPEG", quality=95, exif=exif.tobytes())
    else:
        Image.fromarray(pixels).save(path, FORMATS[path.suffix.lower()], quality=95)
    return path


class Loader:
    """``load_backbone`` for the pipeline, remembering whether the model was needed."""

    def __init__(self, backbone=None):
        self.backbone = backbone or FakeBackbone()
        self.loads = 0

    def __call__(self, settings):
        self.loads += 1
        return self.backbone


@pytest.fixture
def engine(index_url):
    """An empty index, once in SQLite and once in PostgreSQL."""
    engine = store.open_index(index_url)
    yield engine
    engine.dispose()


def run(engine, roots, loader=None, **kwargs):
    kwargs = {"model": "fake", "size": SIZE, "precision": "fp32", "batch": 4, **kwargs}
    return pipeline.index(engine, [str(r) for r in roots], loader or Loader(), **kwargs)


def rows(engine, sql):
    with engine.connect() as conn:
        return conn.execute(sa.text(sql)).all()


def labels_by_path(engine):
    """Every stored label, keyed by path: what a run must keep, move or rebuild."""
    labels: dict[str, list] = {path: [] for (path,) in rows(engine, "SELECT path FROM images WHERE error IS NULL")}
    cells = "SELECT path, cell, class_id, score FROM cell_labels JOIN images USING (image_id)"
    for path, *label in rows(engine, cells):
        labels[path].append(tuple(label))
    return {path: sorted(found) for path, found in labels.items()}


def leading_class(engine, path, cell):
    return rows(
        engine,
        f"SELECT class_id FROM cell_labels JOIN images USING (image_id) WHERE path = '{path}' AND cell = {cell} "
        f"AND class_id < {COMPOUND_BASE} ORDER BY score DESC LIMIT 1",  # a model's class, not a compound
    )[0][0]


def test_every_format_is_indexed_and_colours_land_in_their_cells(engine, tmp_path):
    photos = tmp_path / "photos"
    paths = [paint(photos / f"sub/pic{suffix}", {0: RED, 8: BLUE}) for suffix in FORMATS]
    loader = Loader()
    summary = run(engine, [photos], loader)
    assert (summary.found, summary.indexed, summary.failed, summary.unchanged) == (6, 6, 0, 0)
    assert loader.loads == 1 and loader.backbone.images == 6 * VIEWS
    for path in paths:
        assert leading_class(engine, str(path), 0) == FIRE_ENGINE
        assert leading_class(engine, str(path), 8) == SWIMMING_TRUNKS
        assert leading_class(engine, str(path), 4) not in (FIRE_ENGINE, SWIMMING_TRUNKS)
    assert set(rows(engine, "SELECT width, height, model, working_size FROM images")) == {(160, 120, "fake", SIZE)}
    with engine.connect() as conn:
        assert store.read_settings(conn) == store.IndexSettings("fake", SIZE, "fp32")


def test_exif_orientation_puts_the_colours_where_a_person_sees_them(engine, tmp_path):
    upright = paint(tmp_path / "p/upright.jpg", {0: RED, 5: BLUE}, hw=(160, 120))
    phone = paint(tmp_path / "p/phone.jpg", {0: RED, 5: BLUE}, hw=(160, 120), orientation=6)
    assert Image.open(phone).size == (160, 120)  # stored landscape, shown portrait
    run(engine, [tmp_path / "p"])
    for path in (upright, phone):
        assert leading_class(engine, str(path), 0) == FIRE_ENGINE
        assert leading_class(engine, str(path), 5) == SWIMMING_TRUNKS
    assert set(rows(engine, "SELECT width, height FROM images")) == {(120, 160)}


def test_walk_skips_hidden_entries_other_files_and_the_database_and_ends_symlink_loops(tmp_path):
    root = tmp_path / "photos"
    wanted = [paint(root / "a.jpg", {}), paint(root / "deep/er/b.PNG", {})]
    paint(root / ".hidden/c.jpg", {})
    paint(root / ".d.jpg", {})
    (root / "notes.txt").write_text("not an image")
    (root / "index.jpg").write_bytes(b"an index database with an unlucky name")
    os.symlink(root, root / "deep/loop")
    os.symlink(root / "deep", root / "again")
    os.mkfifo(root / "pipe.jpg")
    found = pipeline.walk([str(root)], exclude={str(root / "index.jpg")})
    assert [f.path for f in found.files] == [str(p) for p in wanted]
    assert found.unreadable == []


def test_unchanged_files_are_skipped_without_the_model(engine, tmp_path):
    photos = tmp_path / "photos"
    paths = [paint(photos / f"{i}.jpg", {i % 9: RED}) for i in range(10)]
    run(engine, [photos])
    before = labels_by_path(engine)
    loader = Loader()
    summary = run(engine, [photos], loader, model=None, size=None, precision="auto")
    assert (summary.unchanged, summary.indexed, summary.moved, summary.pruned) == (10, 0, 0, 0)
    assert loader.loads == 0 and not summary.model_loaded
    os.utime(paths[0], ns=(1, 1))  # touched, same content: hashed, not decoded
    summary = run(engine, [photos], loader)
    assert (summary.unchanged, summary.indexed) == (10, 0) and loader.loads == 0
    assert rows(engine, f"SELECT mtime_ns FROM images WHERE path = '{paths[0]}'") == [(1,)]
    assert labels_by_path(engine) == before


def test_a_modified_file_is_indexed_again(engine, tmp_path):
    photos = tmp_path / "photos"
    path = paint(photos / "a.png", {0: RED})
    paint(photos / "b.png", {0: RED})
    run(engine, [photos])
    paint(path, {0: GREEN})
    summary = run(engine, [photos])
    assert (summary.indexed, summary.unchanged) == (1, 1)
    assert leading_class(engine, str(path), 0) == GREEN_SNAKE
    assert len(rows(engine, "SELECT * FROM images")) == 2


def test_moved_renamed_and_copied_files_keep_their_labels_without_the_model(engine, tmp_path):
    photos = tmp_path / "photos"
    for i in range(4):
        paint(photos / f"{i}.jpg", {i: RED, 8 - i: BLUE})
    run(engine, [photos])
    before = labels_by_path(engine)
    ids = dict(rows(engine, "SELECT path, image_id FROM images"))
    (photos / "album").mkdir()
    shutil.move(photos / "0.jpg", photos / "album/0.jpg")
    shutil.move(photos / "1.jpg", photos / "renamed.jpg")
    shutil.copy(photos / "2.jpg", photos / "album/copy-of-2.jpg")
    loader = Loader()
    summary = run(engine, [photos], loader)
    assert (summary.moved, summary.copied, summary.indexed, summary.pruned, summary.unchanged) == (2, 1, 0, 0, 2)
    assert loader.loads == 0
    after = labels_by_path(engine)
    assert after[str(photos / "album/0.jpg")] == before[str(photos / "0.jpg")]
    assert after[str(photos / "renamed.jpg")] == before[str(photos / "1.jpg")]
    assert after[str(photos / "album/copy-of-2.jpg")] == before[str(photos / "2.jpg")]
    expected = ("album/0.jpg", "renamed.jpg", "2.jpg", "album/copy-of-2.jpg", "3.jpg")
    assert set(after) == {str(photos / p) for p in expected}
    moved_id = dict(rows(engine, "SELECT path, image_id FROM images"))[str(photos / "album/0.jpg")]
    assert moved_id == ids[str(photos / "0.jpg")]  # the row followed the file


def test_deleted_files_are_pruned_only_under_the_folders_given(engine, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    for folder in (first, second):
        for i in range(3):
            paint(folder / f"{i}.jpg", {i: RED})
    run(engine, [first, second])
    (first / "0.jpg").unlink()
    (second / "0.jpg").unlink()
    summary = run(engine, [first], prune=False)
    assert (summary.pruned, summary.missing, summary.unchanged) == (0, 1, 2)
    assert len(rows(engine, "SELECT * FROM images")) == 6
    summary = run(engine, [first])
    assert (summary.pruned, summary.missing) == (1, 0)
    assert sorted(p for (p,) in rows(engine, "SELECT path FROM images")) == sorted(
        str(p) for p in [first / "1.jpg", first / "2.jpg", *(second / f"{i}.jpg" for i in range(3))]
    )
    orphans = "SELECT COUNT(*) FROM cell_labels WHERE image_id NOT IN (SELECT image_id FROM images)"
    assert rows(engine, orphans) == [(0,)]


def test_bad_files_are_recorded_and_counted_and_the_run_goes_on(engine, tmp_path):
    photos = tmp_path / "photos"
    good = paint(photos / "good.jpg", {0: RED})
    truncated = photos / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:300])
    corrupt = photos / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "notes.gif").write_text("not an image at all")
    events = []
    summary = run(engine, [photos], on_event=events.append)
    assert (summary.indexed, summary.failed) == (1, 4) and not summary.ok
    errors = dict(rows(engine, "SELECT path, error FROM images WHERE error IS NOT NULL"))
    assert errors[str(photos / "empty.jpg")] == f"{photos / 'empty.jpg'}: empty file"
    assert errors[str(photos / "notes.gif")] == f"{photos / 'notes.gif'}: not an image (unknown format)"
    assert errors[str(truncated)].startswith(f"{truncated}: corrupt or truncated image")
    assert errors[str(corrupt)].startswith(f"{corrupt}: ")
    assert sorted(e.path for e in events if isinstance(e, pipeline.FileFailed)) == sorted(errors)
    assert dict(summary.failures) == errors
    labels_of_failed = "SELECT COUNT(*) FROM cell_labels JOIN images USING (image_id) WHERE error IS NOT NULL"
    assert rows(engine, labels_of_failed) == [(0,)]
    events.clear()
    summary = run(engine, [photos], on_event=events.append)  # failed files are tried again; good ones are not
    assert (summary.unchanged, summary.failed, summary.still_failing, summary.indexed) == (1, 0, 4, 0)
    again = [e for e in events if isinstance(e, pipeline.FileFailed)]
    assert summary.ok and [e.still for e in again] == [True] * 4  # unchanged since they failed: no new failure
    shutil.copy(good, truncated)
    summary = run(engine, [photos])
    assert (summary.failed, summary.still_failing, summary.copied) == (0, 3, 1)
    (photos / "empty.jpg").write_bytes(b"\xff")  # changed, and still bad: a failure again
    summary = run(engine, [photos])
    assert (summary.failed, summary.still_failing) == (1, 2) and not summary.ok
    assert rows(engine, f"SELECT error FROM images WHERE path = '{truncated}'") == [(None,)]


def test_a_file_vanishing_mid_run_is_recorded_then_pruned(engine, tmp_path):
    photos = tmp_path / "photos"
    paths = [paint(photos / f"{i}.jpg", {i: RED}) for i in range(5)]

    def delete_one(event):
        if isinstance(event, pipeline.Planned):
            paths[2].unlink()

    summary = run(engine, [photos], on_event=delete_one)
    assert (summary.indexed, summary.failed) == (4, 1)
    assert summary.failures == [(str(paths[2]), f"{paths[2]}: no such file")]
    summary = run(engine, [photos])
    assert (summary.pruned, summary.failed, summary.unchanged) == (1, 0, 4)


UNREADABLE_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from fake_backbone import FakeBackbone
import fake_detector; fake_detector.install()
from indexer import pipeline, store
engine = store.open_index({db!r})
summary = pipeline.index(engine, [{root!r}], lambda s: FakeBackbone(), model="fake", size=96, precision="fp32")
print(summary.indexed, summary.unchanged, summary.failed, summary.unreadable_folders, summary.pruned)
for path, error in summary.failures:
    print(error)
"""
#: Root reads any file; without these capabilities it obeys permission bits like any user.
DROP_ROOT_READ = [
    "setpriv", "--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search"
]


def test_unreadable_files_and_folders_are_reported_and_nothing_under_them_is_pruned(tmp_path):
    if os.geteuid() == 0 and not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: permissions cannot be enforced")
    photos = tmp_path / "photos"
    paint(photos / "ok.jpg", {0: RED})
    paint(photos / "private/inside.jpg", {0: RED})
    script = UNREADABLE_SCRIPT.format(tests=str(Path(__file__).parent), db=str(tmp_path / "index.db"), root=str(photos))
    prefix = DROP_ROOT_READ if os.geteuid() == 0 else []

    def index():
        result = subprocess.run([*prefix, sys.executable, "-c", script], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()

    assert index() == ["2 0 0 0 0"]
    locked = paint(photos / "locked.jpg", {0: BLUE})
    locked.chmod(0)
    (photos / "private").chmod(0)
    try:
        assert index() == ["0 1 1 1 0", f"{locked}: permission denied"]  # private/inside.jpg is not pruned
    finally:
        (photos / "private").chmod(0o755)
        locked.chmod(0o644)
    assert index() == ["1 2 0 0 0"]


def test_another_model_or_size_is_refused_unless_reindexing(engine, tmp_path):
    photos = tmp_path / "photos"
    for i in range(6):
        paint(photos / f"{i}.jpg", {i: RED})
    run(engine, [photos])
    with pytest.raises(IndexSettingsError) as refused:
        run(engine, [photos], size=128)
    assert str(refused.value) == (
        "the index holds labels from fake at size 96 (fp32), not fake at size 128 (fp32); pass --reindex to "
        "rebuild it, or leave out --model/--size/--precision to keep its settings"
    )
    other = FakeBackbone()
    other.name = "fake2"
    with pytest.raises(IndexSettingsError, match="not fake2 at size 96"):
        run(engine, [photos], Loader(other), model="fake2")
    summary = run(engine, [photos], size=128, reindex=True)
    assert (summary.indexed, summary.unchanged) == (6, 0)
    assert set(rows(engine, "SELECT model, working_size FROM images")) == {("fake", 128)}
    summary = run(engine, [photos], model=None, size=None)
    assert summary.unchanged == 6


def test_an_interrupted_reindex_resumes_and_never_mixes_settings(engine, tmp_path):
    photos = tmp_path / "photos"
    for i in range(12):
        paint(photos / f"{i:02}.jpg", {i % 9: RED})
    run(engine, [photos])
    other = FakeBackbone(fail_after=VIEWS)  # the second batch fails
    other.name = "fake2"
    with pytest.raises(RuntimeError, match="fake model failure"):
        run(engine, [photos], Loader(other), model="fake2", reindex=True)
    states = rows(engine, "SELECT model, COUNT(*) FROM images GROUP BY model ORDER BY model NULLS FIRST")
    assert states == [(None, 8), ("fake2", 4)]
    labelled = rows(engine, "SELECT DISTINCT model FROM images JOIN image_labels USING (image_id)")
    assert labelled == [("fake2",)]  # the old model's labels are gone, not mixed in
    with pytest.raises(IndexSettingsError):
        run(engine, [photos])  # the index is now fake2's; the old settings are refused
    other.fail_after = None
    summary = run(engine, [photos], Loader(other), model=None, size=None)
    assert (summary.indexed, summary.unchanged) == (8, 4)
    assert rows(engine, "SELECT model, COUNT(*) FROM images GROUP BY model") == [("fake2", 12)]


def test_images_are_batched_by_working_shape(engine, tmp_path):
    photos = tmp_path / "photos"
    for i in range(5):
        paint(photos / f"land{i}.png", {0: RED}, hw=(120, 160))
        paint(photos / f"port{i}.png", {0: RED}, hw=(160, 120))
    loader = Loader()
    run(engine, [photos], loader, batch=4)
    assert loader.backbone.images == 10 * VIEWS and loader.backbone.calls == 4 * VIEWS  # 4 + 1 of each shape


def test_refusals(engine, tmp_path):
    with pytest.raises(FolderError, match=f"^{tmp_path / 'nope'}: no such folder$"):
        run(engine, [tmp_path / "nope"])


def test_a_second_writer_of_an_sqlite_index_is_refused(tmp_path):
    engine = store.open_index(str(tmp_path / "index.db"))
    with pipeline.writer_lock(engine):
        with pytest.raises(IndexBusyError, match="another imgidx index is writing to .*index.db; wait for it"):
            run(engine, [tmp_path])
    engine.dispose()


def test_no_lock_file_is_left_beside_the_index_after_a_run_or_a_refusal(tmp_path):
    paint(tmp_path / "photos/a.jpg", {0: RED})
    db = tmp_path / "index.db"
    engine = store.open_index(str(db))
    run(engine, [tmp_path / "photos"])
    assert not Path(f"{db}.lock").exists()
    with pytest.raises(IndexSettingsError):
        run(engine, [tmp_path / "photos"], size=SIZE * 2)
    engine.dispose()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.db", "photos"]


def sqlite_locks_held(path: Path) -> list[str]:
    """The POSIX locks this process holds on ``path`` (``/proc/locks``), as SQLite takes them."""
    inode = os.stat(path).st_ino
    return [line for line in Path("/proc/locks").read_text().splitlines()
            if " POSIX " in line and f" {os.getpid()} " in line and line.split()[5].endswith(f":{inode}")]


def test_releasing_the_writer_lock_leaves_no_connection_without_its_sqlite_lock(tmp_path):
    """Closing the lock's descriptor on the database file drops every POSIX lock of the process on it, the
    shared one each open WAL connection holds included: the engine's connections are closed first, and the
    next one takes its lock again."""
    engine = store.open_index(str(tmp_path / "index.db"))
    with pipeline.writer_lock(engine):
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT COUNT(*) FROM images")).all()
        assert sqlite_locks_held(tmp_path / "index.db")  # the pooled connection's
    assert engine.pool.checkedin() == 0
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT COUNT(*) FROM images")).all()
        assert sqlite_locks_held(tmp_path / "index.db")
    engine.dispose()


@pytest.fixture
def own_flock(monkeypatch):
    """The index lies on a file system with its own flock (NFS, SMB): the lock is a file beside it."""
    from indexer import locking

    monkeypatch.setattr(locking, "file_system", lambda path: "nfs4")


def test_where_flock_is_the_file_systems_own_the_lock_is_a_file_beside_the_real_path(tmp_path, own_flock):
    """Through a symlink too: the lock file is named after the path it resolves to. It is removed at the end."""
    import fcntl

    engine = store.open_index(str(tmp_path / "index.db"))
    (tmp_path / "link.db").symlink_to(tmp_path / "index.db")
    through_link = store.create_engine(f"sqlite:///{tmp_path / 'link.db'}")
    with pipeline.writer_lock(through_link):
        with open(tmp_path / "index.db.lock", "a") as other, pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(IndexBusyError, match="another imgidx index is writing to .*index.db; wait for it"):
            run(engine, [tmp_path])
    assert not list(tmp_path.glob("*.lock"))
    through_link.dispose()
    engine.dispose()


def test_a_lock_file_removed_between_opening_and_locking_it_is_not_the_lock(tmp_path, monkeypatch, own_flock):
    """The run that held the lock removed the file after this one opened it: this run locks the file that
    the path names now, which a third run would also open, rather than the removed one."""
    import fcntl

    from indexer import locking

    engine = store.open_index(str(tmp_path / "index.db"))
    lock_path = f"{tmp_path / 'index.db'}.lock"
    real_flock, removals = fcntl.flock, []

    def flock_after_the_holder_removed_the_file(handle, operation):
        if not removals:
            removals.append(lock_path)
            os.unlink(lock_path)
        return real_flock(handle, operation)

    monkeypatch.setattr(locking.fcntl, "flock", flock_after_the_holder_removed_the_file)
    with pipeline.writer_lock(engine):
        monkeypatch.setattr(locking.fcntl, "flock", real_flock)
        with open(lock_path, "a") as third, pytest.raises(BlockingIOError):
            real_flock(third, fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert removals and not os.path.exists(lock_path)
    engine.dispose()


def test_the_file_system_is_read_from_the_mount_table(tmp_path):
    from indexer import locking

    kind = locking.file_system(tmp_path)
    assert kind and kind == locking.file_system(tmp_path / "..")  # tmp_path's folder is on the same mount
    assert locking.file_system(tmp_path / "missing") is None


def test_an_index_that_cannot_be_written_is_a_one_line_error_and_stays_intact(tmp_path, monkeypatch):
    monkeypatch.setattr(store.opening, "SQLITE_BUSY_TIMEOUT_S", 0.2)
    engine = store.open_index(str(tmp_path / "index.db"))
    paint(tmp_path / "photos/a.jpg", {0: RED})
    run(engine, [tmp_path / "photos"])
    paint(tmp_path / "photos/b.jpg", {0: BLUE})
    blocker = sqlite3.connect(tmp_path / "index.db")
    blocker.execute("BEGIN IMMEDIATE")
    try:
        message = f"^cannot write to the index {tmp_path / 'index.db'}: database is locked$"
        with pytest.raises(StoreError, match=message):
            run(engine, [tmp_path / "photos"])
    finally:
        blocker.rollback()
        blocker.close()
    assert [p for (p,) in rows(engine, "SELECT path FROM images")] == [str(tmp_path / "photos/a.jpg")]
    assert run(engine, [tmp_path / "photos"]).indexed == 1
    engine.dispose()


def test_overlapping_roots_index_each_file_once(engine, tmp_path):
    photos = tmp_path / "photos"
    a = paint(photos / "a.jpg", {0: RED})
    paint(photos / "sub/b.jpg", {0: BLUE})
    summary = run(engine, [a, photos, photos / "sub", a])
    assert (summary.found, summary.indexed) == (2, 2)


def test_a_size_the_model_cannot_take_is_refused_and_leaves_no_settings_behind(engine, tmp_path):
    photos = tmp_path / "photos"
    (photos / "bad.jpg").parent.mkdir(parents=True)
    (photos / "bad.jpg").write_bytes(b"")
    paint(photos / "good.jpg", {0: RED})
    with pytest.raises(WorkingSizeError, match=r"^--size must be at least 32 for fake, got 10$"):
        run(engine, [photos], size=10, batch=1)
    with engine.connect() as conn:
        assert store.read_settings(conn) is None
    summary = run(engine, [photos])
    assert (summary.indexed, summary.failed) == (1, 1)
