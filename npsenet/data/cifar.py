"""CIFAR-10 and CIFAR-100 in the official "python version" format.

The files are pickled dicts (``b"data"``: uint8 array (N, 3072) with the red, green and
blue planes of each 32x32 image one after the other; ``b"labels"`` or
``b"fine_labels"``: list of ints). They are loaded with
:func:`~npsenet.data.safe_pickle.load_cifar_pickle`, which refuses any file that asks to
run code, and their contents are checked (shapes, dtype, label ranges) before use.

Bounds. A file whose MD5 is the published one (torchvision lists the same values) is an
original. Any other file is held to the format's limits before it is unpickled: a
CIFAR-10 batch holds at most 10,000 images, CIFAR-100's ``train`` at most 50,000 and
``test`` 10,000, labels as many as images, and a file may be at most 64 MiB (CIFAR-10
batches, CIFAR-100 ``test``), 320 MiB (CIFAR-100 ``train``) or 64 KiB (meta files). The
originals are about 31 MB and 155 MB; the limits are twice that because a batch pickled
again by Python 3 with protocol 2 spells its image bytes as UTF-8 text, up to two bytes
each (the CIFAR-10 subset the tests use is written that way). Every
problem with a file or the folder is one :class:`~npsenet.data.errors.DataFileError` line.

    train = ns.data.CIFAR10("data", train=True, download=True)
    train.images.shape, train.images.dtype      # (50000, 3, 32, 32) uint8
    train.labels.shape, train.labels.dtype      # (50000,) int64
    train.classes[train.labels[0]]              # 'frog'
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

import os

from .base import ImageDataset
from .download import archive_info, cache_dir, download_cifar
from .errors import DataFileError
from .safe_pickle import META_MAX_BYTES, read_cifar_pickle

IMAGE_SHAPE = (3, 32, 32)
IMAGE_VALUES = 3 * 32 * 32
MiB = 1024 * 1024
DAMAGED = "The file is damaged: delete the folder and download the dataset again."


class CIFAR10(ImageDataset):
    """CIFAR-10: 50,000 training and 10,000 test images in 10 classes.

    Args:
        root: the folder that holds ``cifar-10-batches-py/`` (the folder itself is accepted
            too); ``None`` means the cache folder (``$NPSENET_DATA``, else e.g.
            ``~/.cache/npsenet``).
        train: the five training batches (True) or the test batch (False).
        download: fetch and unpack the official archive into ``root`` when it is missing.

    Attributes:
        images: uint8 array (N, 3, 32, 32), channels RGB.
        labels: int64 array (N,), values in ``range(len(classes))``.
        classes: the class names, ``classes[label]``.
    """

    name = "cifar10"
    train_files = tuple(f"data_batch_{i}" for i in range(1, 6))
    test_files = ("test_batch",)
    meta_file = "batches.meta"
    label_key = b"labels"
    names_key = b"label_names"
    num_classes = 10
    # the published MD5 of every file (the same values torchvision lists)
    official_md5 = {
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
        "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
    }
    # file name -> (most images, most bytes) a file of the format may hold (see the top)
    file_limits = {name: (10_000, 64 * MiB) for name in (*train_files, *test_files)}

    def __init__(self, root=None, train: bool = True, download: bool = False):
        self.train = bool(train)
        self.folder = self._find_folder(root, download)
        self.files = {}  # file name -> {"size", "md5", "official"}: what was loaded
        self.classes = self._class_names(self._read(self.meta_file))
        images, labels = [], []
        for filename in (self.train_files if self.train else self.test_files):
            path = self.folder / filename
            batch = self._read(filename)
            images.append(self._checked_images(batch, path, self.file_limits[filename][0]))
            labels.append(self._checked_labels(batch, path, self.label_key, self.num_classes))
            self._read_extra_labels(batch, path)
        self.images = np.ascontiguousarray(np.concatenate(images))
        self.labels = np.concatenate(labels)

    def _read(self, filename: str) -> dict:
        """One file of the folder, unpickled within its limits; its size and MD5 recorded."""
        images, max_bytes = self.file_limits.get(filename, (0, META_MAX_BYTES))
        content, info = read_cifar_pickle(
            self.folder / filename, max_bytes=max_bytes, max_images=images,
            official_md5=self.official_md5.get(filename), advice=self._advice())
        self.files[filename] = {"size": info.size, "md5": info.md5, "official": info.official}
        return content

    def _advice(self) -> str:
        folder_name = archive_info(self.name).folder
        return (f"delete {folder_name}/ and download it again (`npsenet train` downloads it when "
                f"--data-dir does not hold it), or point --data-dir at the folder that holds "
                f"the official {folder_name}/")

    def _find_folder(self, root, download: bool) -> Path:
        folder_name = archive_info(self.name).folder
        root = Path(cache_dir() if root is None else root).expanduser()
        for place in (root, root / folder_name):
            if place.exists() and not place.is_dir():
                raise DataFileError(
                    f"{place} is a file, expected a folder: point --data-dir (or root=) at the "
                    f"folder that holds {folder_name}/.")
        # root holds the dataset folder, or (friendlier) is that folder itself
        folder = root if root.name == folder_name else root / folder_name
        if download and not self._complete(folder):
            download_cifar(self.name, folder.parent)
        for place in (folder.parent, folder):
            if place.is_dir() and not os.access(place, os.R_OK | os.X_OK):
                raise DataFileError(
                    f"cannot read the folder {place} (permission denied): give yourself read "
                    f"access (chmod u+rx) or point --data-dir at a copy you may read.")
        if self._complete(folder):
            return folder
        if folder.is_dir():
            missing = [f for f in self._needed_files() if not (folder / f).is_file()]
            found = f"looked in {folder}, which lacks {', '.join(missing)}"
        else:
            found = f"looked for {folder}, which does not exist"
        raise FileNotFoundError(
            f"{type(self).__name__} not found: {found}. Point to the folder that holds {folder_name}/ (the command "
            f"line's --data-dir DIR, or root=DIR), or let it be downloaded "
            f"({type(self).__name__}(root, download=True); `npsenet train` downloads it).")

    def _needed_files(self) -> tuple:
        return (self.meta_file, *(self.train_files if self.train else self.test_files))

    def _complete(self, folder: Path) -> bool:
        return all((folder / f).is_file() for f in self._needed_files())

    def _class_names(self, meta: dict) -> list:
        return _names(meta, self.names_key, self.num_classes, self.folder / self.meta_file)

    @staticmethod
    def _checked_images(batch: dict, path: Path, max_images: int = 50_000):
        """uint8 (n, 3, 32, 32) from one unpickled batch, after checking dtype and shape."""
        data = batch.get(b"data")
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
                or data.shape[1] != IMAGE_VALUES or not data.flags.c_contiguous:
            got = (f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray)
                   else f"a {type(data).__name__}")
            raise DataFileError(f"{path}: expected b'data' to be a uint8 array "
                                f"(N, {IMAGE_VALUES}), "
                                f"got {got}. {DAMAGED}")
        if len(data) == 0:
            raise DataFileError(f"{path}: holds no images; every CIFAR batch holds some. "
                                f"{DAMAGED}")
        if len(data) > max_images:
            raise DataFileError(f"{path}: holds {len(data):,} images, more than the {max_images:,} "
                                "a file of this dataset holds. It is not an original file: delete "
                                "the folder and download the dataset again.")
        return data.reshape(-1, *IMAGE_SHAPE)

    @staticmethod
    def _checked_labels(batch: dict, path: Path, key: bytes, num_classes: int):
        """int64 (n,) labels under ``key``: one per image, each in ``range(num_classes)``."""
        labels, count = batch.get(key), len(batch[b"data"])
        if not isinstance(labels, (list, np.ndarray)) or len(labels) != count:
            raise DataFileError(f"{path}: expected {count} labels under {key!r} (one per image), "
                                f"got {type(labels).__name__} of length "
                                f"{len(labels) if hasattr(labels, '__len__') else 'n/a'}. "
                                f"{DAMAGED}")
        if isinstance(labels, list) and not all(type(k) is int for k in labels):
            odd = next(type(k).__name__ for k in labels if type(k) is not int)
            raise DataFileError(f"{path}: expected integer labels under {key!r}, got a {odd}. "
                                f"{DAMAGED}")
        if isinstance(labels, np.ndarray) and (labels.dtype.kind not in "iu" or labels.ndim != 1):
            raise DataFileError(f"{path}: expected integer labels under {key!r}, got dtype "
                                f"{labels.dtype} with {labels.ndim} dimensions. {DAMAGED}")
        if count:
            low, high = ((int(labels.min()), int(labels.max())) if isinstance(labels, np.ndarray)
                         else (min(labels), max(labels)))
            if low < 0 or high >= num_classes:
                raise DataFileError(
                    f"{path}: expected labels in [0, {num_classes}) under {key!r}, got the range "
                    f"[{_short_int(low)}, {_short_int(high)}]. Is this the right dataset "
                    "(CIFAR-10 vs CIFAR-100)? If so, the file is damaged: download it again.")
        return np.asarray(labels, dtype=np.int64).reshape(count)

    def _read_extra_labels(self, batch: dict, path: Path) -> None:
        """CIFAR-100 also keeps its coarse (superclass) labels; CIFAR-10 has none."""

    def __repr__(self) -> str:
        split = "train" if self.train else "test"
        return (f"{type(self).__name__}({split}, {len(self)} images, {len(self.classes)} classes, "
                f"folder={str(self.folder)!r})")


class CIFAR100(CIFAR10):
    """CIFAR-100: 50,000 training and 10,000 test images in 100 fine classes.

    Same arguments and attributes as :class:`CIFAR10`; ``labels``/``classes`` are the fine
    labels. The 20 superclasses are in ``coarse_labels`` (int64 (N,)) and ``coarse_classes``.
    ``root`` holds ``cifar-100-python/``.
    """

    name = "cifar100"
    train_files = ("train",)
    test_files = ("test",)
    meta_file = "meta"
    label_key = b"fine_labels"
    names_key = b"fine_label_names"
    num_classes = 100
    num_coarse_classes = 20
    official_md5 = {
        "train": "16019d7e3df5f24257cddd939b257f8d",
        "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
        "meta": "7973b15100ade9c7d40fb424638fde48",
    }
    file_limits = {"train": (50_000, 320 * MiB), "test": (10_000, 64 * MiB)}

    def __init__(self, root=None, train: bool = True, download: bool = False):
        self.coarse_labels = np.zeros(0, dtype=np.int64)
        super().__init__(root, train, download)

    def _class_names(self, meta: dict) -> list:
        path = self.folder / self.meta_file
        self.coarse_classes = _names(meta, b"coarse_label_names", self.num_coarse_classes, path)
        return super()._class_names(meta)

    def _read_extra_labels(self, batch: dict, path: Path) -> None:
        coarse = self._checked_labels(batch, path, b"coarse_labels", self.num_coarse_classes)
        self.coarse_labels = np.concatenate([self.coarse_labels, coarse])


def _short_int(value: int) -> str:
    """An int as text, or "a huge number" (never thousands of digits)."""
    return str(value) if abs(value) < 10 ** 18 else ("-" if value < 0 else "") + "a huge number"


def _names(meta: dict, key: bytes, count: int, path: Path) -> list:
    """The ``count`` class names stored under ``key`` in a meta file, as str."""
    names = meta.get(key)
    if not isinstance(names, list) or len(names) != count \
            or not all(isinstance(n, (bytes, str)) for n in names):
        got = (f"a list of {len(names)}" if isinstance(names, list)
               else f"a {type(names).__name__}")
        raise DataFileError(f"{path}: expected a list of {count} class names (bytes or str) under "
                            f"{key!r}, got {got}. The file is damaged: delete the folder and "
                            "download the dataset again.")
    try:
        return [n.decode("utf-8") if isinstance(n, bytes) else n for n in names]
    except UnicodeDecodeError:
        raise DataFileError(f"{path}: the class names under {key!r} are not UTF-8 text. "
                            f"{DAMAGED}") from None
