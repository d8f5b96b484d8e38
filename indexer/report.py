"""Text and JSON for `imgidx index`'s summary, `imgidx show` and `imgidx stats` (strings only; the CLI prints).

Text escapes what a file name could hide in it (`indexer.names.printable`); JSON gives paths as the index
stores them (`indexer.names.stored`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from indexer import boxes as box_rules
from indexer.boxes import Box
from indexer.calibration import JSON_DECIMALS, percent
from indexer.geometry import CELL_NAMES, GRID
from indexer.labels import class_name
from indexer.names import printable, stored
from indexer.store import ImageReport, IndexStats, StoredLabel
from indexer.store import shown as shown_db
from query.dates import sources_text, taken_text

if TYPE_CHECKING:
    from indexer.merge import MergeSummary
    from indexer.run_types import Summary

GRID_CELL_WIDTH = 22


def summary_text(summary: "Summary") -> str:
    """One line: what the run did, how long it took, with which settings, how long the model took to load,
    and the rate `Summary.rate`: what the progress bar counts, over the bar's span, loading left out."""
    parts = [
        f"{summary.indexed} indexed",
        f"{summary.unchanged} unchanged",
        *([f"{summary.dated} dated"] if summary.dated else []),
        *([f"{summary.compounded} given stored words (person, dog...)"] if summary.compounded else []),
        f"{summary.moved} moved",
        *([f"{summary.copied} copied"] if summary.copied else []),
        f"{summary.pruned} pruned",
        *([f"{summary.missing} missing (not pruned)"] if summary.missing else []),
        f"{summary.failed} failed",
        *([f"{summary.still_failing} still failing"] if summary.still_failing else []),
        *([f"{summary.skipped} skipped"] if summary.skipped else []),
        *([f"{summary.unreadable_folders} unreadable folders"] if summary.unreadable_folders else []),
    ]
    if not summary.model_loaded:
        return f"{', '.join(parts)} in {summary.elapsed:.1f} s (no model run)"
    rate = f", {summary.rate:.1f} images/s" if summary.rate else ""
    found = [_plural(summary.objects_found, "object")] if summary.objects_found else []
    found += [_plural(summary.faces_found, "face")] if summary.faces_found else []
    found += [_plural(summary.lines_found, "line") + " of text"] if summary.lines_found else []
    found = f"; {' and '.join(found)} found" if found else ""
    return (
        f"{', '.join(parts)} in {summary.elapsed:.1f} s ({summary.settings.describe()}, model loaded in "
        f"{summary.load_seconds:.1f} s{rate}){found}"
    )


def _percent(value: float) -> str:
    return f"{value:.1%}"


def _label_json(label: StoredLabel, extent: str) -> dict:
    return {
        "class": label.class_id, "name": label.name, "score": round(label.score, JSON_DECIMALS),
        "evidence": round(label.evidence, 6), extent: round(label.extent, 6),
    }


def image_json(report: ImageReport) -> dict:
    return {
        "path": stored(report.path),
        "width": report.width,
        "height": report.height,
        "size_bytes": report.size_bytes,
        "sha256": report.content_hash,
        "model": report.model,
        "working_size": report.working_size,
        "indexed_at": report.indexed_at,
        "error": report.error,
        "taken": report.taken_at,
        "taken_offset": report.taken_offset,
        "taken_source": report.taken_source,
        "camera": report.camera,
        "labels": [_label_json(label, "share") for label in report.labels],
        "cells": [
            {"cell": cell, "name": CELL_NAMES[cell], "labels": [_label_json(label, "coverage") for label in labels]}
            for cell, labels in enumerate(report.cells)
        ],
        "faces": None if report.faces is None else [
            {"box": _pixels(face), "confidence": round(box_rules.confidence(face), JSON_DECIMALS)}
            for face in report.faces
        ],
        "objects": None if report.objects is None else [box_rules.as_json(box) for box in report.objects],
        "text": None if report.texts is None else [
            {"text": line.text, "box": [line.left, line.top, line.right, line.bottom],
             "confidence": round(line.confidence, JSON_DECIMALS)}
            for line in report.texts
        ],
    }


def _pixels(box: Box) -> list[float]:
    return [box.left, box.top, box.right, box.bottom]


def _where(box: Box) -> str:
    """A box's place in pixels of the photo as seen."""
    return (f"x {box.left:.0f}-{box.right:.0f}, y {box.top:.0f}-{box.bottom:.0f} "
            f"({box.right - box.left:.0f}x{box.bottom - box.top:.0f} px)")


def _weaker(found: list[Box], shown: list[Box]) -> str:
    left_out = len(found) - len(shown)
    return f" (and {left_out} under {percent(box_rules.SHOWN_FROM)})" if left_out else ""


def faces_text(faces: list[Box] | None) -> list[str]:
    """The faces of one photo a query finds (`indexer.boxes.SHOWN_FROM`), best first: confidence and box in
    pixels of the photo as seen."""
    if faces is None:
        return ["faces: not looked for (indexed with --no-faces)"]
    shown = [face for face in faces if box_rules.worth_showing(face)]
    lines = [f"faces: {len(shown)}{_weaker(faces, shown)}"]
    for number, face in enumerate(shown, start=1):
        lines.append(f"  {number}. {percent(box_rules.confidence(face)):>4}  {_where(face)}")
    return lines


def objects_text(objects: list[Box] | None) -> list[str]:
    """The objects of one photo a query finds (`indexer.boxes.SHOWN_FROM`), per class (the class with the
    best box first), each best first: its drawn label (`indexer.boxes.label`: class and confidence) and box
    in pixels of the photo as seen."""
    if objects is None:
        return ["objects: not looked for (indexed with --no-objects)"]
    shown = [box for box in objects if box_rules.worth_showing(box)]
    classes = list(dict.fromkeys(box.class_id for box in shown))
    counts = ", ".join(f"{sum(b.class_id == c for b in shown)} {class_name(c)}" for c in classes)
    lines = [f"objects: {len(shown)}" + (f" ({counts})" if shown else "") + _weaker(objects, shown)]
    ordered = [box for c in classes for box in shown if box.class_id == c]
    width = max((len(box_rules.label(box)) for box in ordered), default=0)
    for number, box in enumerate(ordered, start=1):
        lines.append(f"  {number}. {box_rules.label(box):<{width}}  {_where(box)}")
    return lines


def boxes_text(found: list[Box], faces: bool, objects: bool) -> list[str]:
    """`faces_text` and `objects_text` of one photo's boxes, for the detectors that were run."""
    lines = faces_text([b for b in found if box_rules.is_face(b)]) if faces else []
    return lines + (objects_text([b for b in found if not box_rules.is_face(b)]) if objects else [])


def _grid(cells: list[list[StoredLabel]]) -> list[str]:
    """The 3x3 grid as the photo is seen: leading class and its score in each cell."""
    width = GRID_CELL_WIDTH
    rule = "+" + "+".join("-" * (width + 2) for _ in range(GRID)) + "+"
    lines = [rule]
    for row in range(GRID):
        names, scores = [], []
        for col in range(GRID):
            labels = cells[row * GRID + col]
            name = labels[0].name if labels else "-"
            names.append(name if len(name) <= width else name[: width - 1] + "…")
            scores.append(percent(labels[0].score) if labels else "")
        lines.append("| " + " | ".join(n.ljust(width) for n in names) + " |")
        lines.append("| " + " | ".join(s.ljust(width) for s in scores) + " |")
        lines.append(rule)
    return lines


def image_text(report: ImageReport, top: int) -> str:
    lines = [printable(report.path)]
    if report.error is not None:
        lines.append(f"  failed: {printable(report.error)}")
        return "\n".join(lines)
    settings = f"{report.model} at size {report.working_size}" if report.model else "stale, due for re-indexing"
    lines.append(f"  {report.width}x{report.height} px, {settings}, indexed {report.indexed_at}")
    lines.append(f"  taken {taken_text(report.taken_at, report.taken_offset, report.taken_source)}")
    if report.taken_source is not None:
        lines.append(f"  camera {printable(report.camera)}" if report.camera else "  camera not recorded")
    lines.append("labels (confidence in the best cell, share of the photo):")
    for label in report.labels[:top]:
        lines.append(f"  {percent(label.score):>6}  {_percent(label.extent):>6}  {label.name} ({label.class_id})")
    lines.append("grid (leading class and confidence per cell):")
    lines += _grid(report.cells)
    lines += faces_text(report.faces)
    lines += objects_text(report.objects)
    lines += texts_text(report.texts)
    return "\n".join(lines)


def texts_text(texts: list | None) -> list[str]:
    """The lines of text read in one photo (`indexer.words.Line`), as read, with confidence and box; nothing
    for an index that reads no text (off by default: `indexer.plan.DEFAULT_TEXT`)."""
    if texts is None:
        return []
    lines = [f"text: {_plural(len(texts), 'line')}"]
    for line in texts:
        lines.append(f"  \"{printable(line.text)}\" {percent(line.confidence)} at ({line.left:.0f}, {line.top:.0f})-"
                     f"({line.right:.0f}, {line.bottom:.0f})")
    return lines


def stats_json(stats: IndexStats, db: str) -> dict:
    return {
        "db": shown_db(db),  # a URL without its password
        "settings": None if stats.settings is None else vars(stats.settings),
        "images": stats.images,
        "labelled": stats.labelled,
        "failed": stats.failed,
        "skipped": stats.skipped,
        "stale": stats.stale,
        "image_label_rows": stats.image_label_rows,
        "cell_label_rows": stats.cell_label_rows,
        "last_indexed": stats.last_indexed,
        "models": [{"model": m, "working_size": s, "images": n} for m, s, n in stats.models],
        "top_labels": [{"class": c, "name": name, "images": n} for c, name, n in stats.top_labels],
        "failures": [{"path": stored(p), "error": e} for p, e in stats.failures],
        "skipped_files": [{"path": stored(p), "reason": r} for p, r in stats.skipped_files],
        "dates": {"earliest": stats.taken_range[0], "latest": stats.taken_range[1],
                  "sources": {source or "unread": n for source, n in stats.taken_sources.items()}},
    }


def _detectors_line(settings) -> str:
    """Which box passes the index runs: what a query for ``face`` or ``chair`` can find depends on them."""
    return "detectors: " + ", ".join(f"{name} {'on' if on else 'off'}"
                                     for name, on in (("faces", settings.faces), ("objects", settings.objects)))


def stats_text(stats: IndexStats, db: str) -> str:
    settings = stats.settings.describe() if stats.settings else "none yet (nothing indexed)"
    lines = [
        f"index: {printable(shown_db(db))}",
        f"settings: {settings}",
        *([_detectors_line(stats.settings)] if stats.settings else []),
        f"images: {stats.images} ({stats.labelled} labelled, {stats.failed} failed, "
        + (f"{stats.skipped} skipped, " if stats.skipped else "") + f"{stats.stale} stale)",
        f"label rows: {stats.image_label_rows} image, {stats.cell_label_rows} cell",
        f"last indexed: {stats.last_indexed or '-'}",
    ]
    if stats.taken_sources:
        earliest, latest = (at.replace("T", " ") if at else "-" for at in stats.taken_range)
        lines.append(f"dates taken: {earliest} to {latest}; {sources_text(stats.taken_sources)}")
    if stats.models:
        lines.append("models used:")
        lines += [f"  {m or '(stale)'} at size {s or '-'}: {n} images" for m, s, n in stats.models]
    if stats.top_labels:
        lines.append("most frequent labels (images they lead):")
        width = max(len(str(n)) for _, _, n in stats.top_labels)
        lines += [f"  {n:>{width}}  {name} ({c})" for c, name, n in stats.top_labels]
    if stats.failed:
        shown = f", first {len(stats.failures)}" if len(stats.failures) < stats.failed else ""
        lines.append(f"failed files ({stats.failed}{shown}):")
        lines += [f"  {printable(error)}" for _, error in stats.failures]
    if stats.skipped:
        shown = f", first {len(stats.skipped_files)}" if len(stats.skipped_files) < stats.skipped else ""
        lines.append(f"skipped files ({stats.skipped}{shown}):")
        lines += [f"  {printable(path)}: {printable(reason)}" for path, reason in stats.skipped_files]
    return "\n".join(lines)


def _plural(count: int, noun: str, plural: str | None = None) -> str:
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def _merge_counts(added: int, replaced: int, skipped: int, failed: int) -> str:
    return (
        f"{added} added, {replaced} replaced, {skipped} not newer than the destination's; "
        f"{_plural(failed, 'failed file')} carried"
    )


def merge_text(summary: "MergeSummary", per_source: bool = True) -> str:
    """A line per source (command-line order), then the totals with the time and the index's settings."""
    lines = []
    if per_source:
        for c in summary.sources:
            counts = _merge_counts(c.added, c.replaced, c.skipped, c.failed)
            lines.append(f"  {printable(c.source)}: {_plural(c.images, 'image')}: {counts}")
    totals = _merge_counts(*(summary.total(name) for name in ("added", "replaced", "skipped", "failed")))
    settings = summary.settings.describe() if summary.settings else "no settings yet: nothing indexed"
    indexes = _plural(len(summary.sources), "index", "indexes")
    lines.append(f"merged {indexes} into {printable(summary.into)} in {summary.elapsed:.1f} s: {totals} ({settings})")
    return "\n".join(lines)
