"""The two code paths (docs/contract.md#api): the plain path alone runs a whole training
step when the switch is off, and the two paths compute the same numbers (1e-12 in
float64) for every layer on random cases and for whole SE-ResNets over several steps."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import npsenet as ns
import npsenet.nn.fast
import npsenet.nn.functional

FAST_DIR = str(Path(npsenet.nn.fast.__file__).parent) + os.sep
PLAIN_DIR = str(Path(npsenet.nn.functional.__file__).parent) + os.sep


def _calls_during(fn):
    """(file, function name) of every Python function called while ``fn()`` runs."""
    seen = set()

    def profile(frame, event, arg):
        if event == "call":
            seen.add((frame.f_code.co_filename, frame.f_code.co_name))

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return seen


def _training_step(model, x, y):
    loss_fn = ns.nn.SoftmaxCrossEntropy()
    opt = ns.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)

    def step():
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        model.backward(loss_fn.backward())
        opt.step()
        return float(loss)
    return step


def _batch(n=4, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 3, 32, 32)).astype(dtype), rng.integers(0, 10, n)


@pytest.mark.parametrize("fast", [False, True], ids=["plain", "fast"])
def test_a_training_step_runs_only_the_chosen_path(fast):
    """Traced SE-ResNet-20 training step: on the plain path no function under
    npsenet/nn/fast/ runs and im2col/col2im do; on the fast path the fast code runs (so
    the trace can see it)."""
    ns.manual_seed(0)
    model = ns.models.se_resnet20()
    step = _training_step(model, *_batch())
    with ns.nn.fast(fast):
        step()                                   # first steps allocate; trace a later one
        calls = _calls_during(step)
    fast_calls = sorted(name for file, name in calls if file.startswith(FAST_DIR))
    plain_calls = {name for file, name in calls if file.startswith(PLAIN_DIR)}
    if fast:
        assert {"conv2d_forward", "strip_products", "batchnorm_forward"} <= set(fast_calls)
        assert "im2col" not in plain_calls
    else:
        assert fast_calls == []
        assert {"im2col", "col2im", "conv2d_forward", "conv2d_backward", "batchnorm_forward",
                "batchnorm_backward", "channel_scale_backward",
                "global_avg_pool_backward"} <= plain_calls


def test_npsenet_fast_0_in_the_environment_selects_the_plain_path():
    code = "import npsenet as ns; print(ns.nn.is_fast())"
    for value, expected in (("0", "False"), ("off", "False"), ("1", "True")):
        env = dict(os.environ, NPSENET_FAST=value)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True).stdout.strip()
        assert out == expected, value


def test_the_switch_and_its_context_manager():
    assert ns.nn.is_fast()
    with ns.nn.fast(False):
        assert not ns.nn.is_fast()
        with ns.nn.fast(True):
            assert ns.nn.is_fast()
        assert not ns.nn.is_fast()
    assert ns.nn.is_fast()
    ns.nn.use_fast(False)
    try:
        assert not ns.nn.is_fast()
    finally:
        ns.nn.use_fast(True)


def test_the_fast_path_has_every_pair_of_the_plain_path():
    """The layers call pairs by name on whichever path is active: the fast path's ops
    module must offer every forward/backward pair the plain path does."""
    import npsenet.nn.fast.ops as fast_ops
    pairs = [name for name in npsenet.nn.functional.__all__
             if name.endswith(("_forward", "_backward"))]
    assert len(pairs) >= 20
    assert [name for name in pairs if not hasattr(fast_ops, name)] == []


def test_a_backward_uses_the_path_of_its_forward():
    """Switching between a forward and its backward changes nothing: each layer keeps
    the path that ran its forward."""
    rng = np.random.default_rng(3)
    conv = ns.nn.Conv2d(3, 4, 3, padding=1).to(dtype=np.float64)
    x, dy = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((2, 4, 6, 6))
    conv(x)
    with ns.nn.fast(False):
        dx_mixed = conv.backward(dy)
    conv(x)
    np.testing.assert_allclose(dx_mixed, conv.backward(dy), rtol=1e-12, atol=1e-12)


# -- the two paths agree ---------------------------------------------------------------------
def _max_error(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b), initial=0.0) / max(1e-300, np.max(np.abs(b), initial=0)))


def _run(layer, inputs, dout, fast):
    """Output, input gradients and parameter gradients of one forward/backward."""
    layer.zero_grad()
    with ns.nn.fast(fast):
        y = layer(*inputs)
        dx = layer.backward(dout)
    dx = dx if isinstance(dx, tuple) else (dx,)
    grads = [p.grad for p in layer.parameters()]
    return [np.array(y)] + [np.array(g) for g in dx] + [np.array(g) for g in grads]


def _random_layer_case(rng):
    """A random layer (of every family) with random hyperparameters, and its inputs."""
    kind = rng.choice(["conv", "conv_grouped", "linear", "bn_train", "bn_eval", "relu",
                       "sigmoid", "tanh", "avg", "max", "maxpool", "scale", "se"])
    n, h, w = int(rng.integers(1, 4)), int(rng.integers(3, 9)), int(rng.integers(3, 9))
    c = int(rng.integers(1, 7))
    if kind in ("conv", "conv_grouped"):
        g = int(rng.integers(1, 4)) if kind == "conv_grouped" else 1
        k = int(rng.integers(1, 4))
        layer = ns.nn.Conv2d(c * g, int(rng.integers(1, 4)) * g, k,
                             stride=int(rng.integers(1, 4)), padding=int(rng.integers(0, k + 1)),
                             bias=bool(rng.integers(0, 2)), groups=g)
        inputs = (rng.standard_normal((n, c * g, h + k, w + k)),)
    elif kind == "linear":
        layer = ns.nn.Linear(c, int(rng.integers(1, 7)), bias=bool(rng.integers(0, 2)))
        inputs = (rng.standard_normal((n, c)),)
    elif kind.startswith("bn"):
        layer = ns.nn.BatchNorm2d(c)
        layer.running_mean = rng.standard_normal(c)
        layer.running_var = rng.uniform(0.5, 2.0, c)
        layer.weight.data, layer.bias.data = rng.standard_normal(c), rng.standard_normal(c)
        layer.train(kind == "bn_train")
        inputs = (rng.standard_normal((n + 1, c, h, w)),)
    elif kind == "maxpool":
        k = int(rng.integers(1, 4))
        layer = ns.nn.MaxPool2d(k, stride=int(rng.integers(1, 3)),
                                padding=int(rng.integers(0, k // 2 + 1)))
        inputs = (rng.standard_normal((n, c, h, w)),)
    elif kind == "scale":
        layer = ns.nn.ChannelScale()
        inputs = (rng.standard_normal((n, c, h, w)), rng.standard_normal((n, c)))
    elif kind == "se":
        layer = ns.nn.SEBlock(4 * c, reduction=int(rng.integers(1, 5)),
                              squeeze=str(rng.choice(["avg", "max"])),
                              gate=str(rng.choice(["sigmoid", "tanh", "relu"])),
                              bias=bool(rng.integers(0, 2)), no_squeeze=bool(rng.integers(0, 2)))
        inputs = (rng.standard_normal((n, 4 * c, h, w)),)
    else:
        layer = {"relu": ns.nn.ReLU, "sigmoid": ns.nn.Sigmoid, "tanh": ns.nn.Tanh,
                 "avg": ns.nn.GlobalAvgPool2d, "max": ns.nn.GlobalMaxPool2d}[kind]()
        inputs = (rng.standard_normal((n, c, h, w)),)
    return str(kind), layer.to(dtype=np.float64), inputs


@pytest.mark.parametrize("seed", range(60))
def test_both_paths_agree_on_random_layers(seed):
    rng = np.random.default_rng(seed)
    kind, layer, inputs = _random_layer_case(rng)
    with ns.no_grad():
        y = layer(*inputs)
    dout = rng.standard_normal(y.shape)
    fast, plain = _run(layer, inputs, dout, True), _run(layer, inputs, dout, False)
    assert len(fast) == len(plain)
    for a, b in zip(fast, plain):
        assert _max_error(a, b) < 1e-12, (kind, layer)


@pytest.mark.slow
@pytest.mark.parametrize("placement", ["standard", "pre", "post", "identity", "3x3"])
def test_both_paths_agree_over_training_steps_of_an_se_resnet(placement):
    """Three SGD steps of SE-ResNet-20 in float64 on each path: the same losses, weights
    and running statistics to 1e-12 (relative to each array's largest entry)."""
    x, y = _batch(n=6, dtype=np.float64, seed=1)
    results = {}
    for fast in (True, False):
        ns.manual_seed(0)
        model = ns.models.se_resnet20(placement=placement).to(dtype=np.float64)
        step = _training_step(model, x, y)
        with ns.nn.fast(fast):
            losses = [step() for _ in range(3)]
        results[fast] = losses, model.state_dict()
    (loss_fast, state_fast), (loss_plain, state_plain) = results[True], results[False]
    np.testing.assert_allclose(loss_fast, loss_plain, rtol=1e-12)
    for key, value in state_fast.items():
        assert _max_error(value, state_plain[key]) < 1e-12, key


@pytest.mark.parametrize("command", [["gradcheck"], ["bench", "--steps", "1", "--warmup", "0",
                                                    "--batch-size", "2", "--no-torch",
                                                    "--no-memory", "--json"]])
def test_plain_on_the_command_line_runs_the_plain_path(command, monkeypatch, capsys):
    """``--plain`` runs the command on the plain path (seen from inside it), and the
    choice ends with the command."""
    from npsenet.cli import main
    seen = []
    original = npsenet.nn.functional.conv2d_forward

    def spy(*args, **kwargs):
        seen.append(ns.nn.is_fast())
        return original(*args, **kwargs)

    monkeypatch.setattr(npsenet.nn.functional, "conv2d_forward", spy)
    assert main(command + ["--plain"]) == 0
    assert seen and not any(seen)
    assert ns.nn.is_fast()
    if command[0] == "bench":
        assert '"path": "plain"' in capsys.readouterr().out
