"""Where the OpenVINO runtime keeps what it builds once: converted and int8 models, and small records.

Under imgidx's cache folder (`indexer.cache.cache_dir`, ``~/.cache/imgidx`` on Linux), in
``openvino/``: one folder per network and weights (``MODEL-SHA256[:16]``), holding ``fp32/`` (the converted
graph) and one ``int8-SIZE-QUANTIZATION/`` per working size and int8 model: calibration photos
(`indexer.runtime.photos`) and recipe (`indexer.runtime.recipes.quantization_id`).
Each model folder is written under a temporary name and renamed into place, so a folder that exists is
complete. Nothing here imports OpenVINO.

**A cache folder that cannot be written** (read-only, full, another user's) is an error only where
something must be written: building a model, or recording the current calibration
(`indexer.cache.writing`: one line naming the folder and ``IMGIDX_CACHE_DIR``). Models already built are
read without writing anything (no lock is needed to read a complete folder), and small records such as
weight digests are simply not kept. imgidx does not fall back to a temporary folder: it would convert and
quantize the network again on every run (minutes and hundreds of MB for VGG-16) without the user ever
choosing that.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

from indexer.cache import cache_dir, writing
from indexer.errors import CacheError

SUBDIR = "openvino"
#: ``sha256`` of weight files by path, size and mtime, so a 528 MB checkpoint is hashed once.
DIGESTS_FILE = "weights-sha256.json"
DIGEST_KEY_CHARS = 16
CHUNK_BYTES = 1 << 20


def root() -> Path:
    return cache_dir() / SUBDIR


def read_json(path: Path) -> dict:
    """A small record, or ``{}`` when it is missing or unreadable (records are rebuilt from their source)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def write_json(path: Path, value: dict) -> None:
    """Replace ``path`` atomically, so a reader never sees half a record (`CacheError` where it cannot)."""
    with writing():
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(value, out, indent=1, sort_keys=True)
            os.replace(temporary, path)
        finally:
            if os.path.lexists(temporary):
                os.unlink(temporary)


def _files_of(weights: Path) -> list[Path]:
    """The files holding ``weights``: the file itself, or a checkpoint prefix's ``.index`` and ``.data-*``."""
    if weights.is_file():
        return [weights]
    return sorted(p for p in weights.parent.glob(f"{weights.name}.*") if p.is_file())


def weights_digest(weights: Path) -> str:
    """sha256 over the weight files' contents, remembered per path, size and mtime."""
    files = _files_of(weights)
    stamp = [[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    record_path = root() / DIGESTS_FILE
    record = read_json(record_path)
    key = json.dumps(stamp)
    if key in record:
        return record[key]
    record[key] = file_sha256(*files)
    with contextlib.suppress(CacheError):  # a cache that cannot be written hashes the weights each time
        write_json(record_path, record)
    return record[key]


def file_sha256(*paths: Path) -> str:
    """sha256 over the contents of ``paths``, read in chunks."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK_BYTES):
                digest.update(chunk)
    return digest.hexdigest()


def network_dir(model: str, digest: str) -> Path:
    return root() / f"{model}-{digest[:DIGEST_KEY_CHARS]}"


def fp32_dir(model: str, digest: str) -> Path:
    return network_dir(model, digest) / "fp32"


def int8_dir(model: str, digest: str, size: int, quantization: str) -> Path:
    return network_dir(model, digest) / f"int8-{size}-{quantization}"


def temporary_sibling(folder: Path) -> Path:
    """A fresh folder next to ``folder``, to be renamed onto it when complete."""
    with writing():
        folder.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))


@contextlib.contextmanager
def build_lock(folder: Path) -> Iterator[None]:
    """Held while ``folder`` is built, so two processes (Ray's model actors, say) build it once."""
    with writing():
        folder.parent.mkdir(parents=True, exist_ok=True)
        lock = open(folder.parent / f".{folder.name}.lock", "a")
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
