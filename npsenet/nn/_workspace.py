"""Scratch memory reused from call to call, shared by the layers.

Memory this large comes fresh from the operating system on every allocation and pays a
page fault per 4 KiB the first time it is written (measured: 26 ms to fill a fresh 75 MB
patch matrix, 4 ms to refill an old one); inside a training step a fresh array also
arrives out of cache, while a reused one is often still in it. The layers therefore keep
their padded copies, patch matrices and temporaries here, the way PyTorch's caching
allocator reuses GPU memory (see docs/performance.md for what this saves).
"""
from __future__ import annotations

import math

from ..backend import get_array_module


class Workspace:
    """Scratch arrays reused from call to call (see the module docstring for why).

    ``empty(xp, shape, dtype, slot)`` returns a view of the first prod(shape) elements of
    one array per (slot, array library, dtype), grown to the largest request. Each call
    may return the same memory as the last call for that slot, so a result must be used
    up before the next call: Conv2d's patch matrices are (the forward, dW and dx
    products run one after another), and the whole network then needs scratch memory
    for its largest layer only.

    ``zeroed(xp, key, size, dtype)`` returns a flat array that is zero when it is made
    and kept under ``key``. Its users write the same interior on every call and never
    touch the rest, so its border stays zero: a padded copy then costs one copy of the
    data instead of zero-filling a fresh array and copying. One is kept per shape, and a
    network needs a handful per batch size; past ``max_zeroed`` of them (a workload that
    cycles through many input shapes) the oldest is dropped.

    ``lend(xp, key, size, dtype)`` is ``zeroed`` for memory that must outlive the call: the
    array is the caller's alone until it comes back through ``give_back(xp, key, array)``,
    and is then lent again for the same key, its border still zero. Conv2d keeps its
    input's padded grid this way from forward to backward, so backward need not copy x
    onto a grid again; a network borrows as many as it has such layers alive at once, and
    an array that is never given back (a forward without a backward) is simply freed.
    ``lend_like(a, role)`` and ``give_back_like(array, role)`` do the same for an array
    shaped and laid out like ``a`` (BatchNorm keeps x - mu in one, ReLU its mask): inside
    a training step, memory that comes back from the previous step is much cheaper than
    new memory. Lent arrays are kept for at most ``max_zeroed`` keys, like zeroed ones.
    """

    def __init__(self, max_zeroed=64):
        self._buffers = {}
        self._zeroed = {}
        self._lendable = {}
        self.max_zeroed = max_zeroed

    def empty(self, xp, shape, dtype, slot="patches"):
        key = ("empty", slot, xp.__name__, xp.dtype(dtype))
        size = math.prod(shape)
        buf = self._buffers.get(key)
        if buf is None or buf.size < size:
            self._buffers[key] = None                    # free the old one before growing
            buf = self._buffers[key] = xp.empty(size, dtype=dtype)
        return buf[:size].reshape(shape)

    def like(self, a, slot):
        """Scratch with ``a``'s shape and dtype, laid out in memory as ``a`` is (a
        channels-last array gets a channels-last one), from ``empty``'s array for ``slot``:
        for a temporary that is used up before the next call for the same slot."""
        order, shape = _memory_order(a)
        buf = self.empty(get_array_module(a), shape, a.dtype, slot)
        return buf.transpose(_inverse(order))

    def zeroed(self, xp, key, size, dtype):
        key = (xp.__name__, xp.dtype(dtype)) + tuple(key)
        buf = self._zeroed.get(key)
        if buf is None:
            while len(self._zeroed) >= self.max_zeroed:
                del self._zeroed[next(iter(self._zeroed))]       # the oldest
            buf = self._zeroed[key] = xp.zeros(size, dtype=dtype)
        return buf

    def lend(self, xp, key, size, dtype):
        key = (xp.__name__, xp.dtype(dtype)) + tuple(key)
        returned = self._lendable.get(key)
        return returned.pop() if returned else xp.zeros(size, dtype=dtype)

    def give_back(self, xp, key, buf):
        key = (xp.__name__, xp.dtype(buf.dtype)) + tuple(key)
        if key not in self._lendable:
            while len(self._lendable) >= self.max_zeroed:
                del self._lendable[next(iter(self._lendable))]   # the oldest shape's
            self._lendable[key] = []
        self._lendable[key].append(buf)

    def lend_like(self, a, role, dtype=None):
        """An array shaped and laid out like ``a`` (of ``a``'s dtype unless ``dtype`` is
        given), lent as by ``lend`` under ``role``."""
        order, shape = _memory_order(a)
        xp = get_array_module(a)
        flat = self.lend(xp, (role, shape), math.prod(shape), dtype or a.dtype)
        return flat.reshape(shape).transpose(_inverse(order))

    def give_back_like(self, array, role):
        """Return an array that ``lend_like`` lent under ``role``."""
        order, shape = _memory_order(array)
        flat = array.transpose(order).reshape(-1)              # its memory, a view
        self.give_back(get_array_module(array), (role, shape), flat)

    def padded(self, x, padding, axes=(2, 3)):
        """4-D ``x`` copied into the middle of a zero-bordered buffer, one kept per shape,
        padded by p on both sides of the two spatial ``axes``: (2, 3) for (A, B, H, W),
        (1, 2) for channels-last (N, H, W, C)."""
        if padding == 0:
            return x
        xp = get_array_module(x)
        shape, interior = list(x.shape), [slice(None)] * x.ndim
        for axis in axes:
            shape[axis] += 2 * padding
            interior[axis] = slice(padding, padding + x.shape[axis])
        key = ("padded", x.shape, padding, axes)  # (the interior it writes, not only the size)
        buf = self.zeroed(xp, key, math.prod(shape), x.dtype).reshape(shape)
        buf[tuple(interior)] = x
        return buf

    def nbytes(self):
        """Bytes of scratch memory held."""
        held = list(self._buffers.values()) + list(self._zeroed.values())
        held += [buf for returned in self._lendable.values() for buf in returned]
        return sum(buf.nbytes for buf in held if buf is not None)

    def clear(self):
        """Give the scratch memory back (it is allocated again on the next call)."""
        self._buffers.clear()
        self._zeroed.clear()
        self._lendable.clear()


workspace = Workspace()


def _memory_order(a):
    """The axes of ``a`` from the outermost in memory to the innermost, and its shape in
    that order: ((0, 2, 3, 1), (N, H, W, C)) for a channels-last (N, C, H, W) array."""
    order = tuple(sorted(range(a.ndim), key=lambda axis: -a.strides[axis]))
    return order, tuple(a.shape[axis] for axis in order)


def _inverse(order):
    return tuple(order.index(axis) for axis in range(len(order)))
