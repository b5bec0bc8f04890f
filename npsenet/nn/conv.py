"""Convolution: forward as matrix products over image patches, backward as their
adjoint. Derived step by step in ``notebooks/01_convolution.ipynb``.

Notation (PyTorch's; the paper's u_c(i, j) is one output channel):

    y[n, o, h, w] = b[o] + sum_{c, i, j} W[o, c, i, j] * x_pad[n, c, s*h + i, s*w + j]

With the patch matrix ``cols[(c, i, j), (n, h, w)] = x_pad[n, c, s*h + i, s*w + j]``, of
shape (C_in k k, N H' W'), the whole batch is one matrix product,
``y_mat = W_mat @ cols`` with ``W_mat = W.reshape(C_out, C_in k k)``. The backward pass:

    dL/dW_mat = dy_mat @ cols^T
    dL/dcols  = W_mat^T @ dy_mat
    dL/dx     = col2im(dL/dcols)     (each patch entry adds back onto the pixel it came from)
    dL/db[o]  = sum_{n, h, w} dy[n, o, h, w]

For stride 1, dx is itself a convolution: of dy, padded by k - 1 - p, with the kernel
flipped in space and its channel axes swapped. Stride-1 convolutions therefore need no
col2im, and they need no patch matrix either (the fast path below).

Groups split the channels into g independent convolutions; the matrices then carry a
leading group axis, (g, C_in/g k k, N H' W'), and the same products run per group.

How ``Conv2d`` runs it fast (the plain, loop-over-everything version is
``tests/reference.py``; notebook 01, section 5, derives the fast one):

* Channels-last memory. Activations keep the (N, C, H, W) shape of the API, but their
  memory is laid out as (N, H, W, C), the layout PyTorch calls ``channels_last``: the
  convolution returns the transposed *view* ``y_nhwc.transpose(0, 3, 1, 2)``, element-wise
  layers keep the layout, and the next convolution's ``x.transpose(0, 2, 3, 1)`` is free.
* Stride 1 needs no patch matrix at all (:func:`conv2d_strips`). In channels-last memory
  the k pixels of one kernel row, x_pad[n, h + i, w:w + k, :], are k*C consecutive numbers:
  a *strip*. With the batch laid side by side as one wide, zero-padded image
  (:class:`StripGrid`), the strips of outputs w, w + k, w + 2k, ... lie end to end, so for
  one kernel row i and one residue r = w mod k, all of them together are an ordinary
  matrix *view* of that image, of shape (positions, k C), and

      y[outputs with w = r (mod k)] = sum_i strips(i, r) @ W_rows[i]
      with W_rows[i][(j, c), o] = W[o, c, i, j],

  k*k matrix products over views instead of one product over a k*k times larger copy.
  The backward pass uses the same views: dW_rows[i] = sum_r strips(i, r)^T @ dy(r), and
  dx is itself a stride-1 convolution (of dy with the flipped kernel), so it runs the
  same forward code.
* Strided convolutions copy their strips (:func:`conv2d_patches`): with stride s < k the
  strips of neighbouring outputs overlap, so they cannot be one matrix view, but each
  kernel row's strips are one strided view, copied whole (k copies, the patch matrix
  split by kernel row). col2im adds them back through views whose strips do not overlap.
* Grouped convolutions use the classic patch matrix (:func:`im2col`, :func:`col2im`):
  one large matrix product per group instead of one per sample, with im2col and col2im
  looping over the k*k kernel offsets (at most 49), one strided copy or ``+=`` of the
  whole batch each: no loop over samples or pixels, no ``np.add.at`` scatter.
* Scratch memory is reused (:class:`Workspace`, in ``nn/_workspace.py``): the padded
  inputs, patch matrices and partial products are tens of MB, and fresh memory that large
  is expensive (page faults, cold caches). Scratch lives only inside one forward or
  backward call, with one exception: a stride-1 convolution keeps its input's filled grid
  from forward to backward, whose weight gradient reads it (so x is not copied onto a grid
  twice), in a buffer the workspace *lends* and takes back for the next forward.
"""
from __future__ import annotations

import math

from ..backend import get_array_module
from .. import init
from ._checks import check_dout, check_input, pair, positive_int
from ._channels import is_channels_last, sum_over_batch_and_space
from ._workspace import Workspace, workspace  # noqa: F401  (Workspace: for the notebooks)
from .module import Module, Parameter, is_grad_enabled


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """H' = floor((H + 2p - k) / s) + 1."""
    return (size + 2 * padding - kernel) // stride + 1


def pad_images(x, padding: int, value=0.0):
    """Pad the last two (spatial) axes of a 4-D array with ``value`` (zeros by default)."""
    if padding == 0:
        return x
    xp = get_array_module(x)
    a, b, h, w = x.shape
    out = xp.full((a, b, h + 2 * padding, w + 2 * padding), value, dtype=x.dtype)
    out[:, :, padding:padding + h, padding:padding + w] = x
    return out


def _offset_slices(i, j, stride, ho, wo):
    """The strided window that kernel offset (i, j) reads from the padded input."""
    return (slice(None), slice(None),
            slice(i, i + stride * (ho - 1) + 1, stride),
            slice(j, j + stride * (wo - 1) + 1, stride))


def channels_last(a):
    """``a`` (N, C, H, W) with channels-last memory: ``a`` itself if it has it already,
    else a copy laid out as (N, H, W, C) and returned as the (N, C, H, W) view of it."""
    if is_channels_last(a):
        return a
    return get_array_module(a).ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


class StripGrid:
    """The zero-padded, channels-last input of a stride-1 convolution, read as strips.

    The batch is laid out as one wide image: the N images side by side, each row of the
    grid holding row h of every image, with a gap of ``s`` zero columns between
    neighbours and p zero rows above and below. A convolution of the wide image is then
    the convolution of every image, provided each gap holds the padding of both its
    neighbours (s >= p; windows reach at most p columns past an image's edge) and the W'
    outputs of an image fit before the next one (W + s >= W'). s is also chosen so that
    W + s is a multiple of k (see below). Shape of the grid: (H + 2p, Wg, C), stored flat and
    followed by a little zero slack so that every strip view stays inside the array.

    Output positions are the grid positions (h, v) with h < H': output (n, h, w) is
    v = n (W + s) + w. Grouped by the residue r = v mod k (which is w mod k, as W + s is a
    multiple of k), position t of residue r is v = r + k t, and there are
    ``rows = H' Wg / k`` of them. Positions in the gaps are computed and dropped: (W + s)/W'
    - 1 extra arithmetic (3% at 32x32, 12% at 8x8).

    ``strips(i, r)`` is the (rows, k C) matrix whose row (h, t) holds the k*C numbers of
    x_grid[h + i, v:v + k, :], read in place: consecutive positions of a residue start
    k*C numbers apart, exactly the length of a strip, so the view is an ordinary
    C-contiguous matrix that BLAS takes as it is.
    """

    def __init__(self, shape, kernel, padding):
        n, h, w, c = shape
        self.shape, self.k, self.p, self.c = tuple(shape), kernel, padding, c
        gap = max(padding, 2 * padding - kernel + 1)     # zeros for both neighbours; W' <= W + gap
        self.gap = gap + (-(w + gap)) % kernel           # the smallest with (W + gap) % k == 0
        self.hp = h + 2 * padding
        columns = padding + n * (w + self.gap)            # the last image and its right padding
        self.t = -(-columns // kernel)                    # positions per grid row and residue
        self.wg = self.t * kernel
        self.ho = self.hp - kernel + 1                    # output rows H'
        self.wo = w + 2 * padding - kernel + 1            # output columns W'
        self.rows = self.ho * self.t
        self.size = self.hp * self.wg * c
        self.slack = ((kernel - 1) * self.wg + kernel - 1) * c   # reach of the last strip

    def images(self, grid, rows):
        """The per-image blocks of the first ``rows`` rows of a (H + 2p, Wg, C') grid, as an
        (N, rows, W + s, C') view: ``images(grid, rows)[n, h, w]`` is grid[h, n (W + s) + w]."""
        n, _, w, _ = self.shape
        block = grid[:rows, :n * (w + self.gap)]
        return block.reshape(rows, n, w + self.gap, grid.shape[-1]).transpose(1, 0, 2, 3)

    def fill(self, x_nhwc, scratch, role, keep=False):
        """Copy x (N, H, W, C) into the grid's reused buffer; returns the flat grid.

        With ``keep``, the buffer is lent by ``scratch`` (:meth:`Workspace.lend`) rather
        than shared: it stays the caller's until :meth:`give_back`, so it can be kept
        while other layers fill grids of the same shape."""
        n, h, w, c = self.shape
        p, xp = self.p, get_array_module(x_nhwc)
        get = scratch.lend if keep else scratch.zeroed
        flat = get(xp, (role, self.shape, self.k, p), self.size + self.slack, x_nhwc.dtype)
        grid = flat[:self.size].reshape(self.hp, self.wg, c)
        self.images(grid[p:, p:], h)[:, :, :w] = x_nhwc
        return flat

    def give_back(self, flat, scratch, role):
        """Return a buffer that ``fill(..., keep=True)`` lent, for the next fill to reuse."""
        scratch.give_back(get_array_module(flat), (role, self.shape, self.k, self.p), flat)

    def strips(self, flat, i, r):
        start = (i * self.wg + r) * self.c                # grid[i, r, 0]
        kc = self.k * self.c
        return flat[start:start + self.rows * kc].reshape(self.rows, kc)

    def residue(self, grid, r):
        """Positions of residue r of an (H + 2p, Wg, C') array, as a (rows, C') view."""
        return grid[:self.ho, r::self.k].reshape(self.rows, grid.shape[-1])

    def outputs(self, grid, r):
        """The outputs of residue r in an (H', Wg / k, C') array of residue-r results,
        as an (N, H', count, C') view: their w = r, r + k, r + 2k, ... < W'."""
        per_image = (self.shape[2] + self.gap) // self.k
        block = grid[:, :self.shape[0] * per_image]
        block = block.reshape(self.ho, self.shape[0], per_image, grid.shape[-1])
        return block[:, :, :len(range(r, self.wo, self.k))].transpose(1, 0, 2, 3)


def kernel_rows(weight):
    """W (C_out, C_in, k, k) as W_rows (k, k C_in, C_out): W_rows[i][(j, c), o] = W[o, c, i, j]."""
    c_out, c_in, k, _ = weight.shape
    return weight.transpose(2, 3, 1, 0).reshape(k, k * c_in, c_out)


def conv2d_strips(x_nhwc, w_rows, padding, scratch):
    """Stride-1 convolution of channels-last x, no patch matrix (see :class:`StripGrid`).

    Args:
        x_nhwc: (N, H, W, C_in).
        w_rows: (k, k C_in, C_out), from :func:`kernel_rows`.
        padding: p.
        scratch: a :class:`Workspace` for the padded grid and the partial products.
    Returns:
        y (N, H', W', C_out), a new array:
        ``y[n, h, w, o] = sum_i sum_(j, c) x_pad[n, h + i, w + j, c] * W_rows[i][(j, c), o]``.
    """
    xp = get_array_module(x_nhwc)
    n, h, w, c_in = x_nhwc.shape
    k, _, c_out = w_rows.shape
    ho, wo = h + 2 * padding - k + 1, w + 2 * padding - k + 1
    if k == 1 and padding == 0:                   # 1x1: one matrix product over the pixels
        return xp.matmul(x_nhwc.reshape(-1, c_in), w_rows[0]).reshape(n, ho, wo, c_out)
    grid = StripGrid(x_nhwc.shape, k, padding)
    return _strip_products(grid, grid.fill(x_nhwc, scratch, "x"), w_rows, scratch)


def _strip_products(grid, flat, w_rows, scratch):
    """y (N, H', W', C_out) = sum_i strips(i, r) @ W_rows[i] for each residue r, from a
    filled grid (see :func:`conv2d_strips`)."""
    xp = get_array_module(flat)
    k, _, c_out = w_rows.shape
    y = xp.empty((grid.shape[0], grid.ho, grid.wo, c_out), dtype=flat.dtype)
    acc = scratch.empty(xp, (grid.rows, c_out), flat.dtype, slot="strips: sum")
    part = scratch.empty(xp, (grid.rows, c_out), flat.dtype, slot="strips: term")
    for r in range(min(k, grid.wo)):              # output columns w = r, r + k, r + 2k, ...
        xp.matmul(grid.strips(flat, 0, r), w_rows[0], out=acc)
        for i in range(1, k):                     # kernel rows
            acc += xp.matmul(grid.strips(flat, i, r), w_rows[i], out=part)
        y[:, :, r::k] = grid.outputs(acc.reshape(grid.ho, grid.t, c_out), r)
    return y


def conv2d_strips_backward(x_nhwc, dy_nhwc, weight, padding, scratch, x_grid=None):
    """dL/dW and dL/dx of :func:`conv2d_strips`.

    dW: the forward sum pairs strip entry (j, c) of position (h, t) with that position's
    output, so ``dW_rows[i] = sum_r strips(i, r)^T @ dy(r)``, where dy(r) are the upstream
    gradients of residue r laid out on the same grid (zeros at the dropped positions).

    dx: substituting h' = h + i - p in the forward sum gives a stride-1 convolution of dy,
    padded by q = k - 1 - p, with the kernel flipped in space and its channel axes
    swapped: ``dx[n, h, w, c] = sum_{o, i, j} W[o, c, k-1-i, k-1-j] dy_pad[n, h + i, w + j, o]``.
    Needs p <= k - 1.

    Args:
        x_nhwc: (N, H, W, C_in), the forward input (None if ``x_grid`` is given).
        dy_nhwc: (N, H', W', C_out). weight: W (C_out, C_in, k, k).
        x_grid: x already on its grid, the pair (StripGrid, flat grid) that the forward
            filled and kept (see ``Conv2d``), or None to fill the grid here.
    Returns:
        (dW of W's shape, dx (N, H, W, C_in)).
    """
    xp = get_array_module(dy_nhwc)
    c_out, _, k, _ = weight.shape
    _, ho, wo, _ = dy_nhwc.shape
    if k == 1 and padding == 0:                   # 1x1: dW = x^T dy, dx = dy W over the pixels
        n, h, w, c_in = x_nhwc.shape
        x_pixels, dy_pixels = x_nhwc.reshape(-1, c_in), dy_nhwc.reshape(-1, c_out)
        w_mat = weight.reshape(c_out, c_in)
        dw = xp.matmul(x_pixels.T, dy_pixels).T.reshape(weight.shape)
        return dw, xp.matmul(dy_pixels, w_mat).reshape(n, h, w, c_in)
    if x_grid is None:                            # the forward did not keep x's grid: fill it
        grid = StripGrid(x_nhwc.shape, k, padding)
        x_grid = grid, grid.fill(x_nhwc, scratch, "x")
    grid, flat = x_grid
    n, h, w, c_in = grid.shape
    q = k - 1 - padding                                  # dx: the convolution of dy padded by q
    dy_padded = StripGrid(dy_nhwc.shape, k, q)
    dy_flat = dy_padded.fill(dy_nhwc, scratch, "dy")
    dy_shape = (grid.hp, grid.wg, c_out)
    if (dy_padded.hp, dy_padded.wg, dy_padded.gap + wo) == (grid.hp, grid.wg, grid.gap + w):
        # "same" convolutions (H' = H): dy padded by q is dy on the grid of x, moved by q
        # rows and q columns, so dW reads it from there instead of from a second copy
        start = (q * grid.wg + q) * c_out
        dy_grid = dy_flat[start:start + math.prod(dy_shape)].reshape(dy_shape)
    else:
        key = ("dy on the grid of x", grid.shape, k, padding, c_out)
        dy_grid = scratch.zeroed(xp, key, math.prod(dy_shape), dy_nhwc.dtype).reshape(dy_shape)
        grid.images(dy_grid, ho)[:, :, :wo] = dy_nhwc
    dw_rows = xp.zeros((k, k * c_in, c_out), dtype=dy_nhwc.dtype)
    for r in range(min(k, wo)):
        dy_r = grid.residue(dy_grid, r)                                 # (rows, C_out)
        for i in range(k):
            dw_rows[i] += xp.matmul(grid.strips(flat, i, r).T, dy_r)
    dw = dw_rows.reshape(k, k, c_in, c_out).transpose(3, 2, 0, 1)
    flipped = weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)            # (C_in, C_out, k, k)
    return dw, _strip_products(dy_padded, dy_flat, kernel_rows(flipped), scratch)


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


def conv2d_patches(x_nhwc, w_rows, stride, padding, scratch):
    """Any stride, channels-last, from copies of the kernel-row strips:
    ``rows_i[(n, h, w), (j, c)] = x_pad[n, s*h + i, s*w + j, c]`` (N H' W', k C) for each
    kernel row i (together the patch matrix, split by kernel row), and
    ``y = sum_i rows_i @ W_rows[i]``.

    Args:
        x_nhwc: (N, H, W, C_in). w_rows: (k, k C_in, C_out) from :func:`kernel_rows`.
    Returns:
        y (N, H', W', C_out).
    """
    xp = get_array_module(x_nhwc)
    n, h, w, c = x_nhwc.shape
    k, _, c_out = w_rows.shape
    ho = conv_output_size(h, k, stride, padding)
    wo = conv_output_size(w, k, stride, padding)
    # contiguous (N, H + 2p, W + 2p, C), as the strip views' strides assume
    x_pad = xp.ascontiguousarray(scratch.padded(x_nhwc, padding, axes=(1, 2)))
    y = xp.empty((n * ho * wo, c_out), dtype=x_nhwc.dtype)
    for i in range(k):
        rows_i = _kernel_row_copy(x_pad, k, i, stride, ho, wo, scratch)
        if i == 0:
            xp.matmul(rows_i, w_rows[0], out=y)
        else:
            y += xp.matmul(rows_i, w_rows[i], out=scratch.empty(xp, y.shape, y.dtype, "term"))
    return y.reshape(n, ho, wo, c_out)


def _kernel_row_copy(x_pad, kernel, i, stride, ho, wo, scratch):
    """The strips of kernel row i for every output, copied into a contiguous scratch
    matrix (N H' W', k C) that BLAS takes as it is."""
    xp = get_array_module(x_pad)
    n, c = x_pad.shape[0], x_pad.shape[-1]
    rows = scratch.empty(xp, (n, ho, wo, kernel * c), x_pad.dtype)
    rows[...] = _row_strips(x_pad, kernel, i, stride, ho, wo)
    return rows.reshape(n * ho * wo, kernel * c)


def conv2d_patches_backward(x_nhwc, dy_nhwc, weight, stride, padding, scratch):
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
    x_pad = xp.ascontiguousarray(scratch.padded(x_nhwc, padding, axes=(1, 2)))
    dy = dy_nhwc.reshape(-1, c_out)
    dw_rows = xp.stack([xp.matmul(_kernel_row_copy(x_pad, k, i, stride, ho, wo, scratch).T, dy)
                        for i in range(k)])
    dw = dw_rows.reshape(k, k, c, c_out).transpose(3, 2, 0, 1)
    dx_pad = scratch.empty(xp, (n, h + 2 * padding, w + 2 * padding, c), dy_nhwc.dtype, "dx")
    dx_pad[...] = 0
    step = -(-k // stride)                       # strips step * s >= k columns apart
    for first in range(min(step, wo)):
        dy_part = xp.ascontiguousarray(dy_nhwc[:, :, first::step])  # (N, H', count, C_out)
        dy_part = dy_part.reshape(-1, c_out)
        term = scratch.empty(xp, (dy_part.shape[0], k * c), dy_part.dtype, "term")
        for i in range(k):
            view = _row_strips(dx_pad, k, i, stride, ho, wo, step, first)
            # one 2-D product (a 4-D operand would make matmul loop over N and H')
            view += xp.matmul(dy_part, w_rows[i].T, out=term).reshape(view.shape)
    dx = xp.ascontiguousarray(dx_pad[:, padding:padding + h, padding:padding + w])
    return dw, dx


def im2col(x, kernel: int, stride: int, padding: int, scratch=None):
    """Patches of ``x`` (N, C, H, W) as an array of shape (C, k, k, N, H', W').

    ``cols[c, i, j, n, h, w] = x_pad[n, c, s*h + i, s*w + j]``; reshaped to
    (C k k, N H' W') it is the patch matrix. One strided slice is copied per kernel offset.
    With a :class:`Workspace` as ``scratch``, the padded copy and the result live in its
    reused buffers (so the result must be used before the next call).
    """
    xp = get_array_module(x)
    n, c, h, w = x.shape
    ho = conv_output_size(h, kernel, stride, padding)
    wo = conv_output_size(w, kernel, stride, padding)
    x_cnhw = x.transpose(1, 0, 2, 3)                  # a view; free for channel-major x
    if kernel == 1 and padding == 0:                  # 1x1: the patches are the pixels
        return x_cnhw[:, None, None, :, ::stride, ::stride]
    shape = (c, kernel, kernel, n, ho, wo)
    if scratch is None:
        x_pad, cols = pad_images(x_cnhw, padding), xp.empty(shape, dtype=x.dtype)
    else:
        x_pad, cols = scratch.padded(x_cnhw, padding), scratch.empty(xp, shape, x.dtype)
    for i in range(kernel):
        for j in range(kernel):
            cols[:, i, j] = x_pad[_offset_slices(i, j, stride, ho, wo)]
    return cols


def col2im(dcols, x_shape, kernel: int, stride: int, padding: int):
    """The adjoint of :func:`im2col`: add each patch gradient back onto its pixel.

    Args:
        dcols: (C, k, k, N, H', W') gradient with respect to the patches.
        x_shape: (N, C, H, W) of the unpadded input.
    Returns:
        dx of shape ``x_shape`` (a channel-major view, like the convolution's output).
        Overlapping patches (stride < k) add up, which is why this is a sum over kernel
        offsets of strided ``+=``, never an assignment.
    """
    xp = get_array_module(dcols)
    n, c, h, w = x_shape
    ho, wo = dcols.shape[-2:]
    dx_pad = xp.zeros((c, n, h + 2 * padding, w + 2 * padding), dtype=dcols.dtype)
    for i in range(kernel):
        for j in range(kernel):
            dx_pad[_offset_slices(i, j, stride, ho, wo)] += dcols[:, i, j]
    return dx_pad[:, :, padding:padding + h, padding:padding + w].transpose(1, 0, 2, 3)


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

    forward(x): x (N, C_in, H, W) -> y (N, C_out, H', W'), its memory channels-last.
    backward(dy): dy (N, C_out, H', W') -> dx (N, C_in, H, W); adds dL/dW (and dL/db)
    into ``weight.grad`` (``bias.grad``).

    Stride 1 (and 1x1 kernels without padding) run :func:`conv2d_strips`, other strides
    :func:`conv2d_patches`, grouped convolutions :func:`im2col` and :func:`col2im`; all
    compute the same numbers (see the module docstring).
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

    @staticmethod
    def _patches(x, k, s, p):
        """im2col into the shared scratch buffers (used at once, never kept)."""
        return im2col(x, k, s, p, scratch=workspace)

    def output_shape(self, input_shape):
        n, _, h, w = input_shape
        k, s, p = self.kernel_size, self.stride, self.padding
        return (n, self.out_channels, conv_output_size(h, k, s, p), conv_output_size(w, k, s, p))

    def _uses_strips(self):
        """Stride 1, or a 1x1 kernel without padding (which with stride s is a stride-1
        convolution of x[:, :, ::s, ::s]), and no groups: :func:`conv2d_strips`."""
        k, s, p = self.kernel_size, self.stride, self.padding
        return self.groups == 1 and (s == 1 or (k == 1 and p == 0))

    def _keeps_grid(self):
        """Whether forward keeps x's filled strip grid for backward's dW instead of x: the
        strip convolutions that fill one (all but 1x1 kernels without padding) and whose
        backward reads it (p <= k - 1), when a backward can follow (not under no_grad)."""
        k, p = self.kernel_size, self.padding
        return self._uses_strips() and (k > 1 or p > 0) and p <= k - 1 and is_grad_enabled()

    def forward(self, x):
        check_input(x, self._describe(), 4, "(N, C, H, W)", self.in_channels,
                    dtype=self.weight.dtype)
        n, _, h, w = x.shape
        k, s, p = self.kernel_size, self.stride, self.padding
        ho, wo = self.output_shape(x.shape)[2:]
        if ho < 1 or wo < 1:
            raise ValueError(f"{self._describe()}: the input of spatial size {h}x{w} is smaller "
                             f"than the kernel ({k}x{k}) even after padding {p}. Use a larger "
                             "input or more padding.")
        # Cache x, not patches: backward rebuilds what it needs from x. Where forward has
        # filled x's strip grid, which backward's dW reads, it keeps that grid instead (a
        # buffer lent by the workspace), so backward need not fill it again, and x itself
        # can go once the layers before are done with it (ReLU keeps only a mask).
        self.cache = (x.shape, x.dtype, x, None)
        if self.groups == 1:
            w_rows = kernel_rows(self.weight.data)
            if self._uses_strips():
                x_nhwc = x[:, :, ::s, ::s].transpose(0, 2, 3, 1)  # a view; free for channels-last x
                if self._keeps_grid():            # conv2d_strips, with x's grid kept
                    grid = StripGrid(x_nhwc.shape, k, p)
                    flat = grid.fill(x_nhwc, workspace, "x kept", keep=True)
                    self.cache = (x.shape, x.dtype, None, (grid, flat))
                    y_nhwc = _strip_products(grid, flat, w_rows, workspace)
                else:
                    y_nhwc = conv2d_strips(x_nhwc, w_rows, p, workspace)
            else:
                y_nhwc = conv2d_patches(x.transpose(0, 2, 3, 1), w_rows, s, p, workspace)
            if self.bias is not None:
                y_nhwc += self.bias.data
            return y_nhwc.transpose(0, 3, 1, 2)         # (N, C_out, H', W'), channels-last memory
        # groups: the patch matrix in (C k k, N H' W') order, with a leading group axis
        xp = get_array_module(x)
        g = self.groups
        cols = self._patches(x, k, s, p).reshape(g, -1, n * ho * wo)      # (g, K, N L)
        w_mat = self.weight.data.reshape(g, self.out_channels // g, -1)   # (g, C_out/g, K)
        y_cnhw = xp.matmul(w_mat, cols).reshape(self.out_channels, n, ho, wo)
        if self.bias is not None:
            y_cnhw += self.bias.data.reshape(-1, 1, 1, 1)
        return channels_last(y_cnhw.transpose(1, 0, 2, 3))

    def backward(self, dout):
        x_shape, x_dtype, x, x_grid = self.saved_cache()   # x or, if kept, x's strip grid
        n = x_shape[0]
        g, k, s, p = self.groups, self.kernel_size, self.stride, self.padding
        ho, wo = self.output_shape(x_shape)[2:]
        check_dout(dout, (n, self.out_channels, ho, wo), "Conv2d", x_dtype)
        self.release_cache()
        xp = get_array_module(dout)
        if self.bias is not None:
            self.bias.accumulate_grad(sum_over_batch_and_space(dout))
        if self._uses_strips() and p <= k - 1:
            x_nhwc = None if x is None else x[:, :, ::s, ::s].transpose(0, 2, 3, 1)
            dw, dx_nhwc = conv2d_strips_backward(x_nhwc, dout.transpose(0, 2, 3, 1),
                                                 self.weight.data, p, workspace, x_grid)
            if x_grid is not None:
                x_grid[0].give_back(x_grid[1], workspace, "x kept")   # for the next forward
            self.weight.accumulate_grad(dw)
            if s == 1:
                return dx_nhwc.transpose(0, 3, 1, 2)
            dx = xp.zeros((n,) + x_shape[2:] + (self.in_channels,), dtype=dout.dtype)
            dx[:, ::s, ::s] = dx_nhwc             # pixels the strided 1x1 kernel skipped get 0
            return dx.transpose(0, 3, 1, 2)
        if g == 1:
            dw, dx_nhwc = conv2d_patches_backward(
                x.transpose(0, 2, 3, 1), dout.transpose(0, 2, 3, 1), self.weight.data, s, p,
                workspace)
            self.weight.accumulate_grad(dw)
            return dx_nhwc.transpose(0, 3, 1, 2)
        # the patch matrix: dy as (g, C_out/g, N L), one copy from channels-last dout
        dy = dout.transpose(1, 0, 2, 3).reshape(g, self.out_channels // g, n * ho * wo)
        cols = self._patches(x, k, s, p).reshape(g, -1, n * ho * wo)
        # dL/dW_mat = dy_mat @ cols^T, computed as (cols @ dy_mat^T)^T: the same numbers,
        # but BLAS runs this orientation ~1.5x faster for our tall, thin matrices
        dw = xp.matmul(cols, dy.swapaxes(-1, -2)).swapaxes(-1, -2)
        self.weight.accumulate_grad(dw.reshape(self.weight.data.shape))
        w_mat = self.weight.data.reshape(g, self.out_channels // g, -1)
        dcols = xp.matmul(w_mat.swapaxes(-1, -2), dy)                      # W_mat^T @ dy_mat
        dx = col2im(dcols.reshape(self.in_channels, k, k, n, ho, wo), x_shape, k, s, p)
        return channels_last(dx)
