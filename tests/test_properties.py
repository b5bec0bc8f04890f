"""Property-based tests: over random shapes and hyperparameters, valid ones included, each
layer either returns the result of the plain-loop reference (tests/reference.py) or, exactly
when the arguments are invalid, raises a ValueError — never an IndexError, TypeError or a
NumPy error from deep inside."""
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import npsenet as ns

import reference

pytestmark = pytest.mark.usefixtures("code_path")   # on the fast and the plain path

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def run(fn):
    """Call ``fn``; return ("ok", result) or ("error", the ValueError). Any other exception
    propagates and fails the test."""
    try:
        result = fn()
    except ValueError as error:
        assert str(error), "a ValueError must explain itself"
        event("ValueError")
        return "error", error
    event("computed")
    return "ok", result


def mostly(valid, invalid):
    """Draw from ``valid`` nine times out of ten, else from ``invalid``, so that examples
    with several arguments still compute a result often, and every argument gets errors."""
    valid, invalid = list(valid), list(invalid)
    return st.integers(0, 9).flatmap(
        lambda r: st.sampled_from(invalid if r == 0 else valid))


def close(actual, expected, rtol=1e-10):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    scale = max(1e-300, float(np.max(np.abs(expected), initial=0.0)))
    assert float(np.max(np.abs(actual - expected), initial=0.0)) <= rtol * scale


@SETTINGS
@given(n=mostly([1, 2], [0]), groups=mostly([1, 1, 2, 3], [0, -1]),
       cin_per_group=st.integers(1, 2), cout_per_group=st.integers(1, 2),
       channel_offsets=mostly([(0, 0, 0)], [(1, 0, 0), (0, 1, 0), (0, 0, 1), (-1, 0, 0)]),
       h=mostly([1, 2, 3, 4, 5, 6], [0]), w=mostly([1, 2, 3, 4, 5, 6], [0]),
       k=mostly([1, 2, 3, 4], [0, -1]), s=mostly([1, 2, 3], [0, -2]),
       p=mostly([0, 1, 2, 3], [-1]), bias=st.booleans(), seed=st.integers(0, 2**16))
def test_conv2d_is_right_or_raises_a_value_error(n, groups, cin_per_group, cout_per_group,
                                                 channel_offsets, h, w, k, s, p, bias, seed):
    cin_offset, cout_offset, x_channels_offset = channel_offsets
    cin = max(groups, 1) * cin_per_group + cin_offset
    cout = max(groups, 1) * cout_per_group + cout_offset
    valid_args = (cin >= 1 and cout >= 1 and k >= 1 and s >= 1 and p >= 0 and groups >= 1
                  and cin % groups == 0 and cout % groups == 0)
    status, conv = run(lambda: ns.nn.Conv2d(cin, cout, k, stride=s, padding=p, bias=bias,
                                            groups=groups).to(dtype=np.float64))
    assert (status == "ok") == valid_args, conv
    if not valid_args:
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, cin + x_channels_offset, h, w))
    ho, wo = reference.output_size(h, k, s, p), reference.output_size(w, k, s, p)
    valid_input = x_channels_offset == 0 and min(n, h, w) >= 1 and min(ho, wo) >= 1
    status, y = run(lambda: conv(x))
    assert (status == "ok") == valid_input, y
    if not valid_input:
        return
    weight = conv.weight.data
    b = conv.bias.data if bias else None
    close(y, reference.conv2d_forward(x, weight, b, s, p, groups))
    dy = rng.standard_normal(y.shape)
    dx = conv.backward(dy)
    dx_ref, dw_ref, db_ref = reference.conv2d_backward(x, weight, dy, s, p, groups)
    close(dx, dx_ref)
    close(conv.weight.grad, dw_ref)
    if bias:
        close(conv.bias.grad, db_ref)


@SETTINGS
@given(n=mostly([1, 2], [0]), c=mostly([1, 2, 3], [0]), h=mostly(range(1, 8), [0]),
       w=mostly(range(1, 8), [0]), k=mostly([1, 2, 3, 4, 5], [0, -1]),
       s=mostly([None, 1, 2, 3], [0, -1]), p=mostly([0, 0, 1, 2], [-1, 3]),
       seed=st.integers(0, 2**16))
def test_maxpool2d_is_right_or_raises_a_value_error(n, c, h, w, k, s, p, seed):
    stride = k if s is None else s
    valid_args = k >= 1 and stride >= 1 and 0 <= p <= k // 2
    status, pool = run(lambda: ns.nn.MaxPool2d(k, stride=s, padding=p))
    assert (status == "ok") == valid_args, pool
    if not valid_args:
        return
    rng = np.random.default_rng(seed)
    x = rng.permutation(n * c * h * w).reshape(n, c, h, w) * 0.25 - 1.0
    ho, wo = reference.output_size(h, k, stride, p), reference.output_size(w, k, stride, p)
    valid_input = min(n, c, h, w) >= 1 and min(ho, wo) >= 1
    status, y = run(lambda: pool(x))
    assert (status == "ok") == valid_input, y
    if not valid_input:
        return
    y_ref, argmax = reference.maxpool2d_forward(x, k, stride, p)
    np.testing.assert_array_equal(y, y_ref)
    dy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(pool.backward(dy), reference.maxpool2d_backward(x.shape, argmax, dy),
                               rtol=1e-14, atol=1e-14)


@SETTINGS
@given(n=mostly([1, 2, 3], [0]), c=st.integers(1, 3), extra=mostly([0], [1]),
       h=mostly([1, 2, 3], [0]), w=mostly([1, 2, 3], [0]), training=st.booleans(),
       momentum=st.sampled_from([0.1, None, 0.9]), seed=st.integers(0, 2**16))
def test_batchnorm2d_is_right_or_raises_a_value_error(n, c, extra, h, w, training, momentum,
                                                      seed):
    bn = ns.nn.BatchNorm2d(c, momentum=momentum).to(dtype=np.float64).train(training)
    rng = np.random.default_rng(seed)
    bn.weight.data = rng.uniform(0.5, 1.5, c)
    bn.bias.data = rng.standard_normal(c)
    x = rng.standard_normal((n, c + extra, h, w)) * 2 + 1
    valid = extra == 0 and min(n, h, w) >= 1 and (not training or n * h * w >= 2)
    before = {k: v.copy() for k, v in bn.state_dict().items()}
    status, y = run(lambda: bn(x))
    assert (status == "ok") == valid, y
    if not valid:
        for key, value in bn.state_dict().items():
            np.testing.assert_array_equal(value, before[key], err_msg=key)
        return
    dy = rng.standard_normal(y.shape)
    dx = bn.backward(dy)
    if training:
        y_ref, mean, var = reference.batchnorm2d_train_forward(x, bn.weight.data, bn.bias.data,
                                                               bn.eps)
        dx_ref, dgamma_ref, dbeta_ref = reference.batchnorm2d_train_backward(
            x, bn.weight.data, dy, bn.eps)
        m = n * h * w
        factor = 1.0 if momentum is None else momentum
        close(bn.running_mean, factor * mean, rtol=1e-12)
        close(bn.running_var, (1 - factor) + factor * var * m / (m - 1), rtol=1e-12)
        assert int(bn.num_batches_tracked) == 1
        close(y, y_ref, rtol=1e-9)
        close(dx, dx_ref, rtol=1e-7)
        close(bn.weight.grad, dgamma_ref, rtol=1e-9)
        close(bn.bias.grad, dbeta_ref, rtol=1e-12)
    else:
        scale = bn.weight.data / np.sqrt(1.0 + bn.eps)
        close(y, x * scale[None, :, None, None] + bn.bias.data[None, :, None, None])
        close(dx, dy * scale[None, :, None, None])
        assert int(bn.num_batches_tracked) == 0


@SETTINGS
@given(n=st.integers(1, 4), k=st.integers(1, 6), smoothing=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
       dtype=st.sampled_from(["int64", "int32", "uint8", "int8", "float64", "bool"]),
       shape_kind=st.sampled_from(["right", "right", "right", "short", "column", "scalar"]),
       low=st.integers(-2, 0), high_extra=st.integers(0, 2), seed=st.integers(0, 2**16))
def test_loss_is_right_or_raises_a_value_error(n, k, smoothing, dtype, shape_kind, low,
                                               high_extra, seed):
    rng = np.random.default_rng(seed)
    shape = {"right": (n,), "short": (n + 1,), "column": (n, 1), "scalar": ()}[shape_kind]
    raw = rng.integers(low, k + high_extra, shape)
    if dtype.startswith("u"):
        raw = np.abs(raw)
    labels = raw.astype(dtype)
    logits = rng.standard_normal((n, k)) * 3
    in_range = labels.size == 0 or (int(labels.min()) >= 0 and int(labels.max()) < k)
    valid = labels.dtype.kind in "iu" and shape == (n,) and in_range
    loss_fn = ns.nn.SoftmaxCrossEntropy(label_smoothing=smoothing)
    status, loss = run(lambda: loss_fn(logits, labels))
    assert (status == "ok") == valid, loss
    if not valid:
        return
    loss_ref, dlogits_ref = reference.softmax_cross_entropy(logits, labels, smoothing)
    close(loss, loss_ref, rtol=1e-12)
    close(loss_fn.backward(), dlogits_ref, rtol=1e-12)


@SETTINGS
@given(n=mostly([1, 2, 3], [0]), fin=st.integers(1, 5), fout=st.integers(1, 4),
       feature_offset=mostly([0], [-1, 1]), rank=mostly([2], [1, 3]), bias=st.booleans(),
       seed=st.integers(0, 2**16))
def test_linear_is_right_or_raises_a_value_error(n, fin, fout, feature_offset, rank, bias, seed):
    x_features = fin + feature_offset
    rng = np.random.default_rng(seed)
    lin = ns.nn.Linear(fin, fout, bias=bias).to(dtype=np.float64)
    shape = {1: (x_features,), 2: (n, x_features), 3: (n, x_features, 1)}[rank]
    x = rng.standard_normal(shape)
    valid = rank == 2 and x_features == fin and n >= 1
    status, y = run(lambda: lin(x))
    assert (status == "ok") == valid, y
    if not valid:
        return
    w = lin.weight.data
    y_ref = np.array([[sum(w[o, i] * x[r, i] for i in range(fin))
                       + (lin.bias.data[o] if bias else 0.0) for o in range(fout)]
                      for r in range(n)])
    close(y, y_ref)
    dy = rng.standard_normal(y.shape)
    close(lin.backward(dy), dy @ w)
    close(lin.weight.grad, np.einsum("no,ni->oi", dy, x))


@SETTINGS
@given(shape=mostly([4], [0, 2, 3, 5]).flatmap(
           lambda rank: st.lists(mostly([1, 2, 3, 4], [0]), min_size=rank, max_size=rank)),
       layer=st.sampled_from(["GlobalAvgPool2d", "GlobalMaxPool2d", "ChannelScale"]),
       seed=st.integers(0, 2**16))
def test_squeeze_and_scale_are_right_or_raise_a_value_error(shape, layer, seed):
    rng = np.random.default_rng(seed)
    u = rng.permutation(int(np.prod(shape))).reshape(shape) * 0.5 - 1.0
    valid = len(shape) == 4 and min(shape) >= 1
    module = getattr(ns.nn, layer)()
    if layer == "ChannelScale":
        s = rng.standard_normal(tuple(shape[:2]))
        status, y = run(lambda: module(u, s))
    else:
        status, y = run(lambda: module(u))
    assert (status == "ok") == valid, y
    if not valid:
        return
    n, c, h, w = shape
    if layer == "GlobalAvgPool2d":
        expected = [[sum(u[i, j].ravel()) / (h * w) for j in range(c)] for i in range(n)]
    elif layer == "GlobalMaxPool2d":
        expected = [[max(u[i, j].ravel()) for j in range(c)] for i in range(n)]
    else:
        expected = [[u[i, j] * s[i, j] for j in range(c)] for i in range(n)]
    close(y, np.array(expected))


@SETTINGS
@given(channels=mostly([1, 2, 4, 8], [0]), reduction=mostly([1, 2, 4, 16], [0, -1]),
       squeeze=mostly(["avg", "max"], ["mean", ""]), gate=mostly(["sigmoid", "tanh", "relu"],
                                                                  ["softmax"]),
       bias=st.booleans(), n=mostly([1, 2], [0]), channel_offset=mostly([0], [1]),
       h=mostly([1, 2, 3], [0]), w=mostly([1, 2, 3], [0]), seed=st.integers(0, 2**16))
def test_se_block_is_right_or_raises_a_value_error(channels, reduction, squeeze, gate, bias, n,
                                                   channel_offset, h, w, seed):
    valid_args = (channels >= 1 and reduction >= 1 and squeeze in ("avg", "max")
                  and gate in ("sigmoid", "tanh", "relu"))
    status, se = run(lambda: ns.nn.SEBlock(channels, reduction, squeeze=squeeze, gate=gate,
                                           bias=bias).to(dtype=np.float64))
    assert (status == "ok") == valid_args, se
    if not valid_args:
        return
    assert se.hidden == max(1, channels // reduction)
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((n, channels + channel_offset, h, w))
    valid_input = channel_offset == 0 and min(n, h, w) >= 1
    status, y = run(lambda: se(u))
    assert (status == "ok") == valid_input, y
    if not valid_input:
        return
    y_ref, s_ref = reference.se_block_forward(
        u, se.fc1.weight.data, se.fc1.bias.data if bias else None, se.fc2.weight.data,
        se.fc2.bias.data if bias else None, squeeze, gate)
    close(y, y_ref)
    close(se.gate_values, s_ref)
    assert se.backward(rng.standard_normal(y.shape)).shape == u.shape


@pytest.mark.parametrize("name", ["ReLU", "Sigmoid", "Tanh"])
@SETTINGS
@given(shape=st.lists(st.integers(0, 4), min_size=0, max_size=4), seed=st.integers(0, 2**16))
def test_activations_take_any_shape(name, shape, seed):
    x = np.random.default_rng(seed).standard_normal(shape)
    layer = getattr(ns.nn, name)()
    y = layer(x)
    expected = {"ReLU": np.maximum(x, 0), "Sigmoid": 1 / (1 + np.exp(-x)), "Tanh": np.tanh(x)}
    close(y, expected[name], rtol=1e-15)
    assert np.shape(layer.backward(np.ones(np.shape(y)))) == tuple(shape)


@SETTINGS
@given(shape=st.lists(st.integers(0, 4), min_size=0, max_size=4), seed=st.integers(0, 2**16))
def test_inplace_relu_overwrites_its_input_and_matches_the_plain_one(shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    dy = rng.standard_normal(shape)
    plain, inplace = ns.nn.ReLU(), ns.nn.ReLU(inplace=True)
    expected, expected_dx = plain(x.copy()), plain.backward(dy)
    x_in = x.copy()
    y = inplace(x_in)
    assert y is x_in                                       # the input's own memory
    np.testing.assert_array_equal(y, expected)
    np.testing.assert_array_equal(inplace.backward(dy), expected_dx)
    assert repr(inplace) == "ReLU(inplace=True)" and repr(plain) == "ReLU()"


@SETTINGS
@given(n=st.integers(1, 3), c=st.integers(1, 5), h=st.integers(1, 7), w=st.integers(1, 7),
       big=st.booleans(), channels_last=st.booleans(), seed=st.integers(0, 2**16))
def test_channel_helpers_match_the_plain_expressions(n, c, h, w, big, channels_last, seed):
    """per_channel and the per-channel sums of the fast path's layout.py against plain
    NumPy, for channels-last and other layouts, and past the whole-image repeat limit."""
    from npsenet.nn.fast import layout
    rng = np.random.default_rng(seed)
    if big:
        h = layout._WHOLE_IMAGE_MAX // (w * c) + 1          # one number too many
    a = rng.standard_normal((n, h, w, c)).transpose(0, 3, 1, 2)
    if not channels_last:
        a = np.ascontiguousarray(a)
    b = rng.standard_normal(a.shape)
    v, s = rng.standard_normal(c), rng.standard_normal((n, c))
    np.testing.assert_array_equal(a * layout.per_channel(v, a), a * v[None, :, None, None])
    np.testing.assert_array_equal(a * layout.per_channel(s, a), a * s[:, :, None, None])
    close(layout.sum_over_batch_and_space(a), a.sum(axis=(0, 2, 3)), rtol=1e-12)
    close(layout.sum_over_space(a), a.sum(axis=(2, 3)), rtol=1e-12)
    close(layout.sum_of_products_over_batch_and_space(a, b), (a * b).sum(axis=(0, 2, 3)),
          rtol=1e-12)
    close(layout.sum_of_products_over_space(a, b), (a * b).sum(axis=(2, 3)), rtol=1e-12)


@SETTINGS
@given(n=st.integers(1, 3), c=st.integers(1, 5), h=st.integers(1, 6), w=st.integers(1, 6),
       seed=st.integers(0, 2**16))
@pytest.mark.parametrize("squeeze", ["GlobalAvgPool2d", "GlobalMaxPool2d"])
def test_squeeze_gradient_adds_onto_a_channels_last_array(squeeze, n, c, h, w, seed):
    """g += squeeze.backward(dz) (how the SE block sums its two gradient paths) gives
    g + dz broadcast, on both paths, for a channels-last g (the fast path's layout)."""
    from npsenet.nn.fast.layout import channels_last
    rng = np.random.default_rng(seed)
    u = channels_last(rng.standard_normal((n, c, h, w)))
    dz, g = rng.standard_normal((n, c)), channels_last(rng.standard_normal((n, c, h, w)))
    pool = getattr(ns.nn, squeeze)()
    with ns.nn.fast(False):
        pool(u)
        expected = g + pool.backward(dz)
    pool(u)
    g += pool.backward(dz)
    close(g, expected, rtol=1e-14)
