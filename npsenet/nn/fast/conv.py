"""The fast convolution: the plain path's pair ``conv2d_forward`` / ``conv2d_backward``
(same arguments, same results), choosing one of four algorithms by the layer's shape.

    stride 1 (or 1x1, no padding)      conv_strips.py     matrix products over strip views
    other strides                      conv_patches.py    copies of kernel-row strips
    depthwise (groups = C_in = C_out)  conv_depthwise.py  k*k shifted multiply-adds
    other groups > 1                   conv_patches.py    the patch matrix in reused memory

Outputs and input gradients are channels-last (``layout.py``). A stride-1 convolution
keeps its input's filled strip grid from forward to backward, whose weight gradient
reads it (so x is not copied onto a grid twice), in memory borrowed from the workspace;
backward gives it back for the next forward.
"""
from __future__ import annotations

from ...backend import get_array_module
from ..module import is_grad_enabled
from .conv_depthwise import conv2d_depthwise, conv2d_depthwise_backward, is_depthwise
from .conv_patches import (conv2d_grouped, conv2d_grouped_backward, conv2d_patches,
                           conv2d_patches_backward)
from .conv_strips import StripGrid, conv2d_strips, conv2d_strips_backward, kernel_rows, \
    strip_products
from .layout import sum_over_batch_and_space
from .workspace import Role, workspace


def conv2d_forward(x, weight, bias, stride=1, padding=0, groups=1):
    """As :func:`npsenet.nn.functional.conv2d_forward`: y (N, C_out, H', W'), its memory
    channels-last, and a cache ``(backward, saved, has_bias)`` naming the algorithm's
    backward and what it needs."""
    k = weight.shape[-1]
    if is_depthwise(x.shape, weight.shape, groups):
        y = conv2d_depthwise(x, weight, stride, padding, workspace)
        backward, saved = _depthwise_backward, (x, weight, stride, padding)
    elif groups > 1:
        y = conv2d_grouped(x, weight, stride, padding, groups, workspace)
        backward, saved = _grouped_backward, (x, weight, stride, padding, groups)
    elif stride == 1 or (k == 1 and padding == 0):
        y_nhwc, backward, saved = _strips_forward(x, weight, stride, padding)
        y = y_nhwc.transpose(0, 3, 1, 2)
    else:
        y_nhwc = conv2d_patches(x.transpose(0, 2, 3, 1), kernel_rows(weight), stride, padding,
                                workspace)
        y = y_nhwc.transpose(0, 3, 1, 2)
        backward, saved = _patches_backward, (x, weight, stride, padding)
    if bias is not None:
        y += bias.reshape(-1, 1, 1)       # channels-last memory: a run over C per pixel
    return y, (backward, saved, bias is not None)


def conv2d_backward(dy, cache):
    """As :func:`npsenet.nn.functional.conv2d_backward`: (dx, dW, db), dx channels-last."""
    backward, saved, has_bias = cache
    dx, dw = backward(dy, saved)
    return dx, dw, (sum_over_batch_and_space(dy) if has_bias else None)


def _strips_forward(x, weight, stride, padding):
    """Stride 1, or a 1x1 kernel without padding (with stride s, a stride-1 convolution
    of x[:, :, ::s, ::s]). Returns (y_nhwc, backward, saved). Where backward reads x on
    its grid (k > 1, which here means stride 1, and p <= k - 1) and a backward can follow,
    forward keeps the grid it filled instead of x."""
    k = weight.shape[-1]
    x_nhwc = x[:, :, ::stride, ::stride].transpose(0, 2, 3, 1)   # a view; free if channels-last
    w_rows = kernel_rows(weight)
    if padding > k - 1:                  # more padding than the flipped kernel's dx can use
        return (conv2d_strips(x_nhwc, w_rows, padding, workspace), _patches_backward,
                (x, weight, stride, padding))
    if k > 1 and is_grad_enabled():
        grid = StripGrid(x_nhwc.shape, k, padding)
        flat = grid.fill(x_nhwc, workspace, Role.KEPT_CONV_GRID)
        return (strip_products(grid, flat, w_rows, workspace), _kept_grid_backward,
                (grid, flat, weight, padding))
    return (conv2d_strips(x_nhwc, w_rows, padding, workspace), _strips_backward,
            (x, weight, stride, padding))


def _kept_grid_backward(dy, saved):
    """Backward of a stride-1 convolution from the grid its forward kept, which it then
    gives back to the workspace for the next forward."""
    grid, flat, weight, padding = saved
    dw, dx_nhwc = conv2d_strips_backward(None, dy.transpose(0, 2, 3, 1), weight, padding,
                                         workspace, (grid, flat))
    grid.give_back(flat, workspace)
    return dx_nhwc.transpose(0, 3, 1, 2), dw


def _strips_backward(dy, saved):
    """Backward of a strip convolution from x (a 1x1 kernel, or a forward under no_grad)."""
    x, weight, stride, padding = saved
    x_nhwc = x[:, :, ::stride, ::stride].transpose(0, 2, 3, 1)
    dw, dx_nhwc = conv2d_strips_backward(x_nhwc, dy.transpose(0, 2, 3, 1), weight, padding,
                                         workspace)
    if stride == 1:
        return dx_nhwc.transpose(0, 3, 1, 2), dw
    n, c, h, w = x.shape
    dx = get_array_module(dy).zeros((n, h, w, c), dtype=dy.dtype)
    dx[:, ::stride, ::stride] = dx_nhwc     # pixels the strided 1x1 kernel skipped get 0
    return dx.transpose(0, 3, 1, 2), dw


def _patches_backward(dy, saved):
    x, weight, stride, padding = saved
    dw, dx_nhwc = conv2d_patches_backward(x.transpose(0, 2, 3, 1), dy.transpose(0, 2, 3, 1),
                                          weight, stride, padding, workspace)
    return dx_nhwc.transpose(0, 3, 1, 2), dw


def _depthwise_backward(dy, saved):
    x, weight, stride, padding = saved
    dw, dx = conv2d_depthwise_backward(x, dy, weight, stride, padding, workspace)
    return dx, dw


def _grouped_backward(dy, saved):
    x, weight, stride, padding, groups = saved
    dw, dx = conv2d_grouped_backward(x, dy, weight, stride, padding, groups, workspace)
    return dx, dw
