"""The folder walk: which image files lie under some roots, and which image names are no file to read.

Its own module because three callers with nothing else in common walk folders: the indexing run
(`indexer.pipeline`), the Ray engine's listing tasks (`indexer.ray_engine`) and the int8 calibration photos
(`indexer.runtime.photos`). It stands below all of them and imports neither.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from typing import Sequence

from indexer import ignore, images


@dataclass(frozen=True)
class FoundFile:
    path: str
    size_bytes: int
    mtime_ns: int


@dataclass
class Walk:
    files: list[FoundFile] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    #: Image names that are no file to read, with the reason (see `Walker.add_file`).
    skipped: list[tuple[FoundFile, str]] = field(default_factory=list)


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _skip_reason(path: str, exc: OSError) -> str:
    if exc.errno == errno.ENAMETOOLONG:
        return f"path too long for the system ({len(os.fsencode(path)):,} bytes)"
    if exc.errno == errno.ELOOP:
        return "a symbolic link loop"
    return _reason(exc)


class Walker:
    """The state of one walk (see `walk`), kept in the open so parts of a tree can be listed elsewhere
    (`indexer.ray_engine` lists subfolders in Ray tasks) and merged before the symlinks are followed."""

    def __init__(self, exclude: set[str] = frozenset(), rules: ignore.Rules = ignore.Rules()):
        self.result = Walk()
        self.visited: set[tuple[int, int]] = set()
        self.linked: list[str] = []
        self.exclude = exclude
        self.excluded_names = {os.path.basename(p) for p in exclude}
        self.rules = rules

    def enter(self, folder: str, st: os.stat_result, stack: list[str]) -> None:
        if (st.st_dev, st.st_ino) not in self.visited:
            self.visited.add((st.st_dev, st.st_ino))
            stack.append(folder)

    def scan_folder(self, folder: str) -> list[str]:
        """List one folder's image files; its real subfolders not yet visited, in name order."""
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            self.result.unreadable.append((folder, _reason(exc)))
            return []
        subfolders: list[str] = []
        for entry in entries:
            if entry.name.startswith(".") or (self.rules and self.rules.excluded(entry.path, _is_folder(entry))):
                continue
            try:
                if entry.is_dir():
                    if entry.is_symlink():
                        self.linked.append(entry.path)
                    else:
                        self.enter(entry.path, entry.stat(), subfolders)
                    continue
            except OSError:
                pass  # a link loop, a path too long to look at: add_file says why when it is an image
            if os.path.splitext(entry.name)[1].lower() in images.IMAGE_SUFFIXES:
                if entry.name in self.excluded_names and os.path.realpath(entry.path) in self.exclude:
                    continue
                self.add_file(entry.path)
        return subfolders

    def add_file(self, path: str) -> None:
        """An image file; or, for a name that is no file to read, a skipped entry with the reason. Looked
        at, never opened (a FIFO would block). A file that vanished is nothing."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            if os.path.islink(path):
                self.skip(path, "a broken symbolic link")
            return
        except OSError as exc:
            self.skip(path, _skip_reason(path, exc))
            return
        if stat.S_ISREG(st.st_mode):
            self.result.files.append(FoundFile(path, st.st_size, st.st_mtime_ns))
        else:
            self.skip(path, f"not a regular file but {images.file_kind(st.st_mode)}", st)

    def skip(self, path: str, reason: str, st: os.stat_result | None = None) -> None:
        if st is None:
            try:
                st = os.lstat(path)
            except OSError:
                pass
        found = FoundFile(path, st.st_size, st.st_mtime_ns) if st else FoundFile(path, 0, 0)
        self.result.skipped.append((found, reason))

    def scan(self, stack: list[str]) -> None:
        """Depth first through the real folders on ``stack`` (last first)."""
        while stack:
            stack.extend(reversed(self.scan_folder(stack.pop())))

    def add_root(self, root: str) -> None:
        st = os.stat(root)
        if not stat.S_ISDIR(st.st_mode):
            self.add_file(root)
        else:
            stack: list[str] = []
            self.enter(root, st, stack)
            self.scan(stack)

    def merge(self, files: list[FoundFile], unreadable: list[tuple[str, str]], visited: set[tuple[int, int]],
              linked: list[str], skipped: list[tuple[FoundFile, str]] = ()) -> None:
        """Take over what another walker listed of a subtree."""
        self.result.files += files
        self.result.unreadable += unreadable
        self.result.skipped += skipped
        self.visited |= visited
        self.linked += linked

    def finish(self) -> Walk:
        """Follow the symlinked folders, each real folder once, and return the walk."""
        while self.linked:
            stack: list[str] = []
            for folder in self.linked:
                try:
                    self.enter(folder, os.stat(folder), stack)
                except OSError:
                    continue
            self.linked = []
            self.scan(stack[::-1])
        # A file root may lie in a folder root too.
        self.result.files = list({f.path: f for f in self.result.files}.values())
        return self.result


def _is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def walk(roots: Sequence[str], exclude: set[str] = frozenset(), rules: ignore.Rules = ignore.Rules()) -> Walk:
    """Every image file under ``roots`` (absolute real paths), depth first in name order.

    A root that is a file is taken whatever its suffix. Hidden entries (leading dot) below a root, entries
    that ``rules`` exclude (`indexer.ignore`) and other suffixes are left out; image names that are no
    regular file to read go to ``skipped``. Each real folder is entered once, and symlinked folders
    only after the real tree, so a file is found by its real path where it has one and symlink loops end.
    """
    walker = Walker(exclude, rules)
    for root in roots:
        walker.add_root(root)
    return walker.finish()
