"""Batch normalisation over (N, H, W) for each channel, with PyTorch's exact semantics.
Derived step by step in ``notebooks/02_batchnorm_relu.ipynb``.

Training mode, per channel c with m = N*H*W values:

    mu_c     = 1/m sum x                   var_c = 1/m sum (x - mu_c)^2   (biased)
    xhat     = (x - mu_c) / sqrt(var_c + eps)
    y        = gamma_c * xhat + beta_c
    running_mean <- (1 - momentum) running_mean + momentum mu_c
    running_var  <- (1 - momentum) running_var  + momentum var_c * m/(m-1)   (unbiased)
    num_batches_tracked += 1

Backward (the batch statistics depend on every x, hence the two correction terms):

    dL/dxhat = dy * gamma
    dL/dx    = gamma / sqrt(var + eps) * (dy - mean(dy) - xhat * mean(dy * xhat))
    dL/dgamma = sum dy * xhat,   dL/dbeta = sum dy          (means and sums over N, H, W)

Eval mode uses the running statistics, a fixed affine map: dL/dx = dy * gamma / sqrt(rv + eps).

The code caches the centred input x - mu rather than xhat (xhat = (x - mu) * inv_std, one
multiplication away) and folds the per-channel factors together before touching the
activations: y = (x - mu) * (gamma * inv_std) + beta. Each per-channel operation is a
full pass over the activations, and these passes are most of the layer's time.
"""
from __future__ import annotations

import numpy as np

from ..backend import get_array_module
from ._checks import check_dout, check_input, positive_int
from ._channels import per_channel, sum_of_products_over_batch_and_space, sum_over_batch_and_space
from ._workspace import workspace
from .module import Module, Parameter, is_grad_enabled


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
        xp = get_array_module(x)
        gamma, beta = self.weight.data, self.bias.data
        if self.training:
            m = x.shape[0] * x.shape[2] * x.shape[3]
            if m < 2:
                raise ValueError(f"BatchNorm2d: training needs more than one value per channel "
                                 f"to compute a variance, got input shape {tuple(x.shape)}. "
                                 "Use a batch of at least 2, or call .eval().")
            mean = sum_over_batch_and_space(x) / m
            # x - mu is kept for backward, in an array the workspace lends and backward
            # gives back: memory reused from step to step costs less than new memory
            centred = (workspace.lend_like(x, "batchnorm: x - mu") if is_grad_enabled()
                       else xp.empty_like(x))
            xp.subtract(x, per_channel(mean, x), out=centred)               # x - mu
            var = sum_of_products_over_batch_and_space(centred, centred) / m
            inv_std = 1.0 / xp.sqrt(var + self.eps)
            self._update_running_stats(mean, var, m)
            y = centred * per_channel(gamma * inv_std, x)                  # gamma * xhat
            y += per_channel(beta, x)          # in place: one pass less over the activations
            self.cache = (centred, inv_std, None)
            return y
        # eval: a fixed affine map per channel, y = x * a + b with a = gamma / sqrt(rv + eps)
        # and b = beta - rm * a
        inv_std = 1.0 / xp.sqrt(self.running_var + self.eps)
        a = gamma * inv_std
        y = x * per_channel(a, x)
        y += per_channel(beta - self.running_mean * a, x)
        self.cache = (x, inv_std, self.running_mean)   # the statistics this forward used
        return y

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
        cached, inv_std, running_mean = self.saved_cache()
        check_dout(dout, cached.shape, "BatchNorm2d", cached.dtype)
        self.release_cache()
        gamma = self.weight.data
        sum_dy = sum_over_batch_and_space(dout)
        # train mode cached x - mu; eval mode cached x and the running mean rm it used.
        # sum dy * xhat = inv_std * sum dy * (x - mu)  (with rm for mu in eval mode)
        training = running_mean is None
        sum_dy_centred = sum_of_products_over_batch_and_space(dout, cached)
        if not training:
            sum_dy_centred = sum_dy_centred - running_mean * sum_dy
        sum_dy_xhat = sum_dy_centred * inv_std
        self.weight.accumulate_grad(sum_dy_xhat)
        self.bias.accumulate_grad(sum_dy)
        scale = gamma * inv_std
        if not training:
            return dout * per_channel(scale, dout)
        m = cached.shape[0] * cached.shape[2] * cached.shape[3]
        # dx = scale * (dy - mean(dy) - xhat * mean(dy * xhat)), with xhat = (x - mu) * inv_std
        dx = dout - per_channel(sum_dy / m, dout)
        dx *= per_channel(scale, dout)
        # the last term in a reused scratch array: a fresh one costs more than the product
        term = workspace.like(cached, slot="batchnorm: term")
        get_array_module(dx).multiply(
            cached, per_channel(scale * inv_std * sum_dy_xhat / m, dout), out=term)
        dx -= term
        workspace.give_back_like(cached, "batchnorm: x - mu")   # for the next forward
        return dx
