"""``Linear``: y = x W^T + b, the W1 and W2 of the excitation. The pair it calls is
``functional/linear.py`` (``notebooks/04_excitation.ipynb``)."""
from __future__ import annotations

import math

from .. import init
from ._checks import check_input, positive_int
from .module import Module, Parameter
from .switch import active_path


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
        path = active_path()
        bias = None if self.bias is None else self.bias.data
        y, cache = path.linear_forward(x, self.weight.data, bias)
        return self.keep(path, cache, y)

    def backward(self, dout):
        path, cache = self.kept(dout)
        dx, dw, db = path.linear_backward(dout, cache)
        self.weight.accumulate_grad(dw)
        if self.bias is not None:
            self.bias.accumulate_grad(db)
        return dx
