"""Convolution: forward as a matrix product over image patches (im2col), backward as
its adjoint (col2im). Derived step by step in ``notebooks/01_convolution.ipynb``.

Notation (PyTorch's, the paper's u_c(i, j) is one output channel):

    y[n, o, h, w] = b[o] + sum_{c, i, j} W[o, c, i, j] * x_pad[n, c, s*h + i, s*w + j]

With the patch matrix ``cols[n, (c, i, j), (h, w)] = x_pad[n, c, s*h + i, s*w + j]``
the sum is one matrix product per sample, ``y[n] = W_mat @ cols[n]`` with
``W_mat = W.reshape(C_out, C_in * k * k)``. The backward pass follows:

    dL/dW_mat  = sum_n dy[n] @ cols[n].T
    dL/dcols[n] = W_mat.T @ dy[n]
    dL/dx      = col2im(dL/dcols)     (each patch entry adds back to the pixel it came from)
    dL/db[o]   = sum_{n, h, w} dy[n, o, h, w]

Groups split the channels into ``g`` independent convolutions; the matrices then carry
a group axis, ``(N, g, C_in/g * k * k, H' * W')``, and the same products apply per group.

Layout: activations stay NCHW. ``cols`` is built per sample as (K, H'W') so the batched
product ``W_mat @ cols`` writes (N, C_out, H'W') straight into NCHW order, with no
transpose around the matrix product. im2col and col2im loop over the k*k kernel
offsets (at most 49 iterations) and copy or add a whole strided slice at a time; there is
no Python loop over samples or pixels, and no ``np.add.at`` scatter.
"""
from __future__ import annotations

import math

from ..backend import get_array_module
from .. import init
from ._checks import check_dout, check_input, pair, positive_int, require_cache
from .module import Module, Parameter


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """H' = floor((H + 2p - k) / s) + 1."""
    return (size + 2 * padding - kernel) // stride + 1


def pad_images(x, padding: int, value=0.0):
    """Zero-pad (or ``value``-pad) the two spatial axes of an (N, C, H, W) array."""
    if padding == 0:
        return x
    xp = get_array_module(x)
    n, c, h, w = x.shape
    out = xp.full((n, c, h + 2 * padding, w + 2 * padding), value, dtype=x.dtype)
    out[:, :, padding:padding + h, padding:padding + w] = x
    return out


def im2col(x, kernel: int, stride: int, padding: int):
    """Patches of ``x`` as an array of shape (N, C, k, k, H', W').

    ``cols[n, c, i, j, h, w] = x_pad[n, c, s*h + i, s*w + j]``. One strided slice is
    copied per kernel offset (i, j).
    """
    xp = get_array_module(x)
    n, c, h, w = x.shape
    ho = conv_output_size(h, kernel, stride, padding)
    wo = conv_output_size(w, kernel, stride, padding)
    x_pad = pad_images(x, padding)
    cols = xp.empty((n, c, kernel, kernel, ho, wo), dtype=x.dtype)
    for i in range(kernel):
        for j in range(kernel):
            cols[:, :, i, j] = x_pad[:, :, i:i + stride * (ho - 1) + 1:stride,
                                     j:j + stride * (wo - 1) + 1:stride]
    return cols


def col2im(dcols, x_shape, kernel: int, stride: int, padding: int):
    """The adjoint of :func:`im2col`: add each patch gradient back onto its pixels.

    Args:
        dcols: (N, C, k, k, H', W') gradient with respect to the patches.
        x_shape: (N, C, H, W) of the unpadded input.
    Returns:
        dx of shape ``x_shape``. Overlapping patches (stride < k) add up, which is
        why this is a sum over kernel offsets of strided ``+=``, never an assignment.
    """
    xp = get_array_module(dcols)
    n, c, h, w = x_shape
    ho, wo = dcols.shape[-2:]
    dx_pad = xp.zeros((n, c, h + 2 * padding, w + 2 * padding), dtype=dcols.dtype)
    for i in range(kernel):
        for j in range(kernel):
            dx_pad[:, :, i:i + stride * (ho - 1) + 1:stride,
                   j:j + stride * (wo - 1) + 1:stride] += dcols[:, :, i, j]
    if padding:
        return dx_pad[:, :, padding:padding + h, padding:padding + w]
    return dx_pad


class Conv2d(Module):
    """2-D convolution (cross-correlation, as in PyTorch), NCHW.

    Args:
        in_channels, out_channels: C_in and C_out (both divisible by ``groups``).
        kernel_size: k (square kernels).
        stride, padding: s and p; H' = floor((H + 2p - k) / s) + 1.
        bias: learn a per-channel bias b.
        groups: g; each group of C_in/g input channels feeds C_out/g outputs.

    Parameters:
        weight: (C_out, C_in/g, k, k), bias: (C_out,) — PyTorch's shapes and its default
        initialisation U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = C_in/g * k * k.

    forward(x): x (N, C_in, H, W) -> y (N, C_out, H', W').
    backward(dy): dy (N, C_out, H', W') -> dx (N, C_in, H, W); adds dL/dW (and dL/db)
    into ``weight.grad`` (``bias.grad``).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 bias=True, groups=1):
        super().__init__()
        name = "Conv2d"
        self.in_channels = positive_int(in_channels, "in_channels", name)
        self.out_channels = positive_int(out_channels, "out_channels", name)
        self.kernel_size = pair(kernel_size, "kernel_size", name, 1)
        self.stride = pair(stride, "stride", name, 1)
        self.padding = pair(padding, "padding", name, 0)
        self.groups = positive_int(groups, "groups", name)
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"Conv2d: in_channels ({in_channels}) and out_channels "
                             f"({out_channels}) must both be divisible by groups ({groups}).")
        k = self.kernel_size
        fan_in = self.in_channels // self.groups * k * k
        bound = 1.0 / math.sqrt(fan_in)
        self.weight = Parameter(init.uniform(
            (self.out_channels, self.in_channels // self.groups, k, k), bound))
        self.bias = Parameter(init.uniform((self.out_channels,), bound)) if bias else None
        self.cache = None

    def extra_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}, padding={self.padding}")
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s

    def _describe(self):
        return f"Conv2d({self.extra_repr()})"

    def output_shape(self, input_shape):
        n, _, h, w = input_shape
        k, s, p = self.kernel_size, self.stride, self.padding
        return (n, self.out_channels, conv_output_size(h, k, s, p), conv_output_size(w, k, s, p))

    def forward(self, x):
        check_input(x, self._describe(), 4, "(N, C, H, W)", self.in_channels,
                    dtype=self.weight.dtype)
        xp = get_array_module(x)
        n, _, h, w = x.shape
        k, s, p, g = self.kernel_size, self.stride, self.padding, self.groups
        ho, wo = conv_output_size(h, k, s, p), conv_output_size(w, k, s, p)
        if ho < 1 or wo < 1:
            raise ValueError(f"{self._describe()}: the input of spatial size {h}x{w} is smaller "
                             f"than the kernel ({k}x{k}) even after padding {p}. Use a larger "
                             "input or more padding.")
        cols = im2col(x, k, s, p).reshape(n, g, -1, ho * wo)           # (N, g, K, L)
        w_mat = self.weight.data.reshape(g, self.out_channels // g, -1)  # (g, C_out/g, K)
        y = xp.matmul(w_mat, cols).reshape(n, self.out_channels, ho, wo)
        if self.bias is not None:
            y += self.bias.data.reshape(1, -1, 1, 1)
        self.cache = (x.shape, cols)
        return y

    def backward(self, dout):
        x_shape, cols = require_cache(self.cache, "Conv2d")
        n = x_shape[0]
        g, k = self.groups, self.kernel_size
        ho, wo = self.output_shape(x_shape)[2:]
        check_dout(dout, (n, self.out_channels, ho, wo), "Conv2d")
        xp = get_array_module(dout)
        dy = dout.reshape(n, g, self.out_channels // g, ho * wo)         # (N, g, C_out/g, L)
        # dL/dW_mat = sum_n dy[n] @ cols[n]^T  (batched product, then sum over the batch)
        dw = xp.matmul(dy, cols.swapaxes(-1, -2)).sum(axis=0)             # (g, C_out/g, K)
        self.weight.accumulate_grad(dw.reshape(self.weight.data.shape))
        if self.bias is not None:
            self.bias.accumulate_grad(dout.sum(axis=(0, 2, 3)))
        # dL/dcols[n] = W_mat^T @ dy[n], then col2im scatters patches back to pixels
        w_mat = self.weight.data.reshape(g, self.out_channels // g, -1)
        dcols = xp.matmul(w_mat.swapaxes(-1, -2), dy)                     # (N, g, K, L)
        dcols = dcols.reshape(n, self.in_channels, k, k, ho, wo)
        return col2im(dcols, x_shape, k, self.stride, self.padding)
