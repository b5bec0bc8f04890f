"""VGG-16 with batch norm (torchvision's ``vgg16_bn``) and SE-VGG-16 (Hu et al., TPAMI 2019,
Sec. 6.1, "Integration with modern architectures": a non-residual network, trained with a
BN layer after each convolution).

    model = vgg16_bn()                        # 138,365,992 parameters, torchvision's keys
    model = se_vgg16_bn()                     # an SE block after every convolution's ReLU
    model = vgg16_bn_cifar()                  # a quarter of the widths, one Linear

The network is a plain chain: 13 3x3 convolutions (each followed by BN and ReLU) in five
blocks of 64, 64 | 128, 128 | 256 x 3 | 512 x 3 | 512 x 3 channels, a 2x2/2 max pool after
each block, then the classifier Linear(512 7 7, 4096)-ReLU-Dropout-Linear(4096, 4096)-
ReLU-Dropout-Linear(4096, classes). The SE model inserts an SE block after the
non-linearity that follows each convolution, 13 in all; there is no residual, so the SE
block rescales the whole feature map that the next layer sees:

    x_{l+1} = SE(ReLU(BN(conv_l(x_l))))

State_dict keys are torchvision's: ``features.N.weight`` (convolution N, with its bias),
``features.N+1.*`` (its BN), ``classifier.0/3/6.*``. In the SE model the ReLU slot
``features.N+2`` becomes :class:`ReLUThenSE`, so its SE block is ``features.N+2.se.*``
(e.g. ``features.2.se.fc1.weight``) and every other key is unchanged.

Other input sizes. torchvision pools the last feature map to 7x7 with
``AdaptiveAvgPool2d((7, 7))`` (the identity at 224x224). :class:`~npsenet.nn.AdaptiveAvgPool2d`
computes exactly what PyTorch's does for the sizes where its windows tile the map: a side
that is a multiple of 7 (224 to 255 pixels give 7; 448 gives 14, averaged 2x2) or of 1
(32 to 63 pixels give a 1x1 map, copied to 7x7, as PyTorch copies it). Other sizes raise
an error that names the sizes that work. The CIFAR models pool to 1x1, so they take any
input of at least 32x32.

Costs (``npsenet summary``, MACs as counted in :mod:`npsenet.summary`), 224x224, 1000
classes, against the paper's TPAMI 2019 Table 2 (GFLOPs there are multiply-adds):

    vgg16_bn     138,365,992 parameters  15.4838 G MACs   paper VGG-16     15.47 GFLOPs
    se_vgg16_bn  138,596,784 parameters  15.5111 G MACs   paper SE-VGG-16  15.48 GFLOPs

The paper counts the convolutions (15.347 G) and the FC layers (0.124 G): 15.470 G. npsenet
also counts BN, one per output element of each convolution (13.5 M), hence 15.484 G.
SE adds 27.3 M MACs, +0.18%: 0.23 M in the excitation FC layers, and 13.5 M each in the
squeeze and in the scale (one per element of the 13 rescaled maps); the paper's +0.01 G
matches the FC layers and the scale (13.8 M) without the squeeze (an average, which it
does not count). SE adds 230,792 parameters (+0.17%): 2 C (C // 16) + C // 16 + C per
block with biases.

Initialisation is torchvision's VGG: convolutions N(0, 2 / fan_out) with zero bias, BN
weight 1 and bias 0; the linear layers keep PyTorch's default U(+-1/sqrt(fan_in))
(torchvision draws them from N(0, 0.01)).
"""
from __future__ import annotations

from .. import init
from ..nn import (AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Dropout, Flatten, Linear, MaxPool2d,
                  Module, ReLU, Sequential)
from ..nn._checks import positive_int
from .entry import check_model_input
from .registry import register_model
from .se_options import se_block_config, se_layer_factory

# the 13 convolutions' widths and the max pools ("M") of VGG-16 (torchvision's config "D")
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                512, 512, 512, "M", 512, 512, 512, "M")

# the registered networks: widths divided by ``divisor``, the classifier's hidden width
# (None: a single Linear), the side of the pooled map the classifier reads, the drop rate
VGG_CONFIGS = {
    "vgg16_bn": {"divisor": 1, "hidden": 4096, "pool_size": 7},
    "vgg16_bn_cifar": {"divisor": 4, "hidden": None, "pool_size": 1},
}


def vgg16_layout(divisor=1):
    """VGG-16's layout with every width divided by ``divisor`` (e.g. 4: 16, 16, "M", ...)."""
    divisor = positive_int(divisor, "divisor", "vgg16_layout")
    return tuple(v if v == "M" else max(1, v // divisor) for v in VGG16_LAYOUT)


class ReLUThenSE(Module):
    """The SE model's non-linearity: y = SE(ReLU(x)), the SE block placed after the ReLU
    that follows a convolution (sub-modules ``relu`` and ``se``).

    forward(x): (N, C, H, W) -> (N, C, H, W).
    backward(dy): dx = ReLU'(x) ⊙ se.backward(dy).
    """

    def __init__(self, se):
        super().__init__()
        self.relu = ReLU(inplace=True)
        self.se = se

    def forward(self, x):
        return self.se(self.relu(x))

    def backward(self, dout):
        return self.relu.backward(self.se.backward(dout))


class VGG(Module):
    """Convolution blocks (``features``), an optional pool to ``pool_size`` x ``pool_size``
    (``avgpool``), ``flatten`` and the ``classifier``.

    Args:
        layout: the widths of the 3x3 convolutions (each followed by BN and ReLU) and "M"
            for a 2x2/2 max pool, e.g. :data:`VGG16_LAYOUT` or ``vgg16_layout(4)``.
        num_classes: outputs of the last Linear.
        hidden: the width of the two hidden FC layers (4096 in VGG-16, each followed by
            ReLU and Dropout); None for a classifier that is one Linear.
        pool_size: the side of the map the classifier reads (7 for VGG-16: it reads
            C 7 7 values; 1 for the CIFAR models); see :class:`AdaptiveAvgPool2d`.
        drop_rate: the Dropout probability of the hidden FC layers (0.5 in VGG-16).
        se_layer: None for the plain network, else ``channels -> Module``, the SE block
            placed after the ReLU of every convolution.

    forward(x): (N, 3, H, W) -> logits (N, num_classes).
    backward(dlogits): (N, num_classes) -> dx (N, 3, H, W), accumulating every
    parameter's gradient.
    """

    def __init__(self, layout=VGG16_LAYOUT, num_classes=1000, hidden=4096, pool_size=7,
                 drop_rate=0.5, se_layer=None):
        super().__init__()
        layers, channels = [], 3
        for v in layout:
            if v == "M":
                layers.append(MaxPool2d(2, stride=2))
                continue
            layers += [Conv2d(channels, v, 3, padding=1), BatchNorm2d(v),
                       ReLU(inplace=True) if se_layer is None else ReLUThenSE(se_layer(v))]
            channels = v
        self.features = Sequential(*layers)
        self.avgpool = AdaptiveAvgPool2d(pool_size)
        self.flatten = Flatten()
        features = channels * pool_size * pool_size
        if hidden is None:
            self.classifier = Sequential(Linear(features, num_classes))
        else:
            self.classifier = Sequential(
                Linear(features, hidden), ReLU(inplace=True), Dropout(drop_rate),
                Linear(hidden, hidden), ReLU(inplace=True), Dropout(drop_rate),
                Linear(hidden, num_classes))
        self.name = None
        self.options = None
        for m in self.features:
            if isinstance(m, Conv2d):
                m.weight.data = init.kaiming_normal_fan_out(m.weight.data.shape)
                m.bias.data[...] = 0

    def forward(self, x):
        check_model_input(self, x)
        return self.classifier(self.flatten(self.avgpool(self.features(x))))

    def backward(self, dout):
        d = self.flatten.backward(self.classifier.backward(dout))
        return self.features.backward(self.avgpool.backward(d))


def _vgg(name, num_classes, drop_rate=None, se=None):
    config = VGG_CONFIGS[name.removeprefix("se_")]
    options = {"num_classes": num_classes}
    if config["hidden"] is not None:
        options["drop_rate"] = drop_rate
    model = VGG(vgg16_layout(config["divisor"]), num_classes, config["hidden"],
                config["pool_size"], drop_rate or 0.0,
                se_layer_factory(se) if se else None)
    model.name, model.options = name, {**options, **(se or {})}
    return model


# SE options of the se_ factories: squeeze ("avg" or "max"), gate ("sigmoid", "tanh" or
# "relu"), no_squeeze, divisor (see npsenet.nn.SEBlock); VGG has no placements or stages.

@register_model
def se_vgg16_bn(num_classes=1000, drop_rate=0.5, reduction=16, bias=True, **se_options):
    """SE-VGG-16 with BN (TPAMI 2019, Table 2), 138,596,784 parameters with the defaults.

    ``vgg16_bn`` with an SE block after the ReLU of each of the 13 convolutions
    (``features.N.se``).

    Args:
        num_classes: outputs of the last Linear.
        drop_rate: Dropout probability in the classifier (0 for exact gradient tests).
        reduction: r; the SE's hidden width is max(1, C // r).
        bias: biases in the SE's two FC layers (on by default for ImageNet models).
        **se_options: squeeze, gate, no_squeeze, divisor.
    """
    config = se_block_config("se_vgg16_bn", reduction, bias, se_options)
    return _vgg("se_vgg16_bn", num_classes, drop_rate, config)


@register_model
def vgg16_bn(num_classes=1000, drop_rate=0.5):
    """VGG-16 with BN (torchvision's ``vgg16_bn``, its state_dict keys), 138,365,992
    parameters: 13 3x3 convolutions with BN and ReLU, three FC layers.

    Args:
        num_classes: outputs of the last Linear.
        drop_rate: Dropout probability in the classifier (0 for exact gradient tests).
    """
    return _vgg("vgg16_bn", num_classes, drop_rate)


@register_model
def se_vgg16_bn_cifar(num_classes=10, reduction=16, bias=False, **se_options):
    """SE-VGG-16 with BN for 32x32 images, 938,330 parameters with the defaults.

    ``vgg16_bn_cifar`` with an SE block after the ReLU of each of the 13 convolutions.

    Args:
        num_classes: outputs of the Linear classifier.
        reduction: r; the SE's hidden width is max(1, C // r).
        bias: biases in the SE's two FC layers (off by default for CIFAR models).
        **se_options: squeeze, gate, no_squeeze, divisor.
    """
    config = se_block_config("se_vgg16_bn_cifar", reduction, bias, se_options)
    return _vgg("se_vgg16_bn_cifar", num_classes, se=config)


@register_model
def vgg16_bn_cifar(num_classes=10):
    """VGG-16 with BN for 32x32 images, 924,186 parameters: the 13 convolutions at a
    quarter of the widths (16, 16 | 32, 32 | 64 x 3 | 128 x 3 | 128 x 3), the five max
    pools (32x32 -> 1x1), one Linear(128, classes).

    Args:
        num_classes: outputs of the Linear classifier.
    """
    return _vgg("vgg16_bn_cifar", num_classes)
