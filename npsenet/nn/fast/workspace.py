"""Memory the fast path reuses from call to call, instead of allocating it fresh.

Memory this large comes fresh from the operating system on every allocation and pays a
page fault per 4 KiB the first time it is written (measured: 26 ms to fill a fresh 75 MB
patch matrix, 4 ms to refill an old one); inside a training step a fresh array also
arrives out of cache, while a reused one is often still in it. The fast layers therefore
keep their padded copies, patch matrices and temporaries here, the way PyTorch's caching
allocator reuses GPU memory (``docs/fast_path.md`` says what this saves).

Two kinds of memory, each asked for by a named :class:`Role`:

* **Scratch**, used at once and never kept: ``scratch(role, shape, dtype, xp)`` and
  ``scratch_like(role, a)``, or with a zero border, ``zero_bordered(role, key, size, dtype,
  xp)`` and ``padded(role, x, padding, axes)``. The next call for the same role may
  return the same memory.
* **Kept** from a forward to its backward: ``borrow(role, key, size, dtype, xp)`` or
  ``borrow_like(role, a, dtype)``, which the caller owns until it hands the array back with
  ``give_back(role, key, array)`` or ``give_back_like(role, array)``; the next forward then
  borrows the same memory again.

Each thread has a workspace of its own (:class:`PerThreadWorkspace`): threads that train
side by side, as the simulated ranks of ``npsenet.distributed.ThreadGroup`` do, would
otherwise hand each other's scratch memory out in the middle of a layer.

No layer outside ``npsenet/nn/fast/`` uses this module (notebook 01 and the tests look
inside it).
"""
from __future__ import annotations

import enum
import math
import threading

from ...backend import get_array_module


class Role(enum.Enum):
    """What a piece of reused memory is for. Scratch roles name memory used at once; the
    ``KEPT_*`` roles name memory a forward keeps for its backward."""

    PATCHES = "patch matrix or kernel-row copies"
    STRIP_SUM = "sum of a residue's strip products"
    STRIP_TERM = "one strip product"
    TERM = "one partial product"
    DX_PADDED = "padded input gradient (col2im)"
    PADDED = "zero-padded input"
    GRID = "strip grid of a convolution's input"
    DY_GRID = "strip grid of an upstream gradient"
    DY_ON_X_GRID = "upstream gradient on the input's grid"
    BATCHNORM_TERM = "last term of batch norm's input gradient"
    KEPT_CONV_GRID = "a convolution's input grid, kept for its weight gradient"
    KEPT_BATCHNORM_CENTRED = "batch norm's x - mu, kept for backward"
    KEPT_RELU_MASK = "ReLU's mask [x > 0], kept for backward"


class Workspace:
    """Reused arrays (see the module docstring for why and for the two kinds).

    Scratch arrays are one per (role, array library, dtype), grown to the largest
    request, so a network needs scratch for its largest layer only. Zero-bordered arrays
    are one per key (a shape): their users write the same interior on every call and
    never touch the rest, so the border stays zero and a padded copy costs one copy of
    the data. Past ``max_kept`` keys (a workload that cycles through many input shapes)
    the oldest is dropped; borrowed arrays are bounded the same way, and one that is
    never given back (a forward without a backward) is simply freed.
    """

    def __init__(self, max_kept=64):
        self._scratch = {}
        self._zeroed = {}
        self._returned = {}
        self.max_kept = max_kept

    # -- scratch: used at once ----------------------------------------------------------
    def scratch(self, role, shape, dtype, xp):
        """An uninitialised array of ``shape``, used up before the next call for ``role``."""
        key = (role, xp.__name__, xp.dtype(dtype))
        size = math.prod(shape)
        buf = self._scratch.get(key)
        if buf is None or buf.size < size:
            self._scratch[key] = None                    # free the old one before growing
            buf = self._scratch[key] = xp.empty(size, dtype=dtype)
        return buf[:size].reshape(shape)

    def scratch_like(self, role, a):
        """Scratch with ``a``'s shape and dtype, laid out in memory as ``a`` is (a
        channels-last array gets a channels-last one)."""
        order, shape = _memory_order(a)
        return self.scratch(role, shape, a.dtype, get_array_module(a)).transpose(_inverse(order))

    def zero_bordered(self, role, key, size, dtype, xp):
        """A flat array, zero when made, kept under (role, ``key``): callers write only its
        interior, so its border stays zero from call to call."""
        key = (role, xp.__name__, xp.dtype(dtype)) + tuple(key)
        buf = self._zeroed.get(key)
        if buf is None:
            _drop_oldest(self._zeroed, self.max_kept)
            buf = self._zeroed[key] = xp.zeros(size, dtype=dtype)
        return buf

    def padded(self, role, x, padding, axes=(2, 3)):
        """4-D ``x`` copied into the middle of a zero-bordered array, padded by p on both
        sides of the two spatial ``axes``: (2, 3) for (A, B, H, W), (1, 2) for
        channels-last (N, H, W, C)."""
        if padding == 0:
            return x
        shape, interior = list(x.shape), [slice(None)] * x.ndim
        for axis in axes:
            shape[axis] += 2 * padding
            interior[axis] = slice(padding, padding + x.shape[axis])
        key = (x.shape, padding, axes)       # (the interior it writes, not only the size)
        buf = self.zero_bordered(role, key, math.prod(shape), x.dtype, get_array_module(x))
        buf = buf.reshape(shape)
        buf[tuple(interior)] = x
        return buf

    # -- kept from forward to backward ------------------------------------------------------
    def borrow(self, role, key, size, dtype, xp):
        """A flat array of ``size`` that is the caller's alone until :meth:`give_back`;
        zero when first made (a given-back one keeps the border its user never wrote)."""
        returned = self._returned.get((role, xp.__name__, xp.dtype(dtype)) + tuple(key))
        return returned.pop() if returned else xp.zeros(size, dtype=dtype)

    def give_back(self, role, key, array):
        """Hand back what :meth:`borrow` lent under (role, ``key``), for the next borrow."""
        xp = get_array_module(array)
        key = (role, xp.__name__, xp.dtype(array.dtype)) + tuple(key)
        if key not in self._returned:
            _drop_oldest(self._returned, self.max_kept)
            self._returned[key] = []
        self._returned[key].append(array)

    def borrow_like(self, role, a, dtype=None):
        """An array shaped and laid out like ``a`` (of ``a``'s dtype unless ``dtype`` is
        given), borrowed as by :meth:`borrow`."""
        order, shape = _memory_order(a)
        flat = self.borrow(role, (shape,), math.prod(shape), dtype or a.dtype,
                           get_array_module(a))
        return flat.reshape(shape).transpose(_inverse(order))

    def give_back_like(self, role, array):
        """Hand back an array that :meth:`borrow_like` lent."""
        order, shape = _memory_order(array)
        self.give_back(role, (shape,), array.transpose(order).reshape(-1))   # its memory

    def returned_state(self):
        """What has been given back now, for :meth:`restore_returned` (a shallow copy)."""
        return {key: list(arrays) for key, arrays in self._returned.items()}

    def restore_returned(self, state):
        """Undo the borrows and give-backs since :meth:`returned_state`: a call that failed
        and had its caches restored (``Module``) owns the arrays it gave back again."""
        self._returned = {key: list(arrays) for key, arrays in state.items()}

    # -- bookkeeping --------------------------------------------------------------------------
    def held(self):
        """The arrays held now: scratch, zero-bordered and given back (not those lent out)."""
        held = [buf for buf in self._scratch.values() if buf is not None]
        held += list(self._zeroed.values())
        return held + [buf for returned in self._returned.values() for buf in returned]

    def nbytes(self):
        """Bytes of memory held."""
        return sum(buf.nbytes for buf in self.held())

    def clear(self):
        """Give the memory back (it is allocated again on the next call)."""
        self._scratch.clear()
        self._zeroed.clear()
        self._returned.clear()


class PerThreadWorkspace:
    """The :class:`Workspace` of the calling thread: every attribute and method is that of a
    workspace made for the thread on its first use. Threads that train side by side (the
    simulated ranks of ``npsenet.distributed.ThreadGroup``, notebook 12) must not hand each
    other's scratch memory out mid-layer; separate processes have separate ones anyway.
    A thread's workspace goes when the thread ends."""

    def __init__(self):
        object.__setattr__(self, "_local", threading.local())

    def current(self):
        """This thread's workspace (made on the first call)."""
        mine = getattr(self._local, "workspace", None)
        if mine is None:
            mine = self._local.workspace = Workspace()
        return mine

    def __getattr__(self, name):
        return getattr(self.current(), name)

    def __setattr__(self, name, value):
        setattr(self.current(), name, value)


workspace = PerThreadWorkspace()
"""The fast path's reused memory: the calling thread's :class:`Workspace`."""


def _drop_oldest(table, limit):
    while len(table) >= limit:
        del table[next(iter(table))]


def _memory_order(a):
    """The axes of ``a`` from the outermost in memory to the innermost, and its shape in
    that order: ((0, 2, 3, 1), (N, H, W, C)) for a channels-last (N, C, H, W) array."""
    order = tuple(sorted(range(a.ndim), key=lambda axis: -a.strides[axis]))
    return order, tuple(a.shape[axis] for axis in order)


def _inverse(order):
    return tuple(order.index(axis) for axis in range(len(order)))
