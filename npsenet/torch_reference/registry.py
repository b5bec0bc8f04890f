"""Which PyTorch builder makes the twin of which model name, and the lazy torch import."""
from __future__ import annotations

_TWINS = {}  # model name -> builder(name, **options) -> torch.nn.Module


def torch_module():
    """``import torch``, with an error that says how to install it."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - exercised only without torch
        raise RuntimeError("this needs PyTorch, an optional dependency: "
                           "pip install torch==2.13.0 (the CPU build)") from exc
    return torch


def register_twin(*names):
    """Register a builder ``fn(name, **options)`` as the PyTorch twin of the model ``names``."""
    def register(fn):
        for name in names:
            if name in _TWINS:
                raise ValueError(f"register_twin: {name!r} already has a PyTorch twin "
                                 f"({_TWINS[name].__module__}.{_TWINS[name].__qualname__}).")
            _TWINS[name] = fn
        return fn
    return register


def twin_builder(name):
    """The builder registered for model ``name``; a ValueError lists the names if none is."""
    if name not in _TWINS:
        raise ValueError(f"no PyTorch twin for model {name!r}; the twins are "
                         f"{', '.join(_TWINS)}.")
    return _TWINS[name]


def twin_names():
    """Every model name with a PyTorch twin, in registration order."""
    return tuple(_TWINS)
