"""The adversarial run of issue 11 at full length: every bad input of tests/test_adversarial.py mixed with good
photos, `imgidx index` killed with SIGKILL at 20 random moments, then run to the end.

Checks after every kill and at the end: ``PRAGMA integrity_check`` ok, no path twice, no internal error on
stderr; at the end, every good photo labelled and the foreign file unchanged. The model is the tests' fake
backbone, slowed down so that the kills land while batches are being committed.

    python bench/adversarial.py [--kills 20] [--photos 1000] [--delay 0.1] [--seed 11]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))

from test_adversarial import KILL_CHILD, Library, bad_files, png_header_only  # noqa: E402
from test_pipeline import BLUE, RED, paint  # noqa: E402


def committed(db: Path) -> tuple[int, str, int]:
    """Rows, the integrity check's answer and the number of duplicated paths, read-only."""
    if not db.exists():
        return 0, "ok", 0
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        try:
            rows = conn.execute("SELECT COUNT(*) FROM images").fetchone()[0]
        except sqlite3.OperationalError:
            return 0, "ok", 0
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        dups = conn.execute("SELECT COUNT(*) - COUNT(DISTINCT path) FROM images").fetchone()[0]
    conn.close()
    return rows, integrity, dups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--delay", type=float, default=0.1, help="Seconds per model call of 4 images.")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        library = Library(Path(tmp))
        good = list(library.good)
        for i in range(args.photos):
            good.append(paint(library.photos / "many" / f"{i:03}.png", {i % 9: RED, (i * 5 + 2) % 9: BLUE}, hw=(64, 96)))
        odd = library.photos / "odd"
        odd.mkdir()
        bad_files(odd)
        good += [odd / n for n in ("cmyk.jpg", "deep.tif", "anim.gif", "tiny.png")]
        (library.photos / "bomb.png").write_bytes(png_header_only(20000, 20000))
        latin = Path(os.fsdecode(os.fsencode(library.photos) + b"/caf\xe9.jpg"))
        latin.write_bytes(library.good[0].read_bytes())
        good.append(latin)
        (library.photos / "bad\nfailed FAKE: spoofed.jpg").write_text("not a photo")
        (library.photos / "broken.jpg").symlink_to(Path(tmp) / "nowhere.jpg")
        os.mkfifo(library.photos / "fifo.jpg")

        script = KILL_CHILD.format(tests=str(TESTS), root=str(library.photos), db=str(library.db), delay=args.delay)
        kills = 0
        for attempt in range(args.kills):
            child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            delay = rng.uniform(1.5, 3.0)
            time.sleep(delay)
            child.send_signal(signal.SIGKILL)
            out, err = child.communicate()
            killed = child.returncode == -signal.SIGKILL
            kills += killed
            rows, integrity, dups = committed(library.db)
            internal = b"internal error" in err or b"Traceback" in err
            print(f"kill {attempt + 1:2}: after {delay:.2f} s, {'killed' if killed else 'had finished'}; "
                  f"{rows} rows, integrity {integrity}, {dups} duplicate paths"
                  f"{', INTERNAL ERROR' if internal else ''}", flush=True)
            assert integrity == "ok" and dups == 0 and not internal, err.decode()[-2000:]
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
        assert "internal error" not in done.stderr and "Traceback" not in done.stderr, done.stderr
        library.check(good=good)
        print(f"{kills} kills; the last run: exit {done.returncode}, {done.stdout.strip()}")
        print(f"its stderr ({len(done.stderr.splitlines())} lines, one per bad input):")
        print("\n".join("  " + line for line in done.stderr.splitlines()))
        print(f"every one of {len(good)} good photos labelled, integrity ok, no duplicate paths, foreign file unchanged")


if __name__ == "__main__":
    main()
