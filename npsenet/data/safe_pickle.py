"""Loading CIFAR's pickled batches without running code from the file, and within bounds.

The official "python version" of CIFAR is a set of pickles. ``pickle.load`` on a file from
the internet can execute anything: a pickle names functions by module and name (``os
system``) and calls them while it loads. A CIFAR batch needs none of that. It holds a
dict of bytes/str keys, lists of ints and names, and one NumPy array; rebuilding the
array needs exactly three NumPy globals (``_reconstruct``, ``ndarray`` and ``dtype``).
Files written by Python 3 with protocol 2 also spell bytes objects as
``_codecs.encode(text, "latin1")``. :class:`CifarUnpickler` allows exactly these and
refuses every other global before it is called, so a tampered file fails with an error
instead of running its payload.

Allowing NumPy's constructors is not enough on its own: called freely they build arrays
far larger than the file (``ndarray`` with zero strides, ``_reconstruct`` asked for a TiB,
``bytes(3_000_000_000)``). So the allowed names are stand-ins that accept only what the
official files do with them (``_reconstruct(ndarray, (0,), b"b")`` followed by the array's
state), and the array is built by :class:`ArrayState` only when its declared shape and
dtype are backed by exactly as many bytes as the file holds: a plain C-contiguous array of
unsigned or signed integers or floats, nothing else. Before anything is unpickled,
:func:`read_cifar_pickle` refuses a file larger than its limit, and a file that is not one
of the published originals (by MD5) is scanned first: at most a bounded number of pickle
opcodes, and memo indices that stay below that number. Every failure is one
:class:`~npsenet.data.errors.DataFileError` line naming the file.
"""
from __future__ import annotations

import codecs
import hashlib
import io
import os
import pickle
import pickletools
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import REDOWNLOAD, DataFileError, UnsafePickleError, describe_exception

# A meta file (class names) is tiny: 158 bytes for CIFAR-10, 1.5 KB for CIFAR-100.
META_MAX_BYTES = 64 * 1024
# Plain numeric dtypes an array may have here (images are uint8; some copies store labels
# as integer arrays; floats are let through so that the dataset can say "expected uint8").
ALLOWED_DTYPES = frozenset({f"{kind}{size}" for kind in "ui" for size in (1, 2, 4, 8)}
                           | {"f2", "f4", "f8"})
MAX_NDIM = 4


class _Refused(Exception):
    """Raised inside the unpickler; :func:`read_cifar_pickle` adds the file's name."""


def _latin1_encode(text, encoding="latin1", errors="strict"):
    """``_codecs.encode`` only as pickle's protocol 2 uses it: bytes spelt as latin-1 text."""
    if not isinstance(text, str) or not isinstance(encoding, str) or errors != "strict" \
            or codecs.lookup(encoding).name != "iso8859-1":
        raise _Refused(
            f"it calls _codecs.encode with encoding {str(encoding)[:40]!r}; CIFAR pickles only "
            "use it to spell bytes as latin-1 text")
    return codecs.encode(text, "latin1")


def _empty_bytes(*args):
    """``bytes()``: protocol 2 writes an empty bytes object this way, and only this way."""
    if args:
        raise _Refused(f"it calls bytes() with an argument (of type {type(args[0]).__name__}); "
                       "CIFAR pickles only call it without one, for an empty bytes object")
    return b""


class _NdarrayType:
    """Stands in for ``numpy.ndarray``: the official files only pass it to ``_reconstruct``."""

    def __call__(self, *args, **kwargs):
        raise _Refused("it calls numpy.ndarray directly (views with chosen strides and "
                       "buffers); official CIFAR files never do")


NDARRAY = _NdarrayType()


class DtypeState:
    """Stands in for ``numpy.dtype(code, 0, 1)`` with its pickled state: a plain numeric dtype."""

    def __init__(self, code, align=False, copy=True):
        if isinstance(code, bytes):
            code = code.decode("latin1")
        if not isinstance(code, str) or code not in ALLOWED_DTYPES:
            shown = code[:20] if isinstance(code, str) else type(code).__name__
            raise _Refused(f"it declares an array of dtype {shown!r}; CIFAR files hold only "
                           f"plain numeric arrays ({', '.join(sorted(ALLOWED_DTYPES))})")
        self.code, self.order = code, "|"

    def __setstate__(self, state):
        # (version, byte order, subarray, names, fields, elsize, alignment, flags[, metadata])
        if not isinstance(state, tuple) or len(state) not in (8, 9) or state[0] not in (3, 4) \
                or state[1] not in ("|", "<", ">", "=", b"|", b"<", b">", b"=") \
                or any(item is not None for item in state[2:5]):
            raise _Refused("it declares a dtype with a layout (fields, subarrays) that plain "
                           "integer arrays never have")
        order = state[1].decode() if isinstance(state[1], bytes) else state[1]
        self.order = order

    @property
    def dtype(self) -> np.dtype:
        dtype = np.dtype(self.code)
        return dtype.newbyteorder(self.order) if self.order in "<>" else dtype


class ArrayState:
    """Stands in for ``_reconstruct(ndarray, (0,), b"b")``; its state builds the array.

    The state is ``(version, shape, dtype, is_fortran, raw bytes)``. The array is built
    only when ``shape`` is a tuple of at most 4 ints in [0, 2**63), ``dtype`` an allowed
    integer or float dtype, the order C, and ``raw`` holds exactly
    ``prod(shape) * itemsize`` bytes: so an array is never larger than the bytes the file
    really contains.
    """

    def __init__(self):
        self.array = None

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _Refused(f"an array's state is a {type(state).__name__}, expected the tuple "
                           "(version, shape, dtype, is_fortran, data)")
        shape, dtype, fortran, raw = state[-4:]
        if not isinstance(shape, tuple) or len(shape) > MAX_NDIM or not all(
                type(n) is int and 0 <= n < 2 ** 63 for n in shape):
            shown = (f"{len(shape)} entries" if isinstance(shape, tuple)
                     else f"a {type(shape).__name__}")
            raise _Refused(f"an array declares a shape ({shown}) that is not a tuple of at "
                           f"most {MAX_NDIM} ints in [0, 2**63)")
        if not isinstance(dtype, DtypeState):
            raise _Refused(f"an array's dtype is a {type(dtype).__name__}, expected a numpy dtype")
        if fortran not in (False, 0):
            raise _Refused("an array is stored in Fortran order; CIFAR arrays are C-contiguous")
        if not isinstance(raw, bytes):
            raise _Refused(f"an array's data is a {type(raw).__name__}, expected bytes")
        dtype = dtype.dtype
        count = 1
        for n in shape:
            count *= n
        needed = count * dtype.itemsize
        if needed != len(raw):
            shown = "(" + ", ".join(f"{n:,}" for n in shape) + ")"
            raise _Refused(f"an array declares the shape {shown} of {dtype} ({needed:,} bytes) "
                           f"but the file holds {len(raw):,} bytes for it")
        self.array = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def _guarded_reconstruct(subtype, shape, typecode):
    """``_reconstruct`` as the official files call it: ``(ndarray, (0,), b"b")``."""
    if subtype is not NDARRAY or shape != (0,) or typecode not in (b"b", "b"):
        raise _Refused("it calls numpy's _reconstruct otherwise than numpy's own pickles do "
                       "(ndarray, (0,), b'b'); CIFAR files never ask for other arrays")
    return ArrayState()


# (module, name) -> the object the unpickler hands out. The old ("numpy.core") and new
# ("numpy._core") spellings both appear in the wild: files written before and after NumPy 2.
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _guarded_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _guarded_reconstruct,
    ("numpy", "ndarray"): NDARRAY,
    ("numpy", "dtype"): DtypeState,
    ("_codecs", "encode"): _latin1_encode,
    ("builtins", "bytes"): _empty_bytes,  # protocol 2 writes an empty bytes object as bytes()
}

# Protocol 2 spells Python 3's builtins module by its Python 2 name.
PYTHON2_MODULES = {"__builtin__": "builtins"}


class CifarUnpickler(pickle.Unpickler):
    """A ``pickle.Unpickler`` that resolves only :data:`ALLOWED_GLOBALS`.

    ``find_class`` is where pickle looks up every function or class a file names; refusing
    there means the forbidden object is never imported, let alone called. Arrays come out
    as :class:`ArrayState` objects; :func:`read_cifar_pickle` swaps them for their arrays.
    """

    def __init__(self, file, source: str = "this file", **kwargs):
        super().__init__(file, **kwargs)
        self.source = source

    def find_class(self, module, name):
        module = PYTHON2_MODULES.get(module, module)
        allowed = ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise UnsafePickleError(
                f"refusing to load {self.source}: it asks for {str(module)[:80]}.{str(name)[:80]}; "
                "CIFAR files never contain code. The file is damaged or was tampered with: "
                "delete it and download the dataset again from the official site (the "
                "download checks its MD5).")
        return allowed

    def persistent_load(self, pid):
        raise UnsafePickleError(
            f"refusing to load {self.source}: it uses a persistent reference, which CIFAR files "
            "never contain.")


@dataclass(frozen=True)
class FileInfo:
    """What :func:`read_cifar_pickle` learnt about a file: its size, MD5 and whether that
    MD5 is the published one."""
    size: int
    md5: str
    official: bool


def max_opcodes(max_images: int) -> int:
    """The most pickle opcodes a batch of ``max_images`` images may hold (the official files
    use about 6 per image: a label, a file name and their bookkeeping)."""
    return 24 * max_images + 10_000


def read_cifar_pickle(path, *, max_bytes: int = META_MAX_BYTES, max_images: int = 0,
                      official_md5: str | None = None, advice: str = REDOWNLOAD):
    """Load one CIFAR batch or meta file safely and within bounds.

    Args:
        path: the file.
        max_bytes: refuse a file larger than this, before reading it.
        max_images: bounds the number of pickle opcodes of a file that is not official.
        official_md5: the published MD5 of this file, if known; a file that matches it is
            not scanned before unpickling (it is the original).
        advice: what the error message tells the user to do.
    Returns:
        (the unpickled dict, :class:`FileInfo`). Keys are bytes (``encoding="bytes"``);
        arrays are plain writable NumPy arrays.
    Raises:
        UnsafePickleError: the file asks for a global outside :data:`ALLOWED_GLOBALS`.
        DataFileError: anything else wrong with the file (unreadable, too large, truncated,
            an array not backed by its bytes, not a dict, ...), as one line.
    """
    path = Path(path)
    raw = _read_bounded(path, max_bytes, advice)
    md5 = hashlib.md5(raw).hexdigest()
    info = FileInfo(len(raw), md5, official_md5 is not None and md5 == official_md5)
    try:
        if not info.official:
            _scan(raw, max_opcodes(max_images))
        content = CifarUnpickler(io.BytesIO(raw), source=str(path), encoding="bytes").load()
        content = _swap_arrays(content)
    except DataFileError:
        raise
    except _Refused as error:
        raise UnsafePickleError(f"refusing to load {path}: {error}. The file is damaged or was "
                                f"tampered with: {advice}.") from None
    except _Damaged as error:
        raise DataFileError(f"{path} is damaged or is not a CIFAR 'python version' file "
                            f"({error}): {advice}.") from None
    except Exception as error:  # truncated, garbage, wrong types, MemoryError, RecursionError...
        raise DataFileError(f"{path} is damaged or is not a CIFAR 'python version' file "
                            f"({describe_exception(error)}): {advice}.") from None
    if not isinstance(content, dict):
        raise DataFileError(f"{path}: expected a pickled dict (a CIFAR batch), got "
                            f"{type(content).__name__}. Is this a CIFAR 'python version' file? "
                            f"If so, {advice}.")
    return content, info


def load_cifar_pickle(path, **limits) -> dict:
    """Load one CIFAR batch or meta file safely, as the official instructions do.

    ``encoding="bytes"`` keeps Python 2 strings as bytes, so the keys are ``b"data"``,
    ``b"labels"`` and so on, whichever Python wrote the file. ``limits`` are those of
    :func:`read_cifar_pickle`; the default allows one CIFAR-10 batch.

    Returns:
        the unpickled dict.
    Raises:
        pickle.UnpicklingError (:class:`UnsafePickleError`): the file names anything outside
            :data:`ALLOWED_GLOBALS`.
        ValueError (:class:`DataFileError`): the file is damaged, too large or not a dict.
    """
    limits.setdefault("max_bytes", 64 * 1024 * 1024)
    limits.setdefault("max_images", 10_000)
    return read_cifar_pickle(path, **limits)[0]


def _read_bounded(path: Path, max_bytes: int, advice: str) -> bytes:
    """The bytes of ``path``, refused before reading when it is larger than ``max_bytes``."""
    try:
        status = os.stat(path)
        if not stat.S_ISREG(status.st_mode):
            raise DataFileError(f"{path} is not a regular file (a folder, device or pipe); "
                                f"expected a CIFAR batch file: {advice}.")
        if status.st_size > max_bytes:
            raise DataFileError(f"{path} is {status.st_size:,} bytes, more than the {max_bytes:,} "
                                f"a file of this kind can hold: it is not a CIFAR file; {advice}.")
        with open(path, "rb") as f:  # read(n) reserves n bytes first: ask for the size
            raw = f.read(status.st_size + 1)
            if len(raw) > status.st_size:  # it grows while we read
                raw += f.read(max_bytes + 1 - len(raw))
    except DataFileError:
        raise
    except OSError as error:
        reason = error.strerror or describe_exception(error)
        raise DataFileError(f"cannot read {path} ({reason}): check that it exists and that you "
                            f"may read it, or {advice}.") from None
    if len(raw) > max_bytes:  # it grew while we looked
        raise DataFileError(f"{path} holds more than the {max_bytes:,} bytes a file of this "
                            f"kind can hold: it is not a CIFAR file; {advice}.")
    return raw


_MEMO_OPCODES = frozenset({"PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET"})
_OPCODES = {ord(op.code): op for op in pickletools.opcodes}
_TWO_LINES = frozenset({"GLOBAL", "INST"})  # module and name, each on its own line
_LENGTH_BYTES = {pickletools.TAKEN_FROM_ARGUMENT1: (1, False),
                 pickletools.TAKEN_FROM_ARGUMENT4: (4, True),
                 pickletools.TAKEN_FROM_ARGUMENT4U: (4, False),
                 pickletools.TAKEN_FROM_ARGUMENT8U: (8, False)}


class _Damaged(Exception):
    """The pickle is cut short or garbled (not hostile, only unusable)."""


def _scan(raw: bytes, limit: int) -> None:
    """Walk the opcodes of ``raw`` before unpickling, without decoding their arguments: at
    most ``limit`` opcodes, memo indices below ``limit``, every declared length present in
    the file, and a STOP at the end."""
    pos, end, count = 0, len(raw), 0
    while pos < end:
        op = _OPCODES.get(raw[pos])
        if op is None:
            raise _Damaged(f"byte {raw[pos]:#04x} at offset {pos:,} is no pickle opcode")
        count += 1
        if count > limit:
            raise _Refused(f"it holds more than {limit:,} pickle operations, more than a "
                           "CIFAR file of this kind needs")
        pos += 1
        size = 0 if op.arg is None else op.arg.n
        if size == pickletools.UP_TO_NEWLINE:
            start = pos
            for _ in range(2 if op.name in _TWO_LINES else 1):
                newline = raw.find(b"\n", pos)
                if newline < 0:
                    raise _Damaged(f"the {op.name} at offset {start - 1:,} is cut short")
                pos = newline + 1
            if op.name in _MEMO_OPCODES:
                _check_memo(raw[start:pos].strip(), limit)
            continue
        if size in _LENGTH_BYTES:
            width, signed = _LENGTH_BYTES[size]
            if pos + width > end:
                raise _Damaged(f"the {op.name} at offset {pos - 1:,} is cut short")
            size = int.from_bytes(raw[pos:pos + width], "little", signed=signed)
            pos += width
            if size < 0:
                raise _Damaged(f"the {op.name} at offset {pos - width - 1:,} declares a "
                               "negative length")
        if pos + size > end:
            raise _Damaged(f"the {op.name} at offset {pos - 1:,} declares {size:,} bytes but "
                           f"only {end - pos:,} remain: the file is cut short")
        if op.name in _MEMO_OPCODES:
            _check_memo(int.from_bytes(raw[pos:pos + size], "little"), limit)
        pos += size
        if op.name == "STOP":
            return
    raise _Damaged("it ends before pickle's STOP: the file is cut short")


def _check_memo(index, limit: int) -> None:
    try:
        index = int(index)
    except ValueError:
        raise _Damaged("a memo index is not a number") from None
    if not 0 <= index < limit:
        raise _Refused(f"it uses the memo index {index:,}, beyond the {limit:,} a CIFAR file "
                       "of this kind can need")


def _swap_arrays(content):
    """Replace every :class:`ArrayState` inside dicts and lists by its array (iteratively)."""
    def resolve(value):
        if isinstance(value, ArrayState):
            if value.array is None:
                raise _Refused("an array is declared without its contents")
            return value.array
        if isinstance(value, DtypeState):
            return value.dtype
        return value

    content = resolve(content)
    pending, seen = [content], set()
    while pending:
        container = pending.pop()
        if id(container) in seen:
            continue
        seen.add(id(container))
        if isinstance(container, dict):
            for key, value in container.items():
                container[key] = resolve(value)
                if isinstance(container[key], (dict, list)):
                    pending.append(container[key])
        elif isinstance(container, list):
            for i, value in enumerate(container):
                container[i] = resolve(value)
                if isinstance(container[i], (dict, list)):
                    pending.append(container[i])
    return content
