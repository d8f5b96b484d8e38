"""What every `imgidx` command module shares: the root group's error handling, the option types and the
loaders of photos, networks and the index URL.

The command modules import this and never each other, so the package has no import circle. Only click and
light modules are imported here: registering the commands must not load TensorFlow.
"""

from __future__ import annotations

import os
import signal
import sys

import click

from indexer import standard_output
from indexer.errors import ImgidxError
from indexer.models import DEBUG_ENV, DEFAULT_MODEL, MAX_WORKING_SIZE, model_names
from indexer.names import printable
from indexer.runtime import PRECISIONS, RUNTIMES

#: The exit status of a command whose reader went away (`imgidx query ... | head`): a process that SIGPIPE
#: ended, as `yes | head` leaves `yes`.
CLOSED_PIPE_STATUS = 128 + signal.SIGPIPE


class ImgidxGroup(click.Group):
    """Turns library errors into one-line messages; unexpected ones too, unless IMGIDX_DEBUG is set.

    Standard output goes through `indexer.standard_output` for the whole run, ``--help`` included: a full
    device, an I/O error or a closed descriptor is one line and exit status 1, whichever command printed.
    """

    def main(self, *args, **kwargs):
        with standard_output.guarded() as guard:
            try:
                try:
                    return super().main(*args, **kwargs)
                finally:  # what is still buffered is written now, so its failure is reported like any other
                    failure = guard.flush()
                    if failure is not None:
                        raise failure
            except standard_output.OutputError as exc:  # also from --help and --version, before any command
                click.echo(f"Error: {exc.shown()}", err=True)
                sys.exit(1)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ImgidxError as exc:
            raise click.ClickException(exc.shown()) from None
        except BrokenPipeError:
            _discard_stdout()
            raise SystemExit(CLOSED_PIPE_STATUS) from None
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            raise click.exceptions.Abort() from None
        except Exception as exc:
            if os.environ.get(DEBUG_ENV):
                raise
            raise click.ClickException(
                printable(f"internal error: {type(exc).__name__}: {exc} (set {DEBUG_ENV}=1 for the traceback)")
            ) from None


def _discard_stdout() -> None:
    """Point standard output at /dev/null, so that what is still buffered cannot fail again at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no file descriptor behind it (a test runner's buffer)
        pass


class WorkingSize(click.IntRange):
    """A ``--size``: from 1 (each network refuses what is too small for it when loaded) to
    `MAX_WORKING_SIZE`, refused as a usage error before anything is loaded, with the reason."""

    def __init__(self):
        super().__init__(1, MAX_WORKING_SIZE)

    def convert(self, value, param, ctx):
        number = click.INT.convert(value, param, ctx)
        if number > MAX_WORKING_SIZE:
            self.fail(f"{number} is above {MAX_WORKING_SIZE}, the largest working size (a batch at a larger one needs "
                      "more memory than a workstation has)", param, ctx)
        return super().convert(number, param, ctx)


WORKING_SIZE = WorkingSize()


def model_option(func):
    """`--model`, `--weights`, `--precision` and `--runtime`, shared by every command that runs a network."""
    for name, choices, text in (
        ("--runtime", RUNTIMES, "What runs the network: OpenVINO or TensorFlow. auto picks OpenVINO int8 where "
         "the CPU has int8 dot products (VNNI, AMX), else TensorFlow."),
        ("--precision", PRECISIONS, "Arithmetic: auto is int8 on OpenVINO where the CPU runs it natively, else "
         "bf16 where the CPU has it, else fp32. int8 needs OpenVINO."),
    ):
        func = click.option(name, type=click.Choice(choices), default="auto", show_default=True, help=text)(func)
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


def db_option(func):
    """`--db`, shared by every command that reads or writes an index."""
    return click.option(
        "--db",
        default=None,
        metavar="URL|PATH",
        help="Index database: a file path or an SQLAlchemy URL. Default: $IMGIDX_DB, else index.db in the "
        "user data folder.",
    )(func)


def db_url(db: str | None) -> str:
    """The index ``--db`` names, else the default one."""
    from indexer import store

    return db or store.default_db_url()


def load_photos(paths, min_side: int) -> tuple[list[tuple[str, "object"]], int]:
    """Decode every path; a bad one is reported on one line and counted, the rest go on."""
    from indexer import images
    from indexer.errors import ImageReadError

    photos, failed = [], 0
    for path in paths:
        try:
            photos.append((path, images.load(path, min_side=min_side).pixels))
        except ImageReadError as exc:
            click.echo(f"Error: {exc.shown()}", err=True)
            failed += 1
    return photos, failed


def build_note(message: str) -> None:
    """A one-time build (converting or quantizing a network) is announced above any progress bar."""
    from tqdm import tqdm

    tqdm.write(f"note: {message}", file=sys.stderr)


def load_network(model_name, weights, runtime, precision, size):
    """The network as asked, ``auto`` resolved for this machine (`indexer.runtime`)."""
    from indexer import runtime as runtimes

    return runtimes.load(model_name, weights, runtime, precision, size=size, on_build=build_note,
                         progress=sys.stderr.isatty())


def load_resolved(model_name, weights, runtime, precision, size, quantization):
    """The backbone of settings already resolved (an index's, or a comparison's), built once if need be."""
    from indexer import runtime as runtimes

    return runtimes.load_backbone(
        model_name, weights, runtime, precision, size=size, quantization=quantization, on_build=build_note,
        progress=sys.stderr.isatty(),
    )
