"""The layers of the wider SE family: AvgPool2d, Flatten, ChannelShuffle, Dropout, Concat and
ScaledResidual. PyTorch parity in float64 over randomized hyperparameters, numerical gradient
checks with a random upstream gradient, dout never written into, one-line errors, and
Dropout's seeding. Runs on each backend (``device``) and each code path (``code_path``)."""
import numpy as np
import pytest

import npsenet as ns
from npsenet.backend import to_device, to_numpy
from npsenet.gradcheck import check_layer, numerical_gradient, relative_error
from npsenet.nn.functional import dropout_backward, dropout_forward
from npsenet.nn.functional.conv import conv_output_size

from helpers import normwise_error

torch = pytest.importorskip("torch")
F = torch.nn.functional

pytestmark = pytest.mark.usefixtures("code_path")   # on the fast and the plain path

TOL = 1e-9
GRAD_TOL = 1e-7


def assert_close(actual, expected, what):
    err = normwise_error(actual, expected)
    assert err <= TOL, f"{what}: normwise relative error {err:.3e}"


def tensor(a, requires_grad=False):
    return torch.tensor(np.asarray(to_numpy(a), dtype=np.float64), requires_grad=requires_grad)


def run_both(layer, torch_fn, x, device, rng, torch_params=()):
    """Forward and backward of ``layer`` and ``torch_fn`` on the same float64 x and random
    upstream gradient: outputs, dL/dx and each parameter gradient
    (``torch_params``: ``(name, npsenet Parameter, torch leaf tensor)``). Also checks that
    backward leaves dy as it was."""
    x_t = tensor(x, requires_grad=True)
    y_t = torch_fn(x_t)
    y = layer(to_device(x, device))
    assert_close(y, y_t, "forward")
    dy = to_device(rng.standard_normal(tuple(y_t.shape)), device)
    dy_before = dy.copy()
    y_t.backward(tensor(dy))
    dx = layer.backward(dy)
    assert_close(dx, x_t.grad, "dx")
    for name, p, t in torch_params:
        assert_close(p.grad, t.grad, f"d {name}")
    assert (to_numpy(dy) == to_numpy(dy_before)).all(), "backward wrote into dy"


def conv_pair(cin, cout, k, stride=1, padding=0, groups=1, device="cpu"):
    """An npsenet Conv2d and a torch twin with the same float64 weights."""
    conv = ns.nn.Conv2d(cin, cout, k, stride=stride, padding=padding, groups=groups)
    conv.to(device=device, dtype=np.float64)
    twin = torch.nn.Conv2d(cin, cout, k, stride=stride, padding=padding, groups=groups).double()
    twin.load_state_dict({key: torch.from_numpy(to_numpy(v).copy())
                          for key, v in conv.state_dict().items()})
    return conv, twin


def conv_grads(prefix, conv, twin):
    return [(f"{prefix}.weight", conv.weight, twin.weight), (f"{prefix}.bias", conv.bias, twin.bias)]


def one_line_error(fn, match):
    with pytest.raises(ValueError, match=match) as info:
        fn()
    assert "\n" not in str(info.value), str(info.value)


# -- AvgPool2d ---------------------------------------------------------------------------
def _avg_pool_cases(count=20, seed=2019):
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        k = int(rng.choice([1, 2, 3, 5]))
        s = int(rng.choice([1, 2, 3]))
        p = int(rng.integers(0, k // 2 + 1))
        h, w = int(rng.integers(1, 9)), int(rng.integers(1, 9))
        if conv_output_size(h, k, s, p) < 1 or conv_output_size(w, k, s, p) < 1:
            continue
        cases.append((int(rng.integers(1, 3)), int(rng.integers(1, 4)), h, w, k, s, p))
    return cases


AVG_POOL_CASES = _avg_pool_cases()


@pytest.mark.parametrize("case", AVG_POOL_CASES,
                         ids=[f"n{c[0]}c{c[1]}-{c[2]}x{c[3]}-k{c[4]}s{c[5]}p{c[6]}"
                              for c in AVG_POOL_CASES])
def test_avg_pool2d_matches_torch(case, device):
    n, c, h, w, k, s, p = case
    rng = np.random.default_rng(sum(case))
    run_both(ns.nn.AvgPool2d(k, s, p),
             lambda x: F.avg_pool2d(x, k, s, p, ceil_mode=False, count_include_pad=True),
             rng.standard_normal((n, c, h, w)), device, rng)


@pytest.mark.parametrize("case", AVG_POOL_CASES,
                         ids=[f"n{c[0]}c{c[1]}-{c[2]}x{c[3]}-k{c[4]}s{c[5]}p{c[6]}"
                              for c in AVG_POOL_CASES])
def test_avg_pool2d_without_the_padding_in_the_mean_matches_torch(case, device):
    """count_include_pad=False: each window's mean over its pixels inside the image."""
    n, c, h, w, k, s, p = case
    rng = np.random.default_rng(sum(case) + 1)
    layer = ns.nn.AvgPool2d(k, s, p, count_include_pad=False)
    assert "count_include_pad=False" in repr(layer)
    run_both(layer, lambda x: F.avg_pool2d(x, k, s, p, ceil_mode=False, count_include_pad=False),
             rng.standard_normal((n, c, h, w)), device, rng)


def test_avg_pool2d_defaults_and_repr():
    pool = ns.nn.AvgPool2d(3)
    assert (pool.kernel_size, pool.stride, pool.padding) == (3, 3, 0)
    assert repr(ns.nn.AvgPool2d(3, 2, 1)) == "AvgPool2d(kernel_size=3, stride=2, padding=1)"
    assert ns.nn.AvgPool2d((2, 2)).kernel_size == 2


@pytest.mark.parametrize("k, s, p", [(3, 1, 1), (3, 2, 1), (2, 2, 0), (3, 2, 0)])
def test_avg_pool2d_gradcheck(k, s, p, device, rng):
    x = to_device(rng.standard_normal((2, 2, 5, 6)), device)
    errors = check_layer(ns.nn.AvgPool2d(k, s, p), x)
    assert errors["input"] < GRAD_TOL, errors


def test_avg_pool2d_counts_k_squared_macs_per_output():
    model = ns.nn.Sequential(ns.nn.AvgPool2d(3, 2, 1), ns.nn.Flatten(), ns.nn.Dropout(0.5))
    rows = ns.summary(model, (2, 3, 8, 8)).rows
    assert [r.macs for r in rows] == [2 * 3 * 4 * 4 * 9, 0, 0]


# -- Flatten -----------------------------------------------------------------------------
FLATTEN_SHAPES = [(2, 3), (1, 4, 5), (2, 3, 4, 5), (3, 1, 1, 1), (2, 2, 3, 1, 2), (1, 7, 2, 2)]


@pytest.mark.parametrize("shape", FLATTEN_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_flatten_matches_torch(shape, device, rng):
    run_both(ns.nn.Flatten(), lambda x: torch.flatten(x, 1), rng.standard_normal(shape),
             device, rng)


def test_flatten_of_a_transposed_input_keeps_the_logical_order(device, rng):
    x = to_device(rng.standard_normal((2, 4, 3, 5)).transpose(0, 3, 1, 2), device)   # strided
    flatten = ns.nn.Flatten()
    y = flatten(x)
    np.testing.assert_array_equal(to_numpy(y), to_numpy(x).reshape(2, -1))
    np.testing.assert_array_equal(to_numpy(flatten.backward(y)), to_numpy(x))


# -- ChannelShuffle ----------------------------------------------------------------------
def _shuffle_cases(count=20, seed=2020):
    rng = np.random.default_rng(seed)
    return [(int(rng.integers(1, 3)), int(g), int(rng.integers(1, 5)), int(rng.integers(1, 5)),
             int(rng.integers(1, 5)))
            for g in rng.choice([1, 2, 3, 4, 8], size=count)]


SHUFFLE_CASES = _shuffle_cases()


def torch_shuffle(x, groups):
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


@pytest.mark.parametrize("case", SHUFFLE_CASES,
                         ids=[f"n{c[0]}-g{c[1]}m{c[2]}-{c[3]}x{c[4]}" for c in SHUFFLE_CASES])
def test_channel_shuffle_matches_torch(case, device):
    n, g, m, h, w = case
    rng = np.random.default_rng(sum(case))
    x = rng.standard_normal((n, g * m, h, w))
    run_both(ns.nn.ChannelShuffle(g), lambda t: torch_shuffle(t, g), x, device, rng)
    assert_close(ns.nn.ChannelShuffle(g)(to_device(x, device)),
                 torch.nn.ChannelShuffle(g)(tensor(x)), "torch.nn.ChannelShuffle")


def test_channel_shuffle_permutation_and_its_inverse():
    x = np.arange(6.0).reshape(1, 6, 1, 1)
    shuffle = ns.nn.ChannelShuffle(2)              # groups (0 1 2) (3 4 5) -> 0 3 1 4 2 5
    assert to_numpy(shuffle(x)).ravel().tolist() == [0, 3, 1, 4, 2, 5]
    assert to_numpy(shuffle.backward(shuffle(x).copy())).ravel().tolist() == list(range(6))
    assert repr(shuffle) == "ChannelShuffle(groups=2)"


def test_channel_shuffle_gradcheck(device, rng):
    x = to_device(rng.standard_normal((2, 6, 2, 3)), device)
    assert check_layer(ns.nn.ChannelShuffle(3), x)["input"] < GRAD_TOL


# -- Dropout -----------------------------------------------------------------------------
@pytest.mark.parametrize("p", [0.1, 0.25, 0.5, 0.8, 0.95])
def test_dropout_is_x_times_mask_over_keep_probability(p, device):
    rng = np.random.default_rng(int(100 * p))
    x = rng.standard_normal((3, 4, 5, 6))
    drop = ns.nn.Dropout(p, seed=7)
    assert drop.mask is None
    x_t = tensor(x, requires_grad=True)
    y = drop(to_device(x, device))
    mask = tensor(drop.mask)
    assert set(np.unique(to_numpy(drop.mask))) <= {0.0, 1.0}
    y_t = x_t * mask / (1 - p)
    assert_close(y, y_t, "forward")
    dy = to_device(rng.standard_normal(x.shape), device)
    dy_before = dy.copy()
    y_t.backward(tensor(dy))
    assert_close(drop.backward(dy), x_t.grad, "dx")
    assert (to_numpy(dy) == to_numpy(dy_before)).all()


def test_dropout_eval_and_p_zero_are_the_identity(device, rng):
    x = to_device(rng.standard_normal((2, 3, 4, 4)), device)
    dy = to_device(rng.standard_normal((2, 3, 4, 4)), device)
    for drop in (ns.nn.Dropout(0.5).eval(), ns.nn.Dropout(0.0)):
        y = drop(x)
        assert y is x and drop.mask is None
        assert drop.backward(dy) is dy
    torch_drop = torch.nn.Dropout(0.5).eval()
    assert_close(ns.nn.Dropout(0.5).eval()(x), torch_drop(tensor(x)), "eval forward")


def test_dropout_same_seed_same_masks_and_a_new_mask_each_forward(device):
    x = to_device(np.ones((4, 8, 3, 3)), device)
    a, b = ns.nn.Dropout(0.5, seed=11), ns.nn.Dropout(0.5, seed=11)
    first = [to_numpy(a(x)) for _ in range(3)]
    second = [to_numpy(b(x)) for _ in range(3)]
    for fa, fb in zip(first, second):
        np.testing.assert_array_equal(fa, fb)
    assert not np.array_equal(first[0], first[1])
    assert not np.array_equal(first[0], to_numpy(ns.nn.Dropout(0.5, seed=12)(x)))


def test_dropout_masks_are_the_same_on_every_device_and_dtype(device):
    x = np.ones((2, 3, 4, 5))
    on_cpu = to_numpy(ns.nn.Dropout(0.3, seed=5)(x))
    for dtype in (np.float64, np.float32):
        drop = ns.nn.Dropout(0.3, seed=5)
        y = drop(to_device(x.astype(dtype), device))
        assert y.dtype == dtype and drop.mask.dtype == dtype
        np.testing.assert_allclose(to_numpy(y), on_cpu, rtol=1e-6)


def test_dropout_manual_seed_makes_the_masks_reproducible():
    x = np.ones((5, 40))
    ns.manual_seed(2018)
    first = ns.nn.Dropout(0.5)(x)
    ns.manual_seed(2018)
    again = ns.nn.Dropout(0.5)(x)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, ns.nn.Dropout(0.5)(x))     # the next seed differs


def test_dropout_keeps_the_mean_and_drops_a_fraction_p(device):
    x = to_device(np.full((200, 500), 3.0), device)
    drop = ns.nn.Dropout(0.2, seed=0)
    y = to_numpy(drop(x))
    assert abs(y.mean() - 3.0) < 0.03                           # E[y] = x
    assert abs((to_numpy(drop.mask) == 0).mean() - 0.2) < 0.01
    assert set(np.unique(y)) == {0.0, 3.0 / 0.8}


def test_dropout_pair_gradcheck(rng):
    x = rng.standard_normal((3, 7))
    mask = (rng.random((3, 7)) >= 0.4).astype(np.float64)
    dy = rng.standard_normal((3, 7))
    _, cache = dropout_forward(x, mask, 0.4)
    numerical = numerical_gradient(lambda: dropout_forward(x, mask, 0.4)[0], x, dy)
    assert relative_error(dropout_backward(dy, cache), numerical) < GRAD_TOL


def test_dropout_repr_and_training_under_no_grad():
    drop = ns.nn.Dropout(0.2)
    assert repr(drop) == "Dropout(p=0.2)"
    with ns.no_grad():
        drop(np.ones((2, 3)))
    one_line_error(lambda: drop.backward(np.ones((2, 3))), "before forward")


# -- Concat ------------------------------------------------------------------------------
def _concat_cases(count=12, seed=2021):
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(count):
        branches = []
        s = int(rng.choice([1, 2]))
        for _ in range(int(rng.integers(1, 4))):
            k = int(rng.choice([1, 3, 5]))
            branches.append((int(rng.integers(1, 4)), k, k // 2))
        cases.append((int(rng.integers(1, 3)), int(rng.integers(1, 4)), int(rng.integers(3, 7)),
                      s, tuple(branches)))
    return cases


CONCAT_CASES = _concat_cases()


@pytest.mark.parametrize("case", CONCAT_CASES, ids=[
    f"n{c[0]}c{c[1]}-{c[2]}px-s{c[3]}-" + "+".join(f"{b[0]}k{b[1]}" for b in c[4])
    for c in CONCAT_CASES])
def test_concat_of_conv_branches_matches_torch_cat(case, device):
    n, cin, size, stride, branches = case
    rng = np.random.default_rng(len(branches) * 100 + size)
    pairs = [conv_pair(cin, cout, k, stride, p, device=device) for cout, k, p in branches]
    # one branch a Sequential with a ReLU, so the sum over branches meets a nested backward
    ours = [ns.nn.Sequential(c, ns.nn.ReLU()) if i == 0 else c for i, (c, _) in enumerate(pairs)]
    twins = [torch.nn.Sequential(t, torch.nn.ReLU()) if i == 0 else t
             for i, (_, t) in enumerate(pairs)]
    params = [g for i, (c, t) in enumerate(pairs) for g in conv_grads(str(i), c, t)]
    run_both(ns.nn.Concat(*ours), lambda x: torch.cat([t(x) for t in twins], dim=1),
             rng.standard_normal((n, cin, size, size)), device, rng, params)


def test_concat_of_parameter_free_branches_sums_into_a_new_array(device, rng):
    """Identity-like branches hand back their dout (a slice of Concat's dout); the sum
    must not be written into it."""
    x = rng.standard_normal((2, 3, 4, 4))
    concat = ns.nn.Concat(ns.nn.Sequential(), ns.nn.Dropout(0.5).eval(), ns.nn.ChannelShuffle(3),
                          ns.nn.AvgPool2d(3, 1, 1))
    run_both(concat, lambda t: torch.cat([t, t, torch_shuffle(t, 3),
                                          F.avg_pool2d(t, 3, 1, 1)], dim=1), x, device, rng)


def test_concat_gradcheck(device, rng):
    concat = ns.nn.Concat(branch0=ns.nn.Conv2d(2, 3, 1), branch1=ns.nn.Conv2d(2, 2, 3, padding=1),
                          branch2=ns.nn.AvgPool2d(3, 1, 1))
    concat.to(device=device, dtype=np.float64)
    errors = check_layer(concat, to_device(rng.standard_normal((2, 2, 4, 4)), device))
    assert set(errors) == {"input", "branch0.weight", "branch0.bias", "branch1.weight",
                           "branch1.bias"}
    assert max(errors.values()) < GRAD_TOL, errors


def test_concat_names_and_container_protocol():
    a, b = ns.nn.Conv2d(3, 2, 1), ns.nn.Conv2d(3, 4, 1)
    positional = ns.nn.Concat(a, b)
    assert len(positional) == 2 and positional[1] is b and list(positional) == [a, b]
    assert list(positional.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias"]
    named = ns.nn.Concat(branch1=b, branch0=a)                 # the order given is kept
    assert list(named) == [b, a] and named[0] is b
    assert list(named.state_dict()) == ["branch1.weight", "branch1.bias",
                                        "branch0.weight", "branch0.bias"]
    assert named(np.zeros((1, 3, 2, 2), np.float32)).shape == (1, 6, 2, 2)


# -- ScaledResidual ----------------------------------------------------------------------
RESIDUAL_CASES = [(n, c, size, scale, act) for n, c, size in [(1, 2, 3), (2, 3, 4), (2, 1, 5)]
                  for scale, act in [(1.0, True), (0.17, True), (0.3, False), (-0.5, True)]]


@pytest.mark.parametrize("case", RESIDUAL_CASES, ids=[
    f"n{c[0]}c{c[1]}-{c[2]}px-scale{c[3]}-{'relu' if c[4] else 'linear'}"
    for c in RESIDUAL_CASES])
def test_scaled_residual_matches_torch(case, device):
    n, c, size, scale, activation = case
    rng = np.random.default_rng(n * 100 + c * 10 + size)
    conv, twin = conv_pair(c, c, 3, padding=1, device=device)
    layer = ns.nn.ScaledResidual(ns.nn.Sequential(conv, ns.nn.ReLU()), scale, activation)
    branch = torch.nn.Sequential(twin, torch.nn.ReLU())

    def torch_fn(x):
        y = x + scale * branch(x)
        return torch.relu(y) if activation else y

    run_both(layer, torch_fn, rng.standard_normal((n, c, size, size)), device, rng,
             conv_grads("branch.0", conv, twin))


@pytest.mark.parametrize("activation", [True, False])
def test_scaled_residual_gradcheck(activation, device, rng):
    ns.manual_seed(7)           # the branch's weights do not depend on the tests run before
    layer = ns.nn.ScaledResidual(ns.nn.Conv2d(2, 2, 3, padding=1), 0.2, activation)
    layer.to(device=device, dtype=np.float64)
    x = rng.standard_normal((2, 2, 3, 3))
    x += np.sign(x) * 0.5       # keep x + 0.2 f(x) away from the ReLU's kink
    x = to_device(x, device)
    pre = to_numpy(x + 0.2 * layer.branch(x))
    assert np.abs(pre).min() > 1e-3, "an input at the ReLU's kink: choose another seed"
    errors = check_layer(layer, x)
    assert set(errors) == {"input", "branch.weight", "branch.bias"}
    assert max(errors.values()) < GRAD_TOL, errors


def test_scaled_residual_sub_modules_and_repr():
    layer = ns.nn.ScaledResidual(ns.nn.Conv2d(2, 2, 1), scale=0.1)
    assert list(dict(layer.named_modules())) == ["", "branch", "relu"]
    linear = ns.nn.ScaledResidual(ns.nn.Conv2d(2, 2, 1), activation=False)
    assert list(dict(linear.named_modules())) == ["", "branch"]
    assert repr(linear).startswith("ScaledResidual(scale=1.0, activation=False")


# -- errors ------------------------------------------------------------------------------
@pytest.mark.parametrize("make, match", [
    (lambda: ns.nn.AvgPool2d(3, padding=2), r"padding \(2\) must be at most half"),
    (lambda: ns.nn.AvgPool2d(0), "kernel_size must be an integer >= 1"),
    (lambda: ns.nn.AvgPool2d(2, stride=0), "stride must be an integer >= 1"),
    (lambda: ns.nn.ChannelShuffle(0), "groups must be an integer >= 1"),
    (lambda: ns.nn.Dropout(1.0), r"p must be a probability in \[0, 1\)"),
    (lambda: ns.nn.Dropout(-0.1), r"p must be a probability in \[0, 1\)"),
    (lambda: ns.nn.Dropout(True), r"p must be a probability in \[0, 1\)"),
    (lambda: ns.nn.Dropout("0.5"), r"p must be a probability in \[0, 1\)"),
    (lambda: ns.nn.Concat(), "at least one branch"),
    (lambda: ns.nn.Concat(ns.nn.ReLU(), extra=ns.nn.ReLU()), "not both"),
    (lambda: ns.nn.Concat(ns.nn.ReLU(), np.zeros(3)), "branch 1 is ndarray"),
    (lambda: ns.nn.ScaledResidual(np.zeros(3)), "expects a Module"),
    (lambda: ns.nn.ScaledResidual(ns.nn.ReLU(), scale="0.1"), "scale must be a number"),
])
def test_bad_arguments_are_one_line_errors(make, match):
    one_line_error(make, match)


@pytest.mark.parametrize("layer, x, match", [
    (ns.nn.AvgPool2d(2), np.zeros((2, 3, 4)), r"expected a 4-D input"),
    (ns.nn.AvgPool2d(5), np.zeros((1, 1, 3, 3)), r"smaller than the 5x5 window"),
    (ns.nn.AvgPool2d(2), np.zeros((1, 1, 4, 4), dtype=np.int64), "floating-point"),
    (ns.nn.ChannelShuffle(2), np.zeros((2, 6, 4)), r"expected a 4-D input"),
    (ns.nn.ChannelShuffle(4), np.zeros((1, 6, 2, 2)), r"6 channels .* do not split into 4"),
    (ns.nn.Flatten(), np.zeros(5), r"rank >= 2"),
    (ns.nn.Dropout(0.5), [1.0, 2.0], "NumPy or CuPy array"),
    (ns.nn.Concat(ns.nn.Conv2d(2, 3, 1), ns.nn.Conv2d(2, 3, 3)), np.zeros((1, 2, 4, 4), np.float32),
     r"0: \(1, 3, 4, 4\), 1: \(1, 3, 2, 2\)"),
    (ns.nn.ScaledResidual(ns.nn.Conv2d(2, 3, 1)), np.zeros((1, 2, 4, 4), np.float32),
     r"branch's output \(1, 3, 4, 4\) must have the input's shape \(1, 2, 4, 4\)"),
])
def test_bad_inputs_are_one_line_errors(layer, x, match):
    one_line_error(lambda: layer(x), match)


@pytest.mark.parametrize("make", [
    lambda: ns.nn.AvgPool2d(2), lambda: ns.nn.Flatten(), lambda: ns.nn.ChannelShuffle(2),
    lambda: ns.nn.Dropout(0.5), lambda: ns.nn.Dropout(0.5).eval(),
    lambda: ns.nn.Concat(ns.nn.ReLU(), ns.nn.ReLU()),
    lambda: ns.nn.ScaledResidual(ns.nn.ReLU()),
], ids=["AvgPool2d", "Flatten", "ChannelShuffle", "Dropout", "Dropout-eval", "Concat",
        "ScaledResidual"])
def test_backward_before_forward_and_a_wrong_dout_are_one_line_errors(make):
    layer = make()
    one_line_error(lambda: layer.backward(np.zeros((2, 4, 2, 2))), "before forward")
    y = layer(np.ones((2, 4, 2, 2)))
    one_line_error(lambda: layer.backward(np.zeros((2, 4, 2, 3))), "expected dout of shape")
    one_line_error(lambda: layer.backward(np.zeros(y.shape, np.float32)),
                   "expected dout of dtype")
    layer.backward(np.zeros(y.shape))                   # the cache survived the rejections
    one_line_error(lambda: layer.backward(np.zeros(y.shape)), "before forward")
