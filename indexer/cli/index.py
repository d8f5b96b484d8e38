"""`imgidx index`: building or updating an index, and drawing the pipeline's events as it runs."""

from __future__ import annotations

import os
import sys

import click

from indexer.cli.core import WORKING_SIZE, db_option, db_url, load_resolved, model_option
from indexer.models import DEFAULT_MODEL, DEFAULT_WORKING_SIZE
from indexer.names import printable


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


@click.command("index")
@click.argument("folders", metavar="FOLDER...", nargs=-1, required=True, type=click.Path(exists=True))
@db_option
@model_option
@click.option(
    "--size", default=None, type=WORKING_SIZE,
    help=f"Working size: the shorter side in px the network sees  [default: the index's, else {DEFAULT_WORKING_SIZE}].",
)
@click.option("--batch", default=None, type=click.IntRange(1),
              help="Images per model call  [default: what the runtime and model index fastest at, 8 for "
              "every one measured so far].")
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
@click.option(
    "--text/--no-text", "with_text", default=None,
    help="Read the text in photos (signs, menus, screens), to query it in quotes: '\"stop\" in top-right'  "
    "[default: the index's, else off].",
)
@click.option("--progress/--no-progress", default=None, help="Progress bar  [default: on when stderr is a terminal].")
@click.option("-q", "--quiet", is_flag=True, help="Only the summary: no progress bar, no per-file errors.")
def index_command(
    folders, db, model_name, weights, precision, runtime, size, batch, workers, runner, address, prune, reindex,
    excludes, strict, with_faces, with_objects, with_text, progress, quiet,
):
    """Index the photos under each FOLDER (recursively), or bring the index up to date.

    Unchanged files are skipped, moved or renamed ones keep their labels, deleted ones are pruned, and
    bad files are recorded and reported without stopping the run. Results are committed in batches, so an
    interrupted run loses nothing committed: run the same command again to continue.

    Objects (COCO's 80 classes: person, chair, car..., NanoDet-m) and faces (MediaPipe's BlazeFace) are
    looked for in every photo, offline, and stored with their boxes: query them by name, blur them with
    imgidx redact. --no-objects and --no-faces skip them. --text also reads the text in every photo
    (PP-OCRv6, run by OpenVINO: needs the [openvino] extra) with its boxes: query it in quotes.

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
    db = db_url(db)
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
            lambda settings: load_resolved(
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
            with_text=with_text,
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
