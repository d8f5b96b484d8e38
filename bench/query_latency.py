"""Query latency on a synthetic 1,000,000-image index, and `imgidx query` wall time on 100,000 images.

    python bench/query_latency.py                 # builds the indexes once (bench/out/: 38 min and 28 GB for 1M), then measures
    python bench/query_latency.py --images 200000 --queries 20
    python bench/query_latency.py --baseline-src /tmp/main-src   # against another checkout's code, interleaved
    python bench/query_latency.py --baseline-src /tmp/main-src --no-cli --queries 12 --repeat 2 --rounds 2
    python bench/query_latency.py --without-runs --no-cli --kinds "typed words AND"   # the class runs' gain

For each query kind it draws random queries (labels weighted by how often they occur in the index, so
queries ask for things that exist; regions uniform over cells, rows, columns and anywhere), runs each
``--repeat`` times through `query.search.search` on one open engine (parse + resolve + compile + execute +
fetch) after a warm-up pass, and prints p50/p95 in milliseconds. With ``--baseline-src DIR`` the table is
measured for this checkout's code and DIR's in turn, kind by kind, each in a fresh process, for
``--rounds`` rounds (`compare`), and says where the two answer differently. A cached index whose secondary indexes
differ from `schema.sql`'s (built by an older version) has them rebuilt first, so the figures are always
for the schema as it is.

The CLI figures are the wall time of a fresh ``python -m indexer query TEXT --db INDEX`` process (the same
as ``imgidx query``: Python start-up, imports, opening the index, the query, printing the table), the
median of ``--cli-runs`` runs after one warm-up run (which also fills imgidx's label cache), beside the
same query's in-process latency on the same index (so what is left is start-up). The process imports this
checkout's ``indexer`` and ``query``; with ``--baseline-src DIR`` (e.g. ``git archive main | tar -x -C
DIR``) each run is paired with one of DIR's code, and the ratio of the medians is printed.

The latency index also holds lines of text (`text_latency.add_text`: a fifth of the photos, written once),
and the kind "quoted text" draws issue 22's forms of quoted terms, words by their rows. The kind "typed words
AND" joins two of the words people type most (`TYPED`, each anywhere or in a region): ``face AND person``,
where the labels drawn by their rows seldom give two words in a third of the photos or more.

The benchmark only reads the cached indexes (read-only connections), unless their secondary indexes differ
from schema.sql's or they hold no text yet.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent
sys.path.insert(0, str(HERE))

from synthetic_index import build  # noqa: E402
from text_latency import add_text, phrases, word_counts  # noqa: E402

from indexer import labels  # noqa: E402
from indexer.store import open_index, schema_statements, tables  # noqa: E402
from indexer.calibration import FUSION, FUSIONS, uncalibrated  # noqa: E402
from query.search import search as search_index  # noqa: E402

#: The CLI queries: issue 14's example, the README's, and a query of NOT terms only.
CLI_QUERIES = ("cat top-left AND dog", "school bus in center AND flowerpot top-left", "NOT dog")
IN_PROCESS_RUNS = 5
NOT_ONLY_QUERIES = ("NOT dog", "NOT cat in center", "NOT (cat left of dog)", "NOT vehicle AND NOT bird")
FLOOR = "import click, sqlalchemy"

REGIONS = (
    "top-left", "top-center", "top-right", "center-left", "center", "center-right", "bottom-left",
    "bottom-center", "bottom-right", "top row", "bottom row", "left column", "right column", "middle row",
    "anywhere",
)
CELLS = REGIONS[:9]
HIERARCHY = ("dog", "cat", "bird", "vehicle", "car", "bus", "fish", "snake", "monkey", "truck", "boat", "fruit")
RELATIONS = ("left of", "right of", "above", "below", "next to")
#: The words people type most for their own photos (issue 20), most of them answered by several classes of
#: both sources: drawn as typed, anywhere or in a region (the labels drawn by their rows rarely give these).
TYPED = ("person", "people", "dog", "cat", "car", "chair", "bottle", "cup", "tv", "book", "couch", "vehicle",
         "animal", "bird", "face")


def cached_index(n_images: int) -> Path:
    path = HERE / "out" / f"synthetic-{n_images}.db"
    if not path.exists():
        print(f"building {path} ({n_images:,} images) ...", flush=True)
        path.parent.mkdir(exist_ok=True)
        build(path, n_images)
    open_index(str(path), create=True).dispose()  # an index of an older schema version is upgraded in place
    sync_indexes(path)
    add_text(path)
    return path


def read_only(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True)


def sync_indexes(path: Path) -> None:
    """Make the cached index's secondary indexes exactly those of `schema.sql` (opened for writing only then)."""
    wanted = {s.split()[5]: s for s in schema_statements() if s.upper().startswith("CREATE INDEX")}
    with contextlib.closing(read_only(path)) as conn:
        present = {name for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
    if present == set(wanted):
        return
    conn = sqlite3.connect(path)
    for stale in present - set(wanted):
        print(f"dropping index {stale} (not in schema.sql)", flush=True)
        conn.execute(f"DROP INDEX {stale}")
    for name in set(wanted) - present:
        print(f"creating index {name} from schema.sql ...", flush=True)
        conn.execute(wanted[name])
    conn.commit()
    conn.close()


def popular_labels(db: Path, k: int = 400) -> tuple[list[str], list[int]]:
    """The ``k`` most frequent classes with their row counts (the query label distribution)."""
    conn = read_only(db)
    rows = conn.execute(
        "SELECT class_id, COUNT(*) FROM image_labels WHERE class_id < ? GROUP BY class_id ORDER BY COUNT(*) DESC "
        "LIMIT ?", (labels.COMPOUND_BASE, k)  # a model's classes, not compounds (`query.compounds`)
    ).fetchall()
    conn.close()
    names = [labels.all_classes()[cls].name for cls, _ in rows]
    return [f"'{name}'" if " and " in f" {name.lower()} " else name for name in names], [count for _, count in rows]


def text_words(db: Path, k: int = 2000) -> tuple[list[str], list[int], list[tuple[str, str]]]:
    """The ``k`` most frequent words of the index's text with their rows (the quoted words' distribution), and
    pairs of words next to each other on a line (`text_latency.add_text` wrote them)."""
    counted = word_counts(db)[:k]
    return [word for word, _ in counted], [rows for _, rows in counted], phrases(db)


def query_kinds(names: list[str], weights: list[int], n: int, seed: int,
                text: tuple[list[str], list[int], list[tuple[str, str]]] | None = None) -> dict[str, list[str]]:
    """Each kind's ``n`` queries; quoted text too where ``text`` (`text_words`) is given."""
    rng = random.Random(seed)
    words, word_weights, pairs = text or ([], [], [])

    def label() -> str:
        return rng.choices(names, weights=weights)[0]

    def word() -> str:
        return rng.choices(words, weights=word_weights)[0]

    def quoted() -> str:
        """Issue 22's forms, one drawn: a word, anywhere or in a region, its first three letters, two words of
        a line, a word less another, a word with a label (``"menu" AND wine glass``)."""
        form = rng.randrange(6)
        if form == 0:
            return f'"{word()}"'
        if form == 1:
            return f'"{word()}" in {rng.choice(REGIONS[:-1])}'
        if form == 2:
            return f'"{word()[:3]}"'
        if form == 3:
            return '"{} {}"'.format(*rng.choice(pairs))
        if form == 4:
            return f'"{word()}" AND NOT "{word()}"'
        return f'"{word()}" AND {label()}'

    def term(regions=REGIONS) -> str:
        region = rng.choice(regions)
        return label() if region == "anywhere" else f"{label()} in {region}"

    def typed() -> str:
        return rng.choice(TYPED) + ("" if rng.random() < 0.5 else f" in {rng.choice(REGIONS[:-1])}")

    def two_typed() -> tuple[str, str]:
        """Two terms as a person joins them: not the same one twice (``cat AND cat``)."""
        first, second = typed(), typed()
        while second == first:
            second = typed()
        return first, second

    return {
        "1 term": [term() for _ in range(n)],
        "2-term spatial AND": [f"{term(CELLS)} AND {term(CELLS)}" for _ in range(n)],
        "2-term AND, any region": [f"{term()} AND {term()}" for _ in range(n)],
        "3-term AND": [f"{term()} AND {term()} AND {term()}" for _ in range(n)],
        "relation": [f"{label()} {rng.choice(RELATIONS)} {label()}" for _ in range(n)],
        "hierarchy term": [f"{rng.choice(HIERARCHY)} in {rng.choice(REGIONS[:-1])}" for _ in range(n)],
        "hierarchy AND term": [f"{rng.choice(HIERARCHY)} in {rng.choice(CELLS)} AND {term(CELLS)}" for _ in range(n)],
        "OR / NOT": [
            rng.choice((f"{term()} OR {term()}", f"{term()} AND NOT {rng.choice(HIERARCHY)}")) for _ in range(n)
        ],
        # No positive term: every image is a candidate. Few of them, they are slow by nature.
        "NOT alone": [f"NOT {h}" for h in rng.sample(HIERARCHY, 3)],
        "typed word": [typed() for _ in range(n)],
    } | ({"quoted text": [quoted() for _ in range(n)]} if text else {}) | {
        # Drawn last, so that the kinds before it draw what they drew without it.
        "typed words AND": [" AND ".join(two_typed()) for _ in range(n)],
    }


def chosen_kinds(text: str, known) -> list[str]:
    """The kinds a comma-separated ``--kinds`` names, in the order given. A kind's own comma ("2-term AND, any
    region") does not split it: the longest names are matched first. An unknown name stops the bench in one line."""
    found = []
    for name in sorted(known, key=len, reverse=True):
        at = text.find(name)
        if at >= 0:
            found.append((at, name))
            text = text[:at] + "," * len(name) + text[at + len(name):]
    unknown = [part.strip() for part in text.split(",") if part.strip()]
    if unknown:
        raise SystemExit(f"unknown query kind {unknown[0]!r}; the kinds: {', '.join(known)}")
    return [name for _, name in sorted(found)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def measure(
    db: Path, kinds: dict[str, list[str]], repeat: int, raw: bool, fusion: str = FUSION
) -> dict[str, tuple[float, float, float, str]]:
    """``raw``: read the scores as they are, not through the index's calibration; ``fusion``: the rule of
    terms of both sources (`indexer.calibration.fuse`). Matches: the median total, with "+" when some
    query's count stopped (a query of NOT terms only)."""
    engine = open_index(str(db), create=False, readonly=True)
    t = tables(engine)
    search = functools.partial(search_index, fusion=fusion)
    if raw:
        search = functools.partial(search, calibration=uncalibrated("synthetic"))
    for queries in kinds.values():  # warm the page cache and SQLAlchemy's statement cache
        for text in queries:
            search(engine, text, tables=t)
    results = {}
    for kind, queries in kinds.items():
        times = []
        matches = []
        stopped = False
        for text in queries:
            for _ in range(repeat):
                start = time.perf_counter()
                result = search(engine, text, tables=t)
                times.append((time.perf_counter() - start) * 1000)
            matches.append(result.total)
            stopped |= not getattr(result, "counted", True)  # a baseline's code may count everything
        median = f"{int(statistics.median(matches)):,}" + "+" * stopped
        results[kind] = (percentile(times, 50), percentile(times, 95), max(times), median)
    engine.dispose()
    return results


def times_of(db: Path | str, queries: list[str], repeat: int, raw: bool, fusion: str, runs: bool = True) -> dict:
    """One kind's queries on a fresh engine over ``db`` (a path or a database URL): each once to warm up,
    then ``repeat`` timed runs of each; the times (ms, in order) and each query's total ("+" where the count
    stopped). Not ``runs``: every query answered by its statement, the class runs left unread (`query.runs`)."""
    if not runs:
        import query.search

        query.search.keeps_runs = lambda bind: False
    engine = open_index(str(db), create=False, readonly=True)
    t = tables(engine)
    search = functools.partial(search_index, fusion=fusion)
    if raw:
        search = functools.partial(search, calibration=uncalibrated("synthetic"))
    for text in queries:
        search(engine, text, tables=t)
    times, totals, pages = [], [], []
    for text in queries:
        for _ in range(repeat):
            start = time.perf_counter()
            result = search(engine, text, tables=t)
            times.append((time.perf_counter() - start) * 1000)
        totals.append(f"{result.total}{'' if getattr(result, 'counted', True) else '+'}")
        pages.append([[m.image_id, m.score] for m in result.matches])
    engine.dispose()
    return {"times": times, "totals": totals, "pages": pages}


def times_in(source: Path, db: Path | str, queries: list[str], repeat: int, raw: bool, fusion: str,
             runs: bool = True) -> dict:
    """`times_of` in a process of its own that imports the ``indexer`` and ``query`` in ``source``."""
    argv = [sys.executable, __file__, "--times-of", db if isinstance(db, str) else str(db.resolve())]
    job = json.dumps({"queries": queries, "repeat": repeat, "raw": raw, "fusion": fusion}
                     | ({} if runs else {"runs": False}))
    done = subprocess.run(argv, check=True, text=True, input=job, capture_output=True, cwd=source,
                          env={**os.environ, "PYTHONPATH": str(source)})
    return json.loads(done.stdout)


def counts_agree(mine: str, theirs: str) -> bool:
    """Two totals of one query (`times_of`) tell the same: equal, or one stopped at N ("N+") where the other
    counted more than N (a relation read in score order counts to `query.COUNT_LIMIT`, the full computation
    every match)."""
    if mine == theirs:
        return True
    stopped, counted = (mine, theirs) if mine.endswith("+") else (theirs, mine)
    return stopped.endswith("+") and counted.isdigit() and int(counted) > int(stopped[:-1])


def compare(db: Path, kinds: dict[str, list[str]], repeat: int, rounds: int, raw: bool, fusion: str,
            baseline: Path, baseline_db: Path | None = None, each: bool = False, baseline_runs: bool = True) -> None:
    """The latency table for this checkout's code and the baseline's, interleaved: in each of ``rounds``
    rounds, each kind runs in a fresh process of each code in turn, so both see the same load and the same
    warm page cache. The totals and pages of both must agree (the same answers); the table says where not.
    ``baseline_db``: the same photos in the baseline's schema version, where this code's is newer (or without
    rows the baseline's code does not write); ``each``: also every query's median time in both codes; not
    ``baseline_runs``: the baseline leaves the class runs unread (`times_of`)."""
    sources = {"this": (SOURCE, db, True), "baseline": (baseline, baseline_db or db, baseline_runs)}
    times = {(name, kind): [] for name in sources for kind in kinds}
    totals: dict[tuple[str, str], list[str]] = {}
    pages: dict[tuple[str, str], list] = {}
    for round_ in range(rounds):
        for kind, queries in kinds.items():
            for name, (source, index, runs) in sources.items():
                found = times_in(source, index, queries, repeat, raw, fusion, runs)
                times[name, kind] += found["times"]
                totals[name, kind] = found["totals"]
                pages[name, kind] = found.get("pages")  # a baseline's code from before pages were returned: None
        print(f"  round {round_ + 1} of {rounds} done, load averages "
              f"{'/'.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    print(f"\n{'query kind':<24} {'this: p50':>9} {'p95':>7} {'max':>7} | {'baseline: p50':>13} {'p95':>7} "
          f"{'max':>7} | {'p95 ratio':>9} | median matches")
    for kind in kinds:
        mine, base = times["this", kind], times["baseline", kind]
        same = all(map(counts_agree, totals["this", kind], totals["baseline", kind]))
        same &= pages["baseline", kind] is None or pages["this", kind] == pages["baseline", kind]
        counts = sorted(totals["this", kind], key=lambda x: int(x.rstrip("+")) if x.rstrip("+").isdigit() else -1)
        print(f"{kind:<24} {percentile(mine, 50):9.1f} {percentile(mine, 95):7.1f} {max(mine):7.1f} | "
              f"{percentile(base, 50):13.1f} {percentile(base, 95):7.1f} {max(base):7.1f} | "
              f"{percentile(mine, 95) / percentile(base, 95):9.2f} | {counts[len(counts) // 2]:>9}"
              + ("" if same else "  ANSWERS DIFFER"))
    if each:
        print(f"\n{'query':<44} {'this: median ms':>15} {'baseline':>9} {'ratio':>6} {'matches':>9}")
        for kind, queries in kinds.items():
            for number, text in enumerate(queries):
                mine, base = (statistics.median(
                    times[name, kind][r * len(queries) * repeat + number * repeat + k]
                    for r in range(rounds) for k in range(repeat)) for name in ("this", "baseline"))
                print(f"{text[:44]:<44} {mine:15.1f} {base:9.1f} {mine / base:6.2f} "
                      f"{totals['this', kind][number]:>9}")


def cli_wall_times(db: Path, text: str, runs: int, sources: list[Path]) -> list[tuple[list[float], list[float]]]:
    """Per source folder, the wall and CPU (user + system) times in ms of ``runs`` fresh ``python -m indexer
    query`` processes; the sources take turns, so each sees the same load."""
    times: list[tuple[list[float], list[float]]] = [([], []) for _ in sources]
    for run in range(runs + 1):
        for (wall_ms, cpu_ms), source in zip(times, sources):
            argv = [sys.executable, "-m", "indexer", "query", text, "--db", str(db.resolve())]
            wall, cpu = process_time(argv, source)
            if run:  # the first run warms the page cache and imgidx's label cache
                wall_ms.append(wall)
                cpu_ms.append(cpu)
    return times


def process_time(argv: list[str], source: Path) -> tuple[float, float]:
    """Wall and CPU time in ms of one process importing the code in ``source``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    # run in the source folder: "python -m" puts the working folder first on the path
    subprocess.run(argv, check=True, env={**os.environ, "PYTHONPATH": str(source)}, cwd=source,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return elapsed * 1000, (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000


def print_table(title: str, results: dict[str, tuple[float, float, float, str]]) -> None:
    print(f"\n{title}")
    print(f"  {'query kind':<24} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'median matches':>15}")
    for kind, (p50, p95, worst, matches) in results.items():
        print(f"  {kind:<24} {p50:8.1f} {p95:8.1f} {worst:8.1f} {matches:>15}")


def in_process_p50(db: Path, texts: tuple[str, ...]) -> dict[str, tuple[float, str]]:
    """Each query's in-process p50 and total on an open engine, scores read through the calibration as the
    CLI does."""
    found = {}
    for text in texts:
        p50, _, _, matches = measure(db, {text: [text]}, IN_PROCESS_RUNS, raw=False)[text]
        found[text] = (p50, matches)
    return found


def baseline_in_process_p50(db: Path, texts: tuple[str, ...], baseline: Path) -> dict[str, tuple[float, str]]:
    """`in_process_p50` with the baseline's code: this script run again with it on the path."""
    argv = [sys.executable, __file__, "--in-process-of", str(db.resolve()), *texts]
    done = subprocess.run(argv, check=True, text=True, env={**os.environ, "PYTHONPATH": str(baseline)}, cwd=baseline,
                          capture_output=True)
    return json.loads(done.stdout)


def print_not_only(dbs: list[Path], baseline: Path | None) -> None:
    """NOT-only queries in process, on indexes of several sizes: their cost should follow the page."""
    print(f"\nqueries of NOT terms only, in process: p50 of {IN_PROCESS_RUNS} runs in ms, and the total"
          + (f"; baseline: the code in {baseline}" if baseline else ""))
    for db in dbs:
        mine = in_process_p50(db, NOT_ONLY_QUERIES)
        base = baseline_in_process_p50(db, NOT_ONLY_QUERIES, baseline) if baseline else {}
        for text in NOT_ONLY_QUERIES:
            line = f"  {db.name:<22} {text!r:<28} {mine[text][0]:8.1f} {mine[text][1]:>9}"
            if base:
                ratio = mine[text][0] / base[text][0]
                line += f" | baseline {base[text][0]:8.1f} {base[text][1]:>9} | ratio {ratio:.3f}"
            print(line)


def print_cli(db: Path, runs: int, baseline: Path | None) -> None:
    """Wall time of ``imgidx query`` beside the in-process latency of the same query (`measure`)."""
    with contextlib.closing(read_only(db)) as conn:
        images, rows = (conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("images", "cell_labels"))
    print(f"\nimgidx query TEXT --db {db.name} ({images:,} images, {rows:,} cell_labels rows): in-process p50 of "
          f"{IN_PROCESS_RUNS} runs; wall time of a fresh process, median (min-max) of {runs} runs, and its CPU time "
          f"(user + system), median; all in ms"
          + (f"; baseline: the code in {baseline}" if baseline else ""))
    mine_p50 = {text: p50 for text, (p50, _) in in_process_p50(db, CLI_QUERIES).items()}
    if baseline:
        base_p50 = {text: p50 for text, (p50, _) in baseline_in_process_p50(db, CLI_QUERIES, baseline).items()}
    columns = f"{'in-process':>10} {'wall':>18} {'CPU':>7}"
    print(f"  {'query':<46} {columns}" + (f" | baseline: {columns} | wall ratio" if baseline else ""))
    for text in CLI_QUERIES:
        mine, *base = cli_wall_times(db, text, runs, [SOURCE] + ([baseline] if baseline else []))
        line = f"  {text!r:<46} {figures(mine_p50[text], *mine)}"
        if base:
            ratio = statistics.median(mine[0]) / statistics.median(base[0][0])
            line += f" | {'':10}{figures(base_p50[text], *base[0])} | {ratio:.2f}"
        print(line)
    # What every imgidx command pays before any of its own code: the interpreter, click and SQLAlchemy.
    walls, cpus = zip(*(process_time([sys.executable, "-c", FLOOR], SOURCE) for _ in range(runs)))
    print(f"  {'python -c ' + repr(FLOOR):<46} {'':10} {figures(0, list(walls), list(cpus))[10:]}")


def figures(in_process: float, wall_ms: list[float], cpu_ms: list[float]) -> str:
    """In-process p50, wall median (min-max) and CPU median, in ms."""
    wall = f"{statistics.median(wall_ms):.0f} ({min(wall_ms):.0f}-{max(wall_ms):.0f})"
    return f"{in_process:10.1f} {wall:>18} {statistics.median(cpu_ms):7.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1_000_000, help="images in the latency index")
    parser.add_argument("--cli-images", type=int, default=100_000, help="images in the CLI wall-time index")
    parser.add_argument("--queries", type=int, default=200,
                        help="random queries per kind (200: the p95 stands on ten queries; of 40, on two)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each query")
    parser.add_argument("--cli-runs", type=int, default=10)
    parser.add_argument("--baseline-src", type=Path,
                        help="also run the CLI with the indexer/ and query/ in this folder, and print the ratio")
    parser.add_argument("--baseline-db", type=Path,
                        help="with --baseline-src: the baseline reads this copy of the latency index (the same photos "
                             "in the schema version of its code, where this checkout's is newer)")
    parser.add_argument("--cli-only", action="store_true", help="only the CLI wall times, not the latency table")
    parser.add_argument("--no-cli", action="store_true", help="only the latency table, not the CLI wall times")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--fusion", choices=FUSIONS, default=FUSION,
                        help="the rule of terms answered by several sources (indexer.calibration.fuse)")
    parser.add_argument("--not-only", action="store_true",
                        help="also NOT-only queries in process on both indexes (with the baseline's code too)")
    parser.add_argument("--in-process-of", nargs="+", help=argparse.SUPPRESS)  # `baseline_in_process_p50`
    parser.add_argument("--times-of", help=argparse.SUPPRESS)  # `times_in`
    parser.add_argument("--rounds", type=int, default=2,
                        help="with --baseline-src: rounds of the interleaved latency table (each kind, each code)")
    parser.add_argument("--kinds", help="only these query kinds, comma-separated")
    parser.add_argument("--each", action="store_true", help="with --baseline-src: every query's time in both codes")
    parser.add_argument("--without-runs", action="store_true",
                        help="the baseline is this checkout with the class runs left unread: every query's statement")
    parser.add_argument(
        "--raw", action="store_true",
        help="read the synthetic scores as they are instead of through Lite0's calibration (the rows imitate "
             "probabilities, so the calibration reads their tails of rare classes as news and matches more)",
    )
    args = parser.parse_args()
    if args.times_of:
        job = json.load(sys.stdin)
        print(json.dumps(times_of(args.times_of, job["queries"], job["repeat"], job["raw"], job["fusion"],
                                  job.get("runs", True))))
        return
    if args.in_process_of:
        db, *texts = args.in_process_of
        print(json.dumps(in_process_p50(Path(db), tuple(texts))))
        return
    print(f"machine: {os.cpu_count()} CPUs, load averages {'/'.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"SQLite {sqlite3.sqlite_version}")
    if not args.cli_only:
        db = cached_index(args.images)
        names, weights = popular_labels(db)
        kinds = query_kinds(names, weights, args.queries, args.seed, text_words(db))
        if args.kinds:
            kinds = {kind: kinds[kind] for kind in chosen_kinds(args.kinds, kinds)}
        print(f"index: {db.name}, {db.stat().st_size / 1e9:.2f} GB; "
              f"{args.queries} queries per kind x {args.repeat} runs")
        print("examples: " + "; ".join(f"{k}: {v[0]}" for k, v in kinds.items()))
        title = "schema.sql" + (", scores read raw" if args.raw else ", Lite0's calibration") + f", fusion {args.fusion}"
        if args.without_runs:
            print(f"\n{title}; this checkout against itself with the class runs unread, {args.rounds} rounds")
            compare(db, kinds, args.repeat, args.rounds, args.raw, args.fusion, SOURCE, each=args.each,
                    baseline_runs=False)
        elif args.baseline_src:
            print(f"\n{title}; this checkout against the code in {args.baseline_src}, {args.rounds} rounds")
            compare(db, kinds, args.repeat, args.rounds, args.raw, args.fusion, args.baseline_src, args.baseline_db,
                    args.each)
        else:
            print_table(title, measure(db, kinds, args.repeat, args.raw, args.fusion))
    if not args.no_cli:
        print_cli(cached_index(args.cli_images), args.cli_runs, args.baseline_src)
    if args.not_only:
        print_not_only([cached_index(args.cli_images), cached_index(args.images)], args.baseline_src)
    print(f"load averages at the end: {'/'.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
