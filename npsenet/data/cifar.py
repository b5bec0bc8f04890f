"""CIFAR-10 and CIFAR-100 in the official "python version" format.

The files are pickled dicts (``b"data"``: uint8 array (N, 3072) with the red, green and
blue planes of each 32x32 image one after the other; ``b"labels"`` or
``b"fine_labels"``: list of ints). They are loaded with
:func:`~npsenet.data.safe_pickle.load_cifar_pickle`, which refuses any file that asks to
run code, and their contents are checked (shapes, dtype, label ranges) before use.

    train = ns.data.CIFAR10("data", train=True, download=True)
    train.images.shape, train.images.dtype      # (50000, 3, 32, 32) uint8
    train.labels.shape, train.labels.dtype      # (50000,) int64
    train.classes[train.labels[0]]              # 'frog'
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import ImageDataset
from .download import archive_info, cache_dir, download_cifar
from .safe_pickle import load_cifar_pickle

IMAGE_SHAPE = (3, 32, 32)
IMAGE_VALUES = 3 * 32 * 32


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

    def __init__(self, root=None, train: bool = True, download: bool = False):
        self.train = bool(train)
        self.folder = self._find_folder(root, download)
        self.classes = self._class_names(load_cifar_pickle(self.folder / self.meta_file))
        images, labels = [], []
        for filename in (self.train_files if self.train else self.test_files):
            path = self.folder / filename
            batch = load_cifar_pickle(path)
            images.append(self._checked_images(batch, path))
            labels.append(self._checked_labels(batch, path, self.label_key, self.num_classes))
            self._read_extra_labels(batch, path)
        self.images = np.ascontiguousarray(np.concatenate(images))
        self.labels = np.concatenate(labels)

    def _find_folder(self, root, download: bool) -> Path:
        folder_name = archive_info(self.name).folder
        root = Path(cache_dir() if root is None else root).expanduser()
        # root holds the dataset folder, or (friendlier) is that folder itself
        folder = root if root.name == folder_name else root / folder_name
        if download and not self._complete(folder):
            download_cifar(self.name, folder.parent)
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
    def _checked_images(batch: dict, path: Path):
        """uint8 (n, 3, 32, 32) from one unpickled batch, after checking dtype and shape."""
        data = batch.get(b"data")
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
                or data.shape[1] != IMAGE_VALUES:
            got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else repr(data)[:80]
            raise ValueError(f"{path}: expected b'data' to be a uint8 array (N, {IMAGE_VALUES}), "
                             f"got {got}. The file is damaged: delete the folder and download "
                             "the dataset again.")
        return data.reshape(-1, *IMAGE_SHAPE)

    @staticmethod
    def _checked_labels(batch: dict, path: Path, key: bytes, num_classes: int):
        """int64 (n,) labels under ``key``: one per image, each in ``range(num_classes)``."""
        labels, count = batch.get(key), len(batch[b"data"])
        if not isinstance(labels, (list, np.ndarray)) or len(labels) != count:
            raise ValueError(f"{path}: expected {count} labels under {key!r} (one per image), "
                             f"got {type(labels).__name__} of length "
                             f"{len(labels) if hasattr(labels, '__len__') else 'n/a'}.")
        labels = np.asarray(labels)
        if labels.dtype.kind not in "iu":
            raise ValueError(f"{path}: expected integer labels under {key!r}, got dtype "
                             f"{labels.dtype}. The file is damaged: download the dataset again.")
        if count and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"{path}: expected labels in [0, {num_classes}) under {key!r}, got "
                             f"the range [{labels.min()}, {labels.max()}]. Is this the right "
                             "dataset (CIFAR-10 vs CIFAR-100)?")
        return labels.astype(np.int64)

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


def _names(meta: dict, key: bytes, count: int, path: Path) -> list:
    """The ``count`` class names stored under ``key`` in a meta file, as str."""
    names = meta.get(key)
    if not isinstance(names, list) or len(names) != count \
            or not all(isinstance(n, (bytes, str)) for n in names):
        raise ValueError(f"{path}: expected a list of {count} class names under {key!r}, got "
                         f"{repr(names)[:200]}. The file is damaged: download the dataset again.")
    return [n.decode("utf-8") if isinstance(n, bytes) else n for n in names]
