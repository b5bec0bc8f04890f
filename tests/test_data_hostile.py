"""Hostile and damaged data files: tiny files that declare huge arrays, truncated or garbage
pickles, wrong types, a file as the data folder, downloads that never end or never stop.
Each ends in one line that names the file, with nothing big allocated on the way."""
from __future__ import annotations

import io
import os
import pickle
import struct
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
from helpers import raises_with_peak_memory

import npsenet as ns
from npsenet.data import DataFileError, download
from npsenet.data.safe_pickle import load_cifar_pickle, read_cifar_pickle

try:  # NumPy >= 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # NumPy 1.x
    from numpy.core.multiarray import _reconstruct

REPO = Path(__file__).resolve().parents[1]
META = {b"label_names": [f"class{k}".encode() for k in range(10)]}
PEAK_LIMIT = 50 * 1024 * 1024


class _Reduce:
    """Pickles as ``function(*args)`` followed by ``state`` (BUILD) when given."""

    def __init__(self, function, args, state=None):
        self.function, self.args, self.state = function, args, state

    def __reduce__(self):
        if self.state is None:
            return self.function, self.args
        return self.function, self.args, self.state


def _array_with_state(shape, dtype, fortran, raw):
    """An array pickled the way numpy does it, with a state of our choosing."""
    state = (1, shape, np.dtype(dtype), fortran, raw)
    return _Reduce(_reconstruct, (np.ndarray, (0,), b"b"), state)


def _batch(data, labels=None) -> bytes:
    return pickle.dumps({b"data": data, b"labels": [0] if labels is None else labels}, protocol=2)


# name -> the bytes of a hostile test_batch
HOSTILE = {
    "zero strides (3,000,000 images from 1 byte)": _batch(_Reduce(
        np.ndarray, ((3_000_000, 3072), np.dtype(np.uint8), b"x", 0, (0, 0)))),
    "_reconstruct asked for a TiB": _batch(_Reduce(_reconstruct, (np.ndarray, (2 ** 40,), b"b"))),
    "bytes(3 GB)": _batch(_Reduce(bytes, (3_000_000_000,))),
    "a huge shape over 3 bytes": _batch(
        _array_with_state((10 ** 6, 3072), np.uint8, False, b"abc")),
    "a shape of 2**70": _batch(_array_with_state((2 ** 70,), np.uint8, False, b"abc")),
    "a shape of a TiB over 3 bytes": _batch(_array_with_state((2 ** 40,), np.uint8, False, b"abc")),
    "Fortran order": _batch(_array_with_state((1, 3072), np.uint8, True, bytes(3072))),
    "object dtype": _batch(np.array([None, 1], dtype=object)),
    "a negative dimension": _batch(_array_with_state((-1, 3072), np.uint8, False, b"")),
    "an array without contents": _batch(_Reduce(_reconstruct, (np.ndarray, (0,), b"b"))),
    "a memo index of 2**31": b"\x80\x02K\x01r\xff\xff\xff\x7f.",
    "a bytes8 declaring 3 GB": b"\x80\x04\x8e" + struct.pack("<Q", 3 * 10 ** 9) + b"abc.",
    "truncated": _batch(np.zeros((2, 3072), np.uint8), [0, 1])[:3000],
    "empty": b"",
    "garbage": bytes(range(256)) * 8,
    "a list, not a dict": pickle.dumps([1, 2, 3], protocol=2),
    "data is a list": _batch(list(range(3072))),
    "no images": _batch(np.zeros((0, 3072), np.uint8), []),
    "labels are a dict": _batch(np.zeros((1, 3072), np.uint8), {0: 1}),
    "a label of 10**5000": _batch(np.zeros((1, 3072), np.uint8), [10 ** 5000]),
    "labels that are arrays": _batch(np.zeros((2, 3072), np.uint8), np.zeros((2, 2), np.int64)),
    "10,000 nested lists": b"\x80\x02" + b"]" * 10_000 + b"a" * 9_999 + b".",
    "an empty stack": b"\x80\x02a.",
    "a memo entry never stored": b"\x80\x02h\x05.",
    "a dict with an unhashable key": b"\x80\x02}]K\x01s.",
}


def _cifar_folder(root: Path, test_batch: bytes, meta: bytes | None = None) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    (folder / "batches.meta").write_bytes(meta or pickle.dumps(META, protocol=2))
    (folder / "test_batch").write_bytes(test_batch)
    return folder


def _one_line_naming(error: BaseException, name: str) -> str:
    text = str(error)
    assert "\n" not in text and name in text and len(text) < 1200, text
    return text


def _peak_while(function):
    """``function()``'s DataFileError and the peak memory traced while it ran."""
    caught, peak = raises_with_peak_memory(DataFileError, function)
    return caught.value, peak


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_batch_is_one_line_and_allocates_nothing_big(tmp_path, name):
    folder = _cifar_folder(tmp_path, HOSTILE[name])
    error, peak = _peak_while(lambda: ns.data.CIFAR10(folder, train=False))
    _one_line_naming(error, str(folder / "test_batch"))
    assert peak < PEAK_LIMIT, f"{name}: {peak / 1e6:.0f} MB traced"
    assert isinstance(error, ValueError)


def test_code_and_numpy_misuse_are_unpickling_errors_too(tmp_path):
    folder = _cifar_folder(tmp_path, HOSTILE["zero strides (3,000,000 images from 1 byte)"])
    with pytest.raises(pickle.UnpicklingError, match="calls numpy.ndarray directly"):
        ns.data.CIFAR10(folder, train=False)


def test_a_file_larger_than_its_limit_is_refused_before_reading(tmp_path):
    folder = _cifar_folder(tmp_path, b"")
    with open(folder / "test_batch", "wb") as f:  # sparse: 80 MiB declared, nothing written
        f.truncate(80 * 1024 * 1024)
    error, peak = _peak_while(lambda: ns.data.CIFAR10(folder, train=False))
    assert "83,886,080 bytes, more than the 67,108,864" in _one_line_naming(error, "test_batch")
    assert peak < 1024 * 1024  # not even read


def test_an_oversized_meta_file_is_refused(tmp_path):
    folder = _cifar_folder(tmp_path, _batch(np.zeros((1, 3072), np.uint8)),
                           meta=pickle.dumps({b"label_names": [b"x" * 100_000] * 10}))
    with pytest.raises(DataFileError, match=r"batches\.meta is .* bytes, more than the 65,536"):
        ns.data.CIFAR10(folder, train=False)


def test_more_images_than_the_format_holds_are_refused(tmp_path):
    class Tiny(ns.data.CIFAR10):
        file_limits = {"test_batch": (2, 1 << 20)}

    folder = _cifar_folder(tmp_path, _batch(np.zeros((3, 3072), np.uint8), [0, 1, 2]))
    with pytest.raises(DataFileError, match="holds 3 images, more than the 2"):
        Tiny(folder, train=False)


def test_too_many_pickle_operations_are_refused_before_unpickling(tmp_path):
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps(list(range(20_000)), protocol=2))
    with pytest.raises(DataFileError, match="more than 10,000 pickle operations"):
        read_cifar_pickle(path, max_bytes=1 << 20, max_images=0)
    nested = tmp_path / "nested"  # 200,000 nested lists: 400,000 operations
    nested.write_bytes(b"\x80\x02" + b"]" * 200_000 + b"a" * 199_999 + b".")
    with pytest.raises(DataFileError, match="more than 250,000 pickle operations"):
        read_cifar_pickle(nested, max_bytes=1 << 20, max_images=10_000)


def test_a_device_is_not_a_data_file(tmp_path):
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    with pytest.raises(DataFileError, match="/dev/zero is not a regular file"):
        load_cifar_pickle("/dev/zero")


def test_a_folder_that_is_a_file_or_lacks_files_is_one_line(tmp_path):
    a_file = tmp_path / "data.txt"
    a_file.write_text("not a folder")
    with pytest.raises(DataFileError, match="data.txt is a file, expected a folder"):
        ns.data.CIFAR10(a_file)
    (tmp_path / "d" / "cifar-10-batches-py").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="lacks batches.meta, data_batch_1") as caught:
        ns.data.CIFAR10(tmp_path / "d")
    assert "\n" not in str(caught.value)
    dataset_file = tmp_path / "e" / "cifar-10-batches-py"
    dataset_file.parent.mkdir()
    dataset_file.write_bytes(b"")
    with pytest.raises(DataFileError, match="cifar-10-batches-py is a file"):
        ns.data.CIFAR10(tmp_path / "e")


def test_an_unreadable_folder_or_file_is_one_line(tmp_path, monkeypatch):
    """Permissions do not bind root, so the refusals are simulated where the code asks."""
    from npsenet.data import cifar, safe_pickle
    folder = _cifar_folder(tmp_path, _batch(np.zeros((1, 3072), np.uint8)))

    def denied(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(safe_pickle, "open", denied, raising=False)
    with pytest.raises(DataFileError, match=r"cannot read .*batches\.meta \(Permission denied\)"):
        ns.data.CIFAR10(folder, train=False)
    monkeypatch.undo()
    monkeypatch.setattr(cifar.os, "access", lambda path, mode: Path(path) != folder)
    with pytest.raises(DataFileError, match="cannot read the folder .*cifar-10-batches-py "
                                            r"\(permission denied\)") as caught:
        ns.data.CIFAR10(folder, train=False)
    _one_line_naming(caught.value, str(folder))


def test_the_real_subset_still_loads_and_its_files_are_within_limits(cifar_subset_root):
    train = ns.data.CIFAR10(cifar_subset_root, train=True)
    test = ns.data.CIFAR10(cifar_subset_root, train=False)
    assert (len(train), len(test)) == (4660, 466)
    assert train.images.flags.writeable and train.images.dtype == np.uint8
    assert train.files["batches.meta"]["official"]  # the meta file is the original
    for name, info in {**train.files, **test.files}.items():
        assert info["size"] <= 64 * 1024 * 1024 and len(info["md5"]) == 32, name


# ---------------------------------------------------------------- the command line

def _train(tmp_path, data_dir) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), OPENBLAS_NUM_THREADS="1", MPLBACKEND="Agg")
    return subprocess.run(
        [sys.executable, "-m", "npsenet", "train", "--data-dir", str(data_dir), "--epochs", "1",
         "--limit-train", "8", "--limit-test", "8", "--batch-size", "4", "--no-download",
         "--no-progress", "--out", str(tmp_path / "run")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def _train_folder(tmp_path, batch: bytes) -> Path:
    folder = _cifar_folder(tmp_path / "data", batch)
    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(batch)
    return folder.parent


@pytest.mark.parametrize("case", ["zero strides", "truncated", "a file as data dir"])
def test_the_cli_says_one_line_and_exits_2(tmp_path, case):
    if case == "a file as data dir":
        data_dir = tmp_path / "data.bin"
        data_dir.write_bytes(b"x")
    else:
        key = next(k for k in HOSTILE if k.startswith(case))
        data_dir = _train_folder(tmp_path, HOSTILE[key])
    result = _train(tmp_path, data_dir)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("npsenet train: error: ")
    assert ("data_batch_1" in lines[0]) or ("data.bin is a file" in lines[0]), lines[0]
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


# ---------------------------------------------------------------- archives

def test_a_truncated_archive_is_one_line_and_extracts_nothing(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        entry = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        payload = os.urandom(50_000)
        entry.size = len(payload)
        tar.addfile(entry, io.BytesIO(payload))
    tarball = tmp_path / "cut.tar.gz"
    tarball.write_bytes(buffer.getvalue()[:20_000])
    root = tmp_path / "root"
    with pytest.raises(DataFileError, match="cut.tar.gz is damaged") as caught:
        download.safe_extract(tarball, root)
    _one_line_naming(caught.value, "cut.tar.gz")
    assert list(root.iterdir()) == []


def test_an_archive_that_unpacks_too_big_is_refused(tmp_path):
    tarball = tmp_path / "big.tar"
    with tarfile.open(tarball, "w") as tar:
        entry = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        entry.size = 2048
        tar.addfile(entry, io.BytesIO(bytes(2048)))
    with pytest.raises(DataFileError, match="add up to 2,048 bytes, more than the 1,024"):
        download.safe_extract(tarball, tmp_path / "root", max_bytes=1024)
    assert list((tmp_path / "root").iterdir()) == []


# ---------------------------------------------------------------- downloads

class _FakeResponse:
    """A urlopen() response: ``chunks`` one by one, with an optional Content-Length."""

    def __init__(self, chunks, length=None, on_read=None):
        self.chunks, self.on_read = list(chunks), on_read
        self.headers = {} if length is None else {"Content-Length": str(length)}
        self.asked = []

    def read(self, n):
        self.asked.append(n)
        if self.on_read:
            self.on_read()
        return self.chunks.pop(0)[:n] if self.chunks else b""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _fake_urlopen(monkeypatch, response):
    monkeypatch.setattr(download.urllib.request, "urlopen", lambda url, timeout: response)


def test_a_server_sending_more_than_expected_is_cut_off(tmp_path, monkeypatch):
    response = _FakeResponse([b"a" * 60, b"b" * 60, b"c" * 10 ** 6])
    _fake_urlopen(monkeypatch, response)
    with pytest.raises(RuntimeError, match="sent more than the 100 bytes expected") as caught:
        download.fetch("http://x/f.tar.gz", tmp_path / "f.tar.gz", md5="0" * 32, size=100,
                       progress=False)
    assert "\n" not in str(caught.value)
    assert max(response.asked) <= 101  # never asked for more than the size allows
    assert list(tmp_path.iterdir()) == []


def test_a_larger_content_length_is_refused_before_reading(tmp_path, monkeypatch):
    response = _FakeResponse([b"a" * 10], length=3 * 10 ** 9)
    _fake_urlopen(monkeypatch, response)
    with pytest.raises(RuntimeError, match="announces 3,000,000,000 bytes, expected 100"):
        download.fetch("http://x/f", tmp_path / "f", md5="0" * 32, size=100, progress=False)
    assert response.asked == [] and list(tmp_path.iterdir()) == []


def test_a_trickling_server_meets_the_deadline(tmp_path, monkeypatch):
    clock = iter(range(0, 10 ** 6, 10))  # every read takes 10 "seconds"
    monkeypatch.setattr(download.time, "monotonic", lambda: next(clock))
    response = _FakeResponse([b"x"] * 1000)
    _fake_urlopen(monkeypatch, response)
    with pytest.raises(RuntimeError, match=r"too slow: only \d+ of 1,000 bytes arrived within "
                                           r"the deadline of 35 s") as caught:
        download.fetch("http://x/f", tmp_path / "f", md5="0" * 32, size=1000, progress=False,
                       deadline_s=35)
    assert "\n" not in str(caught.value) and len(response.asked) <= 5
    assert list(tmp_path.iterdir()) == []


def test_a_stalled_local_server_fails_within_the_deadline(tmp_path):
    """A real socket: the server sends its headers and one byte, then nothing."""
    import socket
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    done = threading.Event()

    def serve():
        connection, _ = listener.accept()
        connection.recv(65536)
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nx")
        done.wait(10)
        connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with pytest.raises(RuntimeError, match="could not download|too slow") as caught:
            download.fetch(f"http://127.0.0.1:{listener.getsockname()[1]}/f", tmp_path / "f",
                           md5="0" * 32, size=100, progress=False, deadline_s=1)
        assert "\n" not in str(caught.value)
        assert list(tmp_path.iterdir()) == []
    finally:
        done.set()
        thread.join(5)
        listener.close()


# ---------------------------------------------------------------- fingerprints

def test_fingerprints_tell_data_apart(tmp_path):
    import json
    folder = _cifar_folder(tmp_path / "a", _batch(np.zeros((2, 3072), np.uint8), [0, 1]))
    first = ns.data.data_fingerprint(ns.data.CIFAR10(folder, train=False))
    assert json.loads(json.dumps(first)) == first
    assert first["kind"] == "cifar10" and first["images"] == 2 and first["split"] == "test"
    assert set(first["files"]) == {"batches.meta", "test_batch"}
    same = ns.data.data_fingerprint(ns.data.CIFAR10(folder, train=False))
    assert ns.data.describe_fingerprint_mismatch(first, same) is None
    assert ns.data.describe_fingerprint_mismatch(first, ns.data.data_fingerprint(folder)) is None
    (folder / "test_batch").write_bytes(_batch(np.ones((2, 3072), np.uint8), [0, 1]))
    changed = ns.data.describe_fingerprint_mismatch(
        first, ns.data.data_fingerprint(ns.data.CIFAR10(folder, train=False)))
    assert changed and "\n" not in changed and "test_batch" in changed
    synthetic = ns.data.data_fingerprint(ns.data.SyntheticCIFAR(num_samples=20, seed=3))
    assert synthetic["seed"] == 3 and synthetic["images"] == 20
    assert "dataset cifar10 then, synthetic now" in \
        ns.data.describe_fingerprint_mismatch(first, synthetic)
    other_seed = ns.data.data_fingerprint(ns.data.SyntheticCIFAR(num_samples=20, seed=4))
    assert "seed 3 then, 4 now" in ns.data.describe_fingerprint_mismatch(synthetic, other_seed)
    assert ns.data.describe_fingerprint_mismatch(synthetic, ns.data.data_fingerprint(
        ns.data.SyntheticCIFAR(num_samples=20, seed=3))) is None
    assert "unreadable" in ns.data.describe_fingerprint_mismatch([], first)
