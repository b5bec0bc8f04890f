"""The PyTorch twins of MobileNet (Howard et al., 2017, Table 1) and SE-MobileNet (an SE
block on the output of every depthwise-separable unit)."""
from __future__ import annotations

from ..models.mobilenet import MOBILENET_CONFIGS, MOBILENET_V1_UNITS, STEM_WIDTH
from .registry import register_twin, torch_module
from .vgg import se_block_options, torch_se_block


@register_twin("mobilenet_v1", "se_mobilenet_v1", "mobilenet_v1_cifar", "se_mobilenet_v1_cifar")
def build_torch_mobilenet_model(name, **options):
    """The PyTorch model equal to ``npsenet.models.build_model(name, **options)`` for the
    MobileNets; the options default as npsenet's factories default them."""
    config = MOBILENET_CONFIGS[name.removeprefix("se_")]
    cifar = name.endswith("_cifar")
    se = se_block_options(options, bias=not cifar) if name.startswith("se_") else None
    return build_torch_mobilenet(options.get("num_classes", 10 if cifar else 1000),
                                 config["width"], config["stem_stride"], se=se)


def build_torch_mobilenet(num_classes, width=1.0, stem_stride=2, units=MOBILENET_V1_UNITS,
                          se=None):
    """MobileNet with width multiplier ``width`` (channels int(α C), at least 1): ``stem``
    (3x3 convolution of stride ``stem_stride``, BN, ReLU), ``features`` (per unit: 3x3
    depthwise convolution, BN, ReLU, 1x1 convolution, BN, ReLU, and the SE block when
    ``se`` gives its options), global average pooling and ``fc``."""
    torch = torch_module()
    nn = torch.nn

    def scaled(c):
        return max(1, int(c * width))

    class Unit(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv_dw = nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False)
            self.bn_dw = nn.BatchNorm2d(cin)
            self.conv_pw = nn.Conv2d(cin, cout, 1, bias=False)
            self.bn_pw = nn.BatchNorm2d(cout)
            self.se = None if se is None else torch_se_block(cout, **se)

        def forward(self, x):
            x = torch.relu(self.bn_dw(self.conv_dw(x)))
            x = torch.relu(self.bn_pw(self.conv_pw(x)))
            return x if self.se is None else self.se(x)

    class MobileNet(nn.Module):
        def __init__(self):
            super().__init__()
            c = scaled(STEM_WIDTH)
            self.stem = nn.Sequential(nn.Conv2d(3, c, 3, stem_stride, 1, bias=False),
                                      nn.BatchNorm2d(c), nn.ReLU(inplace=True))
            units_ = []
            for out, stride in units:
                units_.append(Unit(c, scaled(out), stride))
                c = scaled(out)
            self.features = nn.Sequential(*units_)
            self.fc = nn.Linear(c, num_classes)

        def forward(self, x):
            return self.fc(self.features(self.stem(x)).mean((2, 3)))

    return MobileNet()
