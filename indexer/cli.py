"""The `imgidx` command line: a thin layer over `indexer` and `query`.

Each command imports what it needs inside its body, so `imgidx query --help` or `imgidx stats` never pays
for TensorFlow. Library errors (`ImgidxError`) become one-line `click.ClickException`s.
"""

from __future__ import annotations

import os
import sys

import click

from indexer import __version__
from indexer.errors import ImgidxError
from indexer.models import DEBUG_ENV, DEFAULT_MODEL, DEFAULT_WORKING_SIZE, model_names
from indexer.runtime import PRECISIONS, RUNTIMES
from indexer.names import printable, stored


class ImgidxGroup(click.Group):
    """Turns library errors into one-line messages; unexpected ones too, unless IMGIDX_DEBUG is set."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ImgidxError as exc:
            raise click.ClickException(exc.shown()) from None
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            raise click.exceptions.Abort() from None
        except Exception as exc:
            if os.environ.get(DEBUG_ENV):
                raise
            raise click.ClickException(
                printable(f"internal error: {type(exc).__name__}: {exc} (set {DEBUG_ENV}=1 for the traceback)")
            ) from None


def model_option(func):
    """`--model`, `--weights`, `--precision` and `--runtime`, shared by every command that runs a network."""
    for name, choices, text in (
        ("--runtime", RUNTIMES, "What runs the network: TensorFlow, or OpenVINO (pip install 'imgidx[openvino]'). "
         "auto picks OpenVINO int8 where it is installed and the CPU has int8 dot products (VNNI, AMX), else "
         "TensorFlow."),
        ("--precision", PRECISIONS, "Arithmetic: auto is int8 on OpenVINO where the CPU runs it natively, else "
         "bf16 where the CPU has it, else fp32. int8 needs OpenVINO."),
    ):
        func = click.option(name, type=click.Choice(choices), default="auto", show_default=True, help=text)(func)
    func = click.option(
        "--weights",
        type=click.Path(dir_okay=False),
        default=None,
        help="Weights file for the model (vgg16: vgg_16.ckpt, the .tar.gz, or the Keras .h5). "
        "Default: $IMGIDX_VGG16_WEIGHTS, then the download cache.",
    )(func)
    func = click.option(
        "--model",
        "model_name",
        type=click.Choice(model_names()),
        default=DEFAULT_MODEL,
        show_default=True,
        help="Backbone network. efficientnet-lite0 ships its weights and works offline.",
    )(func)
    return func


@click.group(cls=ImgidxGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="imgidx")
def cli() -> None:
    """Index a photo library with a fully-convolutional CNN and search it by label and position.

    \b
    imgidx index ~/Photos                    # build or update the index
    imgidx query "dog in center AND flower pot top-left"
    imgidx classify photo.jpg                # top-5 classes of one photo
    imgidx segment photo.jpg --out map.png   # the coarse class map
    """



def _load_photos(paths, min_side: int) -> tuple[list[tuple[str, "object"]], int]:
    """Decode every path; a bad one is reported on one line and counted, the rest go on."""
    from indexer import images
    from indexer.errors import ImageReadError

    photos, failed = [], 0
    for path in paths:
        try:
            photos.append((path, images.load(path, min_side=min_side).pixels))
        except ImageReadError as exc:
            click.echo(f"Error: {exc.shown()}", err=True)
            failed += 1
    return photos, failed


@cli.command()
@click.argument("image_paths", metavar="IMAGE...", nargs=-1, required=True, type=click.Path())
@model_option
@click.option("--top", "-k", default=5, show_default=True, type=click.IntRange(1, 1000), help="Classes per image.")
@click.option(
    "--size", default=None, type=click.IntRange(1),
    help=f"Working size: the shorter side in px  [default: {DEFAULT_WORKING_SIZE}, as the index].",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON Lines, one object per image.")
def classify(image_paths, model_name, weights, precision, runtime, top, size, as_json):
    """Print the top classes of each IMAGE with their confidence.

    The confidence is the one the index stores for the photo and `show` and `query` print: the whole
    photo runs at the working size, each class is read in its best 3x3 cell, and the model's
    calibration turns that into the chance that the class is really there. Exits 1 if any IMAGE could
    not be read.
    """
    import json

    from indexer import inference
    from indexer.calibration import JSON_DECIMALS, percent

    size = size or DEFAULT_WORKING_SIZE
    photos, failed = _load_photos(image_paths, size)
    if photos:
        model = _load_network(model_name, weights, runtime, precision, size)
        for path, photo in photos:
            predictions = inference.classify(model, photo, size, top)
            if as_json:
                top_list = [
                    {"class": p.class_index, "name": p.name, "score": round(p.probability, JSON_DECIMALS)}
                    for p in predictions
                ]
                click.echo(json.dumps({"path": stored(path), "model": model.name, "top": top_list}))
            else:
                click.echo(printable(path))
                for p in predictions:
                    click.echo(f"  {percent(p.probability):>4}  {p.name} ({p.class_index})")
    if failed:
        raise SystemExit(1)


@cli.command()
@click.argument("image_path", metavar="IMAGE", type=click.Path())
@click.option("--out", type=click.Path(dir_okay=False), help="Write the figure here (PNG).")
@click.option("--text", is_flag=True, help="Print the class map as a grid of class names instead.")
@click.option(
    "--size", default=None, type=click.IntRange(1), help=f"Working size: the shorter side in px  [default: {DEFAULT_WORKING_SIZE}]."
)
@model_option
def segment(image_path, out, text, size, model_name, weights, precision, runtime):
    """Run the network fully convolutionally over IMAGE and show its coarse class map.

    The figure puts the photo beside the map of arg-max classes, relabelled to the classes present
    and drawn with a discrete colormap whose colour bar names each class (the seed's figure).
    """
    from pathlib import Path

    from indexer import images, inference

    if not out and not text:
        raise click.UsageError("give --out FILE.png for the figure, or --text for a grid of class names")
    size = size or images.DEFAULT_WORKING_SIZE
    photo = images.load(image_path, min_side=size).pixels
    model = _load_network(model_name, weights, runtime, precision, size)
    segmentation = inference.segment(model, photo, size)
    if text:
        from indexer.figure import text_grid

        click.echo(text_grid(segmentation))
    if out:
        from indexer.figure import save_figure

        save_figure(segmentation, Path(out), f"{Path(image_path).name}: {model.name}")
        click.echo(f"wrote {out}")


def _build_note(message: str) -> None:
    """A one-time build (converting or quantizing a network) is announced above any progress bar."""
    from tqdm import tqdm

    tqdm.write(f"note: {message}", file=sys.stderr)


def _load_network(model_name, weights, runtime, precision, size):
    """The network as asked, ``auto`` resolved for this machine (`indexer.runtime`)."""
    from indexer import runtime as runtimes

    return runtimes.load(model_name, weights, runtime, precision, size=size, on_build=_build_note,
                         progress=sys.stderr.isatty())


def _load_resolved(model_name, weights, runtime, precision, size, quantization):
    from indexer import runtime as runtimes

    return runtimes.load_backbone(
        model_name, weights, runtime, precision, size=size, quantization=quantization, on_build=_build_note,
        progress=sys.stderr.isatty(),
    )


@cli.group()
def weights() -> None:
    """Download and check model weights (only VGG-16 needs a download)."""


@weights.command("fetch")
@click.argument("model_name", metavar="MODEL", type=click.Choice(["vgg16"]))
def weights_fetch(model_name):
    """Download MODEL's weights into the cache, resuming a broken download.

    The archive's size is checked, it is extracted safely (no member may leave the cache folder), and
    its sha256 is recorded so that later loads can tell a damaged or swapped file.
    """
    from tqdm import tqdm

    from indexer.models import weights as weight_files

    with tqdm(unit="B", unit_scale=True, unit_divisor=1024, desc=model_name, disable=None) as bar:

        def progress(done: int, total: int | None) -> None:
            bar.total = total
            bar.update(done - bar.n)

        path = weight_files.fetch_vgg16(progress=progress)
    click.echo(f"{model_name} weights ready: {path}")


def db_option(func):
    """`--db`, shared by every command that reads or writes an index."""
    return click.option(
        "--db",
        default=None,
        metavar="URL|PATH",
        help="Index database: a file path or an SQLAlchemy URL. Default: $IMGIDX_DB, else index.db in the "
        "user data folder.",
    )(func)


def _db(db: str | None) -> str:
    from indexer import store

    return db or store.default_db_url()


class _IndexProgress:
    """Draws pipeline events: a bar with count, rate and ETA on a terminal; failures above it."""

    def __init__(self, show_bar: bool, show_failures: bool):
        self.show_bar = show_bar
        self.show_failures = show_failures
        self.bar = None

    def __call__(self, event) -> None:
        from tqdm import tqdm

        from indexer import pipeline

        if isinstance(event, pipeline.Planned):
            self.bar = tqdm(
                total=event.todo, unit="img", desc="indexing", file=sys.stderr, dynamic_ncols=True,
                disable=not (self.show_bar and event.todo),
            )
        elif isinstance(event, pipeline.ModelLoading):
            self.bar.set_description(f"loading {event.model}")
        elif isinstance(event, pipeline.Progress):
            self.bar.set_description("indexing", refresh=False)
            self.bar.update(event.done - self.bar.n)
        elif isinstance(event, (pipeline.FileFailed, pipeline.FileSkipped, pipeline.FolderUnreadable)) and (
            self.show_failures
        ):
            if isinstance(event, pipeline.FileFailed):
                message = printable(f"failed {event.error}")
            elif isinstance(event, pipeline.FileSkipped):
                message = printable(f"skipped {event.path}: {event.reason}")
            else:
                message = printable(f"cannot read folder {event.path}: {event.error}")
            if self.bar is None:
                click.echo(message, err=True)
            else:
                self.bar.write(message, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@cli.command("index")
@click.argument("folders", metavar="FOLDER...", nargs=-1, required=True, type=click.Path(exists=True))
@db_option
@model_option
@click.option(
    "--size", default=None, type=click.IntRange(1),
    help=f"Working size: the shorter side in px the network sees  [default: the index's, else {DEFAULT_WORKING_SIZE}].",
)
@click.option("--batch", default=None, type=click.IntRange(1), help="Images per model call  [default: 8].")
@click.option(
    "--workers", default=None, type=click.IntRange(1),
    help="Decoding threads (local engine; default: CPU count) or model actors (ray engine; default: one "
    "per node).",
)
@click.option(
    "--engine", "runner", type=click.Choice(["local", "ray"]), default="local", show_default=True,
    help="Where the work runs: this process, or Ray Data (pip install 'imgidx[ray]').",
)
@click.option(
    "--address", default=None, metavar="ADDR",
    help="With --engine ray: join the Ray cluster at ADDR (host:port, or auto) instead of starting one.",
)
@click.option("--prune/--no-prune", default=True, show_default=True, help="Remove files that are gone from the index.")
@click.option("--reindex", is_flag=True, help="Redo every image, e.g. to change --model or --size.")
@click.option("--progress/--no-progress", default=None, help="Progress bar  [default: on when stderr is a terminal].")
@click.option("-q", "--quiet", is_flag=True, help="Only the summary: no progress bar, no per-file errors.")
def index_command(
    folders, db, model_name, weights, precision, runtime, size, batch, workers, runner, address, prune, reindex,
    progress, quiet,
):
    """Index the photos under each FOLDER (recursively), or bring the index up to date.

    Unchanged files are skipped, moved or renamed ones keep their labels, deleted ones are pruned, and
    bad files are recorded and reported without stopping the run. Results are committed in batches, so an
    interrupted run loses nothing committed: run the same command again to continue.

    An existing index keeps its model, working size and precision; asking for others is refused unless
    --reindex is given, which redoes every image (the old labels are dropped). Exits 1 if some file or
    folder could not be read.

    With --engine ray, reading and the model run on Ray Data (a local instance, or the cluster at
    --address, whose nodes must see the same paths); this process still diffs and writes the index.
    """
    from indexer import pipeline, store
    from indexer.report import summary_text

    if address is not None and runner != "ray":
        raise click.UsageError("--address needs --engine ray")
    if weights is not None:
        weights = os.path.abspath(weights)  # Ray workers may not share this working directory

    source = click.get_current_context().get_parameter_source("model_name")
    requested_model = None if source == click.core.ParameterSource.DEFAULT else model_name
    engine = store.open_index(_db(db), upgrade=reindex)
    show_bar = progress if progress is not None else (not quiet and sys.stderr.isatty())
    drawer = _IndexProgress(show_bar, show_failures=not quiet)
    try:
        summary = pipeline.index(
            engine,
            folders,
            lambda settings: _load_resolved(
                settings.model, weights, settings.runtime, settings.precision, settings.working_size,
                settings.quantization,
            ),
            model=requested_model,
            size=size,
            precision=precision,
            reindex=reindex,
            batch=batch,
            workers=workers,
            prune=prune,
            on_event=drawer,
            runner=runner,
            address=address,
            runtime=runtime,
        )
    except KeyboardInterrupt:
        drawer.close()
        click.echo("interrupted: what was committed is kept; run the same command to continue", err=True)
        raise SystemExit(130) from None
    finally:
        drawer.close()
        engine.dispose()
    click.echo(summary_text(summary))
    if summary.stale_elsewhere:
        click.echo(
            f"note: {summary.stale_elsewhere} indexed images outside these folders are due for re-indexing; "
            "run imgidx index on their folders",
            err=True,
        )
    if not summary.ok:
        raise SystemExit(1)


@cli.command()
@click.argument("image_path", metavar="IMAGE", type=click.Path())
@db_option
@click.option("--top", "-k", default=5, show_default=True, type=click.IntRange(1), help="Image labels to list.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with every stored label.")
def show(image_path, db, top, as_json):
    """Print what the index holds for IMAGE: its top labels and the 3x3 grid.

    Each grid cell shows its leading class and score: the mean probability of that class over the cell.
    A file not found by its path is looked up by its content, so a moved photo is still found.
    """
    import hashlib
    import json

    from indexer import images, report, store

    engine = store.open_index(_db(db), create=False, readonly=True)
    try:
        with engine.connect() as conn:
            found = None
            for path in dict.fromkeys(_path_candidates(image_path)):
                found = store.image_report(conn, path=path)
                if found:
                    break
            if found is None and os.path.isfile(image_path):
                digest = hashlib.sha256(images.read_file(image_path)).hexdigest()
                found = store.image_report(conn, content_hash=digest)
    finally:
        engine.dispose()
    if found is None:
        raise click.ClickException(printable(f"{image_path} is not in the index; add it with: imgidx index FOLDER"))
    if as_json:
        click.echo(json.dumps(report.image_json(found)))
    else:
        click.echo(report.image_text(found, top))


def _path_candidates(path: str) -> list[str]:
    """The ways an indexed path may spell ``path``: through a symlinked folder, or fully resolved."""
    absolute = os.path.abspath(path)
    parent, name = os.path.split(absolute)
    return [os.path.join(os.path.realpath(parent), name), absolute, os.path.realpath(absolute)]


@cli.command()
@db_option
@click.option("--top", "-k", default=10, show_default=True, type=click.IntRange(1), help="Labels to list.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def stats(db, top, as_json):
    """Print counts, the model and working size used, the most frequent labels and the failed files.

    A label's count is the number of images whose top label it is.
    """
    import json

    from indexer import report, store

    db = _db(db)
    engine = store.open_index(db, create=False, readonly=True)
    try:
        with engine.connect() as conn:
            result = store.index_stats(conn, top=top)
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps(report.stats_json(result, db)))
    else:
        click.echo(report.stats_text(result, db))


@cli.command()
@click.argument("sources", metavar="SRC...", nargs=-1, required=True)
@click.option("--into", "into", required=True, metavar="URL|PATH", help="The index to merge into; created if missing.")
@click.option("-q", "--quiet", is_flag=True, help="Only the totals line: no progress bar, no line per source.")
def merge(sources, into, quiet):
    """Merge the indexes SRC... (built per disk or per machine) into the index --into.

    SRC and --into are file paths or SQLAlchemy URLs. Every image row is copied with its labels; the
    sources are left as they are.

    \b
    Conflicts: when several indexes hold the same path, the row indexed last
    wins, even a failed file over labels; ties go to the --into index's own
    row, then to the later SRC on the command line.

    Refused before anything is written: a source that is missing or of another schema version, indexes
    built with other settings (model, working size, precision) than each other or than a non-empty
    --into, and an index merged into itself. Rows are copied in chunks, each its own transaction: an
    interrupted merge keeps what it committed, and running the same command again finishes it.
    """
    from tqdm import tqdm

    from indexer import report
    from indexer.merge import Progress, SourceStarted, merge as merge_indexes

    bar = None

    def draw(event) -> None:
        nonlocal bar
        if isinstance(event, SourceStarted):
            if bar is not None:
                bar.close()
            bar = tqdm(
                total=event.images, unit="img", desc=f"merging {event.source}", file=sys.stderr,
                dynamic_ncols=True, disable=quiet or not sys.stderr.isatty(),
            )
        elif isinstance(event, Progress):
            bar.update(event.done - bar.n)

    try:
        summary = merge_indexes(list(sources), into, on_event=draw)
    except KeyboardInterrupt:
        click.echo("interrupted: what was committed is kept; run the same command to finish", err=True)
        raise SystemExit(130) from None
    finally:
        if bar is not None:
            bar.close()
    click.echo(report.merge_text(summary, per_source=not quiet))


from query import DEFAULT_MIN_SCORE  # noqa: E402  (a constant; `query` imports nothing heavy)
from query.parser import QUERY_HELP  # noqa: E402  (regexes and tables only)


@cli.command("query", help=QUERY_HELP)
@click.argument("words", metavar="QUERY...", nargs=-1, required=True)
@db_option
@click.option(
    "--min-score",
    default=DEFAULT_MIN_SCORE,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Confidence a term needs in a cell unless it gives its own (> 0.5); see the precision it gives below.",
)
@click.option("-n", "--limit", default=20, show_default=True, type=click.IntRange(0), help="Matches to show; 0 = all.")
@click.option("--offset", default=0, show_default=True, type=click.IntRange(0), help="Skip this many matches (paging).")
@click.option("--grid", "fmt", flag_value="grid", help="Draw each match's 3x3 grid with the matched cells numbered.")
@click.option("--json", "fmt", flag_value="json", help="JSON Lines: path, score, width, height, terms (score, cells).")
@click.option("--paths", "fmt", flag_value="paths", help="Only the paths, one a line.")
@click.option("-0", "--null", "nul", is_flag=True, help="Paths ended by NUL instead of newline (for xargs -0); implies --paths.")
@click.option(
    "--html",
    "html_file",
    metavar="FILE",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Write a self-contained gallery page (thumbnails with the grid drawn over them); - for stdout.",
)
@click.option("--explain", is_flag=True, help="Print the parsed query, the classes of each label and the SQL; run nothing.")
def query_command(words, db, min_score, limit, offset, fmt, nul, html_file, explain):
    from indexer import store
    from query import render, search

    if nul:
        if fmt not in (None, "paths"):
            raise click.UsageError(f"-0 goes with --paths, not --{fmt}")
        fmt = "paths"
    if html_file is not None and fmt is not None:
        raise click.UsageError(f"choose one output: --html or --{fmt}")
    text = " ".join(words)
    engine = store.open_index(_db(db), create=False, readonly=True)
    try:
        prepared = search.prepare(engine, text, min_score=min_score, limit=limit, offset=offset)
        for note in prepared.notes():
            click.echo(f"note: {note}", err=True)
        if explain:
            click.echo(search.explain(engine, prepared))
            return
        result = search.execute(engine, prepared)
    finally:
        engine.dispose()
    if html_file is not None:
        page = render.html_page(result)
        if html_file == "-":
            click.echo(page, nl=False)
        else:
            try:
                with open(html_file, "w", encoding="utf-8") as out:
                    out.write(page)
            except OSError as exc:
                raise click.ClickException(f"cannot write {html_file}: {exc.strerror or exc}") from None
            click.echo(f"wrote {html_file}: {render.summary(result)}", err=True)
    elif fmt == "json":
        for line in render.json_lines(result):
            click.echo(line)
    elif fmt == "paths":
        click.echo(os.fsencode(render.paths(result, nul=nul)), nl=False)  # bytes: the names exactly
    elif fmt == "grid":
        encoding = (getattr(sys.stdout, "encoding", None) or "ascii").lower().replace("-", "")
        click.echo(render.grids(result, unicode=encoding in ("utf8", "utf16", "utf32")))
    else:
        click.echo(render.table(result))


@cli.command("labels")
@click.argument("words", metavar="TEXT...", nargs=-1, required=True)
def labels_command(words):
    """Show what a label means in queries: its classes, vocabulary words, WordNet groups and their classes.

    \b
      imgidx labels crane          # ambiguous: the bird (134) and the machine (517)
      imgidx labels train          # vocabulary: locomotives, carriages, trams, bullet train
      imgidx labels mammals        # the WordNet group mammal: 218 classes
      imgidx labels '"pot"'        # quoted: the exact name only
      imgidx labels n02084071      # by WordNet id

    An unknown word gets the closest names instead; a word for a thing none of the 1000 classes shows
    (person, tree) gets one line naming the nearest classes. Both exit with status 1.
    """
    from query import resolve

    text = " ".join(words)
    quoted = len(text) > 1 and text[0] == text[-1] == '"'
    click.echo(resolve.lookup(text[1:-1] if quoted else text, quoted=quoted).describe(with_groups=True))


from indexer.cli_runtime import runtime_group  # noqa: E402  (the `imgidx runtime` commands)

cli.add_command(runtime_group)


def main() -> None:
    cli(prog_name="imgidx")


if __name__ == "__main__":
    sys.exit(main())
