"""ResNets, ResNeXts and their SE versions: the network, and one registered factory per
model name.

    model = se_resnet20()                        # 274,490 parameters
    model = se_resnet50(placement="pre")         # an SE ablation
    model = se_resnext50_32x4d(placement="3x3")  # the paper's SE_3x3 (TPAMI 2019, Table 15)
    model = build_model("resnet56", num_classes=100)

The architectures (blocks per stage, widths, groups, default classes and SE bias and
divisor) are the table in :mod:`npsenet.models.specs`; the residual blocks, their SE
placements and their backward passes are in :mod:`npsenet.models.blocks`. Every factory
sets ``model.name`` and ``model.options``, so ``build_model(model.name, **model.options)``
rebuilds the model. SENet-154, whose blocks differ, is :mod:`npsenet.models.senet`.

Cost. The paper's TPAMI 2019 Table 2 gives GFLOPs at 224x224 for the ResNeXts (it has
no ResNet-18/34). ``npsenet summary --model NAME`` counts MACs with the rules of
:mod:`npsenet.summary`: convolutions and ``fc``, plus batch norm (one per output element)
and, in the SE models, the squeeze and the scale (one per element each):

    model                 parameters    summary MACs     of which conv+fc   paper (Table 2)
    resnet18              11,689,512    1,816,582,144    1.814 G            --
    se_resnet18           11,779,624    1,818,175,488    1.814 G            --
    resnet34              21,797,672    3,667,524,608    3.664 G            --
    se_resnet34           21,960,416    3,670,443,008    3.664 G            --
    resnext50_32x4d       25,028,904    4,244,980,736    4.230 G            4.24
    se_resnext50_32x4d    27,559,896    4,258,534,400    4.233 G            4.25
    resnext101_32x4d      44,177,704    7,991,321,600    7.970 G            7.99
    se_resnext101_32x4d   48,955,416    8,013,927,424    7.975 G            8.00

The convolutions and the classifier alone come 0.2-0.3% below the paper's figures; the
totals, with batch norm, 0.01-0.2% above them (the paper rounds to 0.01 G and does not
state what it counts). SE adds
13.6 M (SE-ResNeXt-50) and 22.6 M (SE-ResNeXt-101) MACs here: 2.5 M and 4.7 M in its FC
layers, the rest in the squeeze and the scale; the paper's +0.01 G is the same order.

CIFAR: ResNet-18/34's CIFAR counterparts are the (SE-)ResNet-20/32/56/110 below (basic
blocks, 16/32/64 channels, no early downsampling); ResNeXt's is ``resnext_cifar``, a
small ResNeXt-29 (see its docstring).
"""
from __future__ import annotations

from .. import init
from ..nn import BatchNorm2d, Conv2d, GlobalAvgPool2d, Linear, MaxPool2d, Module, ReLU, Sequential
from .blocks import BasicBlock, Bottleneck
from .entry import check_model_input
from .registry import register_model
from .se_options import se_config, se_layer_factory
from .specs import spec_for

BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(Module):
    """A stem, stages of residual blocks, global average pooling and a classifier.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: blocks per stage, e.g. (3, 3, 3) for ResNet-20, (3, 4, 6, 3) for ResNet-50.
        widths: planes per stage, e.g. (16, 32, 64) (CIFAR) or (64, 128, 256, 512).
        num_classes: outputs of ``fc``.
        imagenet_stem: a 7x7/2 convolution and a 3x3/2 max pool (ImageNet) instead of a
            3x3/1 convolution (CIFAR). The stem's width is ``widths[0]``.
        se_layer: None for a plain ResNet, else a callable ``channels -> Module`` that
            makes each block's SE layer (e.g. ``functools.partial(ns.nn.SEBlock,
            reduction=16)``).
        placement: where the SE layer sits in each block, one of ``PLACEMENTS``.
        se_stages: the stage numbers, from 1, whose blocks carry SE (default: all).
        groups, base_width: passed to every block (the Bottleneck's grouped width).

    Stage 1 keeps the resolution; each later stage halves it in its first block.
    Initialisation is torchvision's: every convolution N(0, 2 / fan_out), BN weight 1 and
    bias 0, linear layers PyTorch's default.

    forward(x): (N, 3, H, W) -> logits (N, num_classes).
    backward(dlogits): (N, num_classes) -> dx (N, 3, H, W), accumulating every
    parameter's gradient.
    """

    def __init__(self, block, layers, widths, num_classes=10, imagenet_stem=False,
                 se_layer=None, placement="standard", se_stages=None, groups=1, base_width=64):
        super().__init__()
        if len(layers) != len(widths):
            raise ValueError(f"ResNet: layers {tuple(layers)} and widths {tuple(widths)} must "
                             "have one entry per stage.")
        se_stages = set(range(1, len(layers) + 1) if se_stages is None else se_stages)
        stem = widths[0]
        if imagenet_stem:
            self.conv1 = Conv2d(3, stem, 7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = Conv2d(3, stem, 3, padding=1, bias=False)
        self.bn1 = BatchNorm2d(stem)
        self.relu = ReLU(inplace=True)
        self.maxpool = MaxPool2d(3, stride=2, padding=1) if imagenet_stem else None
        channels = stem
        self.stage_names = []
        for stage, (count, planes) in enumerate(zip(layers, widths), start=1):
            stage_se = se_layer if stage in se_stages else None
            blocks = []
            for i in range(count):
                stride = 2 if stage > 1 and i == 0 else 1
                blocks.append(block(channels, planes, stride, stage_se, placement,
                                    groups=groups, base_width=base_width))
                channels = planes * block.expansion
            setattr(self, f"layer{stage}", Sequential(*blocks))
            self.stage_names.append(f"layer{stage}")
        self.avgpool = GlobalAvgPool2d()
        self.fc = Linear(channels, num_classes)
        self.name = None
        self.options = None
        for m in self.modules():
            if isinstance(m, Conv2d):
                m.weight.data = init.kaiming_normal_fan_out(m.weight.data.shape)

    def forward(self, x):
        check_model_input(self, x)
        out = self.relu(self.bn1(self.conv1(x)))
        if self.maxpool is not None:
            out = self.maxpool(out)
        for name in self.stage_names:
            out = getattr(self, name)(out)
        return self.fc(self.avgpool(out))

    def backward(self, dout):
        d = self.avgpool.backward(self.fc.backward(dout))
        for name in reversed(self.stage_names):
            d = getattr(self, name).backward(d)
        if self.maxpool is not None:
            d = self.maxpool.backward(d)
        return self.conv1.backward(self.bn1.backward(self.relu.backward(d)))


def resnet_from_spec(spec, num_classes, se=None):
    """The :class:`ResNet` of a :class:`~npsenet.models.specs.ResNetSpec`.

    ``se``: None for a plain network, else a config from
    :func:`~npsenet.models.se_options.se_config` (the SE layer, placement and stages).
    """
    se = se or {}
    return ResNet(BLOCKS[spec.block], spec.layers, spec.widths, num_classes,
                  imagenet_stem=spec.imagenet_stem,
                  se_layer=se_layer_factory(se) if se else None,
                  placement=se.get("placement", "standard"), se_stages=se.get("se_stages"),
                  groups=spec.groups, base_width=spec.base_width)


def _plain_resnet(name, num_classes):
    model = resnet_from_spec(spec_for(name), num_classes)
    model.name, model.options = name, {"num_classes": num_classes}
    return model


def _se_resnet(name, num_classes, reduction, bias, se_options):
    spec = spec_for(name)
    se_options = {"divisor": spec.se_divisor, **se_options}
    config = se_config(name, spec.num_stages, reduction, bias, se_options)
    model = resnet_from_spec(spec, num_classes, config)
    model.name, model.options = name, {"num_classes": num_classes, **config}
    return model


# -- CIFAR (32x32 inputs): 3 stages of basic blocks, 16/32/64 channels -------------------
# SE options of every se_ factory: squeeze ("avg" or "max"), gate ("sigmoid", "tanh" or
# "relu"), placement (one of PLACEMENTS), se_stages (stage numbers from 1), no_squeeze
# (1x1 convolutions instead of pooling and FC layers), divisor (the hidden width's
# rounding); see npsenet.nn.SEBlock.

@register_model
def se_resnet20(num_classes=10, reduction=16, bias=False, **se_options):
    """SE-ResNet-20 for 32x32 images, 274,490 parameters with the defaults.

    3 stages of 3 basic blocks (16, 32, 64 channels), an SE block in every block.

    Args:
        num_classes: outputs of ``fc``.
        reduction: r; the SE's hidden width is max(1, C // r).
        bias: biases in the SE's two FC layers (off by default for the CIFAR models).
        **se_options: squeeze, gate, placement, se_stages (from 1..3), no_squeeze,
            divisor.
    """
    return _se_resnet("se_resnet20", num_classes, reduction, bias, se_options)


@register_model
def resnet20(num_classes=10):
    """ResNet-20 for 32x32 images, 272,474 parameters: 3 stages of 3 basic blocks
    (16, 32, 64 channels, projection shortcuts), no SE.

    Args:
        num_classes: outputs of ``fc``.
    """
    return _plain_resnet("resnet20", num_classes)


@register_model
def se_resnet32(num_classes=10, reduction=16, bias=False, **se_options):
    """SE-ResNet-32 for 32x32 images, 470,266 parameters with the defaults.

    3 stages of 5 basic blocks (16, 32, 64 channels), an SE block in every block.

    Args:
        num_classes: outputs of ``fc``.
        reduction: r; the SE's hidden width is max(1, C // r).
        bias: biases in the SE's two FC layers (off by default for the CIFAR models).
        **se_options: squeeze, gate, placement, se_stages (from 1..3), no_squeeze,
            divisor.
    """
    return _se_resnet("se_resnet32", num_classes, reduction, bias, se_options)


@register_model
def resnet32(num_classes=10):
    """ResNet-32 for 32x32 images, 466,906 parameters: 3 stages of 5 basic blocks
    (16, 32, 64 channels, projection shortcuts), no SE.

    Args:
        num_classes: outputs of ``fc``.
    """
    return _plain_resnet("resnet32", num_classes)


@register_model
def se_resnet56(num_classes=10, reduction=16, bias=False, **se_options):
    """SE-ResNet-56 for 32x32 images, 861,818 parameters with the defaults.

    3 stages of 9 basic blocks (16, 32, 64 channels), an SE block in every block.

    Args:
        num_classes: outputs of ``fc``.
        reduction: r; the SE's hidden width is max(1, C // r).
        bias: biases in the SE's two FC layers (off by default for the CIFAR models).
        **se_options: squeeze, gate, placement, se_stages (from 1..3), no_squeeze,
            divisor.
    """
    return _se_resnet("se_resnet56", num_classes, reduction, bias, se_options)


@register_model
def resnet56(num_classes=10):
    """ResNet-56 for 32x32 images, 855,770 parameters: 3 stages of 9 basic blocks
    (16, 32, 64 channels, projection shortcuts), no SE.

    Args:
        num_classes: outputs of ``fc``.
    """
    return _plain_resnet("resnet56", num_classes)


@register_model
def se_resnet110(num_classes=10, reduction=16, bias=False, **se_options):
    """SE-ResNet-110 for 32x32 images, 1,742,810 parameters with the defaults.

    3 stages of 18 basic blocks (16, 32, 64 channels), an SE block in every block.

    Args:
        num_classes: outputs of ``fc``.
        reduction: r; the SE's hidden width is max(1, C // r).
        bias: biases in the SE's two FC layers (off by default for the CIFAR models).
        **se_options: squeeze, gate, placement, se_stages (from 1..3), no_squeeze,
            divisor.
    """
    return _se_resnet("se_resnet110", num_classes, reduction, bias, se_options)


@register_model
def resnet110(num_classes=10):
    """ResNet-110 for 32x32 images, 1,730,714 parameters: 3 stages of 18 basic blocks
    (16, 32, 64 channels, projection shortcuts), no SE.

    Args:
        num_classes: outputs of ``fc``.
    """
    return _plain_resnet("resnet110", num_classes)


# -- ImageNet (224x224 inputs): 4 stages of bottlenecks, 64/128/256/512 planes -----------

@register_model
def se_resnet50(num_classes=1000, reduction=16, bias=True, **se_options):
    """SE-ResNet-50 (the paper's Table 1), 28,088,024 parameters with the defaults.

    Bottleneck stages (3, 4, 6, 3), an SE block in every block.

    Args:
        num_classes: outputs of ``fc``.
        reduction: r; the SE's hidden width is max(1, C // r).
        bias: biases in the SE's two FC layers (on by default for the ImageNet models;
            28,071,976 parameters without).
        **se_options: squeeze, gate, placement, se_stages (from 1..4), no_squeeze,
            divisor.
    """
    return _se_resnet("se_resnet50", num_classes, reduction, bias, se_options)


@register_model
def resnet50(num_classes=1000):
    """ResNet-50 (torchvision's), 25,557,032 parameters: bottleneck stages (3, 4, 6, 3),
    no SE.

    Args:
        num_classes: outputs of ``fc``.
    """
    return _plain_resnet("resnet50", num_classes)


@register_model
def se_resnet101(num_classes=1000, reduction=16, bias=True, **se_options):
    """SE-ResNet-101, 49,326,872 parameters with the defaults.

    Bottleneck stages (3, 4, 23, 3), an SE block in every block.

    Args:
        num_classes: outputs of ``fc``.
        reduction: r; the SE's hidden width is max(1, C // r).
        bias: biases in the SE's two FC layers (on by default for the ImageNet models).
        **se_options: squeeze, gate, placement, se_stages (from 1..4), no_squeeze,
            divisor.
    """
    return _se_resnet("se_resnet101", num_classes, reduction, bias, se_options)


@register_model
def resnet101(num_classes=1000):
    """ResNet-101 (torchvision's), 44,549,160 parameters: bottleneck stages (3, 4, 23, 3),
    no SE.

    Args:
        num_classes: outputs of ``fc``.
    """
    return _plain_resnet("resnet101", num_classes)


@register_model
def se_resnet152(num_classes=1000, reduction=16, bias=True, **se_options):
    """SE-ResNet-152, 66,821,848 parameters with the defaults.

    Bottleneck stages (3, 8, 36, 3), an SE block in every block.

    Args:
        num_classes: outputs of ``fc``.
        reduction: r; the SE's hidden width is max(1, C // r).
        bias: biases in the SE's two FC layers (on by default for the ImageNet models).
        **se_options: squeeze, gate, placement, se_stages (from 1..4), no_squeeze,
            divisor.
    """
    return _se_resnet("se_resnet152", num_classes, reduction, bias, se_options)


@register_model
def resnet152(num_classes=1000):
    """ResNet-152 (torchvision's), 60,192,808 parameters: bottleneck stages (3, 8, 36, 3),
    no SE.

    Args:
        num_classes: outputs of ``fc``.
    """
    return _plain_resnet("resnet152", num_classes)


# -- ImageNet basic-block ResNets (torchvision's ResNet-18/34; SE as timm's seresnet18/34) -
# SE options as above, and divisor: the SE's hidden width is C / r rounded to a multiple of
# the divisor (timm's rd_divisor 8: 8, 8, 16, 32 hidden units in stages 1-4, not 4, 8,
# 16, 32); divisor=1 gives the paper's max(1, C // r).

@register_model
def se_resnet18(num_classes=1000, reduction=16, bias=True, divisor=8, **se_options):
    """SE-ResNet-18 (timm's seresnet18), 11,779,624 parameters with the defaults.

    Basic-block stages (2, 2, 2, 2) of 64, 128, 256, 512 channels, the 7x7/2 stem and
    3x3/2 max pool, an SE block with biases in every block.

    Args:
        num_classes: outputs of ``fc``.
        reduction: r.
        bias: biases in the SE's two FC layers (on, as timm's).
        divisor: the SE's hidden width is C / r rounded to a multiple of it (timm's 8).
        **se_options: squeeze, gate, placement, se_stages (from 1..4), no_squeeze,
            divisor.
    """
    return _se_resnet("se_resnet18", num_classes, reduction, bias,
                      dict(se_options, divisor=divisor))


@register_model
def resnet18(num_classes=1000):
    """ResNet-18 (torchvision's), 11,689,512 parameters: basic-block stages (2, 2, 2, 2),
    no SE.

    Args:
        num_classes: outputs of ``fc``.
    """
    return _plain_resnet("resnet18", num_classes)


@register_model
def se_resnet34(num_classes=1000, reduction=16, bias=True, divisor=8, **se_options):
    """SE-ResNet-34 (timm's seresnet34), 21,960,416 parameters with the defaults.

    Basic-block stages (3, 4, 6, 3) of 64, 128, 256, 512 channels, an SE block with biases
    in every block.

    Args:
        num_classes: outputs of ``fc``.
        reduction: r.
        bias: biases in the SE's two FC layers (on, as timm's).
        divisor: the SE's hidden width is C / r rounded to a multiple of it (timm's 8).
        **se_options: squeeze, gate, placement, se_stages (from 1..4), no_squeeze,
            divisor.
    """
    return _se_resnet("se_resnet34", num_classes, reduction, bias,
                      dict(se_options, divisor=divisor))


@register_model
def resnet34(num_classes=1000):
    """ResNet-34 (torchvision's), 21,797,672 parameters: basic-block stages (3, 4, 6, 3),
    no SE.

    Args:
        num_classes: outputs of ``fc``.
    """
    return _plain_resnet("resnet34", num_classes)


# -- ResNeXt (Xie et al.; 32 groups of width 4 at 64 planes, "32x4d") ---------------------
# The bottleneck ResNets with a grouped 3x3 convolution; the SE-ResNeXts of the paper's
# TPAMI 2019 Table 2 (SE with biases, as timm's seresnext*_32x4d; timm's divisor 8 and the
# paper's max(1, C // r) give the same hidden widths 16 ... 128 here).

@register_model
def se_resnext50_32x4d(num_classes=1000, reduction=16, bias=True, **se_options):
    """SE-ResNeXt-50 (32x4d), 27,559,896 parameters with the defaults.

    Grouped-bottleneck stages (3, 4, 6, 3), 3x3 convolutions of 32 groups and width 128,
    256, 512, 1024, an SE block in every block.

    Args:
        num_classes: outputs of ``fc``.
        reduction: r; the SE's hidden width is max(1, C // r).
        bias: biases in the SE's two FC layers (on by default for the ImageNet models).
        **se_options: squeeze, gate, placement, se_stages (from 1..4), no_squeeze, divisor.
    """
    return _se_resnet("se_resnext50_32x4d", num_classes, reduction, bias, se_options)


@register_model
def resnext50_32x4d(num_classes=1000):
    """ResNeXt-50 32x4d (torchvision's), 25,028,904 parameters: grouped-bottleneck stages
    (3, 4, 6, 3), no SE.

    Args:
        num_classes: outputs of ``fc``.
    """
    return _plain_resnet("resnext50_32x4d", num_classes)


@register_model
def se_resnext101_32x4d(num_classes=1000, reduction=16, bias=True, **se_options):
    """SE-ResNeXt-101 (32x4d), 48,955,416 parameters with the defaults.

    Grouped-bottleneck stages (3, 4, 23, 3), an SE block in every block.

    Args:
        num_classes: outputs of ``fc``.
        reduction: r; the SE's hidden width is max(1, C // r).
        bias: biases in the SE's two FC layers (on by default for the ImageNet models).
        **se_options: squeeze, gate, placement, se_stages (from 1..4), no_squeeze, divisor.
    """
    return _se_resnet("se_resnext101_32x4d", num_classes, reduction, bias, se_options)


@register_model
def resnext101_32x4d(num_classes=1000):
    """ResNeXt-101 32x4d, 44,177,704 parameters: grouped-bottleneck stages (3, 4, 23, 3),
    no SE.

    Args:
        num_classes: outputs of ``fc``.
    """
    return _plain_resnet("resnext101_32x4d", num_classes)


# -- ResNeXt for 32x32 images ---------------------------------------------------------------

@register_model
def se_resnext_cifar(num_classes=10, reduction=16, bias=False, **se_options):
    """SE-ResNeXt for 32x32 images (a small ResNeXt-29), 236,506 parameters with the
    defaults.

    A 3x3/1 stem of 16 channels, then 3 stages of 3 grouped bottlenecks (planes 16, 32, 64,
    outputs 64, 128, 256; 3x3 convolutions of 4 groups, 16, 32, 64 wide, i.e. 4x4d), no
    early downsampling, an SE block in every block; an epoch of 4,660 images trains in
    under a minute on 2 cores (fast path). It is also the CIFAR version of SENet-154, an
    SE-ResNeXt with wider groups and a deeper stem (:mod:`npsenet.models.senet`).

    Args:
        num_classes: outputs of ``fc``.
        reduction: r; the SE's hidden width is max(1, C // r).
        bias: biases in the SE's two FC layers (off by default for the CIFAR models).
        **se_options: squeeze, gate, placement, se_stages (from 1..3), no_squeeze, divisor.
    """
    return _se_resnet("se_resnext_cifar", num_classes, reduction, bias, se_options)


@register_model
def resnext_cifar(num_classes=10):
    """ResNeXt for 32x32 images (a small ResNeXt-29), 204,250 parameters: the
    network of :func:`se_resnext_cifar` without SE.

    Args:
        num_classes: outputs of ``fc``.
    """
    return _plain_resnet("resnext_cifar", num_classes)
