"""imgidx's cache folder, and small JSON files in it that are valid only for the key they were written with.

A key names everything the value was computed from (e.g. a digest of data files), so a file written from
other inputs is never read: the caller computes the value again and writes it back. The cache is an
optimisation only: where the folder cannot be read or written, nothing fails. What must be written there
(models built, weights downloaded) goes through `writing`, which turns a refusal into one line.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from pathlib import Path
from typing import Any, Iterator

from indexer.errors import CacheError

APP_NAME = "imgidx"
CACHE_ENV = "IMGIDX_CACHE_DIR"
#: Failures of a write that say the folder cannot take it (as opposed to a bug): reported as `CacheError`.
UNWRITABLE = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT})


def cache_dir() -> Path:
    """imgidx's cache root: ``$IMGIDX_CACHE_DIR`` or the platform's user cache directory."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP_NAME))


@contextlib.contextmanager
def writing() -> Iterator[None]:
    """Where something must be written into the cache (a model, a download): a write the folder refuses
    becomes a `CacheError`, one line naming the folder and the variable that moves it."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in UNWRITABLE:
            raise
        where = f" ({exc.filename})" if exc.filename else ""
        raise CacheError(
            f"cannot write imgidx's cache folder {cache_dir()}: {exc.strerror}{where}; make it writable or set "
            f"{CACHE_ENV} to a folder that is"
        ) from None


def read_json(name: str, key: str) -> Any | None:
    """The value stored as ``name`` with ``key``; None when there is none, it is unreadable, or it was
    stored with another key."""
    try:
        with open(cache_dir() / name, encoding="utf-8") as file:
            stored = json.load(file)
    except (OSError, ValueError):
        return None
    if not isinstance(stored, dict) or stored.get("key") != key:
        return None
    return stored.get("value")


def write_json(name: str, key: str, value: Any) -> None:
    """Store ``value`` as ``name`` with ``key``, atomically (a reader sees the old file or the new one);
    nothing happens where the cache folder cannot be written."""
    import tempfile

    folder = cache_dir()
    temporary = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=folder, prefix=f".{name}.", delete=False) as file:
            temporary = file.name
            json.dump({"key": key, "value": value}, file, separators=(",", ":"))
        os.replace(temporary, folder / name)
    except OSError:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
