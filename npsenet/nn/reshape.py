"""Layers that rearrange values without computing: ``Flatten`` (feature maps to the
classifier's vector) and ShuffleNet's ``ChannelShuffle`` (Zhang et al., CVPR 2018,
Sec. 3.1). The pairs they call are ``functional/reshape.py``; each backward applies the
inverse rearrangement.
"""
from __future__ import annotations

from ._checks import check_float_array, check_input, positive_int
from .module import Module
from .switch import active_path


class Flatten(Module):
    """y[n] = x[n].ravel(): (N, d1, d2, ...) -> (N, d1 d2 ...), like ``torch.nn.Flatten()``.

    forward(x): any rank >= 2, e.g. (N, C, H, W) -> (N, C H W).
    backward(dy): (N, C H W) -> dx (N, C, H, W), dy reshaped back (each gradient returns
    to the position its value came from).
    """

    def __init__(self):
        super().__init__()
        self.cache = None

    def forward(self, x):
        check_float_array(x, "Flatten")
        if x.ndim < 2:
            raise ValueError(f"Flatten: expected an input of rank >= 2 (N, ...), got shape "
                             f"{tuple(x.shape)} ({x.ndim}-D); add a batch axis with x[None].")
        path = active_path()
        y, cache = path.flatten_forward(x)
        return self.keep(path, cache, y)

    def backward(self, dout):
        path, x_shape = self.kept(dout)
        return path.flatten_backward(dout, x_shape)


class ChannelShuffle(Module):
    """ShuffleNet's channel shuffle with g groups, C = g m channels:

        (N, g m, H, W) -> reshape (N, g, m, H, W) -> transpose (N, m, g, H, W)
                       -> reshape (N, g m, H, W),    y[:, j g + i] = x[:, i m + j]

    so the next grouped convolution sees channels from every group. Like
    ``torch.nn.ChannelShuffle(groups)``.

    forward(x): (N, C, H, W) -> (N, C, H, W); C must be a multiple of g.
    backward(dy): (N, C, H, W) -> dx with the inverse permutation,
    dx[:, i m + j] = dy[:, j g + i].
    """

    def __init__(self, groups):
        super().__init__()
        self.groups = positive_int(groups, "groups", "ChannelShuffle")
        self.cache = None

    def extra_repr(self):
        return f"groups={self.groups}"

    def forward(self, x):
        check_input(x, f"ChannelShuffle({self.extra_repr()})", 4, "(N, C, H, W)")
        if x.shape[1] % self.groups:
            raise ValueError(f"ChannelShuffle(groups={self.groups}): the {x.shape[1]} channels "
                             f"of the input {tuple(x.shape)} do not split into {self.groups} "
                             "equal groups; use a channel count divisible by groups.")
        path = active_path()
        y, cache = path.channel_shuffle_forward(x, self.groups)
        return self.keep(path, cache, y)

    def backward(self, dout):
        path, groups = self.kept(dout)
        return path.channel_shuffle_backward(dout, groups)
