"""Checkpoints: a model's state_dict, name and options in one ``.npz`` file.

    ns.io.save_model("run/checkpoint.npz", model, meta={"epoch": 3})
    model = ns.io.load_model("run/checkpoint.npz")        # rebuilt with build_model

The file is a plain NumPy archive that loads with ``allow_pickle=False``:

* each state_dict entry under its own key (``layer1.0.se.fc1.weight``, ...), a NumPy array;
* ``__npsenet__``: a unicode array holding the JSON
  ``{"format": 1, "model": name, "options": {...}, "meta": {...}}``;
* ``__extra__/<name>``: any extra arrays (optimizer state, for example).

Files are written atomically (:func:`atomic_write`): to a temporary file in the same
folder, flushed to disk, then renamed over the target, so a crash never leaves a
half-written checkpoint. The trainer writes its ``metrics.csv`` and ``curves.png`` the same
way. A full disk or an unwritable folder during a save is a :class:`SaveError` (one line:
which file, why, and that the previous file is kept).

Reading is bounded: nothing a file declares is allocated before it is checked. The JSON
header is read with a size limit; the model's name must be registered and its options of
the right type and range (:func:`npsenet.models.registry.check_options`) before the model
is built; then every member's declared size and ``.npy`` header (shape, dtype) must match
what the built model's state_dict declares before any array is read, so a small file that
inflates to gigabytes is refused from its header. Each problem is a one-line
:class:`CheckpointError` (a ValueError) naming the file, what is wrong and what to do.

Weights of timm and senet.pytorch, and ``.safetensors`` files in and out:
:func:`load_pretrained`, :func:`save_safetensors` and the rest of :mod:`npsenet.weights`.
"""
from __future__ import annotations

import contextlib
import errno as _errno
import glob
import json
import math
import os
import uuid
import zipfile
import zlib
from collections import namedtuple

import numpy as np

from .backend import to_numpy
from .models import build_model
from .models.registry import check_options
from .weights import (convert_state_dict, detect_source, load_pretrained,  # noqa: F401
                      load_safetensors, safetensors_metadata, save_safetensors)

FORMAT = 1
HEADER_KEY = "__npsenet__"
EXTRA_PREFIX = "__extra__/"

MAX_MEMBERS = 100_000
"""The most entries a checkpoint may hold (SENet-154 has about 2,000)."""
MAX_JSON_BYTES = 16 * 2**20
"""The largest JSON entry (the header, the trainer's state) read from a checkpoint."""
MAX_EXTRA_BYTES = 64 * 2**20
"""Extra arrays of unknown purpose may declare, together, twice the model's state or this
much, whichever is more (an optimizer holds one or two arrays per parameter)."""
SAVED_FLOAT_DTYPES = ("float32", "float64")

REWRITE = ("save the model again with ns.io.save_model, or use an earlier copy of the "
           "checkpoint")

Checkpoint = namedtuple("Checkpoint", ["model", "meta", "extra"])


class CheckpointError(ValueError):
    """A checkpoint that cannot be read: one line naming the file, what is wrong with it and
    what to do. Raised before anything is built from the file or changed."""


def damaged(path, what, todo=REWRITE):
    """The :class:`CheckpointError` ``"<path>: this checkpoint is damaged: <what>; <todo>"``."""
    return CheckpointError(f"{path}: this checkpoint is damaged: {what}; {todo}.")


class SaveError(RuntimeError):
    """A file could not be written (full disk, read-only or missing folder, no permission,
    a folder in the file's place...). The previous file, if any, is kept as it was.
    ``path`` is the file and ``errno`` the operating system's error number."""

    def __init__(self, message, path=None, errno=None):
        super().__init__(message)
        self.path, self.errno = path, errno


def save_model(path, model, *, extra=None, meta=None):
    """Write ``model`` (state, name, options), ``extra`` arrays and JSON ``meta`` to ``path``.

    Args:
        path: the ``.npz`` file to write (replaced if it exists).
        model: a model built by ``ns.models`` (it has ``.name`` and ``.options``).
        extra: optional ``{name: array}`` saved under ``__extra__/<name>``.
        meta: optional JSON-serialisable dict (epoch, metrics, ...).

    A full disk or an unwritable folder raises :class:`SaveError` and keeps the old file.
    """
    name, options = getattr(model, "name", None), getattr(model, "options", None)
    if name is None or options is None:
        raise ValueError("save_model: the model has no .name and .options; build it with "
                         "ns.models (e.g. ns.models.se_resnet20() or build_model(name)) so "
                         "that load_model can rebuild it.")
    try:
        header = json.dumps({"format": FORMAT, "model": name, "options": options,
                             "meta": meta or {}})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"save_model: options and meta must be JSON-serialisable ({exc}); "
                         "convert arrays to lists and NumPy numbers to float/int.") from None
    arrays = {key: to_numpy(value) for key, value in model.state_dict().items()}
    for key, value in (extra or {}).items():
        arrays[EXTRA_PREFIX + key] = to_numpy(value)
    arrays[HEADER_KEY] = np.array(header)
    with atomic_write(path) as f:
        np.savez(f, **arrays)


def _save_error(path, exc, what):
    """The one-line :class:`SaveError` for the OSError ``exc`` while ``what`` ``path``."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    code = _errno.errorcode.get(exc.errno, "") if exc.errno else ""
    if exc.errno in (_errno.ENOSPC, getattr(_errno, "EDQUOT", -1)):
        todo = "free some space on that disk, or choose another output folder (--out)"
    elif exc.errno in (_errno.EISDIR, _errno.ENOTDIR, _errno.ENOENT):
        todo = ("make sure the folder exists and nothing else has the file's name, or choose "
                "another output folder (--out)")
    elif exc.errno in (_errno.EACCES, _errno.EPERM, _errno.EROFS):
        todo = "make the folder writable, or choose another output folder (--out)"
    else:
        todo = ("free some space or make the folder writable, or choose another output "
                "folder (--out)")
    previous = ("the previous file is kept as it was" if os.path.isfile(path)
                else "nothing was written")
    return SaveError(f"could not write {path} ({what}): {reason}"
                     f"{f' [{code}]' if code else ''}; {previous}. To go on, {todo}.",
                     path=path, errno=exc.errno)


@contextlib.contextmanager
def atomic_write(path):
    """Replace the file ``path`` with what the ``with`` block writes, all or nothing.

        with ns.io.atomic_write("run/notes.txt") as f:   # f: a file open for writing bytes
            f.write("trained for 3 epochs".encode())

    The block writes to a temporary file beside ``path``; when it ends, the file is flushed
    to disk (fsync), renamed over ``path`` and the folder is fsynced. A reader, a crash or
    a ``kill -9`` sees the old file or the new one, never part of one.

    If the temporary file cannot be created, or an ``OSError`` comes while the block writes,
    while flushing or while renaming (a full disk's ENOSPC, a quota's EDQUOT, a read-only
    disk's EROFS, EACCES, a folder in the file's place...), the temporary file is removed,
    ``path`` keeps its old content and a one-line :class:`SaveError` (a RuntimeError) says
    which file, why, and what to do. Any other exception of the block propagates as it is,
    after the same clean-up.

    The new file gets the usual permissions (0666 less the umask). Temporary files that a
    killed writer left behind are removed after a successful write (one writer per path,
    as the trainer has).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    prefix = f".{os.path.basename(path)}."
    tmp = os.path.join(folder, f"{prefix}{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise _save_error(path, exc, "creating a temporary file beside it") from exc
    what = "writing"
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            what = "flushing it to disk"
            f.flush()
            os.fsync(f.fileno())
        what = "renaming the temporary file over it"
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            if os.path.lexists(tmp):
                os.remove(tmp)
        if isinstance(exc, OSError):
            raise _save_error(path, exc, what) from exc
        raise
    with contextlib.suppress(OSError):  # the new file is in place; this only makes it durable
        _fsync_folder(folder)
    for stale in glob.glob(os.path.join(glob.escape(folder), glob.escape(prefix) + "*.tmp")):
        with contextlib.suppress(OSError):
            os.remove(stale)


def _fsync_folder(folder):
    """Make a rename inside ``folder`` durable (POSIX; a no-op where folders can't be opened)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- reading, bounded ------------------------------------------------------------------------

_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError,
                NotImplementedError, RuntimeError, KeyError, OverflowError, MemoryError)

NpyHeader = namedtuple("NpyHeader", ["shape", "dtype", "fortran_order"])


def _short(value, limit=60):
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


class Archive:
    """An ``.npz`` file opened for bounded reading: its members' ``.npy`` headers are read
    (and checked against the member's declared size) without reading their data.

        with Archive(path) as archive:
            archive.headers()               # {key: NpyHeader(shape, dtype, fortran_order)}
            archive.read(key)               # one array, allow_pickle=False
    """

    def __init__(self, path):
        self.path = path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"no checkpoint at {path}")
        if os.path.isdir(path):
            raise CheckpointError(f"{path} is a folder, not a checkpoint file; pass the "
                                  "checkpoint.npz inside it.")
        try:
            with open(path, "rb") as f:
                magic = f.read(6)
        except OSError as exc:
            raise CheckpointError(f"{path} cannot be read ({exc.strerror or exc}); check "
                                  "its permissions.") from None
        if magic == b"\x93NUMPY":
            raise CheckpointError(f"{path} is not a readable npsenet checkpoint: it holds a "
                                  "single array, not an archive; write checkpoints with "
                                  "ns.io.save_model.")
        try:
            self.zip = zipfile.ZipFile(path)
            infos = self.zip.infolist()
        except _READ_ERRORS as exc:
            raise CheckpointError(f"{path} is not a readable npsenet checkpoint (.npz written "
                                  f"by ns.io.save_model): {_short(str(exc), 120)}; the file may "
                                  "be truncated or of another format.") from None
        if len(infos) > MAX_MEMBERS:
            self.close()
            raise damaged(path, f"it holds {len(infos):,} entries, more than the "
                                f"{MAX_MEMBERS:,} a model has")
        self.members = {}
        for info in infos:
            key = info.filename[:-4] if info.filename.endswith(".npy") else None
            if key is None or key in self.members:
                self.close()
                what = ("it holds two entries named " if key else "it holds an entry that is "
                        "not a .npy array: ") + _short(info.filename)
                raise damaged(path, what)
            self.members[key] = info
        self._headers = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        with contextlib.suppress(Exception):
            self.zip.close()

    def __contains__(self, key):
        return key in self.members

    def header(self, key):
        """The :class:`NpyHeader` of member ``key``, checked: a plain (non-object) dtype and
        a declared uncompressed size equal to what the header's shape and dtype need."""
        if key in self._headers:
            return self._headers[key]
        info = self.members[key]
        try:
            with self.zip.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
                else:
                    raise ValueError(f"unsupported .npy version {version}")
                offset = f.tell()
        except _READ_ERRORS as exc:
            raise damaged(self.path, f"the entry {key!r} has no readable .npy header "
                                     f"({_short(str(exc), 100)})") from None
        if dtype.hasobject or dtype.kind not in "biufcU" or dtype.fields is not None:
            raise damaged(self.path, f"the entry {key!r} has dtype {_short(str(dtype))}: "
                                     "npsenet reads plain numbers only, never pickled objects")
        need = offset + math.prod(shape) * dtype.itemsize
        if info.file_size != need:
            raise damaged(self.path, f"the entry {key!r} declares {info.file_size:,} bytes but "
                                     f"its header (shape {shape}, {dtype}) needs {need:,}")
        self._headers[key] = NpyHeader(tuple(shape), dtype, bool(fortran))
        return self._headers[key]

    def headers(self, keys=None):
        """``{key: NpyHeader}`` of ``keys`` (default: every member)."""
        return {key: self.header(key) for key in (self.members if keys is None else keys)}

    def read(self, key):
        """Member ``key`` as a NumPy array (its header checked first)."""
        self.header(key)
        try:
            with self.zip.open(self.members[key]) as f:
                return np.lib.format.read_array(f, allow_pickle=False)
        except _READ_ERRORS as exc:
            raise damaged(self.path, f"the entry {key!r} cannot be read "
                                     f"({_short(str(exc), 100)}); the file may be truncated"
                          ) from None

    def read_json(self, key, what):
        """Member ``key``, a 0-d unicode array of at most :data:`MAX_JSON_BYTES`, parsed."""
        head = self.header(key)
        if head.shape != () or head.dtype.kind != "U" or head.dtype.itemsize > MAX_JSON_BYTES:
            raise damaged(self.path, f"{what} ({key!r}) is not a JSON text of at most "
                                     f"{MAX_JSON_BYTES // 2**20} MB (shape {head.shape}, "
                                     f"{head.dtype})")
        try:
            return json.loads(str(self.read(key)))
        except (ValueError, RecursionError) as exc:
            raise damaged(self.path, f"{what} ({key!r}) is not valid JSON "
                                     f"({_short(str(exc), 80)})") from None


def _nbytes(head):
    return math.prod(head.shape) * head.dtype.itemsize


def check_state_headers(path, model, headers):
    """The dtype the state was saved in, after checking that ``headers`` (``{key:
    NpyHeader}``) has exactly ``model``'s state_dict keys with its shapes and dtypes (float
    entries all float32 or all float64). Raises :class:`CheckpointError`."""
    own = {key: (tuple(value.shape), np.dtype(value.dtype))
           for key, value in model.state_dict().items()}
    missing = [k for k in own if k not in headers]
    unexpected = [k for k in headers if k not in own]
    name = getattr(model, "name", type(model).__name__)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} state entries missing {_first(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected {_first(unexpected)}")
        raise damaged(path, f"the saved state does not fit {name}: {'; '.join(parts)}",
                      "was it saved from the same model and options? Save it again with "
                      "ns.io.save_model")
    saved = None
    for key, (shape, dtype) in own.items():
        head = headers[key]
        want = dtype
        if dtype.kind == "f":
            if saved is None:
                saved = head.dtype
                if saved.name not in SAVED_FLOAT_DTYPES:
                    raise damaged(path, f"{key} has dtype {saved}, not one of "
                                        f"{', '.join(SAVED_FLOAT_DTYPES)}")
            want = saved
        if head.shape != shape or head.dtype != want:
            raise damaged(path, f"{key} is {head.dtype} {head.shape} in the file but {name} "
                                f"needs {want} {shape}",
                          "was it saved from the same model and options (num_classes, "
                          "reduction, divisor)? Save it again with ns.io.save_model")
    return saved


def _first(keys, count=3):
    more = f" and {len(keys) - count} more" if len(keys) > count else ""
    return f"{[k[:50] for k in keys[:count]]}{more}"


def _default_extra_check(path, model, saved_dtype, headers):
    """Extra arrays of unknown purpose: bounded together (see :data:`MAX_EXTRA_BYTES`)."""
    state = sum(math.prod(v.shape) * (saved_dtype or np.dtype("float32")).itemsize
                for v in model.state_dict().values())
    limit = max(2 * state, MAX_EXTRA_BYTES)
    total = sum(_nbytes(h) for h in headers.values())
    if total > limit:
        raise damaged(path, f"its extra arrays declare {total:,} bytes, more than the "
                            f"{limit:,} npsenet reads beside a model of {state:,} bytes")


def load_checkpoint(path, device="cpu", *, check_extra=None):
    """Read a checkpoint written by :func:`save_model`.

    Returns ``Checkpoint(model, meta, extra)``: the model rebuilt with ``build_model`` and
    its state loaded (on ``device``, in the dtype it was saved in), the ``meta`` dict and
    the ``extra`` arrays as a dict.

    Nothing the file declares is allocated before it is checked: the header's size, the
    model's name and options (before the model is built), then each entry's ``.npy``
    header against the model's state_dict (before any array is read). ``check_extra``:
    optional ``f(model, saved_dtype, {name: NpyHeader})`` that checks the extra arrays'
    headers (raising ValueError) before they are read; by default they are only bounded
    in size. Any problem raises a one-line :class:`CheckpointError`; a missing file
    raises FileNotFoundError.
    """
    path = os.fspath(path)
    with Archive(path) as archive:
        if HEADER_KEY not in archive:
            raise CheckpointError(f"{path} is a NumPy archive but not an npsenet checkpoint "
                                  f"(it has no {HEADER_KEY!r} entry); write checkpoints with "
                                  "ns.io.save_model.")
        header = archive.read_json(HEADER_KEY, "the header")
        if not isinstance(header, dict):
            raise damaged(path, f"the {HEADER_KEY!r} header is a {type(header).__name__}, "
                                "not the JSON object save_model writes")
        if header.get("format") != FORMAT:
            raise CheckpointError(f"{path}: checkpoint format {_short(header.get('format'))}, "
                                  f"but this version of npsenet reads format {FORMAT}.")
        name, options = header.get("model"), header.get("options")
        meta = header.get("meta", {})
        if not isinstance(name, str) or not isinstance(options, dict) \
                or not isinstance(meta, dict):
            raise damaged(path, "the header's model must be a name, its options and meta "
                                "JSON objects; got "
                                f"{type(name).__name__}, {type(options).__name__}, "
                                f"{type(meta).__name__}")
        try:
            check_options(name, options)   # before anything is built
            model = build_model(name, **options)
        except (ValueError, TypeError) as exc:
            raise damaged(path, f"its model cannot be built: {_short(str(exc), 200)}",
                          "save it again with ns.io.save_model from a model of ns.models"
                          ) from None
        extra_keys = [k for k in archive.members if k.startswith(EXTRA_PREFIX)]
        state_keys = [k for k in archive.members
                      if k != HEADER_KEY and not k.startswith(EXTRA_PREFIX)]
        saved_dtype = check_state_headers(path, model, archive.headers(state_keys))
        extra_headers = {k[len(EXTRA_PREFIX):]: archive.header(k) for k in extra_keys}
        if check_extra is None:
            _default_extra_check(path, model, saved_dtype, extra_headers)
        else:
            try:
                check_extra(model, saved_dtype, extra_headers)
            except CheckpointError:
                raise
            except ValueError as exc:
                raise damaged(path, str(exc).rstrip(".")) from None
        arrays = {key: archive.read(key) for key in state_keys}
        extra = {k[len(EXTRA_PREFIX):]: archive.read(k) for k in extra_keys}
    if saved_dtype is not None:
        model.to(dtype=saved_dtype)
    try:
        model.load_state_dict(arrays)
    except ValueError as exc:
        raise damaged(path, f"the saved state does not fit {name} with options {options}: "
                            f"{_short(str(exc), 200)}") from None
    return Checkpoint(model.to(device=device), meta, extra)


def load_model(path, device="cpu"):
    """The model saved in ``path``, rebuilt and loaded (see :func:`load_checkpoint`)."""
    return load_checkpoint(path, device).model


def read_state(path, model):
    """The state_dict arrays saved in the checkpoint ``path`` for ``model`` (an existing
    model: every entry's header is checked against its state_dict before any is read)."""
    path = os.fspath(path)
    with Archive(path) as archive:
        keys = [k for k in archive.members
                if k != HEADER_KEY and not k.startswith(EXTRA_PREFIX)]
        check_state_headers(path, model, archive.headers(keys))
        return {key: archive.read(key) for key in keys}
