"""The PyTorch twins of the (SE-)ResNets: the architecture is the model's entry in
:data:`npsenet.models.specs.SPECS`, the table the npsenet factories read."""
from __future__ import annotations

import functools

from ..models.specs import SE_DEFAULTS, SPECS, spec_for
from .registry import register_twin, torch_module


@register_twin(*SPECS)
def build_torch_spec_model(name, **options):
    """The PyTorch model equal to ``npsenet.models.build_model(name, **options)`` for the
    (SE-)ResNets of :data:`~npsenet.models.specs.SPECS`; the options default as npsenet's
    factories default them."""
    spec = spec_for(name)
    se = None
    if spec.se:
        se = {key: options.get(key, default) for key, default in SE_DEFAULTS.items()}
        se["bias"] = options.get("bias", spec.se_bias)
        se["divisor"] = options.get("divisor", spec.se_divisor)
    return build_torch_resnet(spec, options.get("num_classes", spec.num_classes), se,
                              options.get("se_stages"))


def se_hidden_width(channels, reduction, divisor=1):
    """max(1, C // r), or with a divisor above 1 timm's make_divisible(C / r, divisor)."""
    if divisor == 1:
        return max(1, channels // reduction)
    rounded = int(channels / reduction + divisor / 2) // divisor * divisor
    return max(divisor, rounded)


@functools.lru_cache(maxsize=None)
def se_block_class():
    """The PyTorch SE block class, ``SEBlock(channels, reduction=16, squeeze="avg",
    gate="sigmoid", bias=False, no_squeeze=False, divisor=1)``: squeeze, fc1 (Linear, or
    a 1x1 convolution with ``no_squeeze``), ReLU, fc2, gate, scale; the keys of
    ``npsenet.nn.SEBlock``."""
    torch = torch_module()
    nn = torch.nn

    class SEBlock(nn.Module):
        def __init__(self, channels, reduction=16, squeeze="avg", gate="sigmoid", bias=False,
                     no_squeeze=False, divisor=1):
            super().__init__()
            hidden = se_hidden_width(channels, reduction, divisor)
            self.no_squeeze, self.squeeze_kind = no_squeeze, squeeze
            if no_squeeze:
                self.fc1 = nn.Conv2d(channels, hidden, 1, bias=bias)
                self.fc2 = nn.Conv2d(hidden, channels, 1, bias=bias)
            else:
                self.fc1 = nn.Linear(channels, hidden, bias=bias)
                self.fc2 = nn.Linear(hidden, channels, bias=bias)
            self.gate = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}[gate]

        def forward(self, u):
            if self.no_squeeze:
                return u * self.gate(self.fc2(torch.relu(self.fc1(u))))
            z = u.mean((2, 3)) if self.squeeze_kind == "avg" else u.amax((2, 3))
            s = self.gate(self.fc2(torch.relu(self.fc1(z))))
            return u * s[:, :, None, None]

    return SEBlock


def build_torch_resnet(spec, num_classes, se=None, se_stages=None):
    """The PyTorch ResNet of a :class:`~npsenet.models.specs.ResNetSpec`.

    Args:
        spec: the architecture (block kind, layers, widths, stem, groups, base_width).
        num_classes: outputs of ``fc``.
        se: None for no SE, else the SE options: reduction, squeeze, gate, bias,
            no_squeeze, divisor and placement.
        se_stages: the stage numbers, from 1, that carry SE (default: all).
    """
    torch = torch_module()
    nn = torch.nn

    SEBlock = se_block_class()

    class Block(nn.Module):
        """BasicBlock (expansion 1) or Bottleneck (expansion 4, 3x3 convolution of width
        int(planes * base_width / 64) * groups with ``groups`` groups), SE in any placement;
        ``3x3``: on the input of the branch's last convolution, after the ReLU before it."""

        def __init__(self, inplanes, planes, stride, bottleneck, se, groups=1, base_width=64):
            super().__init__()
            self.bottleneck = bottleneck
            out = planes * (4 if bottleneck else 1)
            width = int(planes * (base_width / 64.0)) * groups if bottleneck else planes
            if bottleneck:
                self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
                self.bn1 = nn.BatchNorm2d(width)
                self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
                self.bn2 = nn.BatchNorm2d(width)
                self.conv3 = nn.Conv2d(width, out, 1, bias=False)
                self.bn3 = nn.BatchNorm2d(out)
            else:
                self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
                self.bn1 = nn.BatchNorm2d(planes)
                self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
                self.bn2 = nn.BatchNorm2d(planes)
            self.placement = se["placement"] if se else None
            if se:
                se_channels = {"pre": inplanes, "3x3": width}.get(self.placement, out)
                self.se = SEBlock(se_channels, **{k: v for k, v in se.items() if k != "placement"})
            self.downsample = None
            if stride != 1 or inplanes != out:
                self.downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride, bias=False),
                                                nn.BatchNorm2d(out))

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            branch_in = self.se(x) if self.placement == "pre" else x
            y = torch.relu(self.bn1(self.conv1(branch_in)))
            if self.bottleneck:
                y = torch.relu(self.bn2(self.conv2(y)))
                if self.placement == "3x3":
                    y = self.se(y)
                y = self.bn3(self.conv3(y))
            else:
                if self.placement == "3x3":
                    y = self.se(y)
                y = self.bn2(self.conv2(y))
            if self.placement == "standard":
                y = self.se(y)
            if self.placement == "identity":
                identity = self.se(identity)
            y = torch.relu(y + identity)
            return self.se(y) if self.placement == "post" else y

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            bottleneck = spec.block == "bottleneck"
            stem = spec.widths[0]
            if spec.imagenet_stem:
                self.conv1 = nn.Conv2d(3, stem, 7, 2, 3, bias=False)
            else:
                self.conv1 = nn.Conv2d(3, stem, 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(stem)
            self.maxpool = nn.MaxPool2d(3, 2, 1) if spec.imagenet_stem else None
            stages = set(range(1, spec.num_stages + 1) if se_stages is None else se_stages)
            inplanes = stem
            for stage, (width, depth) in enumerate(zip(spec.widths, spec.layers), start=1):
                blocks = []
                for b in range(depth):
                    stride = 2 if (b == 0 and stage > 1) else 1
                    stage_se = se if (se and stage in stages) else None
                    blocks.append(Block(inplanes, width, stride, bottleneck, stage_se,
                                        spec.groups, spec.base_width))
                    inplanes = width * (4 if bottleneck else 1)
                setattr(self, f"layer{stage}", nn.Sequential(*blocks))
            self.fc = nn.Linear(inplanes, num_classes)

        def forward(self, x):
            x = torch.relu(self.bn1(self.conv1(x)))
            if self.maxpool is not None:
                x = self.maxpool(x)
            for stage in range(1, spec.num_stages + 1):
                x = getattr(self, f"layer{stage}")(x)
            return self.fc(x.mean((2, 3)))

    return ResNet()
