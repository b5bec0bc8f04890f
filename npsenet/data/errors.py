"""The one error type for a data file that cannot be used, and its one-line message.

Every damaged, truncated, oversized or hostile data file ends in :class:`DataFileError`, a
``ValueError`` whose message is one line: which file, what is wrong with it, what to do.
The command line prints such an error as one line and exits with status 2. A pickle that
asks to run code raises :class:`UnsafePickleError`, which is both a ``DataFileError`` and a
``pickle.UnpicklingError``.
"""
from __future__ import annotations

import pickle

REDOWNLOAD = ("delete the folder and download the dataset again (`npsenet train` downloads it "
              "when --data-dir does not hold it), or point --data-dir at the folder that holds "
              "the official files")


class DataFileError(ValueError):
    """A data file (or data folder) is missing pieces, damaged, oversized or hostile.

    ``str(error)`` is one line naming the file, what is wrong and what to do.
    """

    def __init__(self, message: str):
        super().__init__(one_line(message))


class UnsafePickleError(DataFileError, pickle.UnpicklingError):
    """A pickle asks for something a CIFAR file never contains (code, a persistent
    reference, an array built another way than the official files build theirs)."""


def one_line(text: str, limit: int = 1000) -> str:
    """``text`` with its line breaks turned into spaces, cut to ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def describe_exception(error: BaseException) -> str:
    """A short description of ``error`` that never builds ``repr()`` of a big object.

    The exception's text is shown only when its arguments are short strings or numbers;
    otherwise only its type name.
    """
    name = type(error).__name__
    args = getattr(error, "args", ())
    small = all(isinstance(a, float) or (isinstance(a, int) and abs(a) < 10 ** 18)
                or (isinstance(a, str) and len(a) <= 300) for a in args)
    if not small or not args:
        return name
    return f"{name}: {one_line(str(error), 300)}"
