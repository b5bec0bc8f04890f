"""Pooling layers: the squeeze F_sq of the SE block (global average, and global max from
the paper's ablation), and the max pool of the ImageNet stem. The pairs they call are
``functional/pool.py`` (``notebooks/03_squeeze.ipynb``).
"""
from __future__ import annotations

from ._checks import check_input, pair
from .functional.conv import conv_output_size
from .module import Module
from .switch import active_path


class GlobalAvgPool2d(Module):
    """The squeeze: z_c = 1/(H W) sum_{i,j} u_c(i, j).

    forward(u): (N, C, H, W) -> z (N, C).
    backward(dz): (N, C) -> du (N, C, H, W) with du_c(i, j) = dz_c / (H W): every
    pixel contributed equally to the mean, so every pixel gets an equal share. (On the
    fast path du is a read-only broadcast view; gradients are never written into.)
    """

    def __init__(self):
        super().__init__()
        self.cache = None

    def forward(self, u):
        check_input(u, "GlobalAvgPool2d", 4, "(N, C, H, W)")
        path = active_path()
        z, cache = path.global_avg_pool_forward(u)
        return self.keep(path, cache, z)

    def backward(self, dout):
        path, cache = self.kept(dout)
        return path.global_avg_pool_backward(dout, cache)


class GlobalMaxPool2d(Module):
    """Max squeeze: z_c = max_{i,j} u_c(i, j).

    forward(u): (N, C, H, W) -> z (N, C).
    backward(dz): du_c(i, j) = dz_c where (i, j) is the (first) arg max of channel c,
    0 elsewhere.
    """

    def __init__(self):
        super().__init__()
        self.cache = None

    def forward(self, u):
        check_input(u, "GlobalMaxPool2d", 4, "(N, C, H, W)")
        path = active_path()
        z, cache = path.global_max_pool_forward(u)
        return self.keep(path, cache, z)

    def backward(self, dout):
        path, cache = self.kept(dout)
        return path.global_max_pool_backward(dout, cache)


class MaxPool2d(Module):
    """k x k max pooling with stride s and padding p (padding counts as -inf), as in
    PyTorch: y[n, c, h, w] = max_{i,j} x_pad[n, c, s*h + i, s*w + j].

    forward(x): (N, C, H, W) -> (N, C, H', W'), H' = floor((H + 2p - k)/s) + 1.
    backward(dy): each output's gradient goes to the input pixel that won its window
    (the first one in row-major window order on ties, like PyTorch); overlapping
    windows add.
    """

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size", "MaxPool2d", 1)
        self.stride = pair(stride if stride is not None else self.kernel_size,
                           "stride", "MaxPool2d", 1)
        self.padding = pair(padding, "padding", "MaxPool2d", 0)
        if self.padding > self.kernel_size // 2:
            raise ValueError(f"MaxPool2d: padding ({self.padding}) must be at most half the "
                             f"kernel size ({self.kernel_size}), as in PyTorch.")
        self.cache = None

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    def forward(self, x):
        check_input(x, f"MaxPool2d({self.extra_repr()})", 4, "(N, C, H, W)")
        h, w = x.shape[2:]
        k, s, p = self.kernel_size, self.stride, self.padding
        if conv_output_size(h, k, s, p) < 1 or conv_output_size(w, k, s, p) < 1:
            raise ValueError(f"MaxPool2d: input of spatial size {h}x{w} is smaller than the "
                             f"{k}x{k} window.")
        path = active_path()
        y, cache = path.max_pool2d_forward(x, k, s, p)
        return self.keep(path, cache, y)

    def backward(self, dout):
        path, cache = self.kept(dout)
        return path.max_pool2d_backward(dout, cache)
