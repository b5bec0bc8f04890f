"""The PyTorch twins of ShuffleNet (Zhang et al., CVPR 2018, Fig. 2 and Table 1) and
SE-ShuffleNet (an SE block on each unit's residual branch, before the addition or the
concatenation)."""
from __future__ import annotations

from ..models.shufflenet import SHUFFLENET_CONFIGS
from .registry import register_twin, torch_module
from .vgg import se_block_options, torch_se_block


@register_twin("shufflenet_v1", "se_shufflenet_v1", "shufflenet_v1_cifar",
               "se_shufflenet_v1_cifar")
def build_torch_shufflenet_model(name, **options):
    """The PyTorch model equal to ``npsenet.models.build_model(name, **options)`` for the
    ShuffleNets; the options default as npsenet's factories default them."""
    config = SHUFFLENET_CONFIGS[name.removeprefix("se_")]
    cifar = name.endswith("_cifar")
    se = se_block_options(options, bias=not cifar) if name.startswith("se_") else None
    return build_torch_shufflenet(options.get("num_classes", 10 if cifar else 1000), se=se,
                                  **config)


def build_torch_shufflenet(num_classes, groups=3, stem=24, widths=(240, 480, 960),
                           repeats=(4, 8, 4), imagenet_stem=True, se=None):
    """ShuffleNet with ``groups`` groups: a 3x3 stem (stride 2 and a 3x3/2 max pool for
    ImageNet), stages ``stage2``... of units (1x1 grouped convolution to out/4, BN, ReLU,
    channel shuffle, 3x3 depthwise convolution, BN, 1x1 grouped convolution, BN, SE when
    ``se`` gives its options; then ReLU(x + branch) or, in each stage's first unit of
    stride 2, ReLU(cat(avg_pool3x3/2(x), branch))), global average pooling and ``fc``."""
    torch = torch_module()
    nn = torch.nn
    F = torch.nn.functional

    def channel_shuffle(x, g):
        n, c, h, w = x.shape
        return x.reshape(n, g, c // g, h, w).transpose(1, 2).reshape(n, c, h, w)

    class Unit(nn.Module):
        def __init__(self, cin, cout, stride, grouped_first):
            super().__init__()
            self.stride = stride
            branch = cout - cin if stride == 2 else cout
            mid = cout // 4
            self.conv1 = nn.Conv2d(cin, mid, 1, bias=False, groups=groups if grouped_first else 1)
            self.bn1 = nn.BatchNorm2d(mid)
            self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, bias=False, groups=mid)
            self.bn2 = nn.BatchNorm2d(mid)
            self.conv3 = nn.Conv2d(mid, branch, 1, bias=False, groups=groups)
            self.bn3 = nn.BatchNorm2d(branch)
            self.se = None if se is None else torch_se_block(branch, **se)

        def forward(self, x):
            f = channel_shuffle(torch.relu(self.bn1(self.conv1(x))), groups)
            f = self.bn3(self.conv3(self.bn2(self.conv2(f))))
            if self.se is not None:
                f = self.se(f)
            if self.stride == 1:
                return torch.relu(x + f)
            return torch.relu(torch.cat([F.avg_pool2d(x, 3, 2, 1), f], 1))

    class ShuffleNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, stem, 3, 2 if imagenet_stem else 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(stem)
            c = stem
            for stage, (width, count) in enumerate(zip(widths, repeats), start=2):
                units = []
                for i in range(count):
                    units.append(Unit(c, width, 2 if i == 0 else 1,
                                      grouped_first=not (stage == 2 and i == 0)))
                    c = width
                setattr(self, f"stage{stage}", nn.Sequential(*units))
            self.fc = nn.Linear(c, num_classes)

        def forward(self, x):
            x = torch.relu(self.bn1(self.conv1(x)))
            if imagenet_stem:
                x = F.max_pool2d(x, 3, 2, 1)
            for stage in range(2, 2 + len(widths)):
                x = getattr(self, f"stage{stage}")(x)
            return self.fc(x.mean((2, 3)))

    return ShuffleNet()
