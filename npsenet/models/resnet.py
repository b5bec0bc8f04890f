"""ResNets and SE-ResNets with hand-written backward passes, torchvision's state_dict keys.

A residual block computes ``y = ReLU(F(x) + shortcut(x))``: F is the residual branch
(two 3x3 convolutions in a :class:`BasicBlock`, 1x1-3x3-1x1 in a :class:`Bottleneck`),
and the shortcut is the identity, or a 1x1 convolution with batch norm (``downsample``)
where the stride or the channel count changes.

The SE block (the paper's Sec. 3) recalibrates channels somewhere in the block. The four
integrations of the paper's Sec. 6.5 (Fig. 5) are ``placement``:

    standard  y = ReLU(SE(F(x)) + shortcut(x))      after the branch's last BN (the paper's)
    pre       y = ReLU(F(SE(x)) + shortcut(x))      on the block input, before the branch
    post      y = SE(ReLU(F(x) + shortcut(x)))      after the addition and the final ReLU
    identity  y = ReLU(F(x) + SE(shortcut(x)))      on the shortcut, parallel to the branch

Backward. x reaches the output along two paths, the branch and the shortcut, so

    dL/dx = dL/dx|branch + dL/dx|shortcut

each found by running the layers of its path backwards from dL/d(F(x) + shortcut(x)).
"""
from __future__ import annotations

import inspect
from collections import OrderedDict

from .. import init
from ..backend import to_numpy
from ..nn._checks import positive_int
from ..nn import (BatchNorm2d, Conv2d, GlobalAvgPool2d, Linear, MaxPool2d, Module, ReLU,
                  SEBlock, Sequential)

PLACEMENTS = ("standard", "pre", "post", "identity")
SE_DEFAULTS = {"squeeze": "avg", "gate": "sigmoid", "placement": "standard", "no_squeeze": False}
SE_OPTION_NAMES = ("squeeze", "gate", "bias", "placement", "se_stages", "no_squeeze")


class ResidualBlock(Module):
    """What BasicBlock and Bottleneck share: the shortcut, the SE block and its placement.

    Subclasses build their branch layers, then call :meth:`_add_shortcut_and_se`, and
    implement ``_branch_forward(x)`` and ``_branch_backward(dout)``.

    forward(x): (N, C_in, H, W) -> (N, C_out, H/s, W/s) with C_out = planes * expansion.
    backward(dy): dy of the output's shape -> dx of the input's shape, the sum of the
    branch's and the shortcut's gradients.
    """

    expansion = 1

    def _add_shortcut_and_se(self, in_channels, out_channels, stride, se):
        """``se``: None, or ``{"placement": ..., "block": SEBlock keyword arguments}``."""
        self.placement = None if se is None else se["placement"]
        if se is not None:
            channels = in_channels if self.placement == "pre" else out_channels
            self.se = SEBlock(channels, **se["block"])
        else:
            self.se = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = Sequential(
                Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                BatchNorm2d(out_channels))
        else:
            self.downsample = None
        self.relu_out = ReLU(inplace=True)

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
    """F(x) = BN(conv3x3(ReLU(BN(conv3x3_s(x))))), the CIFAR ResNets' block (expansion 1).

    Args:
        in_channels: C_in.
        planes: C_out (the block's width).
        stride: s of the first convolution (and of the projection shortcut).
        se: None for a plain block, else ``{"placement": ..., "block": {...}}``.
    """

    expansion = 1

    def __init__(self, in_channels, planes, stride=1, se=None):
        super().__init__()
        self.conv1 = Conv2d(in_channels, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = BatchNorm2d(planes)
        self.relu1 = ReLU(inplace=True)
        self.conv2 = Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = BatchNorm2d(planes)
        self._add_shortcut_and_se(in_channels, planes, stride, se)

    def _branch_forward(self, x):
        return self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))

    def _branch_backward(self, dout):
        return self.conv1.backward(self.bn1.backward(self.relu1.backward(
            self.conv2.backward(self.bn2.backward(dout)))))


class Bottleneck(ResidualBlock):
    """F(x) = BN(conv1x1(ReLU(BN(conv3x3_s(ReLU(BN(conv1x1(x)))))))), expansion 4.

    The stride sits on the 3x3 convolution (torchvision's "ResNet v1.5").

    Args:
        in_channels: C_in.
        planes: the width of the 1x1 and 3x3 convolutions; C_out = 4 * planes.
        stride: s of the 3x3 convolution (and of the projection shortcut).
        se: None for a plain block, else ``{"placement": ..., "block": {...}}``.
    """

    expansion = 4

    def __init__(self, in_channels, planes, stride=1, se=None):
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = BatchNorm2d(planes)
        self.relu1 = ReLU(inplace=True)
        self.conv2 = Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = BatchNorm2d(planes)
        self.relu2 = ReLU(inplace=True)
        self.conv3 = Conv2d(planes, out_channels, 1, bias=False)
        self.bn3 = BatchNorm2d(out_channels)
        self._add_shortcut_and_se(in_channels, out_channels, stride, se)

    def _branch_forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))

    def _branch_backward(self, dout):
        d = self.conv3.backward(self.bn3.backward(dout))
        d = self.conv2.backward(self.bn2.backward(self.relu2.backward(d)))
        return self.conv1.backward(self.bn1.backward(self.relu1.backward(d)))


class ResNet(Module):
    """A stem, stages of residual blocks, global average pooling and a classifier.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: blocks per stage, e.g. (3, 3, 3) for ResNet-20, (3, 4, 6, 3) for ResNet-50.
        widths: planes per stage, e.g. (16, 32, 64) (CIFAR) or (64, 128, 256, 512).
        num_classes: outputs of ``fc``.
        imagenet_stem: a 7x7/2 convolution and a 3x3/2 max pool (ImageNet) instead of a
            3x3/1 convolution (CIFAR). The stem's width is ``widths[0]``.
        se: None for a plain ResNet, else a dict with ``reduction``, ``squeeze``, ``gate``,
            ``bias``, ``no_squeeze`` (the SEBlock's arguments), ``placement`` (one of
            ``PLACEMENTS``) and ``se_stages`` (the stage numbers, from 1, that carry SE).

    Stage 1 keeps the resolution; each later stage halves it in its first block.
    Initialisation is torchvision's: every convolution N(0, 2 / fan_out), BN weight 1 and
    bias 0, linear layers PyTorch's default.

    forward(x): (N, 3, H, W) -> logits (N, num_classes).
    backward(dlogits): (N, num_classes) -> dx (N, 3, H, W), accumulating every
    parameter's gradient.
    """

    def __init__(self, block, layers, widths, num_classes=10, imagenet_stem=False, se=None):
        super().__init__()
        if len(layers) != len(widths):
            raise ValueError(f"ResNet: layers {tuple(layers)} and widths {tuple(widths)} must "
                             "have one entry per stage.")
        se_stages, block_se = set(), None
        if se is not None:
            se_stages = set(se["se_stages"])
            se_block = {k: se[k] for k in ("reduction", "squeeze", "gate", "bias", "no_squeeze")}
            block_se = {"placement": se["placement"], "block": se_block}
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
            stage_se = block_se if stage in se_stages else None
            blocks = []
            for i in range(count):
                stride = 2 if stage > 1 and i == 0 else 1
                blocks.append(block(channels, planes, stride, stage_se))
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


# -- the model family ---------------------------------------------------------------------
CIFAR_DEPTHS = (20, 32, 56, 110)
IMAGENET_LAYERS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
CIFAR_WIDTHS = (16, 32, 64)
IMAGENET_WIDTHS = (64, 128, 256, 512)


def _se_config(name, num_stages, reduction, bias, options):
    """Validate the SE options and fill in the defaults; returns the full dict."""
    unknown = sorted(set(options) - set(SE_OPTION_NAMES))
    if unknown:
        raise ValueError(f"{name}: unknown SE option(s) {unknown}; the options are "
                         f"reduction, {', '.join(SE_OPTION_NAMES)}.")
    given = dict(SE_DEFAULTS, **options)
    if given["placement"] not in PLACEMENTS:
        raise ValueError(f"{name}: placement must be one of {list(PLACEMENTS)}, got "
                         f"{given['placement']!r}.")
    stages = given.get("se_stages")
    return {"reduction": positive_int(reduction, "reduction", name),
            "squeeze": given["squeeze"], "gate": given["gate"],
            "bias": bool(bias), "placement": given["placement"],
            "se_stages": (list(range(1, num_stages + 1)) if stages is None
                          else _stage_list(name, stages, num_stages)),
            "no_squeeze": bool(given["no_squeeze"])}


def _stage_list(name, stages, num_stages):
    if isinstance(stages, (str, bytes)) or not hasattr(stages, "__iter__"):
        raise ValueError(f"{name}: se_stages must be an iterable of stage numbers such as "
                         f"[1, 2], got {stages!r}.")
    out = sorted(set(stages))
    bad = [s for s in out if isinstance(s, bool) or not isinstance(s, int)
           or not 1 <= s <= num_stages]
    if bad:
        raise ValueError(f"{name}: se_stages must hold stage numbers from 1 to {num_stages}, "
                         f"got {list(stages)!r}.")
    return out


def _finish(model, name, options):
    model.name = name
    model.options = options
    return model


def _cifar_resnet(name, depth, num_classes, se_config):
    layers = ((depth - 2) // 6,) * 3
    model = ResNet(BasicBlock, layers, CIFAR_WIDTHS, num_classes, imagenet_stem=False,
                   se=se_config)
    options = {"num_classes": num_classes}
    if se_config is not None:
        options.update(se_config)
    return _finish(model, name, options)


def _imagenet_resnet(name, depth, num_classes, se_config):
    model = ResNet(Bottleneck, IMAGENET_LAYERS[depth], IMAGENET_WIDTHS, num_classes,
                   imagenet_stem=True, se=se_config)
    options = {"num_classes": num_classes}
    if se_config is not None:
        options.update(se_config)
    return _finish(model, name, options)


def _se_factory(depth, build, num_stages, default_classes, default_bias, doc):
    """A named SE-ResNet factory: ``build`` is _cifar_resnet or _imagenet_resnet."""
    def factory(num_classes=default_classes, reduction=16, bias=default_bias, **se_options):
        name = f"se_resnet{depth}"
        return build(name, depth, num_classes,
                     _se_config(name, num_stages, reduction, bias, se_options))

    factory.__doc__ = doc
    return factory


def _plain_factory(depth, build, default_classes, doc):
    """A named ResNet factory without SE."""
    def factory(num_classes=default_classes):
        return build(f"resnet{depth}", depth, num_classes, None)

    factory.__doc__ = doc
    return factory


def _make_factories():
    """se_resnet20/32/56/110, resnet20/..., se_resnet50/101/152, resnet50/..."""
    factories = OrderedDict()
    for depth in CIFAR_DEPTHS:
        factories[f"se_resnet{depth}"] = _se_factory(
            depth, _cifar_resnet, 3, 10, False,
            f"SE-ResNet-{depth} for 32x32 images: 3 stages of {(depth - 2) // 6} basic blocks "
            "(16/32/64 channels), an SE block in each. SE options: squeeze, gate, bias "
            "(default False), placement, se_stages (from 1..3), no_squeeze.")
        factories[f"resnet{depth}"] = _plain_factory(
            depth, _cifar_resnet, 10,
            f"ResNet-{depth} for 32x32 images (projection shortcuts), no SE.")
    for depth in IMAGENET_LAYERS:
        factories[f"se_resnet{depth}"] = _se_factory(
            depth, _imagenet_resnet, 4, 1000, True,
            f"SE-ResNet-{depth} for ImageNet-sized images: bottleneck stages "
            f"{IMAGENET_LAYERS[depth]}, an SE block in each. SE options: squeeze, gate, bias "
            "(default True), placement, se_stages (from 1..4), no_squeeze.")
        factories[f"resnet{depth}"] = _plain_factory(
            depth, _imagenet_resnet, 1000, f"ResNet-{depth} (torchvision's), no SE.")
    for name, factory in factories.items():
        factory.__name__ = factory.__qualname__ = name
    return factories


FACTORIES = _make_factories()
MODEL_NAMES = tuple(FACTORIES)


def build_model(name, **options):
    """Build a model by name, e.g. ``build_model("se_resnet20", placement="pre")``.

    ``options`` are the factory's arguments; ``build_model(m.name, **m.options)`` rebuilds
    a model ``m`` (with fresh weights).
    """
    if name not in FACTORIES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}.")
    factory = FACTORIES[name]
    try:
        inspect.signature(factory).bind(**options)
    except TypeError as exc:
        hint = " (SE options need an se_ model)" if not name.startswith("se_") else ""
        raise ValueError(f"{name}: {exc}{hint}.") from None
    return factory(**options)


def gate_values(model):
    """The excitations s of every SE block from the last forward pass.

    Returns an OrderedDict ``{"layer2.1.se": s}`` in network order, each s a NumPy array
    (N, C) (N, C, H, W for ``no_squeeze``): the values the paper's Sec. 7 plots per class
    ("role of excitation").
    """
    blocks = [(name, m) for name, m in model.named_modules() if isinstance(m, SEBlock)]
    if not blocks:
        raise ValueError("gate_values: this model has no SE blocks (is it a plain resnet?).")
    if all(m.gate_values is None for _, m in blocks):
        raise ValueError("gate_values: no forward pass has run yet; call model(x) first.")
    return OrderedDict((name, to_numpy(m.gate_values)) for name, m in blocks
                       if m.gate_values is not None)
