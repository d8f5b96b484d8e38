"""`imgidx serve`: the web app over an index (`serve/`, an optional extra, imported when the command runs)."""

from __future__ import annotations

import click

from indexer.cli.core import db_option, db_url
from indexer.names import printable


@click.command("serve")
@db_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Any other than this machine's own makes the library visible on that network.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="Port; 0 picks a free one.")
@click.option("--allow-host", "allowed", multiple=True, metavar="NAME",
              help="Another name the server answers by (repeatable), e.g. this machine's on the network. It "
                   "answers only by localhost, 127.0.0.1, ::1 and --host, so no other site can read the library "
                   "through a browser (DNS rebinding).")
@click.option("--open", "open_browser", is_flag=True, help="Open the search page in the web browser.")
@click.option("--quiet", "-q", is_flag=True,
              help="Log no requests (by default a line per request on standard error: method, path, status, ms).")
def serve_command(db, host, port, allowed, open_browser, quiet):
    """Search and browse the index in a web browser: thumbnails with the matched cells drawn over them,
    each photo with its stored grid and overlays, every label with its photos, a cell picker and a
    confidence slider that write the query, looser queries when nothing matches, the picked photos as a
    zip (originals, or copies with faces or the query's labels blurred), and an overview.

    The index is opened read-only; thumbnails are cached in the cache folder ($IMGIDX_CACHE_DIR moves
    it). Ctrl-C stops the server. Needs the web extra: pip install 'imgidx[serve]'.
    """
    import serve
    from indexer.store import shown

    try:
        from serve import server
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in serve.EXTRA_MODULES:
            raise
        raise click.ClickException(serve.INSTALL_HINT) from None
    warning = server.exposure_warning(host)
    if warning:
        click.echo(f"warning: {warning}", err=True)
    index = server.Index(db_url(db))
    try:
        sock = server.listen(host, port)
        url = server.url_of(sock)
        server.run(index, sock, on_started=(lambda: server.open_browser(url)) if open_browser else None,
                   hosts=server.answered_hosts(host, allowed), quiet=quiet,
                   on_ready=lambda: click.echo(f"serving {printable(shown(db_url(db)))} at {url} (Ctrl-C stops)",
                                               err=True))
    finally:
        index.close()
    click.echo("stopped", err=True)
