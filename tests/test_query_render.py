"""Renderers: table, grids, JSON Lines, paths, and the HTML gallery (escaping, embedded thumbnails)."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import pytest
from PIL import Image

from query import render
from query.search import search
from query_helpers import CRANE_MACHINE, FLOWERPOT, SCHOOL_BUS, make_index

EVIL = '<script>alert("pwned")<.jpg'


def _jpeg(path: Path, size: tuple[int, int], color: str, orientation: int | None = None) -> str:
    image = Image.new("RGB", size, color)
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    image.save(path, "JPEG", exif=exif.tobytes())
    return str(path)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    paths = {
        "wide": _jpeg(folder / "wide.jpg", (900, 600), "red"),
        "turned": _jpeg(folder / "turned.jpg", (900, 600), "blue", orientation=6),  # shown 600 wide, 900 high
        "evil": _jpeg(folder / EVIL, (300, 300), "green"),
        "gone": str(folder / "deleted.jpg"),
    }
    images = {
        paths["wide"]: {4: {SCHOOL_BUS: 0.8}, 0: {FLOWERPOT: 0.6}},
        paths["turned"]: {4: {SCHOOL_BUS: 0.7}, 1: {FLOWERPOT: 0.3}, 2: {FLOWERPOT: 0.4}},
        paths["evil"]: {4: {SCHOOL_BUS: 0.5}},
        paths["gone"]: {4: {SCHOOL_BUS: 0.4}, 8: {CRANE_MACHINE: 0.5}},
    }
    engine = make_index(folder / "index.db", images)
    yield engine, paths
    engine.dispose()


def test_table(photos):
    engine, paths = photos
    result = search(engine, "school bus in center AND flower pot", min_score=0.3)  # the turned pot's cells
    lines = render.table(result).splitlines()
    width = len(paths["turned"])
    assert lines[0] == f"#  score  {'path':<{width}}  matched"
    assert lines[1] == f"1    48%  {paths['wide']:<{width}}  school bus: center (80%); flower pot: top-left (60%)"
    assert lines[2] == f"2    28%  {paths['turned']}  school bus: center (70%); flower pot: top-center, top-right (40%)"
    assert lines[3] == "2 matches"


def test_table_summary_and_paging(photos):
    engine, _ = photos
    assert render.table(search(engine, "school bus", limit=2)).splitlines()[-1] == (
        "matches 1-2 of 4 (next page: --offset 2)"
    )
    assert render.table(search(engine, "school bus", limit=2, offset=2)).splitlines()[-1] == (
        "matches 3-4 of 4"
    )
    assert render.table(search(engine, "crane AND flower pot")) == "no matches"
    assert render.table(search(engine, "school bus", offset=9)) == (
        "no matches after the first 9 (offset 9 is past the end)"
    )


def test_where_names_whole_rows_and_columns():
    assert render.where(("top-left", "top-center", "top-right")) == "top row"
    assert render.where(("top-right", "center-right", "bottom-right")) == "right column"
    assert render.where(("top-left", "center")) == "top-left, center"


def test_same_label_twice_is_told_apart_by_region(photos):
    engine, _ = photos
    result = search(engine, "flower pot top-left OR flower pot top-right")
    assert render.term_names(result) == ["flower pot in top-left", "flower pot in top-right"]


def test_grid(photos):
    engine, paths = photos
    result = search(engine, "school bus in center AND flower pot", limit=1)
    assert render.grids(result).splitlines() == [
        f"1. 48%  {paths['wide']}",
        "   ┌─────┬─────┬─────┐",
        "   │  2  │     │     │",
        "   ├─────┼─────┼─────┤",
        "   │     │  1  │     │",
        "   ├─────┼─────┼─────┤",
        "   │     │     │     │",
        "   └─────┴─────┴─────┘",
        "   1=school bus: center (80%)   2=flower pot: top-left (60%)",
        "",
        "matches 1-1 of 2 (next page: --offset 1)",
    ]
    ascii_grid = render.grid_lines(result.matches[0], unicode=False)
    assert ascii_grid[:3] == ["+-----+-----+-----+", "|  2  |     |     |", "+-----+-----+-----+"]


def test_grid_cell_with_several_terms_widens():
    from query.search import Match, TermMatch

    match = Match(1, 1, "/x.jpg", 1, 1, 1.0, tuple(TermMatch(None, 1.0, ("center",)) for _ in range(4)))
    assert render.grid_lines(match)[3] == "│         │ 1,2,3,4 │         │"


def test_json_lines(photos):
    engine, paths = photos
    lines = list(render.json_lines(search(engine, "school bus in center AND NOT crane")))
    objects = [json.loads(line) for line in lines]
    assert [o["path"] for o in objects] == [paths["wide"], paths["turned"], paths["evil"]]
    assert objects[0] == {
        "rank": 1, "path": paths["wide"], "sha256": f"{1:064x}", "copies": 1, "score": 0.8, "width": 640, "height": 480,
        "taken": None, "taken_source": None,
        "terms": [{"term": "school bus", "label": "school bus", "region": "center", "score": 0.8, "cells": ["center"]}],
        "boxes": [],
    }
    assert objects[2]["path"].endswith(EVIL) and "<script>" in lines[2]  # JSON, not HTML: no entities


def test_paths(photos):
    engine, paths = photos
    result = search(engine, "flower pot")
    assert render.paths(result) == f"{paths['wide']}\n{paths['turned']}\n"
    assert render.paths(result, nul=True) == f"{paths['wide']}\0{paths['turned']}\0"
    assert render.paths(search(engine, "crane AND flower pot")) == ""


# ------------------------------------------------------------------------------------------ HTML

def _thumbnails(page: str) -> list[Image.Image]:
    return [
        Image.open(io.BytesIO(base64.b64decode(data)))
        for data in re.findall(r'src="data:image/jpeg;base64,([A-Za-z0-9+/=]+)"', page)
    ]


def test_html_is_self_contained_and_escaped(photos):
    engine, paths = photos
    page = render.html_page(search(engine, "school bus"))
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page  # no scripts of ours, and the file name is escaped
    assert html_escaped(EVIL) in page
    assert "&lt;script&gt;alert(&quot;pwned&quot;)&lt;.jpg" in page
    assert re.findall(r'(?:src|href)="(?!data:|file:)', page) == []  # nothing to fetch but the originals
    assert page.count('<li class="match"') == 4


def html_escaped(text: str) -> str:
    import html

    return html.escape(text)


def test_html_thumbnails_are_upright_jpegs(photos):
    engine, _ = photos
    page = render.html_page(search(engine, "school bus"))
    thumbs = _thumbnails(page)
    assert len(thumbs) == 3  # the deleted file gets a placeholder instead
    assert all(t.format == "JPEG" and max(t.size) <= render.THUMBNAIL_SIZE for t in thumbs)
    sizes = sorted(t.size for t in thumbs)
    assert (213, 320) in sizes and (320, 213) in sizes  # the EXIF-rotated photo is portrait
    assert re.search(r"image not readable: \S+: no such file</div>", page)


def test_html_marks_matched_cells_and_links_originals(photos):
    engine, paths = photos
    page = render.html_page(search(engine, "school bus in center AND flower pot"))
    first = page.split('<li class="match"')[1]
    hits = re.findall(r'<div class="cell hit" data-cell="([a-z-]+)"><span class="n">([0-9,]+)</span>', first)
    assert hits == [("top-left", "2"), ("center", "1")]
    assert first.count('class="cell"') == 7
    assert f'href="{Path(paths["wide"]).as_uri()}"' in first
    evil_page = render.html_page(search(engine, "school bus >= 0.5 AND NOT flower pot"))
    assert evil_page.count('<li class="match"') == 1
    url = Path(paths["evil"]).as_uri()
    assert url.endswith("/%3Cscript%3Ealert%28%22pwned%22%29%3C.jpg") and f'href="{url}"' in evil_page
