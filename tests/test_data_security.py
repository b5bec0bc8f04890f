"""A dataset from the internet is untrusted input: pickles that ask to run code and
archives that try to write outside their folder are refused before anything happens."""
from __future__ import annotations

import builtins
import io
import os
import pickle
import struct
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest

import npsenet as ns
from npsenet.data.download import safe_extract
from npsenet.data.safe_pickle import load_cifar_pickle

GOOD_META = {b"label_names": [f"class{k}".encode() for k in range(10)]}


def _write_cifar_folder(root: Path, batch_bytes: bytes) -> Path:
    """A cifar-10-batches-py/ whose test_batch holds the given pickle bytes."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    (folder / "batches.meta").write_bytes(pickle.dumps(GOOD_META, protocol=2))
    (folder / "test_batch").write_bytes(batch_bytes)
    return folder


def _os_system_pickle(marker: Path) -> bytes:
    """A protocol-0 pickle that calls os.system("touch <marker>") when loaded."""
    return f"cos\nsystem\n(V touch {marker}\ntR.".encode()


class _CallsEval:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return builtins.eval, (f"open({str(self.marker)!r}, 'w').close()",)


def test_pickle_asking_for_os_system_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "marker"
    payload = _os_system_pickle(marker)
    with pytest.raises(pickle.UnpicklingError,
                       match=r"refusing to load .*test_batch: it asks for os\.system; "
                             r"CIFAR files never contain code"):
        ns.data.CIFAR10(_write_cifar_folder(tmp_path / "data", payload).parent, train=False)
    assert not marker.exists()
    # the payload is real: plain pickle would have run it
    os_system_ran = pickle.loads(payload) == 0
    assert os_system_ran and marker.exists()


def test_pickle_calling_eval_inside_a_batch_is_refused(tmp_path):
    marker = tmp_path / "marker"
    batch = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [_CallsEval(marker)]}
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match=r"builtins\.eval"):
        load_cifar_pickle(path)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4])
def test_the_unpickler_accepts_what_cifar_files_contain(tmp_path, protocol):
    batch = {b"batch_label": b"testing batch 1 of 1", b"labels": [3, 1, 4],
             b"data": np.arange(3 * 3072, dtype=np.uint8).reshape(3, 3072),
             b"filenames": [b"a.png", b"b.png", b""]}
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps(batch, protocol=protocol))
    loaded = load_cifar_pickle(path)
    np.testing.assert_array_equal(loaded[b"data"], batch[b"data"])
    assert loaded[b"labels"] == [3, 1, 4] and loaded[b"filenames"][2] == b""


def _python2_batch_pickle(data: np.ndarray, labels) -> bytes:
    """A batch pickled as the official files were: Python 2, protocol 2, strings as
    SHORT_BINSTRING/BINSTRING and the array under ``numpy.core.multiarray._reconstruct``."""
    def short(text: bytes) -> bytes:
        return b"U" + bytes([len(text)]) + text
    raw = data.tobytes()
    rows, cols = data.shape
    return (b"\x80\x02}(" + short(b"data")
            + b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + short(b"b")
            + b"\x87R(K\x01K" + bytes([rows]) + b"M" + struct.pack("<H", cols) + b"\x86"
            + b"cnumpy\ndtype\n" + short(b"u1") + b"K\x00K\x01\x87R(K\x03" + short(b"|")
            + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89"
            + b"T" + struct.pack("<I", len(raw)) + raw + b"tb"
            + short(b"labels") + b"](" + b"".join(b"K" + bytes([k]) for k in labels) + b"eu.")


def test_the_unpickler_reads_the_official_python2_layout(tmp_path):
    data = (np.arange(3 * 3072) % 251).astype(np.uint8).reshape(3, 3072)
    folder = _write_cifar_folder(tmp_path, _python2_batch_pickle(data, [7, 0, 9]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no deprecated numpy.core import either
        test = ns.data.CIFAR10(folder, train=False)
    np.testing.assert_array_equal(test.images.reshape(3, -1), data)
    np.testing.assert_array_equal(test.labels, [7, 0, 9])
    assert test.classes[9] == "class9"


def test_codecs_encode_is_allowed_only_for_latin1(tmp_path):
    path = tmp_path / "batch"
    path.write_bytes(b"\x80\x02c_codecs\nencode\nX\x04\x00\x00\x00textX\x06\x00\x00\x00rot_13"
                     b"\x86R.")
    with pytest.raises(pickle.UnpicklingError, match="latin-1"):
        load_cifar_pickle(path)


@pytest.mark.parametrize("batch, message", [
    ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "uint8 array"),
    ({b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]}, r"\(N, 3072\)"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "one per image"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, r"\[0, 10\).*\[0, 10\]"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, -1]}, r"\[-1, 0\]"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": ["a", "b"]}, "integer labels"),
    ([1, 2, 3], "expected a pickled dict"),
])
def test_batch_contents_are_validated(tmp_path, batch, message):
    folder = _write_cifar_folder(tmp_path, pickle.dumps(batch, protocol=2))
    with pytest.raises(ValueError, match=message):
        ns.data.CIFAR10(folder, train=False)


# ---------------------------------------------------------------- tar extraction

def _tar_with(path: Path, *members) -> Path:
    """A gzipped tarball: a harmless file first, then the given (TarInfo, bytes) members."""
    with tarfile.open(path, "w:gz") as tar:
        harmless = tarfile.TarInfo("cifar-10-batches-py/readme.txt")
        harmless.size = 2
        tar.addfile(harmless, io.BytesIO(b"ok"))
        for info, payload in members:
            info.size = len(payload) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(payload) if info.isfile() else None)
    return path


def _member(name, kind=tarfile.REGTYPE, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, b"escaped!" if kind == tarfile.REGTYPE else b""


@pytest.mark.parametrize("member, reason", [
    (lambda outside: _member("cifar-10-batches-py/../../escape"), r"'\.\.' component"),
    (lambda outside: _member(str(outside / "escape")), "absolute path"),
    (lambda outside: _member("cifar-10-batches-py/link", tarfile.SYMTYPE, str(outside / "escape")),
     "a link"),
    (lambda outside: _member("cifar-10-batches-py/link", tarfile.SYMTYPE, "../../escape"), "a link"),
    (lambda outside: _member("cifar-10-batches-py/hard", tarfile.LNKTYPE, "/etc/passwd"), "a link"),
    (lambda outside: _member("cifar-10-batches-py/null", tarfile.CHRTYPE), "device file"),
    (lambda outside: _member("cifar-10-batches-py/pipe", tarfile.FIFOTYPE), "device file or FIFO"),
])
def test_unsafe_archives_are_rejected_and_write_nothing(tmp_path, member, reason):
    outside, root = tmp_path / "outside", tmp_path / "work" / "root"
    outside.mkdir()
    root.mkdir(parents=True)
    tarball = _tar_with(tmp_path / "evil.tar.gz", member(outside))
    with pytest.raises(ValueError, match=f"refusing to extract .*{reason}.*nothing was extracted"):
        safe_extract(tarball, root)
    assert list(root.iterdir()) == []  # not even the harmless first member
    assert list(outside.iterdir()) == []
    assert sorted(os.listdir(tmp_path)) == ["evil.tar.gz", "outside", "work"]


def test_a_safe_archive_extracts(tmp_path):
    tarball = _tar_with(tmp_path / "fine.tar.gz", _member("cifar-10-batches-py/data_batch_1"))
    safe_extract(tarball, tmp_path / "root", expected_folder="cifar-10-batches-py")
    folder = tmp_path / "root" / "cifar-10-batches-py"
    assert (folder / "data_batch_1").read_bytes() == b"escaped!"
    assert (folder / "readme.txt").read_bytes() == b"ok"
    assert sorted(os.listdir(tmp_path / "root")) == ["cifar-10-batches-py"]  # no staging left


def test_an_archive_without_the_expected_folder_is_refused(tmp_path):
    tarball = _tar_with(tmp_path / "other.tar.gz")
    with pytest.raises(RuntimeError, match="does not contain the folder cifar-100-python/"):
        safe_extract(tarball, tmp_path / "root", expected_folder="cifar-100-python")
    assert list((tmp_path / "root").iterdir()) == []
