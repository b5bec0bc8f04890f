"""The scale of the SE block (Hu et al., CVPR 2018, Sec. 3), in the paper's notation.
Derived in ``notebooks/05_scale_and_se_block.ipynb``; the squeeze is in ``pool.py``, the
excitation's layers in ``linear.py`` and ``activation.py``.

    scale   x̃_c = F_scale(u_c, s_c) = s_c · u_c          u (N, C, H, W), s (N, C)

It has two inputs, so two gradients:

    du_c = s_c · dx̃_c          ds_c = sum_{i,j} dx̃_c(i, j) u_c(i, j)

In the SE block, U reaches the output along two paths, through the scale directly and
through the gate s computed from U, so du is the sum of the scale's du and the squeeze's
(see ``npsenet/nn/se.py``).
"""
from __future__ import annotations


def channel_scale_forward(u, s):
    """x̃ = u * s[:, :, None, None] (N, C, H, W); the cache is (u, s)."""
    return u * s[:, :, None, None], (u, s)


def channel_scale_backward(dy, cache):
    """dy (N, C, H, W) -> (du (N, C, H, W), ds (N, C))."""
    u, s = cache
    return dy * s[:, :, None, None], (dy * u).sum(axis=(2, 3))
