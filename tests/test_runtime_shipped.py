"""The OpenVINO models shipped inside the package (issue 24): they stand for what the cache would hold, a new
machine reads them without building anything, and the README's first run imports neither TensorFlow nor
NNCF and prints no warning."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from indexer import runtime
from indexer.models import DEFAULT_WORKING_SIZE
from indexer.models.backbone_spec import LITE0
from indexer.models.weights import CACHE_ENV
from indexer.errors import QuantizedModelError
from indexer.runtime import cache

pytest.importorskip("openvino", reason="OpenVINO is not installed")
from indexer.runtime import openvino_detector, openvino_model  # noqa: E402

ROOT = Path(__file__).parent.parent
STALE = "stale: run python bench/shipped_models.py and commit indexer/data/openvino_*"


def lite0_digest() -> str:
    return cache.weights_digest(openvino_model.weights_file(LITE0, None))


def test_the_shipped_models_are_what_this_imgidx_would_build():
    quantization = runtime.current_quantization(LITE0, DEFAULT_WORKING_SIZE)
    lite0 = openvino_model.shipped_int8(LITE0, lite0_digest(), DEFAULT_WORKING_SIZE, quantization)
    assert lite0 == openvino_model.shipped_folder("openvino_lite0"), STALE
    detector = openvino_model.shipped_model({"model": openvino_detector.NAME,
                                             "digest": openvino_detector.model_digest()})
    assert detector == openvino_model.shipped_folder("openvino_nanodet"), STALE
    # An int8 model never stands for a converted (float) one, nor one size for another.
    assert openvino_model.shipped_model({"model": LITE0, "weights_sha256": lite0_digest(), "quantization": ""}) is None
    assert openvino_model.shipped_int8(LITE0, lite0_digest(), DEFAULT_WORKING_SIZE + 32, quantization) is None


def test_a_new_machine_reads_them_and_builds_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))

    def no_build(*args, **kwargs):
        raise AssertionError("built")

    for name in ("convert", "quantize"):
        monkeypatch.setattr(openvino_model, name, no_build)
    monkeypatch.setattr(openvino_detector, "convert", no_build)
    notes = []
    backbone = runtime.load(LITE0, None, "openvino", "int8", size=DEFAULT_WORKING_SIZE, on_build=notes.append)
    assert (backbone.runtime, backbone.precision) == ("openvino", "int8")
    assert backbone.quantization == runtime.current_quantization(LITE0, DEFAULT_WORKING_SIZE)
    openvino_detector.load("bf16", on_build=notes.append)
    assert notes == []
    assert not (cache.root() / f"{LITE0}-{lite0_digest()[:cache.DIGEST_KEY_CHARS]}").exists()


def test_a_damaged_shipped_model_is_refused_not_used(tmp_path, monkeypatch):
    shipped = tmp_path / "openvino_lite0"
    monkeypatch.setattr(openvino_model, "shipped_folder", lambda name: shipped)
    shutil.copytree(ROOT / "indexer" / "data" / "openvino_lite0", shipped)
    (shipped / openvino_model.MODEL_BIN).write_bytes(b"\0" * 16)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    with pytest.raises(QuantizedModelError, match=r"model\.bin changed since it was built"):
        runtime.load(LITE0, None, "openvino", "int8", size=DEFAULT_WORKING_SIZE)


#: The README's Try-it run, with a report of what it imported.
FIRST_RUN = """
import sys
from indexer.cli import main
for argv in ({index}, {query}):
    sys.argv = ["imgidx", *argv]
    try:
        main()
    except SystemExit as exit:
        assert not exit.code, exit.code
print("imported:", *[name for name in ("tensorflow", "nncf") if name in sys.modules])
"""


@pytest.mark.slow
def test_the_readme_first_run_on_a_new_machine_builds_nothing_imports_no_tensorflow_and_warns_nothing(tmp_path):
    db = tmp_path / "demo.db"
    index = ["index", str(ROOT / "tests" / "photos"), "--model", LITE0, "--db", str(db)]
    query = ["query", "cat", "--db", str(db)]
    ran = subprocess.run(
        [sys.executable, "-c", FIRST_RUN.format(index=index, query=query)], capture_output=True, text=True,
        env={**os.environ, CACHE_ENV: str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}, timeout=300,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stderr == ""  # no note of a build, no warning of any kind
    assert "(openvino int8 calibrated on shipped-" in ran.stdout and "chelsea.jpg" in ran.stdout
    assert ran.stdout.splitlines()[-1] == "imported:"
