"""Inception-ResNet-v2 and SE-Inception-ResNet-v2 (Szegedy et al., AAAI 2017; Hu et al.,
TPAMI 2019, Sec. 4 and Table 2).

    model = inception_resnet_v2()                # ImageNet, 299x299, 55,843,464 parameters
    model = se_inception_resnet_v2()             # SE on every residual branch
    model = inception_resnet_v2_cifar()          # 32x32, 1/8 of the widths, 1-2-1 blocks

The layout is timm's ``inception_resnet_v2`` (the TF-slim network): a stem conv 3x3/2
(32), 3x3 (32), 3x3 pad 1 (64), max pool 3x3/2, 1x1 (80), 3x3 (192), max pool 3x3/2;
Mixed_5b (320 channels at 35x35); 10 Block35 (Inception-ResNet-A, scale 0.17); Mixed_6a
(1088 at 17x17); 20 Block17 (B, scale 0.10); Mixed_7a (2080 at 8x8); 9 Block8 (C, scale
0.20) and a final Block8 with scale 1 and no ReLU; conv 1x1 (1536); global average pool;
``classif``. Every convolution is a :class:`~npsenet.models.inception.BasicConv2d`
(no bias, BN with eps 0.001, ReLU), except each residual block's 1x1 up-projection
``conv2d``, which has a bias and no BN. Block17's 1x7 and 7x1 and Block8's 1x3 and 3x1
kernels are :class:`~npsenet.nn.factorized_conv.FactorizedConv2d`. Mixed_5b's pooling
branch averages over the window's pixels inside the image only
(``ns.nn.AvgPool2d(..., count_include_pad=False)``, as PyTorch's).

A residual block is a :class:`~npsenet.nn.ScaledResidual` around a
:class:`ResidualBranch`:

    f(x) = SE(up(concat[b_0(x), b_1(x), ...]))        (no SE in the plain network)
    y    = ReLU(x + λ f(x))                          (the last Block8: y = x + f(x))

and its backward dx = d + f.backward(λ d) with d = ReLU'(.) ⊙ dy.

Where the SE block goes. The paper's Fig. 3 applies SE to the non-identity branch of a
residual module, before the summation with the identity; an Inception-ResNet branch ends
with the up-projection and is then scaled by λ. The SE block here acts on the
up-projection's output and the scaling after it, x + λ SE(f), as the scale belongs to the
summation ("scaling of the residuals" before adding them, Szegedy et al., Sec. 3.3). This
is not the same network as x + SE(λ f): SE is not linear in its input's scale, since the
gate sees it, σ(W2 δ(W1 λ z)) ≠ σ(W2 δ(W1 z)). The official SE release publishes no
SE-Inception-ResNet-v2 model to settle it; the SE blocks sit in the 40 residual blocks
(10 + 20 + 10), none in the stem or in Mixed_5b, 6a and 7a (no residual), with hidden
width C // 16 and biases (as in the released SE models).

Parameters and cost (1000 classes, 299x299; ``npsenet summary --model NAME``):

    inception_resnet_v2      55,843,464 parameters   13.172 G MACs
    se_inception_resnet_v2   64,387,444 parameters   13.203 G MACs (+0.24%)

The paper's TPAMI 2019 Table 2 gives 11.75 and 11.76 GFLOPs, with 299x299 crops (the
table's footnote). The convolutions here are 13.154 G MACs (10.890 G square, 2.264 G in
the 1x7, 7x1, 1x3 and 3x1 kernels); timm's model card gives the same network (55.8M
parameters, exactly 55,843,464 in timm) 13.2 GMACs at 299x299. The paper's 11.75 is
about 11% lower; it does not say how it counted or which variant of the network (its
own re-implementation, unreleased) it measured, so the difference has no reason we can
check. The rest of the summary's total is batch norm (one per output, 13.5 M), the
average pool (9 per output, 2.1 M), the global pool and ``classif`` (1.6 M).

SE adds 8,543,980 parameters (+15.3%: the 1088- and 2080-wide blocks' FC layers, 2 C²/16
weights each) and 31.6 M MACs: 8.5 M in its FC layers, 11.5 M each in the squeeze and the
scale, +0.24%; the paper's +0.01 G (+0.09%) matches the FC layers' share alone
(8.5 M) rounded to two decimals.

Initialisation is torchvision's: convolutions N(0, 2 / fan_out), BN weight 1 and bias 0,
the up-projections' biases, ``classif`` and the SE's FC layers PyTorch's default.
"""
from __future__ import annotations

from .. import init
from ..nn import (AvgPool2d, Concat, Conv2d, Dropout, GlobalAvgPool2d, Linear, MaxPool2d,
                  Module, ScaledResidual, Sequential)
from ..nn._checks import positive_int
from ..nn.factorized_conv import FactorizedConv2d
from .inception import BasicConv2d, divided
from .entry import check_model_input
from .registry import register_model
from .se_options import se_block_config, se_layer_factory

EPS = 1e-3            # the BN eps of TF-slim's Inception-ResNet-v2 (timm's BasicConv2d)
SCALES = (0.17, 0.10, 0.20)   # λ of Block35, Block17 and Block8 (TF-slim's, timm's)
REPEATS = (10, 20, 9)         # blocks in repeat, repeat_1, repeat_2 (plus the last Block8)

# the CIFAR networks: 1/8 of every width, one Block35, two Block17, one Block8 before the
# final one, and a stride-1 stem
CIFAR_CONFIG = {"width_divisor": 8, "repeats": (1, 2, 0), "cifar_stem": True}


class ResidualBranch(Module):
    """The residual function of an Inception-ResNet block: the branches side by side,
    the 1x1 up-projection back to C channels (with bias, no BN), then SE.

        f(x) = SE(conv2d(concat[b_k(x)]))

    Args:
        in_channels: C, the block's width (input and output).
        branches: ``{name: Module}``, the parallel branches (``branch0``, ``branch1``, ...).
        mixed_channels: the width of their concatenation.
        se_layer: None, or ``channels -> Module`` for the SE block (sub-module ``se``).

    Sub-modules (state_dict keys): ``mixed`` (the Concat), ``conv2d``, ``se``.

    forward(x): (N, C, H, W) -> f(x) (N, C, H, W).
    backward(df): -> dx (N, C, H, W), the sum of the branches' input gradients.
    """

    def __init__(self, in_channels, branches, mixed_channels, se_layer=None):
        super().__init__()
        self.mixed = Concat(**branches)
        self.conv2d = Conv2d(mixed_channels, in_channels, 1, bias=True)
        self.se = se_layer(in_channels) if se_layer is not None else None

    def forward(self, x):
        f = self.conv2d(self.mixed(x))
        return self.se(f) if self.se is not None else f

    def backward(self, dout):
        if self.se is not None:
            dout = self.se.backward(dout)
        return self.mixed.backward(self.conv2d.backward(dout))


def block35(w, scale, se_layer):
    """Inception-ResNet-A at 35x35, C = 320 (``w`` divides the widths)."""
    c = w(320)
    branches = {
        "branch0": BasicConv2d(c, w(32), 1, eps=EPS),
        "branch1": Sequential(BasicConv2d(c, w(32), 1, eps=EPS),
                              BasicConv2d(w(32), w(32), 3, padding=1, eps=EPS)),
        "branch2": Sequential(BasicConv2d(c, w(32), 1, eps=EPS),
                              BasicConv2d(w(32), w(48), 3, padding=1, eps=EPS),
                              BasicConv2d(w(48), w(64), 3, padding=1, eps=EPS)),
    }
    return ScaledResidual(ResidualBranch(c, branches, w(32) + w(32) + w(64), se_layer), scale)


def block17(w, scale, se_layer):
    """Inception-ResNet-B at 17x17, C = 1088: a 1x7 then 7x1 branch."""
    c = w(1088)
    branches = {
        "branch0": BasicConv2d(c, w(192), 1, eps=EPS),
        "branch1": Sequential(BasicConv2d(c, w(128), 1, eps=EPS),
                              BasicConv2d(w(128), w(160), (1, 7), padding=(0, 3), eps=EPS),
                              BasicConv2d(w(160), w(192), (7, 1), padding=(3, 0), eps=EPS)),
    }
    return ScaledResidual(ResidualBranch(c, branches, w(192) + w(192), se_layer), scale)


def block8(w, scale, se_layer, activation=True):
    """Inception-ResNet-C at 8x8, C = 2080: a 1x3 then 3x1 branch."""
    c = w(2080)
    branches = {
        "branch0": BasicConv2d(c, w(192), 1, eps=EPS),
        "branch1": Sequential(BasicConv2d(c, w(192), 1, eps=EPS),
                              BasicConv2d(w(192), w(224), (1, 3), padding=(0, 1), eps=EPS),
                              BasicConv2d(w(224), w(256), (3, 1), padding=(1, 0), eps=EPS)),
    }
    return ScaledResidual(ResidualBranch(c, branches, w(192) + w(256), se_layer), scale,
                          activation=activation)


class InceptionResNetV2(Module):
    """Inception-ResNet-v2: stem, Mixed_5b, Block35s, Mixed_6a, Block17s, Mixed_7a,
    Block8s, conv 1x1, global average pool, dropout, ``classif``.

    Args:
        num_classes: outputs of ``classif``.
        se_layer: None, or ``channels -> Module``: an SE block in every residual branch.
        width_divisor: every width divided by it (1: the paper's; 8: the CIFAR networks;
            tests use 16 for narrow twins).
        repeats: the number of Block35, Block17 and Block8 (before the final Block8),
            default (10, 20, 9); tests use fewer.
        cifar_stem: the stem's convolutions with stride 1 and padding 1 and no max pools,
            for 32x32 images (Mixed_6a and 7a then give 15 and 7 pixels).
        drop_rate: dropout before ``classif`` (timm's name; 0, timm's default).

    Sub-modules (state_dict keys, timm's names): ``conv2d_1a``, ``conv2d_2a``,
    ``conv2d_2b``, ``maxpool_3a``, ``conv2d_3b``, ``conv2d_4a``, ``maxpool_5a``,
    ``mixed_5b``, ``repeat``, ``mixed_6a``, ``repeat_1``, ``mixed_7a``, ``repeat_2``,
    ``block8``, ``conv2d_7b``, ``global_pool``, ``drop``, ``classif``. Inside a residual
    block the keys differ from timm's by ``branch.mixed.`` (e.g.
    ``repeat.0.branch.mixed.branch0.conv.weight`` for timm's ``repeat.0.branch0.conv.weight``,
    ``repeat.0.branch.conv2d.weight`` for ``repeat.0.conv2d.weight``).

    forward(x): (N, 3, H, W) -> logits (N, num_classes); at 299x299 the blocks run at 35,
    17 and 8 pixels; the smallest input the ImageNet stem takes is 75x75.
    backward(dlogits): -> dx (N, 3, H, W), accumulating every parameter's gradient.
    """

    def __init__(self, num_classes=1000, se_layer=None, width_divisor=1, repeats=REPEATS,
                 cifar_stem=False, drop_rate=0.0):
        super().__init__()
        d = positive_int(width_divisor, "width_divisor", "InceptionResNetV2")
        if len(repeats) != 3:
            raise ValueError(f"InceptionResNetV2: repeats must be three counts (Block35, "
                             f"Block17, Block8), got {repeats!r}.")
        repeats = [positive_int(r, "each repeat", "InceptionResNetV2", 0) for r in repeats]

        def w(c):
            return divided(c, d, "InceptionResNetV2")

        # stem
        s, p = (1, 1) if cifar_stem else (2, 0)
        self.conv2d_1a = BasicConv2d(3, w(32), 3, stride=s, padding=p, eps=EPS)
        self.conv2d_2a = BasicConv2d(w(32), w(32), 3, padding=p, eps=EPS)
        self.conv2d_2b = BasicConv2d(w(32), w(64), 3, padding=1, eps=EPS)
        self.maxpool_3a = None if cifar_stem else MaxPool2d(3, stride=2)
        self.conv2d_3b = BasicConv2d(w(64), w(80), 1, eps=EPS)
        self.conv2d_4a = BasicConv2d(w(80), w(192), 3, padding=p, eps=EPS)
        self.maxpool_5a = None if cifar_stem else MaxPool2d(3, stride=2)
        # 35x35: Mixed_5b and the Block35s
        c = w(192)
        self.mixed_5b = Concat(
            branch0=BasicConv2d(c, w(96), 1, eps=EPS),
            branch1=Sequential(BasicConv2d(c, w(48), 1, eps=EPS),
                               BasicConv2d(w(48), w(64), 5, padding=2, eps=EPS)),
            branch2=Sequential(BasicConv2d(c, w(64), 1, eps=EPS),
                               BasicConv2d(w(64), w(96), 3, padding=1, eps=EPS),
                               BasicConv2d(w(96), w(96), 3, padding=1, eps=EPS)),
            branch3=Sequential(AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
                               BasicConv2d(c, w(64), 1, eps=EPS)))
        self.repeat = Sequential(*[block35(w, SCALES[0], se_layer) for _ in range(repeats[0])])
        # 17x17: Mixed_6a and the Block17s
        c = w(320)
        self.mixed_6a = Concat(
            branch0=BasicConv2d(c, w(384), 3, stride=2, eps=EPS),
            branch1=Sequential(BasicConv2d(c, w(256), 1, eps=EPS),
                               BasicConv2d(w(256), w(256), 3, padding=1, eps=EPS),
                               BasicConv2d(w(256), w(384), 3, stride=2, eps=EPS)),
            branch2=MaxPool2d(3, stride=2))
        self.repeat_1 = Sequential(*[block17(w, SCALES[1], se_layer)
                                     for _ in range(repeats[1])])
        # 8x8: Mixed_7a, the Block8s and the last Block8 (scale 1, no ReLU)
        c = w(1088)
        self.mixed_7a = Concat(
            branch0=Sequential(BasicConv2d(c, w(256), 1, eps=EPS),
                               BasicConv2d(w(256), w(384), 3, stride=2, eps=EPS)),
            branch1=Sequential(BasicConv2d(c, w(256), 1, eps=EPS),
                               BasicConv2d(w(256), w(288), 3, stride=2, eps=EPS)),
            branch2=Sequential(BasicConv2d(c, w(256), 1, eps=EPS),
                               BasicConv2d(w(256), w(288), 3, padding=1, eps=EPS),
                               BasicConv2d(w(288), w(320), 3, stride=2, eps=EPS)),
            branch3=MaxPool2d(3, stride=2))
        self.repeat_2 = Sequential(*[block8(w, SCALES[2], se_layer) for _ in range(repeats[2])])
        self.block8 = block8(w, 1.0, se_layer, activation=False)
        self.conv2d_7b = BasicConv2d(w(2080), w(1536), 1, eps=EPS)
        self.global_pool = GlobalAvgPool2d()
        self.drop = Dropout(drop_rate)
        self.classif = Linear(w(1536), num_classes)
        self.layer_names = [name for name in self._modules
                            if getattr(self, name) is not None]
        self.name = None
        self.options = None
        for m in self.modules():
            if isinstance(m, (Conv2d, FactorizedConv2d)):
                m.weight.data = init.kaiming_normal_fan_out(m.weight.data.shape)

    def forward(self, x):
        check_model_input(self, x)
        for name in self.layer_names:
            x = getattr(self, name)(x)
        return x

    def backward(self, dout):
        for name in reversed(self.layer_names):
            dout = getattr(self, name).backward(dout)
        return dout


def _inception_resnet(name, num_classes, drop_rate, se_options=None, **architecture):
    """The registered network ``name``; ``se_options`` (reduction, bias, the SE block's
    options) None for a plain one."""
    options = {"num_classes": num_classes, "drop_rate": drop_rate}
    se_layer = None
    if se_options is not None:
        config = se_block_config(name, se_options.pop("reduction"), se_options.pop("bias"),
                                 se_options)
        se_layer = se_layer_factory(config)
        options.update(config)
    model = InceptionResNetV2(num_classes, se_layer, drop_rate=drop_rate, **architecture)
    model.name, model.options = name, options
    return model


@register_model(input_size=299)
def inception_resnet_v2(num_classes=1000, drop_rate=0.0):
    """Inception-ResNet-v2 (Szegedy et al., AAAI 2017; timm's layout), 55,843,464
    parameters, 299x299 inputs.

    Args:
        num_classes: outputs of ``classif``.
        drop_rate: dropout before ``classif`` (0 by default, as in timm).
    """
    return _inception_resnet("inception_resnet_v2", num_classes, drop_rate)


@register_model(input_size=299)
def se_inception_resnet_v2(num_classes=1000, drop_rate=0.0, reduction=16, bias=True,
                           **se_options):
    """SE-Inception-ResNet-v2 (Hu et al., TPAMI 2019, Table 2), 64,387,444 parameters with
    the defaults: an SE block in each of the 40 residual branches, x + λ SE(f(x)).

    Args:
        num_classes: outputs of ``classif``.
        drop_rate: dropout before ``classif``.
        reduction: r; the SE's hidden width is max(1, C // r).
        bias: biases in the SE's two FC layers (on, as in the released SE models).
        **se_options: squeeze, gate, no_squeeze, divisor (see npsenet.nn.SEBlock).
    """
    return _inception_resnet("se_inception_resnet_v2", num_classes, drop_rate,
                             dict(se_options, reduction=reduction, bias=bias))


@register_model
def inception_resnet_v2_cifar(num_classes=10, drop_rate=0.0):
    """Inception-ResNet-v2 for 32x32 images, 232,406 parameters: 1/8 of every width, a
    stem with stride 1 and no pools, one Block35, two Block17 and the final Block8.

    Args:
        num_classes: outputs of ``classif``.
        drop_rate: dropout before ``classif``.
    """
    return _inception_resnet("inception_resnet_v2_cifar", num_classes, drop_rate,
                             **CIFAR_CONFIG)


@register_model
def se_inception_resnet_v2_cifar(num_classes=10, drop_rate=0.0, reduction=16, bias=False,
                                 **se_options):
    """SE-Inception-ResNet-v2 for 32x32 images, 245,238 parameters with the defaults:
    :func:`inception_resnet_v2_cifar` with an SE block in each residual branch.

    Args:
        num_classes: outputs of ``classif``.
        drop_rate: dropout before ``classif``.
        reduction: r; the SE's hidden width is max(1, C // r).
        bias: biases in the SE's two FC layers (off by default for the CIFAR models).
        **se_options: squeeze, gate, no_squeeze, divisor (see npsenet.nn.SEBlock).
    """
    return _inception_resnet("se_inception_resnet_v2_cifar", num_classes, drop_rate,
                             dict(se_options, reduction=reduction, bias=bias), **CIFAR_CONFIG)
