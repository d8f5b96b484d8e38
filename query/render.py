"""Query results -> text: a table, 3x3 grids, JSON Lines, paths, or a self-contained HTML gallery."""

from __future__ import annotations

import base64
import html
import io
import json
import re
from pathlib import Path
from typing import Iterable

from indexer import boxes as box_rules
from indexer.calibration import JSON_DECIMALS, percent
from indexer.errors import ImageReadError
from indexer.geometry import CELL_NAMES
from indexer.names import printable, stored
from query.copies import Photo, group_copies, photo_of
from query.search import Match, Result, TermMatch

_REGION_OF_MASK = {
    0b000000111: "top row", 0b000111000: "middle row", 0b111000000: "bottom row",
    0b001001001: "left column", 0b010010010: "middle column", 0b100100100: "right column",
    0b111111111: "all cells",
}


def where(cells: tuple[str, ...]) -> str:
    """``center``, ``top-left, top-center``, or ``top row`` when the cells make up a whole row/column."""
    mask = sum(1 << CELL_NAMES.index(c) for c in cells)
    return _REGION_OF_MASK.get(mask, ", ".join(cells))


def term_names(result: Result) -> list[str]:
    """A short name per reported term: its label, with the region when two terms share a label."""
    specs = result.prepared.compiled.reported
    labels = [s.label for s in specs]
    return [s.label if labels.count(s.label) == 1 else s.term.describe() for s in specs]


def _hit_text(name: str, hit: TermMatch) -> str:
    return f"{name}: {where(hit.cells)} ({percent(hit.score)})"


def matched_terms(names: list[str], match: Match) -> list[tuple[int, str, TermMatch]]:
    """``(number, name, hit)`` of the reported terms that hold in ``match``: an OR branch that did not
    match is left out rather than shown as a dash."""
    return [(n, name, hit) for n, (name, hit) in enumerate(zip(names, match.terms), start=1) if hit.score is not None]


def _copy_note(match: Match, photo: Photo) -> str | None:
    """``same photo as #N`` for a match that is a later copy of a picture already listed (`query.copies`)."""
    return None if photo.best.rank == match.rank else f"same photo as #{photo.best.rank}"


def summary(result: Result) -> str:
    """``matches 1-20 of 3,244`` plus how to get the next page."""
    shown, total, offset = len(result.matches), result.total, result.offset
    if total is None:
        return f"no matches after the first {offset:,} (offset {offset:,} is past the end)"
    if total == 0:
        return "no matches"
    if shown == total and result.counted:
        return f"{total:,} match{'es' * (total != 1)}"
    first = offset + 1
    line = f"matches {first:,}-{offset + shown:,} of {'' if result.counted else 'more than '}{total:,}"
    if offset + shown < total or not result.counted:
        line += f" (next page: --offset {offset + shown})"
    return line


#: The widest the path column of `table` is padded to: a longer path overflows it rather than pad every row.
PATH_COLUMN = 72


def table(result: Result) -> str:
    """One line per match: rank, score, path, and where each term matched (or which match it is a copy of)."""
    names = term_names(result)
    photos = photo_of(result.matches)

    def matched(m: Match) -> str:
        return _copy_note(m, photos[m.rank]) or "; ".join(_hit_text(name, h) for _, name, h in matched_terms(names, m))

    rows = [(str(m.rank), percent(m.score), printable(m.path), matched(m)) for m in result.matches]
    lines = []
    if rows:
        header = ("#", "score", "path", "matched")
        widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(3)]
        widths[2] = min(widths[2], PATH_COLUMN)
        for row in [header, *rows]:
            lines.append(f"{row[0]:>{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}".rstrip())
    lines.append(summary(result))
    return "\n".join(lines)


_BOX = {
    True: dict(h="─", v="│", tl="┌", tm="┬", tr="┐", ml="├", mm="┼", mr="┤", bl="└", bm="┴", br="┘"),
    False: dict(h="-", v="|", tl="+", tm="+", tr="+", ml="+", mm="+", mr="+", bl="+", bm="+", br="+"),
}


def cell_marks(match: Match) -> list[str]:
    """Per cell, the numbers of the terms that matched there (``"1,3"``; empty where none did)."""
    marks: list[list[str]] = [[] for _ in CELL_NAMES]
    for number, hit in enumerate(match.terms, start=1):
        for cell in hit.cells:
            marks[CELL_NAMES.index(cell)].append(str(number))
    return [",".join(m) for m in marks]


def grid_lines(match: Match, unicode: bool = True) -> list[str]:
    """The 3x3 grid of one match; each cell shows the numbers of the terms that matched there."""
    texts = cell_marks(match)
    width = max(5, *(len(t) + 2 for t in texts))
    b = _BOX[unicode]

    def rule(left: str, mid: str, right: str) -> str:
        return left + mid.join([b["h"] * width] * 3) + right

    lines = [rule(b["tl"], b["tm"], b["tr"])]
    for row in range(3):
        lines.append(b["v"] + b["v"].join(texts[row * 3 + col].center(width) for col in range(3)) + b["v"])
        lines.append(rule(b["ml"], b["mm"], b["mr"]) if row < 2 else rule(b["bl"], b["bm"], b["br"]))
    return lines


def grids(result: Result, unicode: bool = True) -> str:
    """Each match as a heading, its grid with the matched cells numbered, and a legend; a later copy of a
    picture already drawn gets its heading and a note instead."""
    names = term_names(result)
    photos = photo_of(result.matches)
    blocks = []
    for m in result.matches:
        heading = f"{m.rank}. {percent(m.score)}  {printable(m.path)}"
        note = _copy_note(m, photos[m.rank])
        if note:
            blocks.append(f"{heading}\n   {note}")
            continue
        legend = "   ".join(f"{n}={_hit_text(name, h)}" for n, name, h in matched_terms(names, m))
        blocks.append("\n".join([heading, *("   " + line for line in grid_lines(m, unicode)), "   " + legend]))
    blocks.append(summary(result))
    return "\n\n".join(blocks)


def json_lines(result: Result) -> Iterable[str]:
    """One JSON object per match (per path): rank, path, sha256 of the file, copies (the matches printed
    with the same content, itself included), score, width, height, per term its score and cells, and the
    boxes the terms are about (what `--html` outlines)."""
    names = term_names(result)
    photos = photo_of(result.matches)
    for m in result.matches:
        yield json.dumps(
            {
                "rank": m.rank,
                "path": stored(m.path),
                "sha256": m.content_hash,
                "copies": photos[m.rank].copies,
                "score": round(m.score, JSON_DECIMALS),
                "width": m.width,
                "height": m.height,
                "taken": m.taken_at,
                "taken_source": m.taken_source,
                "terms": [
                    {
                        "term": name,
                        "label": h.spec.term.label,
                        "region": h.spec.region.name,
                        "score": None if h.score is None else round(h.score, JSON_DECIMALS),
                        "cells": list(h.cells),
                    }
                    for name, h in zip(names, m.terms)
                ],
                "boxes": [box_rules.as_json(box) for box in m.boxes],
            },
            ensure_ascii=False,
        )


def paths(result: Result, nul: bool = False) -> str:
    """The matched paths, one a line and escaped as all text is; or exact and NUL-terminated, for xargs -0
    (stray bytes as ``os.fsdecode`` gives them: print ``os.fsencode`` of it)."""
    if nul:
        return "".join(m.path + "\0" for m in result.matches)
    return "".join(printable(m.path) + "\n" for m in result.matches)


# ------------------------------------------------------------------------------------------------ HTML

THUMBNAIL_SIZE = 320

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; background: #fafafa; color: #222; }
h1 { font-size: 1.3em; } .query { font-family: ui-monospace, monospace; background: #eee; padding: 0 .3em; }
.terms-legend span, .terms li span.n { display: inline-block; min-width: 1.3em; text-align: center;
  background: #ffb300; border-radius: 3px; margin-right: .3em; font-weight: bold; }
ol.gallery { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: 1.2em; }
li.match { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: .6em; width: %(size)dpx; }
.thumb { position: relative; display: inline-block; vertical-align: top; line-height: 0; }
.thumb img, .thumb .missing { display: block; max-width: 100%%; }
.thumb .missing { background: #ccc; color: #444; line-height: 1.3; font-size: 12px; display: flex;
  align-items: center; justify-content: center; text-align: center; padding: 0 1em; box-sizing: border-box; }
.grid { position: absolute; inset: 0; display: grid; grid-template-columns: repeat(3, 1fr);
  grid-template-rows: repeat(3, 1fr); pointer-events: none; }
.cell { border: 1px dashed rgba(255, 255, 255, .7); display: flex; align-items: flex-start;
  justify-content: flex-end; line-height: 1; }
.cell.hit { background: rgba(255, 179, 0, .12); outline: 3px solid #ffb300; outline-offset: -3px;
  box-shadow: inset 0 0 0 4px rgba(0, 0, 0, .45); }
.cell .n { background: #ffb300; color: #000; font-weight: bold; font-size: 12px; padding: 2px 4px; }
.caption { margin-top: .5em; overflow-wrap: anywhere; } .rank { color: #888; } .score { font-weight: bold; }
.path .part { display: inline-block; max-width: 100%%; text-decoration: inherit; }
.paths, .terms { margin: .3em 0 0; padding: 0; list-style: none; } .terms { font-size: 13px; }
.copies { background: #e3e8f4; border-radius: 3px; padding: 0 .4em; font-size: 12px; }
.bbox { position: absolute; border: 2px solid #00e5ff; box-sizing: border-box; pointer-events: none; line-height: 1; }
.bbox.face { border-color: #ffeb3b; }
.bbox.text { border-color: #76ff03; }
.bbox span { position: absolute; left: -2px; bottom: 100%%; background: rgba(0, 0, 0, .65); color: #fff;
  font-size: 10px; padding: 1px 3px; white-space: nowrap; }
"""


def thumbnail_uri(path: str, size: int = THUMBNAIL_SIZE) -> str:
    """A ``data:image/jpeg;base64`` thumbnail of the file, decoded as the indexer decodes it (upright)."""
    from PIL import Image

    from indexer import images

    thumb = Image.fromarray(images.load(path, min_side=size).pixels)
    thumb.thumbnail((size, size))
    buffer = io.BytesIO()
    thumb.save(buffer, "JPEG", quality=82)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _file_url(path: str) -> str:
    try:
        return Path(path).as_uri()
    except ValueError:  # a relative path: no file URL for it
        return path


def _picture(photo: Photo, size: int) -> tuple[str, str]:
    """The thumbnail of the first copy that reads, and its path; else a placeholder (with the grid still
    drawn over it) naming why the best match did not read."""
    e = html.escape
    failure = None
    for m in photo.matches:
        try:
            return f'<img src="{thumbnail_uri(m.path, size)}" alt="{e(printable(Path(m.path).name))}">', m.path
        except ImageReadError as exc:  # moved, deleted or unreadable since indexing
            failure = failure or exc
    width, height = photo.best.width or 4, photo.best.height or 3
    placeholder = (
        f'<div class="missing" style="width:{size}px;aspect-ratio:{width}/{height}">'
        f"image not readable: {e(str(failure)[:200])}</div>"
    )
    return placeholder, photo.best.path


def _path_link(path: str) -> str:
    """A link to the original whose text wraps after a folder separator, not inside a name: each name with
    its "/" is one unbreakable box (`_CSS`), unless it alone is wider than the card."""
    parts = re.findall(r"[^/]*/|[^/]+$", printable(path))
    text = "<wbr>".join(f'<span class="part">{html.escape(part)}</span>' for part in parts)
    return f'<a class="path" href="{html.escape(_file_url(path))}">{text}</a>'


def _photo_html(photo: Photo, names: list[str], size: int) -> str:
    """One card: the picture with its grid, rank and score, every path it is kept at, the terms that hold."""
    e = html.escape
    m = photo.best
    cells = "".join(
        f'<div class="cell{" hit" if marks else ""}" data-cell="{name}">'
        + (f'<span class="n">{marks}</span>' if marks else "")
        + "</div>"
        for name, marks in zip(CELL_NAMES, cell_marks(m))
    )
    picture, shown = _picture(photo, size)
    picture += _boxes_html(m)
    copies = f' <span class="copies">{photo.copies} copies</span>' if photo.copies > 1 else ""
    paths = "".join(f"<li>{_path_link(path)}</li>" for path in photo.paths)
    terms = "".join(
        f'<li><span class="n">{n}</span>{e(_hit_text(name, hit))}</li>' for n, name, hit in matched_terms(names, m)
    )
    return (
        f'<li class="match" data-rank="{m.rank}" data-score="{m.score:.6f}" data-copies="{photo.copies}">'
        f'<a class="thumb" href="{e(_file_url(shown))}">{picture}<div class="grid">{cells}</div></a>'
        f'<div class="caption"><span class="rank">#{m.rank}</span> <span class="score">{percent(m.score)}</span>{copies}'
        f'<ul class="paths">{paths}</ul><ul class="terms">{terms}</ul></div></li>'
    )


def _boxes_html(m: Match) -> str:
    """The boxes of the match's terms (`Match.boxes`) outlined over its thumbnail, each with its label
    (`indexer.boxes.label`), placed in percent of the photo's size."""
    if not (m.boxes or m.texts) or not m.width or not m.height:
        return ""
    cards = []
    places = [box_rules.overlay(box, m.width, m.height) for box in m.boxes]
    places += [box_rules.text_overlay(line, m.width, m.height) for line in m.texts]
    for place in places:
        text = html.escape(place["label"])
        kind = " face" if place["face"] else " text" if place.get("text") else ""
        cards.append(
            f'<div class="bbox{kind}" title="{text}" style="left:{100 * place["left"]:.2f}%;'
            f'top:{100 * place["top"]:.2f}%;width:{100 * place["width"]:.2f}%;height:{100 * place["height"]:.2f}%">'
            f"<span>{text}</span></div>"
        )
    return "".join(cards)


def html_page(result: Result, size: int = THUMBNAIL_SIZE) -> str:
    """A page that needs nothing else: thumbnails are embedded, no scripts, every name escaped; identical
    copies make one card (`query.copies`)."""
    e = html.escape
    names = term_names(result)
    specs = result.prepared.compiled.reported
    legend = " ".join(f"<span>{n}</span>{e(s.describe())}" for n, s in enumerate(specs, start=1))
    photos = group_copies(result.matches)
    items = "\n".join(_photo_html(photo, names, size) for photo in photos)
    shown = summary(result)
    if len(photos) < len(result.matches):
        shown += f"; {len(photos):,} different photos, identical copies shown together"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>imgidx: {e(result.prepared.text)}</title><style>{_CSS % {'size': size}}</style></head>\n<body>"
        f'<h1>imgidx query <span class="query">{e(result.prepared.text)}</span></h1>'
        f'<p class="summary">{e(shown)}</p>'
        f'<p class="terms-legend">{legend}</p>\n<ol class="gallery">\n{items}\n</ol>\n</body></html>\n'
    )
