"""One writer at a time for an SQLite index: a lock held by the database file itself, not by a name of it.

SQLite keeps its WAL and shared-memory files by the name a database is opened under, so two runs writing
one file through two names (a hard link, a symlink) would each commit into a WAL of their own, which
SQLite warns corrupts the file. The lock is therefore an ``flock`` on the database file: the kernel keeps
it per inode, whatever the name. Where ``flock`` is not that (see `OWN_FLOCK_FILE_SYSTEMS`), the lock is a
file beside the index's real path, as before: symlinks are caught, hard links on such a file system are not.
"""

from __future__ import annotations

import fcntl
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa

from indexer import store
from indexer.errors import IndexBusyError, StoreError

#: File systems that implement ``flock`` themselves, as a lock over the whole file that SQLite's own locks
#: and I/O run into: NFS emulates it with POSIX locks (SQLite's readers in other processes would wait on
#: it, and it needs the file open for writing), SMB makes it mandatory (SQLite's reads and writes through
#: its own descriptors would fail), the cluster and FUSE file systems do as they please. On Linux every
#: other file system leaves ``flock`` to the kernel, apart from POSIX locks; elsewhere (BSD) the two meet.
OWN_FLOCK_FILE_SYSTEMS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "gfs2", "ocfs2", "9p", "afs", "lustre",
                          "orangefs", "fuse", "fuseblk")
MOUNT_TABLE = "/proc/self/mountinfo"
#: Beside an index whose file cannot be locked itself: ``INDEX.lock``.
LOCK_SUFFIX = ".lock"


@contextmanager
def writer_lock(engine: sa.Engine) -> Iterator[None]:
    """Hold an exclusive lock on an SQLite index so two runs never write it at once; PostgreSQL needs none
    (its transactions lock the rows they write: `store.upsert_images`, `store.read_settings_locked`).

    The lock is an ``flock`` on the database file (`_lock_file_itself`), or where that would meet SQLite's
    own locks, on a file beside its real path (`_lock_beside`). A killed run's lock dies with it.
    """
    path = store.sqlite_path(str(engine.url))
    if path is None:
        yield
    elif _flock_is_the_kernels(path):
        with _lock_file_itself(engine, path):
            yield
    else:
        with _lock_beside(path):
            yield


def _busy(path: Path) -> IndexBusyError:
    return IndexBusyError(f"another imgidx index is writing to {path}; wait for it to finish")


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


@contextmanager
def _lock_file_itself(engine: sa.Engine, path: Path) -> Iterator[None]:
    """``flock`` the database file. ``flock`` and SQLite's POSIX byte-range locks do not meet on Linux's own
    file systems, but closing *any* descriptor of a file drops the process's POSIX locks on it, SQLite's
    included (the shared lock each WAL connection holds, which tells another process's closing connection
    that the WAL is in use): so the engine's connections are closed before the lock's descriptor is."""
    try:
        handle = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise StoreError(f"cannot lock the index {path}: {_reason(exc)}") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(path) from None
        except OSError as exc:
            raise StoreError(f"cannot lock the index {path}: {_reason(exc)}") from None
        yield
    finally:
        engine.dispose()  # the engine opens new connections if it is used again
        os.close(handle)


@contextmanager
def _lock_beside(path: Path) -> Iterator[None]:
    """``flock`` ``INDEX.lock`` beside the index's real path (symlinks resolved), removed by its holder
    while it still holds it. A run that locked a file removed meanwhile (its inode no longer the path's)
    drops it and locks the current one, so no two runs hold locks on two different files; a killed run's
    leftover file is simply taken over."""
    lock_path = os.path.realpath(path) + LOCK_SUFFIX
    while True:
        try:
            lock = open(lock_path, "a")
        except OSError as exc:
            raise StoreError(f"cannot lock the index {path}: {_reason(exc)}") from None
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise _busy(path) from None
        if _same_file(lock, lock_path):
            break
        lock.close()
    try:
        yield
    finally:
        if _same_file(lock, lock_path):
            os.unlink(lock_path)
        lock.close()


def _same_file(handle, path: str) -> bool:
    """``handle`` is open on the file that ``path`` names now."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(handle.fileno())
    return (opened.st_dev, opened.st_ino) == (named.st_dev, named.st_ino)


def _flock_is_the_kernels(path: Path) -> bool:
    """On Linux, ``path`` lies on a file system that leaves ``flock`` to the kernel (not one of
    `OWN_FLOCK_FILE_SYSTEMS`, nor one the mount table does not name)."""
    if not sys.platform.startswith("linux"):
        return False
    kind = file_system(path)
    return kind is not None and kind.split(".")[0] not in OWN_FLOCK_FILE_SYSTEMS


def file_system(path: Path) -> str | None:
    """The type of the file system ``path`` lies on (``ext4``, ``nfs4``, ``fuse.sshfs``), from the mount
    whose device is the file's; None where the mount table cannot tell."""
    try:
        device = os.stat(path).st_dev
        lines = Path(MOUNT_TABLE).read_text().splitlines()
    except OSError:
        return None
    wanted = f"{os.major(device)}:{os.minor(device)}"
    for line in lines:
        fields = line.split()
        if len(fields) > 2 and fields[2] == wanted and "-" in fields[6:]:
            return fields[fields.index("-", 6) + 1]
    return None
