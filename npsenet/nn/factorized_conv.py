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

The pair, ``factorized_conv2d_forward`` / ``factorized_conv2d_backward``, is the plain
path's (``npsenet/nn/functional/conv.py``); the fast path uses it as it is. Its cache is x,
not cols (cols is kh kw times larger than x; backward rebuilds it).
"""
from __future__ import annotations

import math

from .. import init
from ._checks import check_input, positive_int
from .module import Module, Parameter
from .switch import active_path


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
        path = active_path()
        y, cache = path.factorized_conv2d_forward(x, self.weight.data, bias, self.padding)
        return self.keep(path, cache, y)

    def backward(self, dout):
        path, cache = self.kept(dout)
        dx, dw, db = path.factorized_conv2d_backward(dout, cache)
        self.weight.accumulate_grad(dw)
        if self.bias is not None:
            self.bias.accumulate_grad(db)
        return dx
