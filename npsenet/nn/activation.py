"""Elementwise nonlinearities: δ (ReLU) and σ (sigmoid) of the excitation, and tanh,
one of the paper's gate ablations. See ``notebooks/02_batchnorm_relu.ipynb`` and
``notebooks/04_excitation.ipynb``.

Each caches what its derivative needs and nothing more:

    ReLU     y = max(x, 0)          dL/dx = dy * [x > 0]        (caches the mask [x > 0])
    Sigmoid  y = 1 / (1 + e^-x)     dL/dx = dy * y * (1 - y)    (caches y)
    Tanh     y = tanh(x)            dL/dx = dy * (1 - y^2)      (caches y)

Shapes are unchanged, any rank; the dtype is the input's.
"""
from __future__ import annotations

from ..backend import get_array_module
from ._channels import per_channel
from ._checks import check_dout, check_float_array
from ._workspace import workspace
from .module import Module, is_grad_enabled


class ReLU(Module):
    """δ(x) = max(x, 0). The derivative at exactly 0 is taken as 0, as in PyTorch.

    ``inplace=True`` (as in ``torch.nn.ReLU``) writes the result over x and returns x,
    saving a new array of x's size. Use it only where nothing else keeps x: the ResNets
    use it on the outputs of BatchNorm and of the residual addition, which no layer keeps.
    """

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = bool(inplace)
        self.cache = None

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""

    def forward(self, x):
        check_float_array(x, "ReLU")
        xp = get_array_module(x)
        # NumPy's maximum has a vector loop for two arrays but not for an array and a
        # scalar: against zeros lined up with a whole image (per_channel, as BatchNorm
        # broadcasts its per-channel factors) it is ~2x faster than max(x, 0)
        zero = per_channel(xp.zeros(x.shape[1], x.dtype), x) if x.ndim == 4 and x.size else 0
        y = xp.maximum(x, zero, out=x if self.inplace else None)
        self.cache = None                     # what an earlier forward kept is stale now
        if is_grad_enabled():
            # [x > 0] is [y > 0]. A bool mask is a quarter of y's memory, and caching it
            # rather than y lets y go as soon as the next layers are done with it (a
            # convolution keeps its own padded copy of its input, see conv.py). The mask
            # lives in an array the workspace lends and backward gives back.
            mask = workspace.lend_like(y, "relu: mask", dtype=bool)
            self.cache = (xp.greater(y, 0, out=mask), y.dtype)
        return y

    def backward(self, dout):
        mask, dtype = self.saved_cache()
        check_dout(dout, mask.shape, "ReLU", dtype)
        self.release_cache()
        dx = dout * mask
        workspace.give_back_like(mask, "relu: mask")              # for the next forward
        return dx


def sigmoid(x):
    """σ(x) = 1 / (1 + e^-x), written so that exp never overflows:
    for x >= 0 it is 1 / (1 + e^-x), for x < 0 it is e^x / (1 + e^x); e = exp(-|x|) covers both."""
    xp = get_array_module(x)
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)


class Sigmoid(Module):
    """σ(x) = 1 / (1 + e^-x), the SE gate; σ'(x) = σ(x) (1 - σ(x))."""

    def __init__(self):
        super().__init__()
        self.cache = None

    def forward(self, x):
        check_float_array(x, "Sigmoid")
        y = sigmoid(x)
        self.cache = y
        return y

    def backward(self, dout):
        y = self.saved_cache()
        check_dout(dout, y.shape, "Sigmoid", y.dtype)
        self.release_cache()
        return dout * y * (1 - y)


class Tanh(Module):
    """tanh(x); tanh'(x) = 1 - tanh(x)^2."""

    def __init__(self):
        super().__init__()
        self.cache = None

    def forward(self, x):
        check_float_array(x, "Tanh")
        y = get_array_module(x).tanh(x)
        self.cache = y
        return y

    def backward(self, dout):
        y = self.saved_cache()
        check_dout(dout, y.shape, "Tanh", y.dtype)
        self.release_cache()
        return dout * (1 - y * y)
