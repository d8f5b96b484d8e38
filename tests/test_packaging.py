"""A fresh clone: packaging metadata that setuptools builds without a warning, and README commands that
leave `git status` clean (issue 14, items 5 and 9).

Building needs setuptools from the registry, which a test may not fetch; the build itself was checked with
``python -m pip wheel --no-deps -w /tmp/whl .`` (no warning). These tests keep the two causes away.
"""

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
#: The first setuptools that takes `project.license` as an SPDX string (PEP 639).
SPDX_LICENSE_SETUPTOOLS = 77


def test_the_license_is_an_spdx_string_and_the_build_asks_for_a_setuptools_that_reads_it():
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert PYPROJECT["build-system"]["requires"] == [f"setuptools>={SPDX_LICENSE_SETUPTOOLS}"]


def test_every_shipped_folder_is_a_listed_package():
    """A folder of files that is not in `packages` draws "Package ... is absent from the packages configuration"."""
    folders = {
        ".".join(folder.relative_to(ROOT).parts)
        for top in ("indexer", "query", "serve")
        for folder in [ROOT / top, *(ROOT / top).rglob("*")]
        if folder.is_dir() and folder.name != "__pycache__" and any(f.is_file() for f in folder.iterdir())
    }
    assert set(PYPROJECT["tool"]["setuptools"]["packages"]) == folders
    for package, patterns in PYPROJECT["tool"]["setuptools"]["package-data"].items():
        shipped = {f.suffix for f in ROOT.joinpath(*package.split(".")).iterdir() if f.is_file()}
        assert shipped == {pattern.removeprefix("*") for pattern in patterns}, package


#: What a database leaves beside it while open or after a killed run (`indexer.pipeline.DB_SIDE_SUFFIXES`).
DB_COMPANIONS = ("", "-wal", "-shm", "-journal", ".lock")


@pytest.mark.skipif(not shutil.which("git") or not (ROOT / ".git").exists(), reason="not a git checkout")
def test_what_the_readme_commands_write_into_the_clone_is_ignored_by_git():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    try_it = readme[readme.index("## Try it") : readme.index("## Indexing")]
    databases = set(re.findall(r"--db (\S+)", try_it))
    figures = set(re.findall(r"--out (\S+)", try_it))
    assert databases and figures
    written = [db + suffix for db in databases for suffix in DB_COMPANIONS] + sorted(figures)
    checked = subprocess.run(
        ["git", "check-ignore", "--no-index", "--verbose", "--non-matching", *written],
        cwd=ROOT, capture_output=True, text=True,
    )
    not_ignored = [line.split("\t")[1] for line in checked.stdout.splitlines() if line.startswith("::")]
    assert not_ignored == []


#: The object detector's model and its notices (package data of ``indexer.data.nanodet``).
DETECTOR_FILES = ("nanodet.json", "nanodet.bin", "NOTICE.txt", "LICENSE-human-models.txt", "LICENSE-nanodet.txt")
#: The OpenVINO models shipped built (`indexer.runtime.openvino_model.SHIPPED`, issue 24), each a folder of these.
SHIPPED_MODEL_FOLDERS = ("openvino_lite0", "openvino_nanodet", "openvino_text")
SHIPPED_MODEL_FILES = ("model.xml", "model.bin", "built.json")


def test_the_wheel_carries_the_object_detector_model(tmp_path):
    """Built offline with the installed setuptools (the test extra brings one that reads this pyproject), the
    wheel holds the detector's files and the shipped OpenVINO models byte for byte: nothing is downloaded or
    built at run time."""
    setuptools = pytest.importorskip("setuptools")
    if int(setuptools.__version__.split(".")[0]) < SPDX_LICENSE_SETUPTOOLS:
        pytest.skip(f"setuptools {setuptools.__version__} is older than the build needs")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("imgidx-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        for name in DETECTOR_FILES:
            shipped = archive.read(f"indexer/data/nanodet/{name}")
            assert shipped == (ROOT / "indexer" / "data" / "nanodet" / name).read_bytes(), name
        for folder in SHIPPED_MODEL_FOLDERS:
            for name in SHIPPED_MODEL_FILES:
                shipped = archive.read(f"indexer/data/{folder}/{name}")
                assert shipped == (ROOT / "indexer" / "data" / folder / name).read_bytes(), (folder, name)
