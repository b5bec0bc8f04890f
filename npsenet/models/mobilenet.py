"""MobileNet (Howard et al., 2017, width 1.0, 224x224) and SE-MobileNet (Hu et al., TPAMI
2019, Table 3, the mobile setting).

    model = mobilenet_v1()                    # 4,231,976 parameters
    model = se_mobilenet_v1()                 # an SE block after each separable unit
    model = mobilenet_v1_cifar()              # stride-1 stem, half the widths

The network (MobileNet's Table 1): a 3x3/2 convolution to 32 channels, then 13
depthwise-separable units, each a 3x3 depthwise convolution (one filter per channel,
``Conv2d(groups=C)``) with BN and ReLU and a 1x1 pointwise convolution with BN and ReLU,
to 64, 128, 128, 256, 256, 512 x 6, 1024, 1024 channels; the depthwise convolutions of
units 2, 4, 6 and 12 have stride 2 (224 -> 7), then global average pooling and ``fc``.

Where SE goes. The paper does not draw SE-MobileNet; as in SE-VGG (its Sec. 6.1, SE after
the non-linearity that follows a convolution), the SE block here recalibrates each unit's
output, the pointwise convolution's ReLU output, before the next unit's depthwise
convolution (``features.N.se``, 13 SE blocks):

    unit(x) = SE(ReLU(BN(pw(ReLU(BN(dw(x)))))))

That gives 4,718,044 parameters with FC biases, the paper's 4.7 M (on the depthwise
convolutions' outputs instead, C_in channels, SE would add 0.35 M: 4.58 M in all).

Costs (``npsenet summary``, MACs as counted in :mod:`npsenet.summary`), 224x224, 1000
classes, against the paper's TPAMI 2019 Table 3 (MFLOPs there are multiply-adds):

    mobilenet_v1     4,231,976 parameters  573.8 M MACs   paper MobileNet     569 MFLOPs, 4.2 M
    se_mobilenet_v1  4,718,044 parameters  579.7 M MACs   paper SE-MobileNet  572 MFLOPs, 4.7 M

MobileNet's own count (its Table 1, 569 M) is the convolutions and ``fc`` (568.7 M here);
npsenet also counts BN, one per output element of each convolution (5.04 M), and the
global pool (0.05 M). SE adds 5.9 M MACs (+1.03 %): 0.48 M in the excitation FC layers
and 2.7 M each in the squeeze and in the scale; the paper's +3 M matches the FC layers
and the scale (3.2 M) without the squeeze (an average, which it does not count). SE adds
486,068 parameters (+11.5 %), 2 C (C // 16) + C // 16 + C per unit.

Initialisation: convolutions N(0, 2 / fan_out) (torchvision's, for the depthwise ones
too: fan_out = 1 * 3 * 3), BN weight 1 and bias 0, ``fc`` PyTorch's default.
"""
from __future__ import annotations

from .. import init
from ..nn import BatchNorm2d, Conv2d, GlobalAvgPool2d, Linear, Module, ReLU, Sequential
from ..nn._checks import positive_int
from .entry import check_model_input
from .registry import register_model
from .se_options import se_block_config, se_layer_factory

# the 13 depthwise-separable units of MobileNet's Table 1: (output channels, stride)
MOBILENET_V1_UNITS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
                      (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))
STEM_WIDTH = 32

# the registered networks: the width multiplier α and the stem's stride
MOBILENET_CONFIGS = {
    "mobilenet_v1": {"width": 1.0, "stem_stride": 2},
    "mobilenet_v1_cifar": {"width": 0.5, "stem_stride": 1},
}


def scaled(channels, width):
    """α C rounded down, at least 1: MobileNet's width multiplier (Howard et al., Sec. 3.3)."""
    return max(1, int(channels * width))


class DepthwiseSeparable(Module):
    """A depthwise-separable unit (MobileNet's Fig. 3): a 3x3 depthwise convolution with
    BN and ReLU (``conv_dw``, ``bn_dw``, ``relu_dw``), a 1x1 pointwise convolution with BN
    and ReLU (``conv_pw``, ``bn_pw``, ``relu_pw``), and optionally an SE block on the
    result (``se``).

    Args:
        in_channels, out_channels: C_in and C_out.
        stride: the depthwise convolution's stride.
        se_layer: None, or ``channels -> Module`` (the SE block on the C_out outputs).

    forward(x): (N, C_in, H, W) -> (N, C_out, H/s, W/s).
    backward(dy): the layers' backward passes in reverse order -> dx (N, C_in, H, W).
    """

    def __init__(self, in_channels, out_channels, stride=1, se_layer=None):
        super().__init__()
        self.conv_dw = Conv2d(in_channels, in_channels, 3, stride=stride, padding=1,
                              bias=False, groups=in_channels)
        self.bn_dw = BatchNorm2d(in_channels)
        self.relu_dw = ReLU(inplace=True)
        self.conv_pw = Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn_pw = BatchNorm2d(out_channels)
        self.relu_pw = ReLU(inplace=True)
        self.se = None if se_layer is None else se_layer(out_channels)

    def forward(self, x):
        y = self.relu_dw(self.bn_dw(self.conv_dw(x)))
        y = self.relu_pw(self.bn_pw(self.conv_pw(y)))
        return y if self.se is None else self.se(y)

    def backward(self, dout):
        d = dout if self.se is None else self.se.backward(dout)
        d = self.conv_pw.backward(self.bn_pw.backward(self.relu_pw.backward(d)))
        return self.conv_dw.backward(self.bn_dw.backward(self.relu_dw.backward(d)))


class MobileNetV1(Module):
    """MobileNet: ``stem`` (3x3 convolution, BN, ReLU), ``features`` (the
    depthwise-separable units), ``pool`` (global average) and ``fc``.

    Args:
        num_classes: outputs of ``fc``.
        width: the width multiplier α (every layer's channels α C, rounded down).
        stem_stride: 2 for ImageNet, 1 for 32x32 images.
        units: (output channels, stride) of each unit before α, default
            :data:`MOBILENET_V1_UNITS`; fewer units make a smaller network for tests.
        se_layer: None for the plain network, else ``channels -> Module``, the SE block
            on every unit's output.

    forward(x): (N, 3, H, W) -> logits (N, num_classes).
    backward(dlogits): (N, num_classes) -> dx (N, 3, H, W), accumulating every
    parameter's gradient.
    """

    def __init__(self, num_classes=1000, width=1.0, stem_stride=2, units=MOBILENET_V1_UNITS,
                 se_layer=None):
        super().__init__()
        if not width > 0:
            raise ValueError(f"MobileNetV1: width must be a positive multiplier, got {width!r}.")
        positive_int(stem_stride, "stem_stride", "MobileNetV1")
        channels = scaled(STEM_WIDTH, width)
        self.stem = Sequential(Conv2d(3, channels, 3, stride=stem_stride, padding=1, bias=False),
                               BatchNorm2d(channels), ReLU(inplace=True))
        blocks = []
        for out, stride in units:
            blocks.append(DepthwiseSeparable(channels, scaled(out, width), stride, se_layer))
            channels = scaled(out, width)
        self.features = Sequential(*blocks)
        self.pool = GlobalAvgPool2d()
        self.fc = Linear(channels, num_classes)
        self.name = None
        self.options = None
        for conv in [self.stem[0]] + [c for u in self.features for c in (u.conv_dw, u.conv_pw)]:
            conv.weight.data = init.kaiming_normal_fan_out(conv.weight.data.shape)

    def forward(self, x):
        check_model_input(self, x)
        return self.fc(self.pool(self.features(self.stem(x))))

    def backward(self, dout):
        d = self.pool.backward(self.fc.backward(dout))
        return self.stem.backward(self.features.backward(d))


def _mobilenet(name, num_classes, se=None):
    config = MOBILENET_CONFIGS[name.removeprefix("se_")]
    model = MobileNetV1(num_classes, config["width"], config["stem_stride"],
                        se_layer=se_layer_factory(se) if se else None)
    model.name, model.options = name, {"num_classes": num_classes, **(se or {})}
    return model


# SE options of the se_ factories: squeeze ("avg" or "max"), gate ("sigmoid", "tanh" or
# "relu"), no_squeeze, divisor (see npsenet.nn.SEBlock).

@register_model
def se_mobilenet_v1(num_classes=1000, reduction=16, bias=True, **se_options):
    """SE-MobileNet (TPAMI 2019, Table 3), 4,718,044 parameters with the defaults.

    ``mobilenet_v1`` with an SE block on the output of each of its 13
    depthwise-separable units (after the pointwise convolution's ReLU).

    Args:
        num_classes: outputs of ``fc``.
        reduction: r; the SE's hidden width is max(1, C // r).
        bias: biases in the SE's two FC layers (on by default for ImageNet models).
        **se_options: squeeze, gate, no_squeeze, divisor.
    """
    config = se_block_config("se_mobilenet_v1", reduction, bias, se_options)
    return _mobilenet("se_mobilenet_v1", num_classes, config)


@register_model
def mobilenet_v1(num_classes=1000):
    """MobileNet (Howard et al., 2017, Table 1; width 1.0), 4,231,976 parameters: a 3x3/2
    stem and 13 depthwise-separable units, global average pooling, ``fc``.

    Args:
        num_classes: outputs of ``fc``.
    """
    return _mobilenet("mobilenet_v1", num_classes)


@register_model
def se_mobilenet_v1_cifar(num_classes=10, reduction=16, bias=False, **se_options):
    """SE-MobileNet for 32x32 images, 943,658 parameters with the defaults.

    ``mobilenet_v1_cifar`` with an SE block on the output of each of its 13 units.

    Args:
        num_classes: outputs of ``fc``.
        reduction: r; the SE's hidden width is max(1, C // r).
        bias: biases in the SE's two FC layers (off by default for CIFAR models).
        **se_options: squeeze, gate, no_squeeze, divisor.
    """
    config = se_block_config("se_mobilenet_v1_cifar", reduction, bias, se_options)
    return _mobilenet("se_mobilenet_v1_cifar", num_classes, config)


@register_model
def mobilenet_v1_cifar(num_classes=10):
    """MobileNet for 32x32 images, 823,722 parameters: width 0.5 (16 stem channels,
    units to 32, ..., 512) and a stride-1 stem, so the four stride-2 units take 32x32 to
    2x2.

    Args:
        num_classes: outputs of ``fc``.
    """
    return _mobilenet("mobilenet_v1_cifar", num_classes)
