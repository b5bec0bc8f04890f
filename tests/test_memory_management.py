"""What layers keep in memory: caches released by backward and ns.no_grad() (on both
paths), and the fast path's reused buffers."""
import numpy as np
import pytest

import npsenet as ns
from npsenet.nn.fast.layout import channels_last
from npsenet.nn.fast.workspace import workspace

import reference

both_paths = pytest.mark.usefixtures("code_path")


def _kept_grid(conv):
    """What a fast stride-1 convolution kept for backward: (StripGrid, flat grid, and the
    rest of what it saved)."""
    _, (_, saved, _), _, _ = conv.cache
    grid, flat, *rest = saved
    return grid, flat, rest


def _kept(layer):
    """What a fast BatchNorm2d (x - mu) or ReLU (its mask) kept for backward."""
    cache = layer.cache[1]
    return cache[0] if isinstance(cache, tuple) else cache


def _model_and_batch():
    ns.manual_seed(0)
    model = ns.models.resnet20()
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    return model, x


def _cached(model):
    return [name for name, m in model.named_modules() if m.__dict__.get("cache") is not None]


@both_paths
def test_backward_releases_every_cache():
    model, x = _model_and_batch()
    logits = model(x)
    assert _cached(model)
    model.backward(np.ones_like(logits))
    assert _cached(model) == []
    with pytest.raises(ValueError, match="before forward"):
        model.backward(np.ones_like(logits))


@both_paths
def test_no_grad_keeps_nothing_and_restores_itself():
    model, x = _model_and_batch()
    expected = model.eval()(x)
    model.backward(np.ones_like(expected))          # empties the caches again
    assert ns.nn.is_grad_enabled()
    with ns.no_grad():
        assert not ns.nn.is_grad_enabled()
        with ns.no_grad():
            pass
        assert not ns.nn.is_grad_enabled()          # an inner block restores the outer state
        np.testing.assert_array_equal(model(x), expected)
    assert ns.nn.is_grad_enabled()
    assert _cached(model) == []
    with pytest.raises(ValueError, match="no_grad"):
        model.backward(np.ones_like(expected))


def test_cleared_scratch_buffers_are_made_again():
    model, x = _model_and_batch()
    expected = model.eval()(x)
    assert workspace.nbytes() > 0
    workspace.clear()
    assert workspace.nbytes() == 0
    np.testing.assert_array_equal(model(x), expected)
    assert workspace.nbytes() > 0


def test_scratch_buffers_kept_per_shape_are_bounded():
    conv = ns.nn.Conv2d(2, 3, 3, padding=1)
    limit_before = workspace.max_kept
    workspace.clear()
    workspace.max_kept = 4
    try:
        for n in range(1, 12):                      # eleven batch sizes, eleven shapes
            y = conv(np.ones((n, 2, 5, 5), dtype=np.float32))
            conv.backward(np.ones_like(y))
            assert len(workspace._zeroed) <= 4 and len(workspace._returned) <= 4
        expected = conv(np.ones((1, 2, 5, 5), dtype=np.float32))    # an evicted shape again
        workspace.clear()
        np.testing.assert_array_equal(conv(np.ones((1, 2, 5, 5), dtype=np.float32)), expected)
    finally:
        workspace.max_kept = limit_before
        workspace.clear()


def test_conv_keeps_its_input_grid_and_gives_it_back():
    """A stride-1 3x3 convolution keeps its input's strip grid (lent by the workspace)
    instead of x; backward gives it back and the next forward reuses it, border still
    zero; under no_grad nothing is lent."""
    rng = np.random.default_rng(0)
    conv = ns.nn.Conv2d(2, 3, 3, padding=1).to(dtype=np.float64)
    x1, x2 = rng.standard_normal((2, 2, 2, 5, 5))
    dy = rng.standard_normal((2, 3, 5, 5))
    workspace.clear()
    conv(x1)
    grid, lent, rest = _kept_grid(conv)
    assert grid.shape == (2, 5, 5, 2) and not any(a is x1 for a in rest)       # not x itself
    assert workspace.nbytes() < lent.nbytes
    conv.backward(dy)
    assert workspace.nbytes() >= lent.nbytes                       # given back
    conv.zero_grad()
    conv(x2)
    assert _kept_grid(conv)[1] is lent                                # and lent again
    dx = conv.backward(dy)
    expected_dx, expected_dw, _ = reference.conv2d_backward(x2, conv.weight.data, dy, 1, 1, 1)
    np.testing.assert_allclose(dx, expected_dx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv.weight.grad, expected_dw, rtol=1e-12, atol=1e-12)
    with ns.no_grad():
        conv(x1)
    returned = [buf for bufs in workspace._returned.values() for buf in bufs]
    assert any(buf is lent for buf in returned)                    # not taken under no_grad


@both_paths
def test_convs_of_one_shape_keep_separate_grids():
    """Two convolutions of the same input shape, both forwards before both backwards (as
    in a network): each backward reads its own input, not the other's."""
    rng = np.random.default_rng(1)
    convs = [ns.nn.Conv2d(2, 2, 3, padding=1).to(dtype=np.float64) for _ in range(2)]
    xs = rng.standard_normal((2, 3, 2, 4, 6))
    dy = rng.standard_normal((3, 2, 4, 6))
    for conv, x in zip(convs, xs):
        conv(x)
    for conv, x in reversed(list(zip(convs, xs))):
        dx = conv.backward(dy)
        expected_dx, expected_dw, _ = reference.conv2d_backward(x, conv.weight.data, dy, 1, 1, 1)
        np.testing.assert_allclose(dx, expected_dx, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(conv.weight.grad, expected_dw, rtol=1e-12, atol=1e-12)


@both_paths
def test_relu_keeps_a_mask_not_its_output():
    relu = ns.nn.ReLU()
    y = relu(np.array([[-1.0, 0.0, 2.0]], dtype=np.float32))
    mask = relu.cache[1]
    assert mask.dtype == bool and mask.tolist() == [[False, False, True]]
    np.testing.assert_array_equal(relu.backward(np.full_like(y, 3.0)), [[0.0, 0.0, 3.0]])


@pytest.mark.parametrize("make", [lambda: ns.nn.BatchNorm2d(3), lambda: ns.nn.ReLU()],
                         ids=["BatchNorm2d", "ReLU"])
def test_layers_reuse_the_arrays_they_keep_for_backward(make):
    """BatchNorm's x - mu and ReLU's mask live in arrays the workspace lends: backward gives
    them back and the next forward reuses them, with the same results as a fresh layer;
    under no_grad nothing is taken."""
    rng = np.random.default_rng(2)
    x1, x2 = (channels_last(a) for a in rng.standard_normal((2, 4, 3, 5, 6)))
    dy = rng.standard_normal(x1.shape)
    layer = make().to(dtype=np.float64)
    workspace.clear()
    layer(x1)
    kept = _kept(layer)
    layer.backward(dy)
    y2 = layer(x2)
    assert np.shares_memory(_kept(layer), kept)                 # given back, lent again
    dx2 = layer.backward(dy)
    fresh = make().to(dtype=np.float64)
    np.testing.assert_array_equal(y2, fresh(x2))
    np.testing.assert_array_equal(dx2, fresh.backward(dy))
    with ns.no_grad():
        layer(x1)
    assert any(np.shares_memory(buf, kept) for bufs in workspace._returned.values()
               for buf in bufs)                                   # still in the workspace


@pytest.mark.parametrize("make", [lambda: ns.nn.ReLU(), lambda: ns.nn.BatchNorm2d(2),
                                  lambda: ns.nn.Conv2d(2, 2, 3, padding=1)],
                         ids=["ReLU", "BatchNorm2d", "Conv2d"])
@both_paths
def test_a_forward_under_no_grad_drops_what_an_earlier_forward_kept(make):
    """A backward after a no_grad forward raises, even when an earlier forward with
    gradients kept something: its cache belongs to another input."""
    layer = make()
    x = np.ones((2, 2, 4, 4), dtype=np.float32)
    y = layer(x)
    with ns.no_grad():
        layer(x)
    assert layer.__dict__.get("cache") is None
    with pytest.raises(ValueError, match="no_grad"):
        layer.backward(np.ones_like(y))


@pytest.mark.parametrize("k, stride, padding, groups", [(3, 2, 0, 1), (3, 1, 0, 1), (3, 2, 1, 1),
                                                        (1, 2, 0, 1), (3, 2, 0, 2), (3, 2, 0, 4)])
def test_fast_conv_backward_never_returns_workspace_memory(k, stride, padding, groups):
    """dx is the caller's to keep: a second backward of the same shape must not change
    the first one's dx (the fast path's reused buffers stay inside it)."""
    rng = np.random.default_rng(0)
    conv = ns.nn.Conv2d(4, 4, k, stride=stride, padding=padding, bias=False, groups=groups)
    x = rng.standard_normal((2, 4, 9, 9)).astype(np.float32)
    with ns.nn.fast(True):
        y = conv(x)
        dx = conv.backward(rng.standard_normal(y.shape).astype(np.float32))
        kept = dx.copy()
        conv(rng.standard_normal(x.shape).astype(np.float32))
        conv.backward(rng.standard_normal(y.shape).astype(np.float32))
    np.testing.assert_array_equal(dx, kept)


def test_threads_that_train_side_by_side_do_not_share_scratch_memory():
    """Each thread has its own workspace (the simulated ranks of ThreadGroup, notebook 12):
    two threads' training steps on the fast path give what each gives alone."""
    from npsenet.distributed import ThreadGroup
    from npsenet.nn.fast.workspace import workspace
    rng = np.random.default_rng(4)
    xs = [rng.standard_normal((8, 3, 16, 16)).astype(np.float32) for _ in range(2)]

    def model():                       # built here: the weights' generator is global
        ns.manual_seed(0)
        return ns.models.se_resnet20()

    models = {}

    def step(index):
        model, loss_fn = models[index], ns.nn.SoftmaxCrossEntropy()
        grads = []
        for _ in range(3):
            model.zero_grad()
            loss_fn(model(xs[index]), np.arange(8) % 10)
            grads.append(model.backward(loss_fn.backward()).copy())
        return grads, workspace.current()

    models.update({0: model(), 1: model()})
    alone = [step(0)[0], step(1)[0]]
    models.update({0: model(), 1: model()})
    together = ThreadGroup(2).run(lambda comm: step(comm.rank))
    for got, want in zip(together, alone):
        for a, b in zip(got[0], want):
            np.testing.assert_array_equal(a, b)
    assert together[0][1] is not together[1][1]          # a workspace each
