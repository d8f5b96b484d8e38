"""A synthetic imgidx index with realistic label and cell distributions, for query benchmarks.

The schema comes from `indexer.store.open_index` (so it is exactly `schema.sql`); the rows are bulk-loaded
with the standard library's sqlite3 in one transaction, with the secondary indexes dropped during the load
and rebuilt afterwards from the same `schema.sql` statements.

What the rows look like (an imitation of what the indexer stores for a personal photo library):

- Class popularity is Zipf-Mandelbrot, weight 1 / (rank + 10), over a fixed random order of the 1000
  classes: the most common class is about 2 % of the objects (4-8 % of the images), most are rare, and the
  118 dog breeds together make up about 12 % of the objects.
- Each image holds 1-4 objects; an object covers a 1x1 to 3x3 block of cells with a confidence between
  0.25 and 0.95, and scores slightly lower towards the block's edge. Most objects also leak some
  probability to 1-3 classes that share its WordNet parent (other dog breeds, other trucks...), which is
  what makes hierarchy terms (`dog`, `car`) sum several rows per cell.
- Cells that no object covers get 1-3 weak background classes (things and places, not animals: a
  photo's background is not made of dog breeds), and every cell a tail of 2-9 classes at
  0.01-0.05: a softmax averaged over positions spreads some mass, mostly onto classes that look like
  what the cell holds (90 %: cousins, same WordNet grandparent), the rest onto classes drawn by popularity.
- Rows are kept as `indexer.regions` keeps them: per cell the top `CELL_TOP_K` (10) classes at or above
  `SCORE_FLOOR` (0.01), scores summing to at most 1, about 6.5 rows per cell and 58 per image; per image
  the top `IMAGE_TOP_K` (20).
- 0.5 % of the images are failed files (error set, no labels).
- Dates (schema version 5): a photo is taken in its folder's year, at a random moment of it; 92 % by their
  EXIF DateTimeOriginal (with a camera), 6 % by their file time (no EXIF date), 2 % without a date. Drawn
  from a generator of their own, so the labels are those of an index built before dates.
"""

from __future__ import annotations

import random
import sqlite3
import time
from datetime import datetime, timedelta
from itertools import accumulate
from pathlib import Path

from indexer import labels
from indexer.regions import CELL_TOP_K, IMAGE_TOP_K, SCORE_FLOOR
from indexer.store import IndexSettings, open_index, schema_statements

#: The model the rows claim, so queries read them through its fitted calibration (`indexer.calibration`).
MODEL = "efficientnet-lite0"
ERROR_RATE = 0.005
ZIPF_OFFSET = 10
SIZES = ((4032, 3024), (3024, 4032), (1920, 1080), (1080, 1920), (2048, 1536), (1600, 1200), (800, 600))
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

    def pick(self, k: int = 1) -> list[int]:
        return self.rng.choices(self.classes, cum_weights=self.cum_weights, k=k)

    def image(self) -> tuple[list[tuple[int, int, float, float]], list[tuple[int, float, float]]]:
        """One image's cell rows (cell, class, score, coverage) and image rows (class, score, share)."""
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
        for cell in cells:
            if not cell:
                for cls in rng.choices(self.scenery, cum_weights=self.scenery_weights, k=rng.randint(1, 3)):
                    cell[cls] = cell.get(cls, 0.0) + rng.uniform(0.03, 0.35)
            present = list(cell)
            for _ in range(rng.randint(2, 9)):
                cls = rng.choice(self.cousins[rng.choice(present)]) if rng.random() < 0.9 else self.pick()[0]
                cell[cls] = cell.get(cls, 0.0) + rng.uniform(0.01, 0.05)
        cell_rows: list[tuple[int, int, float, float]] = []
        image_scores: dict[int, float] = {}
        image_share: dict[int, float] = {}
        for index, cell in enumerate(cells):
            total = sum(cell.values())
            scale = 0.98 / total if total > 0.98 else 1.0
            ranked = sorted(cell.items(), key=lambda item: -item[1])[:CELL_TOP_K]
            first = True
            for cls, score in ranked:
                score *= scale
                if score < SCORE_FLOOR and not first:
                    break
                coverage = min(1.0, score * 1.3) if first else 0.0
                cell_rows.append((index, cls, round(score, 4), round(coverage, 4)))
                image_scores[cls] = image_scores.get(cls, 0.0) + score / 9
                if first:
                    image_share[cls] = image_share.get(cls, 0.0) + 1 / 9
                first = False
        image_rows = [
            (cls, round(score, 4), round(image_share.get(cls, 0.0), 4))
            for cls, score in sorted(image_scores.items(), key=lambda item: -item[1])[:IMAGE_TOP_K]
            if score >= SCORE_FLOOR
        ]
        return cell_rows, image_rows


def build(path: Path, n_images: int, seed: int = 0, batch: int = 20_000, log=print) -> Path:
    """Create the index at ``path`` (replacing an incomplete one) with ``n_images`` synthetic images."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    for stale in (partial, Path(str(partial) + "-wal"), Path(str(partial) + "-shm")):
        stale.unlink(missing_ok=True)
    open_index(str(partial), create=True).dispose()
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
    images, cell_rows, image_rows = [], [], []
    for image_id in range(1, n_images + 1):
        width, height = rng.choice(SIZES)
        failed = rng.random() < ERROR_RATE
        images.append(
            (
                image_id,
                f"/photos/{2010 + image_id % 15}/{image_id % 12 + 1:02d}/IMG_{image_id:07d}.jpg",
                rng.randint(200_000, 6_000_000),
                1_600_000_000_000_000_000 + image_id * 1_000_000_000,
                None if failed else f"{rng.getrandbits(256):064x}",
                None if failed else width,
                None if failed else height,
                None if failed else MODEL,
                None if failed else 448,
                "2025-01-01T00:00:00Z",
                "cannot identify image file" if failed else None,
                *_taken(date_rng, 2010 + image_id % 15, failed),
            )
        )
        if not failed:
            cells, whole = gen.image()
            cell_rows.extend((image_id, cell, cls, score, coverage) for cell, cls, score, coverage in cells)
            image_rows.extend((image_id, cls, score, share) for cls, score, share in whole)
        if image_id % batch == 0 or image_id == n_images:
            conn.executemany(f"INSERT INTO images VALUES ({','.join('?' * len(images[0]))})", images)
            conn.executemany("INSERT INTO cell_labels VALUES (?,?,?,?,?)", cell_rows)
            conn.executemany("INSERT INTO image_labels VALUES (?,?,?,?)", image_rows)
            images, cell_rows, image_rows = [], [], []
            if image_id % (batch * 10) == 0:
                log(f"  {image_id:,} images ({time.perf_counter() - start:.0f} s)")
    for statement in secondary:
        conn.execute(statement)
    settings = IndexSettings(MODEL, 448, "bf16")
    conn.executemany(
        "INSERT INTO meta VALUES (?, ?)",
        [("model", settings.model), ("working_size", "448"), ("precision", settings.precision),
         ("calibration", settings.calibration)],
    )
    conn.execute("COMMIT")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    partial.replace(path)
    log(f"  built {path} in {time.perf_counter() - start:.0f} s")
    return path
