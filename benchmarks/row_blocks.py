"""The strip products of SE-ResNet-20 at batch 64, whole and in blocks of rows
(``npsenet/nn/fast/row_blocks.py``), on this process's BLAS threads, interleaved.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 python3 benchmarks/row_blocks.py
    python3 benchmarks/row_blocks.py --repeats 41

For each product, (rows, inner) @ (inner, width) as ``strip_products`` takes it and
(inner, rows) @ (rows, width) as the weight gradient takes it, the repeats time in turn:
the whole product, blocks of ``BLOCK_MACS // (inner * width)`` rows (what ``row_blocks``
cuts, where that is at least ``MIN_BLOCK_ROWS``; the 64-channel products stay whole
there), and blocks 5% larger; each figure is the median over the repeats,
in GFLOP/s. The weight gradient sums its blocks' products, as ``conv2d_strips_backward``
does. Shapes: the grids of the three stages' 3x3 convolutions at batch 64 (16, 32 and
64 channels at 32x32, 16x16 and 8x8).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # this checkout's npsenet
from npsenet.nn.fast.conv_strips import StripGrid  # noqa: E402
from npsenet.nn.fast.row_blocks import BLOCK_MACS, blas_threads  # noqa: E402


def blocks(rows, size):
    return [slice(start, start + size) for start in range(0, rows, size)]


def forward(a, b, out, size):
    for s in blocks(a.shape[0], size):
        np.matmul(a[s], b, out=out[s])


def weight_gradient(a, dy, out, size):
    out[...] = 0
    for s in blocks(a.shape[0], size):
        out += np.matmul(a[s].T, dy[s])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"BLAS threads: {blas_threads()}; float32; median GFLOP/s of {args.repeats} repeats")
    print(f"{'product':34} {'whole':>7} {'<= 1e6':>7} {'+5%':>7}")
    for channels, size in ((16, 32), (32, 16), (64, 8)):
        grid = StripGrid((args.batch_size, size, size, channels), 3, 1)
        rows, inner, width = grid.rows, 3 * channels, channels
        a = rng.standard_normal((rows, inner)).astype(np.float32)
        b = rng.standard_normal((inner, width)).astype(np.float32)
        dy = rng.standard_normal((rows, width)).astype(np.float32)
        out, dw = np.empty((rows, width), np.float32), np.empty((inner, width), np.float32)
        per_block = BLOCK_MACS // (inner * width)
        sizes = {"whole": rows, "<= 1e6": per_block, "+5%": int(per_block * 1.05)}
        for name, fn, args_ in (("strips @ W", forward, (a, b, out)),
                                ("strips^T @ dy", weight_gradient, (a, dy, dw))):
            times = {key: [] for key in sizes}
            for _ in range(args.repeats):
                for key, block in sizes.items():
                    fn(*args_, block)                     # settle
                    start = time.perf_counter()
                    fn(*args_, block)
                    times[key].append(time.perf_counter() - start)
            flops = 2 * rows * inner * width
            speeds = [flops / statistics.median(times[key]) / 1e9 for key in sizes]
            label = f"{name}, {rows} x {inner} x {width}"
            print(f"{label:34} " + " ".join(f"{v:7.1f}" for v in speeds))


if __name__ == "__main__":
    main()
