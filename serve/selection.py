"""Select and act (``POST /download``): the photos picked on the result grid (or all matches of the
search) as one zip, streamed: the originals as they are, or redacted copies (`indexer.redact`: the same
rules as ``imgidx redact``, covering the faces or the query's own labels).

Originals are only read, each checked against its content hash (a photo changed or deleted since it was
indexed is left out and named in ``SKIPPED.txt`` in the zip). Redacted copies are written by
`indexer.redact.redact` into a private temporary folder outside the library, zipped from there and
removed: never next to the originals. Names in the zip are unique: the file's name, ``name (2).jpg`` for
the next photo of the same name; redacted copies keep their path below the indexed folder, as the CLI's.

The request must come from this app's own page: a POST whose ``Origin`` (or, without one, whose
``Sec-Fetch-Site``) is not this very server is refused (403), so another site cannot make a visitor's
browser start a download or a redaction run (the Host check of `serve.app.Guard` comes first).
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import zipfile
from typing import Callable, Iterator
from urllib.parse import parse_qsl, urlsplit

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from indexer import thumbnails
from indexer.errors import ImageReadError, ImgidxError
from indexer.names import printable, restored
from query import browse, search

#: Photos one download holds at most.
MAX_PHOTOS = 500
#: The largest request body read (the ids of `MAX_PHOTOS` photos fit many times over).
MAX_FORM_BYTES = 256 * 1024
#: What a download may hold: the originals, copies with the faces covered, copies with the query's labels
#: covered.
KINDS = ("originals", "faces", "labels")
#: The query that covers faces.
FACES_QUERY = "face"
ZIP_NAME = "imgidx-photos.zip"
SKIPPED_NAME = "SKIPPED.txt"


class SelectionError(ImgidxError):
    """A download asked for nothing, too much, or what the server cannot do."""


class NeedsModelError(SelectionError):
    """A redaction that would run a model (an ImageNet label's class map, a photo changed since indexing)."""


def same_origin(request: Request) -> bool:
    """The request comes from a page of this server: its Origin names this very host and port, or, from a
    browser that sends none, its Sec-Fetch-Site says same-origin."""
    origin = request.headers.get("origin")
    host = request.headers.get("host", "")
    if origin is not None:
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()
    return request.headers.get("sec-fetch-site") == "same-origin"


class _Sink(io.RawIOBase):
    """Where `zipfile` writes (an unseekable stream, so it writes sizes after each file): taken in pieces."""

    def __init__(self):
        self.buffer = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.buffer += data
        return len(data)

    def take(self) -> bytes:
        data = bytes(self.buffer)
        self.buffer.clear()
        return data


def unique_name(name: str, taken: set[str]) -> str:
    """``name``, or ``stem (2).ext``, ``stem (3).ext``... the first not in ``taken`` (which it joins)."""
    stem, ext = os.path.splitext(name)
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{stem} ({n}){ext}"
    taken.add(candidate)
    return candidate


def zipped(files: Iterator[tuple[str, Callable[[], bytes]]], skipped: list[str]) -> Iterator[bytes]:
    """A zip of ``files`` (name, reader: an `ImageReadError` leaves the file out and names it in
    ``SKIPPED.txt``), streamed file by file. The photos are compressed already: stored as they are."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, read in files:
            try:
                data = read()
            except ImageReadError as exc:
                skipped.append(exc.shown())
                continue
            archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
            yield sink.take()
        if skipped:
            archive.writestr(zipfile.ZipInfo(SKIPPED_NAME, date_time=(1980, 1, 1, 0, 0, 0)),
                             "".join(line + "\n" for line in skipped).encode())
    yield sink.take()


def download_endpoint(index, search_request, error_page: Callable[[str, int], Response]) -> Callable[[Request], Response]:
    """The handler of ``POST /download`` over ``index`` (`serve.app.Index`); ``search_request`` makes the
    `serve.app.SearchRequest` of the form's q, folder and min; a refusal is ``error_page(message, status)``."""

    async def download(request: Request) -> Response:
        if not same_origin(request):
            return error_page("a download starts only from this server's own page", 403)
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return error_page(f"the form is too large: at most {MAX_PHOTOS} photos at once", 413)
        form = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        from starlette.concurrency import run_in_threadpool

        try:
            return await run_in_threadpool(_respond, index, search_request, form)
        except ImgidxError as exc:
            return error_page(exc.shown().partition("\n")[0], 400)

    return download


def _respond(index, search_request, form: list[tuple[str, str]]) -> Response:
    fields = dict(form)
    kind = fields.get("kind", "originals")
    if kind not in KINDS:
        raise SelectionError(f"kind must be one of {', '.join(KINDS)}, not {printable(kind[:40])}")
    ask = search_request({k: v for k, v in fields.items() if k in ("q", "folder", "min")})
    ids = _chosen(index, ask, form, fields.get("all") == "1")
    if kind == "originals":
        return _originals(index, ids)
    if kind == "labels" and not ask.text:
        raise SelectionError("redacting the query's labels needs a query")
    return _redacted(index, ids, FACES_QUERY if kind == "faces" else ask.text, ask.min_score)


def _chosen(index, ask, form: list[tuple[str, str]], everything: bool) -> list[int]:
    """The photos to download: every match of the search (``all``), or the ``id`` fields."""
    if everything:
        if not ask.text:
            raise SelectionError("all matches of what? the download has no query")
        within = browse.in_folder(ask.folder) if ask.folder else None
        with index.searches:
            found = search.search(index.engine, ask.text, min_score=ask.min_score, limit=MAX_PHOTOS + 1,
                                  tables=index.tables, calibration=index.calibration, within=within)
        ids = [m.image_id for m in found.matches]
    else:
        try:
            ids = list(dict.fromkeys(int(value) for name, value in form if name == "id"))
        except ValueError:
            raise SelectionError("a photo id is a number") from None
    if not ids:
        raise SelectionError("no photo selected: tick the photos to download, or all matches")
    if len(ids) > MAX_PHOTOS:
        raise SelectionError(f"{len(ids) if not everything else 'more than ' + str(MAX_PHOTOS)} photos: a download "
                             f"holds at most {MAX_PHOTOS}; narrow the search or select fewer")
    return ids


def _rows(index, ids: list[int]) -> list[sa.RowMapping]:
    images = index.tables.images
    valid = [i for i in ids if 0 <= i < 2**63]
    with index.engine.connect() as conn:
        rows = {row["image_id"]: row for row in conn.execute(sa.select(images).where(images.c.image_id.in_(valid))).mappings()}
    return [rows[i] for i in valid if i in rows]


def _originals(index, ids: list[int]) -> Response:
    taken: set[str] = set()
    skipped: list[str] = []
    files = []
    rows = _rows(index, ids)
    if not rows:
        raise SelectionError("none of the selected photos is in the index (any more)")
    for row in rows:
        path = restored(row["path"])
        if row["error"] is not None or row["content_hash"] is None:
            skipped.append(f"{printable(path)}: not indexed ({printable(row['error'] or 'no content')})")
            continue
        original = thumbnails.Original(path, row["size_bytes"], row["mtime_ns"], row["content_hash"])
        files.append((unique_name(printable(os.path.basename(path)), taken),
                      lambda original=original: thumbnails.read_original(original)))
    return _zip_response(zipped(iter(files), skipped))


def _redacted(index, ids: list[int], text: str, min_score: float) -> Response:
    """Redacted copies of the photos ``ids``: `indexer.redact.redact` of ``(text) OR NOT (text)`` within
    them, so every photo is copied by the same rules, covered where ``text`` matched it."""
    from indexer import redact  # numpy: only when asked for

    def refuse(*args):
        raise NeedsModelError(f"redacting '{printable(text)}' here would run a model (an ImageNet label's class "
                              "map, or a photo changed since it was indexed): use imgidx redact")

    wanted = frozenset(ids)
    skipped: list[str] = []
    folder = tempfile.mkdtemp(prefix="imgidx-redact-")
    try:
        summary = redact.redact(
            index.engine, f"({text}) OR NOT ({text})", os.path.join(folder, "copies"), min_score=min_score,
            load_backbone=refuse, load_detector=refuse, load_object_detector=refuse,
            within=lambda images: images.c.image_id.in_(sorted(wanted)),
            on_event=lambda event: skipped.append(event.note) if isinstance(event, redact.PhotoNote) and event.skipped else None,
        )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    out = summary.out
    names = sorted(os.path.relpath(os.path.join(d, f), out) for d, _, fs in os.walk(out) for f in fs)

    def files() -> Iterator[tuple[str, Callable[[], bytes]]]:
        try:
            for name in names:
                yield printable(name), lambda name=name: _read(os.path.join(out, name))
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    return _zip_response(zipped(files(), skipped))


def _read(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def _zip_response(chunks: Iterator[bytes]) -> Response:
    return StreamingResponse(chunks, media_type="application/zip",
                             headers={"content-disposition": f'attachment; filename="{ZIP_NAME}"',
                                      "cache-control": "no-store"})

