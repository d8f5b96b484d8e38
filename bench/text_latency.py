"""Quoted text queries at scale (issue 22): p50/p95 of `query.search.search` on synthetic SQLite indexes.

The schema comes from `indexer.store.open_index` (exactly `schema.sql`); the rows are bulk-loaded with sqlite3.
What they look like: `TEXT_SHARE` of the photos hold 1-4 lines of 1-4 words; words are drawn from a vocabulary
of `VOCABULARY` made-up words with Zipf popularity (weight 1 / (rank + 2)), so the most common word is in about
3 % of the photos with text, as "exit" or "open" would be in a library of signs; every line gets a random box
and the cells it occupies (`indexer.boxes.occupied`) and a confidence of 0.5-1; words are stored as the indexer
stores them (`indexer.store.write.word_rows_of`). Each query kind runs over several words, the first page
(20 matches) with the count, as `imgidx query` asks; the baseline is the same queries on an index a tenth the
size, built in the same run (how latency grows with the index).

The same lines go into `bench/query_latency.py`'s synthetic index (`add_text`), beside its labels.

    python bench/text_latency.py [--images 1000000] [--repeat 5] [--out bench/out]
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import sys
import time
from itertools import accumulate
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __name__ == "__main__":  # imported (bench/query_latency.py), the importer's `indexer` is the one to use
    sys.path.insert(0, str(ROOT))

from indexer import store  # noqa: E402
from indexer.boxes import HOLDS_BOX, OCCUPIES_CELL  # noqa: E402
from indexer.regions import TextLine  # noqa: E402
from indexer.store import IndexSettings, open_index, schema_statements  # noqa: E402
from indexer.store.write import word_rows_of  # noqa: E402
from indexer.words import searchable  # noqa: E402

TEXT_SHARE = 0.2
VOCABULARY = 50_000
WIDTH, HEIGHT = 1600, 1200
LETTERS = "abcdefghjkmnpqrstuvwxyz0123456789"


def vocabulary(rng: random.Random) -> list[str]:
    words = set()
    while len(words) < VOCABULARY:
        words.add("".join(rng.choice(LETTERS) for _ in range(rng.randrange(3, 10))))
    return sorted(sorted(words), key=lambda w: rng.random())  # a set's order changes with the process's hash seed


def cells_of(box, width: float = WIDTH, height: float = HEIGHT) -> int:
    """The mask of the cells ``box`` occupies: `indexer.boxes.occupied`'s rule (a quarter of the cell covered,
    or half the box inside it, or the cell holding most of it) in plain Python, for speed."""
    x0, y0, x1, y1 = box
    area = max((x1 - x0) * (y1 - y0), 1e-9)
    cw, ch = width / 3, height / 3
    overlaps = [max(0.0, min(x1, (c % 3 + 1) * cw) - max(x0, c % 3 * cw))
                * max(0.0, min(y1, (c // 3 + 1) * ch) - max(y0, c // 3 * ch)) for c in range(9)]
    best = max(overlaps)
    return sum(1 << c for c, o in enumerate(overlaps)
               if o >= OCCUPIES_CELL * cw * ch or o / area >= HOLDS_BOX or o == best)


class Lines:
    """The synthetic lines of text of photo after photo (the module docstring), from one seed."""

    def __init__(self, seed: int = 0):
        self.rng = random.Random(seed)
        self.words = vocabulary(random.Random(1))
        self.cumulative = list(accumulate(1 / (rank + 2) for rank in range(len(self.words))))

    def of(self, image_id: int, width: float = WIDTH, height: float = HEIGHT) -> tuple[list[tuple], list[tuple]]:
        """The ``texts`` and ``text_words`` rows of one photo: none for most (`TEXT_SHARE` hold text)."""
        rng, texts, word_rows = self.rng, [], []
        if rng.random() < TEXT_SHARE:
            for line in range(rng.randrange(1, 5)):
                content = " ".join(rng.choices(self.words, cum_weights=self.cumulative, k=rng.randrange(1, 5)))
                x0, y0 = rng.uniform(0, width * 0.8), rng.uniform(0, height * 0.9)
                box = (x0, y0, min(width, x0 + rng.uniform(40, 800)), min(height, y0 + rng.uniform(15, 120)))
                mask = cells_of(box, width, height)
                confidence = rng.uniform(0.5, 1.0)
                texts.append((image_id, line, *box, confidence, mask, content))
                row = TextLine(*box, confidence, mask, content, tuple(searchable(content)))
                word_rows += [tuple(r.values()) for r in word_rows_of(image_id, line, row)]
        return texts, word_rows


def insert_lines(db: sqlite3.Connection, texts: list[tuple], word_rows: list[tuple]) -> None:
    db.executemany("INSERT INTO texts VALUES (?,?,?,?,?,?,?,?,?)", texts)
    db.executemany("INSERT INTO text_words (image_id, line, position, word, cells, confidence) VALUES (?,?,?,?,?,?)",
                   word_rows)


def word_index(db: sqlite3.Connection) -> None:
    """The word index, from `schema.sql`'s statement (built after the rows: faster than kept during the load)."""
    for statement in schema_statements():
        if "text_words_word" in statement:
            db.execute(statement)


def build(path: Path, n_images: int, seed: int = 0) -> Path:
    if path.exists():
        return path
    lines = Lines(seed)
    engine = open_index(str(path))
    with engine.begin() as conn:
        store.write_settings(conn, store.tables(conn), IndexSettings("efficientnet-lite0", 448, "fp32", text=True))
    engine.dispose()
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("DROP INDEX IF EXISTS text_words_word")
    images, texts, word_rows = [], [], []
    for image_id in range(1, n_images + 1):
        images.append((image_id, f"/photos/{image_id // 1000:04d}/{image_id:07d}.jpg", 1, 1, f"{image_id:064x}",
                       WIDTH, HEIGHT, "efficientnet-lite0", 448, "2026-12-05T00:00:00+00:00"))
        found, words = lines.of(image_id)
        texts += found
        word_rows += words
        if len(images) >= 50_000 or image_id == n_images:
            db.executemany("INSERT INTO images (image_id, path, size_bytes, mtime_ns, content_hash, width, height, "
                           "model, working_size, indexed_at) VALUES (?,?,?,?,?,?,?,?,?,?)", images)
            insert_lines(db, texts, word_rows)
            images, texts, word_rows = [], [], []
    word_index(db)
    db.execute("ANALYZE")
    db.commit()
    db.close()
    return path


def add_text(path: Path, seed: int = 0, log=print) -> None:
    """Give an index without text (`bench/query_latency.py`'s synthetic one) lines of text as above, in each
    labelled photo's own size, and mark it read for text; an index that holds text already is left as it is."""
    db = sqlite3.connect(path)
    if db.execute("SELECT 1 FROM text_words LIMIT 1").fetchone():
        db.close()
        return
    start = time.perf_counter()
    lines = Lines(seed)
    db.execute("DROP INDEX IF EXISTS text_words_word")
    texts, word_rows = [], []
    for image_id, width, height in db.execute(
            "SELECT image_id, width, height FROM images WHERE error IS NULL ORDER BY image_id").fetchall():
        found, words = lines.of(image_id, width or WIDTH, height or HEIGHT)
        texts += found
        word_rows += words
        if len(word_rows) >= 200_000:
            insert_lines(db, texts, word_rows)
            texts, word_rows = [], []
    insert_lines(db, texts, word_rows)
    word_index(db)
    db.execute("INSERT INTO meta (key, value) VALUES ('text', 'on') ON CONFLICT (key) DO UPDATE SET value = 'on'")
    db.execute("ANALYZE text_words")
    db.commit()
    db.close()
    log(f"added lines of text to {path.name} in {time.perf_counter() - start:.0f} s")


def word_counts(path: Path) -> list[tuple[str, int]]:
    """Every word the index holds with its rows, most first."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    counted = db.execute("SELECT word, COUNT(*) FROM text_words WHERE position >= 0 GROUP BY word "
                         "ORDER BY COUNT(*) DESC").fetchall()
    db.close()
    return counted


def phrases(path: Path, k: int = 200) -> list[tuple[str, str]]:
    """``k`` pairs of words next to each other on a line, in the index's order."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    pairs = db.execute(
        "SELECT a.word, b.word FROM text_words a JOIN text_words b ON b.image_id = a.image_id AND b.line = a.line "
        "AND b.position = a.position + 1 WHERE a.position >= 0 LIMIT ?", (k,)).fetchall()
    db.close()
    return pairs


def queries(path: Path, seed: int) -> dict[str, list[str]]:
    """Query texts per kind, from the words the index holds (common ones by rank, rare ones at random)."""
    counted = word_counts(path)
    common = [w for w, _ in counted[:20]]
    rare = sorted(w for w, n in counted if 2 <= n <= 20)[:200]
    pairs = phrases(path)
    rng = random.Random(seed)
    return {
        "common word": [f'"{w}"' for w in common[:10]],
        "rare word": [f'"{w}"' for w in rng.sample(rare, 10)],
        "prefix (3 letters)": [f'"{w[:3]}"' for w in rng.sample(rare, 10)],
        "two-word phrase": [f'"{a} {b}"' for a, b in rng.sample(pairs, 10)],
        "common word in top-right": [f'"{w}" in top-right' for w in common[:10]],
        "word AND NOT word": [f'"{a}" AND NOT "{b}"' for a, b in zip(common[:10], common[10:20])],
        "NOT word only": [f'NOT "{w}"' for w in common[:5]],
    }


def measure(path: Path, kinds: dict[str, list[str]], repeat: int) -> dict[str, tuple[float, float, int]]:
    from query.search import search

    engine = open_index(str(path), readonly=True)
    out = {}
    with engine.connect() as conn:
        for kind, texts in kinds.items():
            times, total = [], 0
            for _ in range(repeat):
                for text in texts:
                    start = time.perf_counter()
                    result = search(conn, text, limit=20)
                    times.append(1000 * (time.perf_counter() - start))
                    total = max(total, result.total or 0)
            times.sort()
            out[kind] = (statistics.median(times), times[min(len(times) - 1, int(0.95 * len(times)))], total)
    engine.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    small, large = args.images // 10, args.images
    paths = {}
    for n in (small, large):
        start = time.perf_counter()
        paths[n] = build(args.out / f"text-{n}.db", n)
        print(f"index of {n:,} photos: {paths[n]} ({time.perf_counter() - start:.0f} s to build or find)")
    kinds = queries(paths[large], seed=0)
    print(f"# bench/text_latency.py --images {large}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
          f"load {os.getloadavg()}")
    results = {n: measure(paths[n], kinds if n == large else queries(paths[n], seed=0), args.repeat)
               for n in (small, large)}
    print(f"{'kind':28} {'p50 ' + format(small, ','):>14} {'p95':>8} {'p50 ' + format(large, ','):>16} {'p95':>8}"
          f" {'p95 ratio':>9} {'matches at ' + format(large, ','):>20}")
    for kind in kinds:
        (p50s, p95s, _), (p50, p95, total) = results[small][kind], results[large][kind]
        print(f"{kind:28} {p50s:12.1f}ms {p95s:6.1f}ms {p50:14.1f}ms {p95:6.1f}ms {p95 / p95s:8.2f}x {total:20,}")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
