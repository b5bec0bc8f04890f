"""Convolution as one matrix product over image patches (im2col), and its adjoint (col2im).
Derived step by step in ``notebooks/01_convolution.ipynb``.

The transformation F_tr of the paper's Eq. 1 is a convolution. In PyTorch's notation
(the paper's u_c(i, j) is one output channel o at one pixel):

    y[n, o, h, w] = b[o] + sum_{c, i, j} W[o, c, i, j] * x_pad[n, c, s*h + i, s*w + j]

With the patch matrix cols[(c, i, j), (n, h, w)] = x_pad[n, c, s*h + i, s*w + j], of
shape (C_in k k, N H' W'), the whole batch is one matrix product:

    Y = W_mat @ cols                 W_mat = W.reshape(C_out, C_in k k)

Its backward pass:

    dL/dW_mat = dL/dY @ cols^T
    dL/dcols  = W_mat^T @ dL/dY
    dL/dx     = col2im(dL/dcols)     each patch entry adds back onto the pixel it came from
    dL/db[o]  = sum_{n, h, w} dL/dy[n, o, h, w]

Groups split the channels into g independent convolutions: the matrices carry a leading
group axis, (g, C_in/g k k, N H' W'), and the same products run per group.

Rectangular kh x kw kernels at stride 1 (the 1 x 7 and 7 x 1 convolutions of Inception-ResNet,
``ns.nn.FactorizedConv2d``) are the same product over a kh x kw window:
``factorized_conv2d_forward`` / ``factorized_conv2d_backward``.

The fast path (``npsenet/nn/fast/``) computes the same numbers without building the patch
matrix for stride-1 convolutions; notebook 01 shows it as a rearrangement of these
equations.
"""
from __future__ import annotations

from ...backend import get_array_module


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """H' = floor((H + 2p - k) / s) + 1."""
    return (size + 2 * padding - kernel) // stride + 1


def pad_images(x, padding: int, value=0.0):
    """x (A, B, H, W) padded by p on both sides of the last two axes with ``value``:
    (A, B, H + 2p, W + 2p), a new array (x itself when p = 0)."""
    if padding == 0:
        return x
    xp = get_array_module(x)
    a, b, h, w = x.shape
    out = xp.full((a, b, h + 2 * padding, w + 2 * padding), value, dtype=x.dtype)
    out[:, :, padding:padding + h, padding:padding + w] = x
    return out


def offset_window(i, j, stride, ho, wo):
    """The strided window of a padded (A, B, Hp, Wp) array that kernel offset (i, j) reads:
    the pixels x_pad[:, :, s h + i, s w + j] for every output (h, w), as slices."""
    return (slice(None), slice(None),
            slice(i, i + stride * (ho - 1) + 1, stride),
            slice(j, j + stride * (wo - 1) + 1, stride))


def im2col(x, kernel: int, stride: int, padding: int):
    """The patches of x (N, C, H, W) as cols (C, k, k, N, H', W').

    ``cols[c, i, j, n, h, w] = x_pad[n, c, s*h + i, s*w + j]``; reshaped to
    (C k k, N H' W') it is the patch matrix. One strided copy of the whole batch per
    kernel offset (k*k of them): no loop over samples or pixels.
    """
    xp = get_array_module(x)
    n, c, h, w = x.shape
    ho = conv_output_size(h, kernel, stride, padding)
    wo = conv_output_size(w, kernel, stride, padding)
    x_pad = pad_images(x.transpose(1, 0, 2, 3), padding)       # (C, N, H + 2p, W + 2p)
    return copy_patches(x_pad, xp.empty((c, kernel, kernel, n, ho, wo), dtype=x.dtype), stride)


def copy_patches(x_pad, cols, stride):
    """im2col's loop: ``cols[:, i, j] = x_pad[:, :, s*h + i, s*w + j]`` for every kernel
    offset (i, j), from a padded (C, N, Hp, Wp) array into cols (C, k, k, N, H', W');
    returns cols."""
    kernel, (ho, wo) = cols.shape[1], cols.shape[-2:]
    for i in range(kernel):
        for j in range(kernel):
            cols[:, i, j] = x_pad[offset_window(i, j, stride, ho, wo)]
    return cols


def col2im(dcols, x_shape, kernel: int, stride: int, padding: int):
    """The adjoint of :func:`im2col`: every patch gradient added back onto its pixel.

    Args:
        dcols: (C, k, k, N, H', W'), dL/dcols.
        x_shape: (N, C, H, W) of the unpadded input.
    Returns:
        dx of shape ``x_shape`` (a view of channel-major memory). Overlapping patches
        (stride < k) add up, which is why this is a sum over kernel offsets of strided
        ``+=``, never an assignment (and never ``np.add.at``: no two entries of one
        offset's window are the same pixel).
    """
    xp = get_array_module(dcols)
    n, c, h, w = x_shape
    ho, wo = dcols.shape[-2:]
    dx_pad = xp.zeros((c, n, h + 2 * padding, w + 2 * padding), dtype=dcols.dtype)
    for i in range(kernel):
        for j in range(kernel):
            dx_pad[offset_window(i, j, stride, ho, wo)] += dcols[:, i, j]
    return dx_pad[:, :, padding:padding + h, padding:padding + w].transpose(1, 0, 2, 3)


def conv2d_forward(x, weight, bias, stride=1, padding=0, groups=1):
    """y = W * x + b, one matrix product per group over the patch matrix.

    Args:
        x: (N, C_in, H, W).
        weight: W (C_out, C_in/g, k, k).
        bias: b (C_out,) or None.
        stride, padding, groups: s, p and g.
    Returns:
        y (N, C_out, H', W') with H' = floor((H + 2p - k)/s) + 1, and the cache
        (x, weight, stride, padding, groups, has_bias) for :func:`conv2d_backward`.
    """
    xp = get_array_module(x)
    n = x.shape[0]
    c_out, _, k, _ = weight.shape
    cols = im2col(x, k, stride, padding)                       # (C_in, k, k, N, H', W')
    ho, wo = cols.shape[-2:]
    cols = cols.reshape(groups, -1, n * ho * wo)               # (g, C_in/g k k, N H' W')
    w_mat = weight.reshape(groups, c_out // groups, -1)        # (g, C_out/g, C_in/g k k)
    y = xp.matmul(w_mat, cols).reshape(c_out, n, ho, wo).transpose(1, 0, 2, 3)
    if bias is not None:
        y = y + bias[None, :, None, None]
    return y, (x, weight, stride, padding, groups, bias is not None)


def conv2d_backward(dy, cache):
    """dL/dx, dL/dW and dL/db of :func:`conv2d_forward`.

    Args:
        dy: (N, C_out, H', W'), dL/dy.
        cache: from :func:`conv2d_forward`.
    Returns:
        dx (N, C_in, H, W), dW (C_out, C_in/g, k, k), and db (C_out,) (None without bias).
    """
    x, weight, stride, padding, groups, has_bias = cache
    xp = get_array_module(dy)
    n = x.shape[0]
    c_out, _, k, _ = weight.shape
    ho, wo = dy.shape[2:]
    dy_mat = dy.transpose(1, 0, 2, 3).reshape(groups, c_out // groups, n * ho * wo)
    cols = im2col(x, k, stride, padding).reshape(groups, -1, n * ho * wo)   # rebuilt from x
    dw = xp.matmul(dy_mat, cols.swapaxes(1, 2)).reshape(weight.shape)       # dY cols^T
    w_mat = weight.reshape(groups, c_out // groups, -1)
    dcols = xp.matmul(w_mat.swapaxes(1, 2), dy_mat)                         # W_mat^T dY
    dx = col2im(dcols.reshape(x.shape[1], k, k, n, ho, wo), x.shape, k, stride, padding)
    db = dy.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dw, db


# -- rectangular kernels, stride 1 (Inception-ResNet's 1 x 7, 7 x 1, 1 x 3, 3 x 1) ----------
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
