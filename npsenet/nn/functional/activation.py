"""Element-wise nonlinearities: δ (ReLU) and σ (sigmoid) of the excitation, and tanh, one
of the paper's gate ablations. See ``notebooks/02_batchnorm_relu.ipynb`` and
``notebooks/04_excitation.ipynb``.

Each keeps what its derivative needs and nothing more:

    ReLU     y = max(x, 0)          dL/dx = dy * [x > 0]        (keeps the mask [x > 0])
    Sigmoid  y = 1 / (1 + e^-x)     dL/dx = dy * y * (1 - y)    (keeps y)
    Tanh     y = tanh(x)            dL/dx = dy * (1 - y^2)      (keeps y)

Shapes are unchanged, any rank; the dtype is the input's.
"""
from __future__ import annotations

from ...backend import get_array_module


def relu_forward(x, inplace=False):
    """y = max(x, 0); with ``inplace`` the result is written over x (and x returned).

    Returns y and the cache: the bool mask [x > 0] (the derivative at exactly 0 is taken
    as 0, as in PyTorch)."""
    mask = x > 0
    y = get_array_module(x).maximum(x, 0, out=x if inplace else None)
    return y, mask


def relu_backward(dy, mask):
    """dx = dy * [x > 0]."""
    return dy * mask


def sigmoid(x):
    """σ(x) = 1 / (1 + e^-x), written so that exp never overflows: for x >= 0 it is
    1 / (1 + e^-x), for x < 0 it is e^x / (1 + e^x); e = exp(-|x|) covers both."""
    xp = get_array_module(x)
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)


def sigmoid_forward(x):
    """y = σ(x); the cache is y."""
    y = sigmoid(x)
    return y, y


def sigmoid_backward(dy, y):
    """dx = dy * σ'(x) = dy * y * (1 - y)."""
    return dy * y * (1 - y)


def tanh_forward(x):
    """y = tanh(x); the cache is y."""
    y = get_array_module(x).tanh(x)
    return y, y


def tanh_backward(dy, y):
    """dx = dy * (1 - y^2)."""
    return dy * (1 - y * y)
