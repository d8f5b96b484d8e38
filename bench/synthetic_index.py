"""A synthetic imgidx index with realistic label and cell distributions, for query benchmarks.

The schema comes from `indexer.store.open_index` (so it is exactly `schema.sql`); the rows are bulk-loaded
with the standard library's sqlite3 in one transaction, with the secondary indexes dropped during the load
and rebuilt afterwards from the same `schema.sql` statements.

What the rows look like: the *scores* are a real index's, the *classes* are drawn to look like a personal
photo library's.

- **Scores, faces, objects: measured.** `bench/realscenes_evidence.json` holds what `imgidx index` stored
  for the 126 photos of realscenes-dev (EfficientNet-Lite0 at 448, the shipped int8 model, faces and
  objects on; `measure_template` writes it from such an index): per photo and cell, its classifier rows'
  evidence in order (so how many rows a cell keeps, 1-12, and how fast they fall off), and its detector
  rows as stored: face and COCO object rows per cell, their image rows, their boxes. Every synthetic image
  takes one of these photos as its template, drawn at random: its cells' evidence vectors rank for rank,
  its size, and its face and object rows and boxes as they are.
- **Classes: drawn.** Class popularity is Zipf-Mandelbrot, weight 1 / (rank + 10), over a fixed random
  order of the 1000 classes: the most common class is about 2 % of the objects, most are rare, and the 118
  dog breeds together make up about 12 %. Each image holds 1-4 objects covering a 1x1 to 3x3 block of
  cells; most leak to 1-3 classes that share their WordNet parent (other dog breeds, other trucks...),
  which is what makes hierarchy terms (`dog`, `car`) sum several rows per cell. Cells no object covers
  get 1-3 background classes (things and places, not animals), and the rest of a cell's rows are classes
  that look like what it holds (90 %: cousins, same WordNet grandparent) or drawn by popularity. A cell's
  classes ranked so take the template cell's evidence at the same ranks.
- Image rows are kept as `indexer.regions` keeps them: per class its best cell's evidence, the
  `IMAGE_TOP_K` (20) classes of highest evidence relative to their prior, from `SCORE_FLOOR` up.
- 0.5 % of the images are failed files (error set, no labels).
- Dates (schema version 5): a photo is taken in its folder's year, at a random moment of it; 92 % by their
  EXIF DateTimeOriginal (with a camera), 6 % by their file time (no EXIF date), 2 % without a date. Drawn
  from a generator of their own, so the labels are those of an index built before dates.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import time
from datetime import datetime, timedelta
from itertools import accumulate
from pathlib import Path

from indexer import calibration, labels
from indexer.regions import IMAGE_TOP_K, SCORE_FLOOR
from indexer.store import IndexSettings, open_index, schema_statements, write_settings, tables

#: The model the rows claim, so queries read them through its fitted calibration (`indexer.calibration`).
MODEL = "efficientnet-lite0"
ERROR_RATE = 0.005
ZIPF_OFFSET = 10
#: Shares of the photos dated by EXIF and by their file time (the rest have no date), and their cameras.
EXIF_DATED, MTIME_DATED = 0.92, 0.06
CAMERAS = ("Apple iPhone 12", "Canon EOS 5D Mark III", "SONY ILCE-7M3", "samsung SM-G991B", "NIKON D750")
SECONDS_PER_YEAR = 365 * 24 * 3600


def _taken(rng: random.Random, year: int, failed: bool) -> tuple:
    """taken_at, taken_offset, taken_source, camera of one synthetic photo (see the module docstring)."""
    if failed:
        return None, None, None, None
    kind = rng.random()
    if kind >= EXIF_DATED + MTIME_DATED:
        return None, None, "none", None
    moment = datetime(year, 1, 1) + timedelta(seconds=rng.randrange(SECONDS_PER_YEAR))
    at = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if kind < EXIF_DATED:
        return at, "+01:00", "exif", rng.choice(CAMERAS)
    return at, "+00:00", "mtime", None


#: What a real index stored for real photos (`measure_template`): the scores every synthetic image copies.
TEMPLATE = Path(__file__).resolve().parent / "realscenes_evidence.json"
#: Decimal places kept of a measured score in the template.
DIGITS = 5


def measure_template(db: Path, source: str) -> dict:
    """What the index at ``db`` (built by ``imgidx index``) stores per photo, as the generator's templates:
    per cell the classifier's evidence, highest first; the detectors' rows (cell and image) and boxes as
    they are; the photo's size; and the index's settings."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    base = labels.NUM_CLASSES
    photos = []
    for image_id, width, height in conn.execute(
            "SELECT image_id, width, height FROM images WHERE error IS NULL ORDER BY path"):
        cells = [[] for _ in range(9)]
        for cell, score in conn.execute(
                "SELECT cell, score FROM cell_labels WHERE image_id = ? AND class_id < ? ORDER BY cell, score DESC",
                (image_id, base)):
            cells[cell].append(round(score, DIGITS))
        rounded = lambda rows: [[round(v, DIGITS) if isinstance(v, float) else v for v in row] for row in rows]
        photos.append({
            "width": width, "height": height, "cells": cells,
            "detector_cells": rounded(conn.execute(
                "SELECT cell, class_id, score, coverage FROM cell_labels WHERE image_id = ? AND class_id >= ? "
                "ORDER BY cell, class_id", (image_id, base))),
            "detector_image": rounded(conn.execute(
                "SELECT class_id, score, share FROM image_labels WHERE image_id = ? AND class_id >= ? ORDER BY class_id",
                (image_id, base))),
            "boxes": rounded(conn.execute(
                "SELECT box, class_id, x0, y0, x1, y1, confidence FROM boxes WHERE image_id = ? ORDER BY box",
                (image_id,))),
        })
    meta = dict(conn.execute("SELECT key, value FROM meta"))
    conn.close()
    return {"source": source, "meta": meta, "photos": photos}


def read_template(path: Path = TEMPLATE) -> dict:
    return json.loads(Path(path).read_text())


class _Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        n = labels.NUM_CLASSES
        order = list(range(n))
        random.Random(1234).shuffle(order)
        weights = [0.0] * n
        for rank, cls in enumerate(order, start=1):
            weights[cls] = 1.0 / (rank + ZIPF_OFFSET)
        self.classes = list(range(n))
        self.cum_weights = list(accumulate(weights))
        animal = "n00015388"
        chains = labels.ancestors()[:n]  # the classifier's classes: the detectors' store no evidence
        self.scenery = [c for c, chain in enumerate(chains) if all(a.wnid != animal for a in chain)]
        self.scenery_weights = list(accumulate(weights[c] for c in self.scenery))
        parents: dict[str, list[int]] = {}
        for cls, chain in enumerate(chains):
            if chain:
                parents.setdefault(chain[0].wnid, []).append(cls)
        self.siblings: list[list[int]] = []
        for cls, chain in enumerate(chains):
            group = parents.get(chain[0].wnid, []) if chain else []
            self.siblings.append([c for c in group if c != cls])
        grandparents: dict[str, list[int]] = {}
        for cls, chain in enumerate(chains):
            grandparents.setdefault(chain[min(1, len(chain) - 1)].wnid if chain else "", []).append(cls)
        self.cousins = [grandparents[chain[min(1, len(chain) - 1)].wnid if chain else ""] for chain in chains]
        shipped = calibration.for_model(MODEL)
        self.relevance = [prior ** -shipped.beta for prior in shipped.priors]

    def pick(self, k: int = 1) -> list[int]:
        return self.rng.choices(self.classes, cum_weights=self.cum_weights, k=k)

    def image(self, template: dict) -> tuple[list[tuple[int, int, float, float]], list[tuple[int, float, float]]]:
        """One image's model rows: cell rows (cell, class, score, coverage) and image rows (class, score,
        share). Which classes: the objects, their leaks and the cells' backgrounds drawn here; their scores:
        the ``template`` photo's, cell by cell, rank for rank (module docstring)."""
        rng = self.rng
        cells: list[dict[int, float]] = [{} for _ in range(9)]
        for cls in self.pick(rng.choice((1, 1, 1, 2, 2, 3, 4))):
            confidence = rng.uniform(0.25, 0.95)
            height, width = rng.choice((1, 1, 2, 2, 3)), rng.choice((1, 1, 2, 2, 3))
            top, left = rng.randint(0, 3 - height), rng.randint(0, 3 - width)
            confusers = self.siblings[cls]
            leaks = rng.sample(confusers, min(len(confusers), rng.randint(1, 3))) if confusers and rng.random() < 0.7 else []
            for row in range(top, top + height):
                for col in range(left, left + width):
                    cell = cells[row * 3 + col]
                    score = confidence * rng.uniform(0.55, 1.0)
                    cell[cls] = cell.get(cls, 0.0) + score
                    for other in leaks:
                        cell[other] = cell.get(other, 0.0) + score * rng.uniform(0.05, 0.4)
        cell_rows: list[tuple[int, int, float, float]] = []
        best: dict[int, float] = {}
        for index, (cell, scores) in enumerate(zip(cells, template["cells"])):
            if not cell:
                for cls in rng.choices(self.scenery, cum_weights=self.scenery_weights, k=rng.randint(1, 3)):
                    cell[cls] = cell.get(cls, 0.0) + rng.uniform(0.03, 0.35)
            ranked = sorted(cell, key=lambda cls: -cell[cls])[: len(scores)]
            present = set(ranked)
            while len(ranked) < len(scores):  # the tail: mostly classes that look like what the cell holds
                cls = rng.choice(self.cousins[rng.choice(ranked)]) if rng.random() < 0.9 else self.pick()[0]
                if cls not in present:
                    present.add(cls)
                    ranked.append(cls)
            for rank, (cls, score) in enumerate(zip(ranked, scores)):
                coverage = min(1.0, score * 1.3) if rank == 0 else 0.0
                cell_rows.append((index, cls, score, coverage))
                best[cls] = max(best.get(cls, 0.0), score)
        kept = sorted(best, key=lambda cls: -best[cls] * self.relevance[cls])[:IMAGE_TOP_K]
        image_rows = [(cls, best[cls], 0.0) for cls in kept if best[cls] >= SCORE_FLOOR]
        return cell_rows, image_rows


def build(path: Path, n_images: int, seed: int = 0, batch: int = 20_000, log=print,
          template: Path = TEMPLATE, with_compounds: bool = True) -> Path:
    """Create the index at ``path`` (replacing an incomplete one) with ``n_images`` synthetic images, and their
    compounds' rows (`query.compounds`) unless not ``with_compounds`` (then the same rows less those)."""
    path = Path(path)
    measured = read_template(template)
    photos = measured["photos"]
    partial = path.with_name(path.name + ".partial")
    for stale in (partial, Path(str(partial) + "-wal"), Path(str(partial) + "-shm")):
        stale.unlink(missing_ok=True)
    engine = open_index(str(partial), create=True)
    meta = measured["meta"]
    settings = IndexSettings(MODEL, int(meta["working_size"]), meta["precision"], faces=meta["faces"] == "on",
                             runtime=meta.get("runtime", "tf"), quantization=meta.get("quantization", ""),
                             objects=meta["objects"] == "on")
    held = None
    if with_compounds:  # imported here: `bench/query_latency.py` imports this module under a baseline's code too
        from indexer.store import add_classes, write_meta
        from query.compounds import COMPOUNDS_KEY, compounds

        held = compounds(settings.objects, settings.calibration)
    with engine.begin() as conn:
        write_settings(conn, tables(engine), settings)
        if held is not None:  # as the writer stores them (`indexer.writer.Writer.with_compounds`)
            add_classes(conn, tables(engine), held.class_rows())
            write_meta(conn, tables(engine), COMPOUNDS_KEY, held.digest)
    engine.dispose()
    cal = calibration.for_model(MODEL)
    secondary = [s for s in schema_statements() if s.upper().startswith("CREATE INDEX")]
    start = time.perf_counter()
    conn = sqlite3.connect(partial, isolation_level=None)
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-1000000")
    conn.execute("BEGIN")
    for statement in secondary:
        name = statement.split("EXISTS", 1)[1].split()[0]
        conn.execute(f"DROP INDEX {name}")
    gen = _Generator(seed)
    rng = random.Random(seed + 1)
    date_rng = random.Random(seed + 2)
    images, cell_rows, image_rows, box_rows = [], [], [], []
    for image_id in range(1, n_images + 1):
        photo = rng.choice(photos)
        failed = rng.random() < ERROR_RATE
        images.append(
            (
                image_id,
                f"/photos/{2010 + image_id % 15}/{image_id % 12 + 1:02d}/IMG_{image_id:07d}.jpg",
                rng.randint(200_000, 6_000_000),
                1_600_000_000_000_000_000 + image_id * 1_000_000_000,
                None if failed else f"{rng.getrandbits(256):064x}",
                None if failed else photo["width"],
                None if failed else photo["height"],
                None if failed else MODEL,
                None if failed else settings.working_size,
                "2025-01-01T00:00:00Z",
                "cannot identify image file" if failed else None,
                *_taken(date_rng, 2010 + image_id % 15, failed),
            )
        )
        if not failed:
            cells, whole = gen.image(photo)
            cell_rows.extend((image_id, *row) for row in cells)
            cell_rows.extend((image_id, *row) for row in photo["detector_cells"])
            image_rows.extend((image_id, *row) for row in whole)
            image_rows.extend((image_id, *row) for row in photo["detector_image"])
            if held is not None:
                rows = [(cell, class_id, score) for cell, class_id, score, _ in (*cells, *photo["detector_cells"])]
                whole_rows, compound_cells = held.derive(rows, cal)
                cell_rows.extend((image_id, cell, class_id, value, 0.0) for cell, class_id, value in compound_cells)
                image_rows.extend((image_id, class_id, value, 0.0) for class_id, value in whole_rows)
            box_rows.extend((image_id, *row) for row in photo["boxes"])
        if image_id % batch == 0 or image_id == n_images:
            conn.executemany(
                "INSERT INTO images (image_id, path, size_bytes, mtime_ns, content_hash, width, height, model, "
                "working_size, indexed_at, error, taken_at, taken_offset, taken_source, camera) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", images)
            conn.executemany("INSERT INTO cell_labels (image_id, cell, class_id, score, coverage) VALUES (?,?,?,?,?)",
                             cell_rows)
            conn.executemany("INSERT INTO image_labels (image_id, class_id, score, share) VALUES (?,?,?,?)", image_rows)
            conn.executemany("INSERT INTO boxes (image_id, box, class_id, x0, y0, x1, y1, confidence) "
                             "VALUES (?,?,?,?,?,?,?,?)", box_rows)
            images, cell_rows, image_rows, box_rows = [], [], [], []
            if image_id % (batch * 10) == 0:
                log(f"  {image_id:,} images ({time.perf_counter() - start:.0f} s)")
    for statement in secondary:
        conn.execute(statement)
    conn.execute("COMMIT")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    from indexer import store

    if hasattr(store, "rebuild_runs"):  # a baseline's code from before the class runs has none to make
        engine = open_index(str(partial))
        with engine.begin() as made:
            store.rebuild_runs(made, tables(engine))
        engine.dispose()
    partial.replace(path)
    log(f"  built {path} in {time.perf_counter() - start:.0f} s")
    return path


def summary(db: Path, sample: int = 20_000) -> dict[str, float]:
    """What decides a query's cost, measured on the first ``sample`` images of an index: classifier rows
    per cell, the best row's evidence, a cell's summed evidence, how many rows and classes reach the default
    confidence (through the shipped calibration), and the detectors' share of photos and rows."""
    shipped = calibration.for_model(MODEL)
    holds_at = [shipped.evidence_for(calibration.DEFAULT_MIN_SCORE, [k]) for k in range(labels.NUM_CLASSES)]
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    last = conn.execute("SELECT image_id FROM images ORDER BY image_id LIMIT 1 OFFSET ?", (sample - 1,)).fetchone()
    last = last[0] if last else conn.execute("SELECT MAX(image_id) FROM images").fetchone()[0]
    images = conn.execute("SELECT COUNT(*) FROM images WHERE error IS NULL AND image_id <= ?", (last,)).fetchone()[0]
    cells: dict[tuple[int, int], list[float]] = {}
    held, held_classes = 0, set()
    for image_id, cell, cls, score in conn.execute(
            "SELECT image_id, cell, class_id, score FROM cell_labels WHERE image_id <= ? AND class_id < ?",
            (last, labels.NUM_CLASSES)):
        cells.setdefault((image_id, cell), []).append(score)
        if score >= holds_at[cls]:
            held += 1
            held_classes.add((image_id, cls))
    rows = sum(len(v) for v in cells.values())
    best = sorted(max(v) for v in cells.values())
    sums = sorted(sum(v) for v in cells.values())
    count = lambda sql: conn.execute(sql, (last,)).fetchone()[0]
    found = {
        "images": images,
        "classifier rows per cell": rows / len(cells),
        "best row's evidence, median": best[len(best) // 2],
        "best row's evidence, 90th percentile": best[len(best) * 9 // 10],
        "a cell's summed evidence, median": sums[len(sums) // 2],
        f"rows at confidence >= {calibration.DEFAULT_MIN_SCORE}": held / rows,
        f"classes at confidence >= {calibration.DEFAULT_MIN_SCORE} per photo": len(held_classes) / images,
        "photos with a face row": count(f"SELECT COUNT(DISTINCT image_id) FROM cell_labels WHERE class_id = "
                                        f"{labels.FACE_CLASS} AND image_id <= ?") / images,
        "photos with a person row": count(f"SELECT COUNT(DISTINCT image_id) FROM cell_labels WHERE class_id = "
                                          f"{labels.OBJECT_CLASS_BASE} AND image_id <= ?") / images,
        "boxes per photo": count("SELECT COUNT(*) FROM boxes WHERE image_id <= ?") / images,
        "detector rows per photo": count(f"SELECT COUNT(*) FROM cell_labels WHERE class_id >= {labels.NUM_CLASSES} "
                                         f"AND image_id <= ?") / images,
    }
    conn.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description="Write the synthetic index's template from a real index, or "
                                                 "compare indexes by what decides a query's cost.")
    parser.add_argument("db", type=Path, nargs="+", help="an index built by imgidx index (several: --summary)")
    parser.add_argument("--source", help="what the index was built from, recorded in the template")
    parser.add_argument("--out", type=Path, default=TEMPLATE)
    parser.add_argument("--summary", action="store_true", help="print `summary` of each index side by side")
    args = parser.parse_args()
    if args.summary:
        found = [summary(db) for db in args.db]
        print(f"{'':44}" + "".join(f"{db.name:>24}" for db in args.db))
        for key in found[0]:
            print(f"{key:44}" + "".join(f"{f[key]:24,.3f}" if isinstance(f[key], float) else f"{f[key]:24,}"
                                        for f in found))
        return
    if args.source is None:
        parser.error("--source is needed to write a template")
    args.out.write_text(json.dumps(measure_template(args.db[0], args.source), separators=(",", ":")) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
