"""`imgidx query` and `imgidx labels`: searching an index, and what a label of a query means.

Neither imports TensorFlow nor numpy (tests/test_query_imports.py): they only need `query` and the store.
"""

from __future__ import annotations

import os
import sys

import click

from indexer.cli.core import db_option, db_url
from query import DEFAULT_MIN_SCORE  # a constant; `query` imports nothing heavy
from query.dates import DATE_FORMS, SORT_SCORE, SORTS  # constants and a dataclass; no database
from query.parser import QUERY_HELP  # regexes and tables only

#: What the date options say of the photos they cannot place.
UNDATED_HELP = ("A photo without an EXIF date is dated by its file's modification time (imgidx show says "
                "so); one without any date is left out by a date filter and comes last by date.")


@click.command("query", help=QUERY_HELP)
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
@click.option("--taken", metavar="DATE", default="",
              help=f"Only photos taken in this year, month or day ({DATE_FORMS}), local time where taken. "
              + UNDATED_HELP)
@click.option("--after", metavar="DATE", default="", help="Only photos taken on or after the first day of DATE.")
@click.option("--before", metavar="DATE", default="", help="Only photos taken before the first day of DATE.")
@click.option("--sort", type=click.Choice(SORTS), default=SORT_SCORE, show_default=True,
              help="Order: best match first, or by date taken, oldest or newest first (photos without a date last).")
def query_command(words, db, min_score, limit, offset, fmt, nul, html_file, explain, taken, after, before, sort):
    from indexer import store
    from query import render, search
    from query.dates import DateFilter

    dates = DateFilter(taken, after, before)
    within = dates.within() if dates else None  # a date that is none: one line, before the index is opened

    if nul:
        if fmt not in (None, "paths"):
            raise click.UsageError(f"-0 goes with --paths, not --{fmt}")
        fmt = "paths"
    if html_file is not None and fmt is not None:
        raise click.UsageError(f"choose one output: --html or --{fmt}")
    text = " ".join(words)
    engine = store.open_index(db_url(db), create=False, readonly=True)
    try:
        prepared = search.prepare(engine, text, min_score=min_score, limit=limit, offset=offset, within=within,
                                  sort=sort)
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


@click.command("labels")
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
