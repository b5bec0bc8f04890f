"""Convolution: forward as a matrix product over image patches (im2col), backward as
its adjoint (col2im). Derived step by step in ``notebooks/01_convolution.ipynb``.

Notation (PyTorch's; the paper's u_c(i, j) is one output channel):

    y[n, o, h, w] = b[o] + sum_{c, i, j} W[o, c, i, j] * x_pad[n, c, s*h + i, s*w + j]

With the patch matrix ``cols[(c, i, j), (n, h, w)] = x_pad[n, c, s*h + i, s*w + j]``, of
shape (C_in k k, N H' W'), the whole batch is one matrix product,
``y_mat = W_mat @ cols`` with ``W_mat = W.reshape(C_out, C_in k k)``. The backward pass:

    dL/dW_mat = dy_mat @ cols^T
    dL/dcols  = W_mat^T @ dy_mat
    dL/dx     = col2im(dL/dcols)     (each patch entry adds back onto the pixel it came from)
    dL/db[o]  = sum_{n, h, w} dy[n, o, h, w]

For stride 1 the same gradients come from the patches of dy instead (see
``Conv2d._grads_from_dy_patches``): dx is a convolution of dy with the flipped kernel,
and dW pairs every input pixel with the patches of dy, so col2im is not needed.

Groups split the channels into g independent convolutions; the matrices then carry a
leading group axis, (g, C_in/g k k, N H' W'), and the same products run per group.

Speed notes (the plain, loop-over-everything version is ``tests/reference.py``):

* One large matrix product per convolution instead of one per sample: BLAS is far more
  efficient on (16 x 144) @ (144 x 131072) than on 128 products of (16 x 144) @ (144 x 1024).
* Channel-major memory. The columns of ``cols`` run over (n, h, w), so the product
  ``W_mat @ cols`` comes out as (C_out, N, H', W'). Instead of copying it into NCHW order we
  return the transposed *view* ``y_cnhw.transpose(1, 0, 2, 3)``: its shape is (N, C_out, H', W')
  as the API promises, while its memory is laid out channel by channel (PyTorch calls such
  layouts memory formats). Element-wise layers keep that layout, and the next convolution's
  ``x.transpose(1, 0, 2, 3)`` is then free, so activations never get transposed at all.
* im2col and col2im loop over the k*k kernel offsets (at most 49) and copy or add one
  strided slice of the whole batch per offset: no loop over samples or pixels, and no
  ``np.add.at`` scatter (strided ``+=`` is 2-3x faster here).
* The patch matrix of a CIFAR stage-1 layer at batch 128 is 75 MB. Memory that large comes
  fresh from the operating system on every allocation, and writing it the first time costs
  a page fault per 4 KiB (measured: 26 ms to fill a fresh one, 4 ms to refill an old one).
  So Conv2d writes its patches into a scratch buffer that is reused from call to call
  (:class:`Workspace`), the way PyTorch's caching allocator reuses GPU memory. The
  buffer lives only inside one forward or backward call; nothing keeps a reference to it.
"""
from __future__ import annotations

import math

from ..backend import get_array_module
from .. import init
from ._checks import check_dout, check_input, pair, positive_int
from .module import Module, Parameter


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


class Workspace:
    """One scratch array per (array library, dtype), grown to the largest request.

    ``empty(xp, shape, dtype)`` returns a view of its first prod(shape) elements. Each
    call may return the same memory as the last, so a result must be used up before the
    next call: Conv2d's patch matrices are (the forward, dW and dx products run one after
    another), and the whole network then needs scratch memory for its largest layer only.
    ``padded(x, p)`` does the same for zero-padded copies of the input.
    """

    def __init__(self):
        self._buffers = {}
        self._padded = {}

    def empty(self, xp, shape, dtype):
        key = (xp.__name__, str(dtype))
        size = math.prod(shape)
        buf = self._buffers.get(key)
        if buf is None or buf.size < size:
            self._buffers[key] = None                    # free the old one before growing
            buf = self._buffers[key] = xp.empty(size, dtype=dtype)
        return buf[:size].reshape(shape)

    def padded(self, x, padding):
        """``x`` (A, B, H, W) copied into the middle of a zero-bordered buffer, one kept per
        shape: its border is zeroed once, when it is made, and never written again, so each
        call costs one copy of x instead of zero-filling a fresh array and copying."""
        if padding == 0:
            return x
        xp = get_array_module(x)
        a, b, h, w = x.shape
        key = (xp.__name__, x.shape, padding, str(x.dtype))
        buf = self._padded.get(key)
        if buf is None:
            buf = self._padded[key] = xp.zeros((a, b, h + 2 * padding, w + 2 * padding), x.dtype)
        buf[:, :, padding:padding + h, padding:padding + w] = x
        return buf

    def clear(self):
        """Give the scratch memory back (it is allocated again on the next call)."""
        self._buffers.clear()
        self._padded.clear()


workspace = Workspace()


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

    def forward(self, x):
        check_input(x, self._describe(), 4, "(N, C, H, W)", self.in_channels,
                    dtype=self.weight.dtype)
        xp = get_array_module(x)
        n, _, h, w = x.shape
        k, s, p, g = self.kernel_size, self.stride, self.padding, self.groups
        ho, wo = self.output_shape(x.shape)[2:]
        if ho < 1 or wo < 1:
            raise ValueError(f"{self._describe()}: the input of spatial size {h}x{w} is smaller "
                             f"than the kernel ({k}x{k}) even after padding {p}. Use a larger "
                             "input or more padding.")
        cols = self._patches(x, k, s, p).reshape(g, -1, n * ho * wo)      # (g, K, N L)
        # Cache x, not cols: cols is k*k times larger, and backward needs only x (it builds
        # the patches it needs), which the previous layer's output holds anyway.
        self.cache = x
        w_mat = self.weight.data.reshape(g, self.out_channels // g, -1)   # (g, C_out/g, K)
        y_cnhw = xp.matmul(w_mat, cols).reshape(self.out_channels, n, ho, wo)
        if self.bias is not None:
            y_cnhw += self.bias.data.reshape(-1, 1, 1, 1)
        return y_cnhw.transpose(1, 0, 2, 3)          # (N, C_out, H', W'), channel-major memory

    def backward(self, dout):
        x = self.saved_cache()
        x_shape = x.shape
        n = x_shape[0]
        g, k, p = self.groups, self.kernel_size, self.padding
        ho, wo = self.output_shape(x_shape)[2:]
        check_dout(dout, (n, self.out_channels, ho, wo), "Conv2d", x.dtype)
        self.release_cache()
        xp = get_array_module(dout)
        # dy as (g, C_out/g, N L); a free view when dout is channel-major, one copy otherwise
        dy = dout.transpose(1, 0, 2, 3).reshape(g, self.out_channels // g, n * ho * wo)
        if self.bias is not None:
            self.bias.accumulate_grad(dy.sum(axis=-1).reshape(-1))
        if self.stride == 1 and p <= k - 1:
            dw, dx = self._grads_from_dy_patches(dout, x)
        else:
            cols = self._patches(x, k, self.stride, p).reshape(g, -1, n * ho * wo)
            # dL/dW_mat = dy_mat @ cols^T, computed as (cols @ dy_mat^T)^T: the same numbers,
            # but BLAS runs this orientation ~1.5x faster for our tall, thin matrices
            dw = xp.matmul(cols, dy.swapaxes(-1, -2)).swapaxes(-1, -2)
            w_mat = self.weight.data.reshape(g, self.out_channels // g, -1)
            dcols = xp.matmul(w_mat.swapaxes(-1, -2), dy)                  # W_mat^T @ dy_mat
            dx = col2im(dcols.reshape(self.in_channels, k, k, n, ho, wo), x_shape, k,
                        self.stride, p)
        self.weight.accumulate_grad(dw.reshape(self.weight.data.shape))
        return dx

    def _grads_from_dy_patches(self, dout, x):
        """dL/dW and dL/dx for stride 1, both from the patches of dy (no col2im, and no
        second im2col of x).

        Pad dy by q = k - 1 - p and take its patches,
        ``cols_dy[(o, i, j), (n, h, w)] = dy_pad[n, o, h + i, w + j]``. Then

            dx[n, c, h, w]  = sum_{o, i, j} W[o, c, k-1-i, k-1-j] * cols_dy[(o, i, j), (n, h, w)]
            dW[o, c, i, j]  = sum_{n, h, w} x[n, c, h, w] * cols_dy[(o, k-1-i, k-1-j), (n, h, w)]

        The first is a "full" cross-correlation of dy with the kernel flipped in space and
        its channel axes swapped (the forward pass run backwards); the second pairs every
        input pixel with the upstream gradients of the outputs it fed. Both substitute
        h' = h + i - p into the forward sum. Derived in notebooks/01_convolution.ipynb.

        Returns ``(dw, dx)``: dw of the weight's shape, dx (N, C_in, H, W) channel-major.
        """
        xp = get_array_module(dout)
        n, c, h, w = x.shape
        g, k, o = self.groups, self.kernel_size, self.out_channels
        cols_dy = self._patches(dout, k, 1, k - 1 - self.padding)
        cols_dy = cols_dy.reshape(g, o // g * k * k, n * h * w)           # (g, C_out/g k k, N H W)
        x_mat = x.transpose(1, 0, 2, 3).reshape(g, c // g, n * h * w)     # free for channel-major x
        flipped = xp.matmul(cols_dy, x_mat.swapaxes(-1, -2))             # (g, C_out/g k k, C_in/g)
        flipped = flipped.reshape(g, o // g, k, k, c // g)[:, :, ::-1, ::-1, :]
        dw = flipped.transpose(0, 1, 4, 2, 3)                      # (g, C_out/g, C_in/g, k, k)
        w_t = self.weight.data.reshape(g, o // g, c // g, k, k)
        w_t = w_t[..., ::-1, ::-1].swapaxes(1, 2).reshape(g, c // g, -1)  # (g, C_in/g, C_out/g k k)
        dx = xp.matmul(w_t, cols_dy).reshape(c, n, h, w).transpose(1, 0, 2, 3)
        return dw, dx
