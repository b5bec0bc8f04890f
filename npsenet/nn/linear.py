"""Fully connected layer, the W1 and W2 of the excitation (``notebooks/04_excitation.ipynb``).

    y = x W^T + b                 x: (N, in), W: (out, in), b: (out,)
    dL/dx = dy W,   dL/dW = dy^T x,   dL/db = sum_n dy[n]
"""
from __future__ import annotations

import math

from .. import init
from ._checks import check_dout, check_input, positive_int
from .module import Module, Parameter


class Linear(Module):
    """Affine map ``y = x W^T + b`` with PyTorch's shapes and default initialisation.

    forward(x): (N, in_features) -> (N, out_features).
    backward(dy): (N, out_features) -> dx (N, in_features); adds dL/dW (out, in) and
    dL/db (out,) into the parameters' ``.grad``.
    """

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.in_features = positive_int(in_features, "in_features", "Linear")
        self.out_features = positive_int(out_features, "out_features", "Linear")
        bound = 1.0 / math.sqrt(self.in_features)
        self.weight = Parameter(init.uniform((self.out_features, self.in_features), bound))
        self.bias = Parameter(init.uniform((self.out_features,), bound)) if bias else None
        self.cache = None

    def extra_repr(self):
        return (f"{self.in_features}, {self.out_features}"
                + ("" if self.bias is not None else ", bias=False"))

    def forward(self, x):
        check_input(x, f"Linear({self.extra_repr()})", 2, "(N, in_features)",
                    self.in_features, dtype=self.weight.dtype)
        y = x @ self.weight.data.T
        if self.bias is not None:
            y += self.bias.data
        self.cache = x
        return y

    def backward(self, dout):
        x = self.saved_cache()
        check_dout(dout, (x.shape[0], self.out_features), "Linear", x.dtype)
        self.release_cache()
        self.weight.accumulate_grad(dout.T @ x)
        if self.bias is not None:
            self.bias.accumulate_grad(dout.sum(axis=0))
        return dout @ self.weight.data
