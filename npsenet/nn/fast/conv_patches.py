"""Strided and grouped convolutions on the fast path: copies of kernel-row strips, and
the patch matrix in reused memory.

* With stride s < k the strips of neighbouring outputs overlap, so they cannot be one
  matrix view (as in ``conv_strips.py``), but each kernel row's strips are one strided
  view, copied whole (:func:`conv2d_patches`: k copies, the patch matrix split by kernel
  row). col2im adds them back through views whose strips do not overlap.
* Grouped convolutions use the plain path's patch matrix (im2col and col2im of
  ``npsenet/nn/functional/conv.py``), built in the workspace's reused memory:
  one large matrix product per group instead of one per sample.
"""
from __future__ import annotations

from ...backend import get_array_module
from ..functional.conv import col2im, conv_output_size, copy_patches
from .conv_strips import kernel_rows
from .layout import channels_last
from .workspace import Role


def _row_strips(x_pad, kernel, i, stride, ho, wo, step=1, first=0):
    """View (N, H', count, k C) of channels-last x_pad (N, Hp, Wp, C): entry [n, h, t] is
    the strip x_pad[n, s*h + i, w*s:w*s + k, :] of output column w = first + step * t,
    k*C numbers that are consecutive in memory. The strips of neighbouring outputs
    overlap when s < k, which a strided view allows (``as_strided``; a reshape cannot
    express it). Views that are written through (col2im) pass a ``step`` with
    s * step >= k, so that their strips do not overlap."""
    xp = get_array_module(x_pad)
    n, hp, wp, c = x_pad.shape
    item = x_pad.itemsize
    count = len(range(first, wo, step))
    start = x_pad[:, i, first * stride:]                    # (N, ., C) from row i, column s*first
    return xp.lib.stride_tricks.as_strided(
        start, shape=(n, ho, count, kernel * c),
        strides=(hp * wp * c * item, stride * wp * c * item, step * stride * c * item, item))


def conv2d_patches(x_nhwc, w_rows, stride, padding, workspace):
    """Any stride, channels-last, from copies of the kernel-row strips:
    ``rows_i[(n, h, w), (j, c)] = x_pad[n, s*h + i, s*w + j, c]`` (N H' W', k C) for each
    kernel row i (together the patch matrix, split by kernel row), and
    ``y = sum_i rows_i @ W_rows[i]``.

    Args:
        x_nhwc: (N, H, W, C_in).
        w_rows: (k, k C_in, C_out) from :func:`kernel_rows`.
    Returns:
        y (N, H', W', C_out).
    """
    xp = get_array_module(x_nhwc)
    n, h, w, c = x_nhwc.shape
    k, _, c_out = w_rows.shape
    ho = conv_output_size(h, k, stride, padding)
    wo = conv_output_size(w, k, stride, padding)
    # contiguous (N, H + 2p, W + 2p, C), as the strip views' strides assume
    x_pad = xp.ascontiguousarray(workspace.padded(Role.PADDED, x_nhwc, padding, axes=(1, 2)))
    y = xp.empty((n * ho * wo, c_out), dtype=x_nhwc.dtype)
    for i in range(k):
        rows_i = _kernel_row_copy(x_pad, k, i, stride, ho, wo, workspace)
        if i == 0:
            xp.matmul(rows_i, w_rows[0], out=y)
        else:
            term = workspace.scratch(Role.TERM, y.shape, y.dtype, xp)
            y += xp.matmul(rows_i, w_rows[i], out=term)
    return y.reshape(n, ho, wo, c_out)


def _kernel_row_copy(x_pad, kernel, i, stride, ho, wo, workspace):
    """The strips of kernel row i for every output, copied into a contiguous scratch
    matrix (N H' W', k C) that BLAS takes as it is."""
    xp = get_array_module(x_pad)
    n, c = x_pad.shape[0], x_pad.shape[-1]
    rows = workspace.scratch(Role.PATCHES, (n, ho, wo, kernel * c), x_pad.dtype, xp)
    rows[...] = _row_strips(x_pad, kernel, i, stride, ho, wo)
    return rows.reshape(n * ho * wo, kernel * c)


def conv2d_patches_backward(x_nhwc, dy_nhwc, weight, stride, padding, workspace):
    """dL/dW and dL/dx of :func:`conv2d_patches`: ``dW_rows[i] = rows_i^T @ dy``, and
    col2im: the strips ``dy @ W_rows[i]^T`` are added back onto the pixels they came from,
    in steps that keep the strips written at once apart (see :func:`_row_strips`).

    Returns (dW of W's shape, dx (N, H, W, C_in) channels-last)."""
    xp = get_array_module(dy_nhwc)
    n, h, w, c = x_nhwc.shape
    c_out, _, k, _ = weight.shape
    _, ho, wo, _ = dy_nhwc.shape
    w_rows = kernel_rows(weight)
    # contiguous (N, H + 2p, W + 2p, C), as the strip views' strides assume
    x_pad = xp.ascontiguousarray(workspace.padded(Role.PADDED, x_nhwc, padding, axes=(1, 2)))
    dy = dy_nhwc.reshape(-1, c_out)
    dw_rows = xp.stack([xp.matmul(_kernel_row_copy(x_pad, k, i, stride, ho, wo, workspace).T, dy)
                        for i in range(k)])
    dw = dw_rows.reshape(k, k, c, c_out).transpose(3, 2, 0, 1)
    dx_pad = workspace.scratch(Role.DX_PADDED, (n, h + 2 * padding, w + 2 * padding, c),
                               dy_nhwc.dtype, xp)
    dx_pad[...] = 0
    step = -(-k // stride)                       # strips step * s >= k columns apart
    for first in range(min(step, wo)):
        dy_part = xp.ascontiguousarray(dy_nhwc[:, :, first::step])  # (N, H', count, C_out)
        dy_part = dy_part.reshape(-1, c_out)
        term = workspace.scratch(Role.TERM, (dy_part.shape[0], k * c), dy_part.dtype, xp)
        for i in range(k):
            view = _row_strips(dx_pad, k, i, stride, ho, wo, step, first)
            # one 2-D product (a 4-D operand would make matmul loop over N and H')
            view += xp.matmul(dy_part, w_rows[i].T, out=term).reshape(view.shape)
    # a copy even without padding: dx_pad is the workspace's, reused by the next backward
    dx = dx_pad[:, padding:padding + h, padding:padding + w].copy()
    return dw, dx


def im2col_reused(x, kernel, stride, padding, workspace):
    """The plain path's ``im2col`` (patches (C, k, k, N, H', W') of x (N, C, H, W)), with
    the padded copy and the result in the workspace's reused memory: the result must be
    used before the next call."""
    xp = get_array_module(x)
    n, c, h, w = x.shape
    ho = conv_output_size(h, kernel, stride, padding)
    wo = conv_output_size(w, kernel, stride, padding)
    x_cnhw = x.transpose(1, 0, 2, 3)                  # a view; free for channel-major x
    if kernel == 1 and padding == 0:                  # 1x1: the patches are the pixels
        return x_cnhw[:, None, None, :, ::stride, ::stride]
    cols = workspace.scratch(Role.PATCHES, (c, kernel, kernel, n, ho, wo), x.dtype, xp)
    return copy_patches(workspace.padded(Role.PADDED, x_cnhw, padding), cols, stride)


def conv2d_grouped(x, weight, stride, padding, groups, workspace):
    """y (N, C_out, H', W') channels-last, of a grouped convolution: per group g,
    ``y_mat[g] = W_mat[g] @ cols[g]`` over the patch matrix with a leading group axis."""
    xp = get_array_module(x)
    n = x.shape[0]
    c_out, _, k, _ = weight.shape
    ho = conv_output_size(x.shape[2], k, stride, padding)
    wo = conv_output_size(x.shape[3], k, stride, padding)
    cols = im2col_reused(x, k, stride, padding, workspace).reshape(groups, -1, n * ho * wo)
    w_mat = weight.reshape(groups, c_out // groups, -1)                  # (g, C_out/g, K)
    y_cnhw = xp.matmul(w_mat, cols).reshape(c_out, n, ho, wo)
    return channels_last(y_cnhw.transpose(1, 0, 2, 3))


def conv2d_grouped_backward(x, dy, weight, stride, padding, groups, workspace):
    """(dW, dx) of :func:`conv2d_grouped`: dW_mat = dy_mat @ cols^T and
    dx = col2im(W_mat^T @ dy_mat), per group."""
    xp = get_array_module(dy)
    n = x.shape[0]
    c_out, _, k, _ = weight.shape
    ho, wo = dy.shape[2:]
    # the patch matrix: dy as (g, C_out/g, N L), one copy from channels-last dy
    dy_mat = dy.transpose(1, 0, 2, 3).reshape(groups, c_out // groups, n * ho * wo)
    cols = im2col_reused(x, k, stride, padding, workspace).reshape(groups, -1, n * ho * wo)
    # dL/dW_mat = dy_mat @ cols^T, computed as (cols @ dy_mat^T)^T: the same numbers,
    # but BLAS runs this orientation ~1.5x faster for our tall, thin matrices
    dw = xp.matmul(cols, dy_mat.swapaxes(-1, -2)).swapaxes(-1, -2).reshape(weight.shape)
    w_mat = weight.reshape(groups, c_out // groups, -1)
    dcols = xp.matmul(w_mat.swapaxes(-1, -2), dy_mat)                     # W_mat^T @ dy_mat
    dx = col2im(dcols.reshape(x.shape[1], k, k, n, ho, wo), x.shape, k, stride, padding)
    return dw, channels_last(dx)
