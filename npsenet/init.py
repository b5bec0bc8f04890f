"""Random initialisation, with one seedable generator for the whole package.

``ns.manual_seed(0)`` makes model construction (and everything else that draws from
:func:`rng`) reproducible. Parameters are drawn on the CPU in float64 and stored as
float32; ``model.to(...)`` moves or casts them.
"""
from __future__ import annotations

import math

import numpy as np

_rng = np.random.default_rng(0)


def manual_seed(seed: int) -> None:
    """Reseed the generator used for parameter initialisation."""
    global _rng
    _rng = np.random.default_rng(seed)


def rng() -> np.random.Generator:
    return _rng


def uniform(shape, bound: float, dtype=np.float32):
    """U(-bound, bound): PyTorch's default for Linear and Conv2d, bound = 1/sqrt(fan_in)."""
    return _rng.uniform(-bound, bound, size=shape).astype(dtype)


def kaiming_normal_fan_out(shape, dtype=np.float32):
    """N(0, 2 / fan_out), fan_out = shape[0] * prod(shape[2:]): torchvision's ResNet conv init."""
    fan_out = shape[0] * int(np.prod(shape[2:]))
    return (_rng.standard_normal(size=shape) * math.sqrt(2.0 / fan_out)).astype(dtype)
