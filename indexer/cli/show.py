"""`imgidx show` and `imgidx stats`: what an index holds, for one photo and overall (`indexer.report`)."""

from __future__ import annotations

import os

import click

from indexer.cli.core import db_option, db_url
from indexer.names import printable


@click.command()
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

    engine = store.open_index(db_url(db), create=False, readonly=True)
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


@click.command()
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

    db = db_url(db)
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
