"""``Conv2d``: the layer that holds W and b and calls the active path's
``conv2d_forward`` / ``conv2d_backward`` (``functional/conv.py`` derives them; notebook 01).

    y[n, o, h, w] = b[o] + sum_{c, i, j} W[o, c, i, j] * x_pad[n, c, s*h + i, s*w + j]
"""
from __future__ import annotations

import math

from .. import init
from ._checks import check_input, pair, positive_int
from .functional.conv import conv_output_size
from .module import Module, Parameter
from .switch import active_path


class Conv2d(Module):
    """2-D convolution (cross-correlation, as in PyTorch), NCHW.

    Args:
        in_channels, out_channels: C_in and C_out (both divisible by ``groups``).
        kernel_size: k (square kernels).
        stride, padding: s and p; H' = floor((H + 2p - k) / s) + 1.
        bias: learn a per-channel bias b.
        groups: g; each group of C_in/g input channels feeds C_out/g outputs.

    Attributes:
        weight: Parameter (C_out, C_in/g, k, k), initialised as in PyTorch:
            U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = C_in/g * k * k.
        bias: Parameter (C_out,) with the same initialisation, or None.

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

    def output_shape(self, input_shape):
        """(N, C_out, H', W') for an input of shape (N, C_in, H, W)."""
        n, _, h, w = input_shape
        k, s, p = self.kernel_size, self.stride, self.padding
        return (n, self.out_channels, conv_output_size(h, k, s, p), conv_output_size(w, k, s, p))

    def forward(self, x):
        check_input(x, f"Conv2d({self.extra_repr()})", 4, "(N, C, H, W)", self.in_channels,
                    dtype=self.weight.dtype)
        out_shape = self.output_shape(x.shape)
        if min(out_shape[2:]) < 1:
            k, p = self.kernel_size, self.padding
            raise ValueError(f"Conv2d({self.extra_repr()}): the input of spatial size "
                             f"{x.shape[2]}x{x.shape[3]} is smaller than the kernel ({k}x{k}) "
                             f"even after padding {p}. Use a larger input or more padding.")
        path = active_path()
        bias = None if self.bias is None else self.bias.data
        y, cache = path.conv2d_forward(x, self.weight.data, bias, self.stride, self.padding,
                                       self.groups)
        return self.keep(path, cache, y)

    def backward(self, dout):
        path, cache = self.kept(dout)
        dx, dw, db = path.conv2d_backward(dout, cache)
        self.weight.accumulate_grad(dw)
        if self.bias is not None:
            self.bias.accumulate_grad(db)
        return dx
