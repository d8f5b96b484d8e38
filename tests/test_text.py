"""Text in photos (issue 22): the reader's own decoding (`indexer.text`), the folding both sides of a match go
through (`indexer.words`), the schema's text tables and their upgrade, quoted text in queries, and `imgidx index
--text` then `imgidx query` end to end.

The OCR models run only in the tests marked slow; elsewhere a fake reader (`FakeReader`) reads coloured
blocks as known words, as tests/fake_detector.py finds objects.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from PIL import Image, ImageDraw, ImageFont

from fake_backbone import FakeBackbone
from indexer.errors import SchemaVersionError
from indexer import store, text
from indexer.cli import cli
from indexer.regions import CellLabel, ImageLabel, Regions, with_text
from indexer.store import FileRow, IndexSettings
from indexer.text import Line, Quad
from indexer.words import folded, prefix_end, searchable
from query import compile as compile_module
from query.search import ON_THE_INDEX, execute, line_matches, prepare, search
from query_helpers import FLOWERPOT, SCHOOL_BUS

FONT = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"


# --- the reader's decoding, without the models ------------------------------------------------------------


def test_a_probability_map_gives_its_lines_grown_by_the_unclip_ratio():
    probability = np.zeros((64, 96), np.float32)
    probability[10:16, 8:48] = 0.9  # a line 40 x 6
    probability[40, 60] = 0.9  # a speck, under MIN_SIDE: no line
    probability[50:56, 10:30] = 0.4  # above the binary threshold, below the box threshold: no line
    found = text.lines_of(probability)
    assert len(found) == 1
    line = found[0][0]
    # the component is 41 x 7 after PaddleOCR's 2x2 dilation; unclip moves each side by area*1.6/perimeter
    distance = 41 * 7 * text.UNCLIP_RATIO / (2 * (41 + 7))
    assert line.width == pytest.approx(41 + 2 * distance) and line.height == pytest.approx(7 + 2 * distance)
    x0, y0, x1, y1 = line.bounds(96, 64)
    assert (x0, y0) == pytest.approx((8 - distance, 10 - distance)) and (x1, y1) == pytest.approx((49 + distance, 17 + distance))
    assert text.lines_of(np.zeros((32, 32), np.float32)) == []


def test_a_slanted_line_keeps_its_slant():
    probability = np.zeros((100, 100), np.float32)
    for x in range(10, 90):
        y = 20 + x // 2
        probability[y - 2 : y + 3, x] = 0.95
    (quad, score), = text.lines_of(probability)
    along = quad.corners[1] - quad.corners[0]
    assert np.degrees(np.arctan2(along[1], along[0])) == pytest.approx(26.6, abs=2.0)
    assert quad.width > 3 * quad.height and score > text.BOX_THRESHOLD


def test_ctc_greedy_merges_repeats_and_drops_blanks():
    characters = ["", "D", "A", "N", "G", "E", "R", " "]
    columns = [0, 1, 1, 0, 2, 3, 3, 0, 4, 5, 0, 0, 6, 6]  # D D _ A N N _ G E _ _ R R
    probabilities = np.full((len(columns), len(characters)), 0.01, np.float32)
    probabilities[np.arange(len(columns)), columns] = 0.9
    probabilities[4, 2] = 0.6
    read, confidence = text.ctc_greedy(probabilities, characters)
    assert read == "DANGER"
    assert confidence == pytest.approx((0.9 * 5 + 0.6) / 6)
    assert text.ctc_greedy(np.eye(8, dtype=np.float32)[[0, 0]], characters) == ("", 0.0)


def test_a_strip_is_the_straightened_line():
    pixels = np.zeros((60, 200, 3), np.uint8)
    pixels[20:40, 50:150] = 255
    corners = np.array([[50, 20], [150, 20], [150, 40], [50, 40]], np.float32)
    strip = text.strip(pixels, Quad(corners, 100.0, 20.0))
    assert strip.shape == (text.RECOGNITION_HEIGHT, 240, 3)
    assert strip[2:-2, 2:-2].min() > 200
    tall = text.strip(pixels, Quad(corners[[3, 0, 1, 2]], 20.0, 100.0))  # read turned a quarter
    assert tall.shape[0] == text.RECOGNITION_HEIGHT and tall.shape[1] > tall.shape[0]


def test_detector_shapes_are_strided_and_bounded():
    assert text.detector_shape(480, 640) == (480, 640)
    assert text.detector_shape(3000, 4000) == (480, 640)
    assert text.detector_shape(100, 4000) == (32, 1280)


# --- folding ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, words", [
    ("Café  RE-16", ["cafe", "re", "16"]),
    ("DANGER!", ["danger"]),
    ("EXlT", ["ex1t"]),
    ("EXIT", ["ex1t"]),
    ("0PEN", ["0pen"]),
    ("open", ["0pen"]),
    ("Straße", ["strasse"]),
    ("---", []),
])
def test_words_are_folded_for_search(raw, words):
    assert searchable(raw) == words


def test_folding_keeps_what_people_read():
    assert folded("Café  RE-16 TGK") == "cafe re 16 tgk"
    assert prefix_end("re16") == "re17" and "re16tgk" < prefix_end("re16")


# --- the index: rows, upgrade, queries ---------------------------------------------------------------------


def index_with_lines(url: str, photos: dict[str, list[Line]], size=(640, 480),
                     labels: dict[str, int] | None = None):
    """An index whose photos hold ``photos``' lines, text 'on', and one label each: class 1 in the top-left
    cell, or the class ``labels`` gives the photo, in the centre cell at evidence 0.9."""
    engine = store.open_index(url)
    t = store.tables(engine)
    with engine.begin() as conn:
        store.write_settings(conn, t, IndexSettings("efficientnet-lite0", 448, "fp32", text=True))
        rows = []
        for name, lines in photos.items():
            found = (labels or {}).get(name)
            held = (Regions([ImageLabel(1, 0.5, 1.0)], [CellLabel(0, 1, 0.5, 1.0)]) if found is None else
                    Regions([ImageLabel(found, 0.9, 1.0)], [CellLabel(4, found, 0.9, 1.0)]))
            regions = with_text(held, lines, *size)
            rows.append((FileRow(f"/photos/{name}", 1, 1, name, *size, "efficientnet-lite0", 448), regions))
        store.save_images(conn, t, rows)
    return engine


SIGNS = {
    "danger.jpg": [Line(10, 10, 200, 60, "DANGER", 0.99)],
    "shop.jpg": [Line(420, 330, 630, 380, "Open 24 hours", 0.95)],
    "street.jpg": [Line(10, 400, 300, 450, "Café RE16 TGK", 0.9), Line(10, 10, 100, 50, "EXIT", 0.8)],
    "wall.jpg": [],
}


@pytest.fixture
def signs(index_url):
    engine = index_with_lines(index_url, SIGNS)
    yield engine
    engine.dispose()


def found(engine, query: str) -> list[tuple[str, tuple]]:
    return [(Path(m.path).name, tuple(tm.cells for tm in m.terms)) for m in search(engine, query).matches]


@pytest.mark.parametrize("query, expected", [
    ('"danger"', [("danger.jpg", (("top-left",),))]),
    ('"DANG"', [("danger.jpg", (("top-left",),))]),
    ('"RE16"', [("street.jpg", (("bottom-left",),))]),
    ('"re16 tgk"', [("street.jpg", (("bottom-left",),))]),
    ('"tgk re16"', []),
    ('"cafe"', [("street.jpg", (("bottom-left",),))]),
    ('"EXlT"', [("street.jpg", (("top-left",),))]),
    ('"0pen 24"', [("shop.jpg", (("bottom-right",),))]),
    ('"open" in top-left', []),
    ('"exit" in top-left', [("street.jpg", (("top-left",),))]),
    ('"exit" AND NOT "danger"', [("street.jpg", (("top-left",),))]),
    ('"danger" OR "exit"', [("danger.jpg", (("top-left",), ())), ("street.jpg", ((), ("top-left",)))]),
    ('NOT "danger" AND NOT "exit"', [("shop.jpg", ()), ("wall.jpg", ())]),
    ('"exit" > 0.9', []),
    # a relation's sides drive from the cells where they can stand in it (`query.compile.RELATION_SIDES`)
    ('"exit" above "re16"', [("street.jpg", (("top-left",), ("bottom-left",)))]),
    ('"cafe" below "exit"', [("street.jpg", (("bottom-left",), ("top-left",)))]),
    ('"re16" above "exit"', []),
    ('"exit" next to "re16"', []),
])
def test_quoted_text_finds_its_photos_and_cells(signs, query, expected):
    assert found(signs, query) == expected


def _menus(seed: int = 3) -> dict[str, list[Line]]:
    """Lines where "the" is on most and "menu" on few, in random cells."""
    rng = random.Random(seed)
    words = ["the"] * 8 + ["menu", "menus", "wine", "list", "of", "day"]
    photos = {}
    for i in range(40):
        lines = []
        for _ in range(rng.randrange(1, 4)):
            x, y = rng.randrange(0, 440), rng.randrange(0, 420)
            lines.append(Line(x, y, x + 200, y + 50, " ".join(rng.choices(words, k=rng.randrange(1, 6))),
                              rng.choice([0.6, 0.8, 0.95])))
        photos[f"cafe{i:02d}.jpg"] = lines
    return photos


@pytest.mark.parametrize("ratio", [compile_module.LOOKUP_ROWS, 0])
@pytest.mark.parametrize("query", ['"the menu"', '"menu of the"', '"the the"', '"of the"', '"list the"',
                                   '"wine list the"', '"m menus"', '"themenu"', '"menuof"', '"m"',
                                   '"the menu" in top-left',
                                   '"the wine" AND NOT "menu"', '"the me" above "day"'])
def test_a_phrase_found_from_its_rarest_word_answers_as_from_its_first(index_url, monkeypatch, query, ratio):
    """`query.compile._Compiler.leading_word`: a phrase is read from its rarest word, its other words joined as
    ranges of the word index or (``ratio`` 0) looked up per line; a word's lines run together are read from
    their shorter first words ("themenu": "the menu ..."; `started_lines`) or as a range. The matches, scores,
    cells and count are those read without counts (from the first word, every range), and a term anywhere lists
    the photos with a line that holds it (`query.search.line_matches`)."""
    monkeypatch.setattr(compile_module, "LOOKUP_ROWS", ratio)
    photos = _menus()
    engine = index_with_lines(index_url, photos)

    def answer(count):
        prepared = prepare(engine, query, limit=None, count=count)
        result = execute(engine, prepared)
        return prepared, [(m.path, m.score, tuple(tm.cells for tm in m.terms)) for m in result.matches], result.total

    prepared, counted, total = answer(ON_THE_INDEX)
    assert (counted, total) == answer(None)[1:]
    assert counted
    if query.count('"') == 2 and query.endswith('"'):  # one term anywhere
        spec = prepared.compiled.reported[0]
        holding = sorted(f"/photos/{name}" for name, lines in photos.items()
                         if any(line_matches(line, spec, 640, 480) for line in lines))
        assert sorted(path for path, _, _ in counted) == holding
    engine.dispose()


def test_a_phrase_is_read_from_its_rarest_word(tmp_path, monkeypatch):
    """"menu" has 32 rows in the word index, "the" 134: lines are found from "menu", "the" read as one range
    unless it has more than `LOOKUP_ROWS` times the rows."""
    engine = index_with_lines(str(tmp_path / "i.db"), _menus())

    def statement(**kwargs) -> str:
        return str(prepare(engine, '"the menu"', **kwargs).statement.compile(engine))

    assert "range_1_0 AS MATERIALIZED" in statement() and "FROM text_words AS words_1_1 \nWHERE" in statement()
    monkeypatch.setattr(compile_module, "LOOKUP_ROWS", 4)
    assert "range_1_0" not in statement() and "FROM text_words AS words_1_1 JOIN text_words AS words_1_0" in statement()
    assert "FROM text_words AS words_1_0 JOIN text_words AS words_1_1" in statement(count=None)
    engine.dispose()


@pytest.mark.parametrize("exits, from_first_words", [(30, True), (10, False)])
def test_a_word_run_together_is_read_from_shorter_first_words_where_they_are_few(tmp_path, exits, from_first_words):
    """`query.compile._Compiler.started_lines`: "exit" run together adds only "ex it"; its one line starting
    "ex" is looked up where the lines run together from "exit" on ("exitnow") are `LOOKUP_ROWS` times more."""
    photos = {f"exit{i:02d}.jpg": [Line(10, 10, 200, 60, "EXIT NOW", 0.9)] for i in range(exits)}
    photos["spaced.jpg"] = [Line(420, 400, 630, 450, "EX IT", 0.95)]
    engine = index_with_lines(str(tmp_path / "i.db"), photos)
    prepared = prepare(engine, '"exit"', limit=None)
    assert ("head_1" in str(prepared.statement.compile(engine))) is from_first_words
    found = [(Path(m.path).name, m.terms[0].cells) for m in execute(engine, prepared).matches]
    assert found[0] == ("spaced.jpg", ("bottom-right",)) and len(found) == exits + 1
    assert found == [(Path(m.path).name, m.terms[0].cells) for m in execute(engine, prepare(
        engine, '"exit"', limit=None, count=None)).matches]
    engine.dispose()


def _exits_and_buses() -> tuple[dict[str, list[Line]], dict[str, int]]:
    """(lines, labels) of 75 photos: "exit" on the first 50, "menu" on 44-46, a school bus on 45-74, a
    flowerpot on 0-3."""
    photos = {f"p{i:02d}.jpg": [] for i in range(75)}
    for i in range(50):
        photos[f"p{i:02d}.jpg"].append(Line(10, 10, 200, 60, "EXIT", 0.9))
    for i in (44, 45, 46):
        photos[f"p{i:02d}.jpg"].append(Line(420, 400, 630, 450, "MENU", 0.8))
    labels = {f"p{i:02d}.jpg": SCHOOL_BUS for i in range(45, 75)} | {f"p{i:02d}.jpg": FLOWERPOT for i in range(4)}
    return photos, labels


@pytest.mark.parametrize("query, plan, matches", [
    ('"exit" AND school bus', "candidates: images common to terms 1, 2", [45, 46, 47, 48, 49]),
    ('"menu" AND school bus', "candidates: images of term 1", [45, 46]),
    ('"exit" AND flowerpot', "candidates: images of term 2", [0, 1, 2, 3]),
])
def test_text_and_a_label_are_driven_by_the_rarer(index_url, query, plan, matches):
    """`query.compile._Compiler.cell_entries` counts a term of text's lines: "exit" is on 50 photos, the
    school bus on 30, "menu" on 3, the flowerpot on 4; a term far broader than the other is looked up per
    candidate, text from the candidate's lines (`text_probe_rows`). The answers are those of text driving
    always (no counts)."""
    photos, labels = _exits_and_buses()
    engine = index_with_lines(index_url, photos, labels=labels)
    prepared = prepare(engine, query, limit=None)
    assert prepared.compiled.plan.startswith(plan)
    found = [(m.path, m.score, tuple(tm.cells for tm in m.terms)) for m in execute(engine, prepared).matches]
    assert sorted(path for path, _, _ in found) == [f"/photos/p{i:02d}.jpg" for i in matches]
    assert found == [(m.path, m.score, tuple(tm.cells for tm in m.terms))
                     for m in execute(engine, prepare(engine, query, limit=None, count=None)).matches]
    engine.dispose()


def test_a_label_less_text_is_read_from_the_labels_streams(index_url, monkeypatch):
    """`query.compile._Compiler.ranked_streams` tests each school bus photo for "exit" from its lines as it
    reads it (30 school buses, more than a count limit of 25: `_Compiler.mostly_kept`): the pages and count of
    the statement that lists the photos with "exit" (no counts)."""
    monkeypatch.setattr(compile_module, "COUNT_LIMIT", 25)
    photos, labels = _exits_and_buses()
    engine = index_with_lines(index_url, photos, labels=labels)
    query = 'school bus AND NOT "exit"'
    for limit, offset in ((3, 0), (10, 20), (5, 24)):
        prepared = prepare(engine, query, limit=limit, offset=offset)
        assert "less the images where term 2 holds" in prepared.compiled.plan
        listed = prepare(engine, query, limit=limit, offset=offset, count=None)
        assert "less the images of term 2 (listed)" in listed.compiled.plan
        streamed, expected = execute(engine, prepared), execute(engine, listed)
        assert [(m.path, m.score) for m in streamed.matches] == [(m.path, m.score) for m in expected.matches]
        assert streamed.total == expected.total == 25
    engine.dispose()


def test_text_rows_are_stored_with_their_cells_and_words(tmp_path):
    engine = index_with_lines(str(tmp_path / "i.db"), SIGNS)
    with engine.connect() as conn:
        lines = conn.execute(sa.text(
            "SELECT path, line, content, cells FROM texts JOIN images USING (image_id) ORDER BY path, line")).all()
        words = conn.execute(sa.text("SELECT word, position FROM text_words ORDER BY word")).all()
    engine.dispose()
    assert [(Path(p).name, n, c, m) for p, n, c, m in lines] == [
        ("danger.jpg", 0, "DANGER", 0b000000001), ("shop.jpg", 0, "Open 24 hours", 0b100000000),
        ("street.jpg", 0, "Café RE16 TGK", 0b001000000), ("street.jpg", 1, "EXIT", 0b000000001)]
    assert [tuple(row) for row in words] == [  # a line of several words also has them run together, at -1
        ("0pen", 0), ("0pen24h0urs", -1), ("24", 1), ("cafe", 0), ("cafere16tgk", -1), ("danger", 0), ("ex1t", 0),
        ("h0urs", 2), ("re16", 1), ("tgk", 2)]


def test_a_version_5_index_is_upgraded_to_text_off(tmp_path):
    db = tmp_path / "old.db"
    engine = index_with_lines(str(db), {"a.jpg": []})
    engine.dispose()
    with sqlite3.connect(db) as conn:  # as version 5 left it: no text tables, no text setting
        conn.execute("DROP TABLE text_words")
        conn.execute("DROP TABLE texts")
        conn.execute("DELETE FROM meta WHERE key = 'text'")
        conn.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")
    with pytest.raises(SchemaVersionError, match=r"from before text; .* --text --reindex to read text too"):
        store.open_index(str(db), readonly=True)
    engine = store.open_index(str(db))
    with engine.connect() as conn:
        settings = store.read_settings(conn)
        version = conn.execute(sa.text("SELECT value FROM meta WHERE key = 'schema_version'")).scalar_one()
        kept = conn.execute(sa.text("SELECT COUNT(*) FROM image_labels")).scalar_one()
        assert conn.execute(sa.text("SELECT COUNT(*) FROM texts")).scalar_one() == 0
    engine.dispose()
    assert (version, settings.text, settings.objects, kept) == (str(store.SCHEMA_VERSION), False, True, 1)


def test_a_query_for_text_in_an_index_without_it_says_so(tmp_path):
    engine = index_with_lines(str(tmp_path / "i.db"), {"a.jpg": []})
    with engine.begin() as conn:
        store.write_settings(conn, store.tables(conn), IndexSettings("efficientnet-lite0", 448, "fp32", text=False))
    result = CliRunner().invoke(cli, ["query", '"stop"', "--db", str(tmp_path / "i.db")])
    engine.dispose()
    assert result.exit_code == 0
    assert ("this index was built without text (--no-text), so quoted text finds none; imgidx index FOLDER --text "
            "--reindex reads it") in result.output


def test_quoted_text_without_a_letter_is_refused(tmp_path):
    index_with_lines(str(tmp_path / "i.db"), {"a.jpg": []}).dispose()
    result = CliRunner().invoke(cli, ["query", '"!!!"', "--db", str(tmp_path / "i.db")])
    assert (result.exit_code, result.stderr) == (1, (
        "Error: column 1: \"!!!\" holds no letter or digit to look for in the photos' text\n  \"!!!\"\n  ^\n"))


# --- imgidx index --text, then imgidx query, with a fake reader ---------------------------------------------

#: Colour -> the line the fake reader reads where a photo holds it (colours no fake model uses).
WORDS = {(255, 128, 0): "DANGER", (0, 128, 128): "OPEN"}


class FakeReader:
    """Implements `indexer.text.TextReader.read`: a line around each `WORDS` colour a photo holds."""

    def read(self, pixels, photo_size=None):
        height, width = pixels.shape[:2]
        out_w, out_h = photo_size or (width, height)
        lines = []
        for colour, words in WORDS.items():
            near = np.all(np.abs(pixels.astype(np.int16) - np.array(colour, np.int16)) <= 30, axis=-1)
            if near.sum() < 16:
                continue
            rows, cols = np.flatnonzero(near.any(axis=1)), np.flatnonzero(near.any(axis=0))
            sx, sy = out_w / width, out_h / height
            lines.append(Line(cols[0] * sx, rows[0] * sy, (cols[-1] + 1) * sx, (rows[-1] + 1) * sy, words, 0.97))
        return lines


def painted(path: Path, colour=None, box=None) -> None:
    """A grey photo with a block of ``colour`` striped black, as letters stripe a sign."""
    pixels = np.full((300, 400, 3), 128, np.uint8)
    if colour is not None:
        x0, y0, x1, y1 = box
        pixels[y0:y1, x0:x1] = colour
        pixels[y0 + 2 : y1 - 2 : 4, x0 + 2 : x1 - 2] = 0
    Image.fromarray(pixels).save(path)


@pytest.fixture
def fake_models(monkeypatch):
    def load_model(name, weights=None, precision="auto"):
        model = FakeBackbone()
        model.name, model.precision = name, precision
        return model

    monkeypatch.setattr("indexer.models.load_model", load_model)
    monkeypatch.setattr("indexer.text.Readers", lambda: FakeReader)


def test_index_with_text_then_query_it(tmp_path, fake_models):
    folder = tmp_path / "photos"
    folder.mkdir()
    painted(folder / "sign.png", (255, 128, 0), (20, 20, 120, 60))  # DANGER, top-left
    painted(folder / "shop.png", (0, 128, 128), (10, 10, 110, 50))  # OPEN, top-left
    painted(folder / "door.png", (0, 128, 128), (280, 240, 390, 290))  # OPEN, bottom-right
    painted(folder / "wall.png")
    db = str(tmp_path / "index.db")
    run = CliRunner()
    indexed = run.invoke(cli, ["index", str(folder), "--db", db, "--model", "efficientnet-lite0", "--precision",
                               "fp32", "--no-objects", "--no-faces", "--text", "-q"])
    assert indexed.exit_code == 0, indexed.output
    assert indexed.stdout.startswith("4 indexed") and indexed.stdout.endswith("; 3 lines of text found\n")
    danger = run.invoke(cli, ["query", '"danger"', "--db", db, "--paths"])
    assert (danger.exit_code, danger.stdout) == (0, f"{folder / 'sign.png'}\n")
    top_left = run.invoke(cli, ["query", '"open" in top-left', "--db", db])
    assert top_left.exit_code == 0
    assert top_left.stdout.splitlines()[1:] == [f"1    97%  {folder / 'shop.png'}  \"open\": top-left (97%)", "1 match"]
    anywhere = run.invoke(cli, ["query", '"open"', "--db", db, "--paths"])
    assert anywhere.stdout.splitlines() == [str(folder / "door.png"), str(folder / "shop.png")]
    refused = run.invoke(cli, ["index", str(folder), "--db", db, "--no-text"])
    assert (refused.exit_code, refused.stderr) == (1, (
        "Error: the index holds labels from efficientnet-lite0 at size 448 (fp32, with text), not efficientnet-lite0 "
        "at size 448 (fp32, without text); pass --reindex to rebuild it, or leave out --model/--size/--precision"
        "/--text/--no-text to keep its settings\n"))
    page = tmp_path / "found.html"
    assert run.invoke(cli, ["query", '"danger"', "--db", db, "--html", str(page)]).exit_code == 0
    assert ('<div class="bbox text" title="&quot;DANGER&quot; 97%" style="left:5.00%;top:6.67%;width:25.00%;'
            'height:13.33%"><span>&quot;DANGER&quot; 97%</span></div>') in page.read_text()
    out = tmp_path / "redacted"
    redacted = run.invoke(cli, ["redact", '"danger"', "--db", db, "--out", str(out)])
    assert redacted.exit_code == 0, redacted.output
    copy, = [path for path in out.rglob("*.png")]
    before, after = (np.asarray(Image.open(p).convert("RGB")).astype(int) for p in (folder / "sign.png", copy))
    assert np.abs(after[25:55, 25:115] - before[25:55, 25:115]).mean() > 10  # the sign is covered
    assert np.array_equal(after[150:, 200:], before[150:, 200:])  # the rest is not
    shown = run.invoke(cli, ["show", str(folder / "sign.png"), "--db", db])
    assert "text: 1 line\n  \"DANGER\" 97% at (20, 20)-(120, 60)" in shown.stdout


# --- the real models (slow) -----------------------------------------------------------------------------


def sign(words: str, size: int, at: tuple[int, int], shape=(480, 640), background=(235, 235, 225), ink=(150, 0, 0)):
    image = Image.new("RGB", shape[::-1], background)
    ImageDraw.Draw(image).text(at, words, font=ImageFont.truetype(str(FONT), size), fill=ink)
    return np.asarray(image)


@pytest.mark.slow
@pytest.mark.parametrize("precision", [text.INT8, text.FP32])
def test_the_reader_reads_rendered_signs_and_prints_nothing(capfd, precision):
    reader = text.TextReader(precision=precision)
    lines = reader.read(sign("DANGER", 56, (30, 30)))
    empty = reader.read(np.full((480, 640, 3), 120, np.uint8))
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert [line.text for line in lines] == ["DANGER"] and lines[0].confidence > 0.9
    inked = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((30, 30), "DANGER", font=ImageFont.truetype(str(FONT), 56))
    for found, true, outward in zip(lines[0][:4], inked, (-1, -1, 1, 1)):  # around the ink, by less than 10 px
        assert 0 <= (found - true) * outward <= 10
    assert empty == []


@pytest.mark.slow
def test_index_with_the_real_reader_then_query(tmp_path, monkeypatch):
    def load_model(name, weights=None, precision="auto"):
        model = FakeBackbone()
        model.name, model.precision = name, precision
        return model

    monkeypatch.setattr("indexer.models.load_model", load_model)
    folder = tmp_path / "signs"
    folder.mkdir()
    Image.fromarray(sign("DANGER", 56, (20, 20))).save(folder / "danger.png")
    Image.fromarray(sign("OPEN", 48, (30, 25), ink=(0, 80, 0))).save(folder / "open.png")
    Image.fromarray(sign("OPEN", 48, (440, 380), ink=(0, 0, 120))).save(folder / "open-low.png")
    Image.fromarray(np.full((480, 640, 3), 200, np.uint8)).save(folder / "blank.png")
    db = str(tmp_path / "index.db")
    run = CliRunner()
    indexed = run.invoke(cli, ["index", str(folder), "--db", db, "--model", "efficientnet-lite0", "--precision",
                               "fp32", "--no-objects", "--no-faces", "--text", "-q"])
    assert indexed.exit_code == 0, indexed.output
    assert indexed.stdout.endswith("; 3 lines of text found\n")
    danger = run.invoke(cli, ["query", '"danger"', "--db", db, "--paths"])
    assert (danger.exit_code, danger.stdout) == (0, f"{folder / 'danger.png'}\n")
    top_left = run.invoke(cli, ["query", '"open" in top-left', "--db", db, "--paths"])
    assert (top_left.exit_code, top_left.stdout) == (0, f"{folder / 'open.png'}\n")
    low = run.invoke(cli, ["query", '"open" in bottom-right', "--db", db, "--paths"])
    assert (low.exit_code, low.stdout) == (0, f"{folder / 'open-low.png'}\n")


def test_merge_carries_the_text(tmp_path):
    index_with_lines(str(tmp_path / "a.db"), {"danger.jpg": SIGNS["danger.jpg"]}).dispose()
    index_with_lines(str(tmp_path / "b.db"), {"street.jpg": SIGNS["street.jpg"]}).dispose()
    into = str(tmp_path / "all.db")
    merged = CliRunner().invoke(cli, ["merge", str(tmp_path / "a.db"), str(tmp_path / "b.db"), "--into", into, "-q"])
    assert merged.exit_code == 0, merged.output
    engine = store.open_index(into, readonly=True)
    assert found(engine, '"danger" OR "re16 tgk"') == [("danger.jpg", (("top-left",), ())),
                                                      ("street.jpg", ((), ("bottom-left",)))]
    engine.dispose()


def test_codes_match_however_they_are_spaced(tmp_path):
    engine = index_with_lines(str(tmp_path / "i.db"), {
        "boat.jpg": [Line(10, 10, 200, 60, "MS815AJ", 0.95)], "bike.jpg": [Line(10, 400, 200, 450, "SV 6260", 0.9)]})
    assert found(engine, '"MS 815 AJ"') == [("boat.jpg", (("top-left",),))]
    assert found(engine, '"sv6260"') == [("bike.jpg", (("bottom-left",),))]
    assert found(engine, '"sv62"') == [("bike.jpg", (("bottom-left",),))]
    assert found(engine, 'NOT "sv6260"') == [("boat.jpg", ())]
    assert found(engine, '"6260"') == [("bike.jpg", (("bottom-left",),))]
    engine.dispose()


def test_the_ray_engine_actor_reads_text_as_the_local_engine(monkeypatch):
    """`indexer.ray_engine.ModelActor` (called directly: no Ray) stores the lines with the labels."""
    import pickle

    from indexer import ray_engine

    monkeypatch.setattr("indexer.text.Readers", lambda: FakeReader)

    def load(settings):
        model = FakeBackbone()
        model.name, model.precision = settings.model, settings.precision
        return model

    settings = IndexSettings("fake", 448, "fp32", faces=False, objects=False, text=True)
    actor = ray_engine.ModelActor(load, settings, None)
    pixels = np.full((300, 400, 3), 128, np.uint8)
    pixels[20:60, 20:120] = (255, 128, 0)
    out = actor({"path": ["/p/a.png"], "kind": [ray_engine.SCORED], "digest": ["d"], "error": [None],
                 "width": [400], "height": [300], "pixels": [pixels],
                 **{key: [""] for key in ray_engine.TAKEN_KEYS}})
    assert out["kind"] == [ray_engine.SCORED], out["regions"]
    scores = pickle.loads(out["regions"][0])
    assert [(line.content, line.cells, line.words) for line in scores.texts] == [("DANGER", 0b1, ("danger",))]


def test_a_photo_without_text_costs_the_gate_pass_alone(monkeypatch):
    """`text.GATE_SIDE`: the detector first looks at a small copy; finding no line there, it reads no further."""
    import threading

    reader = text.TextReader.__new__(text.TextReader)  # no models: the detector's maps are given
    reader.side, reader.lock, sides = 480, threading.Lock(), []

    def probability_map(pixels, side=None):
        sides.append(side or reader.side)
        shape = text.detector_shape(*pixels.shape[:2], side or reader.side)
        return np.zeros(shape, np.float32)

    reader.probability_map = probability_map
    gate = text.GATE_SIDE
    assert reader.read(np.zeros((600, 800, 3), np.uint8)) == [] and sides == [gate]
    monkeypatch.setattr(text, "GATE_SIDE", None)  # no gate: the full pass runs
    assert reader.read(np.zeros((600, 800, 3), np.uint8)) == [] and sides == [gate, 480]


def mask_reader():
    """A reader without models whose detector marks the photo's red pixels as text, and whose recogniser reads
    every strip as DANGER; the shapes the detector was given are kept in ``reader.shapes``."""
    import threading

    reader = text.TextReader.__new__(text.TextReader)
    reader.side, reader.lock, reader.shapes = 480, threading.Lock(), []

    def probability_map(pixels, side=None):
        shape = text.detector_shape(*pixels.shape[:2], side or reader.side)
        reader.shapes.append(shape)
        red = Image.fromarray(np.where(pixels[..., 0] > 128, 255, 0).astype(np.uint8))
        return np.asarray(red.resize((shape[1], shape[0]), Image.Resampling.BILINEAR), np.float32) / 255

    reader.probability_map = probability_map
    reader.recognise = lambda strips: [("DANGER", 0.9)] * len(strips)
    return reader


def test_a_thick_blob_at_the_gate_is_not_a_line(monkeypatch):
    """`text.GATE_MAX_THICKNESS`: the detector's large solid blobs on real photos end the read at the gate."""
    reader = mask_reader()
    pixels = np.zeros((600, 800, 3), np.uint8)
    pixels[100:500, 150:650, 0] = 255
    assert reader.read(pixels) == [] and reader.shapes == [(320, 416)]
    monkeypatch.setattr(text, "GATE_MAX_THICKNESS", None)  # any line: the second look runs
    assert [line.text for line in reader.read(pixels)] == ["DANGER"] and len(reader.shapes) == 3


def test_a_thin_line_at_the_gate_is_read_at_the_full_side():
    reader = mask_reader()
    pixels = np.zeros((600, 800, 3), np.uint8)
    pixels[100:130, 200:420, 0] = 255
    (line,) = reader.read(pixels)
    assert line.text == "DANGER" and reader.shapes == [(320, 416), (480, 640)]
    assert line.left < 200 < 420 < line.right and line.top < 100 < 130 < line.bottom


def test_the_shipped_int8_detector_is_built_from_the_shipped_detector_with_todays_recipe():
    pytest.importorskip("openvino")
    from indexer.runtime import openvino_model

    assert openvino_model.shipped_model(text.int8_record()) == openvino_model.shipped_folder("openvino_text"), (
        "stale: run python bench/shipped_models.py --only openvino_text and commit indexer/data/openvino_text")


def test_an_int8_detector_built_from_another_detector_is_refused(monkeypatch):
    pytest.importorskip("openvino")
    monkeypatch.setattr(text, "detector_digest", lambda: "0" * 64)
    refused = (r"^the text detector's int8 model \(indexer/data/openvino_text\) is missing or was not built from "
               r"this imgidx's detector: reinstall imgidx$")
    with pytest.raises(text.TextReaderError, match=refused):
        text.TextReader(precision=text.INT8)


def test_a_damaged_int8_detector_is_refused_not_used(tmp_path, monkeypatch):
    import shutil

    pytest.importorskip("openvino")

    from indexer.errors import QuantizedModelError
    from indexer.runtime import openvino_model

    shipped = tmp_path / "openvino_text"
    shutil.copytree(openvino_model.shipped_folder("openvino_text"), shipped)
    (shipped / openvino_model.MODEL_BIN).write_bytes(b"\0" * 16)
    monkeypatch.setattr(openvino_model, "SHIPPED", ("openvino_text",))
    monkeypatch.setattr(openvino_model, "shipped_folder", lambda name: shipped)
    with pytest.raises(QuantizedModelError, match=r"model\.bin changed since it was built"):
        text.TextReader(precision=text.INT8)


def test_without_openvino_reading_text_is_one_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "openvino", None)  # as if the [openvino] extra were not installed
    with pytest.raises(text.TextReaderError, match=r"^reading text needs OpenVINO, which is not installed here: pip install openvino$"):
        text.TextReader()
