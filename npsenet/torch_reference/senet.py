"""The PyTorch twin of SENet-154 (:mod:`npsenet.models.senet`), written from the Caffe
layout that timm's ``legacy_senet154`` ports: a three-convolution stem and a ceil-mode
max pool, SE bottlenecks of 2 planes -> 4 planes with 64-group 3x3 convolutions, 3x3
projection shortcuts after stage 1, dropout before ``fc``. The keys are npsenet's (see
that module), not timm's legacy ones."""
from __future__ import annotations

from ..models.specs import SE_DEFAULTS
from .registry import register_twin, torch_module
from .resnet import se_block_class

SENET154 = {"layers": (3, 8, 36, 3), "widths": (64, 128, 256, 512), "groups": 64,
            "stem_width": 64}


@register_twin("senet154")
def build_torch_senet154(name, **options):
    """The PyTorch model equal to ``npsenet.models.build_model("senet154", **options)``;
    the options default as the npsenet factory defaults them."""
    se = {key: options.get(key, default) for key, default in SE_DEFAULTS.items()}
    se["bias"] = options.get("bias", True)
    return build_torch_senet(num_classes=options.get("num_classes", 1000),
                             drop_rate=options.get("drop_rate", 0.2), se=se,
                             se_stages=options.get("se_stages"), **SENET154)


def build_torch_senet(layers, widths, groups, stem_width, num_classes=1000, drop_rate=0.2,
                      se=None, se_stages=None):
    """The PyTorch SENet of the given depth and width (the arguments of
    ``npsenet.models.senet.SENet``); ``se``: None, or the SE options (reduction, squeeze,
    gate, bias, no_squeeze, divisor, placement); ``se_stages``: the stages, from 1, with SE."""
    torch = torch_module()
    nn = torch.nn
    SEBlock = se_block_class()

    class SEBottleneck(nn.Module):
        def __init__(self, inplanes, planes, stride, se, downsample_kernel):
            super().__init__()
            out = planes * 4
            self.conv1 = nn.Conv2d(inplanes, planes * 2, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes * 2)
            self.conv2 = nn.Conv2d(planes * 2, out, 3, stride, 1, groups=groups, bias=False)
            self.bn2 = nn.BatchNorm2d(out)
            self.conv3 = nn.Conv2d(out, out, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(out)
            self.placement = se["placement"] if se else None
            if se:
                channels = inplanes if self.placement == "pre" else out
                self.se = SEBlock(channels, **{k: v for k, v in se.items() if k != "placement"})
            self.downsample = None
            if stride != 1 or inplanes != out:
                self.downsample = nn.Sequential(
                    nn.Conv2d(inplanes, out, downsample_kernel, stride,
                              downsample_kernel // 2, bias=False),
                    nn.BatchNorm2d(out))

        def forward(self, x):
            residual = x if self.downsample is None else self.downsample(x)
            y = self.se(x) if self.placement == "pre" else x
            y = torch.relu(self.bn1(self.conv1(y)))
            y = torch.relu(self.bn2(self.conv2(y)))
            if self.placement == "3x3":
                y = self.se(y)
            y = self.bn3(self.conv3(y))
            if self.placement == "standard":
                y = self.se(y)
            if self.placement == "identity":
                residual = self.se(residual)
            y = torch.relu(y + residual)
            return self.se(y) if self.placement == "post" else y

    class SENet(nn.Module):
        def __init__(self):
            super().__init__()
            w = stem_width
            self.conv1 = nn.Conv2d(3, w, 3, 2, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(w)
            self.conv2 = nn.Conv2d(w, w, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(w)
            self.conv3 = nn.Conv2d(w, 2 * w, 3, 1, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(2 * w)
            self.maxpool = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            stages = set(range(1, len(layers) + 1) if se_stages is None else se_stages)
            inplanes = 2 * w
            for stage, (planes, depth) in enumerate(zip(widths, layers), start=1):
                blocks = []
                for b in range(depth):
                    stride = 2 if (b == 0 and stage > 1) else 1
                    blocks.append(SEBottleneck(inplanes, planes, stride,
                                               se if stage in stages else None,
                                               1 if stage == 1 else 3))
                    inplanes = planes * 4
                setattr(self, f"layer{stage}", nn.Sequential(*blocks))
            self.dropout = nn.Dropout(drop_rate)
            self.fc = nn.Linear(inplanes, num_classes)

        def forward(self, x):
            x = torch.relu(self.bn1(self.conv1(x)))
            x = torch.relu(self.bn2(self.conv2(x)))
            x = self.maxpool(torch.relu(self.bn3(self.conv3(x))))
            for stage in range(1, len(layers) + 1):
                x = getattr(self, f"layer{stage}")(x)
            return self.fc(self.dropout(x.mean((2, 3))))

    return SENet()
