"""Synchronised batch normalisation: batch norm over the global batch that N processes share.

Each process ("rank") r holds a shard x_r of the global batch; the statistics are those of
the union of the shards, so N ranks compute what one process with the whole batch
computes. Per channel, with m_r = N_r*H*W values on rank r and M = sum_r m_r:

Forward, one all-reduce of three numbers per channel (the local sums, summed over ranks):

    S1 = sum_r sum x_r          S2 = sum_r sum x_r^2         M = sum_r m_r
    mu = S1 / M                 var = S2 / M - mu^2          (biased, as batch norm)
    xhat_r = (x_r - mu) / sqrt(var + eps)        y_r = gamma * xhat_r + beta

The two sums are accumulated in float64, so that S2/M - mu^2 does not lose the variance to
cancellation in float32.

Backward. Every xhat depends on every rank's x through mu and var, so the two correction
terms of batch norm's backward (``functional/norm.py``) become sums over the global batch:

    T1 = sum_r sum dy_r         T2 = sum_r sum dy_r * xhat_r      (one all-reduce)
    dL/dx_r = gamma / sqrt(var + eps) * (dy_r - T1 / M - xhat_r * T2 / M)

while dL/dgamma and dL/dbeta stay the local sums ``sum dy_r * xhat_r`` and ``sum dy_r``:
they are parameter gradients like any other, all-reduced (summed, then averaged) with the
rest by the data-parallel step. ``notebooks/12_data_parallel.ipynb`` derives it.

``comm`` is any object with ``allreduce_sum(array) -> array`` (summed over the ranks, in
place or not): :class:`npsenet.distributed.Communicator`, or the in-process
:class:`npsenet.distributed.ThreadGroup` that simulates N ranks. With one rank the pair
computes batch norm itself.
"""
from __future__ import annotations

import numpy as np

from ...backend import get_array_module
from .norm import AXES, _c


def sync_batchnorm_forward(x, gamma, beta, eps, comm):
    """Training mode over the global batch.

    Args:
        x: this rank's shard (N_r, C, H, W).
        gamma, beta: (C,), the same on every rank.
        eps: added to the variance.
        comm: the ranks' communicator (``allreduce_sum``).
    Returns:
        y (N_r, C, H, W), the global mean (C,), the global biased variance (C,), the
        global count M of values per channel (an int; a 0-d array on the GPU), and the
        cache (xhat, gamma, inv_std, M, comm) for :func:`sync_batchnorm_backward`.
    """
    xp = get_array_module(x)
    channels = x.shape[1]
    local = xp.empty(2 * channels + 1, dtype=xp.float64)
    local[:channels] = x.sum(axis=AXES, dtype=xp.float64)
    local[channels:2 * channels] = (x * x).sum(axis=AXES, dtype=xp.float64)
    local[2 * channels] = x.shape[0] * x.shape[2] * x.shape[3]
    total = comm.allreduce_sum(local)
    count = total[2 * channels]
    if isinstance(total, np.ndarray):
        count = int(count)      # on a GPU it stays there: reading it would wait for the GPU
    mu64 = total[:channels] / count
    var64 = xp.maximum(total[channels:2 * channels] / count - mu64 * mu64, 0.0)
    mu, var = mu64.astype(x.dtype), var64.astype(x.dtype)
    inv_std = (1.0 / xp.sqrt(var64 + eps)).astype(x.dtype)
    xhat = (x - _c(mu)) * _c(inv_std)
    y = _c(gamma) * xhat + _c(beta)
    return y, mu, var, count, (xhat, gamma, inv_std, count, comm)


def sync_batchnorm_backward(dy, cache):
    """dy (N_r, C, H, W) -> (dx (N_r, C, H, W), dgamma (C,), dbeta (C,)); dgamma and dbeta
    are this rank's shares (local sums), dx uses the sums over every rank."""
    xhat, gamma, inv_std, count, comm = cache
    xp = get_array_module(dy)
    channels = dy.shape[1]
    dbeta = dy.sum(axis=AXES)
    dgamma = (dy * xhat).sum(axis=AXES)
    local = xp.empty(2 * channels, dtype=dy.dtype)
    local[:channels], local[channels:] = dbeta, dgamma
    total = comm.allreduce_sum(local)
    sum_dy, sum_dy_xhat = total[:channels], total[channels:]
    dx = _c(gamma * inv_std) * (dy - _c(sum_dy / count) - xhat * _c(sum_dy_xhat / count))
    return dx, dgamma, dbeta
