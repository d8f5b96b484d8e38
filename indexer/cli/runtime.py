"""`imgidx runtime`: what runs the networks, int8 calibration on the user's photos, and its agreement check."""

from __future__ import annotations

import sys

import click

from indexer.cli.core import WORKING_SIZE, build_note, load_photos, load_resolved
from indexer.models import DEFAULT_MODEL, DEFAULT_WORKING_SIZE, model_names
from indexer.names import printable

#: Photos `check` compares on at most, spread over the folders given.
CHECK_PHOTOS = 64


def _network_options(func):
    func = click.option(
        "--size", default=DEFAULT_WORKING_SIZE, show_default=True, type=WORKING_SIZE,
        help="Working size the int8 model is calibrated for (as `imgidx index --size`).",
    )(func)
    func = click.option(
        "--weights", type=click.Path(dir_okay=False), default=None,
        help="Weights file for the model (as `imgidx index --weights`).",
    )(func)
    func = click.option(
        "--model", "model_name", type=click.Choice(model_names()), default=DEFAULT_MODEL, show_default=True,
        help="Backbone network.",
    )(func)
    return func


@click.group("runtime")
def runtime_group() -> None:
    """OpenVINO and int8: what `--runtime auto` picks, calibrating int8 on your photos, checking it.

    \b
    imgidx runtime status                         # what auto picks here, and why
    imgidx runtime calibrate ~/Photos --model vgg16
    imgidx runtime check ~/Photos --model vgg16   # int8 against fp32 on your photos
    """


@runtime_group.command("status")
def status() -> None:
    """Print what `--runtime auto` and `--precision auto` pick on this machine, and why."""
    from indexer import runtime as runtimes

    installed = runtimes.openvino_installed()
    flags = runtimes.int8_dot_flags()
    click.echo(f"OpenVINO: {'installed' if installed else 'not installed (' + runtimes.INSTALL_HINT + ')'}")
    click.echo(f"CPU int8 dot products: {', '.join(flags) if flags else 'none'}")
    runtime, precision = runtimes.resolve("auto", "auto")
    click.echo(f"auto picks: {runtime} {precision}")
    from indexer import faces, objects

    click.echo(f"object detector ({objects.MODEL_NAME}): {' '.join(objects.resolve(runtime))}")
    click.echo(f"face detector: {faces.default_engine()}{' fp32' * (faces.default_engine() == faces.OPENVINO)}")


@runtime_group.command("calibrate")
@click.argument("folder", metavar="[FOLDER]", required=False, type=click.Path(exists=True, file_okay=False))
@_network_options
def calibrate(folder, model_name, weights, size):
    """Build MODEL's int8 model calibrated on the photos under FOLDER and make it the current one.

    Up to 64 photos, spread over the folder, are run through the network as indexing runs it, to measure
    the range of every layer. Without FOLDER the photos shipped with imgidx are used again. New indexes
    at this --size use the result; an existing int8 index keeps its own until `imgidx index --reindex`.
    The model is cached, keyed by the weights, working size and photos, and built only once.
    """
    from indexer import runtime as runtimes
    from indexer.runtime import photos

    runtimes.require_openvino()
    from indexer.runtime import openvino_model

    photo_set = photos.from_folder(folder) if folder else photos.shipped()
    path = openvino_model.calibrate(model_name, weights, size, photo_set, on_build=build_note,
                                    progress=sys.stderr.isatty())
    where = f"{len(photo_set.paths)} photos under {folder}" if folder else "the photos shipped with imgidx"
    click.echo(f"{model_name} int8 for size {size}, calibrated on {where} ({photo_set.id}): {path}")
    click.echo(f"check it against fp32: imgidx runtime check FOLDER --model {model_name} --size {size}")


@runtime_group.command("check")
@click.argument("paths", metavar="PHOTO|FOLDER...", nargs=-1, required=True, type=click.Path(exists=True))
@_network_options
def check(paths, model_name, weights, size):
    """Print how often MODEL's int8 model agrees with fp32 on your photos (bf16 beside it, for scale).

    Per photo at its working shape, the share of class-map positions whose top class is the same as
    fp32's; and the overlap of the top-5 classes on the seed's 224 px central crop. Up to 64 photos,
    spread over the folders. The int8 model is the current calibration's (`imgidx runtime calibrate`).
    """
    from indexer import runtime as runtimes
    from indexer.walk import walk
    from indexer.runtime import agreement, photos

    runtimes.require_openvino()
    found = [f.path for f in walk([str(p) for p in paths]).files]
    loaded, failed = load_photos(photos.spread(found, CHECK_PHOTOS), size)
    if not loaded:
        raise click.ClickException("no photo to compare on")
    quantization = runtimes.current_quantization(model_name, size)
    reference = load_resolved(model_name, weights, runtimes.TF, "fp32", size, "")
    pixels = {printable(path): photo for path, photo in loaded}
    for label, runtime, precision, calibration in (
        ("int8", runtimes.OPENVINO, runtimes.INT8, quantization), ("bf16", runtimes.TF, "bf16", ""),
    ):
        candidate = load_resolved(model_name, weights, runtime, precision, size, calibration)
        found_agreement = agreement.compare(reference, candidate, pixels, size)
        click.echo(f"{model_name} {label} vs fp32: {found_agreement.line()}")
    click.echo(f"int8 calibration: {quantization}")
    if failed:
        raise SystemExit(1)
