"""`imgidx weights`: downloading the weights a model does not ship (VGG-16's)."""

from __future__ import annotations

import click


@click.group()
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
