"""The fast path's depthwise convolution (``npsenet/nn/fast/conv_depthwise.py``): the
same numbers as the plain path's grouped convolution with groups = C (1e-12, float64)
and as PyTorch's (1e-9), the dispatch that sends groups = C_in = C_out to it (and a
channel multiplier to the grouped code), and an upstream gradient left as it came."""
import numpy as np
import pytest

import npsenet as ns
from npsenet.backend import to_device
from npsenet.nn import functional
from npsenet.nn.fast import conv as fast_conv
from npsenet.nn.fast import ops as fast

from helpers import normwise_error

RTOL_PLAIN = 1e-12
RTOL_TORCH = 1e-9


def _depthwise_cases(count=30, seed=11):
    """Random depthwise convolutions (n, c, h, w, k, s, p, bias): k in 1, 3, 5, 7, stride
    1 or 2, padding 0..k//2, odd sizes, N = 1..4."""
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        k = int(rng.choice([1, 3, 5, 7]))
        s = int(rng.choice([1, 2]))
        p = int(rng.integers(0, k // 2 + 1))
        h, w = int(rng.integers(k, k + 8)), int(rng.integers(k, k + 8))
        n, c = int(rng.integers(1, 5)), int(rng.integers(2, 9))
        cases.append((n, c, h, w, k, s, p, bool(rng.random() < 0.5)))
    return cases


CASES = _depthwise_cases()
IDS = [f"n{n}-c{c}-{h}x{w}-k{k}-s{s}-p{p}-b{int(b)}" for n, c, h, w, k, s, p, b in CASES]


def _arrays(case, device, seed):
    """x, W, b and a random upstream gradient dy for ``case``, float64, on ``device``."""
    n, c, h, w, k, s, p, bias = case
    rng = np.random.default_rng(seed)
    ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    x = rng.standard_normal((n, c, h, w))
    weight = rng.standard_normal((c, 1, k, k))
    b = rng.standard_normal(c) if bias else None
    dy = rng.standard_normal((n, c, ho, wo))
    on = (lambda a: None if a is None else to_device(a, device))
    return on(x), on(weight), on(b), on(dy)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_depthwise_matches_the_plain_grouped_convolution(case, device):
    x, weight, b, dy = _arrays(case, device, seed=hash(case) % 2**32)
    s, p, groups = case[5], case[6], case[1]
    y, cache = fast.conv2d_forward(x, weight, b, s, p, groups)
    y_plain, cache_plain = functional.conv2d_forward(x, weight, b, s, p, groups)
    assert cache[0] is fast_conv._depthwise_backward
    assert normwise_error(y, y_plain) < RTOL_PLAIN
    grads = fast.conv2d_backward(dy, cache)
    grads_plain = functional.conv2d_backward(dy, cache_plain)
    for name, g, g_plain in zip(("dx", "dW", "db"), grads, grads_plain):
        if g_plain is None:
            assert g is None, name
        else:
            assert g.shape == g_plain.shape, name
            assert normwise_error(g, g_plain) < RTOL_PLAIN, name


@pytest.mark.parametrize("case", CASES[::3], ids=IDS[::3])
def test_depthwise_matches_torch(case, device):
    torch = pytest.importorskip("torch")
    x, weight, b, dy = _arrays(case, device, seed=hash(case) % 2**32 + 1)
    s, p, groups = case[5], case[6], case[1]
    y, cache = fast.conv2d_forward(x, weight, b, s, p, groups)
    dx, dw, db = fast.conv2d_backward(dy, cache)

    as_tensor = (lambda a: torch.tensor(ns.backend.to_numpy(a), requires_grad=True))
    tx, tw = as_tensor(x), as_tensor(weight)
    tb = None if b is None else as_tensor(b)
    ty = torch.nn.functional.conv2d(tx, tw, tb, stride=s, padding=p, groups=groups)
    ty.backward(torch.tensor(ns.backend.to_numpy(dy)))
    assert normwise_error(y, ty) < RTOL_TORCH
    assert normwise_error(dx, tx.grad) < RTOL_TORCH
    assert normwise_error(dw, tw.grad) < RTOL_TORCH
    if b is not None:
        assert normwise_error(db, tb.grad) < RTOL_TORCH


@pytest.mark.parametrize("memory", ["nchw", "channels_last"])
def test_dout_is_not_modified(device, memory):
    case = (2, 6, 9, 7, 3, 2, 1, True)
    x, weight, b, dy = _arrays(case, device, seed=3)
    if memory == "channels_last":                 # the layout the fast path hands on
        dy = dy.transpose(0, 2, 3, 1).copy().transpose(0, 3, 1, 2)
    before = dy.copy()
    _, cache = fast.conv2d_forward(x, weight, b, 2, 1, 6)
    fast.conv2d_backward(dy, cache)
    assert (dy == before).all()


def test_the_input_gradient_is_not_reused_memory(device):
    """Without padding, dx_pad is dx itself: it must be fresh memory, not a workspace
    buffer that the next layer's backward overwrites."""
    x, weight, _, dy = _arrays((2, 4, 7, 7, 3, 1, 0, False), device, seed=5)
    _, cache = fast.conv2d_forward(x, weight, None, 1, 0, 4)
    dx, _, _ = fast.conv2d_backward(dy, cache)
    first = dx.copy()
    _, cache = fast.conv2d_forward(x, weight, None, 1, 0, 4)
    fast.conv2d_backward(2 * dy, cache)
    assert (dx == first).all()


def test_conv2d_layer_dispatches_depthwise_and_keeps_a_multiplier_grouped(device):
    """Conv2d(C, C, groups=C) on the fast path runs the depthwise code; a channel
    multiplier (C_out = 2 C_in, groups = C_in) stays on the grouped code."""
    x = to_device(np.random.default_rng(0).standard_normal((2, 8, 6, 6)), device)
    with ns.nn.fast(True):
        for c_out, backward in ((8, fast_conv._depthwise_backward),
                                (16, fast_conv._grouped_backward)):
            conv = ns.nn.Conv2d(8, c_out, 3, padding=1, groups=8)
            conv.to(device=device, dtype=np.float64)
            conv(x)
            _, cache, _, _ = conv.cache
            assert cache[0] is backward
