"""What an index run leaves out by pattern: ``imgidx index --exclude GLOB`` and a root folder's ``.imgidxignore``.

A pattern is a shell glob (`fnmatch`, case-sensitive, ``*`` also crosses ``/``). Without a ``/`` it matches
the name of a file or folder at any depth (``*.tmp``, ``@eaDir``, ``Thumbs``); with one, leading or inside,
the path below the root folder (``2019/drafts``, ``raw/*.png``, ``/raw`` for the root's own ``raw`` only). A
trailing ``/`` matches folders only. A folder that matches is left out with everything in it. ``.imgidxignore`` holds one pattern a
line; blank lines and lines starting with ``#`` are skipped. Each root's file applies below that root only,
``--exclude`` below every root.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from indexer.errors import PatternError

IGNORE_FILE = ".imgidxignore"
COMMENT = "#"


@dataclass(frozen=True)
class Pattern:
    """One glob, compiled: matched against an entry's name, or (``anchored``) its path below the root."""

    glob: str
    regex: re.Pattern
    anchored: bool
    folders_only: bool

    def matches(self, name: str, relative: str, is_folder: bool) -> bool:
        if self.folders_only and not is_folder:
            return False
        return bool(self.regex.match(relative if self.anchored else name))


def parse(glob: str, origin: str = "--exclude") -> Pattern:
    """``glob`` as a `Pattern`; ``origin`` names where it came from in the error for an empty one."""
    text = glob.strip()
    folders_only = text.endswith("/")
    body = text.strip("/")
    if not body:
        raise PatternError(f"{origin}: {glob!r} is no pattern; give a name or path glob such as '*.tmp' or 'raw/'")
    anchored = "/" in text.rstrip("/")
    return Pattern(glob, re.compile(fnmatch.translate(body)), anchored, folders_only)


@dataclass(frozen=True)
class Rules:
    """The patterns in force below each root folder (real, absolute paths); empty rules are false."""

    by_root: tuple[tuple[str, tuple[Pattern, ...]], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.by_root)

    def excluded(self, path: str, is_folder: bool) -> bool:
        """``path`` (below a root, as the walk spells it) is left out."""
        name = os.path.basename(path)
        for root, patterns in self.by_root:
            prefix = root.rstrip(os.sep) + os.sep
            if path.startswith(prefix):
                relative = path[len(prefix):]
                if any(p.matches(name, relative, is_folder) for p in patterns):
                    return True
        return False


def read_ignore_file(root: str) -> list[Pattern]:
    """The patterns of ``root``'s ``.imgidxignore``, none if it has no such file."""
    path = os.path.join(root, IGNORE_FILE)
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise PatternError(f"cannot read {path}: {exc.strerror or exc}") from None
    return [
        parse(line, f"{path}, line {number}")
        for number, line in enumerate(lines, start=1)
        if line.strip() and not line.lstrip().startswith(COMMENT)
    ]


def for_roots(roots: Iterable[str], globs: Sequence[str] = ()) -> Rules:
    """The rules of a run over ``roots`` (real paths): ``globs`` everywhere, plus each folder root's
    ``.imgidxignore``."""
    everywhere = [parse(glob) for glob in globs]
    by_root = []
    for root in roots:
        patterns = everywhere + (read_ignore_file(root) if os.path.isdir(root) else [])
        if patterns:
            by_root.append((root, tuple(patterns)))
    return Rules(tuple(by_root))
