"""BN-Inception and SE-BN-Inception (Hu et al., TPAMI 2019, Sec. 4 and Fig. 2).

    model = se_bn_inception()                    # ImageNet, 224x224, 11,931,622 parameters
    model = bn_inception_cifar()                 # 32x32, a narrow network of 7 modules
    model = build_model("se_bn_inception", reduction=8)

BN-Inception is GoogLeNet with batch normalisation after every convolution and the 5x5
convolutions replaced by two 3x3 (Ioffe & Szegedy, ICML 2015, Sec. 5.1 and Fig. 5). The
layout is the one of the official SE release's ``SE-BN-Inception.prototxt``
(github.com/hujie-frank/SENet, also Cadene's ``pretrainedmodels.bninception``): a stem
conv 7x7/2 (64), max pool 3x3/2, conv 1x1 (64), conv 3x3 (192), max pool 3x3/2, both pools
in ceil mode (Caffe's); the modules 3a, 3b, 3c (stride 2), 4a-4e (4e stride 2), 5a, 5b; a
global average pool and ``fc``. Every convolution is followed by BN and ReLU and carries no
bias (the BN's shift is the bias; the official prototxt has ``bias_term: false``).

An Inception module (:class:`InceptionModule`) concatenates four branches on the
channels (``mixed``, a :class:`~npsenet.nn.Concat`):

    branch_1x1          1x1
    branch_3x3          1x1 reduce, 3x3 (stride s)
    branch_double_3x3   1x1 reduce, 3x3, 3x3 (stride s)
    branch_pool         3x3 average (or max) pool, 1x1 projection;
                        in the stride-2 modules 3c and 4e a 3x3/2 max pool passed through
                        (and no 1x1 branch)

The SE-Inception module (the paper's Fig. 2) puts an SE block (sub-module ``se``) on the
concatenated output of every module: y = SE(mixed(x)), 10 SE blocks, hidden width
C // 16 with biases (the prototxt's ``*_1x1_down`` and ``*_1x1_up`` convolutions). Its
backward runs the SE block's, then the Concat's, which hands each branch its slice of the
gradient and sums the branches' input gradients.

Initialisation is torchvision's: convolutions N(0, 2 / fan_out), BN weight 1 and bias 0,
``fc`` and the SE's FC layers PyTorch's default.

Parameters and cost (1000 classes, 224x224; ``npsenet summary --model NAME``):

    bn_inception      11,285,224 parameters   2.044 G MACs
    se_bn_inception   11,931,622 parameters   2.047 G MACs (+0.15%)

The paper's TPAMI 2019 Table 2 gives 2.03 and 2.04 GFLOPs. The convolutions alone are
2.032 G MACs, the paper's 2.03; the summary also counts batch norm (one MAC per output,
3.7 M), the 3x3 average pools (9 per output, 7.7 M), the global pool and ``fc`` (1.1 M).
SE adds 646,398 parameters (+5.7%) and 3.0 M MACs: 0.6 M in its FC layers and 1.2 M each
in the squeeze and the scale, +0.15%; the paper's +0.01 G is what two-decimal rounding
makes of a difference this small (its exact counts are not given).

The parameter figure usually quoted for Cadene's ``bninception``, about 11.3M, is that
port's 11,295,240: the same layers with a bias in each of the 69 convolutions (10,016
more values), which the official SE prototxt drops (``bias_term: false``; the BN's shift
does the same job).
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import init
from ..nn import (AvgPool2d, BatchNorm2d, Concat, Conv2d, GlobalAvgPool2d, Linear, MaxPool2d,
                  Module, ReLU, Sequential)
from ..nn.factorized_conv import FactorizedConv2d
from ..nn._checks import positive_int
from .entry import check_model_input
from .registry import register_model
from .se_options import se_block_config, se_layer_factory


@dataclass(frozen=True)
class InceptionSpec:
    """The widths of one Inception module (the columns of Ioffe & Szegedy, Fig. 5).

    Attributes:
        name: "3a", "3b", ...; the module is the network's ``inception_<name>``.
        ch1x1: the 1x1 branch's width (0: no such branch, the stride-2 modules).
        reduce3x3, ch3x3: the 3x3 branch's 1x1 reduction and 3x3 widths.
        reduce_double, ch_double: the double-3x3 branch's reduction and 3x3 widths.
        pool: "avg" or "max", the pooling branch's 3x3 pool.
        proj: the 1x1 projection after the pool (0: the pool is passed through).
        stride: 2 in the modules that halve the resolution (3c, 4e), else 1.
    """

    name: str
    ch1x1: int
    reduce3x3: int
    ch3x3: int
    reduce_double: int
    ch_double: int
    pool: str
    proj: int
    stride: int = 1


# Ioffe & Szegedy, ICML 2015, Fig. 5, as in SE-BN-Inception.prototxt
BN_INCEPTION_MODULES = (
    InceptionSpec("3a", 64, 64, 64, 64, 96, "avg", 32),
    InceptionSpec("3b", 64, 64, 96, 64, 96, "avg", 64),
    InceptionSpec("3c", 0, 128, 160, 64, 96, "max", 0, stride=2),
    InceptionSpec("4a", 224, 64, 96, 96, 128, "avg", 128),
    InceptionSpec("4b", 192, 96, 128, 96, 128, "avg", 128),
    InceptionSpec("4c", 160, 128, 160, 128, 160, "avg", 128),
    InceptionSpec("4d", 96, 128, 192, 160, 192, "avg", 128),
    InceptionSpec("4e", 0, 128, 192, 192, 256, "max", 0, stride=2),
    InceptionSpec("5a", 352, 192, 320, 160, 224, "avg", 128),
    InceptionSpec("5b", 352, 192, 320, 192, 224, "max", 128),
)
MODULE_NAMES = tuple(spec.name for spec in BN_INCEPTION_MODULES)

# the CIFAR networks: 1/8 of every width, the 32x32 stem, seven of the ten modules (the
# two reductions and a module before and after each)
CIFAR_CONFIG = {"width_divisor": 8, "modules": ("3a", "3b", "3c", "4a", "4e", "5a", "5b"),
                "cifar_stem": True}


def divided(width, divisor, where):
    """width // divisor, which must be exact (a width multiplier that keeps every
    concatenation's channel count the sum of its branches')."""
    if width % divisor:
        raise ValueError(f"{where}: width {width} is not divisible by width_divisor "
                         f"{divisor}; use a divisor of every width (1, 2, 4, 8 or 16).")
    return width // divisor


class BasicConv2d(Module):
    """Convolution (no bias), batch norm, ReLU: the unit every Inception branch is built of.

    Args:
        in_channels, out_channels, stride, padding: of the convolution.
        kernel_size: k, or (kh, kw) for a rectangular stride-1 kernel
            (:class:`~npsenet.nn.factorized_conv.FactorizedConv2d`), with ``padding``
            (ph, pw).
        eps: the batch norm's (1e-5 in BN-Inception, 1e-3 in Inception-ResNet-v2).

    Sub-modules (state_dict keys): ``conv``, ``bn``, ``relu``.

    forward(x): (N, C_in, H, W) -> ReLU(BN(conv(x))) (N, C_out, H', W').
    backward(dy): the three backward passes in reverse order -> dx (N, C_in, H, W).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, eps=1e-5):
        super().__init__()
        if isinstance(kernel_size, (tuple, list)) and kernel_size[0] != kernel_size[1]:
            if stride != 1:
                raise ValueError(f"BasicConv2d: a {kernel_size} kernel takes stride 1 only, "
                                 f"got {stride}.")
            self.conv = FactorizedConv2d(in_channels, out_channels, kernel_size, padding,
                                         bias=False)
        else:
            self.conv = Conv2d(in_channels, out_channels, kernel_size, stride, padding,
                               bias=False)
        self.bn = BatchNorm2d(out_channels, eps=eps)
        self.relu = ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))

    def backward(self, dout):
        return self.conv.backward(self.bn.backward(self.relu.backward(dout)))


class InceptionModule(Module):
    """One (SE-)Inception module: the branches of ``spec`` side by side, then SE.

        y = SE(concat[b_1x1(x), b_3x3(x), b_double_3x3(x), b_pool(x)])

    Args:
        in_channels: C_in.
        spec: the :class:`InceptionSpec` of the module.
        width_divisor: every width of ``spec`` divided by it (1 for the paper's).
        se_layer: None for a plain module, else a callable ``channels -> Module`` (the SE
            block on the concatenated output, sub-module ``se``).

    Attributes: ``out_channels``, the sum of the branches' widths (C_in itself passes
    through the pool of a stride-2 module).

    forward(x): (N, C_in, H, W) -> (N, out_channels, H', W'), H' = H for stride 1,
    H / 2 for stride 2, where H and W must be even: the 3x3/2 convolutions with padding 1
    give floor((H - 1) / 2) + 1 and the ceil-mode 3x3/2 pool ceil((H - 3) / 2) + 1, equal
    only for even sizes (at 224x224 the stride-2 modules see 28 and 14 pixels).
    backward(dy): -> dx (N, C_in, H, W), the sum of the four branches' input gradients.
    """

    def __init__(self, in_channels, spec, width_divisor=1, se_layer=None):
        super().__init__()
        d = width_divisor
        where = f"inception_{spec.name}"

        def w(c):
            return divided(c, d, where)

        s = self.stride = spec.stride
        self.where = where
        branches = {}
        if spec.ch1x1:
            branches["branch_1x1"] = BasicConv2d(in_channels, w(spec.ch1x1), 1)
        branches["branch_3x3"] = Sequential(
            BasicConv2d(in_channels, w(spec.reduce3x3), 1),
            BasicConv2d(w(spec.reduce3x3), w(spec.ch3x3), 3, stride=s, padding=1))
        branches["branch_double_3x3"] = Sequential(
            BasicConv2d(in_channels, w(spec.reduce_double), 1),
            BasicConv2d(w(spec.reduce_double), w(spec.ch_double), 3, padding=1),
            BasicConv2d(w(spec.ch_double), w(spec.ch_double), 3, stride=s, padding=1))
        if spec.proj:
            pool = (AvgPool2d(3, stride=1, padding=1) if spec.pool == "avg"
                    else MaxPool2d(3, stride=1, padding=1))
            branches["branch_pool"] = Sequential(pool, BasicConv2d(in_channels, w(spec.proj), 1))
        else:
            branches["branch_pool"] = MaxPool2d(3, stride=s, ceil_mode=True)
        self.mixed = Concat(**branches)
        self.out_channels = (w(spec.ch1x1) + w(spec.ch3x3) + w(spec.ch_double)
                             + (w(spec.proj) if spec.proj else in_channels))
        self.se = se_layer(self.out_channels) if se_layer is not None else None

    def forward(self, x):
        if self.stride == 2 and getattr(x, "ndim", 0) == 4 and (x.shape[2] % 2 or x.shape[3] % 2):
            raise ValueError(f"{self.where}: a stride-2 Inception module needs an even height "
                             f"and width, got input {tuple(x.shape)}; choose an input size "
                             "that reaches it at an even size (224 reaches 28 and 14; 32 works).")
        y = self.mixed(x)
        return self.se(y) if self.se is not None else y

    def backward(self, dout):
        if self.se is not None:
            dout = self.se.backward(dout)
        return self.mixed.backward(dout)


class BNInception(Module):
    """BN-Inception: stem, Inception modules, global average pool, ``fc``.

    Args:
        num_classes: outputs of ``fc``.
        se_layer: None for BN-Inception, else a callable ``channels -> Module`` making
            the SE block of every module (SE-BN-Inception).
        width_divisor: divide every width (stem and modules) by it: 1 is the paper's
            network; 8 gives the CIFAR networks, and tests use it for narrow twins.
        modules: the names of the modules to keep, in order (default: all ten of
            :data:`BN_INCEPTION_MODULES`); each module's input width follows from the
            one before.
        cifar_stem: a 3x3/1 convolution instead of the 7x7/2, and no max pools, for
            32x32 images (the ImageNet stem divides the resolution by 4).

    Sub-modules (state_dict keys): ``conv1``, ``pool1``, ``conv2_reduce``, ``conv2``,
    ``pool2`` (no pools with ``cifar_stem``), ``inception_3a`` ... ``inception_5b``,
    ``avgpool``, ``fc``.

    forward(x): (N, 3, H, W) -> logits (N, num_classes); at 224x224 the modules run at
    28, 14 and 7 pixels.
    backward(dlogits): -> dx (N, 3, H, W), accumulating every parameter's gradient.
    """

    def __init__(self, num_classes=1000, se_layer=None, width_divisor=1, modules=None,
                 cifar_stem=False):
        super().__init__()
        d = positive_int(width_divisor, "width_divisor", "BNInception")
        known = {spec.name: spec for spec in BN_INCEPTION_MODULES}
        names = MODULE_NAMES if modules is None else tuple(modules)
        unknown = [m for m in names if m not in known]
        if unknown or not names or len(set(names)) != len(names):
            raise ValueError(f"BNInception: modules must be distinct names from "
                             f"{list(MODULE_NAMES)}, in order; got {list(names)}.")
        names = tuple(sorted(names, key=MODULE_NAMES.index))
        c64, c192 = divided(64, d, "the stem"), divided(192, d, "the stem")
        if cifar_stem:
            self.conv1 = BasicConv2d(3, c64, 3, padding=1)
            self.pool1 = None
        else:
            self.conv1 = BasicConv2d(3, c64, 7, stride=2, padding=3)
            self.pool1 = MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2_reduce = BasicConv2d(c64, c64, 1)
        self.conv2 = BasicConv2d(c64, c192, 3, padding=1)
        self.pool2 = None if cifar_stem else MaxPool2d(3, stride=2, ceil_mode=True)
        channels = c192
        self.module_names = []
        for name in names:
            module = InceptionModule(channels, known[name], d, se_layer)
            setattr(self, f"inception_{name}", module)
            self.module_names.append(f"inception_{name}")
            channels = module.out_channels
        self.avgpool = GlobalAvgPool2d()
        self.fc = Linear(channels, num_classes)
        self.name = None
        self.options = None
        for m in self.modules():
            if isinstance(m, (Conv2d, FactorizedConv2d)):
                m.weight.data = init.kaiming_normal_fan_out(m.weight.data.shape)

    def _stem(self):
        return [m for m in (self.conv1, self.pool1, self.conv2_reduce, self.conv2, self.pool2)
                if m is not None]

    def forward(self, x):
        check_model_input(self, x)
        for m in self._stem():
            x = m(x)
        for name in self.module_names:
            x = getattr(self, name)(x)
        return self.fc(self.avgpool(x))

    def backward(self, dout):
        d = self.avgpool.backward(self.fc.backward(dout))
        for name in reversed(self.module_names):
            d = getattr(self, name).backward(d)
        for m in reversed(self._stem()):
            d = m.backward(d)
        return d


def _bn_inception(name, num_classes, se_options=None, **architecture):
    """The registered network ``name``; ``se_options`` (reduction, bias, the SE block's
    options) None for a plain one."""
    options = {"num_classes": num_classes}
    se_layer = None
    if se_options is not None:
        config = se_block_config(name, se_options.pop("reduction"), se_options.pop("bias"),
                                 se_options)
        se_layer = se_layer_factory(config)
        options.update(config)
    model = BNInception(num_classes, se_layer, **architecture)
    model.name, model.options = name, options
    return model


@register_model
def bn_inception(num_classes=1000):
    """BN-Inception (Ioffe & Szegedy, ICML 2015), 11,285,224 parameters: the layout of the
    official SE release (no convolution biases, ceil-mode stem pools), 224x224 inputs.

    Args:
        num_classes: outputs of ``fc``.
    """
    return _bn_inception("bn_inception", num_classes)


@register_model
def se_bn_inception(num_classes=1000, reduction=16, bias=True, **se_options):
    """SE-BN-Inception (Hu et al., TPAMI 2019, Fig. 2 and Table 2), 11,931,622 parameters
    with the defaults: an SE block on the output of each of the ten Inception modules.

    Args:
        num_classes: outputs of ``fc``.
        reduction: r; the SE's hidden width is max(1, C // r).
        bias: biases in the SE's two FC layers (on, as in the official release).
        **se_options: squeeze, gate, no_squeeze, divisor (see npsenet.nn.SEBlock).
    """
    return _bn_inception("se_bn_inception", num_classes,
                         dict(se_options, reduction=reduction, bias=bias))


@register_model
def bn_inception_cifar(num_classes=10):
    """BN-Inception for 32x32 images, 120,090 parameters: 1/8 of every width, a 3x3/1
    stem without pools, the modules 3a, 3b, 3c, 4a, 4e, 5a, 5b (resolutions 32, 16, 8);
    24 M MACs per image, one epoch of 4,660 images in about 30 s on 2 cores (fast path).

    Args:
        num_classes: outputs of ``fc``.
    """
    return _bn_inception("bn_inception_cifar", num_classes, **CIFAR_CONFIG)


@register_model
def se_bn_inception_cifar(num_classes=10, reduction=16, bias=False, **se_options):
    """SE-BN-Inception for 32x32 images, 127,674 parameters with the defaults: the
    network of :func:`bn_inception_cifar` with an SE block on each module's output.

    Args:
        num_classes: outputs of ``fc``.
        reduction: r; the SE's hidden width is max(1, C // r).
        bias: biases in the SE's two FC layers (off by default for the CIFAR models).
        **se_options: squeeze, gate, no_squeeze, divisor (see npsenet.nn.SEBlock).
    """
    return _bn_inception("se_bn_inception_cifar", num_classes,
                         dict(se_options, reduction=reduction, bias=bias), **CIFAR_CONFIG)
