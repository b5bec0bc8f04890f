"""Element-wise layers: δ (ReLU) and σ (sigmoid) of the excitation, and tanh, one of the
paper's gate ablations. The pairs they call are ``functional/activation.py``
(``notebooks/02_batchnorm_relu.ipynb``, ``notebooks/04_excitation.ipynb``).

    ReLU     y = max(x, 0)          dL/dx = dy * [x > 0]
    Sigmoid  y = 1 / (1 + e^-x)     dL/dx = dy * y * (1 - y)
    Tanh     y = tanh(x)            dL/dx = dy * (1 - y^2)
"""
from __future__ import annotations

from ._checks import check_float_array
from .functional.activation import sigmoid  # noqa: F401  (ns.nn.activation.sigmoid)
from .module import Module
from .switch import active_path


class _Elementwise(Module):
    """What the three layers share: the input check before the active path runs."""

    def __init__(self):
        super().__init__()
        self.cache = None

    def _checked(self, x):
        check_float_array(x, type(self).__name__)
        return active_path()


class ReLU(_Elementwise):
    """δ(x) = max(x, 0). The derivative at exactly 0 is taken as 0, as in PyTorch.

    ``inplace=True`` (as in ``torch.nn.ReLU``) writes the result over x and returns x,
    saving a new array of x's size. Use it only where nothing else keeps x: the ResNets
    use it on the outputs of BatchNorm and of the residual addition, which no layer keeps.
    """

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = bool(inplace)

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""

    def forward(self, x):
        path = self._checked(x)
        y, mask = path.relu_forward(x, inplace=self.inplace)
        return self.keep(path, mask, y)

    def backward(self, dout):
        path, mask = self.kept(dout)
        return path.relu_backward(dout, mask)


class Sigmoid(_Elementwise):
    """σ(x) = 1 / (1 + e^-x), the SE gate; σ'(x) = σ(x) (1 - σ(x))."""


    def forward(self, x):
        path = self._checked(x)
        y, cache = path.sigmoid_forward(x)
        return self.keep(path, cache, y)

    def backward(self, dout):
        path, y = self.kept(dout)
        return path.sigmoid_backward(dout, y)


class Tanh(_Elementwise):
    """tanh(x); tanh'(x) = 1 - tanh(x)^2."""


    def forward(self, x):
        path = self._checked(x)
        y, cache = path.tanh_forward(x)
        return self.keep(path, cache, y)

    def backward(self, dout):
        path, y = self.kept(dout)
        return path.tanh_backward(dout, y)
