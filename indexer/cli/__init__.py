"""The `imgidx` command line: a thin layer over `indexer` and `query`.

Each command imports what it needs inside its body, so `imgidx query --help` or `imgidx stats` never pays
for TensorFlow. Library errors (`ImgidxError`) become one-line `click.ClickException`s.
"""

from __future__ import annotations

import os
import signal
import sys

import click

from indexer import __version__, standard_output
from indexer.errors import ImgidxError
from indexer.models import DEBUG_ENV, DEFAULT_MODEL, DEFAULT_WORKING_SIZE, MAX_WORKING_SIZE, model_names
from indexer.runtime import PRECISIONS, RUNTIMES
from indexer.names import printable, stored

#: The exit status of a command whose reader went away (`imgidx query ... | head`): a process that SIGPIPE
#: ended, as `yes | head` leaves `yes`.
CLOSED_PIPE_STATUS = 128 + signal.SIGPIPE


class ImgidxGroup(click.Group):
    """Turns library errors into one-line messages; unexpected ones too, unless IMGIDX_DEBUG is set.

    Standard output goes through `indexer.standard_output` for the whole run, ``--help`` included: a full
    device, an I/O error or a closed descriptor is one line and exit status 1, whichever command printed.
    """

    def main(self, *args, **kwargs):
        with standard_output.guarded() as guard:
            try:
                try:
                    return super().main(*args, **kwargs)
                finally:  # what is still buffered is written now, so its failure is reported like any other
                    failure = guard.flush()
                    if failure is not None:
                        raise failure
            except standard_output.OutputError as exc:  # also from --help and --version, before any command
                click.echo(f"Error: {exc.shown()}", err=True)
                sys.exit(1)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ImgidxError as exc:
            raise click.ClickException(exc.shown()) from None
        except BrokenPipeError:
            _discard_stdout()
            raise SystemExit(CLOSED_PIPE_STATUS) from None
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


def _discard_stdout() -> None:
    """Point standard output at /dev/null, so that what is still buffered cannot fail again at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no file descriptor behind it (a test runner's buffer)
        pass


class WorkingSize(click.IntRange):
    """A ``--size``: from 1 (each network refuses what is too small for it when loaded) to
    `MAX_WORKING_SIZE`, refused as a usage error before anything is loaded, with the reason."""

    def __init__(self):
        super().__init__(1, MAX_WORKING_SIZE)

    def convert(self, value, param, ctx):
        number = click.INT.convert(value, param, ctx)
        if number > MAX_WORKING_SIZE:
            self.fail(f"{number} is above {MAX_WORKING_SIZE}, the largest working size (a batch at a larger one needs "
                      "more memory than a workstation has)", param, ctx)
        return super().convert(number, param, ctx)


WORKING_SIZE = WorkingSize()


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

    Which model: vgg16 (the default) is the seed's network and needs its 513 MB checkpoint (imgidx weights
    fetch vgg16). efficientnet-lite0 works offline, indexes 3.4x as fast (35 against 10 images/s on
    1600x1200 photos) and is the one measured on annotated photos: image F1 0.560, cell F1 0.381.
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
    "--size", default=None, type=WORKING_SIZE,
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
@click.option("--text", is_flag=True, help="Print the class map as a grid of short keys and their legend.")
@click.option(
    "--size", default=None, type=WORKING_SIZE,
    help=f"Working size: the shorter side in px  [default: {DEFAULT_WORKING_SIZE}].",
)
@click.option("--faces/--no-faces", "with_faces", default=True, show_default=True,
              help="Find faces too: outlined on the figure, listed under the text grid.")
@click.option("--objects/--no-objects", "with_objects", default=True, show_default=True,
              help="Find COCO objects too: outlined with their class on the figure, listed under the text grid.")
@model_option
def segment(image_path, out, text, size, with_faces, with_objects, model_name, weights, precision, runtime):
    """Run the network fully convolutionally over IMAGE and show its coarse class map.

    The figure puts the photo beside the map of arg-max classes, relabelled to the classes present
    and drawn with a discrete colormap whose colour bar names each class (the seed's figure), and
    the map again over the photo with the 3x3 cells the index stores, each with its leading label and
    confidence (what `show` prints); the faces and objects the detectors find (as the indexer finds them)
    are outlined on the photo with their class and confidence. --text prints the map as short keys with a
    legend, fitted to the terminal's width, and lists the boxes.
    """
    from pathlib import Path

    from indexer import boxes as box_rules, detect, faces, images, inference

    if not out and not text:
        raise click.UsageError("give --out FILE.png for the figure, or --text for the map as text")
    size = size or images.DEFAULT_WORKING_SIZE
    decoded = images.load(image_path, min_side=size)  # as the indexer decodes it, for all
    model = _load_network(model_name, weights, runtime, precision, size)
    segmentation = inference.segment(model, decoded.pixels, size)
    found = []
    if with_faces or with_objects:
        object_detector = None
        if with_objects:
            from indexer import objects

            object_detector = objects.load_detector()
        found = detect.find([faces.detection_pixels(decoded.pixels)], [(decoded.width, decoded.height)],
                            faces.load_detector() if with_faces else None, object_detector).boxes[0]
        found = list(box_rules.best_first(found))
    if text:
        from indexer.figure import text_map
        from indexer.report import boxes_text

        click.echo(text_map(segmentation))
        lines = boxes_text(found, with_faces, with_objects)
        if lines:
            click.echo("\n".join(lines))
    if out:
        from indexer.figure import save_figure

        shown = [box for box in found if box_rules.worth_showing(box)]
        save_figure(segmentation, Path(out), f"{Path(image_path).name}: {model.name}", shown,
                    (decoded.width, decoded.height))
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


def _new_index_file(db: str) -> bool:
    """``db`` names an SQLite file that does not exist yet, which an index run would make."""
    from indexer import store

    path = store.sqlite_path(store.parse_url(db))
    return path is not None and not path.exists()


class _IndexProgress:
    """Draws pipeline events: a bar with count, rate and ETA on a terminal; failures above it.

    The bar's rate is the summary's (`pipeline.Summary.rate`): files done per second since the plan, the
    model's loading left out (its clock moves on by the loading time, shown on a line of its own), and
    averaged over the whole span rather than tqdm's recent-rate smoothing.
    """

    def __init__(self, show_bar: bool, show_failures: bool):
        self.show_bar = show_bar
        self.show_failures = show_failures
        self.bar = None

    def __call__(self, event) -> None:
        from tqdm import tqdm

        from indexer import pipeline

        if isinstance(event, pipeline.Planned):
            self.bar = tqdm(
                total=event.todo, unit="img", desc="indexing", file=sys.stderr, dynamic_ncols=True, smoothing=0,
                disable=not (self.show_bar and event.todo),
            )
        elif isinstance(event, pipeline.ModelLoading):
            self.bar.set_description(f"loading {event.model}")
        elif isinstance(event, pipeline.ModelLoaded) and not self.bar.disable:
            self.bar.start_t += event.seconds
            self.bar.write(f"model loaded in {event.seconds:.1f} s", file=sys.stderr)
        elif isinstance(event, pipeline.Progress):
            self.bar.set_description("indexing", refresh=False)
            self.bar.update(event.done - self.bar.n)
        elif isinstance(event, (pipeline.FileFailed, pipeline.FileSkipped, pipeline.FolderUnreadable)) and (
            self.show_failures and not getattr(event, "still", False)
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
    "--size", default=None, type=WORKING_SIZE,
    help=f"Working size: the shorter side in px the network sees  [default: the index's, else {DEFAULT_WORKING_SIZE}].",
)
@click.option("--batch", default=None, type=click.IntRange(1), help="Images per model call  [default: 8].")
@click.option(
    "--workers", default=None, type=click.IntRange(1),
    help="Decoding threads, and as many detector threads (local engine; default: CPU count), or model actors "
    "(ray engine; default: one per node).",
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
@click.option(
    "--exclude", "excludes", multiple=True, metavar="GLOB",
    help="Leave out files and folders matching GLOB (repeatable): a name at any depth ('*.tmp', '@eaDir'), "
    "or with a / a path below the folder ('2019/drafts', 'raw/'); a FOLDER's .imgidxignore holds more, "
    "one a line.",
)
@click.option(
    "--strict", is_flag=True,
    help="Exit 1 also for files still failing: failed before and unchanged since.",
)
@click.option(
    "--faces/--no-faces", "with_faces", default=None,
    help="Look for faces (the label face, for queries and imgidx redact)  [default: the index's, else on].",
)
@click.option(
    "--objects/--no-objects", "with_objects", default=None,
    help="Look for COCO's 80 objects (person, chair, car...) with NanoDet-m  [default: the index's, else on].",
)
@click.option("--progress/--no-progress", default=None, help="Progress bar  [default: on when stderr is a terminal].")
@click.option("-q", "--quiet", is_flag=True, help="Only the summary: no progress bar, no per-file errors.")
def index_command(
    folders, db, model_name, weights, precision, runtime, size, batch, workers, runner, address, prune, reindex,
    excludes, strict, with_faces, with_objects, progress, quiet,
):
    """Index the photos under each FOLDER (recursively), or bring the index up to date.

    Unchanged files are skipped, moved or renamed ones keep their labels, deleted ones are pruned, and
    bad files are recorded and reported without stopping the run. Results are committed in batches, so an
    interrupted run loses nothing committed: run the same command again to continue.

    Objects (COCO's 80 classes: person, chair, car..., NanoDet-m) and faces (MediaPipe's BlazeFace) are
    looked for in every photo, offline, and stored with their boxes: query them by name, blur them with
    imgidx redact. --no-objects and --no-faces skip them.

    An existing index keeps its model, working size, precision, faces and objects settings; asking for
    others is refused unless --reindex is given, which redoes every image (the old labels are dropped). An
    index from before objects is upgraded in place, keeping its labels and faces; --objects --reindex then
    finds its objects. Exits 1 if
    some file or folder could not be read, except files still failing: those that failed before and have
    not changed since are counted apart and do not fail the run, so a nightly job stays green (--strict:
    they do). Excluded files already in the index are pruned like deleted ones.

    The progress bar and the summary's images/s count the same thing over the same span: files done (indexed,
    failed, moved) per second from the end of the folder scan to the last commit, leaving out the model's
    loading, which is shown apart ("model loaded in 8.1 s").

    With --engine ray, reading and the model run on Ray Data (a local instance, or the cluster at
    --address, whose nodes must see the same paths); this process still diffs and writes the index.
    """
    from indexer import store
    from indexer.models import check_weights

    if address is not None and runner != "ray":
        raise click.UsageError("--address needs --engine ray")
    if weights is not None:
        weights = os.path.abspath(weights)  # Ray workers may not share this working directory

    source = click.get_current_context().get_parameter_source("model_name")
    requested_model = None if source == click.core.ParameterSource.DEFAULT else model_name
    db = _db(db)
    if runner == "ray":
        from indexer.ray_engine import require_ray

        require_ray()
    if _new_index_file(db):  # a run that cannot start must not leave an empty index behind
        check_weights(requested_model or DEFAULT_MODEL, weights)

    from indexer import pipeline
    from indexer.report import summary_text

    engine = store.open_index(db, upgrade=reindex)
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
            check_model=lambda settings: check_weights(settings.model, weights),
            exclude=excludes,
            with_faces=with_faces,
            runtime=runtime,
            with_objects=with_objects,
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
    if summary.still_failing and not quiet:
        click.echo(
            f"note: still failing ({summary.still_failing}): unchanged since they failed before, so they do not "
            "fail the run unless --strict; imgidx stats lists them",
            err=True,
        )
    if not summary.ok or (strict and summary.still_failing):
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

    A label's count is the number of images whose top label it is: the label of highest confidence, as
    show ranks them.
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
@click.option("--json", "fmt", flag_value="json", help="JSON Lines: path, sha256, copies, score, width, height, terms (score, cells).")
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
    """Show what a label means in queries: its classes, vocabulary words, WordNet groups and their classes,
    and which models answer for it: the ImageNet classifier, the COCO object detector, the face detector.

    \b
      imgidx labels crane          # ambiguous: the bird (134) and the machine (517)
      imgidx labels train          # vocabulary: locomotives, carriages, trams, bullet train, and the detector's train
      imgidx labels sofa           # both models: ImageNet's studio couch and the detector's couch
      imgidx labels giraffe        # the object detector alone
      imgidx labels mammals        # the WordNet group mammal: 218 classes and 9 of the detector's
      imgidx labels '"pot"'        # quoted: the exact name only
      imgidx labels n02084071      # by WordNet id

    An unknown word gets the closest names instead; a word for a thing no model shows (tree, baby) gets one
    line naming the nearest classes. Both exit with status 1. person and people mean the people the object
    detector found, the faces the face detector found and ImageNet's three classes of people.
    """
    from query import resolve

    text = " ".join(words)
    quoted = len(text) > 1 and text[0] == text[-1] == '"'
    click.echo(resolve.lookup(text[1:-1] if quoted else text, quoted=quoted).describe(with_groups=True))


@cli.command("serve")
@db_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Any other than this machine's own makes the library visible on that network.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="Port; 0 picks a free one.")
@click.option("--open", "open_browser", is_flag=True, help="Open the search page in the web browser.")
def serve_command(db, host, port, open_browser):
    """Search and browse the index in a web browser: thumbnails with the matched cells drawn over them,
    each photo with its stored grid and overlays, and an overview.

    The index is opened read-only; thumbnails are cached in the cache folder ($IMGIDX_CACHE_DIR moves
    it). Ctrl-C stops the server. Needs the web extra: pip install 'imgidx[serve]'.
    """
    import serve
    from indexer.store import shown

    try:
        from serve import server
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in serve.EXTRA_MODULES:
            raise
        raise click.ClickException(serve.INSTALL_HINT) from None
    warning = server.exposure_warning(host)
    if warning:
        click.echo(f"warning: {warning}", err=True)
    index = server.Index(_db(db))
    try:
        sock = server.listen(host, port)
        url = server.url_of(sock)
        click.echo(f"serving {printable(shown(_db(db)))} at {url} (Ctrl-C stops)", err=True)
        server.run(index, sock, on_started=(lambda: server.open_browser(url)) if open_browser else None)
    finally:
        index.close()
    click.echo("stopped", err=True)


@cli.command()
@click.argument("words", metavar="QUERY...", nargs=-1, required=True)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for the copies (made if missing).")
@db_option
@click.option("--pixelate", is_flag=True, help="Pixelate the regions instead of blurring them.")
@click.option("--force", is_flag=True, help="Replace copies that exist in --out.")
@click.option(
    "--strip-gps/--keep-gps", "strip_location", default=True, show_default=True,
    help="Leave out of the copies what may tell where a photo was taken: EXIF's GPS block and maker notes, "
    "XMP and IPTC. --keep-gps keeps them.",
)
@click.option(
    "--min-score", default=DEFAULT_MIN_SCORE, show_default=True, type=click.FloatRange(0, 1),
    help="Confidence a term needs, as in imgidx query.",
)
@click.option("--weights", type=click.Path(dir_okay=False), default=None,
              help="VGG-16 weights, for an index built with vgg16 and a query with ImageNet labels.")
def redact(words, out, db, pixelate, force, strip_location, min_score, weights):
    """Write a copy of each photo matching QUERY into --out, with what it matched blurred.

    \b
      imgidx redact face --out ~/public            # every face, as Street View does
      imgidx redact person --out ~/public          # every person found, whole
      imgidx redact "license plate" --out ~/public --pixelate
      imgidx redact "face OR screen" --out ~/public --keep-gps

    Faces and objects (face, person, car, any COCO class): each box of the term's region, padded. A label
    of ImageNet classes only: the model runs on the photo again and the class-map positions whose top class
    is the label's are covered, their edges smoothed. Originals are never written: --out may not be, hold or
    lie inside an indexed folder (whatever --force says), no copy replaces an indexed photo (also through a
    hard link, a symbolic link or a bind mount), and existing copies are only replaced with --force. Copies
    keep their path below the indexed folder (below its name when the index has several: photos, photos-2
    for two folders of that name), their format, JPEG quality and EXIF, without the location unless
    --keep-gps. A photo changed since it was indexed has its boxes found again; one deleted since is skipped
    with a message, and the exit status is then 1.
    """
    from tqdm import tqdm

    from indexer import redact as redaction, store

    engine = store.open_index(_db(db), create=False, readonly=True)
    bar = None

    def draw(event) -> None:
        nonlocal bar
        if isinstance(event, redaction.Planned):
            bar = tqdm(total=event.photos, unit="photo", desc="redacting", file=sys.stderr, dynamic_ncols=True,
                       disable=not sys.stderr.isatty())
        elif isinstance(event, redaction.PhotoDone):
            bar.update(1)
        elif isinstance(event, redaction.PhotoNote):
            line = f"{'Error' if event.skipped else 'note'}: {event.note}"
            if bar is None:
                click.echo(line, err=True)
            else:
                bar.write(line, file=sys.stderr)

    def backbone(settings):
        return _load_resolved(
            settings.model, weights, settings.runtime, settings.precision, settings.working_size,
            settings.quantization,
        )

    try:
        summary = redaction.redact(
            engine, " ".join(words), out, pixelate=pixelate, force=force, keep_location=not strip_location,
            min_score=min_score, load_backbone=backbone, on_event=draw,
        )
    finally:
        if bar is not None:
            bar.close()
        engine.dispose()
    click.echo(redaction.summary_text(summary))
    if not summary.ok:
        raise SystemExit(1)


from indexer.cli.runtime import runtime_group  # noqa: E402  (the `imgidx runtime` commands)

cli.add_command(runtime_group)


def main() -> None:
    cli(prog_name="imgidx")


if __name__ == "__main__":
    sys.exit(main())
