"""VGG-16 weights: where they are found, how they are downloaded, checked and read.

A load looks, in order, at an explicit path (the CLI's ``--weights PATH``), the environment variable
``IMGIDX_VGG16_WEIGHTS``, then the cache (``imgidx weights fetch vgg16`` puts ``vgg_16.ckpt`` there). A path
may be the TF-Slim ``vgg_16.ckpt``, its ``vgg_16_2016_08_28.tar.gz`` (extracted safely into the cache) or the
Keras ``vgg16_weights_tf_dim_ordering_tf_kernels.h5``. Whatever the source, the result is one dict of
float32 arrays under the slim variable names, every name and shape checked against the network.

No checksum of the archive is published, so the first download is trusted on its exact size; the sha256
of the archive and of the extracted checkpoint are then recorded in ``checksums.json`` next to the
checkpoint and a changed file is refused on every later load.

TensorFlow and h5py are imported only when a file of theirs is read, so fetching stays light.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Callable, Mapping

import numpy as np

from indexer.cache import APP_NAME, CACHE_ENV, cache_dir, writing  # noqa: F401  (CACHE_ENV: read here by callers)
from indexer.errors import DownloadError, WeightsError
from indexer.labels import NUM_CLASSES

WEIGHTS_ENV = "IMGIDX_VGG16_WEIGHTS"
FETCH_COMMAND = "imgidx weights fetch vgg16"
OFFLINE_MODEL = "efficientnet-lite0"

#: The slim README lists this object as ``http://download.tensorflow.org/...``; the same host serves it
#: over HTTPS, which at least protects the first, trusted-on-size download in transit.
VGG16_URL = "https://download.tensorflow.org/models/vgg_16_2016_08_28.tar.gz"
VGG16_ARCHIVE_NAME = "vgg_16_2016_08_28.tar.gz"
VGG16_ARCHIVE_SIZE = 513_324_920
VGG16_CHECKPOINT_NAME = "vgg_16.ckpt"
KERAS_H5_NAME = "vgg16_weights_tf_dim_ordering_tf_kernels.h5"
CHECKSUMS_NAME = "checksums.json"
CACHE_SUBDIR = "vgg16"

PART_SUFFIX = ".part"
CHUNK_BYTES = 1 << 20
TIMEOUT_SECONDS = 60
HTTP_PARTIAL_CONTENT = 206
HTTP_RANGE_NOT_SATISFIABLE = 416

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
GZIP_MAGIC = b"\x1f\x8b"
TAR_MAGIC_OFFSET, TAR_MAGIC = 257, b"ustar"
MAX_LISTED = 5

SCOPE = "vgg_16"
#: (convolutions, output channels) of each of the five blocks; every convolution is 3x3.
VGG16_BLOCKS = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))
CONV_KERNEL = 3
RGB_CHANNELS = 3
FC6_KERNEL = 7
FC_WIDTH = 4096
#: The layer whose input channels are colours, and the axis holding them (HWIO kernel).
COLOUR_LAYER = f"{SCOPE}/conv1/conv1_1"
COLOUR_AXIS = 2

Progress = Callable[[int, int], None]


def _layer_shapes() -> dict[str, tuple[tuple[int, ...], str]]:
    """slim layer -> (kernel shape, Keras layer name), in network order."""
    layers: dict[str, tuple[tuple[int, ...], str]] = {}
    channels = RGB_CHANNELS
    for block, (convs, width) in enumerate(VGG16_BLOCKS, start=1):
        for conv in range(1, convs + 1):
            layers[f"{SCOPE}/conv{block}/conv{block}_{conv}"] = (
                (CONV_KERNEL, CONV_KERNEL, channels, width),
                f"block{block}_conv{conv}",
            )
            channels = width
    layers[f"{SCOPE}/fc6"] = ((FC6_KERNEL, FC6_KERNEL, channels, FC_WIDTH), "fc1")
    layers[f"{SCOPE}/fc7"] = ((1, 1, FC_WIDTH, FC_WIDTH), "fc2")
    layers[f"{SCOPE}/fc8"] = ((1, 1, FC_WIDTH, NUM_CLASSES), "predictions")
    return layers


VGG16_LAYERS = _layer_shapes()
#: Every tensor the network needs: slim variable name -> shape (HWIO kernels, then biases).
VGG16_SHAPES: dict[str, tuple[int, ...]] = {
    f"{layer}/{kind}": shape
    for layer, (kernel, _) in VGG16_LAYERS.items()
    for kind, shape in (("weights", kernel), ("biases", (kernel[-1],)))
}


# ---------------------------------------------------------------------------------------------- cache


def vgg16_cache_dir() -> Path:
    """Where ``fetch_vgg16`` keeps ``vgg_16.ckpt`` and its ``checksums.json``."""
    return cache_dir() / CACHE_SUBDIR


def cached_vgg16_checkpoint() -> Path | None:
    """The cached checkpoint if there is one (not verified; loading verifies)."""
    path = vgg16_cache_dir() / VGG16_CHECKPOINT_NAME
    return path if path.is_file() else None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _entry(path: Path, digest: str | None = None) -> dict[str, object]:
    return {"name": path.name, "size": path.stat().st_size, "sha256": digest or sha256_file(path)}


def record_checksums(checkpoint: Path, archive: Path | None = None, *, archive_sha256: str | None = None,
                     source: str | None = None) -> Path:
    """Write ``checksums.json`` next to ``checkpoint`` so later loads can tell if it changed."""
    record: dict[str, object] = {
        "recorded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "checkpoint": _entry(checkpoint),
    }
    if archive is not None:
        record["archive"] = _entry(archive, archive_sha256)
    if source:
        record["source"] = source
    path = checkpoint.parent / CHECKSUMS_NAME
    tmp = path.with_name(path.name + PART_SUFFIX)
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def _read_record(directory: Path) -> dict | None:
    path = directory / CHECKSUMS_NAME
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        return record
    except (OSError, ValueError) as exc:
        raise WeightsError(
            f"{path}: unreadable checksum record ({exc}); delete {directory} and run `{FETCH_COMMAND}` again"
        ) from None


def verify_checksums(checkpoint: Path) -> bool:
    """Refuse ``checkpoint`` if it differs from the size and sha256 recorded next to it.

    Returns False when nothing was recorded for it (a file the user supplied), True when it matches.
    """
    record = _read_record(checkpoint.parent)
    entry = (record or {}).get("checkpoint")
    if not isinstance(entry, dict) or entry.get("name") != checkpoint.name:
        return False
    advice = f"delete {checkpoint.parent} and run `{FETCH_COMMAND}` again"
    size = checkpoint.stat().st_size
    if size != entry.get("size"):
        raise WeightsError(
            f"{checkpoint}: {size} bytes, but {entry.get('size')} were recorded when it was downloaded "
            f"(truncated or replaced); {advice}"
        )
    digest = sha256_file(checkpoint)
    if digest != entry.get("sha256"):
        raise WeightsError(
            f"{checkpoint}: sha256 {digest} differs from the {entry.get('sha256')} recorded in "
            f"{checkpoint.parent / CHECKSUMS_NAME} when it was downloaded (changed or corrupted); {advice}"
        )
    return True


# ------------------------------------------------------------------------------------------- download


def _content_range(header: str | None) -> tuple[int, int | None]:
    """``bytes START-END/TOTAL`` -> (START, TOTAL or None)."""
    match = re.fullmatch(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*", header or "")
    if not match:
        raise DownloadError(f"the server answered a resume request with an unusable Content-Range {header!r}")
    return int(match.group(1)), None if match.group(2) == "*" else int(match.group(2))


def download(url: str, dest: Path, expected_size: int, progress: Progress | None = None) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming a partial file with an HTTP Range request.

    Uses the stdlib's urllib rather than requests: one GET with a Range header needs nothing more, and the
    library keeps no dependency it does not declare. ``progress(done_bytes, total_bytes)`` is called as
    bytes arrive. A server offering another size, or a body longer than ``expected_size``, is refused (the
    partial file is dropped); a short body keeps the partial file so a second call resumes it.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + PART_SUFFIX)
    done = part.stat().st_size if part.exists() else 0
    if done > expected_size:
        part.unlink()
        done = 0
    report = progress or (lambda _done, _total: None)
    resume_hint = f"run `{FETCH_COMMAND}` again to resume"
    refused = None
    if done < expected_size:
        headers = {"User-Agent": APP_NAME}
        if done:
            headers["Range"] = f"bytes={done}-"
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_SECONDS) as resp:
                if done and resp.status == HTTP_PARTIAL_CONTENT:
                    start, total = _content_range(resp.headers.get("Content-Range"))
                    if start != done:
                        raise DownloadError(f"{url}: asked to resume at byte {done}, the server sent from {start}")
                    mode = "ab"
                else:
                    done, mode = 0, "wb"
                    length = resp.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                if total is not None and total != expected_size:
                    refused = f"the server offers {total} bytes"
                else:
                    with open(part, mode) as out:
                        report(done, expected_size)
                        while chunk := resp.read(CHUNK_BYTES):
                            done += len(chunk)
                            if done > expected_size:
                                refused = f"the server sent more than {expected_size} bytes"
                                break
                            out.write(chunk)
                            report(done, expected_size)
        except urllib.error.HTTPError as exc:
            if exc.code != HTTP_RANGE_NOT_SATISFIABLE:
                raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
            refused = f"the file on the server is shorter than the {done} bytes already downloaded"
        except (OSError, http.client.HTTPException) as exc:
            done = part.stat().st_size if part.exists() else 0
            raise DownloadError(
                f"download of {url} stopped at {done} of {expected_size} bytes ({exc}); {resume_hint}"
            ) from None
    if refused:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{url}: {refused}, expected exactly {expected_size} bytes; refusing it")
    size = part.stat().st_size
    if size < expected_size:
        raise DownloadError(f"download of {url} stopped at {size} of {expected_size} bytes; {resume_hint}")
    part.replace(dest)
    return dest


# -------------------------------------------------------------------------------------------- extract


def _tar_filter_kwargs() -> dict[str, str]:
    """``filter="data"`` where this Python's tarfile has extraction filters (3.11.4+, 3.12+)."""
    return {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


_FILTER_ERRORS = getattr(tarfile, "FilterError", ())


def _check_member(member: tarfile.TarInfo, target: Path, archive: Path) -> None:
    refuse = f"{archive}: refusing archive member {member.name!r}"
    if not (member.isfile() or member.isdir()):
        kind = "a symbolic link" if member.issym() else "a hard link" if member.islnk() else "a device or fifo"
        raise WeightsError(f"{refuse}: it is {kind}, not a regular file")
    name = PurePosixPath(member.name.replace("\\", "/"))
    if name.is_absolute() or re.match(r"^[A-Za-z]:", member.name) or ".." in name.parts:
        raise WeightsError(f"{refuse}: its path leaves the extraction directory")
    if not (target / name).resolve().is_relative_to(target):
        raise WeightsError(f"{refuse}: its path leaves the extraction directory")


def safe_extract(archive: Path, target: Path) -> list[Path]:
    """Extract regular files and directories of a tar(.gz) under ``target``; refuse anything else.

    Members are checked one by one before extraction (no links, devices, absolute paths or ``..``), and
    tarfile's own ``data`` filter is applied on top where available. Returns the extracted files.
    """
    archive, target = Path(archive), Path(target).resolve()
    target.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                _check_member(member, target, archive)
                tar.extract(member, target, **_tar_filter_kwargs())
                if member.isfile():
                    files.append(target / member.name)
    except _FILTER_ERRORS as exc:
        raise WeightsError(f"{archive}: refusing archive member ({exc})") from None
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise WeightsError(f"{archive}: not a complete, readable tar.gz archive ({exc})") from None
    return files


def install_archive(archive: Path, dest_dir: Path | None = None, *, source: str | None = None) -> Path:
    """Extract ``vgg_16.ckpt`` from ``archive`` into ``dest_dir`` (the cache), check it, record checksums.

    An archive already installed (same sha256 recorded, checkpoint unchanged) is not extracted again.
    """
    archive = Path(archive)
    dest_dir = Path(dest_dir) if dest_dir is not None else vgg16_cache_dir()
    dest_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = dest_dir / VGG16_CHECKPOINT_NAME
    archive_sha256 = sha256_file(archive)
    record = _read_record(dest_dir) or {}
    if (record.get("archive") or {}).get("sha256") == archive_sha256 and checkpoint.is_file():
        try:
            if verify_checksums(checkpoint):
                return checkpoint
        except WeightsError:
            pass
    scratch = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest_dir))
    try:
        found = [f for f in safe_extract(archive, scratch) if f.name == VGG16_CHECKPOINT_NAME]
        if not found:
            raise WeightsError(f"{archive}: contains no {VGG16_CHECKPOINT_NAME}; is it the VGG-16 archive?")
        check_checkpoint_structure(found[0], label=f"{archive} ({VGG16_CHECKPOINT_NAME})")
        os.replace(found[0], checkpoint)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    record_checksums(checkpoint, archive, archive_sha256=archive_sha256, source=source or str(archive))
    return checkpoint


def fetch_vgg16(progress: Progress | None = None, *, url: str = VGG16_URL,
                expected_size: int = VGG16_ARCHIVE_SIZE, force: bool = False, keep_archive: bool = False) -> Path:
    """Download the TF-Slim VGG-16 archive into the cache, extract and record it; return ``vgg_16.ckpt``.

    Does nothing but return the path when a verified checkpoint is already cached (unless ``force``). An
    interrupted download resumes on the next call. The 513 MB archive is deleted after extraction unless
    ``keep_archive``; its sha256 stays in ``checksums.json``.
    """
    directory = vgg16_cache_dir()
    checkpoint = directory / VGG16_CHECKPOINT_NAME
    if checkpoint.is_file() and not force:
        try:
            if verify_checksums(checkpoint):
                return checkpoint
        except WeightsError:
            pass
    with writing():
        directory.mkdir(parents=True, exist_ok=True)
    archive = download(url, directory / VGG16_ARCHIVE_NAME, expected_size, progress)
    try:
        with writing():
            checkpoint = install_archive(archive, directory, source=url)
    except WeightsError:
        archive.unlink(missing_ok=True)
        raise
    if not keep_archive:
        archive.unlink(missing_ok=True)
    return checkpoint


# ------------------------------------------------------------------------------------------- resolve


def no_weights_message() -> str:
    return (
        f"no VGG-16 weights found: run `{FETCH_COMMAND}` (downloads {VGG16_ARCHIVE_SIZE / 1e6:.0f} MB into "
        f"{vgg16_cache_dir()}), or pass `--weights PATH` or set {WEIGHTS_ENV} to a {VGG16_CHECKPOINT_NAME}, "
        f"{VGG16_ARCHIVE_NAME} or {KERAS_H5_NAME}; `--model {OFFLINE_MODEL}` works offline"
    )


def _exists(path: Path) -> bool:
    return path.exists() or Path(f"{path}.index").is_file()


def resolve_vgg16_weights(weights: str | os.PathLike[str] | None = None) -> Path:
    """The weights file a load uses: ``weights``, else ``$IMGIDX_VGG16_WEIGHTS``, else the cache."""
    if weights:
        origin, path = "--weights", Path(weights).expanduser()
    elif os.environ.get(WEIGHTS_ENV):
        origin, path = WEIGHTS_ENV, Path(os.environ[WEIGHTS_ENV]).expanduser()
    else:
        cached = cached_vgg16_checkpoint()
        if cached is None:
            raise WeightsError(no_weights_message())
        return cached
    if path.is_dir():
        path = path / VGG16_CHECKPOINT_NAME
    if not _exists(path):
        raise WeightsError(f"{origin} {path}: no such file; {no_weights_message()}")
    return path


def _sniff(path: Path) -> str:
    """``h5``, ``archive`` or ``checkpoint``, from the file's first bytes rather than its name."""
    if not path.is_file():
        return "checkpoint"
    try:
        with open(path, "rb") as handle:
            head = handle.read(TAR_MAGIC_OFFSET + len(TAR_MAGIC))
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read ({exc.strerror})") from None
    if head.startswith(HDF5_MAGIC):
        return "h5"
    if head.startswith(GZIP_MAGIC) or head[TAR_MAGIC_OFFSET:].startswith(TAR_MAGIC):
        return "archive"
    return "checkpoint"


def read_vgg16_weights(weights: str | os.PathLike[str] | None = None) -> tuple[dict[str, np.ndarray], Path]:
    """Resolve, verify and read VGG-16 weights; return (slim name -> float32 array, the file read)."""
    path = resolve_vgg16_weights(weights)
    kind = _sniff(path)
    if kind == "h5":
        tensors = read_keras_h5(path)
    else:
        if kind == "archive":
            path = install_archive(path)
        if path.is_file():
            verify_checksums(path)
        tensors = read_checkpoint(path)
    check_vgg16_tensors(tensors, str(path))
    return tensors, path


# ---------------------------------------------------------------------------------------------- read


def _problems(found: Mapping[str, tuple[int, ...]], expected: Mapping[str, tuple[int, ...]]) -> list[str]:
    missing = [name for name in expected if name not in found]
    wrong = [
        f"{name} is {list(found[name])}, the network needs {list(shape)}"
        for name, shape in expected.items()
        if name in found and tuple(found[name]) != tuple(shape)
    ]
    problems = []
    if missing:
        more = f" and {len(missing) - MAX_LISTED} more" if len(missing) > MAX_LISTED else ""
        problems.append(f"missing {', '.join(missing[:MAX_LISTED])}{more}")
    problems.extend(wrong[:MAX_LISTED])
    return problems


def check_vgg16_tensors(tensors: Mapping[str, np.ndarray], label: str) -> None:
    """Every tensor the network needs is present, has its shape, is floating point and finite."""
    problems = _problems({k: v.shape for k, v in tensors.items()}, VGG16_SHAPES)
    for name in VGG16_SHAPES:
        value = tensors.get(name)
        if value is None or value.shape != VGG16_SHAPES[name]:
            continue
        if not np.issubdtype(value.dtype, np.floating):
            problems.append(f"{name} has dtype {value.dtype}, not floating point")
        elif not np.isfinite(value).all():
            problems.append(f"{name} contains NaN or infinite values")
    if problems:
        raise WeightsError(f"{label}: not VGG-16 weights this network can use: {'; '.join(problems)}")


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", "") or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _open_checkpoint(path: Path, label: str):
    import tensorflow as tf

    try:
        return tf.train.load_checkpoint(str(path))
    except (tf.errors.OpError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"{label}: not a readable TensorFlow checkpoint ({_first_line(exc)})") from None


def check_checkpoint_structure(path: Path, label: str | None = None) -> None:
    """Names and shapes only (no tensor data): cheap enough to run on every extraction."""
    reader = _open_checkpoint(path, label or str(path))
    problems = _problems(reader.get_variable_to_shape_map(), VGG16_SHAPES)
    if problems:
        raise WeightsError(f"{label or path}: not the VGG-16 checkpoint: {'; '.join(problems)}")


def read_checkpoint(path: Path) -> dict[str, np.ndarray]:
    """The network's tensors from a TF checkpoint (V1 file like ``vgg_16.ckpt``, or a V2 prefix)."""
    import tensorflow as tf

    reader = _open_checkpoint(path, str(path))
    problems = _problems(reader.get_variable_to_shape_map(), VGG16_SHAPES)
    if problems:
        raise WeightsError(f"{path}: not the VGG-16 checkpoint: {'; '.join(problems)}")
    tensors = {}
    for name in VGG16_SHAPES:
        try:
            tensors[name] = np.asarray(reader.get_tensor(name), dtype=np.float32)
        except (tf.errors.OpError, ValueError, RuntimeError) as exc:
            raise WeightsError(f"{path}: cannot read {name} ({_first_line(exc)}); the file is damaged") from None
    return tensors


KERAS_CONV_PREFIX = "block"
KERNEL_PATTERN = re.compile(r"(_W(_\d+)?|kernel)(:0)?$")
BIAS_PATTERN = re.compile(r"(_b(_\d+)?|bias)(:0)?$")


def _keras_datasets(group, layer: str, path: Path) -> tuple[object, object]:
    import h5py

    kernels, biases = [], []

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset):
            base = name.rsplit("/", 1)[-1]
            if KERNEL_PATTERN.search(base):
                kernels.append(obj)
            elif BIAS_PATTERN.search(base):
                biases.append(obj)

    group.visititems(visit)
    if len(kernels) != 1 or len(biases) != 1:
        raise WeightsError(
            f"{path}: layer {layer} should hold one kernel and one bias, found {len(kernels)} and {len(biases)}"
        )
    return kernels[0], biases[0]


def read_keras_h5(path: Path) -> dict[str, np.ndarray]:
    """The network's tensors from Keras' ``vgg16_weights_tf_dim_ordering_tf_kernels.h5``.

    Mapping (vgg16_variable_map.tsv): ``blockB_convJ`` -> ``convB/convB_J`` unchanged (both HWIO); ``fc1``
    ``(25088, 4096)`` -> ``fc6`` ``(7, 7, 512, 4096)`` by a C-order reshape (Keras flattens the
    channels-last pool5 as H, W, C); ``fc2``/``predictions`` -> 1x1 ``fc7``/``fc8``.

    Colour order: Keras' VGG16 takes BGR input (Caffe's convention, ``preprocess_input(mode="caffe")``),
    while this network follows slim's ``vgg_preprocessing`` and is fed RGB. So conv1_1's input-channel axis
    is reversed here; without that, every image would be read with red and blue swapped.
    """
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise WeightsError(f"{path}: not a readable HDF5 file ({_first_line(exc)})") from None
    tensors: dict[str, np.ndarray] = {}
    with handle:
        root = handle["model_weights"] if "model_weights" in handle else handle
        missing = [keras for _, keras in VGG16_LAYERS.values() if keras not in root]
        if missing:
            raise WeightsError(f"{path}: not Keras VGG16 weights: missing layers {', '.join(missing)}")
        for layer, (shape, keras) in VGG16_LAYERS.items():
            kernel, bias = _keras_datasets(root[keras], keras, path)
            keras_shape = shape if keras.startswith(KERAS_CONV_PREFIX) else (int(np.prod(shape[:-1])), shape[-1])
            if tuple(kernel.shape) != tuple(keras_shape) or tuple(bias.shape) != (shape[-1],):
                raise WeightsError(
                    f"{path}: layer {keras} has kernel {list(kernel.shape)} and bias {list(bias.shape)}; "
                    f"the network needs {list(keras_shape)} and {[shape[-1]]}"
                )
            try:
                weights = np.asarray(kernel[()], dtype=np.float32).reshape(shape)
                tensors[f"{layer}/biases"] = np.asarray(bias[()], dtype=np.float32)
            except (OSError, ValueError) as exc:
                raise WeightsError(
                    f"{path}: cannot read layer {keras} ({_first_line(exc)}); the file is damaged"
                ) from None
            if layer == COLOUR_LAYER:
                weights = np.ascontiguousarray(np.flip(weights, axis=COLOUR_AXIS))
            tensors[f"{layer}/weights"] = weights
    return tensors
