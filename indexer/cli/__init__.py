"""The `imgidx` command line: a thin layer over `indexer` and `query`.

This module is the root group and the list of its commands; each command lives in a module of its own over
`core`, which holds what they share. Each command imports what it needs inside its body, so `imgidx query
--help` or `imgidx stats` never pays for TensorFlow. Library errors (`ImgidxError`) become one-line
`click.ClickException`s.
"""

from __future__ import annotations

import click

from indexer import __version__
from indexer.cli import core, index, merge, photo, query, redact, runtime, serve, show, weights


@click.group(cls=core.ImgidxGroup, context_settings={"help_option_names": ["-h", "--help"]})
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


for command in (
    photo.classify, photo.segment, weights.weights, index.index_command, show.show, show.stats, merge.merge,
    query.query_command, query.labels_command, serve.serve_command, redact.redact, runtime.runtime_group,
):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="imgidx")
