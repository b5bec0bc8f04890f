"""Nothing is half-updated after an error (docs/contract.md): a bad batch is refused at the
model's entry with one line, and a failure deep inside a forward, a backward or an
optimizer step leaves every parameter, gradient, buffer and cache as it was."""
import copy

import numpy as np
import pytest

import npsenet as ns
from npsenet.models.entry import smallest_input

# cheap members of three families (ResNet, MobileNet, ShuffleNet) and the VGG, at CIFAR size
MODELS = ["se_resnet20", "se_mobilenet_v1_cifar", "se_shufflenet_v1_cifar"]


class Injected(Exception):
    """The failure a test plants deep inside a model."""


def _model(name):
    ns.manual_seed(0)
    return ns.models.build_model(name)


def _batch(n=2, size=8, seed=1):
    return np.random.default_rng(seed).standard_normal((n, 3, size, size)).astype(np.float32)


def _primed(name):
    """A model in training mode after one full step and one more forward: its running
    statistics have moved, every parameter has a gradient and every layer a cache."""
    model = _model(name).train()
    out = model(_batch())
    model.backward(np.ones_like(out))
    model(_batch(seed=2))
    return model


def _state(model):
    """Everything a call could change: each module's attributes (the objects themselves:
    caches, gate values, buffers), and copies of each parameter, gradient and buffer."""
    return {
        "attributes": [(name, dict(m.__dict__)) for name, m in model.named_modules()],
        "arrays": {**{k: v.copy() for k, v in model.state_dict().items()},
                   **{f"{k}.grad": p.grad.copy() for k, p in model.named_parameters()
                      if p.grad is not None}},
        "grads": [(k, p.grad) for k, p in model.named_parameters()],
    }


def _assert_unchanged(model, before):
    now = _state(model)
    for (name, attrs), (_, attrs_now) in zip(before["attributes"], now["attributes"]):
        changed = [k for k in set(attrs) | set(attrs_now)
                   if k != "_entry_map_sizes" and attrs.get(k) is not attrs_now.get(k)]
        assert not changed, f"{name or 'model'}: {changed} changed"
    assert list(before["arrays"]) == list(now["arrays"])
    for key, value in before["arrays"].items():
        assert now["arrays"][key].dtype == value.dtype, key
        assert np.array_equal(now["arrays"][key], value), key
    assert all(g is g_now for (_, g), (_, g_now) in zip(before["grads"], now["grads"]))


def _one_line_error(excinfo, *words):
    message = str(excinfo.value)
    assert "\n" not in message, message
    for word in words:
        assert word in message, message
    return message


@pytest.mark.parametrize("name", MODELS)
def test_bad_batches_are_refused_at_the_entry_and_change_nothing(name):
    model = _primed(name)
    before = _state(model)
    bad = {
        "tiny": (np.zeros((1, 3, 2, 2), np.float32), ["one value per channel", "model.eval()"]),
        "channels": (_batch()[:, :2], ["expected 3 channels", "(2, 2, 8, 8)"]),
        "dtype": (_batch().astype(np.float64), ["float64", "float32"]),
        "integers": (_batch().astype(np.int32), ["floating-point", "astype"]),
        "rank": (_batch()[0], ["4-D", "(3, 8, 8)"]),
        "empty": (np.zeros((0, 3, 8, 8), np.float32), ["empty"]),
        "list": ([[0.0]], ["NumPy or CuPy array"]),
    }
    for what, (x, words) in bad.items():
        with pytest.raises(ValueError) as excinfo:
            model(x)
        _one_line_error(excinfo, name, *words)
        _assert_unchanged(model, before)


def test_the_size_error_says_what_the_network_takes():
    model = _primed("se_resnet20")
    assert smallest_input(model, batch=1) == 5   # 5 -> 3 -> 2: the last stage's maps are 2x2
    assert smallest_input(model, batch=2) == 1
    with pytest.raises(ValueError) as excinfo:
        model(np.zeros((1, 3, 2, 2), np.float32))
    message = _one_line_error(excinfo, "se_resnet20", "(1, 3, 2, 2)", "5x5", "batch of at least 2")
    assert "BatchNorm2d" not in message.split(":")[0]   # the model speaks, not a deep layer
    model(np.zeros((1, 3, 5, 5), np.float32))           # the size it names works
    model(np.zeros((2, 3, 1, 1), np.float32))           # and so does the batch


def test_an_input_too_small_for_the_pooling_names_the_smallest_size():
    ns.manual_seed(0)
    model = ns.models.se_vgg16_bn_cifar()                # five 2x2/2 max pools: 32x32
    before = _state(model)
    with pytest.raises(ValueError) as excinfo:
        model(_batch(size=16))
    _one_line_error(excinfo, "se_vgg16_bn_cifar", "(2, 3, 16, 16)", "32x32", "MaxPool2d")
    _assert_unchanged(model, before)


def test_in_evaluation_a_too_small_input_fails_in_its_layer_and_changes_nothing():
    ns.manual_seed(0)
    model = ns.models.se_vgg16_bn_cifar().eval()
    before = _state(model)
    with pytest.raises(ValueError) as excinfo:
        model(_batch(size=16))
    _one_line_error(excinfo, "MaxPool2d", "larger input")
    _assert_unchanged(model, before)


def test_evaluation_takes_a_one_image_batch_the_training_mode_refuses():
    model = _primed("se_resnet20").eval()
    before = _state(model)
    with ns.no_grad():
        assert model(np.zeros((1, 3, 2, 2), np.float32)).shape == (1, 10)
    before["attributes"] = [(n, {k: v for k, v in a.items() if k not in ("cache", "gate_values")})
                            for n, a in before["attributes"]]
    now = _state(model)
    for key, value in before["arrays"].items():
        assert np.array_equal(now["arrays"][key], value), key


def test_the_size_check_runs_the_model_once_and_leaves_the_step_exact():
    """The entry check learns a new size by running the model (eval, no_grad); the step
    itself then updates the running statistics exactly once, in training mode."""
    checked, twin = _model("se_resnet20").train(), _model("se_resnet20").train()
    x = _batch(size=12)
    out = checked(x)
    assert all(m.training for m in checked.modules())
    ns.models.entry._state.tracing = True               # the twin skips the check
    try:
        expected = twin(x)
    finally:
        ns.models.entry._state.tracing = False
    assert np.array_equal(out, expected)
    for (key, a), (_, b) in zip(checked.state_dict().items(), twin.state_dict().items()):
        assert np.array_equal(a, b), key


def _deep(model, kind):
    """The module a failure is planted in: the last BatchNorm2d (a forward fails after all
    the others updated their statistics) or the first convolution (a backward fails after
    every other layer accumulated its gradients and released its cache)."""
    if kind == "forward":
        return [m for m in model.modules() if isinstance(m, ns.nn.BatchNorm2d)][-1]
    return next(m for m in model.modules() if isinstance(m, ns.nn.Conv2d))


@pytest.mark.parametrize("error", [Injected, KeyboardInterrupt])
@pytest.mark.parametrize("name", MODELS)
def test_a_forward_that_fails_deep_inside_changes_nothing(name, error):
    model, twin = _primed(name), _primed(name)    # the twin never fails
    before = _state(model)
    victim = _deep(model, "forward")

    def fail(x):
        raise error("planted")
    victim.forward = fail                       # an instance attribute, deleted after
    try:
        with pytest.raises(error):
            model(_batch(seed=3))
    finally:
        del victim.forward
    _assert_unchanged(model, before)
    # and the model carries on exactly as one that never failed
    out, expected = model(_batch(seed=4)), twin(_batch(seed=4))
    assert np.array_equal(out, expected)
    assert np.array_equal(model.backward(np.ones_like(out)), twin.backward(np.ones_like(out)))
    for (k, p), (_, q) in zip(model.named_parameters(), twin.named_parameters()):
        assert np.array_equal(p.grad, q.grad), k


@pytest.mark.parametrize("name", MODELS)
def test_a_backward_that_fails_deep_inside_changes_nothing(name, code_path):
    """On the fast path the memory the failed backward gave back for reuse is the restored
    caches' again: the twin's forward below must not borrow it."""
    model = _primed(name)
    out = model(_batch(seed=3))
    before = _state(model)
    victim = _deep(model, "backward")

    def fail(dout):
        raise Injected("planted")
    victim.backward = fail
    try:
        with pytest.raises(Injected):
            model.backward(np.ones_like(out))
    finally:
        del victim.backward
    _assert_unchanged(model, before)
    twin = _primed(name)                        # the caches are back: the same backward works
    assert np.array_equal(twin(_batch(seed=3)), out)
    _model(name)(_batch(seed=9))                # (even after another model's forward)
    assert np.array_equal(model.backward(np.ones_like(out)), twin.backward(np.ones_like(out)))
    for (k, p), (_, q) in zip(model.named_parameters(), twin.named_parameters()):
        assert np.array_equal(p.grad, q.grad), k


def test_a_failed_forward_puts_back_the_dropout_random_state():
    ns.manual_seed(0)
    layers = ns.nn.Sequential(ns.nn.Dropout(0.5), ns.nn.ReLU(), ns.nn.Dropout(0.5))
    twin = copy.deepcopy(layers)
    x = _batch()

    def fail(x):
        raise Injected("planted")
    layers[1].forward = fail
    with pytest.raises(Injected):
        layers(x)
    del layers[1].forward
    assert np.array_equal(layers(x), twin(x))      # the same masks as a model that never failed


def _sgd_setup():
    model = _primed("se_resnet20")
    opt = ns.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    opt.step()                                      # momentum buffers exist
    return model, opt


@pytest.mark.parametrize("bad, words", [
    (lambda g: g.astype(np.float64), ["float64", "does not cast"]),
    (lambda g: g[..., None], ["shape"]),
    (lambda g: g.tolist(), ["list", "backward"]),
])
def test_an_optimizer_step_with_one_bad_gradient_changes_nothing(bad, words):
    model, opt = _sgd_setup()
    last = model.parameters()[-1]
    last.grad = bad(last.grad)
    data = [p.data.copy() for p in model.parameters()]
    buffers = [b.copy() for b in opt.momentum_buffers]
    with pytest.raises(ValueError) as excinfo:
        opt.step()
    _one_line_error(excinfo, "SGD", *words)
    assert all(np.array_equal(p.data, d) for p, d in zip(model.parameters(), data))
    assert all(np.array_equal(b, c) for b, c in zip(opt.momentum_buffers, buffers))


@pytest.mark.parametrize("bad, words", [
    (lambda v: v[..., None], ["shape"]),
    (lambda v: np.array(["x"] * v.size).reshape(v.shape), ["dtype", "<U1"]),
    (lambda v: "not an array", ["str", "not an array"]),
])
def test_load_state_dict_with_one_bad_entry_changes_nothing(bad, words):
    model = _primed("se_resnet20")
    state = {k: v.copy() + 1 for k, v in model.state_dict().items()}
    last = list(state)[-1]                          # every other entry would load
    state[last] = bad(state[last])
    before = _state(model)
    with pytest.raises(ValueError) as excinfo:
        model.load_state_dict(state)
    _one_line_error(excinfo, "load_state_dict", last, *words)
    _assert_unchanged(model, before)


def test_no_grad_belongs_to_the_thread_that_enters_it():
    """A forward under no_grad in one thread (a model's entry check traces under it) leaves
    another thread's forward its cache, as simulated ranks of ThreadGroup need."""
    import threading

    entered, release = threading.Event(), threading.Event()

    def hold_no_grad():
        with ns.no_grad():
            entered.set()
            release.wait(10)

    other = threading.Thread(target=hold_no_grad)
    other.start()
    try:
        assert entered.wait(10)
        assert ns.nn.is_grad_enabled()
        layer = ns.nn.ReLU()
        layer(np.ones((2, 3), dtype=np.float32))
        layer.backward(np.ones((2, 3), dtype=np.float32))   # raises if nothing was cached
    finally:
        release.set()
        other.join()
    with ns.no_grad():
        assert not ns.nn.is_grad_enabled()
    assert ns.nn.is_grad_enabled()
