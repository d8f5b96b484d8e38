"""`imgidx classify` and `imgidx segment`: the network over single photos, as the seed used it, no index."""

from __future__ import annotations

import click

from indexer.cli.core import WORKING_SIZE, load_network, load_photos, model_option
from indexer.models import DEFAULT_WORKING_SIZE
from indexer.names import printable, stored


@click.command()
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
    photos, failed = load_photos(image_paths, size)
    if photos:
        model = load_network(model_name, weights, runtime, precision, size)
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


@click.command()
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
    size = size or DEFAULT_WORKING_SIZE
    decoded = images.load(image_path, min_side=size)  # as the indexer decodes it, for all
    model = load_network(model_name, weights, runtime, precision, size)
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
