"""Matrix products in blocks of rows on one BLAS thread (npsenet/nn/fast/row_blocks.py;
docs/fast_path.md, design choice 12): the blocks, when they apply, and the convolutions
that use them against the plain path."""
import os
import subprocess
import sys
import types

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import npsenet as ns
from npsenet.nn.fast import conv_strips, row_blocks as rb


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 200_000), st.integers(1, 600), st.integers(1, 300))
def test_the_blocks_cover_every_row_once_in_order_and_within_the_budget(rows, inner, cols):
    blocks = rb.row_blocks(rows, inner, cols, np, one_thread=True)
    assert blocks[0].start == 0 and blocks[-1].stop >= rows
    assert all(a.stop == b.start for a, b in zip(blocks, blocks[1:]))
    covered = np.concatenate([np.arange(rows)[b] for b in blocks])
    np.testing.assert_array_equal(covered, np.arange(rows))
    if len(blocks) > 1:
        sizes = [len(range(rows)[b]) for b in blocks]
        assert max(sizes) * inner * cols <= rb.BLOCK_MACS
        assert max(sizes) - min(sizes) <= 1                # near-equal: no sliver at the end


def test_one_block_where_blocking_does_not_pay():
    whole = [slice(0, 30_000)]
    assert rb.row_blocks(30_000, 48, 16, np, one_thread=True) != whole      # the case it is for
    assert rb.row_blocks(30_000, 48, 16, np, one_thread=False) == whole     # several threads
    cupy_like = types.SimpleNamespace(__name__="cupy")
    assert rb.row_blocks(30_000, 48, 16, cupy_like, one_thread=True) == whole
    assert rb.row_blocks(30_000, 192, 64, np, one_thread=True) == whole     # blocks too thin
    assert rb.row_blocks(1000, 48, 16, np, one_thread=True) == [slice(0, 1000)]  # small already


@pytest.mark.parametrize("environ, threads", [
    ({"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "4"}, 1),
    ({"OPENBLAS_NUM_THREADS": "3"}, 3),
    ({"GOTO_NUM_THREADS": "2", "OMP_NUM_THREADS": "1"}, 2),
    ({"OMP_NUM_THREADS": " 1 "}, 1),
    ({"OPENBLAS_NUM_THREADS": "many", "OMP_NUM_THREADS": "5"}, 5),       # not a number: skipped
    ({"OPENBLAS_NUM_THREADS": "0", "OMP_NUM_THREADS": "6"}, 6),          # 0 means "default"
])
def test_blas_threads_reads_openblas_variables_in_its_order(environ, threads):
    assert rb.blas_threads(environ) == threads


def test_blas_threads_without_variables_is_the_cores_this_process_may_use():
    expected = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                else os.cpu_count())
    assert rb.blas_threads({}) == expected


@pytest.mark.parametrize("threads, one", [("1", True), ("2", False)])
def test_the_process_reads_its_thread_count_once_at_import(threads, one):
    env = {k: v for k, v in os.environ.items()
           if k not in rb.OPENBLAS_THREAD_VARIABLES}
    env["OPENBLAS_NUM_THREADS"] = threads
    out = subprocess.run([sys.executable, "-c",
                          "from npsenet.nn.fast import row_blocks; print(row_blocks.ONE_THREAD)"],
                         env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(one)


@pytest.fixture
def blocked(monkeypatch):
    """Blocking on, in blocks of at least one row; records how many blocks each product
    of the strips was cut into. The test sets the budget (``rb.BLOCK_MACS``)."""
    monkeypatch.setattr(rb, "ONE_THREAD", True)
    monkeypatch.setattr(rb, "MIN_BLOCK_ROWS", 1)
    counts = []
    original = rb.row_blocks

    def counting(*args, **kwargs):
        blocks = original(*args, **kwargs)
        counts.append(len(blocks))
        return blocks
    monkeypatch.setattr(conv_strips, "row_blocks", counting)
    return counts


@pytest.mark.parametrize("seed", range(12))
def test_blocked_stride_1_convolutions_agree_with_the_plain_path(blocked, monkeypatch, seed):
    """Forward, dx, dW and db of random stride-1 convolutions whose products are cut into
    blocks of 1-7 rows, against the plain path, in float64."""
    rng = np.random.default_rng(seed)
    n, c_in, c_out = int(rng.integers(1, 4)), int(rng.integers(1, 9)), int(rng.integers(1, 9))
    k = int(rng.choice([1, 3, 5]))
    padding = int(rng.integers(0, k))
    h, w = int(rng.integers(k + 1, 14)), int(rng.integers(k + 1, 14))
    monkeypatch.setattr(rb, "BLOCK_MACS", int(rng.integers(1, 8)) * k * max(c_in, c_out) ** 2)
    conv = ns.nn.Conv2d(c_in, c_out, k, padding=padding, bias=bool(rng.integers(0, 2)))
    conv = conv.to(dtype=np.float64)
    x = rng.standard_normal((n, c_in, h, w))
    dy = rng.standard_normal((n, c_out, h + 2 * padding - k + 1, w + 2 * padding - k + 1))
    results = []
    for fast in (True, False):
        conv.zero_grad()
        with ns.nn.fast(fast):
            y = conv(x)
            dx = conv.backward(dy)
        results.append([np.array(y), np.array(dx)] + [np.array(p.grad) for p in conv.parameters()])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * np.abs(b).max())
    if k > 1:
        assert max(blocked) > 1          # the products were cut
