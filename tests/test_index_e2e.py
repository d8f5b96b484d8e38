"""End to end with real weights: EfficientNet-Lite0 indexes composites of real photos into the right cells."""

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios

import numpy as np
import pytest
from click.testing import CliRunner

from composites import CLASS_SETS, as_phone_photo, composite, save_jpeg
from indexer import labels, pipeline, store
from indexer.cli import cli

pytestmark = pytest.mark.slow

#: Which photo goes into which cell (0 top-left .. 8 bottom-right), one dict per composite.
LAYOUTS = {
    "cat-coffee": {0: "chelsea", 8: "coffee"},
    "moped-missile": {2: "motorcycle", 6: "rocket"},
    "moped-cat": {1: "motorcycle", 4: "chelsea"},
    "coffee-missile": {3: "coffee", 5: "rocket"},
}
PORTRAIT_HW = (1200, 900)


@pytest.fixture(scope="module", params=["tf", "openvino"])
def lite0(request):
    """EfficientNet-Lite0 on each runtime: TensorFlow's default, and OpenVINO int8 when the extra is there."""
    from indexer import runtime
    from indexer.models import DEFAULT_WORKING_SIZE

    if request.param == runtime.OPENVINO:
        pytest.importorskip("openvino", reason="the openvino extra is not installed")
        return runtime.load_backbone("efficientnet-lite0", None, "openvino", "int8", size=DEFAULT_WORKING_SIZE)
    return runtime.load_backbone("efficientnet-lite0", None, "tf", "auto", size=DEFAULT_WORKING_SIZE)


def class_set_by_cell(engine, path, classes) -> np.ndarray:
    scores = np.zeros(9)
    with engine.connect() as conn:
        report = store.image_report(conn, path=str(path))
    for cell, labels in enumerate(report.cells):
        scores[cell] = sum(label.score for label in labels if label.class_id in classes)
    return scores


@pytest.fixture(scope="module")
def indexed(lite0, tmp_path_factory):
    """The composites, an upright portrait and its phone-style twin, indexed once at the default size."""
    folder = tmp_path_factory.mktemp("composites")
    for name, layout in LAYOUTS.items():
        save_jpeg(composite(layout), folder / f"{name}.jpg")
    upright = composite({0: "chelsea", 5: "coffee"}, PORTRAIT_HW)
    save_jpeg(upright, folder / "portrait-upright.jpg")
    save_jpeg(as_phone_photo(upright), folder / "portrait-phone.jpg", orientation=6)
    engine = store.open_index(str(folder.parent / f"{folder.name}.db"))
    summary = pipeline.index(engine, [folder], lambda settings: lite0, model=lite0.name, precision=lite0.precision,
                             runtime=getattr(lite0, "runtime", "tf"))
    assert (summary.indexed, summary.failed) == (len(LAYOUTS) + 2, 0)
    yield engine, folder
    engine.dispose()


@pytest.mark.parametrize("name", LAYOUTS)
def test_each_photo_scores_highest_in_its_own_cells(indexed, name):
    engine, folder = indexed
    for cell, photo in LAYOUTS[name].items():
        scores = class_set_by_cell(engine, folder / f"{name}.jpg", CLASS_SETS[photo])
        elsewhere = [c for c in range(9) if LAYOUTS[name].get(c) != photo]
        assert scores[cell] > 0.2, (photo, scores.round(3))
        assert scores[cell] > scores[elsewhere].max(), (photo, cell, scores.round(3))


def test_a_phone_photo_with_exif_orientation_6_gets_the_cells_of_the_upright_one(indexed):
    engine, folder = indexed
    with engine.connect() as conn:
        upright = store.image_report(conn, path=str(folder / "portrait-upright.jpg"))
        phone = store.image_report(conn, path=str(folder / "portrait-phone.jpg"))
    assert (phone.width, phone.height) == (upright.width, upright.height) == (900, 1200)
    for photo, cell in (("chelsea", 0), ("coffee", 5)):
        up = class_set_by_cell(engine, folder / "portrait-upright.jpg", CLASS_SETS[photo])
        turned = class_set_by_cell(engine, folder / "portrait-phone.jpg", CLASS_SETS[photo])
        assert up.argmax() == turned.argmax() == cell
        assert np.abs(up - turned).max() < 0.05 * up.max(), (up.round(3), turned.round(3))  # JPEG noise, int8 too
    assert phone.cells[0][0].class_id == upright.cells[0][0].class_id
    assert phone.cells[5][0].class_id == upright.cells[5][0].class_id


def on_a_terminal(*argv) -> tuple[int, bytes, str]:
    """Run ``imgidx`` with stderr on a pseudo-terminal of 120 columns: exit code, the screen, stdout."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # rows, columns
    child = subprocess.Popen(
        [sys.executable, "-m", "indexer", *map(str, argv)],
        stdout=subprocess.PIPE, stderr=terminal, stdin=subprocess.DEVNULL, text=True,
    )
    os.close(terminal)
    screen = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        screen += chunk
    os.close(controller)
    stdout = child.stdout.read()
    return child.wait(), screen, stdout


#: Enough photos for the bar to be drawn part-way a good many times (about 10 s of indexing on 2 cores; each photo
#: costs the object and face detectors ~35 ms, so 1000 took 70 s of the suite).
TERMINAL_PHOTOS = 300


def test_hundreds_of_photos_on_a_terminal_then_a_rerun_that_runs_no_model(tmp_path, lite0_openvino_fp32):
    """Lite0's OpenVINO conversion is in the run's cache (`lite0_openvino_fp32`), as after any earlier run: this
    run only quantizes it for size 64, rather than import TensorFlow to convert it first (12-15 s)."""
    photos = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for i in range(TERMINAL_PHOTOS):
        (photos / f"{i // 100:02}").mkdir(parents=True, exist_ok=True)
        save_jpeg(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), photos / f"{i // 100:02}/{i:04}.jpg")
    db = tmp_path / "index.db"
    code, screen, stdout = on_a_terminal("index", photos, "--db", db, "--model", "efficientnet-lite0", "--size", "64")
    assert code == 0, screen.decode(errors="replace")
    n = TERMINAL_PHOTOS
    assert re.search(rb"indexing: +\d+%%\|.*\| \d+/%d \[\d\d:\d\d<\d\d:\d\d, +[\d.]+img/s\]" % n, screen), screen
    assert re.search(rb"indexing: 100%%\|.*\| %d/%d \[\d\d:\d\d<00:00, +[\d.]+img/s\]" % (n, n), screen), screen
    assert re.fullmatch(
        rf"{n} indexed, 0 unchanged, 0 moved, 0 pruned, 0 failed in \d+\.\d s \(efficientnet-lite0 at size 64 "
        r"\((bf16|fp32|openvino int8 calibrated on shipped-[0-9a-f]+-[0-9a-f]+)\), model loaded in [\d.]+ s, [\d.]+ images/s\)"
        r"(; \d+ objects?( and \d+ faces?)? found|; \d+ faces? found)?\n",  # the photos include the astronaut
        stdout,
    )
    assert re.search(rb"model loaded in \d+\.\d s", screen), screen
    bar_rate = float(re.findall(rb"%d/%d \[[\d:]+<00:00, +([\d.]+)img/s\]" % (n, n), screen)[-1])
    summary_rate = float(re.search(r"([\d.]+) images/s", stdout).group(1))
    assert abs(bar_rate - summary_rate) <= 0.1 * summary_rate, (bar_rate, summary_rate)  # one count, one span
    code, screen, stdout = on_a_terminal("index", photos, "--db", db)
    assert code == 0 and b"indexing" not in screen
    assert re.fullmatch(
        rf"0 indexed, {n} unchanged, 0 moved, 0 pruned, 0 failed in \d+\.\d s \(no model run\)\n", stdout
    )


def test_show_prints_the_cells_of_a_composite(indexed):
    engine, folder = indexed
    db = engine.url.database
    shown = CliRunner().invoke(cli, ["show", str(folder / "cat-coffee.jpg"), "--db", db, "--json"])
    cells = json.loads(shown.stdout)["cells"]
    assert cells[0]["labels"][0]["class"] in CLASS_SETS["chelsea"]
    assert cells[8]["labels"][0]["class"] in CLASS_SETS["coffee"]
    text = CliRunner().invoke(cli, ["show", str(folder / "cat-coffee.jpg"), "--db", db]).stdout.splitlines()
    grid = text[text.index("grid (leading class and confidence per cell):") + 1 :]
    assert grid[1].split("|")[1].strip() in {labels.class_name(c) for c in CLASS_SETS["chelsea"]}
    assert grid[7].split("|")[3].strip() in {labels.class_name(c) for c in CLASS_SETS["coffee"]}
