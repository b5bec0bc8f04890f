"""The fully connected layer: the W1 and W2 of the excitation (``notebooks/04_excitation.ipynb``).

    y = x W^T + b                 x: (N, in), W: (out, in), b: (out,)

Backward, from y[n, o] = sum_i x[n, i] W[o, i] + b[o]:

    dL/dx = dy W      dL/dW = dy^T x      dL/db = sum_n dy[n]
"""
from __future__ import annotations


def linear_forward(x, weight, bias):
    """y = x W^T + b.

    Args:
        x: (N, in).
        weight: W (out, in).
        bias: b (out,) or None.
    Returns:
        y (N, out), and the cache (x, weight, has_bias) for :func:`linear_backward`.
    """
    y = x @ weight.T
    if bias is not None:
        y += bias
    return y, (x, weight, bias is not None)


def linear_backward(dy, cache):
    """dy (N, out) -> (dx (N, in), dW (out, in), db (out,) or None without bias)."""
    x, weight, has_bias = cache
    return dy @ weight, dy.T @ x, (dy.sum(axis=0) if has_bias else None)
