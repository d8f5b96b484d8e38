"""Finding, downloading, extracting, verifying and reading VGG-16 weights. Offline: HTTP is a local server."""

from __future__ import annotations

import http.server
import io
import json
import sys
import tarfile
import threading
from pathlib import Path

import h5py
import numpy as np
import pytest

import vgg_fixture  # noqa: E402

from indexer.errors import DownloadError, WeightsError  # noqa: E402
from indexer.models import load_model  # noqa: E402
from indexer.models import weights  # noqa: E402

PAYLOAD = np.random.default_rng(3).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
CUT_AFTER = 100_000
PREFIX_BYTES = 1 << 20
POLL_SECONDS = 0.05




@pytest.fixture()
def cache(monkeypatch, tmp_path) -> Path:
    """An empty imgidx cache, no weights in the environment, no proxy between us and 127.0.0.1."""
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(weights.WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    return tmp_path / "cache" / weights.CACHE_SUBDIR


def small_checkpoint(path: Path) -> Path:
    """A readable V1 checkpoint that is not VGG-16: conv1_1 has 32 filters and the rest is missing."""
    import tensorflow as tf

    tf.raw_ops.Save(
        filename=str(path),
        tensor_names=["vgg_16/conv1/conv1_1/weights", "global_step"],
        data=[np.zeros((3, 3, 3, 32), np.float32), np.array(0, np.int64)],
    )
    return path


def prefix_copy(source: Path, dest: Path, size: int = PREFIX_BYTES) -> Path:
    with open(source, "rb") as handle:
        dest.write_bytes(handle.read(size))
    return dest


# ----------------------------------------------------------------------------------------- resolving


def test_resolution_order_explicit_then_env_then_cache(cache, tmp_path, monkeypatch):
    explicit, env = tmp_path / "explicit.ckpt", tmp_path / "env.ckpt"
    explicit.touch()
    env.touch()
    cache.mkdir(parents=True)
    (cache / weights.VGG16_CHECKPOINT_NAME).touch()
    assert weights.resolve_vgg16_weights() == cache / weights.VGG16_CHECKPOINT_NAME
    monkeypatch.setenv(weights.WEIGHTS_ENV, str(env))
    assert weights.resolve_vgg16_weights() == env
    assert weights.resolve_vgg16_weights(str(explicit)) == explicit
    with pytest.raises(WeightsError, match=r"--weights .*nowhere\.ckpt: no such file"):
        weights.resolve_vgg16_weights(str(tmp_path / "nowhere.ckpt"))
    monkeypatch.setenv(weights.WEIGHTS_ENV, str(tmp_path / "gone.ckpt"))
    with pytest.raises(WeightsError, match=r"IMGIDX_VGG16_WEIGHTS .*gone\.ckpt: no such file"):
        weights.resolve_vgg16_weights()


def test_no_weights_says_what_to_run_or_pass(cache):
    with pytest.raises(WeightsError) as caught:
        load_model("vgg16")
    message = str(caught.value)
    hints = ("`imgidx weights fetch vgg16`", "--weights PATH", "IMGIDX_VGG16_WEIGHTS", "--model efficientnet-lite0")
    assert all(hint in message for hint in hints)
    assert str(cache) in message


# -------------------------------------------------------------------------------------------- reading


def test_checkpoint_gives_every_network_tensor(vgg_files, cache):
    tensors, path = weights.read_vgg16_weights(str(vgg_files.checkpoint))
    assert path == vgg_files.checkpoint
    assert set(tensors) == set(weights.VGG16_SHAPES)  # mean_rgb and global_step are not network tensors
    for name, value in tensors.items():
        assert value.dtype == np.float32
        np.testing.assert_array_equal(value, vgg_files.tensors[name])


def test_keras_h5_is_mapped_to_slim_names_with_rgb_input(vgg_files, cache):
    tensors, _ = weights.read_vgg16_weights(str(vgg_files.h5))
    for name, value in tensors.items():
        np.testing.assert_array_equal(value, vgg_files.tensors[name])
    with h5py.File(vgg_files.h5, "r") as handle:
        keras_conv1 = handle["block1_conv1/block1_conv1_W_1:0"][()]
        assert handle["fc1/fc1_W_1:0"].shape == (25088, 4096)
    slim_conv1 = tensors["vgg_16/conv1/conv1_1/weights"]
    np.testing.assert_array_equal(keras_conv1[:, :, ::-1, :], slim_conv1)  # Keras BGR -> slim RGB
    assert not np.array_equal(keras_conv1, slim_conv1)


def test_checkpoint_of_another_network_is_refused(tmp_path, cache):
    path = small_checkpoint(tmp_path / "other.ckpt")
    with pytest.raises(WeightsError) as caught:
        weights.read_vgg16_weights(str(path))
    message = str(caught.value)
    assert str(path) in message
    assert "missing vgg_16/conv1/conv1_1/biases, vgg_16/conv1/conv1_2/weights" in message
    assert "vgg_16/conv1/conv1_1/weights is [3, 3, 3, 32], the network needs [3, 3, 3, 64]" in message


def test_h5_with_missing_or_misshapen_layers_is_refused(tmp_path, cache):
    partial = tmp_path / "partial.h5"
    with h5py.File(partial, "w") as handle:
        handle["block1_conv1/block1_conv1_W_1:0"] = np.zeros((3, 3, 3, 64), np.float32)
        handle["block1_conv1/block1_conv1_b_1:0"] = np.zeros(64, np.float32)
    with pytest.raises(WeightsError, match=r"partial\.h5: not Keras VGG16 weights: missing layers block1_conv2"):
        weights.read_vgg16_weights(str(partial))
    misshapen = tmp_path / "misshapen.h5"
    with h5py.File(misshapen, "w") as handle:
        for _, keras in weights.VGG16_LAYERS.values():
            handle[f"{keras}/{keras}_W_1:0"] = np.zeros((1, 1, 3, 8), np.float32)
            handle[f"{keras}/{keras}_b_1:0"] = np.zeros(8, np.float32)
    with pytest.raises(WeightsError, match=r"layer block1_conv1 has kernel \[1, 1, 3, 8\].*needs \[3, 3, 3, 64\]"):
        weights.read_vgg16_weights(str(misshapen))


def test_non_finite_weights_are_refused(vgg_files):
    tensors = dict(vgg_files.tensors)
    broken = tensors["vgg_16/fc7/biases"].copy()
    broken[7] = np.nan
    tensors["vgg_16/fc7/biases"] = broken
    with pytest.raises(WeightsError, match="vgg_16/fc7/biases contains NaN"):
        weights.check_vgg16_tensors(tensors, "somefile")


def test_truncated_files_are_refused(vgg_files, tmp_path, cache):
    checkpoint = prefix_copy(vgg_files.checkpoint, tmp_path / "vgg_16.ckpt")
    with pytest.raises(WeightsError, match=r"vgg_16\.ckpt: not a readable TensorFlow checkpoint"):
        weights.read_vgg16_weights(str(checkpoint))
    h5 = prefix_copy(vgg_files.h5, tmp_path / weights.KERAS_H5_NAME)
    with pytest.raises(WeightsError, match=r"tf_kernels\.h5: (not a readable HDF5 file|cannot read layer)"):
        weights.read_vgg16_weights(str(h5))
    archive = tmp_path / "good.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(small_checkpoint(tmp_path / "small.ckpt"), arcname=weights.VGG16_CHECKPOINT_NAME)
    cut = prefix_copy(archive, tmp_path / weights.VGG16_ARCHIVE_NAME, archive.stat().st_size // 2)
    with pytest.raises(WeightsError, match=r"2016_08_28\.tar\.gz: not a complete, readable tar\.gz archive"):
        weights.read_vgg16_weights(str(cut))


def test_changed_cached_checkpoint_is_refused(tmp_path, cache):
    cache.mkdir(parents=True)
    checkpoint = small_checkpoint(cache / weights.VGG16_CHECKPOINT_NAME)
    weights.record_checksums(checkpoint)
    assert weights.verify_checksums(checkpoint)
    data = bytearray(checkpoint.read_bytes())
    data[len(data) // 2] ^= 0xFF
    checkpoint.write_bytes(bytes(data))
    with pytest.raises(WeightsError) as caught:
        weights.read_vgg16_weights()
    assert "sha256" in str(caught.value) and "run `imgidx weights fetch vgg16` again" in str(caught.value)
    checkpoint.write_bytes(bytes(data[:-10]))
    with pytest.raises(WeightsError, match="truncated or replaced"):
        weights.read_vgg16_weights()


# ------------------------------------------------------------------------------------------ extraction


def _tar_with(tmp_path: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        harmless = tarfile.TarInfo("readme.txt")
        harmless.size = 2
        tar.addfile(harmless, io.BytesIO(b"ok"))
        member.size = len(data) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return archive


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


@pytest.mark.parametrize(
    "member, reason",
    [
        (_member("../evil"), "leaves the extraction directory"),
        (_member("sub/../../evil"), "leaves the extraction directory"),
        (_member("/tmp/imgidx-evil-absolute"), "leaves the extraction directory"),
        (_member("link", tarfile.SYMTYPE, "/etc/passwd"), "a symbolic link"),
        (_member("hard", tarfile.LNKTYPE, "readme.txt"), "a hard link"),
        (_member("dev", tarfile.CHRTYPE), "a device"),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink", "hardlink", "device"],
)
def test_unsafe_archive_members_are_refused(tmp_path, member, reason):
    archive = _tar_with(tmp_path, member, b"pwned")
    target = tmp_path / "target"
    with pytest.raises(WeightsError, match=f"refusing archive member .*{reason}"):
        weights.safe_extract(archive, target)
    assert not (tmp_path / "evil").exists()
    assert not Path("/tmp/imgidx-evil-absolute").exists()
    assert not any(p.is_symlink() for p in target.rglob("*"))


def test_archive_without_checkpoint_is_refused(tmp_path, cache):
    archive = tmp_path / "empty.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("notes.txt")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(WeightsError, match=r"contains no vgg_16\.ckpt"):
        weights.read_vgg16_weights(str(archive))


# -------------------------------------------------------------------------------------------- download


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.payload`` (bytes or a file path) with optional Range support, cuts and lies."""

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        server = self.server
        server.requests.append(self.headers.get("Range"))
        payload = server.payload
        size = payload.stat().st_size if isinstance(payload, Path) else len(payload)
        start = 0
        asked = self.headers.get("Range")
        if asked and server.honour_range:
            start = int(asked.split("=")[1].split("-")[0])
            if start >= size:
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        else:
            self.send_response(200)
        if not server.omit_length:
            self.send_header("Content-Length", str(size - start))
        self.end_headers()
        limit = size - start if server.cut_after is None else min(size - start, server.cut_after)
        body = server.extra
        if isinstance(payload, Path):
            with open(payload, "rb") as handle:
                handle.seek(start)
                while limit > 0 and (chunk := handle.read(min(limit, 1 << 20))):
                    self.wfile.write(chunk)
                    limit -= len(chunk)
        else:
            self.wfile.write(payload[start:start + limit])
        self.wfile.write(body)
        server.cut_after = None
        self.close_connection = True


@pytest.fixture()
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.payload, httpd.requests = PAYLOAD, []
    httpd.cut_after, httpd.honour_range, httpd.omit_length, httpd.extra = None, True, False, b""
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/vgg_16_2016_08_28.tar.gz"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": POLL_SECONDS}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_interrupted_download_resumes_with_a_range_request(server, cache, tmp_path):
    dest = tmp_path / "archive.tar.gz"
    server.cut_after = CUT_AFTER
    with pytest.raises(DownloadError, match=f"stopped at {CUT_AFTER} of {len(PAYLOAD)} bytes.*again to resume"):
        weights.download(server.url, dest, len(PAYLOAD))
    assert (tmp_path / "archive.tar.gz.part").stat().st_size == CUT_AFTER
    seen: list[tuple[int, int]] = []
    assert weights.download(server.url, dest, len(PAYLOAD), progress=lambda d, t: seen.append((d, t))) == dest
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "archive.tar.gz.part").exists()
    assert server.requests == [None, f"bytes={CUT_AFTER}-"]
    assert seen[0] == (CUT_AFTER, len(PAYLOAD)) and seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    dest = tmp_path / "archive.tar.gz"
    (tmp_path / "archive.tar.gz.part").write_bytes(b"x" * CUT_AFTER)
    server.honour_range = False
    weights.download(server.url, dest, len(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD


def test_wrong_size_download_is_refused(server, tmp_path):
    dest = tmp_path / "archive.tar.gz"
    with pytest.raises(DownloadError, match=f"offers {len(PAYLOAD)} bytes, expected exactly {len(PAYLOAD) + 1}"):
        weights.download(server.url, dest, len(PAYLOAD) + 1)
    server.omit_length, server.extra = True, b"trailing junk"
    with pytest.raises(DownloadError, match=f"sent more than {len(PAYLOAD)} bytes"):
        weights.download(server.url, dest, len(PAYLOAD))
    assert not dest.exists() and not (tmp_path / "archive.tar.gz.part").exists()


def test_partial_file_longer_than_the_servers_file_is_refused(server, tmp_path):
    part = tmp_path / "archive.tar.gz.part"
    part.write_bytes(PAYLOAD)
    with pytest.raises(DownloadError, match="shorter than the 300000 bytes already downloaded"):
        weights.download(server.url, tmp_path / "archive.tar.gz", len(PAYLOAD) + 10)
    assert not part.exists()


def test_fetch_extracts_records_and_verifies(vgg_files, server, cache, tmp_path):
    """The whole fetch against a local copy of the archive layout: download, extract, checksums, load."""
    archive = tmp_path / weights.VGG16_ARCHIVE_NAME
    with tarfile.open(archive, "w:gz", compresslevel=0) as tar:  # stored gzip: fast to build
        tar.add(vgg_files.checkpoint, arcname=weights.VGG16_CHECKPOINT_NAME)
    server.payload = archive
    size = archive.stat().st_size
    seen: list[int] = []
    checkpoint = weights.fetch_vgg16(lambda done, total: seen.append(done), url=server.url, expected_size=size)
    assert checkpoint == cache / weights.VGG16_CHECKPOINT_NAME
    assert seen[-1] == size
    assert not (cache / weights.VGG16_ARCHIVE_NAME).exists()
    record = json.loads((cache / weights.CHECKSUMS_NAME).read_text())
    assert record["archive"] == {
        "name": weights.VGG16_ARCHIVE_NAME, "size": size, "sha256": weights.sha256_file(archive)
    }
    assert record["checkpoint"]["sha256"] == weights.sha256_file(vgg_files.checkpoint)
    assert sorted(p.name for p in cache.iterdir()) == [weights.CHECKSUMS_NAME, weights.VGG16_CHECKPOINT_NAME]

    assert weights.fetch_vgg16(url=server.url, expected_size=size) == checkpoint
    assert len(server.requests) == 1  # already there and verified: no second download
    tensors, path = weights.read_vgg16_weights()
    assert path == checkpoint
    np.testing.assert_array_equal(tensors["vgg_16/fc8/biases"], vgg_files.tensors["vgg_16/fc8/biases"])
    del tensors
    mtime = checkpoint.stat().st_mtime_ns
    assert weights.read_vgg16_weights(str(archive))[1] == checkpoint  # same archive: not extracted again
    assert checkpoint.stat().st_mtime_ns == mtime

    with open(checkpoint, "r+b") as handle:
        handle.seek(size // 2)
        byte = handle.read(1)
        handle.seek(size // 2)
        handle.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(WeightsError, match=r"vgg_16\.ckpt: sha256 .* differs .*`imgidx weights fetch vgg16` again"):
        weights.read_vgg16_weights()
    archive.unlink()
    checkpoint.unlink()


def test_weights_fetch_command_downloads_and_reports_in_one_line(vgg_files, server, cache, tmp_path, monkeypatch):
    """`imgidx weights fetch vgg16` end to end, pointed at a local server holding a small archive."""
    import functools

    from click.testing import CliRunner

    from indexer.cli import cli

    archive = tmp_path / weights.VGG16_ARCHIVE_NAME
    with tarfile.open(archive, "w:gz", compresslevel=0) as tar:
        tar.add(vgg_files.checkpoint, arcname=weights.VGG16_CHECKPOINT_NAME)
    server.payload = archive
    server.handle_error = lambda request, address: None  # the refused download's dropped connection is no news
    real_fetch = weights.fetch_vgg16
    monkeypatch.setattr(weights, "fetch_vgg16", functools.partial(real_fetch, url=server.url, expected_size=1))
    failed = CliRunner().invoke(cli, ["weights", "fetch", "vgg16"], prog_name="imgidx")
    assert failed.exit_code == 1
    assert len(failed.stderr.splitlines()) == 1 and failed.stderr.startswith("Error: ")
    assert "expected exactly 1" in failed.stderr

    size = archive.stat().st_size
    monkeypatch.setattr(weights, "fetch_vgg16", functools.partial(real_fetch, url=server.url, expected_size=size))
    result = CliRunner().invoke(cli, ["weights", "fetch", "vgg16"], prog_name="imgidx")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"vgg16 weights ready: {cache / weights.VGG16_CHECKPOINT_NAME}\n"
