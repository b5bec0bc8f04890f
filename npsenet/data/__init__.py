"""Datasets, transforms and mini-batches.

- :class:`CIFAR10`, :class:`CIFAR100`: the official "python version" files, loaded safely
  (no code runs from a pickle), downloaded and checked on request.
- :class:`SyntheticCIFAR`: a generated 10-class dataset for quick offline runs.
- :func:`get_dataset`: one of them by name, as the command line does.
- :func:`channel_stats`, :class:`Normalize`, :func:`random_crop`, :func:`random_flip`,
  :func:`crop_and_flip` (both in one gather, on the CPU or the GPU).
- :class:`BatchLoader`: reproducible, resumable mini-batches on the CPU or the GPU.
- :class:`DataFileError`: the one-line error of every damaged or hostile data file.
- :func:`data_fingerprint`, :func:`describe_fingerprint_mismatch`: what a run trained on.
"""
from __future__ import annotations

from . import download
from .cifar import CIFAR10, CIFAR100
from .download import cache_dir, download_cifar
from .errors import DataFileError
from .fingerprint import data_fingerprint, describe_fingerprint_mismatch
from .loader import BatchLoader
from .synthetic import SyntheticCIFAR
from .transforms import (CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD, Normalize,
                         channel_stats, crop_and_flip, random_crop, random_flip,
                         standard_augment)

DATASETS = ("cifar10", "cifar100", "synthetic")


def get_dataset(name: str, data_dir=None, train: bool = True, download: bool = False):
    """The training or test split of ``"cifar10"``, ``"cifar100"`` or ``"synthetic"``.

    ``data_dir`` is the folder that holds the CIFAR folders (``None``: the cache folder);
    the synthetic dataset needs no files and ignores it and ``download``.
    """
    key = str(name).lower().replace("-", "").replace("_", "")
    if key == "cifar10":
        return CIFAR10(data_dir, train=train, download=download)
    if key == "cifar100":
        return CIFAR100(data_dir, train=train, download=download)
    if key == "synthetic":
        return SyntheticCIFAR(train=train)
    raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}.")


__all__ = ["CIFAR10", "CIFAR100", "SyntheticCIFAR", "get_dataset", "DATASETS", "BatchLoader",
           "Normalize", "channel_stats", "random_crop", "random_flip", "crop_and_flip",
           "standard_augment",
           "CIFAR10_MEAN", "CIFAR10_STD", "CIFAR100_MEAN", "CIFAR100_STD", "cache_dir",
           "download_cifar", "download", "DataFileError", "data_fingerprint",
           "describe_fingerprint_mismatch"]
