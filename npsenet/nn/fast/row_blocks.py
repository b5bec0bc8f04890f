"""Matrix products in blocks of rows, for the CPU.

The strip products of a stride-1 convolution (``conv_strips.py``) are tall and thin:
tens of thousands of rows (the output positions) against an inner size k C and a width
C_out in the tens. OpenBLAS takes a product that small in its operands' sizes, but that
long, at well under half the speed it reaches on a square one; cut into blocks of rows
of at most ``BLOCK_MACS`` multiply-adds each, the same product runs up to twice as fast
on one thread (``benchmarks/row_blocks.py``: on a 2-core AVX-512 Xeon with NumPy's
OpenBLAS 0.3.31, the 16-channel layers' (22560, 48) @ (48, 16) at batch 64 ran at 53
GFLOP/s whole, 82 GFLOP/s in blocks of a million multiply-adds and 51 GFLOP/s in blocks
5% larger). Each block's rows and results stay in the core's cache, and OpenBLAS takes
products of at most a million multiply-adds through its kernels for small matrices.

Those kernels run on one thread, so blocking pays only where BLAS runs on one thread
anyway: in each rank of data-parallel training, where the launcher gives each rank
cores/N BLAS threads (one, for two ranks on two cores), or wherever the user sets
``OPENBLAS_NUM_THREADS=1``. A process that lets BLAS use
several cores keeps its products whole (blocking it measured 5% slower per training
step on two cores). On CuPy products are never cut: a GPU wants them large.

The blocks change the order of nothing inside a row of a product; a weight gradient
summed over blocks of rows rounds differently from one product, as a product of another
size would (float32 round-off).
"""
from __future__ import annotations

import os

BLOCK_MACS = 1_000_000     # multiply-adds per product of a block of rows
MIN_BLOCK_ROWS = 256       # thinner blocks cost more in calls than they gain
OPENBLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")


def blas_threads(environ=None):
    """How many threads OpenBLAS gives a product in this process: the first of its
    variables that is set (it reads them when it loads, in this order), else the cores
    this process may run on."""
    environ = os.environ if environ is None else environ
    for name in OPENBLAS_THREAD_VARIABLES:
        value = environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                   # not on Linux
        return os.cpu_count() or 1


ONE_THREAD = blas_threads() == 1           # read once, as OpenBLAS reads its variables


def row_blocks(rows, inner, cols, xp, one_thread=None):
    """The row ranges in which to take a product (rows, inner) @ (inner, cols).

    Args:
        rows, inner, cols: the product's sizes.
        xp: the array module (numpy or cupy).
        one_thread: whether BLAS runs on one thread; None reads ``ONE_THREAD``.
    Returns:
        a list of slices covering range(rows) in order: blocks of near-equal length and
        at most ``BLOCK_MACS`` multiply-adds each on NumPy with one BLAS thread; one slice
        over all rows on CuPy, with several BLAS threads, and where blocks would be
        thinner than ``MIN_BLOCK_ROWS``.
    """
    one_thread = ONE_THREAD if one_thread is None else one_thread
    per_block = BLOCK_MACS // max(1, inner * cols)
    if (xp.__name__ != "numpy" or not one_thread or per_block < MIN_BLOCK_ROWS
            or per_block >= rows):
        return [slice(0, rows)]
    count = -(-rows // per_block)
    edges = [rows * j // count for j in range(count + 1)]      # sizes differ by at most 1
    return [slice(start, stop) for start, stop in zip(edges, edges[1:])]
