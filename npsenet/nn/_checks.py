"""Input checks shared by the layers: errors that say what was expected, what came,
and what to try. Every check runs before a layer touches its state, so a failed
call leaves nothing half-updated."""
from __future__ import annotations

import numpy as np


def dtype_kind(x):
    """NumPy's kind letter of ``x``'s dtype ("f", "i", "u", ...), or None when ``x`` is not
    a NumPy or CuPy array (a list, a number, a torch tensor)."""
    if not hasattr(x, "dtype") or not hasattr(x, "shape"):
        return None
    try:
        return np.dtype(x.dtype).kind
    except TypeError:   # a dtype NumPy cannot read, e.g. torch.float32
        return None


def check_float_array(x, layer: str, name: str = "input"):
    """``x`` must be an array (NumPy or CuPy) of floating dtype."""
    if dtype_kind(x) is None:
        raise ValueError(f"{layer}: expected the {name} to be a NumPy or CuPy array, got "
                         f"{type(x).__name__}. Wrap it with np.asarray(...) (for a torch "
                         "tensor, tensor.numpy()).")
    if dtype_kind(x) != "f":
        raise ValueError(f"{layer}: expected a floating-point {name} (float32 or float64), "
                         f"got dtype {x.dtype}. Convert it with x.astype(np.float32).")


def check_input(x, layer: str, ndim: int, layout: str, channels=None, name: str = "input",
                dtype=None):
    """Check rank, channel count (axis 1) and dtype of a layer's input.

    Args:
        x: the array to check.
        layer: the layer's description for the message, e.g. ``"Conv2d(3, 16, 3)"``.
        ndim: the expected number of dimensions.
        layout: how to name the axes in the message, e.g. ``"(N, C, H, W)"``.
        channels: the expected size of axis 1, or None.
        dtype: the dtype of the layer's parameters, which the input must match
            (layers never cast silently), or None for parameter-free layers.
    """
    check_float_array(x, layer, name)
    if x.ndim != ndim:
        raise ValueError(f"{layer}: expected a {ndim}-D {name} {layout}, got shape "
                         f"{tuple(x.shape)} ({x.ndim}-D).")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{layer}: expected {channels} channels on axis 1 of the {name} "
                         f"{layout}, got shape {tuple(x.shape)} with {x.shape[1]}.")
    if dtype is not None and x.dtype != dtype:
        raise ValueError(f"{layer}: the {name} is {x.dtype} but the parameters are {dtype}; "
                         f"layers do not cast silently. Use x.astype(np.{np.dtype(dtype).name}) "
                         f"or model.to(dtype=np.{np.dtype(x.dtype).name}).")
    if 0 in x.shape:
        raise ValueError(f"{layer}: the {name} has an empty axis, shape {tuple(x.shape)}.")


def check_dout(dout, expected_shape, layer: str, dtype):
    """The upstream gradient must have the shape and dtype of the forward output
    (a float64 dout would silently turn a float32 layer's gradients into float64)."""
    if dout is None or not hasattr(dout, "shape"):
        raise ValueError(f"{layer}.backward: expected an array dL/d(output) of shape "
                         f"{tuple(expected_shape)}, got {type(dout).__name__}.")
    if tuple(dout.shape) != tuple(expected_shape):
        raise ValueError(f"{layer}.backward: expected dout of shape {tuple(expected_shape)} "
                         f"(the shape of the forward output), got {tuple(dout.shape)}.")
    if dout.dtype != dtype:
        raise ValueError(f"{layer}.backward: expected dout of dtype {dtype} (the dtype of the "
                         f"forward output), got {dout.dtype}. Convert it with "
                         f"dout.astype(np.{np.dtype(dtype).name}).")


def positive_int(value, what: str, layer: str, minimum: int = 1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{layer}: {what} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def pair(value, what: str, layer: str, minimum: int):
    """An int or a pair of equal ints (square kernels, strides and paddings only)."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2 or value[0] != value[1]:
            raise ValueError(f"{layer}: {what} must be an int or a pair of equal ints "
                             f"(square kernels only), got {value!r}.")
        value = value[0]
    return positive_int(value, what, layer, minimum)
