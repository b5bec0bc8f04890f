"""ShuffleNet (Zhang et al., CVPR 2018; g = 3, 1x) and SE-ShuffleNet (Hu et al., TPAMI 2019,
Table 3, the mobile setting).

    model = shufflenet_v1()                   # 1,865,728 parameters
    model = se_shufflenet_v1()                # SE on every unit's residual branch
    model = shufflenet_v1_cifar()             # stride-1 stem, no max pool, 0.5x, 2-4-2 units

The network (ShuffleNet's Table 1, g = 3): a 3x3/2 convolution to 24 channels with BN and
ReLU, a 3x3/2 max pool, three stages of ShuffleNet units with 240, 480 and 960 output
channels, repeated 4, 8 and 4 times, global average pooling and ``fc``. A unit (the
paper's Fig. 2) is a residual branch

    F(x) = BN(gconv1x1(BN(dwconv3x3(shuffle(ReLU(BN(gconv1x1(x))))))))

whose grouped 1x1 convolutions have g groups and whose bottleneck is a quarter of the
stage's output width; the depthwise 3x3 convolution has no ReLU after its BN. The first
unit of each stage has stride 2 in its depthwise convolution and concatenates the branch
(C_out - C_in channels) with a 3x3/2 average pool of its input; the others add the input:

    stride 1:  y = ReLU(x + F(x))
    stride 2:  y = ReLU([AvgPool(x), F(x)])                 (the pool's channels first)

The first 1x1 convolution of stage 2 is not grouped: its input has only 24 channels (the
paper's Sec. 3.3). The channel shuffle stays in that unit too, as in Megvii's reference
code (``ShuffleNet-Series``); after an ungrouped convolution it only permutes channels.

Where SE goes: as in SE-ResNet, on the residual branch, after its last BN and before the
addition or the concatenation, y = ReLU(x + SE(F(x))) or ReLU([AvgPool(x), SE(F(x))]); in a
stride-2 unit SE sees the branch's C_out - C_in channels only (``stageN.M.se``).

Costs (``npsenet summary``, MACs as counted in :mod:`npsenet.summary`), 224x224, 1000
classes, against the paper's TPAMI 2019 Table 3 (MFLOPs there are multiply-adds; there
is no torchvision or timm ShuffleNet v1 to compare the parameter count with):

    shufflenet_v1     1,865,728 parameters  141.3 M MACs  paper ShuffleNet     140 MFLOPs, 1.8 M
    se_shufflenet_v1  2,484,533 parameters  145.1 M MACs  paper SE-ShuffleNet  142 MFLOPs, 2.4 M

The convolutions and ``fc`` take 137.4 M, ShuffleNet's own figure for g = 3 (its Table 1:
137 M; 140 M is the complexity level its later tables and TPAMI Table 3 name "ShuffleNet
1x" by). npsenet also counts BN, one per output element of each convolution (3.0 M), the
three 3x3 shortcut average pools (9 per output, 0.85 M) and the global pool (0.05 M). SE
adds 3.8 M MACs (+2.7 %): 0.61 M in the excitation FC layers and 1.6 M each in the squeeze
and in the scale; the paper's +2 M matches the FC layers and the scale (2.2 M) without
the squeeze (an average, which it does not count). The parameters: 1.87 M and 2.48 M
against the paper's 1.8 M and 2.4 M, figures that read as truncated rather than rounded
(SE adds 618,805, the paper's 0.6 M; MobileNet's 4.23 M and 4.72 M appear there as 4.2 M
and 4.7 M).

Initialisation: convolutions N(0, 2 / fan_out) (torchvision's), BN weight 1 and bias 0,
``fc`` PyTorch's default.
"""
from __future__ import annotations

from .. import init
from ..backend import get_array_module
from ..nn import (AvgPool2d, BatchNorm2d, ChannelShuffle, Conv2d, GlobalAvgPool2d, Linear,
                  MaxPool2d, Module, ReLU, Sequential)
from ..nn._checks import positive_int
from .entry import check_model_input
from .registry import register_model
from .se_options import se_block_config, se_layer_factory

# the registered networks: groups g, the stem's width, the stages' output widths and
# repeats, and whether the stem downsamples (3x3/2 convolution and 3x3/2 max pool)
SHUFFLENET_CONFIGS = {
    "shufflenet_v1": {"groups": 3, "stem": 24, "widths": (240, 480, 960),
                      "repeats": (4, 8, 4), "imagenet_stem": True},
    "shufflenet_v1_cifar": {"groups": 3, "stem": 24, "widths": (120, 240, 480),
                            "repeats": (2, 4, 2), "imagenet_stem": False},
}


class ShuffleUnit(Module):
    """A ShuffleNet unit (Zhang et al., Fig. 2 b and c), optionally with SE on its branch.

    Sub-modules: the branch ``conv1`` (1x1, g groups or 1), ``bn1``, ``relu1``,
    ``shuffle``, ``conv2`` (3x3 depthwise, stride s), ``bn2``, ``conv3`` (1x1, g groups),
    ``bn3``; ``se`` (or None); ``shortcut`` (AvgPool2d(3, 2, 1) for s = 2, else None);
    ``relu``.

    Args:
        in_channels, out_channels: C_in and C_out of the unit.
        groups: g, the groups of the 1x1 convolutions and of the shuffle.
        stride: 1 (y = ReLU(x + F(x)), C_in = C_out) or 2 (y = ReLU([AvgPool(x), F(x)]),
            the branch makes C_out - C_in channels).
        grouped_first: False for the first unit of stage 2, whose first 1x1 convolution
            is not grouped.
        se_layer: None, or ``channels -> Module`` (the SE block on the branch's output).

    forward(x): (N, C_in, H, W) -> (N, C_out, H/s, W/s).
    backward(dy): with d = ReLU'(y) ⊙ dy, dx = d + F.backward(d) (stride 1) or
    dx = AvgPool.backward(d[:, :C_in]) + F.backward(d[:, C_in:]) (stride 2): the input
    feeds the branch and the shortcut, so its gradient is the sum of both.
    """

    def __init__(self, in_channels, out_channels, groups, stride=1, grouped_first=True,
                 se_layer=None):
        super().__init__()
        positive_int(groups, "groups", "ShuffleUnit")
        if stride not in (1, 2):
            raise ValueError(f"ShuffleUnit: stride must be 1 or 2, got {stride!r}.")
        branch_out = out_channels - in_channels if stride == 2 else out_channels
        if stride == 1 and in_channels != out_channels:
            raise ValueError(f"ShuffleUnit: a stride-1 unit adds its input, so in_channels "
                             f"({in_channels}) must equal out_channels ({out_channels}).")
        mid = out_channels // 4
        first_groups = groups if grouped_first else 1
        if branch_out < 1 or mid % groups or branch_out % groups or in_channels % first_groups:
            raise ValueError(f"ShuffleUnit: with {groups} groups, in_channels ({in_channels}), "
                             f"the bottleneck out_channels // 4 ({mid}) and the branch's "
                             f"output ({branch_out}) must be positive multiples of {groups}; "
                             "choose widths divisible by 4 * groups.")
        self.in_channels, self.stride = in_channels, stride
        self.conv1 = Conv2d(in_channels, mid, 1, bias=False, groups=first_groups)
        self.bn1 = BatchNorm2d(mid)
        self.relu1 = ReLU(inplace=True)
        self.shuffle = ChannelShuffle(groups)
        self.conv2 = Conv2d(mid, mid, 3, stride=stride, padding=1, bias=False, groups=mid)
        self.bn2 = BatchNorm2d(mid)
        self.conv3 = Conv2d(mid, branch_out, 1, bias=False, groups=groups)
        self.bn3 = BatchNorm2d(branch_out)
        self.se = None if se_layer is None else se_layer(branch_out)
        self.shortcut = AvgPool2d(3, stride=2, padding=1) if stride == 2 else None
        self.relu = ReLU(inplace=True)

    def forward(self, x):
        f = self.shuffle(self.relu1(self.bn1(self.conv1(x))))
        f = self.bn3(self.conv3(self.bn2(self.conv2(f))))
        if self.se is not None:
            f = self.se(f)
        if self.shortcut is None:
            y = x + f
        else:
            y = get_array_module(f).concatenate([self.shortcut(x), f], axis=1)
        return self.relu(y)

    def _branch_backward(self, d):
        if self.se is not None:
            d = self.se.backward(d)
        d = self.conv2.backward(self.bn2.backward(self.conv3.backward(self.bn3.backward(d))))
        return self.conv1.backward(self.bn1.backward(self.relu1.backward(
            self.shuffle.backward(d))))

    def backward(self, dout):
        d = self.relu.backward(dout)
        if self.shortcut is None:
            return d + self._branch_backward(d)
        c = self.in_channels
        return self.shortcut.backward(d[:, :c]) + self._branch_backward(d[:, c:])


class ShuffleNetV1(Module):
    """ShuffleNet: the stem (``conv1``, ``bn1``, ``relu``, ``maxpool``), the stages
    ``stage2``, ``stage3``, ``stage4`` of :class:`ShuffleUnit` (the first of each with
    stride 2), ``pool`` (global average) and ``fc``.

    Args:
        num_classes: outputs of ``fc``.
        groups: g (3 in the registered models).
        stem: the stem convolution's width (24).
        widths: the stages' output widths, e.g. (240, 480, 960) for g = 3, 1x.
        repeats: units per stage, e.g. (4, 8, 4); fewer make a smaller network for tests.
        imagenet_stem: a 3x3/2 convolution and a 3x3/2 max pool (ImageNet) instead of a
            3x3/1 convolution and no pool (32x32 images).
        se_layer: None for the plain network, else ``channels -> Module``, the SE block on
            every unit's residual branch.

    forward(x): (N, 3, H, W) -> logits (N, num_classes).
    backward(dlogits): (N, num_classes) -> dx (N, 3, H, W), accumulating every
    parameter's gradient.
    """

    def __init__(self, num_classes=1000, groups=3, stem=24, widths=(240, 480, 960),
                 repeats=(4, 8, 4), imagenet_stem=True, se_layer=None):
        super().__init__()
        if len(widths) != len(repeats):
            raise ValueError(f"ShuffleNetV1: widths {tuple(widths)} and repeats "
                             f"{tuple(repeats)} must have one entry per stage.")
        self.conv1 = Conv2d(3, stem, 3, stride=2 if imagenet_stem else 1, padding=1,
                            bias=False)
        self.bn1 = BatchNorm2d(stem)
        self.relu = ReLU(inplace=True)
        self.maxpool = MaxPool2d(3, stride=2, padding=1) if imagenet_stem else None
        channels = stem
        self.stage_names = []
        for stage, (width, count) in enumerate(zip(widths, repeats), start=2):
            units = []
            for i in range(positive_int(count, "repeats", "ShuffleNetV1")):
                units.append(ShuffleUnit(channels, width, groups, stride=2 if i == 0 else 1,
                                         grouped_first=not (stage == 2 and i == 0),
                                         se_layer=se_layer))
                channels = width
            setattr(self, f"stage{stage}", Sequential(*units))
            self.stage_names.append(f"stage{stage}")
        self.pool = GlobalAvgPool2d()
        self.fc = Linear(channels, num_classes)
        self.name = None
        self.options = None
        convs = [self.conv1] + [c for name in self.stage_names for u in getattr(self, name)
                                for c in (u.conv1, u.conv2, u.conv3)]
        for conv in convs:
            conv.weight.data = init.kaiming_normal_fan_out(conv.weight.data.shape)

    def forward(self, x):
        check_model_input(self, x)
        out = self.relu(self.bn1(self.conv1(x)))
        if self.maxpool is not None:
            out = self.maxpool(out)
        for name in self.stage_names:
            out = getattr(self, name)(out)
        return self.fc(self.pool(out))

    def backward(self, dout):
        d = self.pool.backward(self.fc.backward(dout))
        for name in reversed(self.stage_names):
            d = getattr(self, name).backward(d)
        if self.maxpool is not None:
            d = self.maxpool.backward(d)
        return self.conv1.backward(self.bn1.backward(self.relu.backward(d)))


def _shufflenet(name, num_classes, se=None):
    config = SHUFFLENET_CONFIGS[name.removeprefix("se_")]
    model = ShuffleNetV1(num_classes, se_layer=se_layer_factory(se) if se else None, **config)
    model.name, model.options = name, {"num_classes": num_classes, **(se or {})}
    return model


# SE options of the se_ factories: squeeze ("avg" or "max"), gate ("sigmoid", "tanh" or
# "relu"), no_squeeze, divisor (see npsenet.nn.SEBlock).

@register_model
def se_shufflenet_v1(num_classes=1000, reduction=16, bias=True, **se_options):
    """SE-ShuffleNet (TPAMI 2019, Table 3; g = 3, 1x), 2,484,533 parameters with the
    defaults.

    ``shufflenet_v1`` with an SE block on each unit's residual branch, after its last BN
    and before the addition or concatenation.

    Args:
        num_classes: outputs of ``fc``.
        reduction: r; the SE's hidden width is max(1, C // r).
        bias: biases in the SE's two FC layers (on by default for ImageNet models).
        **se_options: squeeze, gate, no_squeeze, divisor.
    """
    config = se_block_config("se_shufflenet_v1", reduction, bias, se_options)
    return _shufflenet("se_shufflenet_v1", num_classes, config)


@register_model
def shufflenet_v1(num_classes=1000):
    """ShuffleNet (Zhang et al., CVPR 2018, Table 1; g = 3, 1x), 1,865,728 parameters:
    stages of 240, 480, 960 channels repeated 4, 8, 4 times.

    Args:
        num_classes: outputs of ``fc``.
    """
    return _shufflenet("shufflenet_v1", num_classes)


@register_model
def se_shufflenet_v1_cifar(num_classes=10, reduction=16, bias=False, **se_options):
    """SE-ShuffleNet for 32x32 images, 173,470 parameters with the defaults.

    ``shufflenet_v1_cifar`` with an SE block on each unit's residual branch.

    Args:
        num_classes: outputs of ``fc``.
        reduction: r; the SE's hidden width is max(1, C // r).
        bias: biases in the SE's two FC layers (off by default for CIFAR models).
        **se_options: squeeze, gate, no_squeeze, divisor.
    """
    config = se_block_config("se_shufflenet_v1_cifar", reduction, bias, se_options)
    return _shufflenet("se_shufflenet_v1_cifar", num_classes, config)


@register_model
def shufflenet_v1_cifar(num_classes=10):
    """ShuffleNet (g = 3) for 32x32 images, 111,358 parameters: a 3x3/1 stem of 24 channels
    without max pool, stages of 120, 240, 480 channels (0.5x) with half the units, 2, 4, 2
    (32x32 -> 4x4; an epoch of the 4,660-image subset costs about what ResNet-20's does).

    Args:
        num_classes: outputs of ``fc``.
    """
    return _shufflenet("shufflenet_v1_cifar", num_classes)
