"""Numerical gradient checks of every layer (the contract, docs/contract.md#gradients), and of
the checker itself."""
import numpy as np
import pytest

import npsenet as ns
from npsenet.backend import to_device
from npsenet.gradcheck import _layer_cases, check_layer, numerical_gradient, relative_error

pytestmark = pytest.mark.usefixtures("code_path")   # on the fast and the plain path

CASES = _layer_cases()


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_every_layer_passes_gradcheck(case, device):
    title, layer, inputs = case
    layer.to(device=device, dtype=np.float64)
    inputs = [to_device(a, device) if a.dtype.kind == "f" else to_device(a, device) for a in inputs]
    errors = check_layer(layer, *inputs)
    assert errors, title
    for name, err in errors.items():
        assert err < 1e-7, f"{title}: {name} relative error {err:.2e}"


def test_relative_error_formula():
    a = np.array([1.0, 2.0, 0.0])
    n = np.array([1.0, 2.2, 0.0])
    assert relative_error(a, n) == pytest.approx(0.2 / 4.2)


def test_numerical_gradient_of_a_known_function():
    x = np.array([0.5, -1.0, 2.0])
    dout = np.array([1.0, 2.0, -3.0])
    g = numerical_gradient(lambda: x ** 3, x, dout)
    np.testing.assert_allclose(g, 3 * x ** 2 * dout, rtol=1e-9)


class _WrongBackwardReLU(ns.nn.ReLU):
    """A broken layer: forgets the mask in backward."""

    def backward(self, dout):
        return dout.copy()


def test_check_layer_catches_a_wrong_backward():
    x = np.random.default_rng(0).standard_normal((3, 4)) + 0.5
    errors = check_layer(_WrongBackwardReLU(), x)
    assert errors["input"] > 1e-2


def test_sum_based_check_would_miss_softmax_errors_but_ours_does_not():
    """The trap the contract warns about (docs/contract.md#gradients): for a softmax-like
    layer, d sum(f)/dx = 0, so a backward that returns zeros passes a sum-based check. A
    random upstream gradient catches it."""

    class Softmax(ns.nn.Module):
        def forward(self, x):
            e = np.exp(x - x.max(axis=1, keepdims=True))
            self.cache = e / e.sum(axis=1, keepdims=True)
            return self.cache

        def backward(self, dout):
            return np.zeros_like(dout)  # wrong, yet exact for dout = ones

    x = np.random.default_rng(0).standard_normal((2, 5))
    layer = Softmax()
    ones = np.ones((2, 5))
    grad_of_sum = numerical_gradient(lambda: layer.forward(x), x, ones)
    np.testing.assert_allclose(grad_of_sum, 0.0, atol=1e-9)  # zeros look right under sum(f)
    assert check_layer(layer, x)["input"] > 1e-2             # a random dout exposes them


def test_check_layer_insists_on_float64():
    with pytest.raises(ValueError, match="float64"):
        check_layer(ns.nn.Linear(3, 2), np.zeros((2, 3), dtype=np.float32))


def test_check_layer_restores_batchnorm_state():
    bn = ns.nn.BatchNorm2d(2).to(dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((3, 2, 2, 2))
    check_layer(bn, x)
    assert int(bn.num_batches_tracked) == 0
    np.testing.assert_array_equal(bn.running_mean, 0.0)


def test_cli_gradcheck_table(capsys):
    from npsenet.cli import main
    assert main(["gradcheck"]) == 0
    out = capsys.readouterr().out
    assert "Conv2d" in out and "SEBlock" in out and "gradients within" in out
