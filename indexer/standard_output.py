"""Standard output that fails in one line: a full device, an I/O error or a closed descriptor.

Python reports a failed write to standard output as a bare ``OSError`` from wherever the write happened,
or at exit when the buffer is flushed, so a command cannot tell it from its own errors. `guarded` puts a
stream over file descriptor 1 whose failures are `OutputError` instead; the CLI turns that into one line
and exit status 1, for every command at once. A reader that went away (``EPIPE``) is left as
``BrokenPipeError``: that is no error but the end of the output (``imgidx query cat | head``).

A descriptor 0, 1 or 2 that is closed when imgidx starts is first pointed at ``/dev/null``: otherwise the
next file opened (the index) would get its number, and output meant for the terminal would go into it. A
closed standard output still fails at the first write, so a command that prints exits 1 instead of
succeeding silently.
"""

from __future__ import annotations

import contextlib
import io
import locale
import os
import sys
from typing import Iterator

from indexer.errors import ImgidxError

STANDARD_STREAMS = (0, 1, 2)
STDOUT_FD = 1


class OutputError(ImgidxError):
    """Standard output cannot be written: a full device, an I/O error, or closed."""


class _Descriptor(io.RawIOBase):
    """File descriptor 1 as a raw stream: a failed write raises `OutputError` once, and what is written
    after that is dropped, so the buffer still held at exit cannot fail again."""

    def __init__(self, closed_at_start: bool):
        super().__init__()
        self.closed_at_start = closed_at_start
        self.failed = False

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return STDOUT_FD

    def isatty(self) -> bool:
        return not self.closed_at_start and os.isatty(STDOUT_FD)

    def write(self, data) -> int | None:
        if self.failed:
            return len(data)
        if self.closed_at_start:
            self.failed = True
            raise OutputError("cannot write the output: standard output is closed")
        try:
            return os.write(STDOUT_FD, data)
        except (BrokenPipeError, BlockingIOError):
            raise
        except OSError as exc:
            self.failed = True
            raise OutputError(f"cannot write the output: {exc.strerror or exc}") from None


def _open_closed_descriptors() -> set[int]:
    """Point every closed standard descriptor at /dev/null; the ones that were closed."""
    closed = set()
    for fd in STANDARD_STREAMS:
        try:
            os.fstat(fd)
        except OSError:
            closed.add(fd)
    if closed:
        while True:  # each open takes the lowest free number: the closed ones, in order
            fd = os.open(os.devnull, os.O_RDWR)
            if fd > max(STANDARD_STREAMS):
                os.close(fd)
                break
    return closed


def _real_stdout() -> bool:
    """``sys.stdout`` is the process's descriptor 1 (not a test runner's buffer), or there is none."""
    if sys.stdout is None:
        return True
    try:
        return sys.stdout.fileno() == STDOUT_FD
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return False


@contextlib.contextmanager
def guarded() -> Iterator["Guard"]:
    """While inside, ``sys.stdout`` writes to descriptor 1 through `_Descriptor`; left as it is where it is
    no descriptor of this process (a test runner's)."""
    if not _real_stdout():
        yield Guard(None)
        return
    closed = _open_closed_descriptors()
    previous = sys.stdout
    if previous is not None:
        previous.flush()
    raw = _Descriptor(closed_at_start=STDOUT_FD in closed or previous is None)
    encoding = getattr(previous, "encoding", None) or locale.getpreferredencoding(False)
    stream = io.TextIOWrapper(
        io.BufferedWriter(raw), encoding=encoding, errors=getattr(previous, "errors", None) or "strict",
        line_buffering=bool(getattr(previous, "line_buffering", False)),
    )
    sys.stdout = stream
    try:
        yield Guard(stream)
    finally:
        if sys.stdout is stream:
            sys.stdout = previous if previous is not None else stream


class Guard:
    """The guarded stream, to flush at the end of a command."""

    def __init__(self, stream: io.TextIOWrapper | None):
        self.stream = stream

    def flush(self) -> OutputError | None:
        """Write out what is buffered; the failure, if it fails (a closed pipe counts as none)."""
        if self.stream is None:
            return None
        try:
            self.stream.flush()
        except OutputError as exc:
            return exc
        except BrokenPipeError:
            _discard(self.stream)
        return None


def _discard(stream: io.TextIOWrapper) -> None:
    """Mark ``stream``'s descriptor failed, so its buffer is dropped rather than written."""
    raw = stream.buffer.raw
    if isinstance(raw, _Descriptor):
        raw.failed = True
    with contextlib.suppress(OSError, ValueError):
        stream.flush()

