"""SENet-154, the network of the paper's ILSVRC 2017 entry (Hu et al., TPAMI 2019,
appendix "Details of SENet-154"): an SE-ResNeXt-152 with wider groups, a deeper stem and
dropout, as released in Caffe and ported by timm (``legacy_senet154``).

    model = senet154()                                # 115,088,984 parameters
    small = SENet(layers=(1, 1, 1, 1), widths=(4, 8, 8, 8), groups=2, stem_width=8)

Architecture (Hu et al.'s Caffe layout, timm's ``legacy_senet154``):

* stem: three 3x3 convolutions, 3 -> 64 (stride 2), 64 -> 64, 64 -> 128, each with BN and
  ReLU, then a 3x3/2 max pool with ``ceil_mode=True`` (Caffe's rounding: 112 -> 56 at 224).
* 4 stages of (3, 8, 36, 3) :class:`SEBottleneck` blocks of planes 64, 128, 256, 512:
  1x1 C_in -> 2 planes, 3x3 (stride s, 64 groups) 2 planes -> 4 planes, 1x1 4 planes ->
  4 planes (expansion 4), each with BN, the SE block (reduction 16, FC layers with biases)
  on the branch before the addition. Stage 1 keeps the resolution, later stages halve it
  in their first block. The projection shortcut is a 1x1 convolution in stage 1 and a 3x3
  one (padding 1, stride 2) in stages 2-4, each with BN.
* global average pooling, dropout 0.2, ``fc`` (2048 -> classes).

The state_dict keys: stem ``conv1, bn1, conv2, bn2, conv3, bn3``; blocks
``layer{1..4}.{i}.conv1, bn1, conv2, bn2, conv3, bn3, se.fc1, se.fc2, downsample.0,
downsample.1``; classifier ``fc``. (timm's legacy names are ``layer0.conv1 ...``,
``se_module.fc1/fc2`` as 1x1 convolutions and ``last_linear``; the SE's FC weights are
theirs without the trailing 1x1.)

Cost. ``npsenet summary --model senet154`` (224x224) counts 20,753,391,616 MACs:
20.680 G in the convolutions, 2 M in ``fc``, 38.6 M in batch norm and 32.9 M in the SE
blocks (6.6 M in their FC layers, 13.2 M in the squeeze, 13.2 M in the scale), with the
rules of :mod:`npsenet.summary`. The paper reports SENet-154's errors but no
multiply-add figure for it, so there is none to compare with.

There is no CIFAR SENet-154: at 32x32 it is the SE-ResNeXt family, whose CIFAR member is
``se_resnext_cifar`` (:mod:`npsenet.models.resnet`). There is no registered plain twin
either (``npsenet summary --model senet154 --compare`` says so).
"""
from __future__ import annotations

from .. import init
from ..nn import (BatchNorm2d, Conv2d, Dropout, GlobalAvgPool2d, Linear, MaxPool2d, Module,
                  ReLU, Sequential)
from ..nn._checks import positive_int
from .blocks import Bottleneck, ResidualBlock
from .entry import check_model_input
from .registry import register_model
from .se_options import se_config, se_layer_factory

SENET154_LAYERS = (3, 8, 36, 3)
SENET154_WIDTHS = (64, 128, 256, 512)
SENET154_GROUPS = 64
SENET154_STEM_WIDTH = 64


class SEBottleneck(Bottleneck):
    """SENet-154's block: F(x) = BN(conv1x1(ReLU(BN(conv3x3_s,g(ReLU(BN(conv1x1(x)))))))).

    conv1: C_in -> 2 planes (1x1); conv2: 2 planes -> 4 planes (3x3, stride s, ``groups``
    groups); conv3: 4 planes -> 4 planes (1x1); C_out = 4 planes. The SE layer, shortcut
    and placements are :class:`~npsenet.models.blocks.ResidualBlock`'s (``3x3``: the SE
    layer 4 planes wide after conv2's BN and ReLU); the branch's forward and backward are
    :class:`~npsenet.models.blocks.Bottleneck`'s.

    Args:
        in_channels: C_in.
        planes: C_out / 4.
        stride: s of the 3x3 convolution and of the projection shortcut.
        se_layer: None for a plain block, else a callable ``channels -> Module``.
        placement: where the SE layer sits, one of ``PLACEMENTS``.
        groups: g of the 3x3 convolution (64 in SENet-154); must divide 2 planes and
            4 planes.
        downsample_kernel: k of the projection shortcut's convolution (padding k // 2).

    forward(x): (N, C_in, H, W) -> (N, 4 planes, H/s, W/s); backward(dy) -> dx.
    """

    expansion = 4

    def __init__(self, in_channels, planes, stride=1, se_layer=None, placement="standard",
                 *, groups=SENET154_GROUPS, downsample_kernel=1):
        # Bottleneck's layers under Bottleneck's names, so its branch forward and backward
        # serve as they are; only the widths differ, hence ResidualBlock's __init__
        ResidualBlock.__init__(self)
        groups = positive_int(groups, "groups", "SEBottleneck")
        if (2 * planes) % groups:
            raise ValueError(f"SEBottleneck: groups must divide 2 * planes = {2 * planes}, "
                             f"got groups={groups}; choose planes a multiple of groups / 2.")
        out_channels = planes * self.expansion
        self.conv1 = Conv2d(in_channels, 2 * planes, 1, bias=False)
        self.bn1 = BatchNorm2d(2 * planes)
        self.relu1 = ReLU(inplace=True)
        self.conv2 = Conv2d(2 * planes, out_channels, 3, stride=stride, padding=1, bias=False,
                            groups=groups)
        self.bn2 = BatchNorm2d(out_channels)
        self.relu2 = ReLU(inplace=True)
        self.conv3 = Conv2d(out_channels, out_channels, 1, bias=False)
        self.bn3 = BatchNorm2d(out_channels)
        self._add_shortcut_and_se(in_channels, out_channels, stride, se_layer, placement,
                                  inner_channels=out_channels,
                                  downsample_kernel=downsample_kernel)


class SENet(Module):
    """The SENet-154 network, at any depth and width (smaller ones for tests).

    Args:
        layers: blocks per stage (SENet-154: (3, 8, 36, 3)).
        widths: planes per stage (64, 128, 256, 512); outputs are 4x as wide.
        groups: groups of every block's 3x3 convolution (64).
        stem_width: w; the stem is 3 -> w (stride 2) -> w -> 2 w (64: 64, 64, 128).
        num_classes: outputs of ``fc``.
        drop_rate: the dropout before ``fc`` (0.2; 0 for none).
        se_layer: None for no SE, else a callable ``channels -> Module``.
        placement: where the SE layer sits in each block, one of ``PLACEMENTS``.
        se_stages: the stage numbers, from 1, whose blocks carry SE (default: all).

    Initialisation: torchvision-like, every convolution N(0, 2 / fan_out), BN weight 1 and
    bias 0, linear layers PyTorch's default (the Caffe release ships trained weights only).

    forward(x): (N, 3, H, W) -> logits (N, num_classes); backward(dlogits) -> dx.
    """

    def __init__(self, layers=SENET154_LAYERS, widths=SENET154_WIDTHS,
                 groups=SENET154_GROUPS, stem_width=SENET154_STEM_WIDTH, num_classes=1000,
                 drop_rate=0.2, se_layer=None, placement="standard", se_stages=None):
        super().__init__()
        if len(layers) != len(widths):
            raise ValueError(f"SENet: layers {tuple(layers)} and widths {tuple(widths)} must "
                             "have one entry per stage.")
        w = positive_int(stem_width, "stem_width", "SENet")
        se_stages = set(range(1, len(layers) + 1) if se_stages is None else se_stages)
        self.conv1 = Conv2d(3, w, 3, stride=2, padding=1, bias=False)
        self.bn1 = BatchNorm2d(w)
        self.relu1 = ReLU(inplace=True)
        self.conv2 = Conv2d(w, w, 3, padding=1, bias=False)
        self.bn2 = BatchNorm2d(w)
        self.relu2 = ReLU(inplace=True)
        self.conv3 = Conv2d(w, 2 * w, 3, padding=1, bias=False)
        self.bn3 = BatchNorm2d(2 * w)
        self.relu3 = ReLU(inplace=True)
        self.maxpool = MaxPool2d(3, stride=2, ceil_mode=True)
        channels = 2 * w
        self.stage_names = []
        for stage, (count, planes) in enumerate(zip(layers, widths), start=1):
            stage_se = se_layer if stage in se_stages else None
            blocks = []
            for i in range(count):
                stride = 2 if stage > 1 and i == 0 else 1
                blocks.append(SEBottleneck(channels, planes, stride, stage_se, placement,
                                           groups=groups,
                                           downsample_kernel=1 if stage == 1 else 3))
                channels = planes * SEBottleneck.expansion
            setattr(self, f"layer{stage}", Sequential(*blocks))
            self.stage_names.append(f"layer{stage}")
        self.avgpool = GlobalAvgPool2d()
        self.dropout = Dropout(drop_rate)
        self.fc = Linear(channels, num_classes)
        self.name = None
        self.options = None
        for m in self.modules():
            if isinstance(m, Conv2d):
                m.weight.data = init.kaiming_normal_fan_out(m.weight.data.shape)

    def forward(self, x):
        check_model_input(self, x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.maxpool(self.relu3(self.bn3(self.conv3(out))))
        for name in self.stage_names:
            out = getattr(self, name)(out)
        return self.fc(self.dropout(self.avgpool(out)))

    def backward(self, dout):
        d = self.avgpool.backward(self.dropout.backward(self.fc.backward(dout)))
        for name in reversed(self.stage_names):
            d = getattr(self, name).backward(d)
        d = self.conv3.backward(self.bn3.backward(self.relu3.backward(self.maxpool.backward(d))))
        d = self.conv2.backward(self.bn2.backward(self.relu2.backward(d)))
        return self.conv1.backward(self.bn1.backward(self.relu1.backward(d)))


def senet_from_options(name, num_classes, drop_rate, reduction, bias, se_options,
                       **architecture):
    """An SENet with SE options checked by :func:`~npsenet.models.se_options.se_config`;
    ``architecture``: SENet's layers, widths, groups, stem_width (default SENet-154's).
    Sets ``model.name`` and ``model.options`` (the classes, drop rate and SE options)."""
    num_stages = len(architecture.get("layers", SENET154_LAYERS))
    config = se_config(name, num_stages, reduction, bias, se_options)
    model = SENet(num_classes=num_classes, drop_rate=drop_rate,
                  se_layer=se_layer_factory(config), placement=config["placement"],
                  se_stages=config["se_stages"], **architecture)
    model.name = name
    model.options = {"num_classes": num_classes, "drop_rate": drop_rate, **config}
    return model


@register_model(plain_twin=None)
def senet154(num_classes=1000, reduction=16, bias=True, drop_rate=0.2, **se_options):
    """SENet-154 (the paper's ILSVRC 2017 network; timm's ``legacy_senet154``),
    115,088,984 parameters with the defaults.

    SE bottleneck stages (3, 8, 36, 3) of planes 64, 128, 256, 512 with 64-group 3x3
    convolutions, a three-convolution stem, dropout 0.2 before ``fc`` (see the module
    docstring).

    Args:
        num_classes: outputs of ``fc``.
        reduction: r; the SE's hidden width is max(1, C // r).
        bias: biases in the SE's two FC layers (on, as the Caffe model's 1x1 convolutions).
        drop_rate: the dropout probability before ``fc`` (0 for none).
        **se_options: squeeze, gate, placement, se_stages (from 1..4), no_squeeze, divisor.
    """
    return senet_from_options("senet154", num_classes, drop_rate, reduction, bias, se_options)
