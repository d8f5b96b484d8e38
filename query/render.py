"""Query results -> text: a table, 3x3 grids, JSON Lines, paths, or a self-contained HTML gallery."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Iterable

from indexer.calibration import JSON_DECIMALS, percent
from indexer.errors import ImageReadError
from indexer.geometry import CELL_NAMES
from indexer.names import printable, stored
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
    return f"{name}: {where(hit.cells)} ({percent(hit.score)})" if hit.score is not None else f"{name}: -"


def summary(result: Result) -> str:
    """``matches 1-20 of 3,244`` plus how to get the next page."""
    shown, total, offset = len(result.matches), result.total, result.offset
    if total is None:
        return f"no matches after the first {offset:,} (offset {offset:,} is past the end)"
    if total == 0:
        return "no matches"
    if shown == total:
        return f"{total:,} match{'es' * (total != 1)}"
    first = offset + 1
    line = f"matches {first:,}-{offset + shown:,} of {total:,}"
    if offset + shown < total:
        line += f" (next page: --offset {offset + shown})"
    return line


def table(result: Result) -> str:
    """One line per match: rank, score, path, and where each term matched."""
    names = term_names(result)
    rows = [
        (str(m.rank), percent(m.score), printable(m.path), "; ".join(_hit_text(n, h) for n, h in zip(names, m.terms)))
        for m in result.matches
    ]
    lines = []
    if rows:
        header = ("#", "score", "path", "matched")
        widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(3)]
        widths[2] = min(widths[2], 72)
        for row in [header, *rows]:
            lines.append(f"{row[0]:>{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}".rstrip())
    lines.append(summary(result))
    return "\n".join(lines)


_BOX = {
    True: dict(h="─", v="│", tl="┌", tm="┬", tr="┐", ml="├", mm="┼", mr="┤", bl="└", bm="┴", br="┘"),
    False: dict(h="-", v="|", tl="+", tm="+", tr="+", ml="+", mm="+", mr="+", bl="+", bm="+", br="+"),
}


def grid_lines(match: Match, unicode: bool = True) -> list[str]:
    """The 3x3 grid of one match; each cell shows the numbers of the terms that matched there."""
    marks = [[] for _ in range(9)]
    for number, hit in enumerate(match.terms, start=1):
        for cell in hit.cells:
            marks[CELL_NAMES.index(cell)].append(str(number))
    texts = [",".join(m) for m in marks]
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
    """Each match as a heading, its grid with the matched cells numbered, and a legend."""
    names = term_names(result)
    blocks = []
    for m in result.matches:
        legend = "   ".join(f"{n}={_hit_text(name, h)}" for n, (name, h) in enumerate(zip(names, m.terms), start=1))
        blocks.append("\n".join([f"{m.rank}. {percent(m.score)}  {printable(m.path)}", *("   " + line for line in grid_lines(m, unicode)), "   " + legend]))
    blocks.append(summary(result))
    return "\n\n".join(blocks)


def json_lines(result: Result) -> Iterable[str]:
    """One JSON object per match: rank, path, score, width, height, and per term its score and cells."""
    names = term_names(result)
    for m in result.matches:
        yield json.dumps(
            {
                "rank": m.rank,
                "path": stored(m.path),
                "score": round(m.score, JSON_DECIMALS),
                "width": m.width,
                "height": m.height,
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
.cell.hit { background: rgba(255, 179, 0, .35); outline: 3px solid #ffb300; outline-offset: -3px; }
.cell .n { background: #ffb300; color: #000; font-weight: bold; font-size: 12px; padding: 2px 4px; }
.caption { margin-top: .5em; word-break: break-all; } .rank { color: #888; } .score { font-weight: bold; }
.terms { margin: .3em 0 0; padding: 0; list-style: none; font-size: 13px; }
.face { position: absolute; border: 2px solid #ffeb3b; box-sizing: border-box; pointer-events: none; }
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


def _match_html(m: Match, names: list[str], size: int) -> str:
    e = html.escape
    marks = [[] for _ in range(9)]
    for number, hit in enumerate(m.terms, start=1):
        for cell in hit.cells:
            marks[CELL_NAMES.index(cell)].append(str(number))
    cells = "".join(
        f'<div class="cell{" hit" if marks[c] else ""}" data-cell="{CELL_NAMES[c]}">'
        + (f'<span class="n">{",".join(marks[c])}</span>' if marks[c] else "")
        + "</div>"
        for c in range(9)
    )
    try:
        picture = f'<img src="{thumbnail_uri(m.path, size)}" alt="{e(printable(Path(m.path).name))}">'
    except ImageReadError as exc:  # a moved, deleted or unreadable original still gets its grid
        width, height = m.width or 4, m.height or 3
        picture = (
            f'<div class="missing" style="width:{size}px;aspect-ratio:{width}/{height}">'
            f"image not readable: {e(str(exc)[:200])}</div>"
        )
    url = e(_file_url(m.path))
    picture += _faces_html(m)
    terms = "".join(
        f'<li><span class="n">{n}</span>{e(_hit_text(name, hit))}</li>'
        for n, (name, hit) in enumerate(zip(names, m.terms), start=1)
    )
    return (
        f'<li class="match" data-rank="{m.rank}" data-score="{m.score:.6f}">'
        f'<a class="thumb" href="{url}">{picture}<div class="grid">{cells}</div></a>'
        f'<div class="caption"><span class="rank">#{m.rank}</span> <span class="score">{percent(m.score)}</span> '
        f'<a class="path" href="{url}">{e(printable(m.path))}</a><ul class="terms">{terms}</ul></div></li>'
    )


def _faces_html(m: Match) -> str:
    """The match's faces outlined over its thumbnail, placed in percent of the photo's size."""
    if not m.faces or not m.width or not m.height:
        return ""
    return "".join(
        f'<div class="face" title="face {percent(f.confidence)}" style="left:{100 * f.x0 / m.width:.2f}%;'
        f"top:{100 * f.y0 / m.height:.2f}%;width:{100 * (f.x1 - f.x0) / m.width:.2f}%;"
        f'height:{100 * (f.y1 - f.y0) / m.height:.2f}%"></div>'
        for f in m.faces
    )


def html_page(result: Result, size: int = THUMBNAIL_SIZE) -> str:
    """A page that needs nothing else: thumbnails are embedded, no scripts, every name escaped."""
    e = html.escape
    names = term_names(result)
    specs = result.prepared.compiled.reported
    legend = " ".join(f"<span>{n}</span>{e(s.describe())}" for n, s in enumerate(specs, start=1))
    items = "\n".join(_match_html(m, names, size) for m in result.matches)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>imgidx: {e(result.prepared.text)}</title><style>{_CSS % {'size': size}}</style></head>\n<body>"
        f'<h1>imgidx query <span class="query">{e(result.prepared.text)}</span></h1>'
        f'<p class="summary">{e(summary(result))}</p>'
        f'<p class="terms-legend">{legend}</p>\n<ol class="gallery">\n{items}\n</ol>\n</body></html>\n'
    )
