"""Downloading CIFAR: a small archive in the official layout, served from a local HTTP
server, goes through download, size and MD5 checks, safe extraction and loading."""
from __future__ import annotations

import hashlib
import http.server
import io
import pickle
import sys
import tarfile
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest

import npsenet as ns
from npsenet.data import download
from npsenet.data.download import Archive

PER_CLASS = 2  # images per class in every batch file


def _batch(rng, num_classes, label_keys):
    labels = np.tile(np.arange(num_classes), PER_CLASS)
    batch = {b"batch_label": b"a small batch", b"filenames": [b"x.png"] * len(labels),
             b"data": rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)}
    for key in label_keys:
        batch[key] = labels.tolist()
    return batch


def make_cifar_tarball(path: Path, name: str = "cifar10", seed: int = 0) -> Path:
    """A tiny CIFAR-10 (or CIFAR-100) archive with the official folder, files and keys."""
    rng = np.random.default_rng(seed)
    if name == "cifar10":
        folder = "cifar-10-batches-py"
        meta = ("batches.meta", {b"label_names": [f"class{k}".encode() for k in range(10)],
                                 b"num_cases_per_batch": 10000, b"num_vis": 3072})
        files = {f"data_batch_{i}": _batch(rng, 10, [b"labels"]) for i in range(1, 6)}
        files["test_batch"] = _batch(rng, 10, [b"labels"])
    else:
        folder = "cifar-100-python"
        meta = ("meta", {b"fine_label_names": [f"fine{k}".encode() for k in range(100)],
                         b"coarse_label_names": [f"coarse{k}".encode() for k in range(20)]})
        files = {split: _batch(rng, 100, [b"fine_labels"]) for split in ("train", "test")}
        for batch in files.values():
            batch[b"coarse_labels"] = [k // 5 for k in batch[b"fine_labels"]]
    files[meta[0]] = meta[1]
    with tarfile.open(path, "w:gz") as tar:
        folder_entry = tarfile.TarInfo(folder)
        folder_entry.type, folder_entry.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(folder_entry)
        for filename, content in files.items():
            payload = pickle.dumps(content, protocol=2)
            entry = tarfile.TarInfo(f"{folder}/{filename}")
            entry.size = len(payload)
            tar.addfile(entry, io.BytesIO(payload))
    return path


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output quiet
        pass

    def do_GET(self):
        if self.path.startswith("/drop/"):  # promise the whole file, send half, hang up
            body = (Path(self.directory) / self.path[len("/drop/"):]).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[:len(body) // 2])
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture
def server(tmp_path):
    """A local HTTP server on a free port serving tmp_path/served; yields its base URL."""
    served = tmp_path / "served"
    served.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            partial(_Handler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _md5(path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def _serve_archive(served: Path, name="cifar10") -> Path:
    return make_cifar_tarball(served / download.ARCHIVES[name].filename, name)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_download_checks_extracts_and_loads(server, tmp_path, monkeypatch, name):
    base, served = server
    tarball = _serve_archive(served, name)
    official = download.ARCHIVES[name]
    monkeypatch.setitem(download.ARCHIVES, name, Archive(
        f"{base}/{tarball.name}", _md5(tarball), tarball.stat().st_size, official.folder))
    root = tmp_path / "data"
    dataset_class = ns.data.CIFAR10 if name == "cifar10" else ns.data.CIFAR100
    train = dataset_class(root, train=True, download=True)
    test = dataset_class(root, train=False, download=True)
    num_classes = 10 if name == "cifar10" else 100
    assert len(train) == num_classes * PER_CLASS * (5 if name == "cifar10" else 1)
    assert len(test) == num_classes * PER_CLASS
    assert train.images.shape == (len(train), 3, 32, 32) and train.images.dtype == np.uint8
    assert train.labels.dtype == np.int64 and len(train.classes) == num_classes
    assert sorted(set(train.labels.tolist())) == list(range(num_classes))
    if name == "cifar100":
        assert train.classes[7] == "fine7" and len(train.coarse_classes) == 20
        np.testing.assert_array_equal(train.coarse_labels, train.labels // 5)
    # the checked archive is kept, no partial file or staging folder is left behind
    assert sorted(p.name for p in root.iterdir()) == sorted([official.folder, tarball.name])
    with tarfile.open(tarball) as tar:  # the images are the archive's, byte for byte
        first = tar.extractfile(f"{official.folder}/{'test_batch' if name == 'cifar10' else 'test'}")
        np.testing.assert_array_equal(
            test.images.reshape(len(test), -1), pickle.load(first, encoding="bytes")[b"data"])


def test_download_cifar_overrides_url_md5_and_size(server, tmp_path):
    base, served = server
    tarball = _serve_archive(served)
    folder = download.download_cifar("cifar10", tmp_path / "data", url=f"{base}/{tarball.name}",
                                     progress=False, md5=_md5(tarball),
                                     size=tarball.stat().st_size)
    assert folder == tmp_path / "data" / "cifar-10-batches-py"
    assert len(ns.data.CIFAR10(folder, train=False)) == 10 * PER_CLASS


def test_wrong_md5_is_refused_and_removed(server, tmp_path):
    base, served = server
    tarball = _serve_archive(served)
    root = tmp_path / "data"
    with pytest.raises(RuntimeError, match="MD5 .* expected 0+1.*deleted"):
        download.download_cifar("cifar10", root, url=f"{base}/{tarball.name}", progress=False,
                                md5="0" * 31 + "1", size=tarball.stat().st_size)
    assert list(root.iterdir()) == []


def test_short_download_is_refused_and_removed(server, tmp_path):
    base, served = server
    tarball = _serve_archive(served)
    full_size, full_md5 = tarball.stat().st_size, _md5(tarball)
    tarball.write_bytes(tarball.read_bytes()[:full_size // 3])  # the server has a cut file
    root = tmp_path / "data"
    with pytest.raises(RuntimeError, match=f"got {full_size // 3:,} bytes, expected {full_size:,}"):
        download.download_cifar("cifar10", root, url=f"{base}/{tarball.name}", progress=False,
                                md5=full_md5, size=full_size)
    assert list(root.iterdir()) == []


def test_dropped_connection_is_refused_and_removed(server, tmp_path):
    base, served = server
    tarball = _serve_archive(served)
    root = tmp_path / "data"
    with pytest.raises(RuntimeError, match="incomplete or corrupt.*deleted.*by hand"):
        download.download_cifar("cifar10", root, url=f"{base}/drop/{tarball.name}",
                                progress=False, md5=_md5(tarball), size=tarball.stat().st_size)
    assert list(root.iterdir()) == []


def test_unreachable_server_says_what_to_do(server, tmp_path):
    base, _ = server
    with pytest.raises(RuntimeError, match="could not download.*404.*by hand"):
        download.download_cifar("cifar10", tmp_path, url=f"{base}/missing.tar.gz", progress=False,
                                md5="0" * 32, size=1)
    assert list(tmp_path.iterdir()) == [tmp_path / "served"]


def test_a_verified_archive_already_there_is_not_downloaded_again(tmp_path):
    tarball = make_cifar_tarball(tmp_path / "cifar-10-python.tar.gz")
    folder = download.download_cifar("cifar10", tmp_path, url="http://127.0.0.1:9/never",
                                     progress=False, md5=_md5(tarball),
                                     size=tarball.stat().st_size)
    assert (folder / "data_batch_5").is_file()


def test_progress_without_tqdm_prints_plain_lines(server, tmp_path, monkeypatch, capsys):
    base, served = server
    tarball = _serve_archive(served)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # `from tqdm.auto import ...` fails
    download.download_cifar("cifar10", tmp_path / "data", url=f"{base}/{tarball.name}",
                            progress=True, md5=_md5(tarball), size=tarball.stat().st_size)
    assert "100%" in capsys.readouterr().err


def test_cache_dir_follows_npsenet_data(tmp_path, monkeypatch):
    monkeypatch.setenv("NPSENET_DATA", str(tmp_path / "cache"))
    assert download.cache_dir() == tmp_path / "cache"
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "cache" / "cifar-10-batches-py")):
        ns.data.CIFAR10(train=False)
    (tmp_path / "cache").mkdir()
    tarball = make_cifar_tarball(tmp_path / "cache" / "cifar-10-python.tar.gz")
    folder = download.download_cifar("cifar10", progress=False, url="http://127.0.0.1:9/never",
                                     md5=_md5(tarball), size=tarball.stat().st_size)
    assert folder == tmp_path / "cache" / "cifar-10-batches-py"
    assert len(ns.data.CIFAR10(train=False)) == 10 * PER_CLASS


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="the Linux cache location")
def test_cache_dir_defaults_to_xdg_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("NPSENET_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert download.cache_dir() == tmp_path / "npsenet"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert download.cache_dir() == tmp_path / "home" / ".cache" / "npsenet"


def test_the_published_checksums_are_the_defaults():
    assert download.ARCHIVES["cifar10"] == Archive(
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a", 170_498_071, "cifar-10-batches-py")
    assert download.ARCHIVES["cifar100"].md5 == "eb9058c3a382ffc7106e4002c42a8d85"
    assert download.ARCHIVES["cifar100"].size == 169_001_437


def test_an_interrupted_download_leaves_no_partial_file(server, tmp_path, monkeypatch):
    base, served = server
    tarball = _serve_archive(served)

    class Interrupt:
        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n):
            raise KeyboardInterrupt  # Ctrl-C after the first chunk was written

    monkeypatch.setattr(download, "_progress_bar", Interrupt)
    root = tmp_path / "data"
    root.mkdir()
    with pytest.raises(KeyboardInterrupt):
        download.fetch(f"{base}/{tarball.name}", root / tarball.name, md5=_md5(tarball),
                       size=None, progress=True)
    assert list(root.iterdir()) == []
