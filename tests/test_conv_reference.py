"""Conv2d and MaxPool2d against the plain-loop references in tests/reference.py, and
im2col/col2im adjointness. float64 throughout, so agreement is to round-off."""
import numpy as np
import pytest

import npsenet as ns
from npsenet.backend import to_device, to_numpy
from npsenet.nn.functional.conv import col2im, conv_output_size, im2col

import reference
from helpers import normwise_error

pytestmark = pytest.mark.usefixtures("code_path")   # on the fast and the plain path

RTOL = 1e-12


def _conv_cases(count=40, seed=7):
    """Random valid Conv2d hyperparameters covering every kernel, stride, padding, groups."""
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        k = int(rng.choice([1, 2, 3, 5]))
        s = int(rng.choice([1, 2, 3]))
        p = int(rng.integers(0, 3))
        groups = int(rng.choice([1, 2, 3]))
        cin = groups * int(rng.integers(1, 3))
        cout = groups * int(rng.integers(1, 3))
        if rng.random() < 0.25:                        # depthwise
            groups, cout = cin, cin * int(rng.integers(1, 3))
        h, w = int(rng.integers(1, 8)), int(rng.integers(1, 8))
        if conv_output_size(h, k, s, p) < 1 or conv_output_size(w, k, s, p) < 1:
            continue
        n = int(rng.integers(1, 3))
        bias = bool(rng.random() < 0.5)
        cases.append((n, cin, cout, h, w, k, s, p, groups, bias))
    return cases


CONV_CASES = _conv_cases()


@pytest.mark.parametrize("case", CONV_CASES, ids=[
    f"n{c[0]}-cin{c[1]}-cout{c[2]}-{c[3]}x{c[4]}-k{c[5]}-s{c[6]}-p{c[7]}-g{c[8]}-b{int(c[9])}"
    for c in CONV_CASES])
def test_conv2d_matches_the_loop_reference(case, device):
    n, cin, cout, h, w, k, s, p, groups, bias = case
    rng = np.random.default_rng(hash(case) % 2**32)
    conv = ns.nn.Conv2d(cin, cout, k, stride=s, padding=p, bias=bias, groups=groups)
    conv.to(device=device, dtype=np.float64)
    x = rng.standard_normal((n, cin, h, w))
    weight, b = to_numpy(conv.weight.data), (to_numpy(conv.bias.data) if bias else None)

    y = conv(to_device(x, device))
    y_ref = reference.conv2d_forward(x, weight, b, s, p, groups)
    assert normwise_error(y, y_ref) < RTOL

    dy = rng.standard_normal(y_ref.shape)
    dx = conv.backward(to_device(dy, device))
    dx_ref, dw_ref, db_ref = reference.conv2d_backward(x, weight, dy, s, p, groups)
    assert normwise_error(dx, dx_ref) < RTOL
    assert normwise_error(conv.weight.grad, dw_ref) < RTOL
    if bias:
        assert normwise_error(conv.bias.grad, db_ref) < RTOL


def test_conv2d_reference_is_a_correlation_on_a_hand_example():
    """The oracle itself, on numbers worked by hand (2x2 kernel over a 3x3 image)."""
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    weight = np.array([[[[1.0, 0.0], [0.0, -1.0]]]])
    y = reference.conv2d_forward(x, weight, np.array([0.5]), stride=1, padding=0, groups=1)
    np.testing.assert_array_equal(y, np.full((1, 1, 2, 2), -4.0 + 0.5))


POOL_CASES = reference.random_pool_cases(11, 25, kernels=[1, 2, 3, 4, 5],
                                              heights=range(1, 9), widths=range(1, 9))


@pytest.mark.parametrize("case", POOL_CASES, ids=[
    f"n{c[0]}-c{c[1]}-{c[2]}x{c[3]}-k{c[4]}-s{c[5]}-p{c[6]}" for c in POOL_CASES])
def test_maxpool2d_matches_the_loop_reference(case, device):
    n, c, h, w, k, s, p = case
    rng = np.random.default_rng(hash(case) % 2**32)
    x = rng.permutation(n * c * h * w).reshape(n, c, h, w) * 0.5 - 3.0   # distinct values
    pool = ns.nn.MaxPool2d(k, stride=s, padding=p)
    y = pool(to_device(x, device))
    y_ref, argmax = reference.maxpool2d_forward(x, k, s, p)
    np.testing.assert_array_equal(to_numpy(y), y_ref)
    dy = rng.standard_normal(y_ref.shape)
    dx = pool.backward(to_device(dy, device))
    np.testing.assert_allclose(to_numpy(dx), reference.maxpool2d_backward(x.shape, argmax, dy),
                               rtol=1e-14, atol=1e-14)


def test_maxpool2d_ties_go_to_the_first_window_position(device):
    """On a constant image every window ties: the gradient goes to its top-left pixel."""
    x = np.ones((1, 1, 4, 4))
    pool = ns.nn.MaxPool2d(2, stride=2)
    pool(to_device(x, device))
    dx = to_numpy(pool.backward(to_device(np.ones((1, 1, 2, 2)), device)))
    _, argmax = reference.maxpool2d_forward(x, 2, 2, 0)
    np.testing.assert_array_equal(dx, reference.maxpool2d_backward(x.shape, argmax,
                                                                   np.ones((1, 1, 2, 2))))
    assert dx.sum() == 4.0 and dx[0, 0, 0, 0] == 1.0 and dx[0, 0, 1, 1] == 0.0


@pytest.mark.parametrize("n, c, h, w, k, s, p", [
    (2, 3, 5, 5, 3, 1, 1), (1, 2, 7, 6, 3, 2, 1), (2, 1, 6, 9, 5, 3, 2), (1, 4, 4, 4, 1, 1, 0),
    (3, 2, 8, 5, 2, 2, 0), (1, 1, 3, 3, 7, 1, 3), (2, 2, 9, 7, 4, 3, 1),
])
def test_im2col_and_col2im_are_adjoint(n, c, h, w, k, s, p, device):
    """<im2col(x), C> == <x, col2im(C)> for random x and C: col2im is im2col's transpose."""
    rng = np.random.default_rng(n * 1000 + h * 10 + k)
    x = rng.standard_normal((n, c, h, w))
    cols = to_numpy(im2col(to_device(x, device), k, s, p))
    ho, wo = conv_output_size(h, k, s, p), conv_output_size(w, k, s, p)
    assert sorted(cols.shape) == sorted((n, c, k, k, ho, wo))    # one entry per patch pixel
    dcols = rng.standard_normal(cols.shape)
    back = to_numpy(col2im(to_device(dcols, device), x.shape, k, s, p))
    assert back.shape == x.shape
    lhs, rhs = float(np.sum(cols * dcols)), float(np.sum(x * back))
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs))

