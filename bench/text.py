"""Text in photos (issue 22): what `imgidx index --text` reads and what quoted queries find, and what it costs.

Photos:

- **synthetic** (`make_signs`): 800x600 JPEGs made with Pillow from a fixed seed: words of signs, plates,
  menus and screens in the fonts on the machine (matplotlib's DejaVu and STIX, and Debian's DejaVu and
  Liberation where installed), at sizes from 14 to 90 px, turned from 0 to 30 degrees, on plain, dark,
  gradient and noisy backgrounds and on crops of the real photos (as a panel, or straight on the photo).
  Their truth is exact: the words and each line's box (the ink's bounds after turning).
- **without text** (`make_blank`): the same backgrounds without words, for the cost and for false reads.
- **real** (`REAL`): photos of ``../shared/realscenes-dev`` with signs, their words read by hand.

Everything is indexed by the real pipeline (`indexer.pipeline.index`, EfficientNet-Lite0 with the default
detectors), once with ``--text`` and once without, into indexes under a temporary folder, and searched with
`query.search.search`:

- **per query** (each distinct word of the truth, quoted): word recall (photos holding the word that the query
  returns) and precision (returned photos that hold it), micro totals over the synthetic and the real photos;
- **cells**: for each synthetic line, ``"WORD" in CELL`` for every cell: reported against the cells the line's
  true box occupies (`indexer.boxes.occupied`, the rule of every box);
- **slips**: the same matching offline with OCR's slips folded (`indexer.words.SLIPS`) and without, and which
  character confusions the reader made (aligned with difflib);
- **cost**: the run's wall and process CPU time per photo for the photos without text, ``--text`` against
  ``--no-text``, interleaved (A B B A), with the text pass's own seconds per photo with text and without. Two
  sets of photos without text (``--cost-sets``): the synthetic blanks (`make_blank`, plain, gradient and noisy
  backgrounds: `COST_PHOTOS` of them) and **real** ones (`real_without_text`): the realscenes-dev photos
  outside `REAL` where the full reader (fp32 detector at rapidocr's side 736, no gate) reads nothing.

``--gate-thickness 0,0.3`` runs the quality and cost runs for each thickest line the gate takes for text
(`text.GATE_MAX_THICKNESS`, a share of its map's shorter side; 0: any).

``--precisions int8,fp32`` runs all of it for each of the detector's precisions (`text.DETECTOR_PRECISION`).

``--sides 320,480,736`` instead runs the reader alone (`indexer.text.TextReader.read` on the photo as the
indexer hands it over) at each detector side (and ``--precisions``) over the same photos and prints the
offline matcher's word recall
and precision and the text pass's CPU per photo with text and without: how `text.DETECTION_SIDE` was chosen.

    python bench/text.py [--side 480] [--cost-sides 320,480] [--precisions int8,fp32] [--gate-thickness 0,0.3]
                         [--cost-sets blank,real] [--keep FOLDER] [--quick | --cost-only]
    python bench/text.py --sides 320,480,640,736 [--precisions int8,fp32] [--gate-thickness 0,0.3]
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

from indexer import boxes as box_rules, pipeline, store, text  # noqa: E402
from indexer.boxes import Box  # noqa: E402
from indexer.geometry import CELL_NAMES, cell_bounds  # noqa: E402
from indexer.models import DEFAULT_WORKING_SIZE  # noqa: E402
from indexer.words import folded, joined, searchable  # noqa: E402

DEV = ROOT.parent / "shared" / "realscenes-dev"
SEED = 22
SIZE = (800, 600)
SIGNS = 72
BLANKS = 24
#: The side the indexer decodes photos at for the default working size.
DECODE_SIDE = DEFAULT_WORKING_SIZE
#: Photos without text indexed for the cost (more than `BLANKS`, so the models' loading weighs little).
COST_PHOTOS = 48
#: The cost runs' rounds after the warm-up: this many pairs, each in one order and then the other.
COST_ROUND_PAIRS = 1
WORDS = [
    "DANGER", "EXIT", "OPEN", "STOP", "MENU", "CAFE", "PARKING", "NO ENTRY", "SALE 50%", "RE16 TGK", "Hotel Bristol",
    "Central Station", "Pizza Napoli", "Welcome", "Apotheke", "Bäckerei", "OPEN 24 HOURS", "Platform 9", "Toilets",
    "Fire Door Keep Closed", "Bus Stop", "Museum", "Ticket Office", "Café de Flore", "Wine Bar", "Espresso 2.50",
    "KL 4021 XB", "Library", "Pharmacy", "Push", "Pull", "Sold Out", "Login", "Settings", "Battery 87%",
    "Meeting at 10:30", "Hello World", "Oil Change", "Lido", "Gate B12",
]
SIZES = (14, 20, 28, 40, 56, 90)
#: Room around the photo where the ink of a line is drawn to see whether it runs off the photo.
MARGIN = 400
ANGLES = (0, 0, 0, 0, 6, -12, 20, 30)
BACKGROUNDS = ("plain", "dark", "gradient", "noise", "panel", "photo")
#: Real photos of realscenes-dev with text a person can read at the indexer's decode, read by hand: the words
#: (one string a line, as they are spelled on the sign).
REAL: dict[str, list[str]] = {
    "c128_000000000073.jpg": ["SV-6260"],
    "c128_000000000081.jpg": ["AIRFRANCE"],
    "c128_000000000094.jpg": ["NO NAME RESTAURANT", "PEACE", "WAY", "HOTEL"],
    "c128_000000000113.jpg": ["SHADES"],
    "c128_000000000142.jpg": ["Silk", "Smooth and", "Delicious", "Dark", "Chocolate", "Dreams"],
    "c128_000000000151.jpg": ["STOP"],
    "c128_000000000247.jpg": ["NAVION L-17"],
    "c128_000000000394.jpg": ["SKIMMER"],
    "c128_000000000400.jpg": ["E-820 CR", "MS 815 AJ"],
    "c128_000000000415.jpg": ["USTA", "Airline"],
    "c128_000000000471.jpg": ["LOS ANGELES UNIFIED SCHOOL DISTRICT", "3105"],
    "c128_000000000641.jpg": ["BERKELEY BART"],
}


def fonts() -> list[Path]:
    shipped = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    found = [shipped / name for name in ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf",
                                         "DejaVuSansMono.ttf", "DejaVuSans-Oblique.ttf", "STIXGeneral.ttf",
                                         "DejaVuSerif-Bold.ttf")]
    system = Path("/usr/share/fonts/truetype")
    found += sorted(system.glob("liberation/Liberation*-Regular.ttf")) + sorted(system.glob("liberation/*-Bold.ttf"))
    return [path for path in found if path.is_file()]


def background(kind: str, rng: random.Random, photos: list[Path]) -> Image.Image:
    width, height = SIZE
    if kind in ("plain", "panel"):
        return Image.new("RGB", SIZE, tuple(rng.randrange(170, 250) for _ in range(3)))
    if kind == "dark":
        return Image.new("RGB", SIZE, tuple(rng.randrange(10, 70) for _ in range(3)))
    if kind == "gradient":
        a, b = np.array([rng.randrange(120, 255) for _ in range(3)]), np.array([rng.randrange(0, 120) for _ in range(3)])
        t = np.linspace(0, 1, width)[None, :, None]
        return Image.fromarray(np.broadcast_to(a + (b - a) * t, (height, width, 3)).astype(np.uint8))
    if kind == "noise":
        base = np.random.default_rng(rng.randrange(1 << 30)).normal(150, 40, (height // 4, width // 4, 3))
        return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).resize(SIZE, Image.Resampling.BICUBIC)
    photo = Image.open(rng.choice(photos)).convert("RGB")
    return photo.resize(SIZE, Image.Resampling.BILINEAR)


def ink_for(kind: str, rng: random.Random, under: np.ndarray) -> tuple[int, int, int]:
    if kind == "dark":
        return tuple(rng.randrange(200, 256) for _ in range(3))
    if kind == "photo":  # the contrasting extreme of what lies under the words
        return (255, 255, 255) if under.mean() < 128 else (0, 0, 0)
    return tuple(rng.randrange(0, 90) for _ in range(3))


def draw_line(image: Image.Image, words: str, font: ImageFont.FreeTypeFont, at: tuple[int, int], angle: float,
              ink, panel=None) -> tuple[float, float, float, float] | None:
    """Draw ``words`` turned by ``angle`` about their centre; the ink's bounds, or None if it leaves the photo."""
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    x0, y0, x1, y1 = draw.textbbox(at, words, font=font)
    if panel is not None:
        pad = max(4, (y1 - y0) // 3)
        draw.rectangle((x0 - pad, y0 - pad, x1 + pad, y1 + pad), fill=panel + (255,))
    draw.text(at, words, font=font, fill=tuple(ink) + (255,))
    centre = ((x0 + x1) / 2, (y0 + y1) / 2)
    layer = layer.rotate(angle, resample=Image.Resampling.BICUBIC, center=centre)
    # The ink's bounds on a canvas with a margin, so words running off the photo are seen and refused (their
    # truth would name letters the photo does not show).
    margin = MARGIN
    ink_only = Image.new("RGBA", (image.width + 2 * margin, image.height + 2 * margin), (0, 0, 0, 0))
    ImageDraw.Draw(ink_only).text((at[0] + margin, at[1] + margin), words, font=font, fill=(255, 255, 255, 255))
    shown = ink_only.rotate(angle, resample=Image.Resampling.BICUBIC, center=(centre[0] + margin, centre[1] + margin))
    found = shown.getchannel("A").point(lambda v: 255 if v > 64 else 0).getbbox()
    if found is None:
        return None
    bounds = (found[0] - margin, found[1] - margin, found[2] - margin, found[3] - margin)
    if bounds[0] <= 0 or bounds[1] <= 0 or bounds[2] >= image.width or bounds[3] >= image.height:
        return None
    image.alpha_composite(layer) if image.mode == "RGBA" else image.paste(layer, (0, 0), layer)
    return tuple(float(v) for v in bounds)


def make_signs(folder: Path, count: int, rng: random.Random, photos: list[Path]) -> dict[str, list[dict]]:
    """``count`` photos with one or two lines each; the truth per file: lines with words and box."""
    families = fonts()
    truth: dict[str, list[dict]] = {}
    made = 0
    while made < count:
        kind = BACKGROUNDS[made % len(BACKGROUNDS)]
        image = background(kind, rng, photos)
        lines = []
        for _ in range(1 + (rng.random() < 0.4)):
            words = rng.choice(WORDS)
            size = rng.choice(SIZES)
            font = ImageFont.truetype(str(rng.choice(families)), size)
            angle = rng.choice(ANGLES) * rng.choice((1, -1))
            at = (rng.randrange(10, SIZE[0] - 60), rng.randrange(10, SIZE[1] - 30))
            under = np.asarray(image.crop((at[0], at[1], at[0] + 40, at[1] + 20)))
            panel = tuple(rng.randrange(200, 256) for _ in range(3)) if kind == "panel" else None
            ink = ink_for(kind, rng, under)
            overlaps = any(not (at[1] > line["box"][3] + 10 or at[1] + size * 1.3 < line["box"][1] - 10) for line in lines)
            if overlaps:
                continue
            box = draw_line(image, words, font, at, angle, ink, panel)
            if box is not None:
                lines.append({"words": words, "box": box, "size": size, "angle": angle, "font": font.path.split("/")[-1],
                              "background": kind})
        if not lines:
            continue
        name = f"sign-{made:03d}.jpg"
        image.convert("RGB").save(folder / name, quality=90)
        truth[name] = lines
        made += 1
    return truth


def make_blank(folder: Path, count: int, rng: random.Random, photos: list[Path]) -> list[str]:
    names = []
    for number in range(count):
        kind = ("plain", "dark", "gradient", "noise")[number % 4]
        name = f"blank-{number:03d}.jpg"
        background(kind, rng, photos).filter(ImageFilter.SMOOTH).save(folder / name, quality=90)
        names.append(name)
    return names


#: The full reader that decides which real photos hold no text: rapidocr's side, the ONNX detector, no gate.
FULL_READER_SIDE = 736


def real_without_text(folder: Path) -> list[str]:
    """Links in ``folder`` to the realscenes-dev photos outside `REAL` where the full reader
    (`FULL_READER_SIDE`, fp32, no gate) reads nothing, decoded as the indexer decodes them: real photos
    without text, as far as the best reader here can tell."""
    from indexer import faces, images

    folder.mkdir(parents=True, exist_ok=True)
    gate, text.GATE_SIDE = text.GATE_SIDE, None
    try:
        reader = text.TextReader(FULL_READER_SIDE, text.FP32)
        names = []
        for path in sorted((DEV / "images").glob("*.jpg")):
            if path.name in REAL:
                continue
            picture = images.load(path, DECODE_SIDE)
            if not reader.read(faces.detection_pixels(picture.pixels), (picture.width, picture.height)):
                names.append(path.name)
                if not (folder / path.name).exists():
                    (folder / path.name).symlink_to(path)
    finally:
        text.GATE_SIDE = gate
    return names


# --- calibrating the int8 detector (bench/shipped_models.py) ----------------------------------------------

#: The calibration signs' seed: another set of signs than the bench's (`SEED`).
CALIBRATION_SEED = 2201
CALIBRATION_SIGNS, CALIBRATION_BLANKS = 40, 8
#: Every this-many-th realscenes-dev photo outside `REAL` joins the calibration.
CALIBRATION_PHOTO_STEP = 2


def calibration_photos(folder: Path) -> list[Path]:
    """Photos for the int8 detector's ranges, none of the bench's: signs and blanks made into ``folder`` from
    `CALIBRATION_SEED`, on realscenes-dev photos outside `REAL`, and half of those photos themselves."""
    scenes = [path for path in sorted((DEV / "images").glob("*.jpg")) if path.name not in REAL]
    if not scenes:
        sys.exit(f"{DEV} is missing: the text detector is calibrated on the real photos there")
    rng = random.Random(CALIBRATION_SEED)
    made = [folder / name for name in make_signs(folder, CALIBRATION_SIGNS, rng, scenes)]
    made += [folder / name for name in make_blank(folder, CALIBRATION_BLANKS, rng, scenes)]
    return made + scenes[::CALIBRATION_PHOTO_STEP]


def calibration_samples(paths: list[Path]):
    """Each photo as the text pass sees it (decoded as `index` does, shrunk as the detectors are handed it),
    at the gate's side and at the detector's."""
    from indexer import faces, images

    for path in paths:
        pixels = faces.detection_pixels(images.load(path, DECODE_SIDE).pixels)
        for side in (text.GATE_SIDE, text.DETECTION_SIDE):
            yield text.detector_input(pixels, side)


# --- measuring -------------------------------------------------------------------------------------------


def index(folder: Path, db: Path, with_text: bool) -> tuple[float, float, object]:
    """Index ``folder`` into a new ``db`` with the real models; wall and process CPU seconds, and the summary."""
    from indexer.cli.core import load_resolved

    if db.exists():
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    engine = store.open_index(str(db))
    wall, cpu = time.perf_counter(), time.process_time()
    summary = pipeline.index(
        engine, [folder],
        lambda s: load_resolved(s.model, None, s.runtime, s.precision, s.working_size, s.quantization),
        model="efficientnet-lite0", with_text=with_text,
    )
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    engine.dispose()
    return wall, cpu, summary


def contains(words: list[str], query: list[str]) -> bool:
    """The query's words, in order, each as a word or its start, or run together as the start of the line's words
    run together (the matcher's rule, `query.compile`)."""
    return any(all(words[i + k].startswith(q) for k, q in enumerate(query))
               for i in range(len(words) - len(query) + 1)) or joined(words).startswith(joined(query))


def holders(truth_words: dict[str, set[str]], query: str, words_of=None) -> set[str]:
    """The photos whose true lines hold ``query`` by the matcher's rule ("STOP" is in "Bus Stop")."""
    words_of = words_of or searchable
    return {name for name, lines in truth_words.items() if any(contains(words_of(l), words_of(query)) for l in lines)}


def plain_words(line: str) -> list[str]:
    return folded(line).split()


def query_table(engine, truth_words: dict[str, set[str]], universe: set[str]) -> tuple[list[tuple], tuple[int, int, int]]:
    """Per query: (query, holding, returned, true positives); and the micro totals (tp, returned, holding)."""
    from query.search import search

    rows, tp_all, returned_all, holding_all = [], 0, 0, 0
    queries = sorted({words for lines in truth_words.values() for words in lines})
    for words in queries:
        holding = holders(truth_words, words)
        found = {Path(m.path).name for m in search(engine, f'"{words}"', limit=None).matches} & universe
        tp = len(found & holding)
        rows.append((words, len(holding), len(found), tp))
        tp_all, returned_all, holding_all = tp_all + tp, returned_all + len(found), holding_all + len(holding)
    return rows, (tp_all, returned_all, holding_all)


def true_cells(box, width: int, height: int) -> set[int]:
    where, _ = box_rules.occupied(Box(0, *box, 1.0), cell_bounds(width, height))
    return {int(c) for c in np.flatnonzero(where)}


def cell_scores(engine, truth: dict[str, list[dict]]) -> tuple[int, int, int]:
    """(tp, reported, true) over (photo, line, cell) for ``"FIRST WORD" in CELL`` of every line."""
    from query.search import search

    tp = reported = expected = 0
    for name, lines in truth.items():
        for line in lines:
            first = line["words"].split()[0]
            want = true_cells(line["box"], *SIZE)
            got = set()
            result = search(engine, f'"{first}"', limit=None)
            for match in result.matches:
                if Path(match.path).name == name:
                    got = {CELL_NAMES.index(c) for c in match.terms[0].cells}
            tp, reported, expected = tp + len(got & want), reported + len(got), expected + len(want)
    return tp, reported, expected


def slips(read_lines: dict[str, list[str]], truth_words: dict[str, set[str]]) -> tuple[Counter, dict]:
    """Character confusions (truth -> read, case folded) in lines the reader read nearly right, and word
    recall/precision of the offline matcher with and without OCR's slips folded."""
    confusions: Counter = Counter()
    for name, truths in truth_words.items():
        for truth in truths:
            want = folded(truth)
            best = max((folded(r) for r in read_lines.get(name, [])), default="",
                       key=lambda r: difflib.SequenceMatcher(None, want, r).ratio())
            matcher = difflib.SequenceMatcher(None, want, best)
            if matcher.ratio() < 0.6:
                continue
            for op, a0, a1, b0, b1 in matcher.get_opcodes():
                if op == "replace" and a1 - a0 == b1 - b0:
                    confusions.update(f"{x}->{y}" for x, y in zip(want[a0:a1], best[b0:b1]))
    figures = {}
    for label, words_of in (("folded", plain_words), ("slips folded", searchable)):
        tp = found = holding = 0
        for query in sorted({w for lines in truth_words.values() for w in lines}):
            asked = words_of(query)
            hold = holders(truth_words, query, words_of)
            hit = {n for n, lines in read_lines.items() if any(contains(words_of(line), asked) for line in lines)}
            tp, found, holding = tp + len(hit & hold), found + len(hit), holding + len(hold)
        figures[label] = (tp, found, holding)
    return confusions, figures


def compare_sides(sides: list[int], precisions: list[str], thicknesses: list[float], folder: Path, truth: dict,
                  blanks: list[str]) -> None:
    """The reader alone at each detector side and precision: offline word recall and precision, CPU per photo
    (the readers take turns photo by photo, so a change in the machine's load weighs on each alike)."""
    from indexer import faces, images

    scenes = real_without_text(folder / "scenes")
    photos = {**{f"signs/{n}": {line["words"] for line in lines} for n, lines in truth.items()},
              **{f"blank/{n}": set() for n in blanks}, **{f"real/{n}": set(lines) for n, lines in REAL.items()},
              **{f"scenes/{n}": set() for n in scenes}}
    decoded = {}
    for name in photos:
        picture = images.load(folder / name, DECODE_SIDE)
        decoded[name] = (faces.detection_pixels(picture.pixels), (picture.width, picture.height))
    print(f"# bench/text.py --sides {','.join(map(str, sides))} --precisions {','.join(precisions)} --gate-thickness "
          f"{','.join(map(str, thicknesses))} --gate "
          f"{text.GATE_SIDE or 0}: reader alone, {len(truth)} synthetic photos with text, {len(blanks)} without, "
          f"{len(REAL)} real, {len(scenes)} real without text; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
          f"load {os.getloadavg()}")
    built = {(side, precision): text.TextReader(side, precision) for side in sides for precision in precisions}
    readers = {f"side {side:4d} {precision} gate thickness {thickness or 'any'}": (built[side, precision], thickness)
               for side in sides for precision in precisions for thickness in thicknesses}
    read = {key: {} for key in readers}
    cpu = {key: {"signs": 0.0, "blank": 0.0, "real": 0.0, "scenes": 0.0} for key in readers}
    for name, (pixels, size) in decoded.items():
        for key, (reader, thickness) in readers.items():
            text.GATE_MAX_THICKNESS = thickness or None
            start = time.thread_time()
            read[key][name] = [line.text for line in reader.read(pixels, size)]
            cpu[key][name.split("/")[0]] += time.thread_time() - start
    counts = {kind: sum(n.startswith(kind + "/") for n in photos) for kind in ("signs", "blank", "real", "scenes")}
    for key in readers:
        for kind in ("signs", "real"):
            subset = {n: w for n, w in photos.items() if n.startswith(kind) or (kind == "signs" and n.startswith("blank"))}
            _, figures = slips({n: read[key][n] for n in subset}, subset)
            print(f"{key} {kind:5}: slips folded {prf(*figures['slips folded'])}; folded only "
                  f"{prf(*figures['folded'])}")
        false = sum(bool(read[key][n]) for n in photos if n.startswith("blank"))
        false_real = sum(bool(read[key][n]) for n in photos if n.startswith("scenes"))
        print(f"{key} CPU per photo: with text {1000 * cpu[key]['signs'] / counts['signs']:.0f} ms (synthetic), "
              f"{1000 * cpu[key]['real'] / counts['real']:.0f} ms (real), without text "
              f"{1000 * cpu[key]['blank'] / counts['blank']:.1f} ms (synthetic), "
              f"{1000 * cpu[key]['scenes'] / max(1, counts['scenes']):.1f} ms (real); photos without text with "
              f"something read: {false}/{counts['blank']} (synthetic), {false_real}/{counts['scenes']} (real)")
    print(f"load after: {os.getloadavg()}")


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def prf(tp: int, returned: int, holding: int) -> str:
    precision = tp / returned if returned else float("nan")
    recall = tp / holding if holding else float("nan")
    return f"recall {recall:.3f} ({tp}/{holding}), precision {precision:.3f} ({tp}/{returned})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--side", type=int, default=text.DETECTION_SIDE, help="the detector's shorter side")
    parser.add_argument("--keep", type=Path, help="make the photos here and keep them")
    parser.add_argument("--quick", action="store_true", help="a third of the photos, no cost runs")
    parser.add_argument("--cost-only", action="store_true", help="the cost runs alone, no quality runs")
    parser.add_argument("--sides", help="compare detector sides, reader alone (comma-separated)")
    parser.add_argument("--gate", type=int, default=text.GATE_SIDE,
                        help="the gate pass's side (text.GATE_SIDE; 0: none)")
    parser.add_argument("--precisions", default=text.DETECTOR_PRECISION,
                        help=f"the detector's precisions compared, comma-separated ({text.INT8}, {text.FP32})")
    parser.add_argument("--cost-sides", type=lambda v: [int(x) for x in v.split(",")],
                        help="detector sides whose indexing cost is measured (default: --side)")
    parser.add_argument("--gate-thickness", default=str(text.GATE_MAX_THICKNESS or 0),
                        help="the gate's thickest line (text.GATE_MAX_THICKNESS), comma-separated values compared "
                             "(0: any)")
    parser.add_argument("--cost-round-pairs", type=int, default=COST_ROUND_PAIRS,
                        help="cost rounds after the warm-up, in pairs of opposite orders")
    parser.add_argument("--cost-sets", default="blank,real",
                        help="photos without text for the cost: synthetic 'blank', 'real' (comma-separated)")
    args = parser.parse_args()
    text.DETECTION_SIDE = args.side  # the readers the runs build read it (`text.TextReader`)
    text.GATE_SIDE = args.gate or None
    rng = random.Random(SEED)
    photos = sorted((DEV / "images").glob("*.jpg"))
    if not photos:
        sys.exit(f"{DEV} is missing: this bench reads the real photos from there")
    work = Path(tempfile.mkdtemp(prefix="imgidx-text-"))
    folder = args.keep or work / "photos"
    signs_folder, blank_folder = folder / "signs", folder / "blank"
    signs_folder.mkdir(parents=True, exist_ok=True)
    blank_folder.mkdir(parents=True, exist_ok=True)
    scale = 3 if args.quick else 1
    truth = make_signs(signs_folder, SIGNS // scale, rng, photos)
    blanks = make_blank(blank_folder, BLANKS // scale, rng, photos)
    real_folder = folder / "real"
    real_folder.mkdir(exist_ok=True)
    for name in REAL:
        if not (real_folder / name).exists():
            (real_folder / name).symlink_to(DEV / "images" / name)
    precisions = args.precisions.split(",")
    thicknesses = [float(value) for value in args.gate_thickness.split(",")]
    if args.sides:
        compare_sides([int(side) for side in args.sides.split(",")], precisions, thicknesses, folder, truth, blanks)
        return
    print(f"# bench/text.py --side {args.side} --gate {text.GATE_SIDE or 0} --precisions {args.precisions} "
          f"--gate-thickness {args.gate_thickness}; {len(truth)} synthetic photos with text, {len(blanks)} without, "
          f"{len(REAL)} real; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load {os.getloadavg()}")
    for precision in [] if args.cost_only else precisions:
        for thickness in thicknesses:
            text.DETECTOR_PRECISION, text.GATE_MAX_THICKNESS = precision, thickness or None
            print(f"\n## the detector in {precision}, the gate's thickest line: {thickness or 'any'}")
            quality(folder, work / f"text-{precision}-{thickness}.db", truth, blanks)
    if args.quick:
        return

    settings = [(side, precision, thickness) for side in args.cost_sides or [args.side]
                for precision in precisions for thickness in thicknesses]
    for kind in args.cost_sets.split(","):
        if kind == "blank":
            cost_folder = work / "cost"
            cost_folder.mkdir()
            make_blank(cost_folder, COST_PHOTOS, rng, photos)
            label = f"{COST_PHOTOS} synthetic photos without text"
        else:
            cost_folder = work / "cost-real"
            found = real_without_text(cost_folder)
            label = (f"{len(found)} realscenes-dev photos outside REAL where the fp32 reader at {FULL_READER_SIDE} "
                     f"without the gate reads nothing")
        cost(work, cost_folder, label, settings, args.cost_round_pairs)
    if args.cost_only:
        return
    text.GATE_MAX_THICKNESS = thicknesses[0] or None
    for precision in precisions:
        text.DETECTOR_PRECISION = precision
        wall, cpu, summary = index(signs_folder, work / f"signs-{precision}.db", True)
        per_photo = 1000 * summary.text_seconds / max(1, summary.indexed)
        lines = summary.lines_found / max(1, summary.indexed)
        print(f"text pass on photos with text, {precision}: {per_photo:.0f} ms a photo on the detector threads "
              f"({lines:.1f} lines a photo); load {os.getloadavg()[0]:.2f}")


def quality(folder: Path, db: Path, truth: dict, blanks: list[str]) -> None:
    """Index ``folder`` with text into ``db`` and print what the queries find against the truth."""
    wall, cpu, summary = index(folder, db, with_text=True)
    print(f"indexed with --text: {summary.indexed} photos, {summary.lines_found} lines, {wall:.1f} s, "
          f"text pass {summary.text_seconds:.1f} s on the detector threads")
    engine = store.open_index(str(db), readonly=True)
    with engine.connect() as conn:
        ids = dict(conn.execute(store.tables(conn).images.select().with_only_columns(
            store.tables(conn).images.c.path, store.tables(conn).images.c.image_id)).all())
        read = store.read_texts(conn, list(ids.values()))
    read_lines = {Path(path).name: [line.text for line in read.get(image_id, [])] for path, image_id in ids.items()}

    synthetic = {name: {line["words"] for line in lines} for name, lines in truth.items()}
    synthetic.update({name: set() for name in blanks})
    real = {name: set(lines) for name, lines in REAL.items()}
    for label, words in (("synthetic", synthetic), ("real", real)):
        if not words:
            continue
        rows, totals = query_table(engine, words, set(words))
        print(f"\n{label}: per query (holding / returned / right)")
        for query, holding, returned, tp in rows:
            print(f"  {query!r:28} {holding:3d} {returned:3d} {tp:3d}")
        print(f"{label} words: {prf(*totals)}")
    print("\nmissed lines (truth: what was read in that photo):")
    for name, lines in sorted({**{n: {l["words"] for l in ls} for n, ls in truth.items()}, **real}.items()):
        for line in sorted(lines):
            if not any(contains(searchable(r), searchable(line)) for r in read_lines.get(name, [])):
                print(f"  {name}: {line!r}: {read_lines.get(name, [])}")
    tp, reported, expected = cell_scores(engine, truth)
    print(f"\ncells of \"FIRST WORD\" per synthetic line: {prf(tp, reported, expected)}")
    false_reads = {name: read_lines.get(name) for name in blanks if read_lines.get(name)}
    print(f"photos without text with something read: {len(false_reads)} of {len(blanks)} {false_reads}")
    by_size: dict[int, list[int]] = {}
    for name, lines in truth.items():
        for line in lines:
            hit = any(contains(searchable(r), searchable(line["words"])) for r in read_lines.get(name, []))
            by_size.setdefault(line["size"], [0, 0])[0] += hit
            by_size[line["size"]][1] += 1
    print("lines found by font size (px on 600): " + ", ".join(f"{s}: {a}/{b}" for s, (a, b) in sorted(by_size.items())))
    confusions, figures = slips(read_lines, {**synthetic, **real})
    print(f"character confusions (truth->read): {dict(confusions.most_common(12))}")
    for label, totals in figures.items():
        print(f"offline matcher, {label}: {prf(*totals)}")
    engine.dispose()


def cost(work: Path, folder: Path, label: str, settings: list[tuple[int, str, float]],
         pairs: int = COST_ROUND_PAIRS) -> None:
    """Indexing ``folder``'s photos without text with ``--text`` at each detector side, precision and gate
    thickness against ``--no-text``: one warm-up run of each (models built and cached by the process), then
    ``pairs`` pairs of rounds in opposite orders; wall and process CPU time per photo, and their ratios to
    ``--no-text``."""
    configs = [None, *settings]
    times: dict = {c: [] for c in configs}
    print(f"\ncost: {label}, warm-up then {2 * pairs} rounds ({time.strftime('%H:%M UTC', time.gmtime())}, "
          f"load {os.getloadavg()})")
    for round_number, order in enumerate([configs] + [configs, configs[::-1]] * pairs):
        for config in order:
            if config is not None:
                text.DETECTION_SIDE, text.DETECTOR_PRECISION, thickness = config
                text.GATE_MAX_THICKNESS = thickness or None
            wall, cpu, summary = index(folder, work / "cost.db", config is not None)
            if round_number:
                times[config].append((wall / summary.indexed, cpu / summary.indexed))
    base_wall = sum(w for w, _ in times[None]) / len(times[None])
    base_cpu = sum(c for _, c in times[None]) / len(times[None])
    print(f"  --no-text                       {1000 * base_wall:6.0f} ms wall, {1000 * base_cpu:6.0f} ms CPU a photo")
    for config in settings:
        wall = sum(w for w, _ in times[config]) / len(times[config])
        cpu = sum(c for _, c in times[config]) / len(times[config])
        side, precision, thickness = config
        print(f"  --text, side {side:4d} {precision:4} gate thickness {thickness or 'any':<4} {1000 * wall:6.0f} ms wall, "
              f"{1000 * cpu:6.0f} ms CPU a "
              f"photo: {ratio(wall, base_wall)} wall, {ratio(cpu, base_cpu)} CPU of --no-text (goal: within 1.3x)")
        rounds = [ratio(c, base) for (_, c), (_, base) in zip(times[config], times[None])]
        print(f"    CPU against --no-text round by round: {', '.join(rounds)}")
    print(f"  {time.strftime('%H:%M UTC', time.gmtime())}, load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
