"""PyTorch parity of every layer in npsenet.nn: forward, dL/dinput and every parameter
gradient against torch autograd in float64, over randomized hyperparameters (the second oracle of
docs/contract.md#gradients). Runs on each backend (``device``) and each code path
(``code_path``)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import npsenet as ns  # noqa: E402
from npsenet.backend import to_device, to_numpy  # noqa: E402
from npsenet.nn.functional.conv import conv_output_size  # noqa: E402

import reference  # noqa: E402
from helpers import normwise_error  # noqa: E402

pytestmark = pytest.mark.usefixtures("code_path")   # on the fast and the plain path

TOL = 1e-9


def assert_close(actual, expected, what):
    err = normwise_error(actual, expected)
    assert err <= TOL, f"{what}: normwise relative error {err:.3e}"


def tensor(a, requires_grad=False):
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


def run_both(layer, torch_fn, inputs, device, rng, torch_params=()):
    """Forward and backward of ``layer`` and of ``torch_fn`` on the same float64 inputs
    and a random upstream gradient; compare outputs, input gradients and parameter
    gradients (``torch_params``: ``(name, (npsenet Parameter, torch leaf tensor))``)."""
    tin = [tensor(a, requires_grad=True) for a in inputs]
    y_t = torch_fn(*tin)
    y = layer(*[to_device(a, device) for a in inputs])
    assert_close(y, y_t, "forward")
    dy = rng.standard_normal(tuple(y_t.shape))
    y_t.backward(tensor(dy))
    grads = layer.backward(to_device(dy, device))
    grads = grads if isinstance(grads, tuple) else (grads,)
    assert len(grads) == len(tin), "backward must return one gradient per float input"
    for i, (g, t) in enumerate(zip(grads, tin)):
        assert_close(g, t.grad, f"d input {i}")
    for name, (p, t) in torch_params:
        assert_close(p.grad, t.grad, f"d {name}")


# -- Conv2d ------------------------------------------------------------------------------
def _conv_cases(count=48, seed=2018):
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        k = int(rng.choice([1, 3, 5, 7]))
        s = int(rng.choice([1, 2]))
        p = int(rng.integers(0, 4))
        kind = rng.choice(["plain", "grouped", "depthwise"])
        if kind == "plain":
            groups, cin, cout = 1, int(rng.integers(1, 5)), int(rng.integers(1, 5))
        elif kind == "grouped":
            groups, cin, cout = 2, 2 * int(rng.integers(1, 3)), 2 * int(rng.integers(1, 3))
        else:
            cin = int(rng.integers(2, 5))
            groups, cout = cin, cin * int(rng.integers(1, 3))
        h, w = int(rng.choice([1, 3, 5, 7, 9])), int(rng.choice([2, 3, 4, 6, 8]))
        if conv_output_size(h, k, s, p) < 1 or conv_output_size(w, k, s, p) < 1:
            continue
        n = int(rng.choice([1, 2, 3]))
        cases.append((n, cin, cout, h, w, k, s, p, groups, bool(rng.random() < 0.5)))
    return cases


CONV_CASES = _conv_cases()


@pytest.mark.parametrize("case", CONV_CASES, ids=[
    f"n{c[0]}-{c[1]}to{c[2]}-{c[3]}x{c[4]}-k{c[5]}s{c[6]}p{c[7]}-g{c[8]}-{'b' if c[9] else 'nob'}"
    for c in CONV_CASES])
def test_conv2d_matches_torch(case, device):
    n, cin, cout, h, w, k, s, p, groups, bias = case
    rng = np.random.default_rng(abs(hash(case)) % 2**32)
    conv = ns.nn.Conv2d(cin, cout, k, stride=s, padding=p, bias=bias, groups=groups)
    conv.to(device=device, dtype=np.float64)
    w_t = tensor(to_numpy(conv.weight.data), requires_grad=True)
    b_t = tensor(to_numpy(conv.bias.data), requires_grad=True) if bias else None
    params = [("weight", (conv.weight, w_t))] + ([("bias", (conv.bias, b_t))] if bias else [])
    run_both(conv, lambda x: F.conv2d(x, w_t, b_t, stride=s, padding=p, groups=groups),
             [rng.standard_normal((n, cin, h, w))], device, rng, params)


def test_conv2d_gradients_accumulate_across_two_backward_calls_like_torch(device):
    rng = np.random.default_rng(3)
    conv = ns.nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2).to(device=device,
                                                                    dtype=np.float64)
    torch_conv = torch.nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2).double()
    torch_conv.load_state_dict({k: torch.from_numpy(to_numpy(v))
                                for k, v in conv.state_dict().items()})
    for _ in range(2):
        x = rng.standard_normal((2, 4, 5, 6))
        y = conv(to_device(x, device))
        dy = rng.standard_normal(y.shape)
        conv.backward(to_device(dy, device))
        torch_conv(tensor(x)).backward(tensor(dy))
    assert_close(conv.weight.grad, torch_conv.weight.grad, "accumulated dW")
    assert_close(conv.bias.grad, torch_conv.bias.grad, "accumulated db")
    conv.zero_grad()
    assert conv.weight.grad is None and conv.bias.grad is None


def test_conv2d_state_dict_keys_and_torch_weights_load(device):
    torch_conv = torch.nn.Conv2d(3, 4, 3, padding=1).double()
    conv = ns.nn.Conv2d(3, 4, 3, padding=1).to(device=device, dtype=np.float64)
    assert list(conv.state_dict()) == list(torch_conv.state_dict())
    conv.load_state_dict({k: v.numpy() for k, v in torch_conv.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 4))
    assert_close(conv(to_device(x, device)), torch_conv(tensor(x)), "forward after load")


def test_load_state_dict_takes_torch_tensors_directly(device):
    torch_conv = torch.nn.Conv2d(2, 3, 3, groups=1).double()
    conv = ns.nn.Conv2d(2, 3, 3).to(device=device, dtype=np.float64)
    conv.load_state_dict(torch_conv.state_dict())
    assert_close(conv.weight.data, torch_conv.weight, "weight")
    assert_close(conv.bias.data, torch_conv.bias, "bias")


# -- float32 ----------------------------------------------------------------------------------
def test_float32_layers_match_torch_to_float32_precision(device):
    """The default dtype: a small conv-BN-ReLU-SE stack against torch in float32."""
    rng = np.random.default_rng(32)
    net = ns.nn.Sequential(ns.nn.Conv2d(3, 8, 3, padding=1), ns.nn.BatchNorm2d(8),
                           ns.nn.ReLU(), ns.nn.SEBlock(8, reduction=4, bias=True),
                           ns.nn.MaxPool2d(2)).to(device=device)
    torch_net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8),
                                    torch.nn.ReLU(), TorchSE(8, 2, "avg", "sigmoid", True),
                                    torch.nn.MaxPool2d(2))
    torch_net.load_state_dict({k: torch.from_numpy(to_numpy(v).copy())
                               for k, v in net.state_dict().items()})
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    x_t = torch.from_numpy(x).requires_grad_()
    y_t = torch_net(x_t)
    y = net(to_device(x, device))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    y_t.backward(torch.from_numpy(dy))
    dx = net.backward(to_device(dy, device))
    assert y.dtype == dx.dtype == np.float32
    np.testing.assert_allclose(to_numpy(y), y_t.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(to_numpy(dx), x_t.grad.numpy(), rtol=1e-4, atol=1e-5)
    torch_grads = dict(torch_net.named_parameters())
    for name, p in net.named_parameters():
        assert p.grad.dtype == np.float32, name
        np.testing.assert_allclose(to_numpy(p.grad), torch_grads[name].grad.numpy(),
                                   rtol=1e-4, atol=1e-4, err_msg=name)


# -- Linear -----------------------------------------------------------------------------------
@pytest.mark.parametrize("n, fin, fout, bias", [
    (1, 1, 1, True), (1, 7, 3, False), (4, 5, 3, True), (3, 16, 1, True), (5, 2, 9, False),
    (2, 64, 4, True),
])
def test_linear_matches_torch(n, fin, fout, bias, device):
    rng = np.random.default_rng(n * 100 + fin)
    lin = ns.nn.Linear(fin, fout, bias=bias).to(device=device, dtype=np.float64)
    w_t = tensor(to_numpy(lin.weight.data), requires_grad=True)
    b_t = tensor(to_numpy(lin.bias.data), requires_grad=True) if bias else None
    params = [("weight", (lin.weight, w_t))] + ([("bias", (lin.bias, b_t))] if bias else [])
    run_both(lin, lambda x: F.linear(x, w_t, b_t), [rng.standard_normal((n, fin))], device,
             rng, params)


def test_linear_state_dict_keys_and_torch_weights_load(device):
    torch_lin = torch.nn.Linear(5, 3).double()
    lin = ns.nn.Linear(5, 3).to(device=device, dtype=np.float64)
    assert list(lin.state_dict()) == list(torch_lin.state_dict())
    lin.load_state_dict({k: v.numpy() for k, v in torch_lin.state_dict().items()})
    x = np.random.default_rng(1).standard_normal((4, 5))
    assert_close(lin(to_device(x, device)), torch_lin(tensor(x)), "forward after load")


# -- activations and pooling -------------------------------------------------------------------
def _away_from_zero(rng, shape):
    x = rng.standard_normal(shape)
    return x + np.sign(x) * 0.1


ELEMENTWISE = {
    "relu": (ns.nn.ReLU, torch.relu),
    "sigmoid": (ns.nn.Sigmoid, torch.sigmoid),
    "tanh": (ns.nn.Tanh, torch.tanh),
}


@pytest.mark.parametrize("shape", [(3, 5), (2, 3, 4, 5), (1, 1, 1, 1), (7,)])
@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_activation_matches_torch(name, shape, device):
    rng = np.random.default_rng(len(shape))
    layer_cls, torch_fn = ELEMENTWISE[name]
    x = _away_from_zero(rng, shape) * 3
    run_both(layer_cls(), torch_fn, [x], device, rng)


def test_sigmoid_matches_torch_for_extreme_inputs(device):
    x = np.array([[-800.0, -40.0, -1e-3, 0.0, 1e-3, 40.0, 800.0]])
    run_both(ns.nn.Sigmoid(), torch.sigmoid, [x], device, np.random.default_rng(0))


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 1, 1, 1), (3, 2, 1, 7), (1, 4, 5, 3)])
def test_global_avg_pool_matches_torch(shape, device):
    rng = np.random.default_rng(sum(shape))
    run_both(ns.nn.GlobalAvgPool2d(), lambda x: x.mean(dim=(2, 3)),
             [rng.standard_normal(shape)], device, rng)


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 1, 1, 1), (3, 2, 1, 7), (1, 4, 5, 3)])
def test_global_max_pool_matches_torch(shape, device):
    rng = np.random.default_rng(sum(shape))
    x = rng.permutation(int(np.prod(shape))).reshape(shape) * 0.25 - 2.0   # unique maxima
    run_both(ns.nn.GlobalMaxPool2d(), lambda t: t.amax(dim=(2, 3)), [x], device, rng)


POOL_CASES = reference.random_pool_cases(5, 24, kernels=[1, 2, 3, 5], heights=[1, 3, 5, 7, 8],
                                              widths=[2, 4, 5, 9])


@pytest.mark.parametrize("case", POOL_CASES, ids=[
    f"n{c[0]}-c{c[1]}-{c[2]}x{c[3]}-k{c[4]}s{c[5]}p{c[6]}" for c in POOL_CASES])
def test_max_pool_matches_torch(case, device):
    n, c, h, w, k, s, p = case
    rng = np.random.default_rng(abs(hash(case)) % 2**32)
    x = rng.permutation(n * c * h * w).reshape(n, c, h, w) * 0.1 - 1.0
    run_both(ns.nn.MaxPool2d(k, stride=s, padding=p),
             lambda t: F.max_pool2d(t, k, stride=s, padding=p), [x], device, rng)


@pytest.mark.parametrize("case", POOL_CASES, ids=[
    f"n{c[0]}-c{c[1]}-{c[2]}x{c[3]}-k{c[4]}s{c[5]}p{c[6]}" for c in POOL_CASES])
def test_max_pool_in_ceil_mode_matches_torch(case, device):
    """ceil_mode=True (the Caffe models' pooling): the same windows and sizes as torch's,
    the last one running past the padding where the stride leaves a remainder."""
    n, c, h, w, k, s, p = case
    rng = np.random.default_rng(abs(hash(case)) % 2**32 + 1)
    x = rng.permutation(n * c * h * w).reshape(n, c, h, w) * 0.1 - 1.0
    run_both(ns.nn.MaxPool2d(k, stride=s, padding=p, ceil_mode=True),
             lambda t: F.max_pool2d(t, k, stride=s, padding=p, ceil_mode=True), [x], device, rng)


def test_max_pool_ceil_mode_sizes_are_torch_sizes():
    for h, k, s, p in [(112, 3, 2, 0), (56, 3, 2, 0), (7, 2, 2, 0), (8, 3, 3, 1), (5, 3, 2, 1)]:
        y = ns.nn.MaxPool2d(k, s, p, ceil_mode=True)(np.zeros((1, 1, h, h)))
        expected = F.max_pool2d(torch.zeros(1, 1, h, h), k, s, p, ceil_mode=True).shape
        assert y.shape == tuple(expected), (h, k, s, p)


def test_max_pool_with_ties_routes_like_torch(device):
    """Constant windows: torch gives the whole gradient to the first position; so must we."""
    x = np.zeros((1, 2, 5, 5))
    x[0, 1, 2:, :] = 1.0
    run_both(ns.nn.MaxPool2d(3, stride=2, padding=1),
             lambda t: F.max_pool2d(t, 3, stride=2, padding=1), [x], device,
             np.random.default_rng(0))


def test_max_pool_of_minus_infinity_routes_to_the_image_like_torch(device):
    """A window whose pixels are all -inf ties with the -inf padding: the gradient must
    reach the first pixel inside the image, as in torch, not vanish into the padding."""
    x = np.full((1, 1, 3, 4), -np.inf)
    x[0, 0, 2, 3] = 1.0
    pool = ns.nn.MaxPool2d(3, stride=2, padding=1)
    x_t = tensor(x, requires_grad=True)
    y_t = F.max_pool2d(x_t, 3, stride=2, padding=1)
    np.testing.assert_array_equal(to_numpy(pool(to_device(x, device))), y_t.detach().numpy())
    dy = np.arange(1.0, 1.0 + y_t.numel()).reshape(y_t.shape)
    y_t.backward(tensor(dy))
    dx = pool.backward(to_device(dy, device))
    np.testing.assert_array_equal(to_numpy(dx), x_t.grad.numpy())
    assert to_numpy(dx).sum() == dy.sum()


# -- BatchNorm2d -------------------------------------------------------------------------------
def _bn_pair(c, momentum, device, rng):
    bn = ns.nn.BatchNorm2d(c, momentum=momentum).to(device=device, dtype=np.float64)
    bn.weight.data = to_device(rng.uniform(0.5, 1.5, c), device)
    bn.bias.data = to_device(rng.standard_normal(c), device)
    torch_bn = torch.nn.BatchNorm2d(c, momentum=momentum).double()
    with torch.no_grad():
        torch_bn.weight.copy_(tensor(to_numpy(bn.weight.data)))
        torch_bn.bias.copy_(tensor(to_numpy(bn.bias.data)))
    return bn, torch_bn


def _assert_same_buffers(bn, torch_bn):
    assert_close(bn.running_mean, torch_bn.running_mean, "running_mean")
    assert_close(bn.running_var, torch_bn.running_var, "running_var")
    assert int(to_numpy(bn.num_batches_tracked)) == int(torch_bn.num_batches_tracked)


@pytest.mark.parametrize("shape", [(4, 3, 3, 3), (1, 2, 3, 5), (5, 1, 1, 1), (2, 4, 1, 3)])
@pytest.mark.parametrize("momentum", [0.1, None, 0.5])
def test_batchnorm_train_mode_over_three_steps_matches_torch(shape, momentum, device):
    rng = np.random.default_rng(sum(shape) + (0 if momentum is None else int(momentum * 10)))
    bn, torch_bn = _bn_pair(shape[1], momentum, device, rng)
    torch_bn.train()
    for step in range(3):
        x = rng.standard_normal(shape) * 2 + step
        params = [("weight", (bn.weight, torch_bn.weight)), ("bias", (bn.bias, torch_bn.bias))]
        run_both(bn, torch_bn, [x], device, rng, params)
        _assert_same_buffers(bn, torch_bn)   # gradients accumulate across the steps in both
    assert int(to_numpy(bn.num_batches_tracked)) == 3


@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm_eval_mode_matches_torch(momentum, device):
    rng = np.random.default_rng(42)
    bn, torch_bn = _bn_pair(3, momentum, device, rng)
    for _ in range(2):                                   # make running stats non-trivial
        x = rng.standard_normal((4, 3, 2, 3)) * 3 + 1
        bn(to_device(x, device))
        torch_bn(tensor(x))
    bn.eval()
    torch_bn.eval()
    bn.zero_grad()
    params = [("weight", (bn.weight, torch_bn.weight)), ("bias", (bn.bias, torch_bn.bias))]
    run_both(bn, torch_bn, [rng.standard_normal((2, 3, 4, 3))], device, rng, params)
    _assert_same_buffers(bn, torch_bn)
    assert int(to_numpy(bn.num_batches_tracked)) == 2      # eval does not count batches


def test_batchnorm_state_dict_keys_match_torch_and_torch_state_loads(device):
    rng = np.random.default_rng(9)
    torch_bn = torch.nn.BatchNorm2d(5).double()
    for _ in range(3):
        torch_bn(tensor(rng.standard_normal((3, 5, 2, 2))))
    bn = ns.nn.BatchNorm2d(5).to(device=device, dtype=np.float64)
    assert list(bn.state_dict()) == list(torch_bn.state_dict())
    bn.load_state_dict({k: v.numpy() for k, v in torch_bn.state_dict().items()})
    _assert_same_buffers(bn, torch_bn)
    assert to_numpy(bn.num_batches_tracked).dtype == np.int64
    bn.eval()
    torch_bn.eval()
    x = rng.standard_normal((2, 5, 3, 3))
    assert_close(bn(to_device(x, device)), torch_bn(tensor(x)), "eval forward after load")
    back = {k: to_numpy(v) for k, v in bn.state_dict().items()}
    torch_bn.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in back.items()})


# -- ChannelScale and SEBlock -------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 1, 1, 1), (3, 8, 2, 1)])
def test_channel_scale_matches_torch(shape, device):
    rng = np.random.default_rng(sum(shape))
    u, s = rng.standard_normal(shape), rng.standard_normal(shape[:2])
    run_both(ns.nn.ChannelScale(), lambda a, b: a * b[:, :, None, None], [u, s], device, rng)


class TorchSE(torch.nn.Module):
    """The paper's SE block written with torch.nn.Linear: s = gate(W2 δ(W1 z)), x̃ = s · u."""

    def __init__(self, channels, hidden, squeeze, gate, bias):
        super().__init__()
        self.fc1 = torch.nn.Linear(channels, hidden, bias=bias)
        self.fc2 = torch.nn.Linear(hidden, channels, bias=bias)
        self.squeeze_kind, self.gate_kind = squeeze, gate

    def gate(self, u):
        z = u.mean(dim=(2, 3)) if self.squeeze_kind == "avg" else u.amax(dim=(2, 3))
        b = self.fc2(torch.relu(self.fc1(z)))
        return {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}[self.gate_kind](b)

    def forward(self, u):
        return u * self.gate(u)[:, :, None, None]


SE_CASES = [
    (8, 4, "avg", "sigmoid", False, (2, 8, 4, 4)),
    (8, 4, "avg", "sigmoid", True, (3, 8, 3, 5)),
    (16, 16, "avg", "sigmoid", False, (2, 16, 2, 2)),
    (6, 16, "avg", "sigmoid", True, (1, 6, 5, 3)),       # hidden = max(1, 6 // 16) = 1
    (8, 2, "max", "sigmoid", True, (2, 8, 3, 3)),
    (8, 4, "avg", "tanh", True, (2, 8, 4, 3)),
    (12, 3, "avg", "relu", True, (2, 12, 3, 3)),
    (4, 1, "max", "tanh", False, (1, 4, 1, 1)),
]


@pytest.mark.parametrize("case", SE_CASES, ids=[
    f"C{c[0]}-r{c[1]}-{c[2]}-{c[3]}-{'bias' if c[4] else 'nobias'}" for c in SE_CASES])
def test_se_block_matches_a_torch_se_module(case, device):
    channels, reduction, squeeze, gate, bias, shape = case
    rng = np.random.default_rng(channels * 10 + reduction)
    se = ns.nn.SEBlock(channels, reduction, squeeze=squeeze, gate=gate, bias=bias)
    se.to(device=device, dtype=np.float64)
    torch_se = TorchSE(channels, se.hidden, squeeze, gate, bias).double()
    assert list(se.state_dict()) == list(torch_se.state_dict())
    if gate == "relu":   # keep the ReLU gate's pre-activations away from zero
        se.fc2.bias.data = to_device(np.where(rng.random(channels) < 0.5, -1.0, 1.0), device)
    torch_se.load_state_dict({k: torch.from_numpy(to_numpy(v).copy())
                              for k, v in se.state_dict().items()})
    if squeeze == "max":
        x = rng.permutation(int(np.prod(shape))).reshape(shape) * 0.05 - 1.0
    else:
        x = rng.standard_normal(shape)
    params = [(name, (p, dict(torch_se.named_parameters())[name]))
              for name, p in se.named_parameters()]
    run_both(se, torch_se, [x], device, rng, params)
    assert_close(se.gate_values, torch_se.gate(tensor(x)), "gate values s")


@pytest.mark.parametrize("gate, bias", [("sigmoid", False), ("tanh", True), ("sigmoid", True)])
def test_no_squeeze_se_block_matches_torch_1x1_convolutions(gate, bias, device):
    """The paper's NoSqueeze ablation: s = gate(W2 δ(W1 u)) at every position, x̃ = s ⊙ u."""
    rng = np.random.default_rng(7)
    se = ns.nn.SEBlock(8, 4, gate=gate, bias=bias, no_squeeze=True)
    se.to(device=device, dtype=np.float64)
    fc1 = torch.nn.Conv2d(8, 2, 1, bias=bias).double()
    fc2 = torch.nn.Conv2d(2, 8, 1, bias=bias).double()
    torch_se = torch.nn.ModuleDict({"fc1": fc1, "fc2": fc2})
    torch_se.load_state_dict({k: torch.from_numpy(to_numpy(v).copy())
                              for k, v in se.state_dict().items()})
    act = {"sigmoid": torch.sigmoid, "tanh": torch.tanh}[gate]
    params = [(name, (p, dict(torch_se.named_parameters())[name]))
              for name, p in se.named_parameters()]
    run_both(se, lambda u: u * act(fc2(torch.relu(fc1(u)))), [rng.standard_normal((2, 8, 3, 4))],
             device, rng, params)


def test_se_block_gradients_accumulate_across_two_backward_calls(device):
    rng = np.random.default_rng(17)
    se = ns.nn.SEBlock(8, 4, bias=True).to(device=device, dtype=np.float64)
    torch_se = TorchSE(8, 2, "avg", "sigmoid", True).double()
    torch_se.load_state_dict({k: torch.from_numpy(to_numpy(v).copy())
                              for k, v in se.state_dict().items()})
    for _ in range(2):
        x = rng.standard_normal((2, 8, 3, 3))
        se(to_device(x, device))
        dy = rng.standard_normal(x.shape)
        se.backward(to_device(dy, device))
        torch_se(tensor(x)).backward(tensor(dy))
    for name, p in torch_se.named_parameters():
        assert_close(dict(se.named_parameters())[name].grad, p.grad, f"accumulated d{name}")


# -- SoftmaxCrossEntropy --------------------------------------------------------------------------
@pytest.mark.parametrize("n, k, smoothing, scale", [
    (4, 5, 0.0, 1.0), (4, 5, 0.1, 1.0), (1, 2, 0.0, 3.0), (7, 10, 0.2, 1.0),
    (3, 3, 1.0, 1.0), (5, 4, 0.05, 50.0), (2, 1000, 0.1, 10.0), (3, 4, 0.1, 1e4),
])
def test_softmax_cross_entropy_matches_torch(n, k, smoothing, scale, device):
    rng = np.random.default_rng(n * k)
    logits = rng.standard_normal((n, k)) * scale
    labels = rng.integers(0, k, n)
    loss_fn = ns.nn.SoftmaxCrossEntropy(label_smoothing=smoothing)
    loss = loss_fn(to_device(logits, device), to_device(labels, device))
    logits_t = tensor(logits, requires_grad=True)
    loss_t = F.cross_entropy(logits_t, torch.from_numpy(labels), label_smoothing=smoothing)
    assert to_numpy(loss).shape == ()
    assert_close(loss, loss_t, "loss")
    dloss = float(rng.uniform(0.5, 2.0))
    loss_t.backward(torch.tensor(dloss, dtype=torch.float64))
    assert_close(loss_fn.backward(dloss), logits_t.grad, "dlogits")
