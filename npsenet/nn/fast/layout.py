"""The channels-last layout, and per-channel sums and broadcasts that are fast in it.

On the fast path, activations keep the (N, C, H, W) shape of the API, but their memory is
laid out as (N, H, W, C), the layout PyTorch calls ``channels_last``: a convolution returns
the transposed *view* ``y_nhwc.transpose(0, 3, 1, 2)``, element-wise layers keep the
layout, and the next convolution's ``x.transpose(0, 2, 3, 1)`` is free. In this layout the
k pixels of one kernel row are k*C consecutive numbers (see ``conv_strips.py``).

NumPy handles a per-channel operation badly in its plain form:

* ``a.sum(axis=(0, 2, 3))`` walks one inner loop of only C numbers per pixel, about 10x
  slower than reading the same memory as a (pixels, C) matrix and multiplying it by a
  vector of ones, which BLAS does at memory speed; sums of products go through
  ``einsum``, which also skips making the product array, over rows of several pixels;
* ``a * v[None, :, None, None]`` likewise runs its inner loop over the C channels of one
  pixel; repeating v so that it lines up with a whole image (H*W*C numbers) lets the
  loop run over the image instead (3x faster for 16 channels at 32x32).

Both give the plain expressions' results (sums up to the order of the additions);
arrays in any other layout take the plain expressions.
"""
from __future__ import annotations

from ...backend import get_array_module


def is_channels_last(a):
    """Whether (N, C, H, W) ``a`` is laid out contiguously as (N, H, W, C)."""
    return a.transpose(0, 2, 3, 1).flags.c_contiguous


def channels_last(a):
    """``a`` (N, C, H, W) with channels-last memory: ``a`` itself if it has it already,
    else a copy laid out as (N, H, W, C) and returned as the (N, C, H, W) view of it."""
    if is_channels_last(a):
        return a
    return get_array_module(a).ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def sum_over_batch_and_space(a):
    """sum_{n, h, w} a[n, c, h, w]: (N, C, H, W) -> (C,)."""
    if not is_channels_last(a):
        return a.sum(axis=(0, 2, 3))
    xp = get_array_module(a)
    pixels = a.transpose(0, 2, 3, 1).reshape(-1, a.shape[1])            # (N H W, C), a view
    return xp.matmul(xp.ones(pixels.shape[0], dtype=a.dtype), pixels)


def sum_over_space(a):
    """sum_{h, w} a[n, c, h, w]: (N, C, H, W) -> (N, C)."""
    if not is_channels_last(a):
        return a.sum(axis=(2, 3))
    xp = get_array_module(a)
    n, c = a.shape[:2]
    pixels = a.transpose(0, 2, 3, 1).reshape(n, -1, c)                  # (N, H W, C), a view
    return xp.matmul(xp.ones(pixels.shape[1], dtype=a.dtype), pixels)


_WIDE_ROW = 256   # numbers per row of the matrices einsum reduces (see _wide_rows)


def _wide_rows(pixels_by_c, c):
    """A (..., P, C) view read as (..., P / g, g C): g pixels per row, the largest g that
    divides P with g C <= _WIDE_ROW. einsum's inner loop runs along a row, so C numbers
    per row leave it mostly loop overhead; column j of the wide rows is channel j mod C,
    and summing the g column groups afterwards gives the per-channel sums (2-2.5x faster
    at 16-32 channels, and more accurate: g partial sums instead of one)."""
    p = pixels_by_c.shape[-2]
    g = next(g for g in range(max(1, _WIDE_ROW // c), 0, -1) if p % g == 0)
    return pixels_by_c.reshape(pixels_by_c.shape[:-2] + (p // g, g * c)), g


def sum_of_products_over_batch_and_space(a, b):
    """sum_{n, h, w} a[n, c, h, w] * b[n, c, h, w]: (N, C, H, W) twice -> (C,), without
    making the product array (einsum multiplies and adds in one pass)."""
    if not (is_channels_last(a) and is_channels_last(b)):
        return (a * b).sum(axis=(0, 2, 3))
    xp = get_array_module(a)
    c = a.shape[1]
    wide_a, g = _wide_rows(a.transpose(0, 2, 3, 1).reshape(-1, c), c)
    wide_b, _ = _wide_rows(b.transpose(0, 2, 3, 1).reshape(-1, c), c)
    return xp.einsum("pj,pj->j", wide_a, wide_b).reshape(g, c).sum(axis=0)


def sum_of_products_over_space(a, b):
    """sum_{h, w} a[n, c, h, w] * b[n, c, h, w]: (N, C, H, W) twice -> (N, C)."""
    if not (is_channels_last(a) and is_channels_last(b)):
        return (a * b).sum(axis=(2, 3))
    xp = get_array_module(a)
    n, c = a.shape[:2]
    wide_a, g = _wide_rows(a.transpose(0, 2, 3, 1).reshape(n, -1, c), c)
    wide_b, _ = _wide_rows(b.transpose(0, 2, 3, 1).reshape(n, -1, c), c)
    return xp.einsum("npj,npj->nj", wide_a, wide_b).reshape(n, g, c).sum(axis=1)


_WHOLE_IMAGE_MAX = 65536   # numbers: repeat a (C,) vector over whole images up to 256 KB


def per_channel(v, a):
    """``v`` of shape (C,) or (N, C) as an array that broadcasts over ``a`` (N, C, H, W):
    ``a * per_channel(v, a)`` is ``a * v[..., :, None, None]``.

    For channels-last ``a`` it is v repeated to line up with a's memory: a (C,) vector
    over one whole image, shaped (1, C, H, W) with the memory of (H, W, C), so that NumPy
    merges H, W and C into one inner loop of H*W*C numbers; an (N, C) vector, or a (C,)
    one for images larger than ``_WHOLE_IMAGE_MAX`` numbers, over one image row, shaped
    (N or 1, C, 1, W) with the memory of (W, C) (an inner loop of W*C numbers).
    """
    c, h, w = a.shape[1], a.shape[2], a.shape[3]
    if not is_channels_last(a) or w == 1:
        return v.reshape(-1, c, 1, 1)
    xp = get_array_module(v)
    if v.ndim == 1 and h * w * c <= _WHOLE_IMAGE_MAX:
        image = xp.tile(v, h * w).reshape(1, h, w, c)                   # one whole image
        return image.transpose(0, 3, 1, 2)                              # (1, C, H, W)
    v = v.reshape(-1, c)
    row = xp.tile(v, (1, w)).reshape(v.shape[0], w, c)                  # one image row
    return row.transpose(0, 2, 1)[:, :, None, :]                        # (1 or N, C, 1, W)
