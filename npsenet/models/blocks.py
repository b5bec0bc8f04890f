"""Residual blocks with hand-written backward passes, torchvision's state_dict keys.

A residual block computes ``y = ReLU(F(x) + shortcut(x))``: F is the residual branch
(two 3x3 convolutions in a :class:`BasicBlock`, 1x1-3x3-1x1 in a :class:`Bottleneck`),
and the shortcut is the identity, or a 1x1 convolution with batch norm (``downsample``)
where the stride or the channel count changes.

The SE block (the paper's Sec. 3) recalibrates channels somewhere in the block. The four
integrations of the paper's Sec. 6.5 (Fig. 5) and the one of its Table 15 (TPAMI 2019)
are ``placement``:

    standard  y = ReLU(SE(F(x)) + shortcut(x))      after the branch's last BN (the paper's)
    pre       y = ReLU(F(SE(x)) + shortcut(x))      on the block input, before the branch
    post      y = SE(ReLU(F(x) + shortcut(x)))      after the addition and the final ReLU
    identity  y = ReLU(F(x) + SE(shortcut(x)))      on the shortcut, parallel to the branch
    3x3       inside the branch, F = last(SE(inner(x)))

For ``3x3`` the branch is split before its last convolution: ``inner`` is everything up to
and including the ReLU that feeds it, ``last`` is that convolution and its BN. In a
Bottleneck the SE block then sits on the 3x3 convolution's output, after its BN and ReLU
(the paper's SE_3x3, TPAMI 2019, Table 15), and is as wide as that convolution (the
bottleneck width, 4x narrower than C_out in a ResNet, hence its fewer parameters). A
BasicBlock has no 3x3-then-1x1 pair; the same split puts the SE block after the first 3x3
convolution's BN and ReLU, before the second 3x3 convolution (``planes`` wide), which makes
a CIFAR SE-ResNet-20 ablation of the placement possible.

The SE layer comes in as a factory, ``se_layer(channels) -> Module`` (e.g.
``functools.partial(ns.nn.SEBlock, reduction=16)``), called with C_in for ``pre``, the
inner width for ``3x3`` and C_out for the other placements; ``se_layer=None`` gives a plain
block.

Backward. x reaches the output along two paths, the branch and the shortcut, so

    dL/dx = dL/dx|branch + dL/dx|shortcut

each found by running the layers of its path backwards from dL/d(F(x) + shortcut(x)).
With ``3x3`` the SE block's backward runs between those of ``last`` and ``inner``.
"""
from __future__ import annotations

from functools import partial

from ..nn import BatchNorm2d, Conv2d, Module, ReLU, SEBlock, Sequential
from ..nn._checks import positive_int

PLACEMENTS = ("standard", "pre", "post", "identity", "3x3")


class ResidualBlock(Module):
    """What BasicBlock and Bottleneck share: the shortcut, the SE layer and its placement.

    Subclasses build their branch layers, then call :meth:`_add_shortcut_and_se`, and
    implement ``_branch_forward(x)`` and ``_branch_backward(dout)``, calling
    ``self._inner_se(out)`` / ``self._inner_se_backward(d)`` at the input of the branch's
    last convolution (the ``3x3`` placement; the identity for the others).

    forward(x): (N, C_in, H, W) -> (N, C_out, H/s, W/s) with C_out = planes * expansion.
    backward(dy): dy of the output's shape -> dx of the input's shape, the sum of the
    branch's and the shortcut's gradients.
    """

    expansion = 1

    def _add_shortcut_and_se(self, in_channels, out_channels, stride, se_layer, placement,
                             se=None, *, inner_channels=None, downsample_kernel=1):
        """The SE layer (``se_layer(channels)``, or none), then the shortcut, then the ReLU.

        ``se``: the older form of the SE arguments, ``{"placement": ..., "block": SEBlock
        keyword arguments}``, the same as ``se_layer=partial(SEBlock, **se["block"])``.
        ``inner_channels``: the channels at the input of the branch's last convolution
        (the width of the ``3x3`` placement's SE layer). ``downsample_kernel``: k of the
        projection shortcut's convolution (1, torchvision's; SENet-154 uses 3 with
        padding 1), padding k // 2.
        """
        kind = type(self).__name__
        if se is not None:
            if se_layer is not None:
                raise ValueError(f"{kind}: got both se_layer and se; pass se_layer (a "
                                 "callable channels -> Module) and placement only.")
            se_layer, placement = partial(SEBlock, **se.get("block", {})), se["placement"]
        if se_layer is not None and not callable(se_layer):
            raise ValueError(f"{kind}: se_layer must be None or a callable channels -> Module, "
                             f"got {type(se_layer).__name__}; e.g. "
                             "functools.partial(ns.nn.SEBlock, reduction=16).")
        if se_layer is not None and placement not in PLACEMENTS:
            raise ValueError(f"{kind}: placement must be one of {list(PLACEMENTS)}, got "
                             f"{placement!r}.")
        self.placement = None if se_layer is None else placement
        if se_layer is not None:
            widths = {"pre": in_channels, "3x3": inner_channels}
            self.se = se_layer(widths.get(placement, out_channels))
        else:
            self.se = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = Sequential(
                Conv2d(in_channels, out_channels, downsample_kernel, stride=stride,
                       padding=downsample_kernel // 2, bias=False),
                BatchNorm2d(out_channels))
        else:
            self.downsample = None
        self.relu_out = ReLU(inplace=True)

    def _inner_se(self, out):
        """The ``3x3`` placement's SE layer on the input of the branch's last convolution."""
        return self.se(out) if self.placement == "3x3" else out

    def _inner_se_backward(self, d):
        """The backward of :meth:`_inner_se`."""
        return self.se.backward(d) if self.placement == "3x3" else d

    def forward(self, x):
        branch_input = self.se(x) if self.placement == "pre" else x
        out = self._branch_forward(branch_input)
        if self.placement == "standard":
            out = self.se(out)
        shortcut = self.downsample(x) if self.downsample is not None else x
        if self.placement == "identity":
            shortcut = self.se(shortcut)
        # in place: out is the output of BatchNorm or of the SE scale, which no layer keeps
        out += shortcut
        out = self.relu_out(out)
        if self.placement == "post":
            out = self.se(out)
        return out

    def backward(self, dout):
        d_sum = self.se.backward(dout) if self.placement == "post" else dout
        d_sum = self.relu_out.backward(d_sum)             # dL/d(F(x) + shortcut(x))
        d_shortcut = self.se.backward(d_sum) if self.placement == "identity" else d_sum
        dx_shortcut = (self.downsample.backward(d_shortcut) if self.downsample is not None
                       else d_shortcut)
        d_branch = self.se.backward(d_sum) if self.placement == "standard" else d_sum
        dx_branch = self._branch_backward(d_branch)
        if self.placement == "pre":
            dx_branch = self.se.backward(dx_branch)
        dx_branch += dx_shortcut                # in place: a new array from the branch's backward
        return dx_branch


class BasicBlock(ResidualBlock):
    """F(x) = BN(conv3x3(ReLU(BN(conv3x3_s(x))))), the CIFAR ResNets' and ResNet-18/34's
    block (expansion 1). With ``placement="3x3"``, F(x) = BN(conv3x3(SE(ReLU(BN(conv3x3_s(x)))))),
    an SE layer ``planes`` wide.

    Args:
        in_channels: C_in.
        planes: C_out (the block's width).
        stride: s of the first convolution (and of the projection shortcut).
        se_layer: None for a plain block, else a callable ``channels -> Module``.
        placement: where the SE layer sits, one of ``PLACEMENTS``.
        groups, base_width: 1 and 64 only (grouped widths are the Bottleneck's); taken so
            that a ResNet can pass the same arguments to either block.
        se: the older ``{"placement": ..., "block": {...}}`` form of se_layer and placement.
    """

    expansion = 1

    def __init__(self, in_channels, planes, stride=1, se_layer=None, placement="standard",
                 *, groups=1, base_width=64, se=None):
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError(f"BasicBlock: groups and base_width must be 1 and 64, got "
                             f"groups={groups!r}, base_width={base_width!r}; grouped widths "
                             "need Bottleneck.")
        self.conv1 = Conv2d(in_channels, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = BatchNorm2d(planes)
        self.relu1 = ReLU(inplace=True)
        self.conv2 = Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = BatchNorm2d(planes)
        self._add_shortcut_and_se(in_channels, planes, stride, se_layer, placement, se,
                                  inner_channels=planes)

    def _branch_forward(self, x):
        out = self._inner_se(self.relu1(self.bn1(self.conv1(x))))
        return self.bn2(self.conv2(out))

    def _branch_backward(self, dout):
        d = self._inner_se_backward(self.conv2.backward(self.bn2.backward(dout)))
        return self.conv1.backward(self.bn1.backward(self.relu1.backward(d)))


class Bottleneck(ResidualBlock):
    """F(x) = BN(conv1x1(ReLU(BN(conv3x3_s,g(ReLU(BN(conv1x1(x)))))))), expansion 4.

    The stride sits on the 3x3 convolution (torchvision's "ResNet v1.5"). The 1x1 and 3x3
    convolutions are ``width = int(planes * base_width / 64) * groups`` wide and the 3x3
    one has ``groups`` groups (torchvision's semantics: groups=32, base_width=4 is
    ResNeXt-50 32x4d's block); the defaults give width = planes, ResNet's block. With
    ``placement="3x3"`` the SE layer (``width`` wide) sits after the 3x3 convolution's BN
    and ReLU, before the last 1x1 convolution (the paper's SE_3x3, TPAMI 2019, Table 15).

    Args:
        in_channels: C_in.
        planes: sets the width (see above); C_out = 4 * planes.
        stride: s of the 3x3 convolution (and of the projection shortcut).
        se_layer: None for a plain block, else a callable ``channels -> Module``.
        placement: where the SE layer sits, one of ``PLACEMENTS``.
        groups: g, the groups of the 3x3 convolution.
        base_width: the width of one group at planes = 64.
        se: the older ``{"placement": ..., "block": {...}}`` form of se_layer and placement.
    """

    expansion = 4

    def __init__(self, in_channels, planes, stride=1, se_layer=None, placement="standard",
                 *, groups=1, base_width=64, se=None):
        super().__init__()
        groups = positive_int(groups, "groups", "Bottleneck")
        base_width = positive_int(base_width, "base_width", "Bottleneck")
        width = int(planes * (base_width / 64.0)) * groups
        if width < 1:
            raise ValueError(f"Bottleneck: the width int(planes * base_width / 64) * groups "
                             f"must be at least 1, got planes={planes!r}, base_width="
                             f"{base_width}; raise planes or base_width.")
        out_channels = planes * self.expansion
        self.conv1 = Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = BatchNorm2d(width)
        self.relu1 = ReLU(inplace=True)
        self.conv2 = Conv2d(width, width, 3, stride=stride, padding=1, bias=False,
                            groups=groups)
        self.bn2 = BatchNorm2d(width)
        self.relu2 = ReLU(inplace=True)
        self.conv3 = Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = BatchNorm2d(out_channels)
        self._add_shortcut_and_se(in_channels, out_channels, stride, se_layer, placement, se,
                                  inner_channels=width)

    def _branch_forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self._inner_se(self.relu2(self.bn2(self.conv2(out))))
        return self.bn3(self.conv3(out))

    def _branch_backward(self, dout):
        d = self._inner_se_backward(self.conv3.backward(self.bn3.backward(dout)))
        d = self.conv2.backward(self.bn2.backward(self.relu2.backward(d)))
        return self.conv1.backward(self.bn1.backward(self.relu1.backward(d)))
