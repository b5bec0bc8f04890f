"""Downloading CIFAR from the official site, checking it, and unpacking it safely.

``download_cifar("cifar10", root)`` fetches the tarball into ``root`` (through a ``.part``
file, with a progress bar), checks its size and MD5 against the published values, and
extracts ``cifar-10-batches-py/`` (or ``cifar-100-python/``) next to it. A download that
comes out short or with the wrong checksum is deleted, never extracted. The whole
download has a deadline (``deadline_s``, default 30 minutes, so a stalled or trickling
server ends in one line), and never more than the expected size is read: a server that
sends more is refused and the partial file removed.

Extraction checks every member before writing anything: absolute paths, ``..``
components, symbolic and hard links and device files are refused, so a tampered archive
cannot write outside ``root``. The checked archive is unpacked into a temporary folder
inside ``root`` and moved into place only once it is complete, so an interrupted
extraction never looks like a dataset.

The cache folder (used when no ``root`` is given) is ``$NPSENET_DATA`` if set, else the
platform's cache folder: ``$XDG_CACHE_HOME/npsenet`` or ``~/.cache/npsenet`` on Linux,
``~/Library/Caches/npsenet`` on macOS, ``%LOCALAPPDATA%\\npsenet`` on Windows.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from .errors import DataFileError, describe_exception, one_line


@dataclass(frozen=True)
class Archive:
    """Where one dataset lives on the official site and how to recognise it."""
    url: str
    md5: str
    size: int
    folder: str  # the folder the tarball unpacks to

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


ARCHIVES = {
    "cifar10": Archive("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                       "c58f30108f718f92721af3b95e74349a", 170_498_071, "cifar-10-batches-py"),
    "cifar100": Archive("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                        "eb9058c3a382ffc7106e4002c42a8d85", 169_001_437, "cifar-100-python"),
}

CHUNK_BYTES = 1 << 20
DEADLINE_S = 30 * 60        # the whole download, from the first byte asked to the last
READ_TIMEOUT_S = 60         # one silent wait on the connection
MAX_UNKNOWN_BYTES = 1 << 30  # the cap when neither the size nor Content-Length is known


def cache_dir() -> Path:
    """The folder that holds downloaded datasets when no ``root``/``--data-dir`` is given."""
    if os.environ.get("NPSENET_DATA"):
        return Path(os.environ["NPSENET_DATA"]).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local"
        return Path(base) / "npsenet"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "npsenet"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "npsenet"


def archive_info(name: str) -> Archive:
    """The :class:`Archive` for ``"cifar10"`` or ``"cifar100"``."""
    if name not in ARCHIVES:
        raise ValueError(f"no download known for dataset {name!r}; expected one of "
                         f"{sorted(ARCHIVES)}.")
    return ARCHIVES[name]


def download_cifar(name: str, root=None, url: str | None = None, progress: bool = True, *,
                   md5: str | None = None, size: int | None = None,
                   deadline_s: float = DEADLINE_S) -> Path:
    """Download, verify and extract CIFAR-10 or CIFAR-100 into ``root``.

    Args:
        name: ``"cifar10"`` or ``"cifar100"``.
        root: the folder to hold the dataset folder (``None``: :func:`cache_dir`).
        url: where to download from (default: the official site).
        progress: show a progress bar (tqdm when installed, else plain lines on stderr).
        md5, size: the expected checksum and size in bytes; default the published values,
            which a mirror of the official file also matches.
        deadline_s: seconds the whole download may take (default 30 minutes); a slower
            download is abandoned and its partial file removed.
    Returns:
        the extracted dataset folder, e.g. ``root/cifar-10-batches-py``.
    Raises:
        RuntimeError: the download failed, ran past its deadline, sent more than ``size``
            bytes or its size/MD5 did not match (the bad file is removed), or the archive
            lacks the expected folder.
        ValueError: the archive contains an unsafe member (see :func:`safe_extract`).
    """
    info = archive_info(name)
    root = Path(cache_dir() if root is None else root).expanduser()
    url = url or info.url
    md5 = (md5 or info.md5).lower()
    size = info.size if size is None else size
    target = root / info.folder
    if target.is_dir():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tarball = root / info.filename
    if not (tarball.is_file() and file_md5(tarball) == md5):
        fetch(url, tarball, md5=md5, size=size, progress=progress, deadline_s=deadline_s)
    safe_extract(tarball, root, expected_folder=info.folder)
    return target


def fetch(url: str, destination: Path, *, md5: str, size: int | None, progress: bool,
          deadline_s: float = DEADLINE_S) -> None:
    """Download ``url`` to ``destination`` through ``destination.part``; check size and MD5.

    At most ``size`` bytes are read (a server that sends more is refused), and the whole
    download must finish within ``deadline_s`` seconds (checked after every read; one
    read waits at most ``READ_TIMEOUT_S``). On any failure the partial file is deleted
    and ``RuntimeError`` says what to do.
    """
    destination = Path(destination)
    partial = destination.with_name(destination.name + ".part")
    digest = hashlib.md5()
    received = 0
    start = time.monotonic()
    try:
        timeout = max(1.0, min(READ_TIMEOUT_S, float(deadline_s)))
        with urllib.request.urlopen(url, timeout=timeout) as response, \
                open(partial, "wb") as out:
            announced = _content_length(response)
            cap = size if size is not None else (announced or MAX_UNKNOWN_BYTES)
            if announced is not None and announced > cap:
                raise _TooMuch(f"the server announces {announced:,} bytes, expected {cap:,}")
            read = getattr(response, "read1", None) or response.read
            with _progress_bar(size or announced, destination.name, enabled=progress) as bar:
                while chunk := read(min(CHUNK_BYTES, cap + 1 - received)):
                    received += len(chunk)
                    if received > cap:
                        raise _TooMuch(f"the server sent more than the {cap:,} bytes expected")
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
                    elapsed = time.monotonic() - start
                    if elapsed > deadline_s:
                        raise _TooSlow(f"only {received:,} of {cap:,} bytes arrived within the "
                                       f"deadline of {deadline_s:g} s")
    except BaseException as error:  # Ctrl-C included: never leave a partial file behind
        partial.unlink(missing_ok=True)
        if isinstance(error, _TooMuch):
            raise RuntimeError(
                f"refusing the download of {url}: {error}; the file was deleted. Is the URL "
                f"right? Download the file by hand and put it at {destination} (its MD5 must "
                f"be {md5}).") from None
        if isinstance(error, _TooSlow):
            raise RuntimeError(
                f"the download of {url} is too slow: {error}; the file was deleted. Try again "
                f"later (or with download_cifar(..., deadline_s=...) for a slow link), or "
                f"download the file by hand and put it at {destination}.") from None
        if not isinstance(error, (urllib.error.URLError, http.client.HTTPException, OSError,
                                  ValueError)):
            raise
        raise RuntimeError(
            f"could not download {url}: {one_line(str(error), 300)}. Check the internet "
            f"connection and try again, "
            f"or download the file by hand and put it at {destination} (its MD5 must be "
            f"{md5}).") from error
    problem = None
    if size is not None and received != size:
        problem = f"got {received:,} bytes, expected {size:,}"
    elif digest.hexdigest() != md5:
        problem = f"its MD5 is {digest.hexdigest()}, expected {md5}"
    if problem:
        partial.unlink(missing_ok=True)
        raise RuntimeError(
            f"the download of {url} is incomplete or corrupt ({problem}); the file was "
            "deleted. Run the command again to retry; if it keeps failing, download the "
            f"file by hand and put it at {destination}.")
    os.replace(partial, destination)


class _TooMuch(Exception):
    """The server sends more than the expected size."""


class _TooSlow(Exception):
    """The download runs past its deadline."""


def _content_length(response) -> int | None:
    """The response's Content-Length as an int, or None when absent or garbled."""
    try:
        value = int(response.headers.get("Content-Length"))
    except (TypeError, ValueError, AttributeError):
        return None
    return value if value >= 0 else None


def file_md5(path) -> str:
    """The MD5 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def check_member(member: tarfile.TarInfo, archive) -> None:
    """Refuse a tar member that could write outside the destination or is not plain data.

    Raises ValueError for absolute paths (POSIX or Windows), ``..`` components, symbolic
    and hard links, device files, FIFOs and anything else that is not a file or folder.
    """
    name = member.name
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or name.startswith("\\"):
        reason = "an absolute path"
    elif ".." in posix.parts or ".." in windows.parts:
        reason = "a '..' component that points outside the destination"
    elif member.issym() or member.islnk():
        reason = f"a link (to {member.linkname[:200]!r})"
    elif member.ischr() or member.isblk() or member.isfifo():
        reason = "a device file or FIFO"
    elif not (member.isfile() or member.isdir()):
        reason = "an entry that is neither a file nor a folder"
    else:
        return
    raise ValueError(f"refusing to extract {archive}: member {name[:200]!r} is {reason}. CIFAR "
                     "archives hold only plain files; this one is damaged or was tampered "
                     "with, so nothing was extracted. Delete it and download it again.")


MAX_EXTRACT_BYTES = 1 << 30  # either CIFAR unpacks to under 200 MB


def safe_extract(tarball, root, expected_folder: str | None = None,
                 max_bytes: int = MAX_EXTRACT_BYTES) -> None:
    """Extract ``tarball`` into ``root`` after checking every member with :func:`check_member`.

    Nothing is written unless every member passes and their sizes add up to at most
    ``max_bytes``. Members are unpacked into a temporary folder inside ``root`` and then
    moved into place, so an interrupted extraction leaves no half-filled dataset folder
    behind. A damaged archive (truncated, not gzip, a member shorter than its header says)
    raises ``DataFileError``, one line; the partly extracted files are removed.
    """
    tarball, root = Path(tarball), Path(root)
    root.mkdir(parents=True, exist_ok=True)
    damaged = (tarfile.TarError, EOFError, OSError, zlib.error, ValueError)
    try:
        tar = tarfile.open(tarball, "r:*")
    except damaged as error:
        raise _damaged_archive(tarball, error) from None
    with tar:
        try:
            members = tar.getmembers()
        except damaged as error:
            raise _damaged_archive(tarball, error) from None
        for member in members:
            check_member(member, tarball)
        total = sum(member.size for member in members if member.isfile())
        if total > max_bytes:
            raise DataFileError(
                f"refusing to extract {tarball}: its members add up to {total:,} bytes, more "
                f"than the {max_bytes:,} a CIFAR archive unpacks to; nothing was extracted. "
                "Delete it and download it again.")
        staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=root))
        try:
            try:
                if hasattr(tarfile, "data_filter"):  # Python >= 3.12, 3.8-3.11 security releases
                    tar.extractall(staging, members=members, filter="data")
                else:
                    tar.extractall(staging, members=members)
            except (tarfile.TarError, EOFError, zlib.error) as error:
                raise _damaged_archive(tarball, error) from None
            except OSError as error:  # a full disk, a read-only folder
                raise RuntimeError(
                    f"could not extract {tarball} into {root} "
                    f"({error.strerror or describe_exception(error)}); nothing was kept. Free "
                    "some space or choose a folder you may write to (--data-dir).") from None
            if expected_folder is not None and not (staging / expected_folder).is_dir():
                raise RuntimeError(
                    f"{tarball} does not contain the folder {expected_folder}/; is it the right "
                    "archive? Delete it and download it again.")
            for entry in staging.iterdir():
                destination = root / entry.name
                if destination.exists():
                    raise RuntimeError(f"refusing to overwrite {destination} while extracting "
                                       f"{tarball}; move it away and try again.")
                os.replace(entry, destination)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _damaged_archive(tarball, error) -> DataFileError:
    return DataFileError(f"{tarball} is damaged ({describe_exception(error)}); nothing was "
                         "extracted. Delete it and download it again.")


class _PlainProgress:
    """A progress report without tqdm: a line on stderr every 10 %."""

    def __init__(self, total, label):
        self.total, self.label, self.done, self.next_report = total, label, 0, 0.1

    def update(self, n):
        self.done += n
        if self.total and self.done / self.total >= self.next_report:
            print(f"{self.label}: {100 * self.done / self.total:3.0f}% "
                  f"({self.done / 1e6:.1f} MB)", file=sys.stderr, flush=True)
            self.next_report += 0.1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if not self.total:
            print(f"{self.label}: {self.done / 1e6:.1f} MB", file=sys.stderr, flush=True)


class _NoProgress:
    def update(self, n):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def _progress_bar(total, label, enabled):
    if not enabled:
        return _NoProgress()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _PlainProgress(total, label)
    return tqdm(total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024)
