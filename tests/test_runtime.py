"""`--runtime` and `--precision`: what auto picks, what an index keeps, and life where OpenVINO is missing.

Nothing here runs OpenVINO (tests/test_openvino.py does); OpenVINO (or NNCF) missing is simulated by making
its import fail.
"""

import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fake_backbone import FakeBackbone
from indexer import pipeline, runtime, store
from indexer.cli import cli
from indexer.errors import IndexSettingsError, QuantizedModelError, RuntimeChoiceError
from indexer.models.base import resolve_precision
from indexer.runtime import photos, recipes
from indexer.store import IndexSettings
from test_index_cli import models  # noqa: F401  (the fixture: TensorFlow loads are fakes)
from test_pipeline import RED, paint

PHOTOS_DIR = "photos"
INSTALL_ERROR = "Error: the openvino runtime needs OpenVINO, which is not installed here: pip install openvino\n"


@pytest.fixture
def no_extra(monkeypatch):
    """OpenVINO is not installed (a platform without its wheels): importing it fails."""
    monkeypatch.setitem(sys.modules, runtime.machine.OPENVINO_MODULE, None)


@pytest.fixture
def extra(monkeypatch):
    monkeypatch.setattr(runtime.machine, "openvino_installed", lambda: True)


def test_openvino_and_nncf_are_dependencies_not_an_extra():
    """The README's first install command brings what --runtime auto picks (issue 24); the old extra still
    installs, empty."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = {re.split(r"[<>=;\[ ]", requirement)[0] for requirement in project["dependencies"]}
    assert {runtime.machine.OPENVINO_MODULE, runtime.machine.NNCF_MODULE} <= names
    assert project["optional-dependencies"]["openvino"] == []
    assert runtime.openvino_installed() and runtime.machine.nncf_installed()


def test_without_nncf_running_openvino_works_and_only_a_build_asks_for_it(monkeypatch):
    monkeypatch.setitem(sys.modules, runtime.machine.NNCF_MODULE, None)
    runtime.require_openvino()
    with pytest.raises(RuntimeChoiceError) as refused:
        runtime.machine.require_nncf()
    assert str(refused.value) == "building an int8 model needs NNCF, which is not installed here: pip install nncf"


@pytest.fixture
def vnni(monkeypatch):
    monkeypatch.setattr(runtime.machine, "cpu_flags", lambda: frozenset({"avx512f", "avx512_vnni", "avx512_bf16"}))


@pytest.fixture
def no_vnni(monkeypatch):
    monkeypatch.setattr(runtime.machine, "cpu_flags", lambda: frozenset({"avx2", "fma"}))


def imgidx(*argv):
    return CliRunner().invoke(cli, [str(a) for a in argv], prog_name="imgidx")


def test_auto_is_openvino_int8_with_the_extra_and_int8_dot_products(extra, vnni):
    assert runtime.resolve("auto", "auto") == ("openvino", "int8")
    assert runtime.resolve("auto", "int8") == ("openvino", "int8")
    assert runtime.resolve("openvino", "auto") == ("openvino", "int8")
    assert runtime.resolve("openvino", "bf16") == ("openvino", "bf16")


def test_an_explicit_float_precision_keeps_tensorflow(extra, vnni):
    assert runtime.resolve("auto", "bf16") == ("tf", "bf16")
    assert runtime.resolve("auto", "fp32") == ("tf", "fp32")
    assert runtime.resolve("tf", "auto") == ("tf", resolve_precision("auto"))


def test_without_int8_dot_products_auto_stays_on_tensorflow(extra, no_vnni):
    assert runtime.resolve("auto", "auto") == ("tf", resolve_precision("auto"))
    assert runtime.resolve("openvino", "auto") == ("openvino", resolve_precision("auto"))


def test_without_the_extra_auto_is_tensorflow_and_openvino_says_how_to_install(no_extra, vnni):
    assert not runtime.openvino_installed()
    assert runtime.resolve("auto", "auto") == ("tf", resolve_precision("auto"))
    for asked in (("openvino", "auto"), ("openvino", "fp32"), ("auto", "int8")):
        with pytest.raises(RuntimeChoiceError, match="pip install openvino$"):
            runtime.resolve(*asked)
    with pytest.raises(RuntimeChoiceError, match="pip install openvino$"):
        runtime.require_openvino()


def test_int8_is_refused_on_tensorflow(extra, vnni):
    with pytest.raises(RuntimeChoiceError, match="--precision int8 runs on OpenVINO only"):
        runtime.resolve("tf", "int8")


def test_cli_without_the_extra_works_as_before_and_openvino_explains(tmp_path, no_extra, vnni, models):
    photo = paint(tmp_path / "a.jpg", {4: RED}, hw=(240, 320))
    result = imgidx("classify", photo, "--model", "efficientnet-lite0", "--size", "96")
    assert result.exit_code == 0, result.output
    assert [(m.name, m.precision) for m in models] == [("efficientnet-lite0", resolve_precision("auto"))]
    for argv in (("--runtime", "openvino"), ("--precision", "int8")):
        for command in (("classify", photo), ("segment", photo, "--text")):
            result = imgidx(*command, "--model", "efficientnet-lite0", "--size", "96", *argv)
            assert (result.exit_code, result.stderr) == (1, INSTALL_ERROR), argv
        result = imgidx("index", tmp_path, "--db", tmp_path / "i.db", "--model", "efficientnet-lite0", *argv)
        assert (result.exit_code, result.stderr) == (1, INSTALL_ERROR), argv
    result = imgidx("runtime", "check", tmp_path, "--model", "efficientnet-lite0")
    assert (result.exit_code, result.stderr) == (1, INSTALL_ERROR)
    result = imgidx("runtime", "status")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0] == "OpenVINO: not installed (the openvino runtime needs OpenVINO, which " \
        "is not installed here: pip install openvino)"
    assert result.stdout.splitlines()[2:] == [
        f"auto picks: tf {resolve_precision('auto')}", "object detector (nanodet-m): tf fp32", "face detector: tflite",
    ]


def test_cli_refuses_int8_on_tensorflow(tmp_path, extra, vnni, models):
    photo = paint(tmp_path / "a.jpg", {4: RED}, hw=(240, 320))
    result = imgidx("classify", photo, "--runtime", "tf", "--precision", "int8")
    assert (result.exit_code, result.stderr) == (
        1, "Error: --precision int8 runs on OpenVINO only: use --runtime openvino (or auto)\n"
    )
    assert models == []


def test_runtime_status_names_the_rule(extra, vnni):
    result = imgidx("runtime", "status")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[:3] == ["OpenVINO: installed", "CPU int8 dot products: avx512_vnni", "auto picks: openvino int8"]
    # the detectors' precisions follow this CPU's own bf16 instructions, which the fixture does not fake
    assert lines[3].startswith("object detector (nanodet-m): openvino ") and lines[4].startswith("face detector: ")
    assert len(lines) == 5


def settings(**kwargs) -> IndexSettings:
    return IndexSettings(**{"model": "fake", "working_size": 96, "precision": "bf16", **kwargs})


#: What a new int8 index of "fake" records once the current calibration is "photos-current": its photos and recipe.
CURRENT = f"photos-current-{recipes.Recipe().tag}"


def test_an_index_keeps_its_runtime_precision_and_int8_calibration(extra, vnni, monkeypatch):
    monkeypatch.setattr(photos, "active", lambda model, size: "photos-current")
    tf_index = settings(runtime="tf", precision="bf16")
    assert runtime.choose(tf_index, "fake", 96, "auto", "auto", False) == ("tf", "bf16", "")
    int8_index = settings(runtime="openvino", precision="int8", quantization="photos-older")
    assert runtime.choose(int8_index, "fake", 96, "auto", "auto", False) == ("openvino", "int8", "photos-older")
    assert runtime.choose(int8_index, "fake", 96, "auto", "auto", True) == ("openvino", "int8", CURRENT)
    assert runtime.choose(int8_index, "fake", 128, "auto", "auto", False) == ("openvino", "int8", CURRENT)
    assert runtime.choose(tf_index, "fake", 96, "auto", "int8", False) == ("openvino", "int8", CURRENT)
    assert runtime.choose(None, "fake", 96, "auto", "auto", False) == ("openvino", "int8", CURRENT)


def test_an_openvino_index_without_the_extra_says_what_to_do(no_extra):
    int8_index = settings(runtime="openvino", precision="int8", quantization="shipped-0123456789ab")
    with pytest.raises(RuntimeChoiceError) as refused:
        runtime.choose(int8_index, "fake", 96, "auto", "auto", False)
    assert str(refused.value) == (
        "the index holds labels from fake at size 96 (openvino int8 calibrated on shipped-0123456789ab), and the "
        "openvino runtime needs OpenVINO, which is not installed here: pip install openvino; or rebuild it with "
        "--reindex --runtime tf"
    )
    assert runtime.choose(int8_index, "fake", 96, "tf", "auto", True) == ("tf", resolve_precision("auto"), "")


def test_settings_round_trip_and_an_older_index_reads_as_tensorflow(tmp_path):
    engine = store.open_index(str(tmp_path / "i.db"))
    t = store.tables(engine)
    int8 = settings(runtime="openvino", precision="int8", quantization="shipped-0123456789ab")
    with engine.begin() as conn:
        store.write_settings(conn, t, int8)
    with engine.connect() as conn:
        assert store.read_settings(conn) == int8
    with engine.begin() as conn:
        conn.execute(t.meta.delete().where(t.meta.c.key.in_(["runtime", "quantization"])))
    with engine.connect() as conn:
        assert store.read_settings(conn) == settings(runtime="tf", precision="int8")
    engine.dispose()
    assert int8.describe() == "fake at size 96 (openvino int8 calibrated on shipped-0123456789ab)"
    assert settings().describe() == "fake at size 96 (bf16)"


def test_an_index_never_mixes_runtimes(tmp_path, extra, vnni, monkeypatch):
    monkeypatch.setattr(photos, "active", lambda model, size: "shipped-0123456789ab")
    folder = tmp_path / PHOTOS_DIR
    paint(folder / "a.jpg", {0: RED})
    engine = store.open_index(str(tmp_path / "i.db"))
    summary = pipeline.index(engine, [folder], lambda s: FakeBackbone(), model="fake", size=96, precision="fp32")
    assert (summary.settings.runtime, summary.settings.precision) == ("tf", "fp32")
    with pytest.raises(IndexSettingsError) as refused:
        pipeline.index(engine, [folder], lambda s: FakeBackbone(), precision="int8")
    assert str(refused.value) == (
        "the index holds labels from fake at size 96 (fp32), not fake at size 96 (openvino int8 calibrated on "
        f"shipped-0123456789ab-{recipes.Recipe().tag}); pass --reindex to rebuild it, or leave out --model/--size/--precision/--runtime to "
        "keep its settings"
    )
    with pytest.raises(IndexSettingsError, match=r"not fake at size 96 \(openvino fp32\)"):
        pipeline.index(engine, [folder], lambda s: FakeBackbone(), runtime="openvino")
    unchanged = pipeline.index(engine, [folder], lambda s: FakeBackbone())
    assert (unchanged.unchanged, unchanged.settings) == (1, summary.settings)
    engine.dispose()


def test_the_shipped_calibration_photos_are_small_and_named_by_their_contents():
    shipped = photos.shipped()
    assert len(shipped.paths) >= photos.MIN_PHOTOS
    assert shipped.id.startswith("shipped-") and shipped.id == photos.shipped().id
    assert sum(open(p, "rb").seek(0, 2) for p in shipped.paths) < 600_000


def test_a_calibration_needs_enough_photos(tmp_path):
    for i in range(photos.MIN_PHOTOS - 1):
        paint(tmp_path / f"{i}.jpg", {i % 9: RED})
    with pytest.raises(QuantizedModelError, match=rf"{tmp_path}: 7 photos found; calibrating int8 needs at least 8"):
        photos.from_folder(tmp_path)
    paint(tmp_path / "last.jpg", {8: RED})
    chosen = photos.from_folder(tmp_path)
    assert len(chosen.paths) == photos.MIN_PHOTOS and chosen.id.startswith("photos-")
    assert photos.from_folder(tmp_path, limit=4).paths == tuple(sorted(chosen.paths)[0::2])


def test_the_current_calibration_is_per_model_and_size(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGIDX_CACHE_DIR", str(tmp_path))
    shipped = photos.shipped().id
    assert photos.active("vgg16", 448) == shipped
    photos.activate("vgg16", 448, "photos-aaaaaaaaaaaa")
    assert (photos.active("vgg16", 448), photos.active("vgg16", 512), photos.active("efficientnet-lite0", 448)) == (
        "photos-aaaaaaaaaaaa", shipped, shipped
    )


class BatchRecorder(FakeBackbone):
    """The fake network, noting how many photos each call holds."""

    def __init__(self, precision: str = "fp32"):
        super().__init__()
        self.precision = precision
        self.sizes = []

    def class_map(self, batch):
        self.sizes.append(len(batch))
        return super().class_map(batch)


def test_the_default_batch_is_the_runtimes_own_and_batch_overrides_it(tmp_path, extra, vnni, monkeypatch):
    # measured (bench/RESULTS.md, "Fast by default"): Lite0 int8 indexes as much per CPU second at 8 as at 4
    assert runtime.default_batch("openvino", "efficientnet-lite0", "int8") == 8
    assert runtime.default_batch("tf", "efficientnet-lite0", "bf16") == runtime.FALLBACK_BATCH == 8
    assert runtime.default_batch("openvino", "vgg16", "fp32") == runtime.FALLBACK_BATCH
    monkeypatch.setattr(photos, "active", lambda model, size: "shipped-0123456789ab")
    monkeypatch.setitem(runtime.DEFAULT_BATCHES, ("openvino", "fake", "int8"), 3)
    folder = tmp_path / PHOTOS_DIR
    for i in range(7):
        paint(folder / f"{i}.jpg", {i: RED})
    for asked, largest in ((None, 3), (2, 2)):
        network = BatchRecorder("int8")
        engine = store.open_index(str(tmp_path / f"batch-{asked}.db"))
        summary = pipeline.index(engine, [folder], lambda s: network, model="fake", size=96, batch=asked)
        engine.dispose()
        assert (summary.settings.runtime, summary.settings.precision, summary.indexed) == ("openvino", "int8", 7)
        assert max(network.sizes) == largest, network.sizes
    tf_network = BatchRecorder()
    engine = store.open_index(str(tmp_path / "tf.db"))
    pipeline.index(engine, [folder], lambda s: tf_network, model="fake", size=96, runtime="tf", precision="fp32")
    engine.dispose()
    assert max(tf_network.sizes) == 7  # all seven in one call: the fallback batch of 8
