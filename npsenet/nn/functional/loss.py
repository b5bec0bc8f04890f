"""Softmax cross-entropy with optional label smoothing, as PyTorch's
``F.cross_entropy(logits, labels, label_smoothing=eps)`` with mean reduction.

With p = softmax(logits) over K classes and the smoothed target
q = (1 - eps) * onehot(label) + eps / K:

    L = -1/N sum_n sum_k q[n, k] * log p[n, k]
    dL/dlogits = (p - q) / N

(The derivative is the same for any target q that sums to one, which is why softmax
and cross-entropy are always differentiated together.)
"""
from __future__ import annotations

from ...backend import get_array_module


def log_softmax(logits):
    """log p = z - max z - log sum exp(z - max z), stable for large logits."""
    xp = get_array_module(logits)
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))


def softmax_cross_entropy_forward(logits, labels, label_smoothing=0.0):
    """The mean loss (a 0-d array) of logits (N, K) against integer labels (N,), and the
    cache (p, q) for :func:`softmax_cross_entropy_backward`."""
    xp = get_array_module(logits)
    n, k = logits.shape
    log_p = log_softmax(logits)
    target = xp.full((n, k), label_smoothing / k, dtype=logits.dtype)
    target[xp.arange(n), labels] += 1.0 - label_smoothing
    loss = -(target * log_p).sum() / n
    return loss, (xp.exp(log_p), target)


def softmax_cross_entropy_backward(dloss, cache):
    """dL/dlogits = (p - q) / N, scaled by the upstream ``dloss`` (1.0 for the loss itself)."""
    p, target = cache
    # cast back: a NumPy float64 dloss must not promote float32 gradients
    return ((p - target) * (dloss / p.shape[0])).astype(p.dtype, copy=False)
