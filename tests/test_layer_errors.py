"""Bad input raises a ValueError that names what was expected and what came; nothing is
half-updated after an error; backward never mutates dout; dtypes are preserved
(docs/contract.md#api). On both code paths."""
import numpy as np
import pytest

import npsenet as ns
from npsenet.backend import get_array_module, to_device, to_numpy

pytestmark = pytest.mark.usefixtures("code_path")   # on the fast and the plain path

EXPECTED_GOT = r"(?s)expected.*got"


def make_layers(dtype=np.float32):
    """One instance of every layer with a matching input (a list of arrays), on the CPU."""
    rng = np.random.default_rng(0)

    def randn(*shape):
        return rng.standard_normal(shape).astype(dtype)

    return {
        "Conv2d": (ns.nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2), [randn(2, 4, 5, 6)]),
        "Linear": (ns.nn.Linear(5, 3), [randn(4, 5)]),
        "ReLU": (ns.nn.ReLU(), [randn(2, 3, 4, 4)]),
        "Sigmoid": (ns.nn.Sigmoid(), [randn(3, 5)]),
        "Tanh": (ns.nn.Tanh(), [randn(3, 5)]),
        "GlobalAvgPool2d": (ns.nn.GlobalAvgPool2d(), [randn(2, 3, 4, 5)]),
        "GlobalMaxPool2d": (ns.nn.GlobalMaxPool2d(), [randn(2, 3, 4, 5)]),
        "MaxPool2d": (ns.nn.MaxPool2d(3, 2, 1), [randn(2, 2, 7, 7)]),
        "BatchNorm2d": (ns.nn.BatchNorm2d(3), [randn(4, 3, 3, 3)]),
        "BatchNorm2d-eval": (ns.nn.BatchNorm2d(3).eval(), [randn(4, 3, 3, 3)]),
        "ChannelScale": (ns.nn.ChannelScale(), [randn(2, 3, 4, 4), randn(2, 3)]),
        "SEBlock": (ns.nn.SEBlock(8, reduction=4, bias=True), [randn(2, 8, 4, 4)]),
        "SEBlock-noSqueeze": (ns.nn.SEBlock(8, reduction=4, no_squeeze=True), [randn(2, 8, 3, 3)]),
        "Sequential": (ns.nn.Sequential(ns.nn.Conv2d(3, 4, 3, padding=1), ns.nn.BatchNorm2d(4),
                                        ns.nn.ReLU(), ns.nn.GlobalAvgPool2d(), ns.nn.Linear(4, 2)),
                       [randn(2, 3, 5, 5)]),
    }


LAYER_NAMES = sorted(make_layers())


def layer_and_inputs(name, device, dtype=np.float32):
    layer, inputs = make_layers(dtype)[name]
    layer.to(device=device, dtype=dtype)
    return layer, [to_device(a, device) for a in inputs]


def as_tuple(g):
    return g if isinstance(g, tuple) else (g,)


# -- bad inputs ----------------------------------------------------------------------------------
RANK_CASES = [
    ("Conv2d", (4, 5, 6)), ("Linear", (4, 5, 1)), ("Linear", (5,)),
    ("GlobalAvgPool2d", (3, 4, 5)), ("GlobalMaxPool2d", (2, 3, 4, 5, 1)),
    ("MaxPool2d", (2, 7, 7)), ("BatchNorm2d", (4, 3)), ("SEBlock", (2, 8)),
]


@pytest.mark.parametrize("name, shape", RANK_CASES)
def test_wrong_rank_is_a_value_error(name, shape, device):
    layer, _ = layer_and_inputs(name, device)
    x = to_device(np.zeros(shape, dtype=np.float32), device)
    with pytest.raises(ValueError, match=r"(?s)expected a \d-D.*got shape") as info:
        layer(x)
    assert str(tuple(shape)) in str(info.value)


@pytest.mark.parametrize("name, shape", [
    ("Conv2d", (2, 3, 5, 6)), ("Linear", (4, 6)), ("BatchNorm2d", (4, 2, 3, 3)),
    ("SEBlock", (2, 16, 4, 4)), ("Sequential", (2, 1, 5, 5)),
])
def test_wrong_channel_count_is_a_value_error(name, shape, device):
    layer, _ = layer_and_inputs(name, device)
    x = to_device(np.zeros(shape, dtype=np.float32), device)
    with pytest.raises(ValueError, match=r"(?s)expected \d+ channels.*got shape"):
        layer(x)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.bool_])
@pytest.mark.parametrize("name", LAYER_NAMES)
def test_non_float_input_is_a_value_error(name, dtype, device):
    layer, inputs = layer_and_inputs(name, device)
    bad = [a.astype(dtype) for a in inputs]
    with pytest.raises(ValueError, match=r"(?s)expected a floating-point.*got dtype"):
        layer(*bad)


def test_a_list_is_not_an_array():
    with pytest.raises(ValueError, match=r"(?s)expected .*array.*got list"):
        ns.nn.ReLU()([[1.0, -1.0]])


def test_a_torch_tensor_is_not_an_array():
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match=r"(?s)expected .*array.*got Tensor.*numpy\(\)"):
        ns.nn.Conv2d(1, 1, 1)(torch.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError, match=r"expected integer class labels"):
        ns.nn.SoftmaxCrossEntropy()(np.zeros((2, 3)), torch.zeros(2, dtype=torch.int64))


@pytest.mark.parametrize("name", ["Conv2d", "Linear", "BatchNorm2d", "SEBlock", "Sequential"])
def test_float64_input_into_a_float32_layer_is_a_value_error(name, device):
    layer, inputs = layer_and_inputs(name, device)
    with pytest.raises(ValueError, match=r"float64 but the parameters are float32"):
        layer(*[a.astype(np.float64) for a in inputs])


def test_float32_input_into_a_float64_layer_is_a_value_error():
    conv = ns.nn.Conv2d(2, 2, 1).to(dtype=np.float64)
    with pytest.raises(ValueError, match=r"float32 but the parameters are float64"):
        conv(np.zeros((1, 2, 3, 3), dtype=np.float32))


def test_empty_input_is_a_value_error():
    with pytest.raises(ValueError, match="empty axis"):
        ns.nn.Conv2d(2, 2, 1)(np.zeros((0, 2, 3, 3), dtype=np.float32))


def test_channel_scale_rejects_mismatched_scales(device):
    scale = ns.nn.ChannelScale()
    u = to_device(np.zeros((2, 3, 4, 4), np.float32), device)
    for s_shape in [(2, 4), (3, 3), (1, 3)]:
        with pytest.raises(ValueError, match=r"(?s)expected scales s of shape \(2, 3\).*got"):
            scale(u, to_device(np.zeros(s_shape, np.float32), device))
    with pytest.raises(ValueError, match=r"expected a 2-D scales s"):
        scale(u, to_device(np.zeros((2, 3, 1, 1), np.float32), device))
    with pytest.raises(ValueError, match=r"scales s is float64"):
        scale(u, to_device(np.zeros((2, 3), np.float64), device))


# -- the loss -----------------------------------------------------------------------------------
def test_loss_rejects_labels_out_of_range(device):
    loss = ns.nn.SoftmaxCrossEntropy()
    logits = to_device(np.zeros((3, 4), np.float32), device)
    for labels in ([0, 4, 1], [-1, 0, 0], [0, 1, 100]):
        with pytest.raises(ValueError, match=r"(?s)labels must be in \[0, 3\].*got values"):
            loss(logits, to_device(np.array(labels), device))


@pytest.mark.parametrize("labels", [np.array([0.0, 1.0, 2.0]), np.array([True, False, True]),
                                    [0, 1, 2], 1])
def test_loss_rejects_labels_that_are_not_integer_arrays(labels, device):
    loss = ns.nn.SoftmaxCrossEntropy()
    logits = to_device(np.zeros((3, 4), np.float32), device)
    if hasattr(labels, "shape"):
        labels = to_device(labels, device)
    with pytest.raises(ValueError, match=r"(?s)expected integer class labels.*got"):
        loss(logits, labels)


@pytest.mark.parametrize("shape", [(2,), (4,), (3, 1), (1, 3), ()])
def test_loss_rejects_labels_of_the_wrong_shape(shape, device):
    loss = ns.nn.SoftmaxCrossEntropy()
    logits = to_device(np.zeros((3, 4), np.float32), device)
    with pytest.raises(ValueError, match=r"(?s)expected labels of shape \(3,\).*got"):
        loss(logits, to_device(np.zeros(shape, np.int64), device))


def test_loss_rejects_logits_of_the_wrong_rank():
    with pytest.raises(ValueError, match=r"expected a 2-D"):
        ns.nn.SoftmaxCrossEntropy()(np.zeros((3, 4, 1)), np.zeros(3, np.int64))


# -- constructors -------------------------------------------------------------------------------
@pytest.mark.parametrize("build, message", [
    (lambda: ns.nn.Conv2d(4, 6, 3, groups=4), r"divisible by groups"),
    (lambda: ns.nn.Conv2d(3, 6, 3, groups=2), r"divisible by groups"),
    (lambda: ns.nn.Conv2d(3, 6, 3, padding=-1), r"padding must be an integer >= 0, got -1"),
    (lambda: ns.nn.Conv2d(3, 6, 0), r"kernel_size must be an integer >= 1, got 0"),
    (lambda: ns.nn.Conv2d(3, 6, 3, stride=0), r"stride must be an integer >= 1, got 0"),
    (lambda: ns.nn.Conv2d(3, 6, (3, 5)), r"square kernels only"),
    (lambda: ns.nn.Conv2d(3, 6, 2.5), r"kernel_size must be an integer"),
    (lambda: ns.nn.Conv2d(0, 6, 3), r"in_channels must be an integer >= 1, got 0"),
    (lambda: ns.nn.Conv2d(3, 6, 3, groups=0), r"groups must be an integer >= 1, got 0"),
    (lambda: ns.nn.Conv2d(True, 6, 3), r"in_channels must be an integer"),
    (lambda: ns.nn.Linear(0, 3), r"in_features must be an integer >= 1, got 0"),
    (lambda: ns.nn.Linear(3, -2), r"out_features must be an integer >= 1, got -2"),
    (lambda: ns.nn.MaxPool2d(3, padding=2), r"padding \(2\) must be at most half"),
    (lambda: ns.nn.MaxPool2d(0), r"kernel_size must be an integer >= 1, got 0"),
    (lambda: ns.nn.MaxPool2d(2, stride=-1), r"stride must be an integer >= 1, got -1"),
    (lambda: ns.nn.BatchNorm2d(0), r"num_features must be an integer >= 1"),
    (lambda: ns.nn.BatchNorm2d(3, eps=0.0), r"eps must be > 0, got 0.0"),
    (lambda: ns.nn.BatchNorm2d(3, momentum=1.5), r"momentum must be in \[0, 1\] or None, got 1.5"),
    (lambda: ns.nn.SoftmaxCrossEntropy(label_smoothing=-0.1), r"label_smoothing must be in"),
    (lambda: ns.nn.SEBlock(8, squeeze="median"), r"squeeze must be one of .*got 'median'"),
    (lambda: ns.nn.SEBlock(8, gate="softmax"), r"gate must be one of .*got 'softmax'"),
    (lambda: ns.nn.SEBlock(8, reduction=0), r"reduction must be an integer >= 1, got 0"),
])
def test_bad_constructor_arguments_are_value_errors(build, message):
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize("build, shape", [
    (lambda: ns.nn.Conv2d(2, 2, 5), (1, 2, 4, 9)),
    (lambda: ns.nn.Conv2d(2, 2, 7, padding=1), (1, 2, 9, 4)),
    (lambda: ns.nn.MaxPool2d(3), (1, 2, 2, 5)),
    (lambda: ns.nn.MaxPool2d(5, padding=2, stride=1), (1, 1, 1, 0)),
])
def test_kernel_larger_than_the_input_is_a_value_error(build, shape):
    with pytest.raises(ValueError, match=r"smaller than the|empty axis"):
        build()(np.zeros(shape, np.float32))


# -- backward ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", LAYER_NAMES)
def test_backward_before_forward_is_a_value_error(name, device):
    layer, _ = layer_and_inputs(name, device)
    with pytest.raises(ValueError, match="forward"):
        layer.backward(to_device(np.zeros((2, 3, 4, 4), np.float32), device))


def test_loss_backward_before_forward_is_a_value_error():
    with pytest.raises(ValueError, match="forward"):
        ns.nn.SoftmaxCrossEntropy().backward()


def test_backward_after_to_is_a_value_error():
    conv = ns.nn.Conv2d(2, 2, 1)
    conv(np.zeros((1, 2, 3, 3), np.float32))
    conv.to(dtype=np.float64)
    with pytest.raises(ValueError, match="forward"):
        conv.backward(np.zeros((1, 2, 3, 3)))


@pytest.mark.parametrize("name", LAYER_NAMES)
def test_dout_of_the_wrong_shape_is_a_value_error_and_accumulates_nothing(name, device):
    layer, inputs = layer_and_inputs(name, device)
    y = layer(*inputs)
    for bad_shape in [y.shape + (1,), (y.shape[0] + 1,) + y.shape[1:], y.shape[1:]]:
        layer(*inputs)
        dout = to_device(np.zeros(bad_shape, np.float32), device)
        with pytest.raises(ValueError, match=r"(?s)expected dout of shape.*got"):
            layer.backward(dout)
    layer(*inputs)
    with pytest.raises(ValueError, match=r"expected an array"):
        layer.backward(None)
    assert all(p.grad is None for p in layer.parameters())


@pytest.mark.parametrize("name", LAYER_NAMES)
def test_a_rejected_dout_leaves_the_forward_cache_for_the_right_one(name, device):
    """Nothing is half-updated after an error: backward checks dout before it touches
    (or releases) what forward cached."""
    layer, inputs = layer_and_inputs(name, device)
    y = layer(*inputs)
    with pytest.raises(ValueError, match=r"expected dout of shape"):
        layer.backward(to_device(np.zeros(y.shape + (1,), np.float32), device))
    grads = as_tuple(layer.backward(to_device(np.ones(y.shape, np.float32), device)))
    assert [g.shape for g in grads] == [a.shape for a in inputs]


# -- nothing half-updated --------------------------------------------------------------------------
def _snapshot(module):
    return {k: to_numpy(v).copy() for k, v in module.state_dict().items()}


def _assert_state_equal(module, snapshot):
    state = module.state_dict()
    assert list(state) == list(snapshot)
    for key, value in snapshot.items():
        np.testing.assert_array_equal(to_numpy(state[key]), value, err_msg=key)


@pytest.mark.parametrize("bad", [
    np.zeros((1, 3, 1, 1), np.float32),    # one value per channel: no variance
    np.zeros((4, 2, 3, 3), np.float32),    # wrong channel count
    np.zeros((4, 3, 3, 3), np.float64),    # wrong dtype
    np.zeros((4, 3, 3), np.float32),       # wrong rank
    np.zeros((4, 3, 3, 3), np.int64),      # integer input
])
def test_batchnorm_that_raised_keeps_its_statistics(bad, device):
    bn = ns.nn.BatchNorm2d(3).to(device=device)
    rng = np.random.default_rng(0)
    bn(to_device(rng.standard_normal((4, 3, 2, 2)).astype(np.float32), device))
    before = _snapshot(bn)
    cache = bn.cache
    with pytest.raises(ValueError):
        bn(to_device(bad, device))
    _assert_state_equal(bn, before)
    assert int(to_numpy(bn.num_batches_tracked)) == 1
    assert bn.cache is cache


def test_a_state_dict_taken_before_a_training_step_keeps_all_its_values():
    bn = ns.nn.BatchNorm2d(2)
    state = bn.state_dict()
    bn(np.random.default_rng(0).standard_normal((3, 2, 2, 2)).astype(np.float32))
    np.testing.assert_array_equal(state["running_mean"], 0.0)
    assert int(state["num_batches_tracked"]) == 0


def test_batchnorm_with_one_value_per_channel_in_train_mode_raises_but_eval_works():
    bn = ns.nn.BatchNorm2d(2)
    x = np.ones((1, 2, 1, 1), np.float32)
    with pytest.raises(ValueError, match=r"more than one value per channel.*\(1, 2, 1, 1\)"):
        bn(x)
    assert int(bn.num_batches_tracked) == 0
    y = bn.eval()(x)
    np.testing.assert_allclose(y, x / np.sqrt(1 + 1e-5), rtol=1e-6)


def _small_net():
    return ns.nn.Sequential(ns.nn.Conv2d(3, 4, 3), ns.nn.BatchNorm2d(4), ns.nn.ReLU(),
                            ns.nn.GlobalAvgPool2d(), ns.nn.Linear(4, 2))


def test_load_state_dict_with_one_bad_shape_changes_nothing(device):
    net = _small_net().to(device=device)
    before = _snapshot(net)
    state = {k: np.full(v.shape, 7.0, dtype=v.dtype) for k, v in before.items()}
    state["4.weight"] = np.zeros((3, 4), np.float32)       # the last key has the wrong shape
    with pytest.raises(ValueError, match=r"(?s)4.weight has shape \(3, 4\).*\(2, 4\)"):
        net.load_state_dict(state)
    _assert_state_equal(net, before)


def test_load_state_dict_with_a_missing_or_extra_key_changes_nothing(device):
    net = _small_net().to(device=device)
    before = _snapshot(net)
    state = {k: np.full(v.shape, 7.0, dtype=v.dtype) for k, v in before.items()}
    del state["1.running_var"]
    with pytest.raises(ValueError, match=r"(?s)missing.*1.running_var"):
        net.load_state_dict(state)
    _assert_state_equal(net, before)
    state["1.running_var"], state["5.weight"] = np.ones(4, np.float32), np.ones(2, np.float32)
    with pytest.raises(ValueError, match=r"(?s)unexpected.*5.weight"):
        net.load_state_dict(state)
    _assert_state_equal(net, before)
    missing, unexpected = net.load_state_dict(state, strict=False)
    assert missing == [] and unexpected == ["5.weight"]
    np.testing.assert_array_equal(to_numpy(net[0].weight.data), 7.0)


def test_load_state_dict_keeps_dtype_and_copies(device):
    net = _small_net().to(device=device)
    state = {k: np.ones(v.shape, dtype=np.float64 if v.dtype.kind == "f" else v.dtype)
             for k, v in _snapshot(net).items()}
    net.load_state_dict(state)
    assert net[0].weight.dtype == np.float32
    state["0.weight"][...] = 5.0
    assert float(to_numpy(net[0].weight.data).max()) == 1.0


def test_a_failed_forward_keeps_the_previous_cache(device):
    conv, (x,) = layer_and_inputs("Conv2d", device)
    y = conv(x)
    with pytest.raises(ValueError):
        conv(x[:, :2])
    dy = to_device(np.ones(y.shape, np.float32), device)
    assert conv.backward(dy).shape == x.shape


# -- dout is never mutated, dtypes are preserved ---------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", LAYER_NAMES)
def test_backward_never_mutates_dout(name, dtype, device):
    layer, inputs = layer_and_inputs(name, device, dtype)
    y = layer(*inputs)
    rng = np.random.default_rng(5)
    dout = to_device(rng.standard_normal(y.shape).astype(dtype), device)
    kept = to_numpy(dout).copy()
    for _ in range(2):                      # the second call accumulates into existing grads
        layer(*inputs)
        grads = as_tuple(layer.backward(dout))
        np.testing.assert_array_equal(to_numpy(dout), kept)
        for g in grads:                     # a returned gradient must not be dout itself
            assert g is not dout
    for g in grads:                         # nor share memory with it
        assert not get_array_module(g).shares_memory(g, dout)
        if g.flags.writeable:               # (the fast squeeze's du is a read-only view)
            g[...] = 0
    np.testing.assert_array_equal(to_numpy(dout), kept)


def test_loss_backward_returns_a_fresh_array():
    loss = ns.nn.SoftmaxCrossEntropy(label_smoothing=0.1)
    logits = np.random.default_rng(0).standard_normal((4, 5))
    loss(logits, np.array([0, 1, 2, 3]))
    first = loss.backward()
    expected = first.copy()
    first[...] = 0
    loss(logits, np.array([0, 1, 2, 3]))
    np.testing.assert_array_equal(loss.backward(), expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", LAYER_NAMES)
def test_dtype_is_preserved_through_forward_and_backward(name, dtype, device):
    layer, inputs = layer_and_inputs(name, device, dtype)
    y = layer(*inputs)
    assert y.dtype == dtype
    grads = as_tuple(layer.backward(to_device(np.ones(y.shape, dtype), device)))
    assert all(g.dtype == dtype for g in grads)
    for param_name, p in layer.named_parameters():
        assert p.data.dtype == dtype and p.grad.dtype == dtype, param_name
    for key, value in layer.state_dict().items():
        if key.endswith("num_batches_tracked"):
            assert value.dtype == np.int64
        else:
            assert value.dtype == dtype, key


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_loss_keeps_the_dtype_of_the_logits(dtype, device):
    loss = ns.nn.SoftmaxCrossEntropy(label_smoothing=0.1)
    logits = to_device(np.random.default_rng(0).standard_normal((4, 5)).astype(dtype), device)
    labels = to_device(np.array([0, 4, 2, 1]), device)
    value = loss(logits, labels)
    assert value.dtype == dtype and value.shape == ()
    for dloss in (1.0, 0.5, np.float64(0.5)):            # a NumPy scalar does not promote
        loss(logits, labels)
        assert loss.backward(dloss).dtype == dtype


# -- memory layout does not matter ---------------------------------------------------------------
def _layouts(a):
    """The same values as C-ordered, Fortran-ordered, channel-major, reversed-stride and
    every-other-element views."""
    yield np.ascontiguousarray(a)
    yield np.asfortranarray(a)
    if a.ndim >= 2:
        yield np.moveaxis(np.ascontiguousarray(np.moveaxis(a, 1, 0)), 0, 1)
    yield np.ascontiguousarray(a[..., ::-1])[..., ::-1]
    spread = np.zeros(tuple(2 * n for n in a.shape), a.dtype)
    spread[tuple(slice(None, None, 2) for _ in a.shape)] = a
    yield spread[tuple(slice(None, None, 2) for _ in a.shape)]


@pytest.mark.parametrize("name", LAYER_NAMES)
def test_results_do_not_depend_on_the_memory_layout_of_inputs_and_dout(name):
    layer, inputs = layer_and_inputs(name, "cpu", np.float64)
    state = _snapshot(layer)
    y_ref = layer(*inputs)
    dy = np.random.default_rng(1).standard_normal(y_ref.shape)
    results = []
    for views in zip(*[_layouts(a) for a in inputs], _layouts(dy)):
        layer.load_state_dict(state)
        layer.zero_grad()
        y = layer(*views[:-1])
        grads = as_tuple(layer.backward(views[-1]))
        results.append([y, *grads, *[p.grad for p in layer.parameters()]])
    for other in results[1:]:
        for a, b in zip(other, results[0]):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
