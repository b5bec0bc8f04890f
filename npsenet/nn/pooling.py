"""Pooling: the squeeze F_sq of the SE block (global average, and global max from the
paper's ablation), and the max pool of the ImageNet stem.
See ``notebooks/03_squeeze.ipynb``.
"""
from __future__ import annotations

from ..backend import get_array_module
from ._checks import check_dout, check_input, pair
from ._channels import per_channel, sum_over_space
from .conv import conv_output_size, pad_images
from .module import Module


class GlobalAvgPool2d(Module):
    """The squeeze: z_c = 1/(H W) sum_{i,j} u_c(i, j).

    forward(u): (N, C, H, W) -> z (N, C).
    backward(dz): (N, C) -> du (N, C, H, W) with du_c(i, j) = dz_c / (H W): every
    pixel contributed equally to the mean, so every pixel gets an equal share.
    """

    def __init__(self):
        super().__init__()
        self.cache = None

    def forward(self, u):
        check_input(u, "GlobalAvgPool2d", 4, "(N, C, H, W)")
        self.cache = u
        return sum_over_space(u) / (u.shape[2] * u.shape[3])

    def backward(self, dout, add_to=None):
        """du (N, C, H, W); with ``add_to`` (an array of u's shape), du is added onto it
        in place and it is returned: the SE block sums du with its other path this way,
        without making du."""
        u = self.saved_cache()
        check_dout(dout, u.shape[:2], "GlobalAvgPool2d", u.dtype)
        self.release_cache()
        share = dout / (u.shape[2] * u.shape[3])                          # (N, C)
        if add_to is None:
            du = get_array_module(dout).empty_like(u, dtype=dout.dtype)   # u's layout (conv.py)
            du[...] = per_channel(share, du)
            return du
        add_to += per_channel(share, add_to)
        return add_to


class GlobalMaxPool2d(Module):
    """Max squeeze: z_c = max_{i,j} u_c(i, j).

    forward(u): (N, C, H, W) -> z (N, C).
    backward(dz): du_c(i, j) = dz_c where (i, j) is the (first) arg max of channel c,
    0 elsewhere; built as a one-hot mask, no scatter.
    """

    def __init__(self):
        super().__init__()
        self.cache = None

    def forward(self, u):
        check_input(u, "GlobalMaxPool2d", 4, "(N, C, H, W)")
        xp = get_array_module(u)
        n, c, h, w = u.shape
        flat = u.reshape(n, c, h * w)
        idx = flat.argmax(axis=2)                                  # (N, C)
        self.cache = (u.shape, u.dtype, idx)
        return xp.take_along_axis(flat, idx[:, :, None], axis=2)[:, :, 0]

    def backward(self, dout, add_to=None):
        """du (N, C, H, W); with ``add_to``, added onto it in place (as GlobalAvgPool2d)."""
        shape, dtype, idx = self.saved_cache()
        check_dout(dout, shape[:2], "GlobalMaxPool2d", dtype)
        self.release_cache()
        xp = get_array_module(dout)
        n, c, h, w = shape
        one_hot = xp.arange(h * w) == idx[:, :, None]              # (N, C, H*W)
        du = (one_hot * dout[:, :, None]).reshape(shape)
        if add_to is not None:
            add_to += du
            return add_to
        return du


class MaxPool2d(Module):
    """k x k max pooling with stride s and padding p (padding counts as -inf), as in
    PyTorch: y[n, c, h, w] = max_{i,j} x_pad[n, c, s*h + i, s*w + j].

    forward(x): (N, C, H, W) -> (N, C, H', W'), H' = floor((H + 2p - k)/s) + 1.
    backward(dy): each output's gradient goes to the input pixel that won its window
    (the first one in row-major window order on ties, like PyTorch). Implemented as a
    loop over the k*k window offsets with strided ``+=``; overlapping windows add.
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

    def _windows(self, x_pad, ho, wo):
        """Yield (i, j, view) for each kernel offset: the strided slice that offset reads."""
        k, s = self.kernel_size, self.stride
        for i in range(k):
            for j in range(k):
                yield i, j, (slice(None), slice(None),
                             slice(i, i + s * (ho - 1) + 1, s), slice(j, j + s * (wo - 1) + 1, s))

    def forward(self, x):
        check_input(x, f"MaxPool2d({self.extra_repr()})", 4, "(N, C, H, W)")
        n, c, h, w = x.shape
        k, s, p = self.kernel_size, self.stride, self.padding
        ho, wo = conv_output_size(h, k, s, p), conv_output_size(w, k, s, p)
        if ho < 1 or wo < 1:
            raise ValueError(f"MaxPool2d: input of spatial size {h}x{w} is smaller than the "
                             f"{k}x{k} window.")
        x_pad = pad_images(x, p, value=-float("inf"))
        y = None
        for _, _, window in self._windows(x_pad, ho, wo):
            y = x_pad[window].copy() if y is None else get_array_module(x).maximum(y, x_pad[window])
        self.cache = (x.shape, x_pad, y)
        return y

    def backward(self, dout):
        x_shape, x_pad, y = self.saved_cache()
        check_dout(dout, y.shape, "MaxPool2d", y.dtype)
        self.release_cache()
        xp = get_array_module(dout)
        n, c, h, w = x_shape
        p = self.padding
        dx_pad = xp.zeros(x_pad.shape, dtype=dout.dtype)
        inside = pad_images(xp.ones(x_shape, dtype=bool), p, value=False)  # padding never wins
        routed = xp.zeros(y.shape, dtype=bool)           # windows whose max already got dy
        for _, _, window in self._windows(x_pad, *y.shape[2:]):
            winner = (x_pad[window] == y) & inside[window] & ~routed
            dx_pad[window] += dout * winner
            routed |= winner
        return dx_pad[:, :, p:p + h, p:p + w]
