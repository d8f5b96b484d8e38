"""`imgidx serve`: its pages, thumbnails and security, through Starlette's test client over real SQLite
indexes of real photo files; and the real server process (a warning for a non-local --host, raw path
traversal over a socket, a clean stop on Ctrl-C). The browser test is tests/test_serve_browser.py."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import anyio
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from PIL import Image

pytest.importorskip("starlette", reason="needs the web extra: pip install 'imgidx[serve]'")
pytest.importorskip("httpx", reason="Starlette's test client needs httpx")
with warnings.catch_warnings():  # Starlette 1.x would rather have httpx2, which does the same here
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from starlette.testclient import TestClient  # noqa: E402

from indexer import store  # noqa: E402
from indexer.calibration import DEFAULT_MIN_SCORE, percent  # noqa: E402
from indexer.cli import cli  # noqa: E402
from indexer.store import IndexSettings, tables, write_settings  # noqa: E402
from query import compile as query_compile  # noqa: E402
from query import search  # noqa: E402
from query.parser import MAX_QUERY_CHARS, caret_context  # noqa: E402
from query_helpers import CRANE_MACHINE, FLOWERPOT, SCHOOL_BUS, TABBY, make_index  # noqa: E402
from serve.app import CONTENT_SECURITY_POLICY, Index, SearchRequest, _Params, create_app  # noqa: E402
from serve import server  # noqa: E402

PHOTOS = Path(__file__).parent / "photos"
#: Seconds a test waits for a server process or a background thread: only against a hang (a busy machine
#: makes everything slow), never an assertion about speed.
PATIENCE_S = 300
EVIL = "<script>alert(1)</script>.jpg"
SECRET = "root:x:0:0:secret-marker"


def real_index(folder: Path, photos: dict[str, dict | None], db: Path | None = None) -> Path:
    """An index at ``db`` whose rows are the files ``photos`` names (relative to ``folder``, made from
    tests/photos when missing) with their true hash, size, time and dimensions, and the given cells; read
    through EfficientNet-Lite0's calibration, as a real Lite0 index is."""
    db = db or folder / "index.db"
    rows = {}
    for name, cells in photos.items():
        path = folder / name
        rows[str(path)] = cells
    engine = make_index(db, rows)
    t = tables(engine)
    with engine.begin() as conn:
        write_settings(conn, t, IndexSettings("efficientnet-lite0", 448, "fp32"))
        for image_id, path in conn.execute(sa.select(t.images.c.image_id, t.images.c.path)).all():
            if os.path.isfile(path):
                data = Path(path).read_bytes()
                status = os.stat(path)
                with Image.open(path) as picture:
                    width, height = picture.size
                conn.execute(
                    t.images.update().where(t.images.c.image_id == image_id).values(
                        content_hash=hashlib.sha256(data).hexdigest(), size_bytes=status.st_size,
                        mtime_ns=status.st_mtime_ns, width=width, height=height, model="efficientnet-lite0",
                    )
                )
            else:
                conn.execute(t.images.update().where(t.images.c.image_id == image_id).values(model="efficientnet-lite0"))
        conn.execute(t.image_labels.update().values(share=0.1))  # make_index stored each class's best cell
    engine.dispose()
    return db


def copy_photo(source: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(PHOTOS / source, target)


@pytest.fixture
def library(tmp_path, monkeypatch):
    """Real photos: chelsea (a cat), a copy of it, coffee, astronaut, a turned photo, one named with a
    script, one deleted after indexing; cells laid out for the queries below."""
    monkeypatch.setenv("IMGIDX_CACHE_DIR", str(tmp_path / "cache"))
    photos = tmp_path / "photos"
    copy_photo("chelsea.jpg", photos / "a" / "chelsea.jpg")
    copy_photo("chelsea.jpg", photos / "b" / "chelsea-copy.jpg")
    copy_photo("coffee.jpg", photos / "a" / "coffee.jpg")
    copy_photo("astronaut.jpg", photos / "ab" / "astronaut.jpg")
    copy_photo("motorcycle.jpg", photos / "a" / EVIL)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned a quarter: 600x400 stored, 400x600 seen
    Image.new("RGB", (600, 400), (200, 30, 30)).save(photos / "a" / "turned.jpg", "JPEG", exif=exif.tobytes())
    copy_photo("rocket.jpg", photos / "a" / "gone.jpg")
    cat = {0: {FLOWERPOT: 0.6}, 4: {SCHOOL_BUS: 0.9, TABBY: 0.8}}
    db = real_index(photos, {
        "a/chelsea.jpg": cat,
        "b/chelsea-copy.jpg": cat,
        "a/coffee.jpg": {4: {SCHOOL_BUS: 0.5}, 8: {CRANE_MACHINE: 0.7}},
        "ab/astronaut.jpg": {1: {SCHOOL_BUS: 0.7}},
        f"a/{EVIL}": {4: {SCHOOL_BUS: 0.8}},
        "a/turned.jpg": {4: {SCHOOL_BUS: 0.6}},
        "a/gone.jpg": {4: {SCHOOL_BUS: 0.4}},
        "a/broken.jpg": None,
    })
    (photos / "a" / "gone.jpg").unlink()
    return photos, db


@pytest.fixture
def client(library, tmp_path):
    photos, db = library
    index = Index(str(db), thumbnail_folder=tmp_path / "cache" / "thumbnails")
    with TestClient(create_app(index), base_url="http://localhost") as test_client:
        test_client.index = index
        yield test_client
    index.close()


def ids_by_name(db: Path) -> dict[str, int]:
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT image_id, path FROM images")).all()
    engine.dispose()
    return {os.path.basename(path): image_id for image_id, path in rows}


def cards(html: str) -> list[dict]:
    """The result cards of a page: id, hash, score, copies, name and the hit cells with their numbers."""
    found = []
    for block in re.findall(r'<li class="card".*?</li>\n', html, re.S):
        cells = {
            name: re.findall(r'<span class="n t\d">(\d+)</span>', numbers)
            for name, numbers in re.findall(
                r'<span class="cell hit t\d" data-cell="([a-z-]+)">((?:<span class="n t\d">\d+</span>)*)</span>', block)
        }
        copies = re.search(r'class="copies"[^>]*>(\d+) copies<', block)
        found.append({
            "id": int(re.search(r'data-id="(\d+)"', block).group(1)),
            "hash": re.search(r'data-hash="([0-9a-f]*)"', block).group(1),
            "rank": int(re.search(r'data-rank="(\d+)"', block).group(1)),
            "score": re.search(r'<span class="score" title="confidence">([^<]+)</span>', block).group(1),
            "name": re.search(r'<a class="name" [^>]*>([^<]*)</a>', block).group(1),
            "copies": int(copies.group(1)) if copies else 1,
            "cells": cells,
        })
    return found


# ------------------------------------------------------------------------------------------- search


def test_search_shows_each_match_with_the_cli_confidence_and_the_matched_cells_numbered(client, library):
    _, db = library
    text = "school bus in center AND flowerpot top-left"
    page = client.get("/", params={"q": text})
    assert page.status_code == 200
    shown = cards(page.text)
    engine = store.open_index(str(db), create=False, readonly=True)
    expected = search.search(engine, text, limit=None)
    engine.dispose()
    assert [m.path.endswith("chelsea.jpg") or m.path.endswith("chelsea-copy.jpg") for m in expected.matches] == [True, True]
    assert len(shown) == 1  # the two identical photos, once
    assert shown[0]["score"] == percent(expected.matches[0].score)
    assert shown[0]["cells"] == {"top-left": ["2"], "center": ["1"]}
    assert shown[0]["copies"] == 2
    assert '<span class="count">2 matches</span>' in page.text
    assert re.search(r'<span class="time">\d+ ms</span>', page.text)
    # the threshold in percent, as the scores beside it (issue 25, item 9)
    assert f"<span class=\"n t1\">1</span> school bus in center &gt;= {percent(DEFAULT_MIN_SCORE)}" in page.text


def test_pages_load_in_steps_and_the_url_keeps_the_query(client):
    first = client.get("/", params={"q": "school bus", "n": 2})
    shown = cards(first.text)
    assert len(shown) == 2
    more = re.search(r'<li class="more" id="more" data-next="([^"]+)"><a href="([^"]+)">', first.text)
    assert more.group(1).replace("&amp;", "&") == "/results?q=school+bus&n=2&offset=2"
    assert more.group(2).replace("&amp;", "&") == "/?q=school+bus&n=2&offset=2"
    assert 'name="n" value="2"' in first.text  # a new search keeps the page size
    seen = [(c["id"], c["hash"]) for c in shown]
    ranks = [c["rank"] for c in shown]
    url = more.group(1).replace("&amp;", "&")
    while url:
        fragment = client.get(url)
        assert fragment.status_code == 200 and "<html" not in fragment.text
        seen += [(c["id"], c["hash"]) for c in cards(fragment.text)]
        ranks += [c["rank"] for c in cards(fragment.text)]
        next_url = re.search(r'data-next="([^"]+)"', fragment.text)
        url = next_url.group(1).replace("&amp;", "&") if next_url else None
    # 7 photos hold a school bus (the broken one has no labels), two of them the same cat: each page shows
    # a content once, and the page's script drops a content an earlier page showed (by its data-hash)
    assert len({i for i, _ in seen}) == len(seen) == 7
    assert len({h for _, h in seen}) == 6
    assert ranks == list(range(1, 8))  # later pages come from the search compiled for the first, offset


def test_identical_photos_are_one_card_with_their_copies_listed_on_the_photo_page(client, library):
    _, db = library
    ids = ids_by_name(db)
    page = client.get("/", params={"q": "tabby"})
    (card,) = cards(page.text)
    assert card["copies"] == 2 and card["id"] in (ids["chelsea.jpg"], ids["chelsea-copy.jpg"])
    photo = client.get(f"/photo/{card['id']}")
    other = ids["chelsea-copy.jpg"] if card["id"] == ids["chelsea.jpg"] else ids["chelsea.jpg"]
    assert f'<a href="/photo/{other}">' in photo.text and "Identical copies" in photo.text


def test_a_folder_filter_keeps_the_photos_under_that_folder_only(client, library):
    photos, _ = library
    names = {c["name"] for c in cards(client.get("/", params={"q": "school bus", "folder": str(photos / "a")}).text)}
    assert names == {"chelsea.jpg", "coffee.jpg", "turned.jpg", "gone.jpg", "script&gt;.jpg"}  # not ab/ nor b/
    names = {c["name"] for c in cards(client.get("/", params={"q": "school bus", "folder": str(photos / "ab") + "/"}).text)}
    assert names == {"astronaut.jpg"}
    refused = client.get("/", params={"q": "school bus", "folder": "photos/a"})
    assert refused.status_code == 400
    assert "<p class=\"message\">a folder filter is an absolute path, not &#39;photos/a&#39;</p>" in refused.text


def test_a_broken_query_shows_the_message_and_the_caret_under_its_position(client):
    page = client.get("/", params={"q": "cat AND ("})
    assert page.status_code == 400
    assert '<p class="message">column 10: expected a label after &#39;(&#39;, found the end of the query</p>' in page.text
    assert f'<pre class="caret">{caret_context("cat AND (", 9)}</pre>' in page.text
    assert 'data-error-position="9"' in page.text
    unknown = client.get("/", params={"q": "dgo in center"})
    assert "column 1: unknown label &#39;dgo&#39;; did you mean dingo, dugong or dog?" in unknown.text


def asgi_get(app, path: str, query: str) -> tuple[int, bytes]:
    """GET ``path?query`` straight through the ASGI app: httpx refuses URLs this long before sending them."""
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
             "headers": [(b"host", b"localhost")], "client": ("127.0.0.1", 1), "server": ("testserver", 80)}
    anyio.run(app, scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def test_a_100_kb_query_is_refused_at_once_without_echoing_it(client):
    query = "q=" + "cat+AND+" * 12_800  # 102,400 characters
    for path in ("/", "/results", "/photo/1"):
        start = time.process_time()  # CPU time: what the request costs, however busy the machine is
        status, body = asgi_get(client.app, path, query)
        assert time.process_time() - start < 1.0
        assert status == 400
        assert b"query too long: 102,400 characters, the most is 2,000" in body
        assert len(body) < 5_000


def test_out_of_range_parameters_are_one_line_errors(client):
    page = client.get("/", params={"q": "cat", "n": "100000"})
    assert page.status_code == 400 and "<p class=\"message\">n must be 1 to 200, not 100000</p>" in page.text
    page = client.get("/", params={"q": "cat", "offset": "x"})
    assert "<p class=\"message\">offset must be a number, not &#39;x&#39;</p>" in page.text
    page = client.post("/", data={"q": "cat"})
    assert page.status_code == 405 and "<p class=\"message\">this address only answers GET</p>" in page.text


def test_an_index_in_postgresql_is_served_read_only(pg_url, tmp_path, monkeypatch):
    monkeypatch.setattr("serve.app.STATS_WAIT_S", PATIENCE_S)  # the counts, however busy the machine
    make_index(pg_url, {"/photos/a.jpg": {4: {SCHOOL_BUS: 0.9}}, "/photos/b.jpg": {0: {SCHOOL_BUS: 0.5}}}).dispose()
    index = Index(pg_url, thumbnail_folder=tmp_path / "thumbs")
    with TestClient(create_app(index), base_url="http://localhost") as client:
        names = [c["name"] for c in cards(client.get("/", params={"q": "school bus", "folder": "/photos"}).text)]
        assert names == ["a.jpg", "b.jpg"]
        assert client.get("/photo/1", params={"q": "school bus"}).status_code == 200
        assert '<td id="images">2</td>' in client.get("/overview").text
        assert '<a href="/?q=school+bus">school bus</a>' in client.get("/").text  # examples: checked, kept by newest id
    with pytest.raises(sa.exc.DBAPIError, match="read-only transaction"):
        with index.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM images"))
    index.close()


def test_labels_complete_from_the_vocabulary(client):
    assert client.get("/api/complete", params={"text": "dog AND flower p"}).json() == {"start": 8, "names": ["flowerpot"]}
    assert client.get("/api/complete", params={"text": "school b"}).json() == {"start": 0, "names": ["school bus"]}
    assert client.get("/api/complete", params={"text": "cat "}).json() == {"start": 4, "names": []}


# ------------------------------------------------------------------------------------------- photo page


def test_the_photo_page_shows_the_stored_grid_overlays_and_the_next_and_previous_match(client, library):
    _, db = library
    ids = ids_by_name(db)
    listed = [c["id"] for c in cards(client.get("/", params={"q": "school bus"}).text)]
    middle = listed[1]
    page = client.get(f"/photo/{middle}", params={"q": "school bus", "rank": 2})
    assert page.status_code == 200
    assert f'href="/photo/{listed[0]}?q=school+bus&amp;rank=1"' in page.text
    assert re.search(rf'id="next" rel="next" href="/photo/{listed[2]}\?q=school\+bus&amp;rank=\d"', page.text)
    cat = client.get(f"/photo/{ids['chelsea.jpg']}", params={"q": "school bus in center AND flowerpot top-left"})
    assert 'data-mode="matches"' in cat.text
    assert '<span class="cell hit t1" data-cell="center"><span class="n t1">1</span></span>' in cat.text
    assert '<span class="cell hit t2" data-cell="top-left"><span class="n t2">2</span></span>' in cat.text
    center = re.search(r'<td data-cell="center">(.*?)</td>', cat.text).group(1)
    assert re.fullmatch(r'(<div>(school bus|tabby) <span class="score">\d+%</span></div>){2}', center)
    assert '<span class="cell c0" data-cell="top-left"></span>' in cat.text  # class map: flowerpot's colour
    assert '<span class="cell c1" data-cell="center"></span>' in cat.text  # school bus, another colour
    assert re.search(r'<img src="/thumbnail/\d+/1280\?v=[0-9a-f]{16}" width="1280" height="851"', cat.text)
    original = client.get(f"/original/{ids['chelsea.jpg']}")
    assert original.status_code == 200 and original.headers["content-type"] == "image/jpeg"
    assert original.content == (PHOTOS / "chelsea.jpg").read_bytes()


def test_where_a_chosen_label_scores_comes_from_the_stored_evidence(client, library):
    _, db = library
    cat = ids_by_name(db)["chelsea.jpg"]
    found = client.get(f"/api/scores/{cat}", params={"label": "school bus"}).json()
    engine = store.open_index(str(db), create=False, readonly=True)
    with engine.connect() as conn:
        calibration = store.read_calibration(conn)
    engine.dispose()
    assert found["classes"] == 1
    assert found["cells"][4] == {"value": round(calibration.probability(0.9, (SCHOOL_BUS,)), 4),
                                 "text": percent(calibration.probability(0.9, (SCHOOL_BUS,)))}
    assert [c is None for c in found["cells"]] == [i != 4 for i in range(9)]
    assert client.get(f"/api/scores/{cat}", params={"label": "cat"}).json()["cells"][4] is not None  # a group
    wrong = client.get(f"/api/scores/{cat}", params={"label": "dgo"})
    assert wrong.status_code == 400 and wrong.json() == {"error": "unknown label 'dgo'; did you mean dingo, dugong or dog?"}


def test_face_boxes_are_drawn_when_the_index_has_them(client, library, monkeypatch):
    _, db = library
    cat = ids_by_name(db)["chelsea.jpg"]
    assert 'class="bbox' not in client.get(f"/photo/{cat}").text
    monkeypatch.setattr(store, "box_overlays", lambda conn, image_id: [
        {"left": 0.25, "top": 0.1, "width": 0.2, "height": 0.3, "label": "<b>Ann</b>", "face": True},
        {"left": 0.6, "top": 0.5, "width": 0.1, "height": 0.1, "label": None, "face": True},
        {"left": 0.1, "top": 0.2, "width": 0.5, "height": 0.7, "label": "person 87%", "face": False},
    ] if image_id == cat else [])
    page = client.get(f"/photo/{cat}").text
    assert re.findall(r'<span class="bbox[^"]*" [^>]*>.*?</span>(?=<span class="bbox|\s*</div>)', page) == [
        '<span class="bbox face" id="box-0" data-left="0.25" data-top="0.1" data-width="0.2" data-height="0.3"><span class="tag">&lt;b&gt;Ann&lt;/b&gt;</span></span>',
        '<span class="bbox face" id="box-1" data-left="0.6" data-top="0.5" data-width="0.1" data-height="0.1"></span>',
        '<span class="bbox" id="box-2" data-left="0.1" data-top="0.2" data-width="0.5" data-height="0.7"><span class="tag">person 87%</span></span>',
    ]
    # placed by a style sheet of the server's (no script, no inline style): issue 25, item 6
    assert f'<link rel="stylesheet" href="/photo/{cat}/boxes.css">' in page
    sheet = client.get(f"/photo/{cat}/boxes.css")
    assert sheet.headers["content-type"] == "text/css; charset=utf-8"
    assert sheet.text.splitlines() == [
        "#box-0 { left: 25.000%; top: 10.000%; width: 20.000%; height: 30.000%; }",
        "#box-1 { left: 60.000%; top: 50.000%; width: 10.000%; height: 10.000%; }",
        "#box-2 { left: 10.000%; top: 20.000%; width: 50.000%; height: 70.000%; }",
    ]


def test_the_overview_counts_links_labels_to_their_search_and_lists_failed_files(client, monkeypatch):
    monkeypatch.setattr("serve.app.STATS_WAIT_S", PATIENCE_S)  # the counts, however busy the machine (the wait: below)
    page = client.get("/overview").text
    assert '<td id="images">8</td>' in page
    assert "efficientnet-lite0 at size 448 (fp32)" in page
    assert '<a href="/?q=school+bus">school bus</a>' in page
    assert "cannot identify image file" in page


def test_the_overview_says_it_is_counting_until_the_counts_are_there(client, monkeypatch):
    counted = store.index_stats
    release = threading.Event()

    def slow(conn, **options):
        release.wait(30)
        return counted(conn, **options)

    monkeypatch.setattr(store, "index_stats", slow)
    monkeypatch.setattr("serve.app.STATS_WAIT_S", 0.1)
    page = client.get("/overview").text
    assert 'id="counting"' in page and '<meta http-equiv="refresh" content="5">' in page
    release.set()
    deadline = time.monotonic() + PATIENCE_S
    while 'id="counting"' in page and time.monotonic() < deadline:
        time.sleep(0.05)
        page = client.get("/overview").text
    assert '<td id="images">8</td>' in page


# ------------------------------------------------------------------------------------------- thumbnails


def test_thumbnails_are_upright_cached_by_content_and_size_and_revalidated_by_etag(client, library, tmp_path):
    _, db = library
    ids = ids_by_name(db)
    first = client.get(f"/thumbnail/{ids['turned.jpg']}/320")
    assert first.status_code == 200 and first.headers["content-type"] == "image/jpeg"
    with Image.open(__import__("io").BytesIO(first.content)) as picture:
        assert picture.size == (213, 320)  # turned upright, longest side 320
    digest = hashlib.sha256((library[0] / "a" / "turned.jpg").read_bytes()).hexdigest()
    cached = tmp_path / "cache" / "thumbnails" / digest[:2] / f"{digest}-320.jpg"
    assert cached.read_bytes() == first.content
    assert first.headers["etag"] == f'"{digest[:32]}-320"' and first.headers["cache-control"] == "private, no-cache"
    again = client.get(f"/thumbnail/{ids['turned.jpg']}/320", headers={"if-none-match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    before = cached.stat().st_mtime_ns
    assert client.get(f"/thumbnail/{ids['turned.jpg']}/320").content == first.content
    assert cached.stat().st_mtime_ns == before  # served from the cache, not made again
    large = client.get(f"/thumbnail/{ids['chelsea.jpg']}/1280")
    with Image.open(__import__("io").BytesIO(large.content)) as picture:
        assert max(picture.size) <= 1280
    assert client.get(f"/thumbnail/{ids['chelsea.jpg']}/321").status_code == 404


def svg_text(svg: str) -> str:
    """The words a placeholder SVG shows, its lines joined by spaces."""
    return " ".join(re.findall(r"<text [^>]*>([^<]*)</text>", svg))


def test_a_missing_or_changed_photo_gets_a_placeholder_with_a_note(client, library):
    photos, db = library
    ids = ids_by_name(db)
    gone = client.get(f"/thumbnail/{ids['gone.jpg']}/320")
    assert gone.status_code == 200 and gone.headers["content-type"] == "image/svg+xml"
    assert svg_text(gone.text) == "photo not shown: no such file" and gone.headers["cache-control"] == "no-store"
    coffee = photos / "a" / "coffee.jpg"
    client.get(f"/thumbnail/{ids['coffee.jpg']}/320")  # cached while unchanged
    Image.new("RGB", (64, 48), (0, 0, 255)).save(coffee, "JPEG")
    changed = client.get(f"/thumbnail/{ids['coffee.jpg']}/320")
    assert svg_text(changed.text) == "photo not shown: changed since it was indexed"
    page = client.get(f"/photo/{ids['coffee.jpg']}").text
    assert f'<p class="note" id="photo-note">{coffee}: changed since it was indexed</p>' in page
    assert client.get(f"/original/{ids['coffee.jpg']}").status_code == 404
    cat = photos / "a" / "chelsea.jpg"
    os.utime(cat, ns=(0, 0))  # touched only: the same content is still shown
    assert client.get(f"/thumbnail/{ids['chelsea.jpg']}/320").headers["content-type"] == "image/jpeg"
    assert client.get(f"/photo/{ids['broken.jpg']}").status_code == 200
    assert client.get(f"/thumbnail/{ids['broken.jpg']}/320").status_code == 404


# ------------------------------------------------------------------------------------------- security


def test_a_file_named_with_a_script_shows_as_text(client, library):
    _, db = library
    evil = ids_by_name(db)[EVIL.rsplit("/", 1)[1]]
    for url in ("/?q=school+bus", f"/photo/{evil}"):
        page = client.get(url).text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;.jpg" in page
        assert "<script>alert" not in page
        assert re.findall(r"<script[^>]*>", page) == [f'<script src="/static/{name}.js">' for name in
                                                      (["search", "ask"] if url.startswith("/?") else ["search", "photo"])]
    disposition = client.get(f"/original/{evil}").headers["content-disposition"]
    assert disposition == "inline; filename*=UTF-8''script%3E.jpg"


def test_every_response_carries_the_content_security_policy(client):
    for url in ("/", "/?q=cat", "/overview", "/no/such/page", "/static/app.css", "/api/complete?text=ca"):
        response = client.get(url)
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self';" in CONTENT_SECURITY_POLICY and "unsafe" not in CONTENT_SECURITY_POLICY


TRAVERSALS = (
    "/static/../serve/app.py", "/static/..%2fapp.py", "/static/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/static/%2Fetc%2Fpasswd",
    "/thumbnail/..%2f..%2fetc%2fpasswd/320", "/original/%2Fetc%2Fpasswd", "/original/-1", "/original/1.5",
    "/original/999999", "/etc/passwd", "//etc/passwd", "/static//etc/passwd", "/original?path=/etc/passwd",
    "/thumbnail/1/320/../../../../etc/passwd",
)


def test_paths_in_requests_never_reach_a_file(client, library):
    photos, _ = library
    (photos / "secret.txt").write_text(SECRET)
    for url in TRAVERSALS + (f"/original/{photos / 'secret.txt'}", f"/static/{photos / 'secret.txt'}"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert SECRET not in response.text and "root:" not in response.text


def test_a_photo_replaced_by_a_symlink_is_not_followed(client, library):
    photos, db = library
    ids = ids_by_name(db)
    secret = photos / "secret.txt"
    secret.write_text(SECRET)
    astronaut = photos / "ab" / "astronaut.jpg"
    astronaut.unlink()
    astronaut.symlink_to(secret)
    original = client.get(f"/original/{ids['astronaut.jpg']}")
    assert original.status_code == 404 and SECRET not in original.text
    assert "changed since it was indexed" in original.text
    thumb = client.get(f"/thumbnail/{ids['astronaut.jpg']}/320")
    assert svg_text(thumb.text) == "photo not shown: changed since it was indexed" and SECRET not in thumb.text


def test_the_index_is_opened_read_only_and_left_as_it_was(library, tmp_path):
    _, db = library
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    index = Index(str(db), thumbnail_folder=tmp_path / "thumbs")
    with TestClient(create_app(index), base_url="http://localhost") as test_client:
        for url in ("/", "/?q=school+bus", "/overview", "/photo/1", "/thumbnail/1/320"):
            assert test_client.get(url).status_code == 200
    with pytest.raises(sa.exc.OperationalError, match="readonly"):
        with index.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM images"))
    index.close()
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    wal = Path(str(db) + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0  # SQLite may leave an empty one beside a read-only reader


def test_an_unexpected_error_is_one_line_in_the_page_and_on_stderr(client, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr("query.browse.fold_copies", broken)
    page = client.get("/", params={"q": "school bus"})
    assert page.status_code == 500
    assert '<p class="message">internal error: RuntimeError: disk on fire\\nsecond line</p>' in page.text
    assert "Traceback" not in page.text


def test_stopping_interrupts_a_running_statement_and_answers_503(client, monkeypatch):
    endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 300000000) SELECT count(*) FROM c"
    monkeypatch.setattr("query.browse.fold_copies", lambda conn, t, matches: conn.exec_driver_sql(endless).all())
    stop = threading.Timer(0.5, client.index.interrupt)
    stop.start()
    page = client.get("/", params={"q": "school bus"})
    stop.join()
    # The statement counts for minutes unless interrupted, and only an interrupted one answers 503: that is
    # the proof, where a bound on the time would fail on a busy machine.
    assert page.status_code == 503 and '<p class="message">the server is stopping</p>' in page.text


# ------------------------------------------------------------------------------------------- the command


def test_only_the_names_the_server_was_started_for_are_answered(library, tmp_path):
    """A page on another site that points its name at 127.0.0.1 (DNS rebinding) sends that name: refused, so
    it cannot read the library through the visitor's browser."""
    _, db = library
    index = Index(str(db), thumbnail_folder=tmp_path / "thumbnails")
    try:
        app = create_app(index)
        for base in ("http://localhost", "http://localhost:8765", "http://127.0.0.1:8765", "http://[::1]:8765"):
            with TestClient(app, base_url=base) as client:
                assert client.get("/original/1").status_code == 200, base
        with TestClient(app, base_url="http://attacker.example") as client:
            for path in ("/", "/original/1", "/api/scores/1?label=cat", "/static/app.css"):
                refused = client.get(path)
                assert refused.status_code == 421, path
                assert ("this server answers only by 127.0.0.1, ::1, localhost, not attacker.example "
                        "(imgidx serve --allow-host NAME adds one)") in refused.text
                assert refused.headers["content-security-policy"]
        with TestClient(create_app(index, (*server.LOOPBACK_HOSTS, "Photos.LAN")), base_url="http://photos.lan:80") as client:
            assert client.get("/overview").status_code == 200
    finally:
        index.close()
    assert server.answered_hosts("127.0.0.1") == ("localhost", "127.0.0.1", "::1")
    assert server.answered_hosts("192.168.1.5", ["photos.lan"]) == ("localhost", "127.0.0.1", "::1", "192.168.1.5",
                                                                      "photos.lan")
    assert server.answered_hosts("0.0.0.0") == server.answered_hosts("[::]") == server.LOOPBACK_HOSTS


def test_a_photo_id_past_64_bits_is_no_photo(client):
    huge = 2**63
    for path in (f"/photo/{huge}", f"/original/{huge}", f"/thumbnail/{huge}/320", f"/api/scores/{huge}?label=cat",
                 f"/photo/{10**40}"):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert "no photo" in answer.text


def test_a_non_local_host_warns_before_anything_else(tmp_path):
    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0", "--db", str(tmp_path / "none.db")])
    assert result.exit_code == 1
    assert result.stderr == (
        "warning: listening on 0.0.0.0, not only on this machine: anyone who can reach it on that network can "
        "browse the whole photo library and download every photo in it (there is no login)\n"
        f"Error: no index at {tmp_path / 'none.db'}; build one with: imgidx index FOLDER --db {tmp_path / 'none.db'}\n"
    )
    for local in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        result = CliRunner().invoke(cli, ["serve", "--host", local, "--db", str(tmp_path / "none.db")])
        assert result.stderr.startswith("Error: no index at"), local


def test_without_the_web_extra_serve_says_how_to_install_it(tmp_path, monkeypatch):
    import serve

    for name in ("app", "server"):
        monkeypatch.delitem(sys.modules, f"serve.{name}", raising=False)
        monkeypatch.delattr(serve, name, raising=False)
    monkeypatch.setitem(sys.modules, "starlette", None)
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    result = CliRunner().invoke(cli, ["serve", "--db", str(tmp_path / "none.db")])
    assert result.exit_code == 1
    assert result.stderr == "Error: imgidx serve needs the web extra: pip install 'imgidx[serve]'\n"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(db: Path, cache: Path, *args: str, browser: str | None = None) -> subprocess.Popen:
    """`imgidx serve` in a process of its own; ``browser`` is the command --open runs (Python's $BROWSER)."""
    env = {**os.environ, "IMGIDX_CACHE_DIR": str(cache)}
    if browser is not None:
        env["BROWSER"] = browser
    return subprocess.Popen(
        [sys.executable, "-m", "indexer", "serve", "--db", str(db), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


def wait_for(process: subprocess.Popen, prefix: str) -> str:
    """The first line of the server's stderr that starts with ``prefix``, skipping the others."""
    while True:
        line = process.stderr.readline()
        if not line:
            raise AssertionError(f"the server stopped: {process.stderr.read()}")
        if line.startswith(prefix):
            return line


def raw_get(port: int, target: str, host: str = "127.0.0.1", piece: int | None = None) -> str:
    """The response to a GET of ``target`` sent as it is (a client library would normalize it); with ``piece``,
    sent that many bytes at a time with a pause between, as a slow network delivers it."""
    request = f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE_S) as conn:
        for start in range(0, len(request), piece or len(request)):
            conn.sendall(request[start:start + (piece or len(request))])
            if piece:
                time.sleep(0.005)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    return data.decode("utf-8", "replace")


def test_the_server_process_opens_the_browser_refuses_traversal_and_stops_cleanly_on_ctrl_c(library, tmp_path):
    photos, db = library
    (photos / "secret.txt").write_text(SECRET)
    port = free_port()
    opened = tmp_path / "opened.txt"
    browser = f"{sys.executable} -c \"import sys; open({str(opened)!r}, 'w').write(sys.argv[1])\" %s"
    process = start_server(db, tmp_path / "cache", "--port", str(port), "--open", browser=browser)
    try:
        assert wait_for(process, "serving") == f"serving {db} at http://127.0.0.1:{port}/ (Ctrl-C stops)\n"
        deadline = time.monotonic() + PATIENCE_S
        while not (opened.exists() and opened.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert opened.read_text() == f"http://127.0.0.1:{port}/"  # --open: the browser got the search page
        assert raw_get(port, "/?q=school+bus").startswith("HTTP/1.1 200 ")
        for target in TRAVERSALS + ("/static/../../../../etc/passwd", "/../../etc/passwd", f"/static/{photos}/secret.txt",
                                    "/thumbnail/1/../../../secret.txt"):
            answer = raw_get(port, target)
            assert answer.startswith(("HTTP/1.1 404 ", "HTTP/1.1 400 ")), (target, answer[:80])
            assert SECRET not in answer and "root:" not in answer
        # the longest search the app reads, as a browser sends it and a slow network delivers it: the app answers
        cats = "%F0%9F%90%88" * MAX_QUERY_CHARS
        answer = raw_get(port, f"/?q={cats}&folder=/{cats[12:]}", piece=1024)
        assert answer.startswith("HTTP/1.1 400 ") and "column 1: unexpected character &#39;\U0001F408&#39;" in answer
        with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE_S) as conn:
            conn.sendall(b"GET /?q=" + b"c" * server.MAX_REQUEST_HEAD_BYTES)  # a head too long, not yet ended
            with contextlib.suppress(ConnectionError):  # cut off: uvicorn's 400, or a reset
                assert conn.recv(65536).startswith(b"HTTP/1.1 400 ")
        long = raw_get(port, "/?q=" + "cat+AND+" * 1_800, piece=1024)
        assert long.startswith("HTTP/1.1 400 ") and "query too long: 14,400 characters, the most is 2,000" in long
        assert raw_get(port, "/?q=school+bus").startswith("HTTP/1.1 200 ")  # still serving
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=PATIENCE_S)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    # a line per request (method, path, status, ms), a long one clipped: issue 25, item 9
    lines = err.splitlines()
    assert re.fullmatch(r"imgidx serve: GET /\?q=school\+bus 200 \d+ ms", lines[0]), lines[0]
    assert re.fullmatch(r"imgidx serve: GET /original/-1 404 \d+ ms", lines[1 + TRAVERSALS.index("/original/-1")])
    expected = [r"imgidx serve: GET /\?q=%F0%9F%90%88.{270,300} 400 \d+ ms",
                r"imgidx serve: Invalid HTTP request received\.",  # uvicorn's warning, in the same form
                r"imgidx serve: GET /\?q=cat\+AND\+.{270,300} 400 \d+ ms",
                r"imgidx serve: GET /\?q=school\+bus 200 \d+ ms"]
    tail = lines[-5:-1]  # in any order: a request's line is written once its response is sent
    for pattern in expected:
        assert sum(bool(re.fullmatch(pattern, line)) for line in tail) == 1, (pattern, tail)
    assert lines[-1] == "stopped"


def test_a_server_on_all_interfaces_warns_then_serves(library, tmp_path):
    _, db = library
    process = start_server(db, tmp_path / "cache", "--host", "0.0.0.0", "--port", "0", "--allow-host", "photos.lan",
                           "--quiet")
    try:
        assert wait_for(process, "warning: ").startswith("warning: listening on 0.0.0.0, not only on this machine")
        port = int(re.search(r"at http://0\.0\.0\.0:(\d+)/", wait_for(process, "serving")).group(1))
        assert raw_get(port, "/overview").startswith("HTTP/1.1 200 ")
        assert raw_get(port, "/overview", host=f"photos.lan:{port}").startswith("HTTP/1.1 200 ")
        assert raw_get(port, "/overview", host=f"attacker.example:{port}").startswith("HTTP/1.1 421 ")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=PATIENCE_S) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert process.stderr.read() == "stopped\n"  # --quiet: no line per request


def test_serving_imports_no_tensorflow(library, tmp_path):
    _, db = library
    code = (
        "import sys\nfrom starlette.testclient import TestClient\nfrom serve.app import Index, create_app\n"
        f"client = TestClient(create_app(Index({str(db)!r})), base_url='http://localhost')\n"
        "for url in ('/?q=school+bus', '/photo/1', '/thumbnail/1/320', '/overview'):\n"
        "    assert client.get(url).status_code == 200, url\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_slim', 'keras', 'torch')))\n"
    )
    env = {**os.environ, "IMGIDX_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_not_only_search_keeps_to_its_folder_and_pages_past_its_count(client, library, monkeypatch):
    photos, _ = library
    in_a = {"chelsea.jpg", "turned.jpg", "gone.jpg", "script&gt;.jpg"}  # a/ without the crane (coffee)
    names = {c["name"] for c in cards(client.get("/", params={"q": "NOT crane", "folder": str(photos / "a")}).text)}
    assert names == in_a
    monkeypatch.setattr(query_compile, "COUNT_LIMIT", 2)  # a count that stops before the matches do
    first = client.get("/", params={"q": "NOT crane", "folder": str(photos / "a"), "n": 1})
    assert '<span class="count">more than 2 matches</span>' in first.text
    seen = [c["name"] for c in cards(first.text)]
    url = re.search(r'data-next="([^"]+)"', first.text).group(1).replace("&amp;", "&")
    while url:
        fragment = client.get(url)
        seen += [c["name"] for c in cards(fragment.text)]
        next_url = re.search(r'data-next="([^"]+)"', fragment.text)
        url = next_url.group(1).replace("&amp;", "&") if next_url else None
    assert sorted(seen) == sorted(in_a)


# ------------------------------------------------------------------------------------------- issue 25


def test_the_start_page_offers_only_examples_that_match_in_this_index(client, library, monkeypatch, tmp_path):
    apart = tmp_path / "apart.db"  # three photos, one thing each: no two labels share a photo
    make_index(apart, {"/p/bus.jpg": {4: {SCHOOL_BUS: 0.9}}, "/p/cat.jpg": {4: {TABBY: 0.9}},
                       "/p/crane.jpg": {4: {CRANE_MACHINE: 0.9}}}).dispose()
    for db in (library[1], apart):
        index = Index(str(db), thumbnail_folder=tmp_path / "thumbs")
        with TestClient(create_app(index), base_url="http://localhost") as other:
            examples = re.findall(r'<li><a href="/\?q=[^"]+">([^<]+)</a></li>', other.get("/").text)
        index.close()
        assert len(examples) >= 2, db
        engine = store.open_index(str(db), create=False, readonly=True)
        for text in examples:
            assert search.search(engine, text.replace("&#34;", '"'), limit=1).matches, (db, text)
        engine.dispose()
    page = client.get("/").text
    ran = []
    monkeypatch.setattr("serve.app.example_queries", lambda index: ran.append(1) or ["never shown"])
    assert client.get("/").text == page and ran == []  # kept while the index stays as it is
    empty = tmp_path / "empty.db"
    make_index(empty, {}).dispose()
    index = Index(str(empty), thumbnail_folder=tmp_path / "thumbs")
    monkeypatch.undo()
    with TestClient(create_app(index), base_url="http://localhost") as other:
        assert "For example" not in other.get("/").text  # nothing to show: no examples at all
    index.close()


def test_an_example_that_takes_too_long_to_check_is_left_out_not_waited_for(library, monkeypatch, tmp_path):
    """On a million photos a broad label takes seconds to find (issue 25, "Speed"): each check stops at its
    time (SQLite's progress handler, looked at every step here) and the start page goes without it."""
    monkeypatch.setattr("query.relax.CLOCK_STEPS", 1)
    monkeypatch.setattr("serve.app.EXAMPLE_CHECK_S", 0.0)
    index = Index(str(library[1]), thumbnail_folder=tmp_path / "thumbs")
    with TestClient(create_app(index), base_url="http://localhost") as other:
        page = other.get("/")
    index.close()
    assert page.status_code == 200 and "Search the photos" in page.text
    assert "For example" not in page.text


#: One metric of a Server-Timing header (W3C Server Timing): a name, its duration and its description.
SERVER_TIMING_METRIC = re.compile(r'([!#$%&\'*+.^_`|~0-9A-Za-z-]+);dur=(\d+(?:\.\d+)?);desc="([^"\\]*)"')


def server_timing(response) -> dict[str, float]:
    """The metrics of a response's Server-Timing header, each checked to be well-formed."""
    metrics = {}
    for entry in response.headers["server-timing"].split(", "):
        well_formed = SERVER_TIMING_METRIC.fullmatch(entry)
        assert well_formed, entry
        metrics[well_formed.group(1)] = float(well_formed.group(2))
    return metrics


@pytest.mark.parametrize("params", [
    {"q": "cat"}, {}, {"q": "cat & dog", "folder": "/a b", "n": "5", "min": "0.5", "offset": "96", "taken": "2019",
                       "after": "2018-02", "before": "2020", "sort": "oldest"}])
def test_a_card_links_its_photo_as_the_search_url_spells_it(params):
    """A card's photo link is made with the search's part encoded once per page: the same URL as `url`'s."""
    ask = SearchRequest.of(_Params(params))
    assert ask.photo_url(7, 3) == ask.url("/photo/7", rank=3, offset=0)


def test_search_pages_and_the_next_cards_say_what_the_library_took_in_server_timing(client):
    """A browser's developer tools show where a search's time went: the library's answer (query) apart from
    what the web layer added (waiting, copies, labels, cards, rendering); the bench pairs them per request."""
    phases = ["wait", "query", "copies", "labels", "cards", "render"]
    page = client.get("/", params={"q": "school bus", "n": 2})
    assert list(server_timing(page)) == phases
    assert all(ms >= 0 for ms in server_timing(page).values())
    more = re.search(r'data-next="([^"]+)"', page.text).group(1).replace("&amp;", "&")
    fragment = client.get(more)
    assert fragment.status_code == 200 and list(server_timing(fragment)) == phases
    nothing = client.get("/", params={"q": "crane AND tabby"})  # no match: still the library's time
    assert '<span class="count">no matches</span>' in nothing.text and list(server_timing(nothing)) == phases
    for not_searched in (client.get("/", params={"q": "AND"}), client.get("/"), client.get("/overview")):
        assert "server-timing" not in not_searched.headers


def test_a_file_that_failed_to_index_shows_its_failure_and_reason(client, library):
    photos, db = library
    broken = photos / "a" / "broken.jpg"
    broken.write_bytes(b"not a photo at all")
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        status = broken.stat()
        conn.execute(sa.text("UPDATE images SET content_hash = :h, size_bytes = :s, mtime_ns = :m, error = :e WHERE path = :p"), {
            "h": hashlib.sha256(broken.read_bytes()).hexdigest(), "s": status.st_size, "m": status.st_mtime_ns,
            "e": f"{broken}: cannot identify image file", "p": str(broken)})
    engine.dispose()
    image_id = ids_by_name(db)["broken.jpg"]
    page = client.get(f"/photo/{image_id}").text
    assert '<p class="message">This file failed when it was indexed: cannot identify image file</p>' in page
    assert "<img" not in page and 'id="frame"' not in page and 'name="mode"' not in page  # nothing broken, nothing dead
    assert f'<a id="original" href="/original/{image_id}">original file</a>' in page
    original = client.get(f"/original/{image_id}")
    assert original.status_code == 200 and original.content == b"not a photo at all"
    assert original.headers["content-disposition"] == "attachment; filename*=UTF-8''broken.jpg"
    thumbnail = client.get(f"/thumbnail/{image_id}/320")
    assert thumbnail.status_code == 404 and f"photo {image_id} failed when it was indexed: cannot identify image file" in thumbnail.text
    broken.unlink()  # gone since: the link is replaced by the reason
    page = client.get(f"/photo/{image_id}").text
    assert 'id="original"' not in page
    assert '<span id="original-note">the original file is not offered: no such file</span>' in page


def test_overlays_and_a_label_s_scores_work_as_pages_without_a_script(client, library):
    _, db = library
    cat = ids_by_name(db)["chelsea.jpg"]
    page = client.get(f"/photo/{cat}", params={"q": "school bus", "rank": 1}).text
    form = re.search(r'<form id="label-form" class="modes" action="([^"]+)" method="get"', page)
    assert form.group(1) == f"/photo/{cat}"  # a page, not the JSON of /api/scores
    assert '<input type="hidden" name="q" value="school bus">' in page and '<input type="hidden" name="rank" value="1">' in page
    classmap = client.get(f"/photo/{cat}", params={"q": "school bus", "rank": 1, "mode": "classmap"}).text
    assert 'data-mode="classmap"' in classmap and '<input type="radio" name="mode" value="classmap" checked>' in classmap
    heat = client.get(f"/photo/{cat}", params={"mode": "labels", "label": "school bus"}).text
    assert 'data-mode="heat"' in heat and 'value="school bus"' in heat
    assert re.search(r'<span class="cell h\d+" data-cell="center"><span class="tag">\d+%</span></span>', heat)
    assert "school bus: 1 class; each cell is tinted by the label's confidence there" in heat
    wrong = client.get(f"/photo/{cat}", params={"label": "dgo"}).text
    assert '<p id="label-result" class="note">unknown label &#39;dgo&#39;; did you mean dingo, dugong or dog?</p>' in wrong
    assert client.get(f"/photo/{cat}", params={"mode": "x"}).status_code == 400


def test_did_you_mean_offers_links_to_the_corrected_query(client):
    page = client.get("/", params={"q": "school bus AND dgo in center"}).text
    assert ('<p class="meant">Search instead for: <a href="/?q=school+bus+AND+dingo+in+center">dingo</a>, '
            '<a href="/?q=school+bus+AND+dugong+in+center">dugong</a>, <a href="/?q=school+bus+AND+dog+in+center">dog</a></p>'
            ) in page
    region = client.get("/", params={"q": "school bus in top lfet AND cat"}).text  # a region's spellings too
    assert '<p class="meant">Search instead for: <a href="/?q=school+bus+in+top+left+AND+cat">top left</a></p>' in region


def test_ranks_are_numbered_as_shown_when_copies_fold(client):
    page = client.get("/", params={"q": "school bus"}).text
    numbers = [int(n) for n in re.findall(r'<span class="rank">#(\d+)</span>', page)]
    assert numbers == list(range(1, 7))  # 7 matches, two of them copies shown once
    assert [c["rank"] for c in cards(page)] != numbers  # the matches' own ranks skip the folded copy


def test_the_photo_page_facts_read_as_text(client, library):
    _, db = library
    page = client.get(f"/photo/{ids_by_name(db)['chelsea.jpg']}").text
    assert re.search(r'<p class="links"><a id="original" href="/original/\d+">original file</a> · 451x300 px · '
                     r'indexed <time datetime="2025-01-01T00:00:00Z">1 Jan 2025, 00:00 UTC</time> with efficientnet-lite0 '
                     r'at size 448</p>', page)


def test_a_taken_port_says_how_to_get_a_free_one(library):
    _, db = library
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["serve", "--db", str(db), "--port", str(port)])
    assert result.exit_code == 1
    assert result.stderr == (f"Error: cannot listen on 127.0.0.1:{port}: Address already in use (another server has it: "
                             "--port 0 picks a free one)\n")


@pytest.mark.parametrize("change", ["replaced", "deleted"])
def test_an_index_replaced_or_deleted_while_serving_is_refused_not_served_stale(client, library, change, capsys):
    _, db = library
    assert client.get("/", params={"q": "school bus"}).status_code == 200
    if change == "replaced":
        other = db.with_name("rebuilt.db")
        shutil.copy(db, other)
        os.replace(other, db)
    else:
        db.unlink()
    for url in ("/", "/?q=school+bus", "/photo/1", "/original/1", "/overview"):
        answer = client.get(url)
        assert answer.status_code == 503, url
        assert (f"<p class=\"message\">the index {db} was {'deleted' if change == 'deleted' else 'replaced by another file'} "
                "while the server ran: restart imgidx serve to serve it again</p>") in answer.text
    assert client.get("/static/app.css").status_code == 200


def test_every_page_has_one_heading_and_photos_have_alt_text_of_their_labels(client, library):
    _, db = library
    ids = ids_by_name(db)
    for url in ("/", "/?q=school+bus", "/?q=cat+AND+(", f"/photo/{ids['chelsea.jpg']}", f"/photo/{ids['broken.jpg']}",
                "/overview", "/no/such/page"):
        assert len(re.findall(r"<h1[ >]", client.get(url).text)) == 1, url
    page = client.get("/", params={"q": "school bus AND flowerpot"}).text
    assert re.findall(r'<img src="[^"]+" width="\d+" height="\d+" alt="([^"]*)"', page) == ["school bus, tabby, pot"]
    photo = client.get(f"/photo/{ids['chelsea.jpg']}").text
    assert re.search(r'<img src="/thumbnail/[^"]+" width="\d+" height="\d+" alt="(school bus|tabby), (school bus|tabby), pot">', photo)
    # one tab stop per card: the picture's link; the name and folder links are reached by pointer only
    for block in re.findall(r'<li class="card".*?</li>\n', client.get("/", params={"q": "school bus"}).text, re.S):
        focusable = re.findall(r"<(?:a|button|input|select|textarea)\b[^>]*>", block)
        assert len([tag for tag in focusable if 'tabindex="-1"' not in tag]) == 1, block


def _luminance(colour: str) -> float:
    digits = colour.lstrip("#")
    if len(digits) == 3:
        digits = "".join(d * 2 for d in digits)
    channels = [int(digits[i:i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(one: str, other: str) -> float:
    """The WCAG contrast ratio of two colours."""
    light, dark = sorted((_luminance(one), _luminance(other)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_muted_text_has_enough_contrast_on_every_background():
    from importlib import resources

    css = resources.files("serve").joinpath("static", "app.css").read_text()
    colours = dict(re.findall(r"--(\w+): (#[0-9a-f]{3,6});", re.search(r":root \{([^}]*)\}", css).group(1)))
    for background in (colours["bg"], colours["card"], "#fff"):  # the page, a card, the stored grid's cells
        assert contrast(colours["muted"], background) >= 4.5, background
    note = re.search(r"\.note \{ color: (#[0-9a-f]+); background: (#[0-9a-f]+);", css)
    assert contrast(*note.groups()) >= 4.5


class CountingCollector:
    """Stands in for `serve.collector.Collector`: counts the requests the app is sent."""

    def __init__(self):
        self.requests = 0

    def request_started(self) -> None:
        self.requests += 1

    def request_ended(self) -> None:
        pass


def test_a_server_is_warm_before_it_says_where_it_serves(library, tmp_path):
    """The start page's examples are found, and the first of them searched and paged, before the first request:
    a new server's first search no longer pays for the first connection, rendering and compilation."""
    photos, db = library
    index = Index(str(db), thumbnail_folder=tmp_path / "thumbs")
    counting = CountingCollector()
    app = create_app(index, collector=counting)
    assert index._examples is None and not index._prepared
    server.warm_up(app, "localhost", index)
    examples = index._examples[1]
    assert examples and [key[0] for key in index._prepared] == examples[:1]
    assert counting.requests == 3  # the start page, the example's page and its next cards
    index.close()


def test_a_server_logs_only_the_requests_it_was_sent(library, tmp_path):
    photos, db = library
    process = start_server(db, tmp_path / "cache", "--port", "0")
    try:
        first = process.stderr.readline()  # the warm-up's requests are not logged
        assert first.startswith("serving "), first
        port = int(re.search(r":(\d+)/", first).group(1))
        assert raw_get(port, "/?q=cat").startswith("HTTP/1.1 200")
        assert re.fullmatch(r"imgidx serve: GET /\?q=cat 200 \d+ ms\n", process.stderr.readline())
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)


def test_serving_leaves_the_callers_logging_as_it_was(monkeypatch):
    """`server.run` routes its and uvicorn's lines through its own handler only while it serves: after it
    returns, or fails before serving, the loggers propagate and hold handlers as before."""
    loggers = [logging.getLogger("imgidx.serve"), logging.getLogger("uvicorn")]
    before = [(each.propagate, list(each.handlers)) for each in loggers]

    def fail(*args):
        raise RuntimeError("no index")

    monkeypatch.setattr(server, "_serve", fail)
    with pytest.raises(RuntimeError, match="no index"):
        server.run(None, None)
    assert [(each.propagate, list(each.handlers)) for each in loggers] == before
