"""`imgidx redact`: copies of the photos a query matches, with what it matched blurred (`indexer.redact`)."""

from __future__ import annotations

import sys

import click

from indexer.cli.core import db_option, db_url, load_resolved
from query import DEFAULT_MIN_SCORE


@click.command()
@click.argument("words", metavar="QUERY...", nargs=-1, required=True)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for the copies (made if missing).")
@db_option
@click.option("--pixelate", is_flag=True, help="Pixelate the regions instead of blurring them.")
@click.option("--force", is_flag=True, help="Replace copies that exist in --out.")
@click.option(
    "--strip-gps/--keep-gps", "strip_location", default=True, show_default=True,
    help="Leave out of the copies what may tell where a photo was taken: EXIF's GPS block and maker notes, "
    "XMP, IPTC and a JPEG comment. --keep-gps keeps them.",
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

    engine = store.open_index(db_url(db), create=False, readonly=True)
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
        return load_resolved(
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
