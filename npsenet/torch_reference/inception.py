"""The PyTorch twins of the (SE-)BN-Inceptions, written from the official SE release's
``SE-BN-Inception.prototxt`` (github.com/hujie-frank/SENet): convolutions without bias,
each followed by BN and ReLU, ceil-mode max pools, the SE block on each module's
concatenated output. State_dict keys are npsenet's (``inception_3a.mixed.branch_3x3.0.conv
.weight``, ``inception_3a.se.fc1.weight``, ...).

Also the SE block every Inception twin shares (:func:`torch_se_block`).
"""
from __future__ import annotations

from .registry import register_twin, torch_module
from .resnet import se_hidden_width

# name, 1x1, 3x3 reduce, 3x3, double 3x3 reduce, double 3x3, pool, pool projection, stride
# (Ioffe & Szegedy, ICML 2015, Fig. 5; the prototxt's num_output values)
MODULES = (
    ("3a", 64, 64, 64, 64, 96, "avg", 32, 1),
    ("3b", 64, 64, 96, 64, 96, "avg", 64, 1),
    ("3c", 0, 128, 160, 64, 96, "max", 0, 2),
    ("4a", 224, 64, 96, 96, 128, "avg", 128, 1),
    ("4b", 192, 96, 128, 96, 128, "avg", 128, 1),
    ("4c", 160, 128, 160, 128, 160, "avg", 128, 1),
    ("4d", 96, 128, 192, 160, 192, "avg", 128, 1),
    ("4e", 0, 128, 192, 192, 256, "max", 0, 2),
    ("5a", 352, 192, 320, 160, 224, "avg", 128, 1),
    ("5b", 352, 192, 320, 192, 224, "max", 128, 1),
)
SE_KEYS = ("reduction", "squeeze", "gate", "bias", "no_squeeze", "divisor")
SE_DEFAULTS = {"reduction": 16, "squeeze": "avg", "gate": "sigmoid", "no_squeeze": False,
               "divisor": 1}
# the registered CIFAR networks: 1/8 of the widths, seven modules, the 3x3/1 stem
CIFAR = {"width_divisor": 8, "modules": ("3a", "3b", "3c", "4a", "4e", "5a", "5b"),
         "cifar_stem": True}


def se_options_of(options, default_bias):
    """The SE block's options of a factory call (npsenet's defaults filled in)."""
    se = {key: options.get(key, SE_DEFAULTS.get(key)) for key in SE_KEYS}
    se["bias"] = options.get("bias", default_bias)
    return se


def torch_se_block(channels, reduction=16, squeeze="avg", gate="sigmoid", bias=False,
                   no_squeeze=False, divisor=1):
    """x̃ = x ⊙ gate(W2 δ(W1 squeeze(x))) as a torch.nn.Module with fc1 and fc2."""
    torch = torch_module()
    nn = torch.nn

    class SEBlock(nn.Module):
        def __init__(self):
            super().__init__()
            hidden = se_hidden_width(channels, reduction, divisor)
            layer = (lambda a, b: nn.Conv2d(a, b, 1, bias=bias)) if no_squeeze else \
                (lambda a, b: nn.Linear(a, b, bias=bias))
            self.fc1 = layer(channels, hidden)
            self.fc2 = layer(hidden, channels)
            self.gate = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}[gate]

        def forward(self, u):
            if no_squeeze:
                return u * self.gate(self.fc2(torch.relu(self.fc1(u))))
            z = u.mean((2, 3)) if squeeze == "avg" else u.amax((2, 3))
            return u * self.gate(self.fc2(torch.relu(self.fc1(z))))[:, :, None, None]

    return SEBlock()


def torch_basic_conv(in_channels, out_channels, kernel_size, stride=1, padding=0, eps=1e-5):
    """conv (no bias) -> BN -> ReLU, keys ``conv``, ``bn``."""
    nn = torch_module().nn

    class BasicConv2d(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding,
                                  bias=False)
            self.bn = nn.BatchNorm2d(out_channels, eps=eps)
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.relu(self.bn(self.conv(x)))

    return BasicConv2d()


def build_torch_bn_inception(num_classes=1000, se=None, width_divisor=1, modules=None,
                             cifar_stem=False):
    """The PyTorch (SE-)BN-Inception.

    Args:
        num_classes: outputs of ``fc``.
        se: None, or the SE block's options (reduction, squeeze, gate, bias, no_squeeze,
            divisor): one SE block on each module's output.
        width_divisor: every width divided by it.
        modules: the module names to keep (default: all ten).
        cifar_stem: 3x3/1 first convolution and no stem pools.
    """
    torch = torch_module()
    nn = torch.nn
    d = width_divisor
    keep = [m[0] for m in MODULES] if modules is None else list(modules)

    class Inception(nn.Module):
        def __init__(self, cin, c1, r3, c3, rd, cd, pool, proj, s):
            super().__init__()
            branches = {}
            if c1:
                branches["branch_1x1"] = torch_basic_conv(cin, c1 // d, 1)
            branches["branch_3x3"] = nn.Sequential(
                torch_basic_conv(cin, r3 // d, 1),
                torch_basic_conv(r3 // d, c3 // d, 3, s, 1))
            branches["branch_double_3x3"] = nn.Sequential(
                torch_basic_conv(cin, rd // d, 1),
                torch_basic_conv(rd // d, cd // d, 3, 1, 1),
                torch_basic_conv(cd // d, cd // d, 3, s, 1))
            if proj:
                p = (nn.AvgPool2d(3, 1, 1, count_include_pad=True) if pool == "avg"
                     else nn.MaxPool2d(3, 1, 1))
                branches["branch_pool"] = nn.Sequential(p, torch_basic_conv(cin, proj // d, 1))
            else:
                branches["branch_pool"] = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.mixed = nn.ModuleDict(branches)
            self.out_channels = c1 // d + c3 // d + cd // d + (proj // d if proj else cin)
            self.se = torch_se_block(self.out_channels, **se) if se else None

        def forward(self, x):
            y = torch.cat([b(x) for b in self.mixed.values()], 1)
            return self.se(y) if self.se is not None else y

    class BNInception(nn.Module):
        def __init__(self):
            super().__init__()
            if cifar_stem:
                self.conv1 = torch_basic_conv(3, 64 // d, 3, 1, 1)
                self.pool1 = None
            else:
                self.conv1 = torch_basic_conv(3, 64 // d, 7, 2, 3)
                self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv2_reduce = torch_basic_conv(64 // d, 64 // d, 1)
            self.conv2 = torch_basic_conv(64 // d, 192 // d, 3, 1, 1)
            self.pool2 = None if cifar_stem else nn.MaxPool2d(3, 2, ceil_mode=True)
            channels = 192 // d
            self.names = []
            for name, *widths in MODULES:
                if name in keep:
                    module = Inception(channels, *widths)
                    setattr(self, f"inception_{name}", module)
                    self.names.append(f"inception_{name}")
                    channels = module.out_channels
            self.fc = nn.Linear(channels, num_classes)

        def forward(self, x):
            x = self.conv2_reduce(self.conv1(x) if self.pool1 is None
                                  else self.pool1(self.conv1(x)))
            x = self.conv2(x)
            if self.pool2 is not None:
                x = self.pool2(x)
            for name in self.names:
                x = getattr(self, name)(x)
            return self.fc(x.mean((2, 3)))

    return BNInception()


@register_twin("bn_inception", "se_bn_inception", "bn_inception_cifar", "se_bn_inception_cifar")
def build_torch_registered_bn_inception(name, **options):
    """The twin of ``npsenet.models.build_model(name, **options)`` for the four
    BN-Inception names (the npsenet factories' defaults: SE bias on for ImageNet, off
    for CIFAR)."""
    cifar = name.endswith("_cifar")
    se = se_options_of(options, default_bias=not cifar) if name.startswith("se_") else None
    return build_torch_bn_inception(options.get("num_classes", 10 if cifar else 1000), se,
                                    **(CIFAR if cifar else {}))
