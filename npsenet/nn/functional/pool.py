"""Pooling: the squeeze F_sq of the SE block (global average, and global max from the
paper's ablation), the max pool of the ImageNet stem, and the k x k average pool of the
Inception, ShuffleNet and VGG-style stems and transitions. See ``notebooks/03_squeeze.ipynb``.

    global average   z_c = 1/(H W) sum_{i,j} u_c(i, j)     du_c(i, j) = dz_c / (H W)
    global max       z_c = max_{i,j} u_c(i, j)             du_c(i, j) = dz_c at the arg max, else 0
    max pool         y[n, c, h, w] = max_{i,j} x_pad[n, c, s*h + i, s*w + j]
                     (padding counts as -inf; each output's gradient goes to its window's winner)
    average pool     y[n, c, h, w] = 1/k^2 sum_{i,j} x_pad[n, c, s*h + i, s*w + j]
                     (zero padding counted in the k^2; each window pixel gets dy / k^2)
"""
from __future__ import annotations

from ...backend import get_array_module
from .conv import conv_output_size, offset_window, pad_images


def global_avg_pool_forward(u):
    """z (N, C) = the mean of u (N, C, H, W) over its pixels; the cache is u's shape."""
    return u.mean(axis=(2, 3)), u.shape


def global_avg_pool_backward(dz, u_shape):
    """dz (N, C) -> du (N, C, H, W): every pixel contributed equally to the mean, so
    every pixel gets an equal share dz / (H W)."""
    n, c, h, w = u_shape
    du = get_array_module(dz).zeros(u_shape, dtype=dz.dtype)
    du += (dz / (h * w))[:, :, None, None]
    return du


def global_max_pool_forward(u):
    """z (N, C) = the max of u (N, C, H, W) over its pixels; the cache is (u's shape, the
    flat index of each channel's first arg max)."""
    n, c, h, w = u.shape
    flat = u.reshape(n, c, h * w)
    idx = flat.argmax(axis=2)                                          # (N, C)
    z = get_array_module(u).take_along_axis(flat, idx[:, :, None], axis=2)[:, :, 0]
    return z, (u.shape, idx)


def global_max_pool_backward(dz, cache):
    """dz (N, C) -> du (N, C, H, W), dz at each arg max and 0 elsewhere: a one-hot mask
    times dz, no scatter."""
    (n, c, h, w), idx = cache
    one_hot = get_array_module(dz).arange(h * w) == idx[:, :, None]     # (N, C, H W)
    return (one_hot * dz[:, :, None]).reshape(n, c, h, w)


def pool_output_size(size, kernel, stride, padding, ceil_mode=False):
    """H' of a pooling window, as PyTorch computes it: floor((H + 2p - k)/s) + 1, or with
    ``ceil_mode`` ceil((H + 2p - k)/s) + 1, less one if the last window would start in
    the right-hand padding."""
    if not ceil_mode:
        return conv_output_size(size, kernel, stride, padding)
    out = -(-(size + 2 * padding - kernel) // stride) + 1
    if (out - 1) * stride >= size + padding:
        out -= 1
    return out


def max_pool2d_forward(x, kernel, stride, padding, ceil_mode=False):
    """y (N, C, H', W'), the max over each k x k window (stride s, padding p as -inf).

    With ``ceil_mode`` the last window may run past the padding (H' from
    :func:`pool_output_size`): x is padded with -inf far enough on the right and bottom.
    A loop over the k*k window offsets, each a strided view of the whole batch; the
    cache is (x's shape, the padded x, y, kernel, stride, padding)."""
    xp = get_array_module(x)
    h, w = x.shape[2:]
    ho = pool_output_size(h, kernel, stride, padding, ceil_mode)
    wo = pool_output_size(w, kernel, stride, padding, ceil_mode)
    x_pad = pad_images(x, padding, value=-float("inf"))
    extra_h = (ho - 1) * stride + kernel - x_pad.shape[2]   # > 0 only in ceil mode
    extra_w = (wo - 1) * stride + kernel - x_pad.shape[3]
    if extra_h > 0 or extra_w > 0:
        grown = xp.full(x_pad.shape[:2] + (x_pad.shape[2] + max(extra_h, 0),
                                           x_pad.shape[3] + max(extra_w, 0)),
                        -float("inf"), dtype=x.dtype)
        grown[:, :, :x_pad.shape[2], :x_pad.shape[3]] = x_pad
        x_pad = grown
    y = None
    for i in range(kernel):
        for j in range(kernel):
            window = x_pad[offset_window(i, j, stride, ho, wo)]
            y = window.copy() if y is None else xp.maximum(y, window)
    return y, (x.shape, x_pad, y, kernel, stride, padding)


def max_pool2d_backward(dy, cache):
    """dy (N, C, H', W') -> dx (N, C, H, W): each output's gradient goes to the pixel that
    won its window (the first in row-major window order on ties, as in PyTorch);
    overlapping windows add (strided ``+=`` per offset)."""
    x_shape, x_pad, y, kernel, stride, p = cache
    xp = get_array_module(dy)
    h, w = x_shape[2:]
    ho, wo = y.shape[2:]
    dx_pad = xp.zeros(x_pad.shape, dtype=dy.dtype)
    inside = xp.zeros(x_pad.shape, dtype=bool)                 # padding never wins
    inside[:, :, p:p + h, p:p + w] = True
    routed = xp.zeros(y.shape, dtype=bool)              # windows whose max already got dy
    for i in range(kernel):
        for j in range(kernel):
            window = offset_window(i, j, stride, ho, wo)
            winner = (x_pad[window] == y) & inside[window] & ~routed
            dx_pad[window] += dy * winner
            routed |= winner
    return dx_pad[:, :, p:p + h, p:p + w]


def avg_pool2d_forward(x, kernel, stride, padding, count_include_pad=True):
    """y (N, C, H', W'), the mean of each k x k window of x (N, C, H, W), stride s, zero
    padding p, floor mode. With ``count_include_pad`` (PyTorch's default) the padding's
    zeros count in the mean; without it the mean runs over the window's m(h, w) pixels
    inside the image (Inception-ResNet-v2's pool):

        y[n, c, h, w] = 1/d(h, w) sum_{i,j} x_pad[n, c, s*h + i, s*w + j]
        d(h, w) = k^2, or m(h, w)          H' = floor((H + 2p - k)/s) + 1

    A loop over the k*k window offsets, each a strided view of the whole batch; the
    cache is (x's shape, kernel, stride, padding, d)."""
    h, w = x.shape[2:]
    ho = conv_output_size(h, kernel, stride, padding)
    wo = conv_output_size(w, kernel, stride, padding)
    x_pad = pad_images(x, padding)
    total = None
    for i in range(kernel):
        for j in range(kernel):
            window = x_pad[offset_window(i, j, stride, ho, wo)]
            total = window.copy() if total is None else total + window
    divisor = kernel * kernel if count_include_pad else _pixels_in_windows(
        x, kernel, stride, padding, ho, wo)
    return total / divisor, (x.shape, kernel, stride, padding, divisor)


def _pixels_in_windows(x, kernel, stride, padding, ho, wo):
    """m (H', W'): how many of each window's k^2 positions lie inside the H x W image, in
    x's dtype on x's device."""
    xp = get_array_module(x)

    def inside(size, out):
        start = xp.arange(out) * stride - padding
        return xp.minimum(start + kernel, size) - xp.maximum(start, 0)

    h, w = x.shape[2:]
    return xp.outer(inside(h, ho), inside(w, wo)).astype(x.dtype)


def avg_pool2d_backward(dy, cache):
    """dy (N, C, H', W') -> dx (N, C, H, W). Each output is a weighted sum with weight
    1/d(h, w) on every pixel of its window, so

        dx_pad[n, c, s*h + i, s*w + j] += dy[n, c, h, w] / d(h, w)   for every offset (i, j);

    overlapping windows add (strided ``+=`` per offset), and the padding's share is dropped."""
    (n, c, h, w), kernel, stride, p, divisor = cache
    xp = get_array_module(dy)
    ho, wo = dy.shape[2:]
    share = dy / divisor
    dx_pad = xp.zeros((n, c, h + 2 * p, w + 2 * p), dtype=dy.dtype)
    for i in range(kernel):
        for j in range(kernel):
            dx_pad[offset_window(i, j, stride, ho, wo)] += share
    return dx_pad[:, :, p:p + h, p:p + w]


def adaptive_avg_pool2d_forward(x, size):
    """PyTorch's ``adaptive_avg_pool2d(x, size)`` where every side n of x is a multiple
    of ``size`` (each output is the mean of its n/size x n/size tile) or divides it (each
    input is copied size/n times along that axis).

    Along an axis of length n with output length o, output i reads the input indices
    floor(i n / o) to ceil((i + 1) n / o) - 1; for o | n these are the tiles
    [i k, (i + 1) k) with k = n / o, for n | o the single index floor(i n / o).

    Shapes: x (N, C, H, W) -> y (N, C, size, size); cache: x's shape.
    """
    xp = get_array_module(x)
    y = x
    for axis in (2, 3):
        n = y.shape[axis]
        if n > size:                                  # mean over tiles of k = n / size
            k = n // size
            y = y.reshape(y.shape[:axis] + (size, k) + y.shape[axis + 1:]).mean(axis + 1)
        elif n < size:                                # copy each entry size / n times
            y = xp.repeat(y, size // n, axis=axis)
    if y is x:
        y = x.copy()
    return y, tuple(x.shape)


def adaptive_avg_pool2d_backward(dout, cache):
    """The gradient of :func:`adaptive_avg_pool2d_forward`, axis by axis in reverse:
    a tile mean of k entries gives each of them dy / k; a copy made m times collects
    the sum of its m copies' gradients.

    Shapes: dout (N, C, size, size) -> dx of x's shape (a new array).
    """
    xp = get_array_module(dout)
    x_shape = cache
    d = dout
    for axis in (3, 2):
        n, o = x_shape[axis], d.shape[axis]
        if n > o:
            d = xp.repeat(d, n // o, axis=axis) / (n // o)
        elif n < o:
            d = d.reshape(d.shape[:axis] + (n, o // n) + d.shape[axis + 1:]).sum(axis + 1)
    if d is dout:
        d = dout.copy()
    return d
