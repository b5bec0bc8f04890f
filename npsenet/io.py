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
way.

Weights of timm and senet.pytorch, and ``.safetensors`` files in and out:
:func:`load_pretrained`, :func:`save_safetensors` and the rest of :mod:`npsenet.weights`.
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import uuid
import zipfile
from collections import namedtuple

import numpy as np

from .backend import to_numpy
from .models import build_model
from .weights import (convert_state_dict, detect_source, load_pretrained,  # noqa: F401
                      load_safetensors, safetensors_metadata, save_safetensors)

FORMAT = 1
HEADER_KEY = "__npsenet__"
EXTRA_PREFIX = "__extra__/"

Checkpoint = namedtuple("Checkpoint", ["model", "meta", "extra"])


def save_model(path, model, *, extra=None, meta=None):
    """Write ``model`` (state, name, options), ``extra`` arrays and JSON ``meta`` to ``path``.

    Args:
        path: the ``.npz`` file to write (replaced if it exists).
        model: a model built by ``ns.models`` (it has ``.name`` and ``.options``).
        extra: optional ``{name: array}`` saved under ``__extra__/<name>``.
        meta: optional JSON-serialisable dict (epoch, metrics, ...).
    """
    name, options = getattr(model, "name", None), getattr(model, "options", None)
    if name is None or options is None:
        raise ValueError("save_model: the model has no .name and .options; build it with "
                         "ns.models (e.g. ns.models.se_resnet20() or build_model(name)) so "
                         "that load_model can rebuild it.")
    try:
        header = json.dumps({"format": FORMAT, "model": name, "options": options,
                             "meta": meta or {}})
    except TypeError as exc:
        raise ValueError(f"save_model: options and meta must be JSON-serialisable ({exc}); "
                         "convert arrays to lists and NumPy numbers to float/int.") from None
    arrays = {key: to_numpy(value) for key, value in model.state_dict().items()}
    for key, value in (extra or {}).items():
        arrays[EXTRA_PREFIX + key] = to_numpy(value)
    arrays[HEADER_KEY] = np.array(header)
    with atomic_write(path) as f:
        np.savez(f, **arrays)


@contextlib.contextmanager
def atomic_write(path):
    """Replace the file ``path`` with what the ``with`` block writes, all or nothing.

        with ns.io.atomic_write("run/notes.txt") as f:   # f: a file open for writing bytes
            f.write("trained for 3 epochs".encode())

    The block writes to a temporary file beside ``path``; when it ends, the file is flushed
    to disk (fsync), renamed over ``path`` and the folder is fsynced. A reader, a crash or
    a ``kill -9`` sees the old file or the new one, never part of one. If the block raises
    (a full disk's ``OSError``, for instance) or the flush or the rename fails, the
    temporary file is removed, ``path`` keeps its old content and the exception propagates.

    The new file gets the usual permissions (0666 less the umask). Temporary files that a
    killed writer left behind are removed after a successful write (one writer per path,
    as the trainer has).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    prefix = f".{os.path.basename(path)}."
    tmp = os.path.join(folder, f"{prefix}{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_folder(folder)
    for stale in glob.glob(os.path.join(glob.escape(folder), glob.escape(prefix) + "*.tmp")):
        try:
            os.remove(stale)
        except OSError:
            pass


def _fsync_folder(folder):
    """Make a rename inside ``folder`` durable (POSIX; a no-op where folders can't be opened)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_checkpoint(path, device="cpu"):
    """Read a checkpoint written by :func:`save_model`.

    Returns ``Checkpoint(model, meta, extra)``: the model rebuilt with ``build_model`` and
    its state loaded (on ``device``, in the dtype it was saved in), the ``meta`` dict and
    the ``extra`` arrays as a dict.
    """
    path = os.fspath(path)
    arrays = _read_arrays(path)
    if HEADER_KEY not in arrays:
        raise ValueError(f"{path} is a NumPy archive but not an npsenet checkpoint (it has no "
                         f"{HEADER_KEY!r} entry); write checkpoints with ns.io.save_model.")
    try:
        header = json.loads(str(arrays.pop(HEADER_KEY)))
        name, options, meta = header["model"], header["options"], header.get("meta", {})
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{path}: the {HEADER_KEY!r} entry is not the JSON header that "
                         "save_model writes; the file is damaged.") from None
    if header.get("format") != FORMAT:
        raise ValueError(f"{path}: checkpoint format {header.get('format')!r}, but this "
                         f"version of npsenet reads format {FORMAT}.")
    extra = {k[len(EXTRA_PREFIX):]: arrays.pop(k) for k in list(arrays)
             if k.startswith(EXTRA_PREFIX)}
    model = build_model(name, **options)
    saved_dtype = next((a.dtype for a in arrays.values() if a.dtype.kind == "f"), None)
    if saved_dtype is not None:
        model.to(dtype=saved_dtype)
    try:
        model.load_state_dict(arrays)
    except ValueError as exc:
        raise ValueError(f"{path}: the saved state does not fit {name} with options "
                         f"{options}: {exc}") from None
    return Checkpoint(model.to(device=device), meta, extra)


def load_model(path, device="cpu"):
    """The model saved in ``path``, rebuilt and loaded (see :func:`load_checkpoint`)."""
    return load_checkpoint(path, device).model


def _read_arrays(path):
    """Every array of an .npz file as a dict, with clear errors for damaged files."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("it holds a single array, not an archive")
        with archive:
            return {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ValueError(f"{path} is not a readable npsenet checkpoint (.npz written by "
                         f"ns.io.save_model): {exc}. The file may be truncated or of another "
                         "format.") from None
