"""PyTorch twins of npsenet's models: the oracle of the parity tests, the other side of
``npsenet bench`` and of ``benchmarks/pytorch_reference.py``.

    twin = build_torch_model("se_resnet20", placement="pre")   # torch.nn.Module
    copy_weights(ns.models.build_model("se_resnet20", placement="pre"), twin)

Each family's twin is one module here (``resnet.py``, ...), written from the paper, whose
builder registers the model names it covers (:func:`register_twin`). Architecture, every
option and the state_dict keys mirror ``npsenet.models`` exactly, so weights copy across
with :func:`copy_weights`. PyTorch is optional and test-only: a builder imports it when
called; torchvision and timm are not needed.
"""
from __future__ import annotations

import numpy as np

from ..backend import to_numpy
from .registry import register_twin, torch_module, twin_builder, twin_names
from . import resnet  # noqa: F401  (registers the (SE-)ResNets)
from . import senet  # noqa: F401  (registers SENet-154)
from . import vgg  # noqa: F401  (registers VGG-16 and SE-VGG-16)
from . import mobilenet  # noqa: F401  (registers MobileNet and SE-MobileNet)
from . import shufflenet  # noqa: F401  (registers ShuffleNet and SE-ShuffleNet)
from . import inception  # noqa: F401  (registers BN-Inception and SE-BN-Inception)
from . import inception_resnet  # noqa: F401  (registers (SE-)Inception-ResNet-v2)
from .resnet import build_torch_resnet


def build_torch_model(name, **options):
    """The PyTorch model equal to ``npsenet.models.build_model(name, **options)``."""
    return twin_builder(name)(name, **options)


def copy_weights(np_model, torch_model):
    """Load npsenet's parameters and buffers into the PyTorch twin (same keys), in place."""
    torch = torch_module()
    state = {k: torch.from_numpy(np.array(to_numpy(v))) for k, v in np_model.state_dict().items()}
    torch_model.load_state_dict(state, strict=True)
    return torch_model


__all__ = ["build_torch_model", "build_torch_resnet", "copy_weights", "register_twin",
           "torch_module", "twin_names"]
