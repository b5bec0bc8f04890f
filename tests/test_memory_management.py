"""What layers keep in memory: caches released by backward, ns.no_grad(), the scratch buffers."""
import numpy as np
import pytest

import npsenet as ns
from npsenet.nn.conv import workspace


def _model_and_batch():
    ns.manual_seed(0)
    model = ns.models.resnet20()
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    return model, x


def _cached(model):
    return [name for name, m in model.named_modules() if m.__dict__.get("cache") is not None]


def test_backward_releases_every_cache():
    model, x = _model_and_batch()
    logits = model(x)
    assert _cached(model)
    model.backward(np.ones_like(logits))
    assert _cached(model) == []
    with pytest.raises(ValueError, match="before forward"):
        model.backward(np.ones_like(logits))


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
    limit_before = workspace.max_zeroed
    workspace.clear()
    workspace.max_zeroed = 4
    try:
        for n in range(1, 12):                      # eleven batch sizes, eleven shapes
            y = conv(np.ones((n, 2, 5, 5), dtype=np.float32))
            conv.backward(np.ones_like(y))
            assert len(workspace._zeroed) <= 4
        expected = conv(np.ones((1, 2, 5, 5), dtype=np.float32))    # an evicted shape again
        workspace.clear()
        np.testing.assert_array_equal(conv(np.ones((1, 2, 5, 5), dtype=np.float32)), expected)
    finally:
        workspace.max_zeroed = limit_before
        workspace.clear()
