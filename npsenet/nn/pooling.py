"""Pooling layers: the squeeze F_sq of the SE block (global average, and global max from
the paper's ablation), the max pool of the ImageNet stem, and the k x k average pool of
the Inception, ShuffleNet and transition stages. The pairs they call are
``functional/pool.py`` (``notebooks/03_squeeze.ipynb``).
"""
from __future__ import annotations

from ._checks import check_input, pair, positive_int
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


def _window_arguments(layer, kernel_size, stride, padding):
    """(k, s, p) checked as PyTorch's pools check them: k, s >= 1, 0 <= p <= k // 2."""
    k = pair(kernel_size, "kernel_size", layer, 1)
    s = pair(stride if stride is not None else k, "stride", layer, 1)
    p = pair(padding, "padding", layer, 0)
    if p > k // 2:
        raise ValueError(f"{layer}: padding ({p}) must be at most half the kernel size ({k}), "
                         "as in PyTorch.")
    return k, s, p


def _check_window_input(x, layer, k, s, p):
    """A 4-D float input whose padded spatial size holds at least one k x k window."""
    check_input(x, layer, 4, "(N, C, H, W)")
    h, w = x.shape[2:]
    if conv_output_size(h, k, s, p) < 1 or conv_output_size(w, k, s, p) < 1:
        raise ValueError(f"{layer}: input of spatial size {h}x{w} (padding {p}) is smaller "
                         f"than the {k}x{k} window; use a larger input or a smaller kernel.")


class MaxPool2d(Module):
    """k x k max pooling with stride s and padding p (padding counts as -inf), as in
    PyTorch: y[n, c, h, w] = max_{i,j} x_pad[n, c, s*h + i, s*w + j].

    forward(x): (N, C, H, W) -> (N, C, H', W'), H' = floor((H + 2p - k)/s) + 1, or with
    ``ceil_mode=True`` (the Caffe models': BN-Inception, SENet-154) ceil((H + 2p - k)/s) + 1,
    less one if the last window would start in the right-hand padding (PyTorch's rule).
    backward(dy): each output's gradient goes to the input pixel that won its window
    (the first one in row-major window order on ties, like PyTorch); overlapping
    windows add.
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False):
        super().__init__()
        self.kernel_size, self.stride, self.padding = _window_arguments(
            "MaxPool2d", kernel_size, stride, padding)
        if not isinstance(ceil_mode, bool):
            raise ValueError(f"MaxPool2d: ceil_mode must be True or False, got {ceil_mode!r}.")
        self.ceil_mode = ceil_mode
        self.cache = None

    def extra_repr(self):
        s = f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
        return s + (", ceil_mode=True" if self.ceil_mode else "")

    def forward(self, x):
        k, s, p = self.kernel_size, self.stride, self.padding
        _check_window_input(x, f"MaxPool2d({self.extra_repr()})", k, s, p)
        path = active_path()
        y, cache = path.max_pool2d_forward(x, k, s, p, self.ceil_mode)
        return self.keep(path, cache, y)

    def backward(self, dout):
        path, cache = self.kept(dout)
        return path.max_pool2d_backward(dout, cache)


class AvgPool2d(Module):
    """k x k average pooling with stride s and zero padding p, as PyTorch's
    ``nn.AvgPool2d`` (floor mode). With ``count_include_pad=True`` (the default, PyTorch's
    too) the padding's zeros count in the mean; with ``False`` the mean runs over the
    m(h, w) pixels of each window that lie inside the image (Inception-ResNet-v2's pool):

        y[n, c, h, w] = 1/d(h, w) sum_{i,j} x_pad[n, c, s*h + i, s*w + j],
        d(h, w) = k^2, or m(h, w).

    forward(x): (N, C, H, W) -> (N, C, H', W'), H' = floor((H + 2p - k)/s) + 1.
    backward(dy): (N, C, H', W') -> dx (N, C, H, W); every pixel of a window gets
    dy / d from it (dy[n, c, h, w] / d(h, w) for each x_pad[n, c, s*h + i, s*w + j]);
    overlapping windows add, and the padding's share is dropped.

    ``stride`` defaults to ``kernel_size``; ``padding`` may be at most k // 2.
    """

    def __init__(self, kernel_size, stride=None, padding=0, count_include_pad=True):
        super().__init__()
        self.kernel_size, self.stride, self.padding = _window_arguments(
            "AvgPool2d", kernel_size, stride, padding)
        if not isinstance(count_include_pad, bool):
            raise ValueError(f"AvgPool2d: count_include_pad must be True or False, got "
                             f"{count_include_pad!r}.")
        self.count_include_pad = count_include_pad
        self.cache = None

    def extra_repr(self):
        s = f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
        return s + ("" if self.count_include_pad else ", count_include_pad=False")

    def forward(self, x):
        k, s, p = self.kernel_size, self.stride, self.padding
        _check_window_input(x, f"AvgPool2d({self.extra_repr()})", k, s, p)
        path = active_path()
        y, cache = path.avg_pool2d_forward(x, k, s, p, self.count_include_pad)
        return self.keep(path, cache, y)

    def backward(self, dout):
        path, cache = self.kept(dout)
        return path.avg_pool2d_backward(dout, cache)


class AdaptiveAvgPool2d(Module):
    """``torch.nn.AdaptiveAvgPool2d((size, size))`` for the inputs whose windows tile
    the map: each side n a multiple of ``size`` (the mean of n/size x n/size tiles, the
    identity for n = size) or a divisor of it (each value copied size/n times).
    ``vgg16_bn`` pools to 7x7 (its classifier reads 512 7 7 values); the CIFAR models
    pool to 1x1, which takes any size.

    forward(x): (N, C, H, W) -> (N, C, size, size).
    backward(dy): (N, C, size, size) -> dx (N, C, H, W): dy / k^2 to every entry of a
    k x k tile, or the sum of the copies' gradients (see
    :func:`~npsenet.nn.functional.adaptive_avg_pool2d_backward`).

    Other sizes raise a ValueError; ``npsenet summary`` counts this layer's MACs as 0.
    """

    def __init__(self, size):
        super().__init__()
        self.size = positive_int(size, "size", "AdaptiveAvgPool2d")
        self.cache = None

    def extra_repr(self):
        return f"size={self.size}"

    def forward(self, x):
        layer = f"AdaptiveAvgPool2d({self.extra_repr()})"
        check_input(x, layer, 4, "(N, C, H, W)")
        o = self.size
        if any(n % o and o % n for n in x.shape[2:]):
            raise ValueError(f"{layer}: the feature map is {x.shape[2]}x{x.shape[3]}; this "
                             f"pool needs each side a multiple or a divisor of {o}. For "
                             f"vgg16_bn use an input of 224 to 255 pixels (a {o}x{o} map), "
                             "of 448 (14x14) or of 32 to 63 (1x1).")
        path = active_path()
        y, cache = path.adaptive_avg_pool2d_forward(x, o)
        return self.keep(path, cache, y)

    def backward(self, dout):
        path, cache = self.kept(dout)
        return path.adaptive_avg_pool2d_backward(dout, cache)
