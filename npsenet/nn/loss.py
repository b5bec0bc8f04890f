"""``SoftmaxCrossEntropy``: mean softmax cross-entropy with optional label smoothing, as
PyTorch's ``F.cross_entropy(logits, labels, label_smoothing=eps)``. The pair it calls and
the derivative are in ``functional/loss.py``:

    L = -1/N sum_n sum_k q[n, k] * log p[n, k]        dL/dlogits = (p - q) / N
"""
from __future__ import annotations

import numpy as np

from ..backend import get_array_module
from ._checks import check_input, dtype_kind
from .functional.loss import log_softmax  # noqa: F401  (ns.nn.loss.log_softmax)
from .module import Module
from .switch import active_path


class SoftmaxCrossEntropy(Module):
    """Mean softmax cross-entropy over a batch.

    forward(logits, labels): logits (N, K) float, labels (N,) integers in [0, K)
    -> the mean loss as a 0-d array (``float(loss)`` for a Python number).
    backward(dloss=1.0) -> dL/dlogits (N, K), scaled by ``dloss``.

    The labels' range is checked at every call when they are NumPy arrays. Labels on the
    GPU are checked only with ``check_device_labels=True`` (the default): reading their
    minimum and maximum waits for the device, so the trainer, which checks its datasets'
    labels once on the host, turns it off.
    """

    def __init__(self, label_smoothing=0.0, check_device_labels=True):
        super().__init__()
        self.check_device_labels = bool(check_device_labels)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"SoftmaxCrossEntropy: label_smoothing must be in [0, 1], "
                             f"got {label_smoothing!r}.")
        self.label_smoothing = float(label_smoothing)
        self.cache = None

    def extra_repr(self):
        return f"label_smoothing={self.label_smoothing}" if self.label_smoothing else ""

    def forward(self, logits, labels):
        check_input(logits, "SoftmaxCrossEntropy", 2, "(N, num_classes) of logits")
        n, k = logits.shape
        if dtype_kind(labels) not in ("i", "u"):
            raise ValueError("SoftmaxCrossEntropy: expected integer class labels (an int64 "
                             f"array of shape ({n},)), got "
                             f"{getattr(labels, 'dtype', type(labels).__name__)}.")
        if labels.shape != (n,):
            raise ValueError(f"SoftmaxCrossEntropy: expected labels of shape ({n},) to match "
                             f"{n} rows of logits, got {tuple(labels.shape)}.")
        on_host = get_array_module(labels) is np
        lo, hi = (int(labels.min()), int(labels.max())) if (
            on_host or self.check_device_labels) else (0, 0)
        if lo < 0 or hi >= k:
            raise ValueError(f"SoftmaxCrossEntropy: labels must be in [0, {k - 1}] for {k} "
                             f"classes, got values from {lo} to {hi}.")
        path = active_path()
        loss, cache = path.softmax_cross_entropy_forward(logits, labels, self.label_smoothing)
        self.cache = (path, cache)
        return loss

    def backward(self, dloss=1.0):
        path, cache = self.saved_cache()
        self.release_cache()
        return path.softmax_cross_entropy_backward(dloss, cache)
