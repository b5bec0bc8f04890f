"""Batch normalisation over (N, H, W) for each channel, with PyTorch's semantics.
Derived step by step in ``notebooks/02_batchnorm_relu.ipynb``.

Training mode, per channel c with m = N*H*W values:

    mu_c  = 1/m sum x              var_c = 1/m sum (x - mu_c)^2     (biased)
    xhat  = (x - mu_c) / sqrt(var_c + eps)
    y     = gamma_c * xhat + beta_c

Backward (the batch statistics depend on every x, hence the two correction terms):

    dL/dgamma = sum dy * xhat      dL/dbeta = sum dy                (sums over N, H, W)
    dL/dx     = gamma / sqrt(var + eps) * (dy - mean(dy) - xhat * mean(dy * xhat))

Eval mode uses the running statistics, a fixed affine map per channel:
dL/dx = dy * gamma / sqrt(running_var + eps). The running statistics themselves are the
layer's state, updated by ``BatchNorm2d`` (``npsenet/nn/norm.py``).
"""
from __future__ import annotations

from ...backend import get_array_module

AXES = (0, 2, 3)        # the batch and the two spatial axes: statistics per channel


def _c(v):
    """A per-channel vector (C,) shaped (1, C, 1, 1), to broadcast over (N, C, H, W)."""
    return v.reshape(1, -1, 1, 1)


def batchnorm_forward(x, gamma, beta, eps):
    """Training mode: normalise with the batch's statistics.

    Args:
        x: (N, C, H, W).
        gamma, beta: (C,).
        eps: added to the variance.
    Returns:
        y (N, C, H, W), the batch mean mu (C,), the biased batch variance (C,), and the
        cache (xhat, gamma, inv_std, None) for :func:`batchnorm_backward`.
    """
    xp = get_array_module(x)
    mu = x.mean(axis=AXES)
    var = ((x - _c(mu)) ** 2).mean(axis=AXES)
    inv_std = 1.0 / xp.sqrt(var + eps)
    xhat = (x - _c(mu)) * _c(inv_std)
    y = _c(gamma) * xhat + _c(beta)
    return y, mu, var, (xhat, gamma, inv_std, None)


def batchnorm_eval_forward(x, gamma, beta, running_mean, running_var, eps):
    """Eval mode: y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta.

    Returns y (N, C, H, W) and the cache (xhat, gamma, inv_std, "eval")."""
    inv_std = 1.0 / get_array_module(x).sqrt(running_var + eps)
    xhat = (x - _c(running_mean)) * _c(inv_std)
    return _c(gamma) * xhat + _c(beta), (xhat, gamma, inv_std, "eval")


def batchnorm_backward(dy, cache):
    """dy (N, C, H, W) -> (dx (N, C, H, W), dgamma (C,), dbeta (C,)), for either mode."""
    xhat, gamma, inv_std, mode = cache
    dbeta = dy.sum(axis=AXES)
    dgamma = (dy * xhat).sum(axis=AXES)
    if mode == "eval":                      # the statistics are constants here
        return dy * _c(gamma * inv_std), dgamma, dbeta
    m = dy.shape[0] * dy.shape[2] * dy.shape[3]
    dx = _c(gamma * inv_std) * (dy - _c(dbeta / m) - xhat * _c(dgamma / m))
    return dx, dgamma, dbeta
