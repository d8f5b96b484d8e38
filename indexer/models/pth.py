"""Read a legacy PyTorch ``.pth`` state dict into numpy, without torch and without running its code.

A ``.pth`` file is a pickle, and unpickling runs whatever callables the file names, so a weights file
from elsewhere must not go through `pickle.load`. `load_state_dict` reads the legacy (non-zip) layout
that ``torch.save`` wrote before PyTorch 1.6:

1. pickles of the magic number, the protocol version and a system-info dict (byte order, type sizes);
2. the pickled state dict, whose tensors are ``torch._utils._rebuild_tensor_v2(storage, offset, size,
   stride, ...)`` calls and whose storages are persistent ids ``("storage", torch.FloatStorage, key,
   location, numel, None)``;
3. a pickled list of storage keys, then for each key in that order an ``int64`` element count and the
   storage's raw bytes.

The unpickler resolves only the globals such a file needs, each to a harmless stand-in here; any other
global (``os.system``, a model class, ...) is refused with `WeightsError` before anything is called.
"""

from __future__ import annotations

import collections
import os
import pickle
import struct
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from indexer.errors import WeightsError

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
ZIP_MAGIC = b"PK\x03\x04"
COUNT_BYTES = 8
UNUSABLE = "is not a usable PyTorch state dict"

#: torch storage type -> numpy dtype (byte order is added from the file's system info).
STORAGE_DTYPES = {
    "DoubleStorage": "f8",
    "FloatStorage": "f4",
    "HalfStorage": "f2",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


class _Malformed(Exception):
    """The file's structure is not that of a legacy state dict (wrapped into `WeightsError`)."""


@dataclass(frozen=True)
class _StorageType:
    name: str


@dataclass(frozen=True)
class _Storage:
    key: str
    dtype: np.dtype
    numel: int


@dataclass(frozen=True)
class _TensorRef:
    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _is_int_tuple(value: object) -> bool:
    return isinstance(value, tuple) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)


def _rebuild_tensor(storage, storage_offset, size, stride, *_requires_grad_hooks_metadata):
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: records where the tensor's data lies."""
    if not isinstance(storage, _Storage):
        raise _Malformed("a tensor does not refer to a storage")
    if not (isinstance(storage_offset, int) and _is_int_tuple(size) and _is_int_tuple(stride)):
        raise _Malformed("a tensor has a malformed offset, size or stride")
    if len(size) != len(stride) or storage_offset < 0 or any(v < 0 for v in size + stride):
        raise _Malformed(f"a tensor has size {size} and stride {stride}")
    return _TensorRef(storage, storage_offset, size, stride)


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals a state dict needs; collects the storages its tensors refer to."""

    def __init__(self, file: BinaryIO, path: str, byte_order: str = "<") -> None:
        super().__init__(file)
        self.path = path
        self.byte_order = byte_order
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise WeightsError(f"{self.path}: refusing to load {module}.{name}: a state dict does not need it")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise _Malformed(f"unsupported persistent id {pid!r:.80}")
        _, storage_type, key, _location, numel, view = pid
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str):
            raise _Malformed("a storage has no known type or key")
        if not isinstance(numel, int) or numel < 0:
            raise _Malformed(f"storage {key} has size {numel!r}")
        if view is not None:
            raise _Malformed(f"storage {key} is a view; this reader does not support storage views")
        storage = _Storage(key, np.dtype(self.byte_order + STORAGE_DTYPES[storage_type.name]), numel)
        known = self.storages.setdefault(key, storage)
        if known != storage:
            raise _Malformed(f"storage {key} is declared twice with different types or sizes")
        return known


def _read_exact(file: BinaryIO, count: int, what: str, file_size: int) -> bytes:
    left = file_size - file.tell()
    if count > left:
        raise _Malformed(f"the file ends inside {what} ({left} of {count} bytes); is it truncated?")
    return file.read(count)


def _materialise(ref: _TensorRef, data: np.ndarray) -> np.ndarray:
    native = data.dtype.newbyteorder("=")
    if any(n == 0 for n in ref.shape):
        return np.zeros(ref.shape, dtype=native)
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.shape, ref.stride))
    if last >= data.size:
        raise _Malformed(f"a tensor of shape {ref.shape} reaches past the end of storage {ref.storage.key}")
    view = np.lib.stride_tricks.as_strided(
        data[ref.offset:],
        shape=ref.shape,
        strides=tuple(s * data.itemsize for s in ref.stride),
        writeable=False,
    )
    return np.array(view, dtype=native, order="C")


def _read(file: BinaryIO, path: str, file_size: int) -> dict[str, np.ndarray]:
    head = file.read(len(ZIP_MAGIC))
    if head == ZIP_MAGIC:
        raise _Malformed("it is a zip-format file (PyTorch >= 1.6); only the legacy format is supported")
    file.seek(0)
    header = _RestrictedUnpickler(file, path)
    if header.load() != MAGIC_NUMBER:
        raise _Malformed("it is not a legacy PyTorch file (wrong magic number)")
    protocol = header.load()
    if protocol != PROTOCOL_VERSION:
        raise _Malformed(f"unsupported protocol version {protocol!r}")
    sys_info = header.load()
    if not isinstance(sys_info, dict):
        raise _Malformed("the system info is not a dict")
    byte_order = "<" if sys_info.get("little_endian", True) else ">"

    unpickler = _RestrictedUnpickler(file, path, byte_order)
    state = unpickler.load()
    if not isinstance(state, dict):
        raise _Malformed(f"it holds a {type(state).__name__}, not a state dict")
    keys = _RestrictedUnpickler(file, path).load()
    if not isinstance(keys, list) or sorted(keys) != sorted(unpickler.storages):
        raise _Malformed("the storage key list does not match the storages the tensors use")

    count_format = byte_order + "q"
    storages: dict[str, np.ndarray] = {}
    for key in keys:
        storage = unpickler.storages[key]
        size_bytes = _read_exact(file, COUNT_BYTES, f"the size of storage {key}", file_size)
        (numel,) = struct.unpack(count_format, size_bytes)
        if numel != storage.numel:
            raise _Malformed(f"storage {key} holds {numel} elements, the state dict says {storage.numel}")
        raw = _read_exact(file, numel * storage.dtype.itemsize, f"storage {key}", file_size)
        storages[key] = np.frombuffer(raw, dtype=storage.dtype)

    result: dict[str, np.ndarray] = {}
    for name, ref in state.items():
        if not isinstance(name, str) or not isinstance(ref, _TensorRef):
            raise _Malformed(f"entry {name!r:.60} is not a named tensor")
        result[name] = _materialise(ref, storages[ref.storage.key])
    return result


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Every tensor of the legacy ``.pth`` state dict at ``path``, by name, as a C-contiguous numpy array.

    Raises `WeightsError` naming the file when it is missing, truncated, of another layout, or names any
    global beyond a state dict's own (nothing the file names is ever imported or called).
    """
    path = str(path)
    try:
        with open(path, "rb") as file:
            return _read(file, path, os.fstat(file.fileno()).st_size)
    except WeightsError:
        raise
    except OSError as error:
        raise WeightsError(f"cannot read weights {path}: {error.strerror or error}") from error
    except _Malformed as error:
        raise WeightsError(f"{path} {UNUSABLE}: {error}") from error
    except EOFError as error:
        raise WeightsError(f"{path} {UNUSABLE}: it ends early; is it truncated?") from error
    except (pickle.UnpicklingError, ValueError, TypeError, KeyError, AttributeError, IndexError,
            struct.error, MemoryError) as error:
        raise WeightsError(f"{path} {UNUSABLE}: {type(error).__name__}: {error}") from error
