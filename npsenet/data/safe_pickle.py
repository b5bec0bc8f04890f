"""Loading CIFAR's pickled batches without running code from the file.

The official "python version" of CIFAR is a set of pickles. ``pickle.load`` on a file from
the internet can execute anything: a pickle names functions by module and name (``os
system``) and calls them while it loads. A CIFAR batch needs none of that. It holds a
dict of bytes/str keys, lists of ints and names, and one NumPy array; rebuilding the
array needs exactly three NumPy globals (``_reconstruct``, ``ndarray`` and ``dtype``).
Files written by Python 3 with protocol 2 also spell bytes objects as
``_codecs.encode(text, "latin1")``. :class:`CifarUnpickler` allows exactly these and
refuses every other global before it is called, so a tampered file fails with an error
instead of running its payload.
"""
from __future__ import annotations

import codecs
import pickle
from pathlib import Path

import numpy as np

try:  # NumPy >= 2 keeps the array machinery in numpy._core
    from numpy._core.multiarray import _reconstruct
except ImportError:  # NumPy 1.x
    from numpy.core.multiarray import _reconstruct


def _latin1_encode(text, encoding="latin1", errors="strict"):
    """``_codecs.encode`` restricted to what pickle's protocol 2 uses it for: bytes as latin-1 text."""
    if codecs.lookup(encoding).name != "iso8859-1" or errors != "strict":
        raise pickle.UnpicklingError(
            f"refusing _codecs.encode with encoding {encoding!r}: CIFAR pickles only use it to "
            "spell bytes as latin-1 text.")
    return codecs.encode(text, "latin1")


# (module, name) -> the object the unpickler hands out. The old ("numpy.core") and new
# ("numpy._core") spellings both appear in the wild: files written before and after NumPy 2.
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
    ("builtins", "bytes"): bytes,  # protocol 2 writes an empty bytes object as bytes()
}

# Protocol 2 spells Python 3's builtins module by its Python 2 name.
PYTHON2_MODULES = {"__builtin__": "builtins"}


class CifarUnpickler(pickle.Unpickler):
    """A ``pickle.Unpickler`` that resolves only :data:`ALLOWED_GLOBALS`.

    ``find_class`` is where pickle looks up every function or class a file names; refusing
    there means the forbidden object is never imported, let alone called.
    """

    def __init__(self, file, source: str = "this file", **kwargs):
        super().__init__(file, **kwargs)
        self.source = source

    def find_class(self, module, name):
        module = PYTHON2_MODULES.get(module, module)
        allowed = ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise pickle.UnpicklingError(
                f"refusing to load {self.source}: it asks for {module}.{name}; CIFAR files never "
                "contain code. The file is damaged or was tampered with: delete it and download "
                "the dataset again from the official site (the download checks its MD5).")
        return allowed

    def persistent_load(self, pid):
        raise pickle.UnpicklingError(
            f"refusing to load {self.source}: it uses a persistent reference, which CIFAR files "
            "never contain.")


def load_cifar_pickle(path) -> dict:
    """Load one CIFAR batch or meta file safely, as the official instructions do.

    ``encoding="bytes"`` keeps Python 2 strings as bytes, so the keys are ``b"data"``,
    ``b"labels"`` and so on, whichever Python wrote the file.

    Returns:
        the unpickled dict.
    Raises:
        pickle.UnpicklingError: the file names anything outside :data:`ALLOWED_GLOBALS`.
        ValueError: the file does not hold a dict.
    """
    path = Path(path)
    with open(path, "rb") as f:
        content = CifarUnpickler(f, source=str(path), encoding="bytes").load()
    if not isinstance(content, dict):
        raise ValueError(f"{path}: expected a pickled dict (a CIFAR batch), got "
                         f"{type(content).__name__}. Is this a CIFAR 'python version' file?")
    return content
