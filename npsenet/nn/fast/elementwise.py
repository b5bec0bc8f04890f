"""Fast versions of the plain path's element-wise and per-channel pairs: ReLU, batch norm,
the global average squeeze and the channel scale. Same arguments, same results (up to the
order of additions); what differs is how they touch memory:

* per-channel factors are lined up with channels-last memory (``layout.per_channel``),
  per-channel sums read it as a matrix (``layout.sum_over_batch_and_space``);
* what a forward keeps for its backward (ReLU's mask, batch norm's x - mu) lives in memory
  borrowed from the workspace and given back by the backward, so the next step reuses it;
* batch norm folds its per-channel factors before touching the activations, and writes
  in place where the plain path makes a new array.
"""
from __future__ import annotations

import numpy as np

from ...backend import get_array_module
from ..module import is_grad_enabled
from .layout import (per_channel, sum_of_products_over_batch_and_space,
                     sum_of_products_over_space, sum_over_batch_and_space, sum_over_space)
from .workspace import Role, workspace


# -- ReLU -----------------------------------------------------------------------------------
def relu_forward(x, inplace=False):
    """As :func:`npsenet.nn.functional.relu_forward`; the cache is the mask [x > 0]."""
    xp = get_array_module(x)
    # NumPy's maximum has a vector loop for two arrays but not for an array and a
    # scalar: against zeros lined up with a whole image it is ~2x faster than max(x, 0)
    zero = per_channel(xp.zeros(x.shape[1], x.dtype), x) if x.ndim == 4 and x.size else 0
    y = xp.maximum(x, zero, out=x if inplace else None)
    if not is_grad_enabled():
        return y, None
    # [x > 0] is [y > 0]; a bool mask is a quarter of y's memory, and keeping it rather
    # than y lets y go as soon as the next layers are done with it
    mask = workspace.borrow_like(Role.KEPT_RELU_MASK, y, dtype=bool)
    return y, xp.greater(y, 0, out=mask)


def relu_backward(dy, mask):
    """dx = dy * [x > 0]; gives the mask back to the workspace."""
    dx = dy * mask
    workspace.give_back_like(Role.KEPT_RELU_MASK, mask)
    return dx


# -- batch norm ----------------------------------------------------------------------------
def batchnorm_forward(x, gamma, beta, eps):
    """As :func:`npsenet.nn.functional.batchnorm_forward`: (y, mean, var, cache), with
    y = (x - mu) * (gamma * inv_std) + beta and x - mu kept in borrowed memory."""
    xp = get_array_module(x)
    m = x.shape[0] * x.shape[2] * x.shape[3]
    mean = sum_over_batch_and_space(x) / m
    centred = (workspace.borrow_like(Role.KEPT_BATCHNORM_CENTRED, x) if is_grad_enabled()
               else xp.empty_like(x))
    xp.subtract(x, per_channel(mean, x), out=centred)                  # x - mu
    var = sum_of_products_over_batch_and_space(centred, centred) / m
    inv_std = 1.0 / xp.sqrt(var + eps)
    y = centred * per_channel(gamma * inv_std, x)                      # gamma * xhat
    y += per_channel(beta, x)             # in place: one pass less over the activations
    return y, mean, var, (centred, gamma, inv_std, None)


def batchnorm_eval_forward(x, gamma, beta, running_mean, running_var, eps):
    """As :func:`npsenet.nn.functional.batchnorm_eval_forward`: y = x * a + b with
    a = gamma / sqrt(rv + eps) and b = beta - rm * a."""
    xp = get_array_module(x)
    inv_std = 1.0 / xp.sqrt(running_var + eps)
    a = gamma * inv_std
    y = x * per_channel(a, x)
    y += per_channel(beta - running_mean * a, x)
    return y, (x, gamma, inv_std, running_mean)      # the statistics this forward used


def batchnorm_backward(dy, cache):
    """As :func:`npsenet.nn.functional.batchnorm_backward`: (dx, dgamma, dbeta)."""
    kept, gamma, inv_std, running_mean = cache
    training = running_mean is None          # train mode kept x - mu; eval mode x and rm
    sum_dy = sum_over_batch_and_space(dy)
    # sum dy * xhat = inv_std * sum dy * (x - mu)  (with rm for mu in eval mode)
    sum_dy_centred = sum_of_products_over_batch_and_space(dy, kept)
    if not training:
        sum_dy_centred = sum_dy_centred - running_mean * sum_dy
    dgamma = sum_dy_centred * inv_std
    scale = gamma * inv_std
    if not training:
        return dy * per_channel(scale, dy), dgamma, sum_dy
    m = kept.shape[0] * kept.shape[2] * kept.shape[3]
    # dx = scale * (dy - mean(dy) - xhat * mean(dy * xhat)), with xhat = (x - mu) * inv_std
    dx = dy - per_channel(sum_dy / m, dy)
    dx *= per_channel(scale, dy)
    term = workspace.scratch_like(Role.BATCHNORM_TERM, kept)
    get_array_module(dx).multiply(kept, per_channel(scale * inv_std * dgamma / m, dy), out=term)
    dx -= term
    workspace.give_back_like(Role.KEPT_BATCHNORM_CENTRED, kept)   # for the next forward
    return dx, dgamma, sum_dy


# -- batch norm over the global batch of several processes (SyncBatchNorm) ------------------
def sync_batchnorm_forward(x, gamma, beta, eps, comm):
    """As :func:`npsenet.nn.functional.sync_batchnorm_forward`: (y, mean, var, count, cache),
    with x - mu kept in borrowed memory. ``comm`` also needs ``rank`` and ``size``.

    The plain pair all-reduces the float64 sums of x and x^2, whose difference
    S2/M - mu^2 loses the variance of a channel whose mean is large against its spread.
    Here rank r centres its shard on its own float32 mean K_r and sums the deviations,
    S1_r = sum (x - K_r) and S2_r = sum (x - K_r)^2 (two passes, as batch norm). One
    all-reduce gathers every rank's (m_r, K_r, S1_r, S2_r), each into its own row of a
    zeroed float64 table, and every rank combines the rows in rank order (Chan et al.'s
    pairwise update), so the ranks agree bit for bit:

        mean_r = K_r + S1_r / m_r            M2_r = S2_r - S1_r^2 / m_r
        mu = sum_r m_r mean_r / M            var = sum_r (M2_r + m_r (mean_r - mu)^2) / M
    """
    xp = get_array_module(x)
    c = x.shape[1]
    m = x.shape[0] * x.shape[2] * x.shape[3]
    shift = sum_over_batch_and_space(x) / max(m, 1)                    # K_r
    centred = (workspace.borrow_like(Role.KEPT_BATCHNORM_CENTRED, x) if is_grad_enabled()
               else xp.empty_like(x))
    xp.subtract(x, per_channel(shift, x), out=centred)                 # x - K_r
    rank, size = comm.rank, comm.size     # each rank writes its own row of the table
    table = xp.zeros((size, 3 * c + 1), dtype=xp.float64)
    table[rank, 0] = m
    table[rank, 1:c + 1] = shift
    table[rank, c + 1:2 * c + 1] = sum_over_batch_and_space(centred)
    table[rank, 2 * c + 1:] = sum_of_products_over_batch_and_space(centred, centred)
    table = comm.allreduce_sum(table)                                  # every rank's row
    counts, shifts = table[:, :1], table[:, 1:c + 1]
    s1, s2 = table[:, c + 1:2 * c + 1], table[:, 2 * c + 1:]
    count = table[:, 0].sum()
    if isinstance(table, np.ndarray):
        count = int(count)      # on a GPU it stays there: reading it would wait for the GPU
    per_rank = xp.maximum(counts, 1)          # a rank without images has a row of zeros
    means = shifts + s1 / per_rank                                     # (size, C)
    mu64 = (counts * means).sum(axis=0) / count
    m2 = s2 - s1 * s1 / per_rank + counts * (means - mu64) ** 2
    var64 = xp.maximum(m2.sum(axis=0) / count, 0.0)
    inv_std = (1.0 / xp.sqrt(var64 + eps)).astype(x.dtype)
    centred -= per_channel((mu64 - shifts[rank]).astype(x.dtype), x)  # now x - mu
    y = centred * per_channel(gamma * inv_std, x)                      # gamma * xhat
    y += per_channel(beta, x)
    return (y, mu64.astype(x.dtype), var64.astype(x.dtype), count,
            (centred, gamma, inv_std, count, comm))


def sync_batchnorm_backward(dy, cache):
    """As :func:`npsenet.nn.functional.sync_batchnorm_backward`: (dx, dgamma, dbeta), dgamma
    and dbeta this rank's shares; one all-reduce of the two per-channel sums."""
    centred, gamma, inv_std, count, comm = cache
    xp = get_array_module(dy)
    c = dy.shape[1]
    sum_dy = sum_over_batch_and_space(dy)
    sum_dy_centred = sum_of_products_over_batch_and_space(dy, centred)
    local = xp.empty(2 * c, dtype=dy.dtype)
    local[:c], local[c:] = sum_dy, sum_dy_centred
    total = comm.allreduce_sum(local)
    scale = gamma * inv_std
    mean_dy = (total[:c] / count).astype(dy.dtype)
    mean_dy_xhat = (total[c:] * inv_std / count).astype(dy.dtype)    # (1/M) sum dy * xhat
    dx = dy - per_channel(mean_dy, dy)
    dx *= per_channel(scale, dy)
    term = workspace.scratch_like(Role.BATCHNORM_TERM, centred)
    xp.multiply(centred, per_channel(scale * inv_std * mean_dy_xhat, dy), out=term)
    dx -= term
    workspace.give_back_like(Role.KEPT_BATCHNORM_CENTRED, centred)
    return dx, sum_dy_centred * inv_std, sum_dy


# -- the squeeze and the scale of the SE block ---------------------------------------------------
def global_avg_pool_forward(u):
    """As :func:`npsenet.nn.functional.global_avg_pool_forward`."""
    return sum_over_space(u) / (u.shape[2] * u.shape[3]), u


def global_avg_pool_backward(dz, u):
    """du, every pixel's equal share dz / (H W), as a read-only broadcast view lined up
    with u's memory: adding it onto another gradient (the SE block's other path) is one
    pass, and no array of u's size is made for it."""
    share = dz / (u.shape[2] * u.shape[3])                               # (N, C)
    return get_array_module(dz).broadcast_to(per_channel(share, u), u.shape)


def _scaled(a, s):
    """a * s[:, :, None, None] for a (N, C, H, W) and s (N, C), in a's memory layout
    (``empty_like`` keeps a channels-last layout, which the plain product might not)."""
    xp = get_array_module(a)
    return xp.multiply(a, per_channel(s, a), out=xp.empty_like(a))


def channel_scale_forward(u, s):
    """As :func:`npsenet.nn.functional.channel_scale_forward`, in u's memory layout."""
    return _scaled(u, s), (u, s)


def channel_scale_backward(dy, cache):
    """As :func:`npsenet.nn.functional.channel_scale_backward`: (du, ds)."""
    u, s = cache
    return _scaled(dy, s), sum_of_products_over_space(dy, u)
