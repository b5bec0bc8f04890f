"""The PyTorch twins of VGG-16 with BN and SE-VGG-16 (torchvision's ``vgg16_bn`` layout and
keys; the SE block after the ReLU of every convolution, Hu et al., TPAMI 2019, Sec. 6.1),
and the SE block the twins of the non-residual families share (:func:`torch_se_block`)."""
from __future__ import annotations

from ..models.vgg import VGG_CONFIGS, vgg16_layout
from .registry import register_twin, torch_module

# the SE block options of the non-residual families, with npsenet's defaults but bias
SE_BLOCK_DEFAULTS = {"reduction": 16, "squeeze": "avg", "gate": "sigmoid",
                     "no_squeeze": False, "divisor": 1}


def se_block_options(options, bias):
    """The SE block keyword arguments of a twin: ``options`` (a model's) over the
    defaults, ``bias`` the family's default for the FC layers' biases."""
    se = {key: options.get(key, default) for key, default in SE_BLOCK_DEFAULTS.items()}
    se["bias"] = options.get("bias", bias)
    return se


def torch_se_block(channels, reduction=16, squeeze="avg", gate="sigmoid", bias=False,
                   no_squeeze=False, divisor=1):
    """A torch.nn.Module computing the SE block (Hu et al., CVPR 2018, Sec. 3):
    x̃ = u ⊙ gate(W2 ReLU(W1 squeeze(u))), with sub-modules ``fc1`` and ``fc2`` (Linear,
    or 1x1 Conv2d for ``no_squeeze``), the keys of ``npsenet.nn.SEBlock``."""
    torch = torch_module()
    nn = torch.nn
    if divisor == 1:
        hidden = max(1, channels // reduction)
    else:
        hidden = max(divisor, int(channels / reduction + divisor / 2) // divisor * divisor)
    gates = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}

    class SE(nn.Module):
        def __init__(self):
            super().__init__()
            layer = nn.Conv2d if no_squeeze else nn.Linear
            extra = {"kernel_size": 1} if no_squeeze else {}
            self.fc1 = layer(channels, hidden, bias=bias, **extra)
            self.fc2 = layer(hidden, channels, bias=bias, **extra)

        def forward(self, u):
            if no_squeeze:
                return u * gates[gate](self.fc2(torch.relu(self.fc1(u))))
            z = u.mean((2, 3)) if squeeze == "avg" else u.amax((2, 3))
            s = gates[gate](self.fc2(torch.relu(self.fc1(z))))
            return u * s[:, :, None, None]

    return SE()


@register_twin("vgg16_bn", "se_vgg16_bn", "vgg16_bn_cifar", "se_vgg16_bn_cifar")
def build_torch_vgg_model(name, **options):
    """The PyTorch model equal to ``npsenet.models.build_model(name, **options)`` for the
    VGG models; the options default as npsenet's factories default them."""
    config = VGG_CONFIGS[name.removeprefix("se_")]
    cifar = name.endswith("_cifar")
    se = se_block_options(options, bias=not cifar) if name.startswith("se_") else None
    return build_torch_vgg(vgg16_layout(config["divisor"]),
                           options.get("num_classes", 10 if cifar else 1000),
                           config["hidden"], config["pool_size"],
                           options.get("drop_rate", 0.5), se)


def build_torch_vgg(layout, num_classes, hidden=4096, pool_size=7, drop_rate=0.5, se=None):
    """torchvision's VGG with BN: ``features`` (3x3 convolutions with bias, BN, ReLU, and
    2x2/2 max pools at "M"), ``avgpool`` (AdaptiveAvgPool2d to ``pool_size``), and the
    ``classifier`` (two hidden FC layers of width ``hidden`` with ReLU and Dropout, or
    one Linear for ``hidden=None``). ``se``: None, or the SE block options, an SE block
    after every convolution's ReLU (the ReLU slot holds ``relu`` and ``se``)."""
    torch = torch_module()
    nn = torch.nn

    class ReLUThenSE(nn.Module):
        def __init__(self, channels):
            super().__init__()
            self.relu = nn.ReLU(inplace=True)
            self.se = torch_se_block(channels, **se)

        def forward(self, x):
            return self.se(self.relu(x))

    class VGG(nn.Module):
        def __init__(self):
            super().__init__()
            layers, channels = [], 3
            for v in layout:
                if v == "M":
                    layers.append(nn.MaxPool2d(2, 2))
                    continue
                layers += [nn.Conv2d(channels, v, 3, padding=1), nn.BatchNorm2d(v),
                           nn.ReLU(inplace=True) if se is None else ReLUThenSE(v)]
                channels = v
            self.features = nn.Sequential(*layers)
            self.avgpool = nn.AdaptiveAvgPool2d((pool_size, pool_size))
            features = channels * pool_size * pool_size
            if hidden is None:
                self.classifier = nn.Sequential(nn.Linear(features, num_classes))
            else:
                self.classifier = nn.Sequential(
                    nn.Linear(features, hidden), nn.ReLU(True), nn.Dropout(drop_rate),
                    nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(drop_rate),
                    nn.Linear(hidden, num_classes))

        def forward(self, x):
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    return VGG()
