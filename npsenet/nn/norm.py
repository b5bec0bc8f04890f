"""``BatchNorm2d``: batch normalisation with PyTorch's exact semantics. The layer holds
gamma, beta and the running statistics; the pairs it calls are ``functional/norm.py``
(``notebooks/02_batchnorm_relu.ipynb``), which gives the equations of both passes.

In training mode it also updates the running statistics, with the unbiased variance:

    running_mean <- (1 - momentum) running_mean + momentum mu
    running_var  <- (1 - momentum) running_var  + momentum var * m/(m - 1)
    num_batches_tracked += 1
"""
from __future__ import annotations

import numpy as np

from ._checks import check_input, positive_int
from .module import Module, Parameter
from .switch import active_path

_seen_inputs = None   # a list while record_batchnorm_inputs() is active


class record_batchnorm_inputs:
    """``with record_batchnorm_inputs() as sizes: model(x)`` lists the spatial size
    ``(H, W)`` of every BatchNorm2d input of the block's forward passes (a model's entry
    check uses it to know the smallest map each of its BatchNorms sees)."""

    def __enter__(self):
        global _seen_inputs
        self._previous, _seen_inputs = _seen_inputs, []
        return _seen_inputs

    def __exit__(self, *exc):
        global _seen_inputs
        _seen_inputs = self._previous
        return False


class BatchNorm2d(Module):
    """Batch norm for (N, C, H, W) inputs.

    Args:
        num_features: C.
        eps: added to the variance.
        momentum: weight of the new batch in the running statistics; ``None`` for a
            cumulative average (as in PyTorch).

    Parameters: ``weight`` (gamma, ones) and ``bias`` (beta, zeros), shape (C,).

    Buffers: ``running_mean`` (zeros), ``running_var`` (ones), ``num_batches_tracked``
    (int64 scalar).
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.num_features = positive_int(num_features, "num_features", "BatchNorm2d")
        if not eps > 0:
            raise ValueError(f"BatchNorm2d: eps must be > 0, got {eps!r}.")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"BatchNorm2d: momentum must be in [0, 1] or None, got {momentum!r}.")
        self.eps = float(eps)
        self.momentum = momentum
        self.weight = Parameter(np.ones(self.num_features, dtype=np.float32))
        self.bias = Parameter(np.zeros(self.num_features, dtype=np.float32))
        self.register_buffer("running_mean", np.zeros(self.num_features, dtype=np.float32))
        self.register_buffer("running_var", np.ones(self.num_features, dtype=np.float32))
        self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        self.cache = None

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"

    def forward(self, x):
        check_input(x, f"BatchNorm2d({self.num_features})", 4, "(N, C, H, W)",
                    self.num_features, dtype=self.weight.dtype)
        if _seen_inputs is not None:
            _seen_inputs.append(tuple(x.shape[2:]))
        path = active_path()
        gamma, beta = self.weight.data, self.bias.data
        if self.training:
            m = x.shape[0] * x.shape[2] * x.shape[3]
            if m < 2:
                raise ValueError(f"BatchNorm2d: training needs more than one value per channel "
                                 f"to compute a variance, got input shape {tuple(x.shape)}. "
                                 "Use a batch of at least 2, or call .eval().")
            y, mean, var, cache = path.batchnorm_forward(x, gamma, beta, self.eps)
            self._update_running_stats(mean, var, m)
        else:
            y, cache = path.batchnorm_eval_forward(x, gamma, beta, self.running_mean,
                                                   self.running_var, self.eps)
        return self.keep(path, cache, y)

    def _update_running_stats(self, mean, var, m):
        # new arrays rather than in-place updates, so a state_dict taken earlier keeps its values
        self.num_batches_tracked = self.num_batches_tracked + 1
        if self.momentum is None:  # cumulative moving average
            factor = 1.0 / float(self.num_batches_tracked)
        else:
            factor = self.momentum
        unbiased = var * (m / (m - 1))
        self.running_mean = ((1 - factor) * self.running_mean + factor * mean).astype(
            self.running_mean.dtype, copy=False)
        self.running_var = ((1 - factor) * self.running_var + factor * unbiased).astype(
            self.running_var.dtype, copy=False)

    def backward(self, dout):
        path, cache = self.kept(dout)
        dx, dgamma, dbeta = path.batchnorm_backward(dout, cache)
        self.weight.accumulate_grad(dgamma)
        self.bias.accumulate_grad(dbeta)
        return dx
