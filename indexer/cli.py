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
from indexer.models import DEFAULT_MODEL, model_names
from indexer.models.base import PRECISIONS

DEBUG_ENV = "IMGIDX_DEBUG"


class ImgidxGroup(click.Group):
    """Turns library errors into one-line messages; unexpected ones too, unless IMGIDX_DEBUG is set."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ImgidxError as exc:
            raise click.ClickException(str(exc)) from None
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            raise click.exceptions.Abort() from None
        except Exception as exc:
            if os.environ.get(DEBUG_ENV):
                raise
            raise click.ClickException(
                f"internal error: {type(exc).__name__}: {exc} (set {DEBUG_ENV}=1 for the traceback)"
            ) from None


def model_option(func):
    """`--model`, `--weights` and `--precision`, shared by every command that runs a network."""
    func = click.option(
        "--precision",
        type=click.Choice(PRECISIONS),
        default="auto",
        show_default=True,
        help="Arithmetic: auto uses bf16 where the CPU runs it natively, else fp32.",
    )(func)
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

CLASSIFY_BATCH = 8


def _load_photos(paths) -> tuple[list[tuple[str, "object"]], int]:
    """Decode every path; a bad one is reported on one line and counted, the rest go on."""
    from indexer import images
    from indexer.errors import ImageReadError

    photos, failed = [], 0
    for path in paths:
        try:
            photos.append((path, images.load(path).pixels))
        except ImageReadError as exc:
            click.echo(f"Error: {exc}", err=True)
            failed += 1
    return photos, failed


@cli.command()
@click.argument("image_paths", metavar="IMAGE...", nargs=-1, required=True, type=click.Path())
@model_option
@click.option("--top", "-k", default=5, show_default=True, type=click.IntRange(1, 1000), help="Classes per image.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON Lines, one object per image.")
def classify(image_paths, model_name, weights, precision, top, as_json):
    """Print the top classes of each IMAGE with their probabilities.

    Like the seed, the network sees slim's evaluation crop: the photo resized to a shorter side of
    256 px, then its central 224x224. Exits 1 if any IMAGE could not be read.
    """
    import json

    from indexer import inference
    from indexer.models import load_model

    photos, failed = _load_photos(image_paths)
    if photos:
        model = load_model(model_name, weights, precision)
        for start in range(0, len(photos), CLASSIFY_BATCH):
            batch = photos[start : start + CLASSIFY_BATCH]
            for (path, _), predictions in zip(batch, inference.classify(model, [p for _, p in batch], top)):
                if as_json:
                    top_list = [
                        {"class": p.class_index, "name": p.name, "probability": round(p.probability, 6)}
                        for p in predictions
                    ]
                    click.echo(json.dumps({"path": path, "model": model.name, "top": top_list}))
                else:
                    click.echo(path)
                    for p in predictions:
                        click.echo(f"  {p.probability:6.2%}  {p.name} ({p.class_index})")
    if failed:
        raise SystemExit(1)


@cli.command()
@click.argument("image_path", metavar="IMAGE", type=click.Path())
@click.option("--out", type=click.Path(dir_okay=False), help="Write the figure here (PNG).")
@click.option("--text", is_flag=True, help="Print the class map as a grid of class names instead.")
@click.option(
    "--size", default=None, type=click.IntRange(1), help="Working size: the shorter side in px  [default: 448]."
)
@model_option
def segment(image_path, out, text, size, model_name, weights, precision):
    """Run the network fully convolutionally over IMAGE and show its coarse class map.

    The figure puts the photo beside the map of arg-max classes, relabelled to the classes present
    and drawn with a discrete colormap whose colour bar names each class (the seed's figure).
    """
    from pathlib import Path

    from indexer import images, inference
    from indexer.models import load_model

    if not out and not text:
        raise click.UsageError("give --out FILE.png for the figure, or --text for a grid of class names")
    photo = images.load(image_path).pixels
    model = load_model(model_name, weights, precision)
    segmentation = inference.segment(model, photo, size or images.DEFAULT_WORKING_SIZE)
    if text:
        from indexer.figure import text_grid

        click.echo(text_grid(segmentation))
    if out:
        from indexer.figure import save_figure

        save_figure(segmentation, Path(out), f"{Path(image_path).name}: {model.name}")
        click.echo(f"wrote {out}")


def main() -> None:
    cli(prog_name="imgidx")


if __name__ == "__main__":
    sys.exit(main())
