"""The one switch between the two code paths that compute every layer.

* the **plain path**, ``npsenet.nn.functional``: stateless forward/backward pairs, the code
  the notebooks derive (im2col convolutions, broadcasting element-wise layers);
* the **fast path**, ``npsenet.nn.fast``: the same pairs, same arguments, same numbers,
  rearranged for speed (channels-last memory, strip convolutions, reused buffers).

The layers of ``npsenet.nn`` ask :func:`active_path` at every forward and remember which
path ran, so their backward uses the same one. The fast path is the default;
``NPSENET_FAST=0`` in the environment, ``ns.nn.use_fast(False)`` or the context manager
``with ns.nn.fast(False): ...`` select the plain one. ``with using_path(pairs): ...`` runs
the layers on any object holding the same pairs (the course kit's student path,
``npsenet.exercise.student_path``).
"""
from __future__ import annotations

import os

from . import functional

_OFF = ("0", "false", "no", "off")
_fast_enabled = os.environ.get("NPSENET_FAST", "1").strip().lower() not in _OFF


def use_fast(flag: bool = True) -> None:
    """Run the layers on the fast path (``True``, the default) or the plain one."""
    global _fast_enabled
    _fast_enabled = bool(flag)


def is_fast() -> bool:
    """Whether the layers run on the fast path."""
    return _fast_enabled


class fast_path:
    """``with ns.nn.fast(False): ...`` runs the block on the plain path (``True``: on the
    fast one) and restores the previous choice afterwards, as ``ns.no_grad()`` does."""

    def __init__(self, flag: bool = True):
        self.flag = bool(flag)

    def __enter__(self):
        self._previous = is_fast()
        use_fast(self.flag)
        return self

    def __exit__(self, *exc):
        use_fast(self._previous)
        return False


_fast_ops = None                 # npsenet.nn.fast.ops, imported on first use
_custom_path = None              # set by using_path


class using_path:
    """``with using_path(pairs): ...`` makes every layer call ``pairs``, any object with the
    plain path's pair names as attributes (a module, a ``types.SimpleNamespace``), and
    restores the previous path afterwards; it overrides the fast/plain choice inside the
    block. A layer's backward still runs on the path of its forward."""

    def __init__(self, pairs):
        self.pairs = pairs

    def __enter__(self):
        global _custom_path
        self._previous, _custom_path = _custom_path, self.pairs
        return self.pairs

    def __exit__(self, *exc):
        global _custom_path
        _custom_path = self._previous
        return False


def active_path():
    """The module whose forward/backward pairs the layers call now:
    ``npsenet.nn.fast.ops`` or ``npsenet.nn.functional`` (or, inside ``using_path(pairs)``,
    ``pairs``)."""
    global _fast_ops
    if _custom_path is not None:
        return _custom_path
    if not _fast_enabled:
        return functional
    if _fast_ops is None:
        from .fast import ops
        _fast_ops = ops
    return _fast_ops
