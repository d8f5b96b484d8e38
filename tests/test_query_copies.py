"""Identical photos at several paths: grouped in the library (`query.copies`), and what each output does."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from query import render
from query.copies import group_copies, photo_of
from query.search import Match, TermMatch, search
from query_helpers import FLOWERPOT, SCHOOL_BUS, make_index


def _match(rank: int, content_hash: str | None, image_id: int | None = None) -> Match:
    return Match(rank, image_id or rank, f"/p/{rank}.jpg", 4, 3, 1.0 / rank, (TermMatch(None, 0.5, ("center",)),), content_hash)


def test_copies_group_under_their_best_match_in_rank_order():
    matches = [_match(3, "a"), _match(1, "a"), _match(2, "b"), _match(5, None), _match(4, "a"), _match(6, None)]
    photos = group_copies(matches)
    assert [[m.rank for m in p.matches] for p in photos] == [[1, 3, 4], [2], [5], [6]]
    assert [p.best.rank for p in photos] == [1, 2, 5, 6]
    assert photos[0].paths == ["/p/1.jpg", "/p/3.jpg", "/p/4.jpg"] and photos[0].copies == 3
    assert {rank: p.best.rank for rank, p in photo_of(matches).items()} == {1: 1, 3: 1, 4: 1, 2: 2, 5: 5, 6: 6}
    assert group_copies([]) == []


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    """The same beach photo at three paths (the best-ranked one deleted since), and one other photo."""
    folder = tmp_path_factory.mktemp("copies")
    (folder / "2023").mkdir()
    beach = folder / "2023" / "beach.jpg"
    Image.new("RGB", (600, 400), "orange").save(beach, "JPEG")
    (folder / "backup-of-the-holidays").mkdir()
    backup = folder / "backup-of-the-holidays" / "beach.jpg"
    shutil.copyfile(beach, backup)
    gone = folder / "0-gone" / "beach.jpg"
    other = folder / "other.jpg"
    Image.new("RGB", (400, 400), "teal").save(other, "JPEG")
    scene = {4: {SCHOOL_BUS: 0.9}}
    paths = [str(gone), str(beach), str(backup)]
    engine = make_index(
        folder / "index.db",
        {**{p: scene for p in paths}, str(other): {4: {SCHOOL_BUS: 0.7}, 0: {FLOWERPOT: 0.5}}},
        copies={str(beach): str(gone), str(backup): str(gone)},
    )
    yield engine, paths, str(other)
    engine.dispose()


def test_a_search_carries_each_files_content_hash(copies):
    engine, paths, other = copies
    result = search(engine, "school bus")
    assert [m.path for m in result.matches] == [*paths, other]
    assert len({m.content_hash for m in result.matches[:3]}) == 1 and result.matches[3].content_hash not in (None, result.matches[0].content_hash)
    photos = group_copies(result.matches)
    assert [p.paths for p in photos] == [paths, [other]]


def test_text_outputs_keep_a_line_per_path_and_mark_the_copies(copies):
    engine, paths, other = copies
    result = search(engine, "school bus")
    rows = render.table(result).splitlines()
    width = min(len(paths[2]), render.PATH_COLUMN)  # a longer temporary folder (pytest-xdist's) passes the cap
    assert rows[1:5] == [
        f"1    90%  {paths[0]:<{width}}  school bus: center (90%)",
        f"2    90%  {paths[1]:<{width}}  same photo as #1",
        f"3    90%  {paths[2]}  same photo as #1",
        f"4    70%  {other:<{width}}  school bus: center (70%)",
    ]
    assert rows[5] == "4 matches"
    blocks = render.grids(result).split("\n\n")
    assert blocks[1:3] == [f"{rank}. 90%  {paths[rank - 1]}\n   same photo as #1" for rank in (2, 3)]
    assert len(blocks[3].splitlines()) == 9  # a grid of its own
    assert render.paths(result) == "".join(f"{p}\n" for p in [*paths, other])


def test_json_keeps_an_object_per_path_with_its_hash_and_copies(copies):
    engine, paths, other = copies
    objects = [json.loads(line) for line in render.json_lines(search(engine, "school bus"))]
    assert [(o["path"], o["copies"]) for o in objects] == [(paths[0], 3), (paths[1], 3), (paths[2], 3), (other, 1)]
    assert len({o["sha256"] for o in objects[:3]}) == 1 and objects[3]["sha256"] != objects[0]["sha256"]


def test_html_shows_one_card_per_photo_listing_its_paths(copies):
    engine, paths, other = copies
    page = render.html_page(search(engine, "school bus"))
    cards = page.split('<li class="match"')[1:]
    assert len(cards) == 2
    assert 'data-rank="1"' in cards[0] and 'data-copies="3"' in cards[0] and '<span class="copies">3 copies</span>' in cards[0]
    links = re.findall(r'<a class="path" href="([^"]+)">', cards[0])
    assert links == [Path(p).as_uri() for p in paths]
    # the best-ranked copy is gone: the picture comes from the next one, and the thumbnail links there
    assert '<img src="data:image/jpeg' in cards[0] and f'<a class="thumb" href="{Path(paths[1]).as_uri()}">' in cards[0]
    assert 'data-copies="1"' in cards[1] and "copies</span>" not in cards[1]
    assert "4 matches; 2 different photos, identical copies shown together" in page
    assert '<span class="part">backup-of-the-holidays/</span><wbr><span class="part">beach.jpg</span></a>' in cards[0]


def test_an_or_branch_that_did_not_match_is_left_out(copies):
    engine, paths, other = copies
    result = search(engine, "crane OR flower pot")
    assert [m.path for m in result.matches] == [other]
    assert render.table(result).splitlines()[1].endswith(f"{other}  flower pot: top-left (50%)")
    assert render.grids(result).split("\n\n")[0].splitlines()[-1] == "   2=flower pot: top-left (50%)"
    terms = re.findall(r'<ul class="terms">(.*?)</ul>', render.html_page(result))
    assert terms == ['<li><span class="n">2</span>flower pot: top-left (50%)</li>']
    assert json.loads(next(render.json_lines(result)))["terms"][0]["score"] is None  # JSON keeps every term
