"""Host memory that stays with the process from one training step to the next (glibc).

A training step allocates and frees tens of MB of activations and gradients. By default
glibc's ``malloc`` hands large blocks back to the operating system when they are freed
(``munmap``, or trimming the top of the heap), so the next step gets fresh pages, and every
4 KiB of them costs a page fault on its first write, which the kernel serves by zeroing
the page. Measured on a 2-core machine, SE-ResNet-20 at batch 64 on one thread: about
4,600 minor page faults and 8-10 ms of kernel time per 200 ms step, and with two training
processes side by side (``npsenet train --nproc 2``) the zeroing also competes for the
memory both use.

:func:`keep_freed_memory` tells glibc to keep freed memory instead (``mallopt``: no
trimming, large blocks from the heap rather than from ``mmap``), as PyTorch's caching
allocator keeps GPU memory: the process stays at its peak size, and a step takes a handful
of page faults. It runs once, when the fast path is first used (``npsenet.nn.fast.ops``);
the plain path leaves the allocator alone. It does nothing where the C library is not
glibc, or where the environment already sets ``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_`` or ``MALLOC_TOP_PAD_`` (the user's, or the benchmark's
peak-memory probe's, choice wins), or where ``NPSENET_KEEP_HOST_MEMORY=0``.
``docs/fast_path.md`` (design choice 11) gives the measurements.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

_M_TRIM_THRESHOLD = -1    # glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_ENVIRONMENT = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
_OFF = ("0", "false", "no", "off")

KEEP_BELOW = 1 << 30
"""Blocks up to this size (1 GiB) come from the heap and are kept when freed."""

_done = None              # the result of the first call


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse (see the module docstring); True if it
    agreed, False where nothing was changed. Only the first call acts."""
    global _done
    if _done is None:
        _done = _apply()
    return _done


def _apply() -> bool:
    if os.environ.get("NPSENET_KEEP_HOST_MEMORY", "1").strip().lower() in _OFF:
        return False
    if any(name in os.environ for name in _ENVIRONMENT):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; the trim threshold is an int, so at most 2**31 - 1
    return bool(mallopt(_M_MMAP_THRESHOLD, KEEP_BELOW)) and bool(
        mallopt(_M_TRIM_THRESHOLD, 2 ** 31 - 1))
