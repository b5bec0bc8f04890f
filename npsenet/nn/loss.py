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

from ..backend import get_array_module
from ._checks import check_input, dtype_kind
from .module import Module


def log_softmax(logits):
    """log p = z - max z - log sum exp(z - max z), stable for large logits."""
    xp = get_array_module(logits)
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))


class SoftmaxCrossEntropy(Module):
    """Mean softmax cross-entropy over a batch.

    forward(logits, labels): logits (N, K) float, labels (N,) integers in [0, K)
    -> the mean loss as a 0-d array (``float(loss)`` for a Python number).
    backward(dloss=1.0) -> dL/dlogits (N, K), scaled by ``dloss``.
    """

    def __init__(self, label_smoothing=0.0):
        super().__init__()
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"SoftmaxCrossEntropy: label_smoothing must be in [0, 1], "
                             f"got {label_smoothing!r}.")
        self.label_smoothing = float(label_smoothing)
        self.cache = None

    def extra_repr(self):
        return f"label_smoothing={self.label_smoothing}" if self.label_smoothing else ""

    def forward(self, logits, labels):
        check_input(logits, "SoftmaxCrossEntropy", 2, "(N, num_classes) of logits")
        xp = get_array_module(logits)
        n, k = logits.shape
        if dtype_kind(labels) not in ("i", "u"):
            raise ValueError("SoftmaxCrossEntropy: expected integer class labels (an int64 "
                             f"array of shape ({n},)), got "
                             f"{getattr(labels, 'dtype', type(labels).__name__)}.")
        if labels.shape != (n,):
            raise ValueError(f"SoftmaxCrossEntropy: expected labels of shape ({n},) to match "
                             f"{n} rows of logits, got {tuple(labels.shape)}.")
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= k:
            raise ValueError(f"SoftmaxCrossEntropy: labels must be in [0, {k - 1}] for {k} "
                             f"classes, got values from {lo} to {hi}.")
        log_p = log_softmax(logits)
        eps = self.label_smoothing
        target = xp.full((n, k), eps / k, dtype=logits.dtype)
        target[xp.arange(n), labels] += 1.0 - eps
        loss = -(target * log_p).sum() / n
        self.cache = (xp.exp(log_p), target)
        return loss

    def backward(self, dloss=1.0):
        p, target = self.saved_cache()
        self.release_cache()
        # cast back: a NumPy float64 dloss must not promote float32 gradients
        return ((p - target) * (dloss / p.shape[0])).astype(p.dtype, copy=False)
