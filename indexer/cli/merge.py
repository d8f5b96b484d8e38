"""`imgidx merge`: several indexes into one (`indexer.merge`), with a progress bar per source."""

from __future__ import annotations

import sys

import click


@click.command()
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
