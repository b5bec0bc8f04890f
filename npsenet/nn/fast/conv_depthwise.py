"""Depthwise convolution on the fast path (MobileNet, ShuffleNet): one k x k filter per
channel, ``groups == C_in == C_out``, as k*k shifted multiply-adds over the whole batch.

    y[n, c, h, w] = b[c] + sum_{i, j} W[c, 0, i, j] * x_pad[n, c, s*h + i, s*w + j]

For each kernel offset (i, j) the pixels ``x_pad[n, c, s*h + i, s*w + j]`` of every
output are one strided view of the padded input (the plain path's ``offset_window``), so
the convolution is k*k products of a view with a per-channel weight, added up. The
grouped convolution would instead multiply C tiny (1, k k) @ (k k, N H' W') matrices,
one per group, after building the whole patch matrix.

Its backward, per offset:

    dW[c, 0, i, j]                  = sum_{n, h, w} dy[n, c, h, w] * x_pad[n, c, s*h + i, s*w + j]
    dx_pad[n, c, s*h + i, s*w + j] += W[c, 0, i, j] * dy[n, c, h, w]
    db[c]                           = sum_{n, h, w} dy[n, c, h, w]      (in ``conv.py``)

dx_pad is added into through the same strided views (no two entries of one view are the
same pixel, so ``+=`` is exact; no ``add.at``) and cropped to dx. Everything runs
channels-last (``layout.py``): there a view's innermost axis is C consecutive numbers,
and for stride 1 a view's image row is W'*C consecutive numbers, so NumPy's loops run
over whole rows once the per-channel weight is repeated along the row
(:func:`_weights_along_rows`).

A channel multiplier m > 1 (C_out = m C_in, ``groups == C_in``) stays on the grouped
path (``conv_patches.py conv2d_grouped``).
"""
from __future__ import annotations

from ...backend import get_array_module
from ..functional.conv import conv_output_size, offset_window
from .layout import channels_last
from .workspace import Role


def is_depthwise(x_shape, weight_shape, groups):
    """Whether a convolution of x (N, C_in, H, W) by W (C_out, C_in/g, k, k) is depthwise
    in the sense of this file: groups == C_in == C_out (> 1)."""
    return groups > 1 and groups == x_shape[1] == weight_shape[0]


def _weights_along_rows(weight, wo):
    """W (C, 1, k, k) as (k, k, W', C): offset (i, j)'s per-channel weights repeated along
    an output row, so that ``view * w_rows[i, j]`` for a channels-last view (N, H', W', C)
    broadcasts over N and H' only, and NumPy's inner loop runs over a whole row wherever
    the view's row is contiguous (stride 1), instead of over C numbers at a time."""
    xp = get_array_module(weight)
    k, c = weight.shape[-1], weight.shape[0]
    per_offset = weight[:, 0].transpose(1, 2, 0)[:, :, None, :]         # (k, k, 1, C)
    return xp.ascontiguousarray(xp.broadcast_to(per_offset, (k, k, wo, c)))


def _offset_view(x_pad_nhwc, i, j, stride, ho, wo):
    """The channels-last view (N, H', W', C) of x_pad_nhwc (N, Hp, Wp, C) that kernel
    offset (i, j) reads: ``x_pad[n, s*h + i, s*w + j, c]`` (``offset_window`` with the
    channel axis moved last)."""
    _, _, rows, cols = offset_window(i, j, stride, ho, wo)
    return x_pad_nhwc[:, rows, cols, :]


def _padded_nhwc(x, padding, workspace):
    """x (N, C, H, W) as a channels-last, zero-padded (N, H + 2p, W + 2p, C) array: a
    copy in the workspace's reused memory (x itself, made channels-last, when p = 0)."""
    return workspace.padded(Role.PADDED, channels_last(x).transpose(0, 2, 3, 1), padding,
                            axes=(1, 2))


def conv2d_depthwise(x, weight, stride, padding, workspace):
    """y = W * x of a depthwise convolution (no bias: ``conv.py`` adds it), as the sum
    over the k*k kernel offsets of ``W[:, 0, i, j] * (x_pad's view at offset i, j)``.

    Args:
        x: (N, C, H, W), any memory layout.
        weight: W (C, 1, k, k).
        stride, padding: s and p.
        workspace: the fast path's :class:`~npsenet.nn.fast.workspace.Workspace`.
    Returns:
        y (N, C, H', W'), its memory channels-last; H' = floor((H + 2p - k)/s) + 1.
    """
    xp = get_array_module(x)
    n, c, h, w = x.shape
    k = weight.shape[-1]
    ho = conv_output_size(h, k, stride, padding)
    wo = conv_output_size(w, k, stride, padding)
    x_pad = _padded_nhwc(x, padding, workspace)
    w_rows = _weights_along_rows(weight, wo)                               # (k, k, W', C)
    y = xp.empty((n, ho, wo, c), dtype=x.dtype)
    term = workspace.scratch(Role.TERM, y.shape, y.dtype, xp)
    for i in range(k):
        for j in range(k):
            view = _offset_view(x_pad, i, j, stride, ho, wo)
            if i == 0 and j == 0:
                xp.multiply(view, w_rows[0, 0], out=y)
            else:
                y += xp.multiply(view, w_rows[i, j], out=term)
    return y.transpose(0, 3, 1, 2)


def conv2d_depthwise_backward(x, dy, weight, stride, padding, workspace):
    """(dW, dx) of :func:`conv2d_depthwise`: one sum of products per kernel offset for dW,
    and for dx the products ``W[:, 0, i, j] * dy`` added into dx_pad's view at offset
    (i, j), then the padding cropped. dy is not modified.

    Args:
        x: (N, C, H, W), the forward's input.
        dy: (N, C, H', W'), dL/dy, any memory layout.
        weight: W (C, 1, k, k).
    Returns:
        dW (C, 1, k, k) and dx (N, C, H, W), its memory channels-last.
    """
    xp = get_array_module(dy)
    n, c, h, w = x.shape
    k = weight.shape[-1]
    ho, wo = dy.shape[2:]
    dy_nhwc = channels_last(dy).transpose(0, 2, 3, 1)             # contiguous (N, H', W', C)
    x_pad = _padded_nhwc(x, padding, workspace)
    dw = xp.empty((k, k, c), dtype=dy.dtype)
    for i in range(k):
        for j in range(k):
            dw[i, j] = _sum_of_products(_offset_view(x_pad, i, j, stride, ho, wo), dy_nhwc)
    shape_pad = (n, h + 2 * padding, w + 2 * padding, c)
    if padding == 0:               # dx_pad is dx itself: fresh memory, not the workspace's
        dx_pad = xp.zeros(shape_pad, dtype=dy.dtype)
    else:
        dx_pad = workspace.scratch(Role.DX_PADDED, shape_pad, dy.dtype, xp)
        dx_pad[...] = 0
    w_rows = _weights_along_rows(weight, wo)
    term = workspace.scratch(Role.TERM, dy_nhwc.shape, dy.dtype, xp)
    for i in range(k):
        for j in range(k):
            view = _offset_view(dx_pad, i, j, stride, ho, wo)
            view += xp.multiply(dy_nhwc, w_rows[i, j], out=term)
    if padding:
        dx_nhwc = xp.ascontiguousarray(dx_pad[:, padding:padding + h, padding:padding + w])
    else:
        dx_nhwc = dx_pad
    return dw.transpose(2, 0, 1)[:, None].copy(), dx_nhwc.transpose(0, 3, 1, 2)


def _sum_of_products(view, dy_nhwc):
    """sum_{n, h, w} view[n, h, w, c] * dy[n, h, w, c]: (C,), without the product array.
    Where the view's rows are contiguous (stride 1), einsum runs over whole rows of W'*C
    numbers and the W' column groups are summed afterwards (``layout.py`` does the same
    for channels-last activations); otherwise over the C numbers of each pixel."""
    xp = get_array_module(dy_nhwc)
    n, ho, wo, c = view.shape
    if view.strides[2] == c * view.strides[3]:            # a row is W'*C consecutive numbers
        rows = xp.einsum("nhr,nhr->r", view.reshape(n, ho, wo * c),
                         dy_nhwc.reshape(n, ho, wo * c))
        return rows.reshape(wo, c).sum(axis=0)
    return xp.einsum("nhwc,nhwc->c", view, dy_nhwc)
