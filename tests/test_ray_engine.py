"""`imgidx index --engine ray`: real Ray (a local instance, and a `ray start` cluster) and real EfficientNet-Lite0.

The reference for every comparison is the local engine run on the same files with the same settings.
"""

import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from index_dump import differences, dump_index, same_answers
from indexer import ignore, pipeline, store
from indexer.cli import cli

pytest.importorskip("ray", reason="the ray extra is not installed")
pytestmark = pytest.mark.slow

PHOTOS = Path(__file__).parent / "photos"
#: (scale, mirrored) variants of each photo: distinct contents in several working shapes.
VARIANTS = [(1.0, False), (1.5, True), (0.8, False), (2.0, True)]
MODEL = "efficientnet-lite0"
QUERIES = ["cat", "cat in center", "espresso top-left OR moped", "NOT cat", "vehicle above cat", "cat left of espresso"]


def make_photos(folder: Path) -> int:
    """Real photos in three subfolders, each at several sizes, some mirrored."""
    count = 0
    for photo in sorted(PHOTOS.glob("*.jpg")):
        image = Image.open(photo).convert("RGB")
        for k, (scale, mirrored) in enumerate(VARIANTS):
            variant = image.resize((round(image.width * scale), round(image.height * scale)))
            if mirrored:
                variant = variant.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            target = folder / f"part{k % 3}" / f"{photo.stem}-{k}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            variant.save(target, quality=90)
            count += 1
    return count


def imgidx(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    """The CLI in its own process, as a user runs it (Ray starts and stops with it)."""
    return subprocess.run(
        [sys.executable, "-m", "indexer", *argv], capture_output=True, text=True, timeout=300, **kwargs
    )


def index_locally(folder: Path, db: Path, lite0) -> pipeline.Summary:
    """The local engine with the real detectors, as `imgidx index` runs it (the suite's default object
    detector is the fake one)."""
    from indexer import objects

    engine = store.open_index(str(db))
    try:
        return pipeline.index(engine, [folder], lambda settings: lite0, model=MODEL, precision=lite0.precision,
                              runtime=getattr(lite0, "runtime", "tf"),
                              load_object_detector=objects.Detectors(threads=pipeline.OBJECT_DETECTOR_THREADS))
    finally:
        engine.dispose()


def answers(url: str) -> dict[str, list[tuple[str, float]]]:
    from query.search import search

    engine = store.open_index(url, create=False)
    try:
        return {q: [(m.path, m.score) for m in search(engine, q, limit=None).matches] for q in QUERIES}
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def lite0():
    """The network as the CLI loads it by default: OpenVINO int8 where `--runtime auto` picks it."""
    from indexer import runtime
    from indexer.models import DEFAULT_WORKING_SIZE

    return runtime.load(MODEL, size=DEFAULT_WORKING_SIZE)


@pytest.fixture(scope="module")
def library(tmp_path_factory, lite0):
    """The photo folder and the local engine's index of it, built once."""
    root = tmp_path_factory.mktemp("ray")
    folder = root / "photos"
    count = make_photos(folder)
    reference = root / "local.db"
    summary = index_locally(folder, reference, lite0)
    assert (summary.indexed, summary.failed) == (count, 0)
    return folder, reference, count


def test_two_ray_workers_store_the_same_rows_as_the_local_engine(library, tmp_path, lite0):
    pristine, _, count = library
    folder = tmp_path / "photos"
    shutil.copytree(pristine, folder)
    db, local_db = tmp_path / "ray.db", tmp_path / "local.db"
    index_locally(folder, local_db, lite0)
    result = imgidx("index", str(folder), "--db", str(db), "--model", MODEL, "--engine", "ray", "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith(f"{count} indexed, 0 unchanged, 0 moved, 0 pruned, 0 failed in ")
    assert differences(dump_index(str(db)), dump_index(str(local_db))) == []

    # Incremental on Ray too: a move, a rewritten photo, two bad files and a deletion, same as locally.
    shutil.move(folder / "part0" / "chelsea-0.jpg", folder / "part1" / "chelsea-moved.jpg")
    Image.open(PHOTOS / "coffee.jpg").rotate(90, expand=True).save(folder / "part2" / "coffee-2.jpg", quality=85)
    (folder / "part2" / "empty.jpg").write_bytes(b"")
    (folder / "part2" / "cut.jpg").write_bytes((PHOTOS / "rocket.jpg").read_bytes()[:2000])
    (folder / "part1" / "astronaut-1.jpg").unlink()
    result = imgidx("index", str(folder), "--db", str(db), "--engine", "ray", "--workers", "2")
    local = index_locally(folder, local_db, lite0)
    assert result.returncode == 1, result.stderr
    assert result.stdout.startswith(f"1 indexed, {count - 3} unchanged, 1 moved, 1 pruned, 2 failed in ")
    assert (local.indexed, local.moved, local.pruned, local.failed) == (1, 1, 1, 2)
    assert result.stderr.splitlines() == [
        f"failed {folder / 'part2' / 'cut.jpg'}: corrupt or truncated image (image file is truncated "
        "(13 bytes not processed))",
        f"failed {folder / 'part2' / 'empty.jpg'}: empty file",
    ]
    assert differences(dump_index(str(db)), dump_index(str(local_db))) == []


def _committed(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM images").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_an_unchanged_folder_does_not_start_ray(library, tmp_path):
    import ray

    folder, reference, count = library
    db = tmp_path / "again.db"
    shutil.copy(reference, db)
    engine = store.open_index(str(db))
    summary = pipeline.index(engine, [folder], lambda settings: pytest.fail("no model"), runner="ray")
    engine.dispose()
    assert (summary.indexed, summary.unchanged) == (0, count)
    assert not ray.is_initialized()


def test_without_ray_the_engine_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    (tmp_path / "photos").mkdir()
    result = CliRunner().invoke(cli, ["index", str(tmp_path / "photos"), "--db", str(tmp_path / "i.db"),
                                      "--engine", "ray"])
    assert (result.exit_code, result.output) == (1, "Error: the ray engine needs Ray: pip install 'imgidx[ray]'\n")


def test_address_needs_the_ray_engine(tmp_path):
    (tmp_path / "photos").mkdir()
    result = CliRunner().invoke(cli, ["index", str(tmp_path / "photos"), "--address", "auto"])
    assert result.exit_code == 2
    assert result.output.endswith("Error: --address needs --engine ray\n")


def test_a_model_error_on_a_ray_worker_reads_as_it_does_locally(library, tmp_path):
    folder, _, _ = library
    missing = tmp_path / "vgg_16.ckpt"
    argv = ["index", str(folder), "--model", "vgg16", "--weights", str(missing), "-q"]
    local = imgidx(*argv, "--db", str(tmp_path / "local.db"))
    on_ray = imgidx(*argv, "--db", str(tmp_path / "ray.db"), "--engine", "ray")
    assert local.returncode == 1 and local.stderr.startswith(f"Error: --weights {missing}: no such file; ")
    assert (on_ray.returncode, on_ray.stderr) == (local.returncode, local.stderr)


def test_listing_on_a_cluster_finds_what_the_local_walk_finds(tmp_path):
    """Subfolders listed by Ray tasks, then symlinks followed: the same files in the same order."""
    import ray

    from indexer import ray_engine

    root = tmp_path / "tree"
    for folder in ("a/deep/er", "b", "c/.hidden", "d"):
        (root / folder).mkdir(parents=True)
    for name in ("top.jpg", "a/1.jpg", "a/deep/2.png", "a/deep/er/3.jpg", "b/4.JPG", "b/notes.txt",
                 "c/.hidden/5.jpg", "c/6.webp", "d/7.jpg"):
        (root / name).write_bytes(b"x")
    (root / "b" / "to-a").symlink_to(root / "a")             # a second way into another task's subtree
    (root / "d" / "loop").symlink_to(root / "d")             # a loop
    (root / "outside").symlink_to(tmp_path / "elsewhere")    # dangling
    # Ray already running here stands in for a cluster: the session lists on it as on one it joined.
    session = ray_engine.Session(ray_engine.Cluster(address="this-test", workers=1))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    (root / ".imgidxignore").write_text("deep/\n")
    rules = ignore.for_roots([str(root)], ["4.JPG", "d/*"])
    try:
        listed = session.walk([str(root)], exclude=set())
        listed_with_rules = session.walk([str(root)], exclude=set(), rules=rules)
    finally:
        ray.shutdown()
    expected = pipeline.walk([str(root)])
    assert listed.files == expected.files
    # The exclusions hold in the subtrees the Ray tasks list, as in the local walk.
    assert listed_with_rules.files == pipeline.walk([str(root)], rules=rules).files
    assert [f.path for f in listed_with_rules.files] == [str(root / name) for name in ("top.jpg", "a/1.jpg", "c/6.webp")]
    assert [f.path for f in listed.files] == [
        str(root / name) for name in ("top.jpg", "a/1.jpg", "a/deep/2.png", "a/deep/er/3.jpg", "b/4.JPG", "c/6.webp",
                                      "d/7.jpg")
    ]


# --- On a cluster that `ray start` started (`cluster`); after every test that starts Ray itself ---------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def on_cluster() -> dict[str, str]:
    """The environment of a client of `cluster`: `ray start` turns on Ray's token authentication, and a client
    sends the token only when asked to."""
    return {**os.environ, "RAY_AUTH_MODE": "token"}


@pytest.fixture(scope="module")
def cluster():
    """A `ray start` cluster on this machine, its address, for the tests below it, which join it (`--address`)
    rather than start a Ray instance each: a start took 7-15 s of each test. While it runs, a local start would
    join it (`ray.init` finds the machine's last `ray start`), so the tests that start their own come first in
    this file."""
    ray_bin = Path(sys.executable).parent / "ray"
    port = _free_port()
    start = subprocess.run(
        [str(ray_bin), "start", "--head", "--port", str(port), "--num-cpus", "3", "--include-dashboard", "false",
         "--disable-usage-stats"],
        capture_output=True, text=True, timeout=120,
    )
    assert start.returncode == 0, start.stderr
    try:
        address = re.search(r"--address='([^']+)'", start.stdout).group(1)
        assert address.endswith(f":{port}")
        yield address
    finally:
        subprocess.run([str(ray_bin), "stop", "--force"], capture_output=True, timeout=120)


def test_two_ray_workers_into_postgresql_answer_like_the_local_sqlite_index(library, pg_url, cluster):
    folder, reference, count = library
    result = imgidx("index", str(folder), "--db", pg_url, "--model", MODEL, "--engine", "ray", "--workers", "2",
                    "--address", cluster, env=on_cluster())
    assert result.returncode == 0, result.stderr
    assert differences(dump_index(pg_url), dump_index(str(reference))) == []
    expected = answers(str(reference))
    assert all(expected[q] for q in ("cat", "cat in center"))
    assert same_answers(answers(pg_url), expected)


def test_a_ray_run_killed_half_way_resumes_without_redoing_finished_images(library, tmp_path, cluster):
    """On the suite's cluster (`cluster`): the driver is killed, its actors die with it, and a second run
    resumes."""
    folder, reference, count = library
    db = tmp_path / "killed.db"
    argv = ["index", str(folder), "--db", str(db), "--model", MODEL, "--engine", "ray", "--workers", "2", "--batch", "1",
            "--address", cluster]
    run = subprocess.Popen(
        [sys.executable, "-m", "indexer", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, env=on_cluster(),
    )
    try:
        deadline = time.monotonic() + 240
        while _committed(db) < 3 and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        os.killpg(run.pid, signal.SIGKILL)  # the driver; the cluster ends its actors
        run.wait()
    committed = _committed(db)
    assert 3 <= committed < count, "the run was not caught half-way"
    with sqlite3.connect(db) as conn:
        paths = conn.execute("SELECT count(*), count(DISTINCT path) FROM images").fetchone()
        unlabelled = conn.execute(
            "SELECT count(*) FROM images WHERE image_id NOT IN (SELECT image_id FROM cell_labels)"
        ).fetchone()[0]
    assert paths == (committed, committed) and unlabelled == 0

    result = imgidx(*argv, env=on_cluster())
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{count - committed} indexed, {committed} unchanged, 0 moved, ")
    assert differences(dump_index(str(db)), dump_index(str(reference))) == []


def test_joins_an_existing_ray_cluster_given_its_address(library, tmp_path, cluster):
    folder, reference, count = library
    db = tmp_path / "cluster.db"
    result = imgidx("index", str(folder), "--db", str(db), "--model", MODEL, "--engine", "ray", "--address", cluster,
                    env=on_cluster())
    assert result.returncode == 0, result.stderr
    assert differences(dump_index(str(db)), dump_index(str(reference))) == []
