"""Fixtures shared across test modules, among them real PostgreSQL databases for the index tests."""

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))

import vgg_fixture  # noqa: E402

#: A PostgreSQL server URL (its superuser, any database) the tests may create databases on.
PG_ENV = "IMGIDX_TEST_PG"
#: Where Debian's postgresql packages put the server programs, one folder per major version.
PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
#: The two databases an index can live in; `index_url` runs a test once on each.
BACKENDS = ("sqlite", "postgresql")


#: The test files that take longest (over 40 s each of the whole suite's; bench/RESULTS.md, "Suite time (session
#: 11)"), longest first: on pytest-xdist's processes (``-n 2``, whole files each) they start first, so that neither
#: process is left running one of them alone at the end. The Ray tests stay in one file, so on one process: their
#: `ray start` cluster would be joined by another process's local start, and `ray stop` would end its Ray.
LONGEST_FILES = ("test_openvino.py", "test_ray_engine.py", "test_query_search.py", "test_adversarial.py",
                 "test_postgres.py", "test_index_e2e.py", "test_query_fusion.py")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Under ``-n N`` (with no other ``--dist``), whole files to a process, so that a module's fixtures (indexes,
    models, Chromium, the Ray cluster) are built once, not on every process; in the order of
    `pytest_collection_modifyitems` (xdist's own puts the files with most tests first, which leaves the long
    files with few tests last)."""
    if config.getoption("dist") != "load":
        return None
    from xdist.scheduler import LoadFileScheduling

    config.option.loadscopereorder = False
    return LoadFileScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist, the `LONGEST_FILES` first; every other test in its usual order (the sort is stable)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def _run_temp(tmp_path_factory) -> Path:
    """The run's temporary folder: under pytest-xdist the one its processes' own are in, so that what they build
    there (models, the VGG-16 files) is built once per run; else this process's."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def pytest_sessionfinish(session):
    """Under pytest-xdist the main process removes the VGG-16 files its processes shared (`vgg_files`)."""
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is not None and not hasattr(session.config, "workerinput") and session.config.getoption(
            "numprocesses", None):
        shutil.rmtree(factory.getbasetemp() / "vgg16-random", ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def imgidx_cache(tmp_path_factory):
    """The run's own imgidx cache folder (converted and int8 models are built there, once per run, under the
    cache's own build locks when pytest-xdist's processes share it), so no test reads or writes the user's;
    subprocesses inherit it."""
    from indexer.models.weights import CACHE_ENV

    saved = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(_run_temp(tmp_path_factory) / "imgidx-cache")
    yield Path(os.environ[CACHE_ENV])
    if saved is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = saved


@pytest.fixture(scope="session", autouse=True)
def fake_object_detector():
    """The object detector is the fake one (tests/fake_detector.py: boxes where a photo holds its colours)
    wherever a test does not pass its own: indexing runs in this process find objects without a model. The
    real detector's own tests load it themselves. Ray actors unpickle the fake by value."""
    from indexer import pipeline

    import fake_detector

    try:
        import cloudpickle

        cloudpickle.register_pickle_by_value(fake_detector)
    except ImportError:
        pass
    saved = pipeline.default_object_detectors
    pipeline.default_object_detectors = fake_detector.FakeObjectDetectors
    yield fake_detector
    pipeline.default_object_detectors = saved


@pytest.fixture(scope="session")
def vgg_files(tmp_path_factory):
    """Random VGG-16 weights as a real-layout vgg_16.ckpt and Keras .h5, generated once per run (under
    pytest-xdist, shared by its processes and removed by the main one: `pytest_sessionfinish`)."""
    yield vgg_fixture.session_vgg_files(_run_temp(tmp_path_factory) / "vgg16-random")
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        vgg_fixture.remove_session_files()


@pytest.fixture(scope="session")
def lite0_openvino_fp32(imgidx_cache) -> Path:
    """EfficientNet-Lite0 converted to OpenVINO once per run, here, where TensorFlow is loaded anyway, into the
    run's cache: its folder's path inside a cache folder. A test that wants a built model in a cache of its own
    copies it there (milliseconds; a new process that converts it first spends 10-15 s, most of it importing
    TensorFlow), and the CLI runs that use the run's cache find it built."""
    pytest.importorskip("openvino", reason="OpenVINO is not installed")
    from indexer.models.weights import cache_dir
    from indexer.runtime import cache, openvino_model

    name = "efficientnet-lite0"
    digest = cache.weights_digest(openvino_model.weights_file(name, None))
    openvino_model.fp32_model(name, None, digest, lambda note: None)
    return cache.fp32_dir(name, digest).relative_to(cache_dir())


@pytest.fixture(scope="session")
def lite0_model():
    """EfficientNet-Lite0 with its real weights, built once per run for the tests that share it."""
    from indexer.models import load_model

    return load_model("efficientnet-lite0", precision="fp32")


# --- PostgreSQL ---------------------------------------------------------------------------------------


def _pg_bin() -> Path | None:
    """The folder of the newest installed initdb and pg_ctl, if any."""
    folders = [Path(p) for p in sorted(Path("/").glob(PG_BIN_GLOB.lstrip("/")), key=lambda p: p.parent.name.zfill(4))]
    folders = [f for f in folders if (f / "initdb").exists() and (f / "pg_ctl").exists()]
    if folders:
        return folders[-1]
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("pg_ctl") else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _Cluster:
    """A throwaway PostgreSQL cluster in a temporary folder, on a loopback port, trusting every local user.

    initdb refuses to run as root, so as root the server runs as the ``postgres`` user Debian's packages
    create. Durability is off (fsync, full-page writes): the data dies with the test run anyway.
    """

    def __init__(self, bin_dir: Path):
        self.bin_dir = bin_dir
        self.folder = Path(tempfile.mkdtemp(prefix="imgidx-pg-"))
        self.data = self.folder / "data"
        self.port = _free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                shutil.rmtree(self.folder)
                raise RuntimeError("running as root, and there is no postgres user to run PostgreSQL as") from None
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *argv: str) -> None:
        done = subprocess.run([*self.as_user, *argv], capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{' '.join(argv[:2])} failed: {(done.stderr or done.stdout).strip()}")

    def start(self) -> str:
        self._run(str(self.bin_dir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "-E", "UTF8", "--no-locale", "--no-sync")
        options = (f"-h 127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off -c full_page_writes=off "
                   "-c synchronous_commit=off -c max_connections=200")
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "server.log"),
                  "-o", options, "-w", "-t", "60", "start")
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        try:
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except RuntimeError:
            pass  # never started
        shutil.rmtree(self.folder, ignore_errors=True)


def _unavailable(reason: str):
    """No PostgreSQL: skip its tests, but fail them under CI, where it must be there."""
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required under CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_server():
    """A PostgreSQL server URL (PostgreSQL 13 or newer): ``$IMGIDX_TEST_PG``, else a cluster started for this
    run and stopped after."""
    if os.environ.get(PG_ENV):
        yield os.environ[PG_ENV]
        return
    bin_dir = _pg_bin()
    if bin_dir is None:
        _unavailable(f"PostgreSQL's initdb and pg_ctl are not installed, and ${PG_ENV} names no server")
    try:
        cluster = _Cluster(bin_dir)
    except RuntimeError as exc:
        _unavailable(str(exc))
    try:
        url = cluster.start()
    except RuntimeError as exc:
        cluster.stop()
        _unavailable(str(exc))
    try:
        yield url
    finally:
        cluster.stop()


#: Whether the server can make databases that sort text by ICU's en-US rules (PostgreSQL 15+); [] untried.
_icu: list[bool] = []
ICU_DATABASE = "CREATE DATABASE {} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"


def _create_database(conn: sa.Connection, name: str) -> None:
    if _icu in ([], [True]):
        try:
            conn.exec_driver_sql(ICU_DATABASE.format(name))
            _icu[:] = [True]
            return
        except sa.exc.DBAPIError:
            _icu[:] = [False]
    conn.exec_driver_sql(f"CREATE DATABASE {name}")


@contextlib.contextmanager
def pg_database(server: str):
    """A new empty database on ``server``, as a bare ``postgresql://`` URL; dropped afterwards.

    Where the server can, the database sorts text as en-US does (as most real ones do, unlike the test
    cluster's C locale), so a statement that needs byte order has to ask for it.
    """
    url = sa.engine.make_url(server).set(drivername="postgresql+psycopg")
    name = f"imgidx_test_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as conn:
            _create_database(conn, name)
        yield url.set(drivername="postgresql", database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


@pytest.fixture
def pg_url(pg_server):
    """A fresh, empty PostgreSQL database for one test, as a ``postgresql://`` URL."""
    with pg_database(pg_server) as url:
        yield url


@pytest.fixture
def statement_only(monkeypatch):
    """Every query answered by its statement: an AND of two words on SQLite is otherwise answered from the class
    runs (`query.runs`, tests/test_query_runs.py), and these tests are of how the statement reads the index."""
    monkeypatch.setattr("query.search.keeps_runs", lambda bind: False)


@pytest.fixture(params=BACKENDS)
def index_url(request, tmp_path):
    """Where one test's index lives, once per backend: an SQLite file path, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "index.db")
    return request.getfixturevalue("pg_url")


@pytest.fixture(scope="module", params=BACKENDS)
def new_index_url(request, tmp_path_factory):
    """For indexes a whole module shares: a maker of empty index locations on one backend (the module runs
    once per backend), each an SQLite file path or a fresh PostgreSQL database, removed after the module."""
    server = request.getfixturevalue("pg_server") if request.param == "postgresql" else None
    with contextlib.ExitStack() as databases:
        def new() -> str:
            if server is None:
                return str(tmp_path_factory.mktemp("index") / "index.db")
            return databases.enter_context(pg_database(server))

        yield new
