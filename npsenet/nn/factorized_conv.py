"""``FactorizedConv2d``: the 1 x n and n x 1 convolutions of the factorized Inception
modules (Szegedy et al., "Rethinking the Inception Architecture", CVPR 2016, Sec. 3.2: an
n x n convolution replaced by a 1 x n followed by an n x 1). Inception-ResNet-v2's blocks
use 1 x 7, 7 x 1, 1 x 3 and 3 x 1 kernels; :class:`~npsenet.nn.Conv2d` takes square
kernels only, so the rectangular ones are this layer, stride 1.

With a kernel of kh x kw and zero padding (ph, pw), im2col over the rectangular window
makes the whole batch one matrix product, as for the square convolution:

    cols[c, i, j, n, h, w] = x_pad[n, c, h + i, w + j]          (C kh kw, N H' W')
    Y = W_mat @ cols + b,   W_mat = W.reshape(C_out, C kh kw)    H' = H + 2 ph - kh + 1

and its backward:

    dW = dY cols^T,   db = sum_{n,h,w} dy,   dcols = W_mat^T dY
    dx[n, c, h + i - ph, w + j - pw] += dcols[c, i, j, n, h, w]   (col2im, padding cropped)

The pair below is stateless (the plain path's convention, ``nn/functional``); the layer
runs it on both code paths: it is not one of the fast path's kernels. Its cache is x, not
cols (cols is kh kw times larger than x; backward rebuilds it).
"""
from __future__ import annotations

import math

from .. import init
from ..backend import get_array_module
from ._checks import check_input, positive_int
from .module import Module, Parameter


def _window_columns(x, kh, kw, ph, pw):
    """cols (C, kh, kw, N, H', W') with cols[c, i, j, n, h, w] = x_pad[n, c, h + i, w + j]."""
    xp = get_array_module(x)
    n, c, h, w = x.shape
    ho, wo = h + 2 * ph - kh + 1, w + 2 * pw - kw + 1
    x_pad = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else x
    cols = xp.empty((c, kh, kw, n, ho, wo), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, i, j] = x_pad[:, :, i:i + ho, j:j + wo].transpose(1, 0, 2, 3)
    return cols


def factorized_conv2d_forward(x, weight, bias, padding):
    """y = conv(x, W) + b for a kh x kw kernel, stride 1.

    Args:
        x: (N, C, H, W).
        weight: (C_out, C, kh, kw).
        bias: (C_out,) or None.
        padding: (ph, pw), zeros added on both sides of H and of W.

    Returns:
        y (N, C_out, H + 2 ph - kh + 1, W + 2 pw - kw + 1) and the cache
        (x, weight, padding, has_bias) for :func:`factorized_conv2d_backward`.
    """
    xp = get_array_module(x)
    c_out, c, kh, kw = weight.shape
    ph, pw = padding
    cols = _window_columns(x, kh, kw, ph, pw)
    ho, wo = cols.shape[-2:]
    n = x.shape[0]
    y = xp.matmul(weight.reshape(c_out, -1), cols.reshape(c * kh * kw, -1))
    y = xp.ascontiguousarray(y.reshape(c_out, n, ho, wo).transpose(1, 0, 2, 3))
    if bias is not None:
        y += bias[None, :, None, None]
    return y, (x, weight, padding, bias is not None)


def factorized_conv2d_backward(dy, cache):
    """dy (N, C_out, H', W') -> (dx (N, C, H, W), dW (C_out, C, kh, kw), db (C_out,) or None).

    dW = dY cols^T with cols rebuilt from x; dx is col2im of W_mat^T dY: each window
    position (i, j) adds its share back to the input pixel it read, the padding's share
    dropped. dy is not written into.
    """
    x, weight, (ph, pw), has_bias = cache
    xp = get_array_module(dy)
    c_out, c, kh, kw = weight.shape
    n, _, h, w = x.shape
    ho, wo = dy.shape[2:]
    dy_mat = dy.transpose(1, 0, 2, 3).reshape(c_out, n * ho * wo)
    cols = _window_columns(x, kh, kw, ph, pw).reshape(c * kh * kw, -1)
    dw = xp.matmul(dy_mat, cols.T).reshape(weight.shape)
    db = dy.sum(axis=(0, 2, 3)) if has_bias else None
    dcols = xp.matmul(weight.reshape(c_out, -1).T, dy_mat).reshape(c, kh, kw, n, ho, wo)
    dx_pad = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=dy.dtype)
    for i in range(kh):
        for j in range(kw):
            dx_pad[:, :, i:i + ho, j:j + wo] += dcols[:, i, j].transpose(1, 0, 2, 3)
    dx = xp.ascontiguousarray(dx_pad[:, :, ph:ph + h, pw:pw + w])
    return dx, dw, db


def _kernel_pair(value, what, minimum):
    """(a, b) from an int or a pair of ints, each >= minimum."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"FactorizedConv2d: {what} must be an int or a pair (height, "
                             f"width), got {value!r}.")
        return tuple(positive_int(v, what, "FactorizedConv2d", minimum) for v in value)
    v = positive_int(value, what, "FactorizedConv2d", minimum)
    return v, v


class FactorizedConv2d(Module):
    """A stride-1 convolution with a rectangular kh x kw kernel (1 x 7, 7 x 1, ...), NCHW,
    as ``torch.nn.Conv2d(C_in, C_out, (kh, kw), padding=(ph, pw))``.

    Args:
        in_channels, out_channels: C_in and C_out.
        kernel_size: (kh, kw) (an int gives a square kernel).
        padding: (ph, pw) (an int pads both axes alike).
        bias: learn a per-channel bias b.

    Attributes:
        weight: Parameter (C_out, C_in, kh, kw), initialised as Conv2d's (PyTorch's
            U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = C_in kh kw).
        bias: Parameter (C_out,) or None.

    forward(x): (N, C_in, H, W) -> (N, C_out, H + 2 ph - kh + 1, W + 2 pw - kw + 1).
    backward(dy): -> dx (N, C_in, H, W); adds dL/dW (and dL/db) into the parameters'
    ``.grad`` (equations in this module's docstring).
    """

    def __init__(self, in_channels, out_channels, kernel_size, padding=0, bias=True):
        super().__init__()
        self.in_channels = positive_int(in_channels, "in_channels", "FactorizedConv2d")
        self.out_channels = positive_int(out_channels, "out_channels", "FactorizedConv2d")
        self.kernel_size = _kernel_pair(kernel_size, "kernel_size", 1)
        self.padding = _kernel_pair(padding, "padding", 0)
        kh, kw = self.kernel_size
        bound = 1.0 / math.sqrt(self.in_channels * kh * kw)
        self.weight = Parameter(init.uniform((self.out_channels, self.in_channels, kh, kw),
                                             bound))
        self.bias = Parameter(init.uniform((self.out_channels,), bound)) if bias else None
        self.cache = None

    def extra_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"padding={self.padding}")
        return s + ("" if self.bias is not None else ", bias=False")

    def forward(self, x):
        check_input(x, f"FactorizedConv2d({self.extra_repr()})", 4, "(N, C, H, W)",
                    self.in_channels, dtype=self.weight.dtype)
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        if x.shape[2] + 2 * ph < kh or x.shape[3] + 2 * pw < kw:
            raise ValueError(f"FactorizedConv2d({self.extra_repr()}): the input of spatial "
                             f"size {x.shape[2]}x{x.shape[3]} is smaller than the {kh}x{kw} "
                             "kernel with its padding; use a larger input.")
        bias = None if self.bias is None else self.bias.data
        y, cache = factorized_conv2d_forward(x, self.weight.data, bias, self.padding)
        return self.keep(None, cache, y)

    def backward(self, dout):
        _, cache = self.kept(dout)
        dx, dw, db = factorized_conv2d_backward(dout, cache)
        self.weight.accumulate_grad(dw)
        if self.bias is not None:
            self.bias.accumulate_grad(db)
        return dx
