"""Inverted dropout (Srivastava et al., JMLR 2014), as ``torch.nn.Dropout``: in training
each element is kept with probability 1 - p and the kept ones are scaled by 1/(1 - p), so
the expected output is the input and evaluation needs no rescaling.

    y  = x ⊙ m / (1 - p)        m ~ Bernoulli(1 - p), elementwise
    dx = dy ⊙ m / (1 - p)

The mask is drawn by the layer (``npsenet.nn.Dropout``) and passed in, so these
functions are deterministic and the CPU and GPU see the same mask.
"""
from __future__ import annotations


def dropout_forward(x, mask, p):
    """x (any shape), mask (x's shape, 1 where kept, 0 where dropped, x's dtype), p in
    [0, 1) -> y = x * mask / (1 - p); the cache is the scaled mask m / (1 - p)."""
    scaled_mask = mask / (1.0 - p)
    return x * scaled_mask, scaled_mask


def dropout_backward(dy, scaled_mask):
    """dy (x's shape) -> dx = dy * m / (1 - p): a dropped element had no effect on the
    loss, a kept one was scaled by 1/(1 - p)."""
    return dy * scaled_mask
