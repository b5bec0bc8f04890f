"""Stride-1 convolutions without a patch matrix: matrix products over *strips*.

The same equations as the plain path (``npsenet/nn/functional/conv.py``), rearranged.
In channels-last memory (``layout.py``) the k pixels of one kernel row,
x_pad[n, h + i, w:w + k, :], are k*C consecutive numbers: a strip. With the batch laid
side by side as one wide, zero-padded image (:class:`StripGrid`), the strips of outputs
w, w + k, w + 2k, ... lie end to end, so for one kernel row i and one residue
r = w mod k, all of them together are an ordinary matrix *view* of that image, of shape
(positions, k C), and

    y[outputs with w = r (mod k)] = sum_i strips(i, r) @ W_rows[i]
    with W_rows[i][(j, c), o] = W[o, c, i, j]

that is k*k matrix products over views instead of one product over a k*k times larger
copy. The backward pass uses the same views: dW_rows[i] = sum_r strips(i, r)^T @ dy(r),
and dx is itself a stride-1 convolution (of dy with the flipped kernel), so it runs the
same forward code. Notebook 01, section 5, derives this from the plain path.

Where BLAS runs on one CPU thread, each of these products is taken in blocks of rows
(:func:`row_blocks`): a tall, thin product (tens of thousands of rows, k C and C_out in
the tens) runs up to twice as fast cut into products of at most a million multiply-adds
each (see ``row_blocks.py``).
"""
from __future__ import annotations

import math

from ...backend import get_array_module
from .row_blocks import row_blocks
from .workspace import Role


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
    ``rows = H' Wg / k`` of them. Positions in the gaps are computed and dropped, a
    fraction (W + s)/W' - 1 of extra arithmetic (3% at 32x32, 12% at 8x8).

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

    def fill(self, x_nhwc, workspace, role=Role.GRID):
        """Copy x (N, H, W, C) into the grid's reused buffer; returns the flat grid.

        With ``role=Role.KEPT_CONV_GRID`` the buffer is borrowed from the workspace
        rather than shared scratch: it stays the caller's until :meth:`give_back`, so it
        can be kept from forward to backward while other layers fill grids of the same
        shape."""
        n, h, w, c = self.shape
        p, xp = self.p, get_array_module(x_nhwc)
        get = workspace.borrow if role is Role.KEPT_CONV_GRID else workspace.zero_bordered
        flat = get(role, self._key(), self.size + self.slack, x_nhwc.dtype, xp)
        grid = flat[:self.size].reshape(self.hp, self.wg, c)
        self.images(grid[p:, p:], h)[:, :, :w] = x_nhwc
        return flat

    def give_back(self, flat, workspace):
        """Return a buffer that ``fill(..., Role.KEPT_CONV_GRID)`` lent, for the next fill."""
        workspace.give_back(Role.KEPT_CONV_GRID, self._key(), flat)

    def _key(self):
        return (self.shape, self.k, self.p)      # the geometry: which entries are border

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


def conv2d_strips(x_nhwc, w_rows, padding, workspace):
    """Stride-1 convolution of channels-last x, no patch matrix (see :class:`StripGrid`).

    Args:
        x_nhwc: (N, H, W, C_in).
        w_rows: (k, k C_in, C_out), from :func:`kernel_rows`.
        padding: p.
        workspace: a :class:`~npsenet.nn.fast.workspace.Workspace` for the padded grid
            and the partial products.
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
    return strip_products(grid, grid.fill(x_nhwc, workspace), w_rows, workspace)


def strip_products(grid, flat, w_rows, workspace):
    """y (N, H', W', C_out) = sum_i strips(i, r) @ W_rows[i] for each residue r, from a
    filled grid (see :func:`conv2d_strips`)."""
    xp = get_array_module(flat)
    k, _, c_out = w_rows.shape
    y = xp.empty((grid.shape[0], grid.ho, grid.wo, c_out), dtype=flat.dtype)
    acc = workspace.scratch(Role.STRIP_SUM, (grid.rows, c_out), flat.dtype, xp)
    part = workspace.scratch(Role.STRIP_TERM, (grid.rows, c_out), flat.dtype, xp)
    blocks = row_blocks(grid.rows, w_rows.shape[1], c_out, xp)
    for r in range(min(k, grid.wo)):              # output columns w = r, r + k, r + 2k, ...
        strips = [grid.strips(flat, i, r) for i in range(k)]
        for b in blocks:
            xp.matmul(strips[0][b], w_rows[0], out=acc[b])
            for i in range(1, k):                 # kernel rows
                acc[b] += xp.matmul(strips[i][b], w_rows[i], out=part[b])
        y[:, :, r::k] = grid.outputs(acc.reshape(grid.ho, grid.t, c_out), r)
    return y


def conv2d_strips_backward(x_nhwc, dy_nhwc, weight, padding, workspace, x_grid=None):
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
        dy_nhwc: (N, H', W', C_out).
        weight: W (C_out, C_in, k, k).
        x_grid: x already on its grid, the pair (StripGrid, flat grid) that the forward
            filled and kept (see ``conv.py``), or None to fill the grid here.
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
        x_grid = grid, grid.fill(x_nhwc, workspace)
    grid, flat = x_grid
    n, h, w, c_in = grid.shape
    q = k - 1 - padding                                  # dx: the convolution of dy padded by q
    dy_padded = StripGrid(dy_nhwc.shape, k, q)
    dy_flat = dy_padded.fill(dy_nhwc, workspace, Role.DY_GRID)
    dy_shape = (grid.hp, grid.wg, c_out)
    if (dy_padded.hp, dy_padded.wg, dy_padded.gap + wo) == (grid.hp, grid.wg, grid.gap + w):
        # "same" convolutions (H' = H): dy padded by q is dy on the grid of x, moved by q
        # rows and q columns, so dW reads it from there instead of from a second copy
        start = (q * grid.wg + q) * c_out
        dy_grid = dy_flat[start:start + math.prod(dy_shape)].reshape(dy_shape)
    else:
        dy_grid = workspace.zero_bordered(Role.DY_ON_X_GRID, (grid.shape, k, padding, c_out),
                                          math.prod(dy_shape), dy_nhwc.dtype, xp)
        dy_grid = dy_grid.reshape(dy_shape)
        grid.images(dy_grid, ho)[:, :, :wo] = dy_nhwc
    dw_rows = xp.zeros((k, k * c_in, c_out), dtype=dy_nhwc.dtype)
    blocks = row_blocks(grid.rows, k * c_in, c_out, xp)
    for r in range(min(k, wo)):
        dy_r = grid.residue(dy_grid, r)                                 # (rows, C_out)
        for i in range(k):
            strips = grid.strips(flat, i, r)
            for b in blocks:
                dw_rows[i] += xp.matmul(strips[b].T, dy_r[b])
    dw = dw_rows.reshape(k, k, c_in, c_out).transpose(3, 2, 0, 1)
    flipped = weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)            # (C_in, C_out, k, k)
    return dw, strip_products(dy_padded, dy_flat, kernel_rows(flipped), workspace)
