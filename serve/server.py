"""Running the web app: the listening socket, uvicorn, the browser, a clean stop on Ctrl-C."""

from __future__ import annotations

import asyncio
import errno
import gc
import ipaddress
import logging
import socket
import sys
import threading
import time
import webbrowser
from typing import Callable, Iterable
from urllib.parse import urlencode

import uvicorn

from indexer.errors import ImgidxError
from serve.app import LOOPBACK_HOSTS, Index, create_app
from serve.collector import Collector

#: Seconds uvicorn lets open requests finish once asked to stop.
GRACEFUL_STOP_S = 3
#: Connections served at once; more are answered 503 at once instead of piling up.
MAX_CONNECTIONS = 64
#: Bytes of a request's line and headers read before it is refused. The longest request the app answers is a
#: search of `MAX_QUERY_CHARS` characters in a folder of as many, each a 4-byte UTF-8 character a browser
#: sends as 12 (``%F0%9F%90%88``): 48,000 bytes, and headers. A longer head is cut off with uvicorn's bare
#: 400 or a reset, and h11's default (16 KiB) did that to such searches whenever they came in pieces.
MAX_REQUEST_HEAD_BYTES = 64 * 1024
LOOPBACK_NAMES = ("localhost",)


def exposure_warning(host: str) -> str | None:
    """What to warn about a ``--host`` other than this machine's loopback, or None for a loopback one."""
    try:
        local = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        local = host.lower() in LOOPBACK_NAMES
    if local:
        return None
    return (
        f"listening on {host}, not only on this machine: anyone who can reach it on that network can browse "
        "the whole photo library and download every photo in it (there is no login)"
    )


class ListenError(ImgidxError):
    """The address or port cannot be listened on."""


def answered_hosts(host: str, extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The names the server answers by: this machine's loopback, ``--host`` unless it means every address
    (``0.0.0.0``, ``::``: clients then use names the server cannot know), and ``extra`` (``--allow-host``)."""
    try:
        wildcard = ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        wildcard = False
    return tuple(dict.fromkeys([*LOOPBACK_HOSTS, *(() if wildcard else (host.strip("[]"),)), *extra]))


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host``:``port`` (port 0: any free one), or a `ListenError` saying why not."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(socket.SOMAXCONN)
    except OSError as exc:
        sock.close()
        hint = " (another server has it: --port 0 picks a free one)" if exc.errno == errno.EADDRINUSE else ""
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}{hint}") from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def run(index: Index, sock: socket.socket, on_started: Callable[[], None] | None = None,
        hosts: Iterable[str] = LOOPBACK_HOSTS, quiet: bool = False, on_ready: Callable[[], None] | None = None) -> None:
    """Serve ``index`` on ``sock`` for requests to ``hosts`` until Ctrl-C (or SIGTERM); returns once every
    connection is closed. ``on_ready`` runs once the app is warm (`warm_up`), ``on_started`` once it accepts
    requests. A line per request on standard error (method, path, status, milliseconds), unless ``quiet``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("imgidx serve: %(message)s"))
    logger = logging.getLogger("imgidx.serve")
    uvicorn_logger = logging.getLogger("uvicorn")  # its warnings (a malformed request) in the same form
    propagated = {each: each.propagate for each in (logger, uvicorn_logger)}
    for each in propagated:
        each.addHandler(handler)
        each.propagate = False
    try:
        _serve(index, sock, on_started, tuple(hosts), quiet, on_ready, logger)
    finally:  # a caller's logging as it was (a test, or `imgidx serve` run again in the same process)
        for each, propagate in propagated.items():
            each.removeHandler(handler)
            each.propagate = propagate


def _serve(index: Index, sock: socket.socket, on_started: Callable[[], None] | None, hosts: tuple[str, ...],
           quiet: bool, on_ready: Callable[[], None] | None, logger: logging.Logger) -> None:
    """`run`'s work once its log lines are routed."""
    collector = Collector()
    app = create_app(index, hosts, access_log=not quiet, collector=collector)
    logger.setLevel(logging.WARNING)  # the warm-up's requests are no one's
    warm_up(app, hosts[0] if hosts else "localhost", index)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    config = uvicorn.Config(
        app, log_config=None, log_level="warning", access_log=False, lifespan="off", server_header=False,
        timeout_graceful_shutdown=GRACEFUL_STOP_S, limit_concurrency=MAX_CONNECTIONS,
        http="h11", h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES,  # h11 even where httptools is installed
    )
    server = _Server(config, index.interrupt)
    # What start-up made (modules, the app, its templates) lives as long as the server: out of the collector's
    # full passes, which otherwise walk it all, one search in 40 (47 ms a pause on a busy machine, 3 ms frozen).
    # What the requests keep is frozen as each one ends (`serve.collector`).
    gc.freeze()
    collector.start()
    if on_ready is not None:
        on_ready()
    if on_started is not None:
        threading.Thread(target=_when_started, args=(server, on_started), daemon=True).start()
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn stops gracefully, then raises the signal again
        pass
    finally:
        collector.stop()


def warm_up(app, host: str, index: Index) -> None:
    """Serve the start page and a search of its first example once, in this process, before anyone can ask:
    a new server's first search cost about 30 ms more than later ones (the pool's first connection, the
    first rendering of each template, the first compilation of the statements every page runs)."""
    async def get(path: str, query: str = "") -> None:
        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            pass

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query.encode(),
                 "root_path": "", "headers": [(b"host", host.encode("latin-1", "replace"))], "client": ("127.0.0.1", 0),
                 "server": (host, 0)}
        await app(scope, receive, send)

    async def pages() -> None:
        await get("/")  # its errors are the page's, shown to whoever asks
        try:
            examples = index.examples()
        except ImgidxError:
            return
        for text in examples[:1]:
            await get("/", urlencode({"q": text}))
            await get("/results", urlencode({"q": text, "offset": 1}))

    asyncio.run(pages())


class _Server(uvicorn.Server):
    """uvicorn's server, which also interrupts the index's running statements when told to stop."""

    def __init__(self, config: uvicorn.Config, interrupt: Callable[[], None]):
        super().__init__(config)
        self.interrupt = interrupt

    def handle_exit(self, sig, frame) -> None:
        super().handle_exit(sig, frame)
        self.interrupt()


def _when_started(server: uvicorn.Server, then: Callable[[], None]) -> None:
    while not server.started and not server.should_exit:
        time.sleep(0.05)
    if server.started:
        then()


def open_browser(url: str) -> None:
    webbrowser.open(url)
