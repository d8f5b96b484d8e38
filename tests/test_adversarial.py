"""Attacks a real photo library makes on the indexer, one test each (issue 11).

Every test runs the CLI on a small gallery of good photos mixed with the attack, and checks the same things:
the exact one-line message and exit status; every good photo indexed with its labels; ``PRAGMA
integrity_check`` ok; no path twice; and a foreign file (another application's SQLite database) unchanged.

Attacks:
 1. a file name that is not UTF-8 (indexed, queried, shown, merged, rendered; ``-0`` gives its bytes)
 2. photos above Pillow's 89.5 MP warning (108 MP, with two decoding threads), and a real bomb (400 MP)
 3. read-only commands on another application's SQLite file, and on an index in a read-only folder
 4. huge queries: 100 KB, 20,000 words, a 2,000-character unknown label
 5. database URLs that are no URL, and an index whose schema version is not a number
 6. an in-memory database URL
 7. a file name with a newline that would print a fake ``failed`` line
 8. a FIFO, a broken symlink, a symlink loop and a path longer than the system takes, named like photos
 9. ``--db``/``--into`` in a folder that does not exist
10. bad image files: truncated at several points, CMYK, 16-bit TIFF, animated GIF, 1x1 px, empty, text
11. an unreadable file and folder
12. a full disk under the index
13. two writers at once
14. ``kill -9`` during a run, then a resume
15. hostile names in the HTML gallery
16. ``redact --force`` with ``--out`` on the library, a hard link, a symbolic link or a bind mount to originals
17. two indexed folders of the same name under ``redact``
18. redacted copies of a photo with GPS, XMP and maker notes holding its position
19. output to a full device (``/dev/full``) and to a closed standard output
20. a cached OpenVINO model with one byte flipped (same size and mtime)
21. a cache folder that cannot be written

Issue 21 (third round), numbered as there:
 6. a WAL left beside an index in a read-only folder, and one that cannot be read
 7. a dropped table (before and after opening, also while serving), values outside the schema, a corrupt page
10. ``--db newdir/x.db`` (in 9), and the default index's folder, which is made
11. a second writer through a hard link or a symlink (in 13)
13. PostgreSQL's read-only commands, whose sessions must not write
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from indexer import names
from indexer.cli import cli
from test_index_cli import MODEL, STILL_FAILING_NOTE, models  # noqa: F401  (the fake-model fixture)
from test_crash_resume import INTERRUPTED_CLI
from test_pipeline import BLUE, DROP_ROOT_READ, RED, paint

TESTS = Path(__file__).parent
ROOT = TESTS.parent


def imgidx(*argv):
    return CliRunner().invoke(cli, [a if isinstance(a, bytes) else str(a) for a in argv], prog_name="imgidx")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Library:
    """A gallery of good photos, the index's path, and a foreign SQLite file that nothing may change."""

    def __init__(self, root: Path):
        self.root = root
        self.photos = root / "photos"
        self.good = [paint(self.photos / "good.jpg", {0: RED}), paint(self.photos / "sub/good.png", {8: BLUE})]
        self.db = root / "index.db"
        self.foreign = root / "foreign.db"
        with sqlite3.connect(self.foreign) as conn:
            conn.execute("CREATE TABLE notes (body TEXT)")
            conn.execute("INSERT INTO notes VALUES ('not imgidx')")
        conn.close()
        self.foreign_sha = sha256(self.foreign)

    def index(self, *more):
        return imgidx("index", self.photos, "--db", self.db, *MODEL, *more)

    def check(self, db: Path | None = None, good: list[Path] | None = None) -> None:
        """Every good photo labelled, integrity ok, no path twice, the foreign file unchanged."""
        with sqlite3.connect(f"file:{db or self.db}?mode=ro", uri=True) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert conn.execute("SELECT COUNT(*) - COUNT(DISTINCT path) FROM images").fetchone() == (0,)
            labelled = {
                path for (path,) in conn.execute(
                    "SELECT DISTINCT path FROM images JOIN image_labels USING (image_id) WHERE error IS NULL"
                )
            }
        conn.close()
        assert {names.stored(str(p)) for p in (good if good is not None else self.good)} <= labelled
        assert sha256(self.foreign) == self.foreign_sha
        assert not Path(f"{self.foreign}-wal").exists()


@pytest.fixture
def library(tmp_path, models):  # noqa: F811
    return Library(tmp_path)


def one_line(result, exit_code: int, message: str) -> None:
    assert (result.exit_code, result.stderr) == (exit_code, message + "\n"), result.output


# 1 -----------------------------------------------------------------------------------------------------


def test_a_name_that_is_not_utf8_is_indexed_queried_shown_merged_and_rendered(library):
    raw = os.fsencode(library.photos) + b"/caf\xe9.jpg"
    shutil.copy(library.good[0], raw)
    latin = os.fsdecode(raw)
    result = library.index()
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout.startswith("3 indexed, 0 unchanged")
    library.check(good=[*library.good, latin])
    shown = f"{library.photos}/caf\\xe9.jpg"
    stored = f"file://{library.photos}/caf%E9.jpg"

    query = ["query", "fire engine", "--db", library.db]
    assert shown in imgidx(*query).stdout
    assert imgidx(*query, "--paths").stdout_bytes.split(b"\n").count(shown.encode()) == 1
    assert raw + b"\0" in imgidx(*query, "--paths", "-0").stdout_bytes
    assert stored in [json.loads(line)["path"] for line in imgidx(*query, "--json").stdout.splitlines()]
    page = imgidx(*query, "--html", "-").stdout
    assert f'href="{stored}"' in page and f'<span class="part">{Path(shown).name}</span></a>' in page
    assert "not readable" not in page

    assert imgidx("show", latin, "--db", library.db).stdout.splitlines()[0] == shown
    assert json.loads(imgidx("show", latin, "--db", library.db, "--json").stdout)["path"] == stored
    assert names.restored(stored) == latin

    merged = library.root / "merged.db"
    assert imgidx("merge", library.db, "--into", merged).exit_code == 0
    library.check(merged, good=[*library.good, latin])
    assert library.index().stdout.startswith("0 indexed, 3 unchanged")  # found again by its bytes


# 2 -----------------------------------------------------------------------------------------------------


def grey_jpeg(path: Path, width: int, height: int) -> Path:
    Image.new("L", (width, height), 128).save(path, "JPEG", quality=30)
    return path


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` (a bomb's header) and holds no pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(
        b"IEND", b""
    )


def test_photos_above_pillows_warning_are_indexed_and_a_bomb_is_refused_from_its_header(library):
    big = [grey_jpeg(library.photos / f"phone{i}.jpg", 12000, 9000) for i in range(2)]  # 108 MP each
    bomb = library.photos / "bomb.png"
    bomb.write_bytes(png_header_only(20000, 20000))
    result = library.index("--workers", "2")
    one_line(result, 1, f"failed {bomb}: too large (20000x20000, 400 MP; the limit is 300 MP)")
    library.check(good=[*library.good, *big])


# 3 -----------------------------------------------------------------------------------------------------


def test_no_command_changes_another_applications_database(library):
    message = f"Error: {library.foreign} is not an imgidx index (it has other tables)"
    for argv in (
        ("stats", "--db", library.foreign),
        ("query", "dog", "--db", library.foreign),
        ("show", library.good[0], "--db", library.foreign),
        ("index", library.photos, "--db", library.foreign),
        ("merge", library.foreign, "--into", library.root / "new.db"),
    ):
        one_line(imgidx(*argv), 1, message)
    assert library.index().exit_code == 0
    one_line(imgidx("merge", library.db, "--into", library.foreign), 1, message)
    library.check()
    assert not (library.root / "new.db").exists()


@pytest.mark.skipif(os.geteuid() == 0 and not shutil.which("setpriv"), reason="root without setpriv")
def test_read_only_commands_work_on_an_index_in_a_read_only_folder(library):
    assert library.index().exit_code == 0
    before = sha256(library.db)
    library.root.chmod(0o555)
    prefix = DROP_ROOT_READ if os.geteuid() == 0 else []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        for argv in (["stats"], ["query", "fire engine", "--paths"], ["show", str(library.good[0])]):
            run = subprocess.run(
                [*prefix, sys.executable, "-m", "indexer", *argv, "--db", str(library.db)],
                capture_output=True, text=True, env=env,
            )
            assert (run.returncode, run.stderr) == (0, ""), run.stderr
        assert run.stdout.startswith(str(library.good[0]))
    finally:
        library.root.chmod(0o755)
    assert sha256(library.db) == before and not Path(f"{library.db}-wal").exists()
    library.check()


# 4 -----------------------------------------------------------------------------------------------------


def test_huge_queries_are_refused_at_once_and_echo_little(library):
    from query.parser import _Parser

    assert library.index().exit_code == 0
    started = time.process_time()  # CPU time: what the work costs, however busy the machine is
    result = imgidx("query", "dog " * 25_000, "--db", library.db)
    assert time.process_time() - started < 5
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == "Error: column 2001: query too long: 100,000 characters, the most is 2,000"
    assert max(map(len, result.stderr.splitlines())) < 120

    started = time.process_time()
    _Parser("dog " * 20_000).parse()  # the parser itself, without the length limit: linear
    assert time.process_time() - started < 5  # 20,000 words took minutes of CPU when parsing was quadratic

    result = imgidx("query", "x" * 1999, "--db", library.db)
    first = result.stderr.splitlines()[0]
    assert result.exit_code == 1 and first == f"Error: column 1: unknown label '{'x' * 57}...'; list names with: imgidx labels WORD"
    library.check()


# 5, 6 --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["bogus-url://", "://x", "postgresql://u@[::1/x"])
@pytest.mark.parametrize("command", ["index", "stats", "merge"])
def test_database_urls_that_are_no_url(library, url, command):
    assert library.index().exit_code == 0
    argv = {"index": ("index", library.photos, "--db", url), "stats": ("stats", "--db", url),
            "merge": ("merge", library.db, "--into", url)}[command]
    one_line(imgidx(*argv), 1, f"Error: not a database URL: {url}")
    library.check()


def test_an_index_whose_schema_version_is_not_a_number(library):
    assert library.index().exit_code == 0
    with sqlite3.connect(library.db) as conn:
        conn.execute("UPDATE meta SET value = 'one' WHERE key = 'schema_version'")
    conn.close()
    one_line(
        imgidx("stats", "--db", library.db), 1,
        f"Error: {library.db} is not an imgidx index this version can read: its schema version is 'one', not a number",
    )


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_database_is_refused_in_one_line(library, url):
    assert library.index().exit_code == 0
    for argv in (("index", library.photos, "--db", url), ("merge", library.db, "--into", url)):
        one_line(
            imgidx(*argv), 1,
            f"Error: {url} is an in-memory database, gone when imgidx exits: give a file path or sqlite:///FILE",
        )
    library.check()


# 7 -----------------------------------------------------------------------------------------------------


def test_a_name_with_a_newline_cannot_print_a_fake_line(library):
    spoof = library.photos / "bad\nfailed FAKE: spoofed.jpg"
    spoof.write_text("not a photo")
    labelled = library.photos / "ok\x1b[2Jcleared.jpg"
    shutil.copy(library.good[0], labelled)
    result = library.index()
    one_line(result, 1, f"failed {library.photos}/bad\\nfailed FAKE: spoofed.jpg: not an image (unknown format)")
    stats = imgidx("stats", "--db", library.db).stdout.splitlines()
    assert stats[-2:] == ["failed files (1):", f"  {library.photos}/bad\\nfailed FAKE: spoofed.jpg: not an image (unknown format)"]
    table = imgidx("query", "fire engine", "--db", library.db).stdout
    assert f"{library.photos}/ok\\x1b[2Jcleared.jpg" in table and "\x1b" not in table
    failures = json.loads(imgidx("stats", "--db", library.db, "--json").stdout)["failures"]
    assert failures == [{"path": str(spoof), "error": f"{library.photos}/bad\\nfailed FAKE: spoofed.jpg: not an image (unknown format)"}]
    library.check(good=[*library.good, labelled])


# 8 -----------------------------------------------------------------------------------------------------


#: Linux's PATH_MAX (bytes, the final NUL included) and NAME_MAX (the longest name in a folder).
PATH_MAX, NAME_MAX = 4096, 255
LONG_NAME = "photo-" + "x" * 120 + ".jpg"


def long_path(folder: Path) -> Path:
    """A photo whose path is longer than PATH_MAX in a folder whose path is not (so the walk lists it and
    finds the photo), made a folder at a time. The deepest folder's path has the same length under any
    ``folder`` (a pytest-xdist process's temporary folders are longer)."""
    deepest = PATH_MAX - len(LONG_NAME)  # the folder and the photo's name together exceed PATH_MAX
    here = os.open(folder, os.O_RDONLY)
    deep = folder
    try:
        while len(os.fsencode(deep)) < deepest:
            name = "d" * max(1, min(NAME_MAX, deepest - len(os.fsencode(deep)) - 1))
            os.mkdir(name, dir_fd=here)
            inner = os.open(name, os.O_RDONLY, dir_fd=here)
            os.close(here)
            here, deep = inner, deep / name
        fd = os.open(LONG_NAME, os.O_WRONLY | os.O_CREAT, dir_fd=here)
        os.write(fd, (TESTS / "photos" / "chelsea.jpg").read_bytes())
        os.close(fd)
    finally:
        os.close(here)
    return deep / LONG_NAME


def test_entries_that_are_no_file_to_read_are_reported_as_skipped(library):
    fifo = library.photos / "x.jpg"
    os.mkfifo(fifo)
    (library.photos / "broken.jpg").symlink_to(library.root / "nowhere.jpg")
    (library.photos / "loop.jpg").symlink_to("loop.jpg")
    deep = long_path(library.photos / "sub")
    done = []
    runner = threading.Thread(target=lambda: done.append(library.index()), daemon=True)
    runner.start()
    runner.join(60)
    assert done, "the walk blocked on the FIFO"
    result = done[0]
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"skipped {library.photos}/broken.jpg: a broken symbolic link",
        f"skipped {library.photos}/loop.jpg: a symbolic link loop",
        f"skipped {fifo}: not a regular file but a FIFO",
        f"skipped {deep}: path too long for the system ({len(os.fsencode(deep)):,} bytes)",
    ]
    assert ", 0 failed, 4 skipped in " in result.stdout
    stats = imgidx("stats", "--db", library.db).stdout.splitlines()
    assert stats[3] == "images: 6 (2 labelled, 0 failed, 4 skipped, 0 stale)"
    assert stats[-5:] == [
        "skipped files (4):",
        f"  {library.photos}/broken.jpg: a broken symbolic link",
        f"  {library.photos}/loop.jpg: a symbolic link loop",
        f"  {deep}: path too long for the system ({len(os.fsencode(deep)):,} bytes)",
        f"  {fifo}: not a regular file but a FIFO",
    ]
    again = library.index()  # skipped as before, unchanged: still failing, which fails the run only with --strict
    assert again.exit_code == 0 and again.stdout.startswith("0 indexed, 2 unchanged, 0 moved, 0 pruned, 0 failed, 4 still failing in")
    assert library.index("--strict", "-q").exit_code == 1
    library.check()


# 9 -----------------------------------------------------------------------------------------------------


def test_an_index_in_a_folder_that_does_not_exist(library):
    """Issue 21 item 10: not even the last folder of a mistyped path is made."""
    assert imgidx("index", library.good[0], "--db", library.root / "one.db", *MODEL).exit_code == 0
    for missing in (library.root / "newdir", library.root / "no" / "such"):
        for argv in (("index", library.photos, "--db", missing / "x.db", *MODEL),
                     ("merge", library.root / "one.db", "--into", missing / "x.db")):
            one_line(
                imgidx(*argv), 1,
                f"Error: cannot create the index {missing / 'x.db'}: its folder {missing} does not exist "
                "(imgidx makes none)",
            )
    assert not (library.root / "newdir").exists() and not (library.root / "no").exists()
    (library.root / "newdir").mkdir()
    assert imgidx("index", library.photos, "--db", library.root / "newdir" / "x.db", *MODEL).exit_code == 0
    library.check(library.root / "newdir" / "x.db")


def test_the_default_index_makes_its_folder(library, monkeypatch):
    """The user data folder is nobody's typing mistake: the default index makes it, parents and all."""
    monkeypatch.delenv("IMGIDX_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(library.root / "data" / "home"))
    assert library.index().exit_code == 0  # --db given: the data folder stays unmade
    assert not (library.root / "data").exists()
    result = imgidx("index", library.photos, *MODEL)
    assert (result.exit_code, result.stderr) == (0, "")
    library.check(library.root / "data" / "home" / "imgidx" / "index.db")


# 10 ----------------------------------------------------------------------------------------------------


def bad_files(folder: Path) -> dict[str, str]:
    """Files that must fail (name -> the reason after the path) or be indexed (reason None)."""
    jpeg = (TESTS / "photos" / "chelsea.jpg").read_bytes()
    chelsea = Image.open(io.BytesIO(jpeg))
    outcome = {}
    for cut in (200, len(jpeg) // 2, len(jpeg) - 10):
        (folder / f"cut{cut}.jpg").write_bytes(jpeg[:cut])
    (folder / "empty.jpg").write_bytes(b"")
    outcome["empty.jpg"] = "empty file"
    (folder / "text.png").write_text("hello")
    outcome["text.png"] = "not an image (unknown format)"
    chelsea.convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray(np.linspace(0, 65535, 64 * 64).astype(np.uint16).reshape(64, 64)).save(folder / "deep.tif")
    frames = [Image.new("RGB", (40, 30), c) for c in (RED, BLUE)]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    Image.new("RGB", (1, 1), RED).save(folder / "tiny.png")
    return outcome


def test_bad_image_files_fail_one_line_each_and_odd_good_ones_are_indexed(library):
    odd = library.photos / "odd"
    odd.mkdir()
    failing = bad_files(odd)
    result = library.index()
    assert result.exit_code == 1
    lines = sorted(result.stderr.splitlines())
    for name, reason in failing.items():
        assert f"failed {odd / name}: {reason}" in lines
    cut_lines = [line for line in lines if "/cut" in line]
    assert len(cut_lines) == 3 and all(": corrupt or truncated image (" in line for line in cut_lines)
    assert len(lines) == len(failing) + 3
    good = [odd / n for n in ("cmyk.jpg", "deep.tif", "anim.gif", "tiny.png")]
    library.check(good=[*library.good, *good])


# 11 ----------------------------------------------------------------------------------------------------


@pytest.mark.skipif(os.geteuid() == 0 and not shutil.which("setpriv"), reason="root without setpriv")
def test_an_unreadable_file_and_folder(library):
    locked = paint(library.photos / "locked.jpg", {4: RED})
    private = library.photos / "private"
    paint(private / "inside.jpg", {4: BLUE})
    locked.chmod(0)
    private.chmod(0)
    prefix = DROP_ROOT_READ if os.geteuid() == 0 else []
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{TESTS}"}
    code = (
        "import sys; from fake_backbone import FakeBackbone; import indexer.models as m\n"
        "import fake_detector; fake_detector.install()\n"
        "def load(name, weights=None, precision='auto'):\n"
        "    b = FakeBackbone(); b.name, b.precision = name, precision; return b\n"
        "m.load_model = load\nfrom indexer.cli import main\nsys.argv = ['imgidx', *sys.argv[1:]]\nmain()"
    )
    try:
        run = subprocess.run(
            [*prefix, sys.executable, "-c", code, "index", str(library.photos), "--db", str(library.db), *MODEL],
            capture_output=True, text=True, env=env,
        )
    finally:
        private.chmod(0o755)
        locked.chmod(0o644)
    assert run.returncode == 1
    assert sorted(run.stderr.splitlines()) == [
        f"cannot read folder {private}: Permission denied",
        f"failed {locked}: permission denied",
    ]
    library.check()


# 12 ----------------------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1300k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_full_disk_stops_the_run_in_one_line_and_keeps_what_was_committed(library, small_disk):
    many = library.photos / "many"
    for i in range(300):
        paint(many / f"{i:03}.png", {i % 9: RED}, hw=(64, 96))
    db = small_disk / "index.db"
    result = imgidx("index", library.photos, "--db", db, *MODEL, "--batch", "4")
    assert result.exit_code == 1
    assert result.stderr == f"Error: cannot write to the index {db}: database or disk is full\n"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()
    assert sha256(library.foreign) == library.foreign_sha


# 13 ----------------------------------------------------------------------------------------------------


def test_a_second_writer_is_refused_while_the_first_runs(library):
    import fcntl

    assert library.index().exit_code == 0
    with open(library.db, "rb") as lock:  # what a running `imgidx index` holds: the database file's flock
        fcntl.flock(lock, fcntl.LOCK_EX)
        one_line(library.index(), 1, f"Error: another imgidx index is writing to {library.db}; wait for it to finish")
    assert library.index().exit_code == 0
    assert not Path(f"{library.db}.lock").exists()  # nothing is left beside the index
    library.check()


# 14 ----------------------------------------------------------------------------------------------------

#: `imgidx index` with the fake backbone in a child process, as the Ctrl-C tests run it, but never held
#: (the run after the kills must finish; `kill_and_resume` takes a child that finished first as it is).
KILL_CHILD = INTERRUPTED_CLI.replace("{hold}", "None")


def kill_and_resume(root: Path, photos: Path, db: Path, delays: list[float], model_delay: float = 0.03) -> list[str]:
    """Start `imgidx index`, kill -9 it after each delay in turn, then let one run finish; the summaries."""
    script = KILL_CHILD.format(tests=str(TESTS), root=str(photos), db=str(db), delay=model_delay)
    for delay in delays:
        child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.communicate()
        if child.returncode != -signal.SIGKILL:
            break  # finished before the kill
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    return [done.stdout.strip(), done.stderr.strip(), str(done.returncode)]


@pytest.mark.slow
def test_kill_9_at_a_few_moments_then_resume_loses_nothing(library):
    import random

    batch = library.photos / "batch"
    for i in range(60):
        paint(batch / f"{i:02}.png", {i % 9: RED, (i * 5 + 2) % 9: BLUE}, hw=(64, 96))
    (library.photos / "bad.jpg").write_text("not a photo")
    rng = random.Random(11)
    stdout, stderr, code = kill_and_resume(library.root, library.photos, library.db, [rng.uniform(0.5, 3) for _ in range(3)])
    # A killed run may have committed bad.jpg's failure already; then it is still failing, not failed anew.
    failed = ("1", f"failed {library.photos / 'bad.jpg'}: not an image (unknown format)", ", 1 failed in ")
    still = ("0", STILL_FAILING_NOTE.format(1).strip(), ", 0 failed, 1 still failing in ")
    assert (code, stderr) in (failed[:2], still[:2]), stderr
    assert "internal error" not in stdout + stderr and (failed if code == "1" else still)[2] in stdout
    library.check(good=[*library.good, *sorted(batch.iterdir())])


# 15 ----------------------------------------------------------------------------------------------------


def test_hostile_names_are_escaped_in_the_html_gallery(library):
    evil = library.photos / '<img src=x onerror=alert(1)>"\'&.jpg'
    shutil.copy(library.good[0], evil)
    assert library.index().exit_code == 0
    page = imgidx("query", "fire engine", "--db", library.db, "--html", "-").stdout
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;&quot;&#x27;&amp;.jpg" in page
    library.check(good=[*library.good, evil])


# 16 ----------------------------------------------------------------------------------------------------


def two_roots(library) -> tuple[Path, list[Path], dict[Path, str]]:
    """An index of two folders, ``lib/a`` and ``lib/b``, each with a red photo: their paths and sha256."""
    lib = library.root / "lib"
    photos = [paint(lib / "a" / "p.jpg", {4: RED}), paint(lib / "b" / "q.png", {0: RED})]
    assert imgidx("index", lib / "a", lib / "b", "--db", library.db, *MODEL).exit_code == 0
    return lib, photos, {p: sha256(p) for p in photos}


def test_redact_never_writes_an_original_whatever_force_says(library):
    lib, photos, before = two_roots(library)
    a = lib / "a"
    cases = [
        (lib, f"--out {lib} holds the indexed folder {a}: the copies would replace the originals; write them "
         "elsewhere"),
        (a, f"--out {a} is the indexed folder {a}: the copies would replace the originals; write them elsewhere"),
        (a / "x", f"--out {a / 'x'} lies inside the indexed folder {a}: the copies would be indexed with the "
         "originals; write them elsewhere"),
    ]
    for out, message in cases:
        one_line(imgidx("redact", "fire engine", "--out", out, "--db", library.db, "--force"), 1, f"Error: {message}")
    out = library.root / "public"
    (out / "a").mkdir(parents=True)
    os.link(photos[0], out / "a" / "p.jpg")  # a copy's path that is an original, through a hard link
    os.link(photos[1], out / "a" / ".q.png.imgidx-partial")  # where a copy used to be written first
    one_line(imgidx("redact", "fire engine", "--out", out, "--db", library.db, "--force"), 1,
             f"Error: not writing {out / 'a' / 'p.jpg'}: it is the indexed photo {photos[0]} (a hard link)")
    (out / "a" / "p.jpg").unlink()
    (out / "b").symlink_to(lib / "b")  # a copy's folder that is a folder of originals
    one_line(imgidx("redact", "fire engine", "--out", out, "--db", library.db, "--force"), 1,
             f"Error: not writing {out / 'b' / 'q.png'}: its folder leads out of --out (a symbolic link)")
    (out / "b").unlink()
    assert {p: sha256(p) for p in photos} == before and sorted(lib.rglob("*")) == sorted([a, lib / "b", *photos])
    result = imgidx("redact", "fire engine", "--out", out, "--db", library.db, "--force")
    assert (result.exit_code, result.stdout) == (0, f"wrote 2 copies into {out}; blurred fire engine in 2 photos\n")
    assert {p: sha256(p) for p in photos} == before and (out / "a" / "p.jpg").exists()
    assert (out / "b" / "q.png").exists() and sha256(out / "a" / ".q.png.imgidx-partial") == before[photos[1]]
    library.check(good=[])


@pytest.fixture
def bind_mount(tmp_path):
    """``mount(source, target)`` binds a folder elsewhere, undone after the test; skips where not allowed."""
    mounted = []

    def mount(source: Path, target: Path) -> None:
        target.mkdir(parents=True, exist_ok=True)
        if subprocess.run(["mount", "--bind", str(source), str(target)], capture_output=True).returncode:
            pytest.skip("cannot bind-mount here")
        mounted.append(target)

    yield mount
    for target in reversed(mounted):
        subprocess.run(["umount", str(target)], check=True)


def test_redact_refuses_the_library_through_a_bind_mount(library, bind_mount):
    lib, photos, before = two_roots(library)
    view = library.root / "view"
    bind_mount(lib, view)  # the library under another path: same devices and inodes
    one_line(imgidx("redact", "fire engine", "--out", view, "--db", library.db, "--force"), 1,
             f"Error: --out {view} holds the indexed folder {lib / 'a'}: the copies would replace the originals; "
             "write them elsewhere")
    out = library.root / "public"
    bind_mount(lib / "b", out / "b")  # one folder of originals inside --out
    one_line(imgidx("redact", "fire engine", "--out", out, "--db", library.db, "--force"), 1,
             f"Error: not writing {out / 'b' / 'q.png'}: {out / 'b'} is a folder of the indexed photos (a bind mount)")
    assert {p: sha256(p) for p in photos} == before and not (out / "a").exists()


# 17 ----------------------------------------------------------------------------------------------------


def test_two_indexed_folders_of_the_same_name_keep_their_copies_apart(library):
    roots = [library.root / "x" / "photos", library.root / "y" / "photos", library.root / "z" / "Photos"]
    photos = [paint(root / "p.png", {cell: RED}) for cell, root in enumerate(roots)]
    assert imgidx("index", *roots, "--db", library.db, *MODEL).exit_code == 0
    out = library.root / "public"
    result = imgidx("redact", "fire engine", "--out", out, "--db", library.db)
    assert (result.exit_code, result.stdout) == (0, f"wrote 3 copies into {out}; blurred fire engine in 3 photos\n")
    copies = [out / "photos" / "p.png", out / "photos-2" / "p.png", out / "Photos-3" / "p.png"]
    assert sorted(out.rglob("*.png")) == sorted(copies)
    originals = [np.asarray(Image.open(photo), int) for photo in photos]
    for number, copy in enumerate(copies):  # each copy is nearest its own photo (the red cell blurred)
        written = np.asarray(Image.open(copy), int)
        assert np.argmin([np.abs(written - original).mean() for original in originals]) == number


# 18 ----------------------------------------------------------------------------------------------------


XMP_WITH_GPS = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description xmlns:exif="http://ns.adobe.com/exif/1.0/" exif:GPSLatitude="48,51.4N" '
    b'exif:GPSLongitude="2,21.1E"/></rdf:RDF></x:xmpmeta>'
)
MAKER_NOTE = b"Apple iOS\x00location 48.8567N 2.3508E"
COMMENT = b"Taken at 12 Rue de Rivoli"
GPS_IFD, EXIF_IFD, MAKER_NOTE_TAG, MAKE_TAG = 0x8825, 0x8769, 0x927C, 0x010F


def photo_with_location(path: Path) -> Path:
    """A red JPEG with a GPS block, XMP holding the position, maker notes and a comment holding it too."""
    exif = Image.Exif()
    exif[MAKE_TAG] = "imgidx test camera"
    gps = exif.get_ifd(GPS_IFD)
    gps[1], gps[2], gps[3], gps[4] = "N", (48.0, 51.0, 24.0), "E", (2.0, 21.0, 3.0)
    exif.get_ifd(EXIF_IFD)[MAKER_NOTE_TAG] = MAKER_NOTE
    pixels = np.full((120, 160, 3), 128, np.uint8)
    pixels[40:80, 53:106] = RED
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, "JPEG", quality=95, exif=exif, xmp=XMP_WITH_GPS, comment=COMMENT)
    return path


def test_redacted_copies_leave_the_location_out_unless_keep_gps(library):
    photo = photo_with_location(library.photos / "trip.jpg")
    assert library.index().exit_code == 0
    for flags, kept in (((), False), (("--strip-gps",), False), (("--keep-gps",), True)):
        out = library.root / f"public{'-'.join(flags)}"
        result = imgidx("redact", "fire engine", "--out", out, "--db", library.db, *flags)
        assert result.exit_code == 0, result.output
        data = (out / "trip.jpg").read_bytes()
        with Image.open(out / "trip.jpg") as copy:
            exif = copy.getexif()
            assert exif[MAKE_TAG] == "imgidx test camera"  # the rest of EXIF is kept
            assert (GPS_IFD in exif, MAKER_NOTE_TAG in exif.get_ifd(EXIF_IFD), "xmp" in copy.info) == (kept,) * 3
        assert (b"GPSLatitude" in data, MAKER_NOTE in data, COMMENT in data) == (kept,) * 3, flags
    assert b"GPSLatitude" in photo.read_bytes()  # the original keeps everything
    library.check(good=[*library.good, photo])


# 19 ----------------------------------------------------------------------------------------------------


def run_module(*argv, stdout=None, closed_stdout: bool = False) -> subprocess.CompletedProcess:
    """``python -m indexer ARGV`` in a process of its own, its output to ``stdout`` or closed."""
    command = [sys.executable, "-m", "indexer", *map(str, argv)]
    if closed_stdout:
        command = ["sh", "-c", 'exec "$@" >&-', "sh", *command]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(command, stdout=stdout, stderr=subprocess.PIPE, text=True, env=env)


def test_output_to_a_full_device_or_a_closed_stdout_is_one_line_and_exit_1(library):
    assert library.index().exit_code == 0
    full = "Error: cannot write the output: No space left on device\n"
    closed = "Error: cannot write the output: standard output is closed\n"
    commands = [
        ("stats", "--db", library.db), ("query", "fire engine", "--db", library.db),
        ("query", "fire engine", "--db", library.db, "--paths", "-0"), ("show", library.good[0], "--db", library.db),
        ("labels", "cat"), ("--help",), ("query", "--help"), ("--version",),
        ("merge", library.db, "--into", library.root / "merged.db"),
    ]
    with open("/dev/full", "w") as device:
        for argv in commands:
            run = run_module(*argv, stdout=device)
            assert (run.returncode, run.stderr) == (1, full), argv
            run = run_module(*argv, closed_stdout=True)
            assert (run.returncode, run.stderr) == (1, closed), argv
    with sqlite3.connect(library.root / "merged.db") as conn:  # its work was done; only the summary was lost
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()
    library.check()


# 20 ----------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_damaged_cached_openvino_model_stops_the_run_before_anything_is_stored(library, tmp_path, monkeypatch,
                                                                                   lite0_openvino_fp32):
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    from indexer.models.weights import CACHE_ENV, cache_dir

    shutil.copytree(cache_dir() / lite0_openvino_fp32, tmp_path / "cache" / lite0_openvino_fp32)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))  # a model of its own to damage, as built
    lite0 = ["--model", "efficientnet-lite0", "--runtime", "openvino", "--precision", "fp32", "--size", "128"]
    chelsea = TESTS / "photos" / "chelsea.jpg"
    first = imgidx("classify", chelsea, *lite0)
    assert first.exit_code == 0 and "Egyptian cat (285)" in first.stdout, first.output
    (folder,) = (tmp_path / "cache" / "openvino").glob("efficientnet-lite0-*/fp32")
    weights = folder / "model.bin"
    stat = weights.stat()
    with open(weights, "r+b") as file:  # one byte flipped in the middle, the size and mtime as they were
        file.seek(stat.st_size // 2)
        byte = file.read(1)
        file.seek(stat.st_size // 2)
        file.write(bytes([byte[0] ^ 0x10]))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    damaged = (f"Error: cannot read the cached OpenVINO model {folder} (model.bin changed since it was built: its "
               "sha256 is not the one recorded); delete that folder to build it again")
    one_line(imgidx("classify", chelsea, *lite0), 1, damaged)
    one_line(imgidx("index", library.photos, "--db", library.db, *lite0), 1, damaged)
    with sqlite3.connect(library.db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM image_labels").fetchone() == (0,)  # nothing stored
    conn.close()
    with open(weights, "r+b") as file:
        file.seek(stat.st_size // 2)
        file.write(byte)
    built = json.loads((folder / "built.json").read_text())
    (folder / "built.json").write_text(json.dumps({k: v for k, v in built.items() if k != "sha256"}))
    older = imgidx("classify", chelsea, *lite0)  # built by an imgidx that recorded no digests: recorded now
    assert older.exit_code == 0 and older.stderr == (
        f"note: recorded the sha256 of the cached OpenVINO model {folder}, built by an earlier imgidx\n"
    )
    assert json.loads((folder / "built.json").read_text())["sha256"] == built["sha256"]


# 21 ----------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() == 0 and not shutil.which("setpriv"), reason="root without setpriv")
def test_a_cache_folder_that_cannot_be_written_is_one_line_and_a_built_model_is_still_read(library, tmp_path,
                                                                                            lite0_openvino_fp32):
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    from indexer.models.weights import CACHE_ENV, cache_dir

    assert library.index().exit_code == 0
    lite0 = ["--model", "efficientnet-lite0", "--runtime", "openvino", "--precision", "fp32", "--size", "128"]
    chelsea = TESTS / "photos" / "chelsea.jpg"
    prefix = DROP_ROOT_READ if os.geteuid() == 0 else []

    def run(cache: Path, *argv) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONPATH": str(ROOT), CACHE_ENV: str(cache)}
        command = [*prefix, sys.executable, "-m", "indexer", *map(str, argv)]
        return subprocess.run(command, capture_output=True, text=True, env=env)

    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    message = (f"Error: cannot write imgidx's cache folder {locked}: Permission denied ({locked / 'openvino'}); make "
               f"it writable or set {CACHE_ENV} to a folder that is\n")
    for argv in (("classify", chelsea), ("index", library.photos, "--db", library.root / "new.db"),
                 ("runtime", "check", library.photos)):
        done = run(locked, *argv, *(lite0 if argv[0] != "runtime" else lite0[:2] + lite0[-2:]))
        assert (done.returncode, done.stderr) == (1, message), argv
    done = run(locked, "weights", "fetch", "vgg16")  # refused before any download
    assert (done.returncode, done.stderr) == (1, message.replace(str(locked / "openvino"), str(locked / "vgg16")))
    built = tmp_path / "built"  # the converted model (`lite0_openvino_fp32`), then the cache made read-only
    shutil.copytree(cache_dir() / lite0_openvino_fp32, built / lite0_openvino_fp32)
    assert run(built, "classify", chelsea, *lite0).returncode == 0
    for path in (built, *built.rglob("*")):
        path.chmod(path.stat().st_mode & ~0o222)
    done = run(built, "classify", chelsea, *lite0)
    assert (done.returncode, done.stderr) == (0, "") and "Egyptian cat (285)" in done.stdout


# 22 ----------------------------------------------------------------------------------------------------


def test_a_working_size_above_the_largest_is_a_usage_error_before_anything_is_loaded(library, models):  # noqa: F811
    from indexer.models import MAX_WORKING_SIZE

    photo = library.good[0]
    too_big = [
        ("index", library.photos, "--db", library.db), ("classify", photo), ("segment", photo, "--text"),
        ("runtime", "calibrate", library.photos), ("runtime", "check", library.photos),
    ]
    for argv in too_big:
        for size in (MAX_WORKING_SIZE + 1, 99999):
            result = imgidx(*argv, "--size", size)
            assert result.exit_code == 2 and result.stderr.endswith(
                f"Error: Invalid value for '--size': {size} is above {MAX_WORKING_SIZE}, the largest working size (a "
                "batch at a larger one needs more memory than a workstation has)\n"
            ), result.output
    assert models == [] and not library.db.exists()
    assert imgidx("index", library.photos, "--db", library.db, *MODEL[:-1], MAX_WORKING_SIZE).exit_code == 0
    library.check()

# Issue 21 (third round) ----------------------------------------------------------------------------------


def test_postgresql_read_only_commands_cannot_write(library, pg_url, monkeypatch):
    """Item 13: query, show, stats and serve open PostgreSQL sessions that are read-only from their start,
    as SQLite's are (mode=ro): a write through the very engine each command used fails."""
    import sqlalchemy as sa

    from indexer import store
    from serve.app import Index

    assert imgidx("index", library.photos, "--db", pg_url, *MODEL).exit_code == 0
    made = []
    real_create_engine = store.create_engine

    def recorded(db, readonly=False):
        made.append(real_create_engine(db, readonly=readonly))
        return made[-1]

    monkeypatch.setattr(store.opening, "create_engine", recorded)
    for argv in (("query", "fire engine"), ("show", library.good[0]), ("stats",)):
        made.clear()
        result = imgidx(*argv, "--db", pg_url)
        assert (result.exit_code, result.stderr) == (0, ""), result.output
        assert len(made) == 1
        with pytest.raises(sa.exc.DBAPIError, match="cannot execute DELETE in a read-only transaction"):
            with made[0].begin() as conn:
                conn.execute(sa.text("DELETE FROM images"))
        made[0].dispose()
    index = Index(pg_url, thumbnail_folder=library.root / "thumbs")
    try:
        with pytest.raises(sa.exc.DBAPIError, match="cannot execute UPDATE in a read-only transaction"):
            with index.engine.begin() as conn:
                conn.execute(sa.text("UPDATE meta SET value = 'x'"))
        with index.engine.connect() as conn:  # the session's own default, whatever transaction comes next
            assert conn.execute(sa.text("SHOW default_transaction_read_only")).scalar_one() == "on"
    finally:
        index.close()
    monkeypatch.undo()
    assert imgidx("index", library.photos, "--db", pg_url, *MODEL).stdout.startswith("0 indexed, 2 unchanged")


def test_a_second_writer_through_a_hard_link_or_a_symlink_is_refused(library):
    """Item 11: the lock is the database file's own (its inode), not its name's. Through another name SQLite
    keeps another WAL, so two writers would each commit into their own: one is refused instead."""
    from indexer import pipeline, store

    assert library.index().exit_code == 0
    assert imgidx("index", library.good[0], "--db", library.root / "one.db", *MODEL).exit_code == 0
    hard = library.root / "other" / "hard.db"
    hard.parent.mkdir()
    os.link(library.db, hard)
    soft = library.root / "soft.db"
    soft.symlink_to(library.db)
    engine = store.open_index(str(library.db))
    with pipeline.writer_lock(engine):  # a run writing through the first name
        for db, shown in ((hard, hard), (soft, library.db), (f"sqlite:///{soft}", soft)):
            one_line(
                imgidx("index", library.photos, "--db", db, *MODEL), 1,
                f"Error: another imgidx index is writing to {shown}; wait for it to finish",
            )
            one_line(
                imgidx("merge", library.root / "one.db", "--into", db), 1,
                f"Error: another imgidx index is writing to {shown}; wait for it to finish",
            )
    engine.dispose()
    paint(library.photos / "new.jpg", {4: BLUE})
    result = imgidx("index", library.photos, "--db", hard, *MODEL)
    assert result.stdout.startswith("1 indexed, 2 unchanged")
    assert not Path(f"{hard}-wal").exists() and os.path.samefile(hard, library.db)
    library.check(good=[*library.good, library.photos / "new.jpg"])


def leave_a_wal(db: Path, statements: list[str]) -> None:
    """Commit ``statements`` into ``db``'s WAL and die before folding it into the file, as a killed writer
    does; then drop the shared-memory file, as a copy or a reboot does."""
    code = (
        "import os, sqlite3, sys\n"
        "conn = sqlite3.connect(sys.argv[1])\n"
        "conn.execute('PRAGMA wal_autocheckpoint=0')\n"
        "for statement in sys.argv[2:]:\n"
        "    conn.execute(statement)\n"
        "conn.commit()\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(db), *statements], check=True)
    Path(f"{db}-shm").unlink()
    assert Path(f"{db}-wal").stat().st_size > 0


def read_only_folder_run(folder: Path, *argv) -> subprocess.CompletedProcess:
    """``imgidx ARGV`` in a child that cannot write ``folder`` (root drops its capabilities)."""
    prefix = DROP_ROOT_READ if os.geteuid() == 0 else []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    folder.chmod(0o555)
    try:
        return subprocess.run([*prefix, sys.executable, "-m", "indexer", *map(str, argv)],
                              capture_output=True, text=True, env=env)
    finally:
        folder.chmod(0o755)


@pytest.mark.skipif(os.geteuid() == 0 and not shutil.which("setpriv"), reason="root without setpriv")
def test_a_wal_left_in_a_read_only_folder_is_read_not_ignored(library):
    """Item 6: a photo deleted in the WAL no longer matches, is no longer counted, and is not shown; the
    folder is left as it was. A WAL that cannot be read is one line saying what to do."""
    assert library.index().exit_code == 0
    gone = names.stored(str(library.good[0]))
    leave_a_wal(library.db, [
        f"DELETE FROM {table} WHERE image_id = (SELECT image_id FROM images WHERE path = '{gone}')"
        for table in ("cell_labels", "image_labels", "boxes", "images")
    ])
    before = {p.name: sha256(p) for p in library.root.iterdir() if p.is_file()}
    stats = read_only_folder_run(library.root, "stats", "--db", library.db)
    assert (stats.returncode, stats.stderr) == (0, "") and "images: 1 (1 labelled" in stats.stdout
    query = read_only_folder_run(library.root, "query", "fire engine", "--paths", "--db", library.db)
    assert (query.returncode, query.stdout) == (0, "")
    show = read_only_folder_run(library.root, "show", library.good[0], "--db", library.db)
    assert (show.returncode, show.stderr) == (1, f"Error: {library.good[0]} is not in the index; add it with: imgidx index FOLDER\n")
    kept = read_only_folder_run(library.root, "query", "swimming trunks", "--paths", "--db", library.db)
    assert (kept.returncode, kept.stdout) == (0, f"{library.good[1]}\n"), kept.stderr
    assert {p.name: sha256(p) for p in library.root.iterdir() if p.is_file()} == before

    Path(f"{library.db}-wal").chmod(0)
    refused = read_only_folder_run(library.root, "stats", "--db", library.db)
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr == (
        f"Error: cannot read {library.db}-wal, which holds changes to the index not yet in index.db: Permission "
        f"denied; let imgidx fold them in where the folder is writable: imgidx index FOLDER --db {library.db}\n"
    )
    Path(f"{library.db}-wal").chmod(0o644)
    assert library.index().stdout.startswith("1 indexed, 1 unchanged")  # writable again: the WAL folded in
    library.check()


def damaged_line(db, what: str) -> str:
    return f"Error: {db} is damaged: {what}; rebuild it: imgidx index FOLDER --db {db} --reindex"


def sql(db: Path, *statements: str) -> None:
    """Change ``db`` behind imgidx's back, as another program (or a bad disk) might; the schema's checks off."""
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA ignore_check_constraints = ON")
        for statement in statements:
            conn.execute(statement)
    conn.close()


@pytest.mark.parametrize("table", ["images", "cell_labels", "boxes"])
def test_a_dropped_table_is_one_line_naming_it_and_reindex_rebuilds_it(library, table):
    """Item 7: every command says the index is damaged, what is missing and the command that rebuilds it;
    that command does, in place."""
    assert library.index().exit_code == 0
    sql(library.db, f"DROP TABLE {table}")
    for argv in (("stats",), ("query", "fire engine"), ("show", library.good[0]), ("index", library.photos, *MODEL),
                 ("redact", "face", "--out", library.root / "out"), ("serve", "--port", "0")):
        one_line(imgidx(*argv, "--db", library.db), 1, damaged_line(library.db, f"its table {table} is missing"))
    result = library.index("--reindex")
    assert (result.exit_code, result.stderr) == (0, "") and result.stdout.startswith("2 indexed, 0 unchanged")
    assert imgidx("query", "fire engine", "--paths", "--db", library.db).stdout == f"{library.good[0]}\n"
    library.check()


@pytest.mark.parametrize("change", ["ALTER TABLE images DROP COLUMN width", "DROP TABLE classes"])
def test_a_lost_column_or_class_table_is_mended_by_reindex_too(library, change):
    """Tables referring to one made again are made again with it (no row may point into an empty table)."""
    assert library.index().exit_code == 0
    sql(library.db, change)
    assert imgidx("query", "fire engine", "--db", library.db).exit_code == 1
    result = library.index("--reindex")
    assert (result.exit_code, result.stderr) == (0, "") and result.stdout.startswith("2 indexed, 0 unchanged")
    with sqlite3.connect(library.db) as conn:
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute("SELECT COUNT(*) FROM classes WHERE class_id < 100000").fetchone() == (1081,)  # not compounds
    conn.close()
    assert imgidx("query", "fire engine", "--paths", "--db", library.db).stdout == f"{library.good[0]}\n"
    library.check()


@pytest.mark.parametrize("change, what", [
    ("UPDATE cell_labels SET cell = 80 WHERE rowid = (SELECT MIN(rowid) FROM cell_labels WHERE class_id = 555)",
     "cell_labels.cell of {photo} is 80, not a cell (0 to 8)"),
    ("UPDATE cell_labels SET score = 'abc' WHERE class_id = 555", "cell_labels.score of {photo} is 'abc', not a number"),
    ("UPDATE image_labels SET share = 'x' WHERE class_id = 555", "image_labels.share of {photo} is 'x', not a number"),
])
def test_values_outside_the_schema_are_one_line_and_reindex_replaces_them(library, change, what):
    assert library.index().exit_code == 0
    sql(library.db, change)
    message = damaged_line(library.db, what.format(photo=library.good[0]))
    one_line(imgidx("show", library.good[0], "--db", library.db), 1, message)
    one_line(imgidx("show", library.good[0], "--db", library.db, "--json"), 1, message)
    assert library.index("--reindex").exit_code == 0
    assert imgidx("show", library.good[0], "--db", library.db).exit_code == 0
    library.check()


def test_a_box_that_is_not_a_number_is_one_line_in_the_gallery(library):
    assert library.index().exit_code == 0
    sql(library.db, "DELETE FROM boxes WHERE image_id = 1", "INSERT INTO boxes VALUES (1, 0, 1000, 'abc', 0, 10, 10, 0.9)")
    image_id = sqlite3.connect(library.db).execute("SELECT MIN(image_id) FROM images").fetchone()[0]
    assert image_id == 1
    one_line(imgidx("query", "fire engine OR face", "--html", "-", "--db", library.db), 1,
             damaged_line(library.db, "boxes.x0 of image 1 is 'abc', not a number"))


def test_a_table_dropped_while_serving_is_a_503_page(library, tmp_path):
    """The server opened a whole index; a table dropped (or a value spoilt) under it afterwards makes each
    page say so with status 503, never 500 with the driver's SQL."""
    import warnings

    with warnings.catch_warnings():  # as in test_serve: Starlette would rather have httpx2, which does the same
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
        from starlette.testclient import TestClient

    from serve.app import Index, create_app

    assert library.index().exit_code == 0
    index = Index(str(library.db), thumbnail_folder=tmp_path / "thumbs")
    with TestClient(create_app(index), base_url="http://localhost") as client:
        assert client.get("/", params={"q": "fire engine"}).status_code == 200
        sql(library.db, "UPDATE cell_labels SET cell = 80 WHERE rowid = (SELECT MIN(rowid) FROM cell_labels)")
        page = client.get("/photo/1")
        line = damaged_line(library.db, f"cell_labels.cell of {library.good[0]} is 80, not a cell (0 to 8)")
        assert page.status_code == 503 and f'<p class="message">{line.removeprefix("Error: ")}</p>' in page.text
        sql(library.db, "DROP TABLE cell_labels")
        line = damaged_line(library.db, "a table is missing (no such table: cell_labels)").removeprefix("Error: ")
        for url, params in (("/", {"q": "fire engine"}), ("/results", {"q": "fire engine"}), ("/photo/1", {}),
                            ("/overview", {})):
            page = client.get(url, params=params)
            assert page.status_code == 503, url
            assert line in page.text and "SELECT" not in page.text and "internal error" not in page.text, url
    index.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_table_dropped_after_opening_is_damage_not_an_internal_error(library, backend, request):
    """The check at opening cannot see what happens after it: every statement that meets a missing table
    says so, through the engine every command gets (`store.opening._report_damage`), on either database."""
    import sqlalchemy as sa

    from indexer import store
    from indexer.errors import DamagedIndexError

    db = str(library.db) if backend == "sqlite" else request.getfixturevalue("pg_url")
    assert imgidx("index", library.photos, "--db", db, *MODEL).exit_code == 0
    engine = store.open_index(db, create=False, readonly=True)
    writer = store.open_index(db)
    with writer.begin() as conn:
        conn.execute(sa.text("DROP TABLE image_labels"))
    writer.dispose()
    missing = "(no such table: image_labels)" if backend == "sqlite" else '(relation "image_labels" does not exist)'
    with pytest.raises(DamagedIndexError) as raised, engine.connect() as conn:
        store.index_stats(conn)
    assert raised.value.shown() == damaged_line(store.shown(db), f"a table is missing {missing}").removeprefix("Error: ")
    engine.dispose()
    one_line(imgidx("stats", "--db", db), 1, damaged_line(store.shown(db), "its table image_labels is missing"))


def test_a_corrupt_page_is_one_line_saying_to_build_the_index_again(library):
    """A page of the file itself spoilt (a bad disk): --reindex cannot mend that, a new build can."""
    assert library.index().exit_code == 0
    with sqlite3.connect(library.db) as conn:
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'cell_labels'").fetchone()[0]
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with open(library.db, "r+b") as file:
        file.seek((root - 1) * page_size)
        file.write(b"\xff" * page_size)
    one_line(
        imgidx("show", library.good[0], "--db", library.db), 1,
        f"Error: {library.db} is damaged: its file is corrupt (database disk image is malformed); move it aside "
        f"and build it again: imgidx index FOLDER --db {library.db}",
    )
