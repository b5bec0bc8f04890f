"""The PyTorch twins of the (SE-)Inception-ResNet-v2s, written from timm's
``inception_resnet_v2`` (the TF-slim network): BasicConv2d = conv (no bias), BN (eps
0.001), ReLU; the residual blocks y = ReLU(x + λ SE(conv2d(concat branches))), with
rectangular 1x7 / 7x1 / 1x3 / 3x1 kernels as torch's own nn.Conv2d, and Mixed_5b's
``nn.AvgPool2d(3, 1, 1, count_include_pad=False)``. State_dict keys are npsenet's: timm's,
with a block's branches under ``branch.mixed.`` and its up-projection ``branch.conv2d``.
"""
from __future__ import annotations

from .inception import se_options_of, torch_se_block
from .registry import register_twin, torch_module

# the registered CIFAR networks: 1/8 of the widths, (1, 2, 0) blocks, a stride-1 stem
CIFAR = {"width_divisor": 8, "repeats": (1, 2, 0), "cifar_stem": True}


def build_torch_inception_resnet_v2(num_classes=1000, se=None, width_divisor=1,
                                    repeats=(10, 20, 9), cifar_stem=False, drop_rate=0.0):
    """The PyTorch (SE-)Inception-ResNet-v2.

    Args:
        num_classes: outputs of ``classif``.
        se: None, or the SE block's options: one SE block in each residual branch, after
            the up-projection and before the scaling by λ.
        width_divisor: every width divided by it.
        repeats: Block35s, Block17s and Block8s before the final Block8.
        cifar_stem: the stem with stride 1, padding 1 and no max pools.
        drop_rate: dropout before ``classif``.
    """
    torch = torch_module()
    nn = torch.nn
    d = width_divisor

    def w(c):
        return c // d

    class BasicConv2d(nn.Module):
        def __init__(self, cin, cout, k, stride=1, padding=0):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, k, stride, padding, bias=False)
            self.bn = nn.BatchNorm2d(cout, eps=0.001)
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.relu(self.bn(self.conv(x)))

    class Mixed(nn.Module):
        """Branches on the same input, concatenated on the channels."""

        def __init__(self, **branches):
            super().__init__()
            for name, branch in branches.items():
                setattr(self, name, branch)

        def forward(self, x):
            return torch.cat([b(x) for b in self.children()], 1)

    class Branch(nn.Module):
        def __init__(self, c, cmix, **branches):
            super().__init__()
            self.mixed = Mixed(**branches)
            self.conv2d = nn.Conv2d(cmix, c, 1, bias=True)
            self.se = torch_se_block(c, **se) if se else None

        def forward(self, x):
            f = self.conv2d(self.mixed(x))
            return self.se(f) if self.se is not None else f

    class Residual(nn.Module):
        def __init__(self, branch, scale, relu=True):
            super().__init__()
            self.branch = branch
            self.scale = scale
            self.relu = nn.ReLU() if relu else None

        def forward(self, x):
            y = x + self.scale * self.branch(x)
            return self.relu(y) if self.relu is not None else y

    def block35():
        c = w(320)
        return Residual(Branch(
            c, w(32) + w(32) + w(64),
            branch0=BasicConv2d(c, w(32), 1),
            branch1=nn.Sequential(BasicConv2d(c, w(32), 1), BasicConv2d(w(32), w(32), 3, 1, 1)),
            branch2=nn.Sequential(BasicConv2d(c, w(32), 1), BasicConv2d(w(32), w(48), 3, 1, 1),
                                  BasicConv2d(w(48), w(64), 3, 1, 1))), 0.17)

    def block17():
        c = w(1088)
        return Residual(Branch(
            c, w(192) + w(192),
            branch0=BasicConv2d(c, w(192), 1),
            branch1=nn.Sequential(BasicConv2d(c, w(128), 1),
                                  BasicConv2d(w(128), w(160), (1, 7), 1, (0, 3)),
                                  BasicConv2d(w(160), w(192), (7, 1), 1, (3, 0)))), 0.10)

    def block8(scale=0.20, relu=True):
        c = w(2080)
        return Residual(Branch(
            c, w(192) + w(256),
            branch0=BasicConv2d(c, w(192), 1),
            branch1=nn.Sequential(BasicConv2d(c, w(192), 1),
                                  BasicConv2d(w(192), w(224), (1, 3), 1, (0, 1)),
                                  BasicConv2d(w(224), w(256), (3, 1), 1, (1, 0)))), scale, relu)

    class InceptionResNetV2(nn.Module):
        def __init__(self):
            super().__init__()
            s, p = (1, 1) if cifar_stem else (2, 0)
            self.conv2d_1a = BasicConv2d(3, w(32), 3, s, p)
            self.conv2d_2a = BasicConv2d(w(32), w(32), 3, 1, p)
            self.conv2d_2b = BasicConv2d(w(32), w(64), 3, 1, 1)
            self.maxpool_3a = nn.Identity() if cifar_stem else nn.MaxPool2d(3, 2)
            self.conv2d_3b = BasicConv2d(w(64), w(80), 1)
            self.conv2d_4a = BasicConv2d(w(80), w(192), 3, 1, p)
            self.maxpool_5a = nn.Identity() if cifar_stem else nn.MaxPool2d(3, 2)
            c = w(192)
            self.mixed_5b = Mixed(
                branch0=BasicConv2d(c, w(96), 1),
                branch1=nn.Sequential(BasicConv2d(c, w(48), 1), BasicConv2d(w(48), w(64), 5, 1, 2)),
                branch2=nn.Sequential(BasicConv2d(c, w(64), 1), BasicConv2d(w(64), w(96), 3, 1, 1),
                                      BasicConv2d(w(96), w(96), 3, 1, 1)),
                branch3=nn.Sequential(nn.AvgPool2d(3, 1, 1, count_include_pad=False),
                                      BasicConv2d(c, w(64), 1)))
            self.repeat = nn.Sequential(*[block35() for _ in range(repeats[0])])
            c = w(320)
            self.mixed_6a = Mixed(
                branch0=BasicConv2d(c, w(384), 3, 2),
                branch1=nn.Sequential(BasicConv2d(c, w(256), 1),
                                      BasicConv2d(w(256), w(256), 3, 1, 1),
                                      BasicConv2d(w(256), w(384), 3, 2)),
                branch2=nn.MaxPool2d(3, 2))
            self.repeat_1 = nn.Sequential(*[block17() for _ in range(repeats[1])])
            c = w(1088)
            self.mixed_7a = Mixed(
                branch0=nn.Sequential(BasicConv2d(c, w(256), 1), BasicConv2d(w(256), w(384), 3, 2)),
                branch1=nn.Sequential(BasicConv2d(c, w(256), 1), BasicConv2d(w(256), w(288), 3, 2)),
                branch2=nn.Sequential(BasicConv2d(c, w(256), 1),
                                      BasicConv2d(w(256), w(288), 3, 1, 1),
                                      BasicConv2d(w(288), w(320), 3, 2)),
                branch3=nn.MaxPool2d(3, 2))
            self.repeat_2 = nn.Sequential(*[block8() for _ in range(repeats[2])])
            self.block8 = block8(1.0, relu=False)
            self.conv2d_7b = BasicConv2d(w(2080), w(1536), 1)
            self.drop = nn.Dropout(drop_rate)
            self.classif = nn.Linear(w(1536), num_classes)

        def forward(self, x):
            for layer in (self.conv2d_1a, self.conv2d_2a, self.conv2d_2b, self.maxpool_3a,
                          self.conv2d_3b, self.conv2d_4a, self.maxpool_5a, self.mixed_5b,
                          self.repeat, self.mixed_6a, self.repeat_1, self.mixed_7a,
                          self.repeat_2, self.block8, self.conv2d_7b):
                x = layer(x)
            return self.classif(self.drop(x.mean((2, 3))))

    return InceptionResNetV2()


@register_twin("inception_resnet_v2", "se_inception_resnet_v2", "inception_resnet_v2_cifar",
               "se_inception_resnet_v2_cifar")
def build_torch_registered_inception_resnet_v2(name, **options):
    """The twin of ``npsenet.models.build_model(name, **options)`` for the four
    Inception-ResNet-v2 names (SE bias on for ImageNet, off for CIFAR, as npsenet's
    factories default it)."""
    cifar = name.endswith("_cifar")
    se = se_options_of(options, default_bias=not cifar) if name.startswith("se_") else None
    return build_torch_inception_resnet_v2(options.get("num_classes", 10 if cifar else 1000),
                                           se, drop_rate=options.get("drop_rate", 0.0),
                                           **(CIFAR if cifar else {}))
