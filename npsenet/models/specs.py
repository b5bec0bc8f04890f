"""The architecture behind every model name: one table, read by the npsenet factories
(:mod:`npsenet.models.resnet`) and by their PyTorch twins (:mod:`npsenet.torch_reference`).

    >>> from npsenet.models.specs import SPECS
    >>> SPECS["se_resnet50"].layers, SPECS["se_resnet50"].widths
    ((3, 4, 6, 3), (64, 128, 256, 512))

A CIFAR ResNet of depth 6n + 2 has three stages of n basic blocks (16, 32, 64 channels) and
a 3x3 stem; the ImageNet ones have four stages of bottlenecks (64, 128, 256, 512 planes,
outputs 4x as wide) or, for ResNet-18/34, of basic blocks (outputs 64 ... 512), and a 7x7/2
stem with a 3x3/2 max pool. Stage 1 keeps the resolution, each later stage halves it in its
first block. The ResNeXts are the bottleneck ResNets with a grouped 3x3 convolution
(``groups`` 32 of ``base_width`` 4: "32x4d"); ResNeXt-CIFAR is a small ResNeXt-29.
"""
from __future__ import annotations

from dataclasses import dataclass

# depth -> blocks per stage
CIFAR_BLOCKS_PER_STAGE = {20: 3, 32: 5, 56: 9, 110: 18}
IMAGENET_LAYERS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
IMAGENET_BASIC_LAYERS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
RESNEXT_LAYERS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
RESNEXT_GROUPS, RESNEXT_BASE_WIDTH = 32, 4                 # 32x4d
CIFAR_WIDTHS = (16, 32, 64)
IMAGENET_WIDTHS = (64, 128, 256, 512)
CIFAR_CLASSES, IMAGENET_CLASSES = 10, 1000
# ResNeXt-29 for CIFAR, made small: 3 stages of 3 grouped bottlenecks
RESNEXT_CIFAR = {"layers": (3, 3, 3), "widths": CIFAR_WIDTHS, "groups": 4, "base_width": 16}

# the SE options every SE model defaults to (``bias`` differs by family: see ResNetSpec)
SE_DEFAULTS = {"reduction": 16, "squeeze": "avg", "gate": "sigmoid", "placement": "standard",
               "no_squeeze": False, "divisor": 1}


@dataclass(frozen=True)
class ResNetSpec:
    """One (SE-)ResNet architecture.

    Attributes:
        block: ``"basic"`` (two 3x3 convolutions, expansion 1) or ``"bottleneck"``
            (1x1-3x3-1x1, expansion 4).
        layers: blocks per stage, e.g. (3, 3, 3) or (3, 4, 6, 3).
        widths: planes per stage; the stem has ``widths[0]`` channels.
        imagenet_stem: a 7x7/2 convolution and a 3x3/2 max pool instead of a 3x3/1 one.
        num_classes: the default number of outputs of ``fc``.
        se: whether the model carries SE blocks.
        se_bias: the default of the SE's ``bias`` (False for CIFAR, True for ImageNet).
        groups, base_width: the bottleneck's grouped 3x3 convolution (torchvision's
            semantics); 1 and 64 for every ResNet.
        se_divisor: the default of the SE's ``divisor`` (1: hidden width max(1, C // r);
            8 for SE-ResNet-18/34, timm's rounding).
    """

    block: str
    layers: tuple
    widths: tuple
    imagenet_stem: bool
    num_classes: int
    se: bool
    se_bias: bool
    groups: int = 1
    base_width: int = 64
    se_divisor: int = 1

    @property
    def num_stages(self):
        return len(self.layers)


def _resnet_family():
    """se_resnet20, resnet20, ..., se_resnet110, resnet110, se_resnet50, resnet50, ...,
    se_resnet18, resnet18, se_resnet34, resnet34, se_resnext50_32x4d, resnext50_32x4d,
    se_resnext101_32x4d, resnext101_32x4d, se_resnext_cifar, resnext_cifar."""
    specs = {}
    for depth, blocks in CIFAR_BLOCKS_PER_STAGE.items():
        for se in (True, False):
            specs[f"{'se_' * se}resnet{depth}"] = ResNetSpec(
                "basic", (blocks,) * 3, CIFAR_WIDTHS, imagenet_stem=False,
                num_classes=CIFAR_CLASSES, se=se, se_bias=False)
    for depth, layers in IMAGENET_LAYERS.items():
        for se in (True, False):
            specs[f"{'se_' * se}resnet{depth}"] = ResNetSpec(
                "bottleneck", layers, IMAGENET_WIDTHS, imagenet_stem=True,
                num_classes=IMAGENET_CLASSES, se=se, se_bias=True)
    for depth, layers in IMAGENET_BASIC_LAYERS.items():
        for se in (True, False):
            specs[f"{'se_' * se}resnet{depth}"] = ResNetSpec(
                "basic", layers, IMAGENET_WIDTHS, imagenet_stem=True,
                num_classes=IMAGENET_CLASSES, se=se, se_bias=True, se_divisor=8)
    for depth, layers in RESNEXT_LAYERS.items():
        for se in (True, False):
            specs[f"{'se_' * se}resnext{depth}_32x4d"] = ResNetSpec(
                "bottleneck", layers, IMAGENET_WIDTHS, imagenet_stem=True,
                num_classes=IMAGENET_CLASSES, se=se, se_bias=True,
                groups=RESNEXT_GROUPS, base_width=RESNEXT_BASE_WIDTH)
    for se in (True, False):
        specs[f"{'se_' * se}resnext_cifar"] = ResNetSpec(
            "bottleneck", imagenet_stem=False, num_classes=CIFAR_CLASSES, se=se,
            se_bias=False, **RESNEXT_CIFAR)
    return specs


SPECS = _resnet_family()


def spec_for(name):
    """The :class:`ResNetSpec` of a model name, e.g. ``spec_for("se_resnet56")``."""
    try:
        return SPECS[name]
    except KeyError:
        raise ValueError(f"no architecture spec for model {name!r}; the specs are "
                         f"{', '.join(SPECS)}.") from None
