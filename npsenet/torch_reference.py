"""PyTorch twins of npsenet's models: the oracle of the parity tests, the other side of
``npsenet bench`` and of ``benchmarks/pytorch_reference.py``.

The architecture, every SE option and the state_dict keys mirror ``npsenet.models``
exactly, so weights copy across with :func:`copy_weights`. PyTorch is optional and
test-only: this module imports it when called, and torchvision is not needed.
"""
from __future__ import annotations

import numpy as np

from .backend import to_numpy


def _torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - exercised only without torch
        raise RuntimeError("this needs PyTorch, an optional dependency: "
                           "pip install torch==2.13.0 (the CPU build)") from exc
    return torch


def build_torch_model(name, **options):
    """The PyTorch model equal to ``npsenet.models.build_model(name, **options)``."""
    torch = _torch()
    nn = torch.nn

    class SEBlock(nn.Module):
        def __init__(self, channels, reduction=16, squeeze="avg", gate="sigmoid", bias=False,
                     no_squeeze=False):
            super().__init__()
            hidden = max(1, channels // reduction)
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

    class Block(nn.Module):
        """BasicBlock (expansion 1) or Bottleneck (expansion 4), SE in any placement."""

        def __init__(self, inplanes, planes, stride, bottleneck, se):
            super().__init__()
            self.bottleneck = bottleneck
            out = planes * (4 if bottleneck else 1)
            if bottleneck:
                self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
                self.bn1 = nn.BatchNorm2d(planes)
                self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
                self.bn2 = nn.BatchNorm2d(planes)
                self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
                self.bn3 = nn.BatchNorm2d(out)
            else:
                self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
                self.bn1 = nn.BatchNorm2d(planes)
                self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
                self.bn2 = nn.BatchNorm2d(planes)
            self.placement = se["placement"] if se else None
            if se:
                se_channels = inplanes if self.placement == "pre" else out
                if self.placement == "identity":
                    se_channels = out
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
                y = self.bn3(self.conv3(y))
            else:
                y = self.bn2(self.conv2(y))
            if self.placement == "standard":
                y = self.se(y)
            if self.placement == "identity":
                identity = self.se(identity)
            y = torch.relu(y + identity)
            return self.se(y) if self.placement == "post" else y

    class ResNet(nn.Module):
        def __init__(self, imagenet, depths, bottleneck, num_classes, se, se_stages):
            super().__init__()
            widths = (64, 128, 256, 512) if imagenet else (16, 32, 64)
            stem = widths[0]
            if imagenet:
                self.conv1 = nn.Conv2d(3, stem, 7, 2, 3, bias=False)
            else:
                self.conv1 = nn.Conv2d(3, stem, 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(stem)
            self.maxpool = nn.MaxPool2d(3, 2, 1) if imagenet else None
            inplanes = stem
            for stage, (width, depth) in enumerate(zip(widths, depths), start=1):
                blocks = []
                for b in range(depth):
                    stride = 2 if (b == 0 and stage > 1) else 1
                    stage_se = se if (se and stage in se_stages) else None
                    blocks.append(Block(inplanes, width, stride, bottleneck, stage_se))
                    inplanes = width * (4 if bottleneck else 1)
                setattr(self, f"layer{stage}", nn.Sequential(*blocks))
            self.num_stages = len(widths)
            self.fc = nn.Linear(inplanes, num_classes)

        def forward(self, x):
            x = torch.relu(self.bn1(self.conv1(x)))
            if self.maxpool is not None:
                x = self.maxpool(x)
            for stage in range(1, self.num_stages + 1):
                x = getattr(self, f"layer{stage}")(x)
            return self.fc(x.mean((2, 3)))

    cifar = {20: 3, 32: 5, 56: 9, 110: 18}
    imagenet = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
    with_se = name.startswith("se_")
    depth = int(name.split("resnet")[1])
    is_imagenet = depth in imagenet
    num_classes = options.get("num_classes", 1000 if is_imagenet else 10)
    se = None
    if with_se:
        se = {"reduction": options.get("reduction", 16),
              "squeeze": options.get("squeeze", "avg"),
              "gate": options.get("gate", "sigmoid"),
              "bias": options.get("bias", is_imagenet),
              "no_squeeze": options.get("no_squeeze", False),
              "placement": options.get("placement", "standard")}
    stages = 4 if is_imagenet else 3
    chosen = options.get("se_stages")
    se_stages = set(range(1, stages + 1) if chosen is None else chosen)
    depths = imagenet[depth] if is_imagenet else (cifar[depth],) * 3
    return ResNet(is_imagenet, depths, is_imagenet, num_classes, se, se_stages)


def copy_weights(np_model, torch_model):
    """Load npsenet's parameters and buffers into the PyTorch twin (same keys), in place."""
    torch = _torch()
    state = {k: torch.from_numpy(np.array(to_numpy(v))) for k, v in np_model.state_dict().items()}
    torch_model.load_state_dict(state, strict=True)
    return torch_model
