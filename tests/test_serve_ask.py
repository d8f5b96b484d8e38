"""`imgidx serve`, issue 25's new pages: the label browser, help to ask (grammar completion, the picker's
rewrite, looser queries for a search that found nothing) and select-and-download (originals and redacted
copies as a zip), through Starlette's test client over real SQLite indexes of real photo files (the
fixtures of tests/test_serve.py). The picker and slider in Chromium: tests/test_serve_ask_browser.py."""

from __future__ import annotations

import hashlib
import io
import re
import threading
import time
import zipfile
from pathlib import Path

import pytest
import sqlalchemy as sa
from PIL import Image, ImageChops, ImageStat

from test_serve import PATIENCE_S, TestClient, cards, client, copy_photo, ids_by_name, library, real_index  # noqa: F401 (fixtures)
from indexer import store
from indexer.labels import FACE_CLASS, object_class, COCO_CLASSES
from query import DEFAULT_MIN_SCORE, catalog, search
from query.relax import COUNT_CAP
from query_helpers import FLOWERPOT, TABBY, TIGER_CAT
from serve.app import Index, create_app

ORIGIN = {"origin": "http://localhost"}
CUP = object_class(COCO_CLASSES.index("cup"))
#: The face box of the faces library's chelsea.jpg, in pixels of the photo (451x300).
FACE_BOX = (150, 40, 250, 140)


def zip_entries(response) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def tree_state(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``folder``: its content hash and mtime, to show nothing was written there."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def faces_client(tmp_path, monkeypatch):
    """Photos with faces, cats and a cup, two of the same name in two folders; the cat photo has one face box."""
    monkeypatch.setenv("IMGIDX_CACHE_DIR", str(tmp_path / "cache"))
    photos = tmp_path / "photos"
    copy_photo("chelsea.jpg", photos / "a" / "chelsea.jpg")
    copy_photo("coffee.jpg", photos / "a" / "coffee.jpg")
    copy_photo("astronaut.jpg", photos / "b" / "coffee.jpg")
    db = real_index(photos, {
        "a/chelsea.jpg": {4: {TABBY: 0.9, FACE_CLASS: 0.9}},
        "a/coffee.jpg": {0: {TIGER_CAT: 0.9}, 8: {CUP: 0.8}},
        "b/coffee.jpg": {4: {FACE_CLASS: 0.7, TIGER_CAT: 0.6}},
    })
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        cat = conn.execute(sa.text("SELECT image_id FROM images WHERE path LIKE '%chelsea.jpg'")).scalar_one()
        conn.execute(sa.text("INSERT INTO boxes VALUES (:i, 0, :c, :x0, :y0, :x1, :y1, 0.95)"),
                     {"i": cat, "c": FACE_CLASS, "x0": FACE_BOX[0], "y0": FACE_BOX[1], "x1": FACE_BOX[2], "y1": FACE_BOX[3]})
    engine.dispose()
    index = Index(str(db), thumbnail_folder=tmp_path / "cache" / "thumbnails")
    with TestClient(create_app(index), base_url="http://localhost") as test_client:
        test_client.index = index
        test_client.photos = photos
        test_client.db = db
        yield test_client
    index.close()


# ------------------------------------------------------------------------------------------- label browser


def label_rows(html: str) -> list[tuple[str, str, int, str]]:
    """(group heading, label, photos, link) of each label on the label page."""
    found = []
    for section in re.findall(r'<section class="label-group".*?</section>', html, re.S):
        heading = re.sub(r"<[^>]+>", "", re.search(r"<h2>(.*?)</h2>", section).group(1))
        for url, name, count in re.findall(
                r'<li class="label-item"><a href="([^"]+)"><img [^>]*><span class="name">([^<]+)</span></a> '
                r'<span class="count">([\d,]+)</span>', section):
            found.append((heading, name, int(count.replace(",", "")), url.replace("&amp;", "&")))
    return found


def test_the_label_browser_lists_every_label_with_its_photos_grouped_and_linked(faces_client):
    page = faces_client.get("/labels")
    assert page.status_code == 200
    rows = label_rows(page.text)
    # grouped: the face detector's, the object detector's, then ImageNet's under their closest common ancestor
    assert [(heading.split(" › ")[-1], name, photos, url) for heading, name, photos, url in rows] == [
        ("faces", "face", 2, "/?q=face"),
        ("objects (COCO)", "cup", 1, "/?q=cup"),
        ("domestic cat", "tiger cat", 2, "/?q=tiger+cat"),
        ("domestic cat", "tabby", 1, "/?q=tabby"),
    ]
    assert " › cat › " in rows[-1][0]  # the broader ancestors above the group, linked
    engine = store.open_index(str(faces_client.db), create=False, readonly=True)
    for _, name, photos, _ in rows:  # a label's count is what its search finds (these names are one class each)
        assert search.search(engine, name, limit=None).total == photos
    engine.dispose()
    thumbs = re.findall(r'<img src="(/thumbnail/\d+/\d+\?v=[0-9a-f]+)" alt="([^"]+)"', page.text)
    assert len(thumbs) == 4 and all(faces_client.get(url).status_code == 200 for url, _ in thumbs)
    assert '<a href="/labels">Labels</a>' in faces_client.get("/").text


def test_label_counts_are_made_once_per_index_state(faces_client, monkeypatch):
    made = []
    real = catalog.catalog
    monkeypatch.setattr(catalog, "catalog", lambda *args, **kwargs: made.append(1) or real(*args, **kwargs))
    for _ in range(3):
        assert faces_client.get("/labels").status_code == 200
        faces_client.get("/api/complete", params={"text": "ta"})
        faces_client.get("/", params={"q": "tabby"})
    assert len(made) == 1


def test_label_counts_are_made_again_when_the_index_changes_and_say_so_until_then(faces_client, monkeypatch):
    from serve import labels as label_pages

    assert [name for _, name, _, _ in label_rows(faces_client.get("/labels").text)] == ["face", "cup", "tiger cat", "tabby"]
    monkeypatch.setattr(label_pages, "STATE_CHECK_S", 0.0)
    engine = sa.create_engine(f"sqlite:///{faces_client.db}")
    with engine.begin() as conn:  # an index run adds a flowerpot
        conn.execute(sa.text("INSERT INTO image_labels SELECT image_id, :c, 0.9, 0.1 FROM images WHERE path LIKE '%chelsea.jpg'"),
                     {"c": FLOWERPOT})
    engine.dispose()
    monkeypatch.setattr(label_pages, "WAIT_S", 0.0)
    made = threading.Event()
    real = catalog.catalog
    monkeypatch.setattr(catalog, "catalog", lambda *args: (made.wait(PATIENCE_S), real(*args))[1])
    stale = label_rows(faces_client.get("/labels").text)  # the last catalog, while the new one is made
    assert [name for _, name, _, _ in stale] == ["face", "cup", "tiger cat", "tabby"]
    made.set()
    deadline = time.monotonic() + PATIENCE_S
    while '<span class="name">pot</span>' not in faces_client.get("/labels").text:  # flowerpot's class name
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_the_label_page_says_it_is_counting_until_the_first_counts(faces_client, monkeypatch):
    from serve import labels as label_pages

    monkeypatch.setattr(label_pages, "WAIT_S", 0.0)
    made = threading.Event()
    real = catalog.catalog
    monkeypatch.setattr(catalog, "catalog", lambda *args: (made.wait(PATIENCE_S), real(*args))[1])
    page = faces_client.get("/labels").text
    assert '<meta http-equiv="refresh" content="5">' in page and 'id="counting"' in page
    made.set()


# ------------------------------------------------------------------------------------------- completion


def completion(client, text: str) -> dict:
    return client.get("/api/complete", params={"text": text}).json()


def test_completion_knows_the_grammar(client):
    assert completion(client, "cat in top-") == {"start": 7, "names": ["top-left", "top-center", "top-right"]}
    assert completion(client, "cat in the bottom r") == {"start": 11, "names": ["bottom-right", "bottom row"]}
    assert completion(client, "cat l") == {"start": 4, "names": ["left of", "left column"]}
    assert completion(client, "cat left o") == {"start": 4, "names": ["left of"]}
    assert completion(client, "dog a") == {"start": 4, "names": ["above", "anywhere", "AND"]}
    assert completion(client, "cat AND n")["names"][-1] == "NOT"
    # a longer label wins over the grammar's words, as before
    assert completion(client, "school b") == {"start": 0, "names": ["school bus"]}


def test_labels_are_offered_by_how_often_they_occur_in_this_index(client):
    before = completion(client, "dog AND ta")
    assert before["start"] == 8 and before["names"][0] == "tank" and "tabby" in before["names"][1:]  # shortest first
    assert client.get("/labels").status_code == 200  # counted (once, in the background; this waits for it)
    after = completion(client, "dog AND ta")
    # tabby (by either name) is in two photos: first; the others as before, shortest first
    assert after == {"start": 8, "names": ["tabby", "tabby cat"] + [n for n in before["names"] if n != "tabby"][:6]}


# ------------------------------------------------------------------------------------------- picker


def test_the_picker_rewrites_one_term_of_the_text(client):
    text = "school bus AND (tabby OR flowerpot) in center"
    terms = client.get("/api/terms", params={"text": text}).json()["terms"]
    assert [(t["label"], t["cells"], t["editable"]) for t in terms] == [
        ("school bus", list(range(9)), True), ("tabby", [4], False), ("flowerpot", [4], False)]

    def rewrite(**params):
        return client.get("/api/rewrite", params={"text": text, **params})

    assert rewrite(term=0, cells="0").json() == {"text": "school bus in top-left AND (tabby OR flowerpot) in center"}
    assert rewrite(term=0, cells="0,1,2", threshold="0.55").json() == {
        "text": "school bus in top row >= 0.55 AND (tabby OR flowerpot) in center"}
    assert rewrite(term=0, cells="").json() == {"text": text}
    assert rewrite(term=0, cells="0,8").status_code == 400  # two cells apart: no region
    assert rewrite(term=1, cells="0").status_code == 400  # its region is its group's
    assert client.get("/api/rewrite", params={"text": "cat >= 0.5", "term": 0, "cells": "", "threshold": ""}).json() == {
        "text": "cat"}


def test_the_picker_names_a_quoted_label_and_a_text_term_as_the_query_spells_them(client):
    terms = client.get("/api/terms", params={"text": "'school bus' AND \"exit\" in top-left"}).json()["terms"]
    assert [t["label"] for t in terms] == ["'school bus'", '"exit"']


# ------------------------------------------------------------------------------------------- relaxed


def test_no_matches_offers_looser_queries_that_match_with_their_counts(client, library):
    _, db = library
    text = "school bus in top-left AND tabby"
    search_page = client.get("/", params={"q": text}).text
    assert '<span class="count">no matches</span>' in search_page
    # counted on a page of their own: the search page links it (and its script fetches the list in place)
    assert re.search(r'<section class="relaxed" id="relaxed" data-src="/looser\?q=[^"]+&amp;fragment=1">\s*'
                     r'<p><a href="/looser\?q=school\+bus\+in\+top-left\+AND\+tabby">', search_page)
    fragment = client.get("/looser", params={"q": text, "fragment": "1"})
    assert fragment.status_code == 200 and "<html" not in fragment.text
    page = client.get("/looser", params={"q": text})
    assert "<h1>Looser queries than “school bus in top-left AND tabby”</h1>" in page.text
    offered = [(text.replace("&amp;", "&"), change, int(count), bool(more)) for _, text, change, count, more in re.findall(
        r'<li><a href="([^"]+)">([^<]+)</a> <span class="change">([^<]+)</span>: <span class="count">(\d+)( or more)? match',
        page.text)]
    assert offered == [
        ("school bus AND tabby", "&#39;school bus&#39; anywhere", 2, False),
    ]
    # the counts are the searches' own
    engine = store.open_index(str(db), create=False, readonly=True)
    assert search.search(engine, "school bus AND tabby", limit=None).total == 2
    for nothing in ("school bus in top row AND tabby", "school bus in left column AND tabby"):
        assert search.search(engine, nothing, limit=None).total == 0  # tried, found nothing, not offered
    engine.dispose()
    page = client.get("/looser", params={"q": "school bus in top-left"})
    assert [(t, c, int(n)) for t, c, n in re.findall(
        r'<a href="[^"]+">([^<]+)</a> <span class="change">([^<]+)</span>: <span class="count">(\d+)', page.text)] == [
        ("school bus", "&#39;school bus&#39; anywhere", 7), ("school bus in top row", "&#39;school bus&#39; in the top row", 1)]


def test_a_lower_threshold_is_offered_with_its_minimum_score(client):
    lower = DEFAULT_MIN_SCORE / 2
    page = client.get("/looser", params={"q": "crane > 0.99"})
    assert re.findall(r'<a href="([^"]+)">([^<]+)</a> <span class="change">([^<]+)</span>: <span class="count">(\d+)',
                      page.text) == [(f"/?q=crane+%3E%3D+0.495&amp;min={lower:g}", "crane &gt;= 0.495",
                                      f"confidence {lower:.0%} or more (--min-score {lower:g})", "1")]


def test_relaxed_counts_stop_at_their_cap(client, monkeypatch):
    from query import relax

    monkeypatch.setattr(relax, "COUNT_CAP", 2)
    page = client.get("/looser", params={"q": "school bus in bottom-left", "fragment": "1"})
    assert re.findall(r'<a href="[^"]+">([^<]+)</a>.*?<span class="count">(\d+)( or more)?', page.text) == [
        ("school bus", "2", " or more")]
    assert COUNT_CAP == 100


# ------------------------------------------------------------------------------------------- download


def message(response) -> tuple[int, str]:
    """The status and the one-line message of an error page."""
    return response.status_code, re.search(r'<p class="message">(.*?)</p>', response.text).group(1)


def download(client, headers=ORIGIN, **fields):
    body = [(k, v) for k, values in fields.items() for v in (values if isinstance(values, list) else [values])]
    return client.post("/download", data=dict(body) if len(body) == len(fields) else body, headers=headers)


def test_ticked_photos_download_as_a_zip_of_the_originals_with_unique_names(faces_client):
    before = tree_state(faces_client.photos)
    engine = sa.create_engine(f"sqlite:///{faces_client.db}")
    with engine.connect() as conn:
        by_path = {path: image_id for image_id, path in conn.execute(sa.text("SELECT image_id, path FROM images"))}
    engine.dispose()
    picked = [by_path[str(faces_client.photos / p)] for p in ("a/coffee.jpg", "b/coffee.jpg", "a/chelsea.jpg")]
    response = faces_client.post("/download", content="&".join(f"id={i}" for i in picked) + "&q=",
                                 headers={**ORIGIN, "content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"] == 'attachment; filename="imgidx-photos.zip"'
    assert zip_entries(response) == {
        "coffee.jpg": (faces_client.photos / "a/coffee.jpg").read_bytes(),
        "coffee (2).jpg": (faces_client.photos / "b/coffee.jpg").read_bytes(),
        "chelsea.jpg": (faces_client.photos / "a/chelsea.jpg").read_bytes(),
    }
    assert tree_state(faces_client.photos) == before


def test_the_results_are_a_form_without_javascript(client):
    page = client.get("/", params={"q": "school bus"}).text
    assert '<div id="ask" class="ask" hidden' in page  # the picker needs the script; the text box does not
    assert '<form id="selection" class="selection" method="post" action="/download">' in page
    ticks = re.findall(r'<input type="checkbox" form="selection" name="id" value="(\d+)"[^>]* tabindex="-1">', page)
    assert ticks == [str(card["id"]) for card in cards(page)] and len(ticks) == 6
    assert '<input type="hidden" name="q" value="school bus">' in page


def test_all_matches_download_and_a_photo_gone_is_named_in_the_zip(client, library):
    photos, _ = library
    response = download(client, q="school bus", all="1")
    entries = zip_entries(response)
    assert sorted(entries) == ["SKIPPED.txt", "astronaut.jpg", "chelsea-copy.jpg", "chelsea.jpg", "coffee.jpg",
                               "script>.jpg", "turned.jpg"]
    assert entries["SKIPPED.txt"].decode() == f"{photos / 'a' / 'gone.jpg'}: no such file\n"


def test_a_download_must_come_from_the_apps_own_page(faces_client):
    ids = sorted(ids_by_name(faces_client.db).values())
    for headers, status in (({}, 403), ({"origin": "http://evil.example"}, 403), ({"origin": "null"}, 403),
                            ({"origin": "http://localhost:8765"}, 403), ({"sec-fetch-site": "cross-site"}, 403),
                            ({"sec-fetch-site": "same-origin"}, 200), (ORIGIN, 200)):
        assert download(faces_client, headers=headers, id=str(ids[0])).status_code == status, headers
    assert faces_client.get("/download").status_code == 405
    assert "this address only answers POST" in faces_client.get("/download").text
    assert message(download(faces_client)) == (400, "no photo selected: tick the photos to download, or all matches")
    assert message(download(faces_client, id="x")) == (400, "a photo id is a number")
    assert message(download(faces_client, id="12345")) == (400, "none of the selected photos is in the index (any more)")
    assert message(download(faces_client, id=str(ids[0]), kind="raw")) == (
        400, "kind must be one of originals, faces, labels, not raw")
    assert message(download(faces_client, headers={})) == (403, "a download starts only from this server&#39;s own page")


def test_redacted_copies_blur_the_faces_into_the_zip_never_next_to_the_originals(faces_client):
    before = tree_state(faces_client.photos)
    engine = sa.create_engine(f"sqlite:///{faces_client.db}")
    with engine.connect() as conn:
        ids = [i for (i,) in conn.execute(sa.text("SELECT image_id FROM images ORDER BY path"))]
    engine.dispose()
    response = faces_client.post("/download", content="&".join(f"id={i}" for i in ids) + "&kind=faces",
                                 headers={**ORIGIN, "content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200, response.text
    entries = zip_entries(response)
    assert sorted(entries) == ["a/chelsea.jpg", "a/coffee.jpg", "b/coffee.jpg"]  # below the indexed folder, as the CLI
    original = Image.open(faces_client.photos / "a/chelsea.jpg").convert("L")
    copy = Image.open(io.BytesIO(entries["a/chelsea.jpg"])).convert("L")
    difference = ImageChops.difference(original, copy)
    inside = ImageStat.Stat(difference.crop(FACE_BOX)).mean[0]
    outside = ImageStat.Stat(difference.crop((300, 150, 450, 300))).mean[0]
    assert inside > 5 and outside < 2  # the face blurred, the rest re-encoded only
    plain = Image.open(io.BytesIO(entries["a/coffee.jpg"])).convert("L")  # no face box: nothing covered
    assert ImageStat.Stat(ImageChops.difference(plain, Image.open(faces_client.photos / "a/coffee.jpg").convert("L"))).mean[0] < 2
    assert tree_state(faces_client.photos) == before


def test_redacting_a_label_that_needs_the_model_is_refused_in_one_line(faces_client):
    ids = sorted(ids_by_name(faces_client.db).values())
    assert message(download(faces_client, q="tabby", kind="labels", id=str(ids[0]))) == (400, (
        "redacting &#39;tabby&#39; here would run a model (an ImageNet label&#39;s class map, or a photo changed since "
        "it was indexed): use imgidx redact"))


# ------------------------------------------------------------------------------------------- both backends


def test_label_counts_and_looser_queries_on_either_database(index_url):
    """The catalog's and the looser queries' SQL on SQLite and PostgreSQL alike, checked against searches."""
    from query import relax
    from query_helpers import make_index

    engine = make_index(index_url, {"/p/a.jpg": {4: {TABBY: 0.9}}, "/p/b.jpg": {0: {TABBY: 0.8, TIGER_CAT: 0.9}},
                                    "/p/c.jpg": {8: {TIGER_CAT: 0.1}}})
    t = store.tables(engine)
    with engine.begin() as conn:
        conn.execute(t.image_labels.update().values(share=0.1))  # make_index stored each class's best cell
    with engine.connect() as conn:
        calibration = store.read_calibration(conn)
        found = catalog.catalog(conn, t, calibration)
        assert [(g.name, [(e.name, e.photos) for e in g.entries]) for g in found.groups] == [
            ("domestic cat", [("tabby", 2), ("tiger cat", 1)])]
        looser = relax.relaxed(conn, "tiger cat in center", DEFAULT_MIN_SCORE, t, calibration)
        assert ([(r.text, r.matches) for r in looser.found], looser.untried) == ([("tiger cat", 1)], 0)
        for text in ("tabby", "tiger cat"):
            assert search.search(conn, text, limit=None).total == dict(
                (e.name, e.photos) for e in found.entries)[text]
        assert relax.count(conn, "tabby", DEFAULT_MIN_SCORE, t, calibration, cap=1) == 1
    from serve.labels import CatalogCache

    cache = CatalogCache(engine, t, calibration, lambda: False)  # the index's state, per database
    assert cache.current(wait=PATIENCE_S).counts_by_name() == {"tabby": 2, "tiger cat": 1}
    state = cache.state()
    with engine.begin() as conn:
        conn.execute(t.images.insert(), {"image_id": 9, "path": "/p/d.jpg", "size_bytes": 1, "mtime_ns": 0,
                                         "indexed_at": "2025-01-02T00:00:00Z", "error": "unreadable"})
    assert cache.state() != state
    engine.dispose()


def test_looser_queries_of_a_broken_query_or_of_nothing(client):
    assert message(client.get("/looser", params={"q": "cat in"})) == (400, "column 7: expected a region after &#39;in&#39;")
    assert client.get("/looser", params={"q": "zebra in top-left"}).text.count("No looser query finds a photo") == 1
    assert "<p class=\"note\" role=\"alert\">" in client.get("/looser", params={"q": "cat in", "fragment": "1"}).text


def test_looser_queries_stop_when_their_time_is_up(client, monkeypatch):
    from query import relax

    assert len(relax.candidates("school bus in top-left AND tabby in bottom-right", DEFAULT_MIN_SCORE)) == relax.MAX_CANDIDATES
    monkeypatch.setattr(relax, "BUDGET_S", -1.0)
    page = client.get("/looser", params={"q": "school bus in top-left"}).text
    assert "No looser query counted in time found a photo (4 not tried)." in page


def test_a_count_running_past_its_deadline_is_stopped_and_left_untried(index_url):
    """A looser query's count that would take long is cut at the deadline, on SQLite and PostgreSQL alike,
    and the connection serves the next statement."""
    from query import relax
    from query_helpers import make_index

    engine = make_index(index_url, {"/p/a.jpg": {4: {TABBY: 0.9}}})
    long_count = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000000) "
                  "SELECT count(*) FROM n")
    with engine.connect() as conn:
        started = time.monotonic()
        with pytest.raises(sa.exc.OperationalError):
            with relax.stopping_at(conn, time.monotonic() + 0.2):
                conn.exec_driver_sql(long_count).scalar_one()
        assert time.monotonic() - started < PATIENCE_S / 10
        conn.rollback()
        assert conn.exec_driver_sql("SELECT 1").scalar_one() == 1
        t = store.tables(engine)
        calibration = store.read_calibration(conn)
        assert relax.count(conn, "tabby", DEFAULT_MIN_SCORE, t, calibration, deadline=time.monotonic() + 60) == 1
    engine.dispose()
