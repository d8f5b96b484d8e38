"""Help to ask: the terms of a query for the cell picker and the confidence slider (``/api/terms``), the
query text with one term's region or threshold changed (``/api/rewrite``), and the looser queries a search
that found nothing offers (`query.relax`). The text stays the truth: the picker and the slider only ask
the server to spell a term again (`query.parser.Term.describe`), so what the box holds runs as it is in
``imgidx query``."""

from __future__ import annotations

from typing import Any, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from indexer.errors import ImgidxError
from indexer.geometry import CELL_NAMES
from query import relax
from query.parser import ANYWHERE, MAX_QUERY_CHARS, parse, terms


def _text(request: Request) -> str:
    return request.query_params.get("text", "")[:MAX_QUERY_CHARS]


def _terms(text: str) -> list:
    return list(dict.fromkeys(terms(parse(text))))


def terms_endpoint(request: Request) -> Response:
    """The query's terms in order: label, span, cells, threshold, and whether the picker may change them
    (a term whose region comes from its group, ``(cat OR dog) in center``, may not)."""
    text = _text(request)
    try:
        found = _terms(text)
    except ImgidxError as exc:
        return JSONResponse({"error": exc.shown().partition("\n")[0], "terms": []}, status_code=400)
    shown = []
    for term in found:
        probe = ANYWHERE if term.region is not ANYWHERE else relax.region_of_cells((4,))
        shown.append({
            "label": term.spelled, "start": term.start, "end": term.end,
            "cells": list(term.region.cells), "region": term.region.name, "threshold": term.threshold,
            "editable": relax.rewrite(text, term, region=probe) is not None,
        })
    return JSONResponse({"terms": shown, "cells": list(CELL_NAMES)})


def rewrite_endpoint(request: Request) -> Response:
    """``text`` with term ``term`` (its 0-based number in `terms_endpoint`) given the region of exactly
    ``cells`` (comma-separated; none or all nine: anywhere) and, if ``threshold`` is given, that threshold
    (empty: the query's minimum score)."""
    params = request.query_params
    text = _text(request)
    try:
        found = _terms(text)
        number = int(params.get("term", ""))
        term = found[number]
        cells = tuple(sorted({int(c) for c in params.get("cells", "").split(",") if c.strip()}))
    except (ValueError, IndexError):
        return JSONResponse({"error": "term must be the number of a term of the query, cells numbers 0 to 8"},
                            status_code=400)
    except ImgidxError as exc:
        return JSONResponse({"error": exc.shown().partition("\n")[0]}, status_code=400)
    region = ANYWHERE if not cells or len(cells) == len(CELL_NAMES) else relax.region_of_cells(cells)
    if region is None:
        names = ", ".join(CELL_NAMES[c] for c in cells if 0 <= c < len(CELL_NAMES))
        return JSONResponse({"error": f"no region is exactly the cells {names}: pick one cell, a row, a column or "
                                      "the corners"}, status_code=400)
    changes: dict[str, Any] = {"region": region}
    if "threshold" in params:
        try:
            threshold = float(params["threshold"]) if params["threshold"] else None
        except ValueError:
            threshold = -1.0
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            return JSONResponse({"error": "threshold must be 0 to 1"}, status_code=400)
        changes.update(threshold=threshold, strict=False)
    new_text = relax.rewrite(text, term, **changes)
    if new_text is None:
        return JSONResponse({"error": f"'{term.label}' takes its region from its group: change it there"},
                            status_code=400)
    return JSONResponse({"text": new_text})


def looser_endpoint(index, search_request: Callable[[Request], Any], page: Callable[..., Response],
                    status_of: Callable[[ImgidxError], int]) -> Callable[[Request], Response]:
    """``/looser?q=...``: the looser queries of a search that found nothing, as a page of its own (a link
    of the search page, without JavaScript) or, with ``fragment=1``, the list the search page's script
    puts in place. Apart from the search page, so a search that finds nothing costs no more than another."""

    def looser(request: Request) -> Response:
        template = "relaxed.html" if request.query_params.get("fragment") == "1" else "looser.html"
        ask = None
        try:
            ask = search_request(request)
            found, untried = relaxed(index, ask) if ask.text else ([], 0)
        except ImgidxError as exc:
            return page(template, status_of(exc), ask=ask, error=exc.shown().partition("\n")[0], search_url=None,
                        untried=0)
        return page(template, ask=ask, text=ask.text, folder=ask.folder, relaxed=found, untried=untried,
                    search_url=ask.url(offset=0))

    return looser


def relaxed(index, ask) -> tuple[list[dict], int]:
    """The looser queries that match (`query.relax.relaxed`), as links, and the number left untried for
    want of time: ``index`` is the app's `serve.app.Index`, ``ask`` its `SearchRequest`. Run as a search
    is (`Index.searches`), over the photos the search may find (its folder and dates)."""
    within = ask.within()
    with index.searches, index.engine.connect() as conn:
        looser = relax.relaxed(conn, ask.text, ask.min_score, index.tables, index.calibration, within)
    return [
        {"text": r.text, "url": ask.url(q=r.text, min=r.min_score, offset=0), "change": r.change,
         "matches": r.matches, "capped": r.capped}
        for r in looser.found
    ], looser.untried
