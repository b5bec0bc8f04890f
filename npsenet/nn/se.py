"""The Squeeze-and-Excitation block (Hu et al., CVPR 2018, Sec. 3), in the paper's notation.
Derived in ``notebooks/03_squeeze.ipynb`` to ``notebooks/05_scale_and_se_block.ipynb``;
the layers are thin, and the pairs they call are in ``functional/`` (``pool.py``,
``linear.py``, ``activation.py`` and ``se.py``).

Given the feature map U = [u_1, ..., u_C] of shape (N, C, H, W):

    squeeze     z_c = F_sq(u_c) = 1/(H W) sum_{i,j} u_c(i, j)             (N, C)
    excitation  s = F_ex(z, W) = σ(W2 δ(W1 z))                            (N, C)
                W1: (C/r, C), W2: (C, C/r), δ = ReLU, σ = sigmoid
    scale       x̃_c = F_scale(u_c, s_c) = s_c · u_c                        (N, C, H, W)

Backward. U reaches the output along two paths, directly through the scale and through
the gate s that was computed from U, so its gradient is the sum of both:

    ds_c     = sum_{i,j} dx̃_c(i, j) u_c(i, j)
    du_c     = s_c dx̃_c  +  dz_c / (H W)
    with dz  = W1^T [a > 0] ⊙ (W2^T (σ'(b) ⊙ ds)),  a = W1 z,  b = W2 δ(a)
"""
from __future__ import annotations

from ._checks import check_dout, check_input, positive_int
from .activation import ReLU, Sigmoid, Tanh
from .conv import Conv2d
from .linear import Linear
from .module import Module
from .pooling import GlobalAvgPool2d, GlobalMaxPool2d
from .switch import active_path

SQUEEZES = {"avg": GlobalAvgPool2d, "max": GlobalMaxPool2d}
GATES = {"sigmoid": Sigmoid, "tanh": Tanh, "relu": ReLU}


def hidden_width(channels, reduction, divisor=1):
    """The excitation's hidden width: ``max(1, C // r)`` for divisor 1, else C / r rounded
    to the nearest multiple of the divisor and at least the divisor (timm's
    ``make_divisible(C / r, divisor, round_limit=0)``)."""
    if divisor == 1:
        return max(1, channels // reduction)
    return max(divisor, int(channels / reduction + divisor / 2) // divisor * divisor)


class ChannelScale(Module):
    """F_scale: x̃_c = s_c · u_c, channel-wise multiplication.

    forward(u, s): u (N, C, H, W), s (N, C) -> u * s[:, :, None, None] (N, C, H, W).
    backward(dy): dy (N, C, H, W) -> (du, ds) with du = dy * s[:, :, None, None] and
    ds_c = sum_{i,j} dy_c(i, j) u_c(i, j), shape (N, C).
    """

    def __init__(self):
        super().__init__()
        self.cache = None

    def forward(self, u, s):
        check_input(u, "ChannelScale", 4, "(N, C, H, W)", name="feature map u")
        check_input(s, "ChannelScale", 2, "(N, C)", name="scales s", dtype=u.dtype)
        if s.shape != u.shape[:2]:
            raise ValueError(f"ChannelScale: expected scales s of shape {tuple(u.shape[:2])} "
                             f"(one per sample and channel of u), got {tuple(s.shape)}.")
        path = active_path()
        y, cache = path.channel_scale_forward(u, s)
        return self.keep(path, cache, y)

    def backward(self, dout):
        path, cache = self.kept(dout)
        return path.channel_scale_backward(dout, cache)


class SEBlock(Module):
    """Squeeze, excitation and scale: (N, C, H, W) -> (N, C, H, W).

    Args:
        channels: C.
        reduction: r; the hidden width is ``max(1, C // r)`` (with ``divisor`` 1).
        squeeze: ``"avg"`` (the paper's choice) or ``"max"``.
        gate: ``"sigmoid"`` (the paper's choice), ``"tanh"`` or ``"relu"``.
        bias: whether fc1 and fc2 carry biases (torchvision-style SE-ResNet-50 uses them).
        no_squeeze: the paper's NoSqueeze ablation: no pooling; fc1 and fc2 become
            1x1 convolutions applied at every position, so s has shape (N, C, H, W).
        divisor: d; when above 1 the hidden width is C / r rounded to the nearest multiple
            of d, and at least d (timm's ``rd_divisor``: ``make_divisible(C / r, d)``), e.g.
            C = 64, r = 16, d = 8 gives 8 hidden units instead of 4.

    Sub-modules (state_dict keys): ``fc1`` (C/r <- C) and ``fc2`` (C <- C/r).
    After each forward, ``gate_values`` holds s (N, C): the excitations the paper
    analyses per class in its Sec. 7 ("role of excitation").

    backward(dy) returns du, summed over both paths (the equations are in the docstring
    of the module ``npsenet.nn.se``).
    """

    def __init__(self, channels, reduction=16, squeeze="avg", gate="sigmoid", bias=False,
                 no_squeeze=False, divisor=1):
        super().__init__()
        self.channels = positive_int(channels, "channels", "SEBlock")
        self.reduction = positive_int(reduction, "reduction", "SEBlock")
        self.divisor = positive_int(divisor, "divisor", "SEBlock")
        if squeeze not in SQUEEZES:
            raise ValueError(f"SEBlock: squeeze must be one of {sorted(SQUEEZES)}, "
                             f"got {squeeze!r}.")
        if gate not in GATES:
            raise ValueError(f"SEBlock: gate must be one of {sorted(GATES)}, got {gate!r}.")
        self.squeeze_kind, self.gate_kind = squeeze, gate
        self.no_squeeze = bool(no_squeeze)
        self.hidden = hidden_width(self.channels, self.reduction, self.divisor)
        if self.no_squeeze:
            self.fc1 = Conv2d(self.channels, self.hidden, 1, bias=bias)
            self.fc2 = Conv2d(self.hidden, self.channels, 1, bias=bias)
        else:
            self.squeeze = SQUEEZES[squeeze]()
            self.fc1 = Linear(self.channels, self.hidden, bias=bias)
            self.fc2 = Linear(self.hidden, self.channels, bias=bias)
            self.scale = ChannelScale()
        self.relu = ReLU()
        self.gate = GATES[gate]()
        self.gate_values = None
        self.cache = None

    def extra_repr(self):
        s = f"{self.channels}, reduction={self.reduction}"
        if self.squeeze_kind != "avg":
            s += f", squeeze={self.squeeze_kind!r}"
        if self.gate_kind != "sigmoid":
            s += f", gate={self.gate_kind!r}"
        if self.no_squeeze:
            s += ", no_squeeze=True"
        if self.divisor != 1:
            s += f", divisor={self.divisor}"
        return s

    def forward(self, u):
        check_input(u, f"SEBlock({self.extra_repr()})", 4, "(N, C, H, W)", self.channels,
                    dtype=self.fc1.weight.dtype)
        if self.no_squeeze:  # s = gate(W2 δ(W1 u)) at every position, then x̃ = s ⊙ u
            s = self.gate(self.fc2(self.relu(self.fc1(u))))
            out = u * s
        else:
            z = self.squeeze(u)                                   # (N, C)
            s = self.gate(self.fc2(self.relu(self.fc1(z))))       # (N, C)
            out = self.scale(u, s)
        self.cache = (u, s)
        self.gate_values = s
        return out

    def backward(self, dout):
        u, s = self.saved_cache()
        check_dout(dout, u.shape, "SEBlock", u.dtype)
        self.release_cache()
        if self.no_squeeze:
            du, ds = dout * s, dout * u
        else:
            du, ds = self.scale.backward(dout)                    # path 1: through the scale
        dz = self.fc1.backward(self.relu.backward(self.fc2.backward(self.gate.backward(ds))))
        du += dz if self.no_squeeze else self.squeeze.backward(dz)    # path 2: through s
        return du                 # (in place: du is a new array of the scale's backward)
