"""The SE excitations a model computed in its last forward pass, block by block."""
from __future__ import annotations

from collections import OrderedDict

from ..backend import to_numpy
from ..nn import SEBlock


def gate_values(model):
    """The excitations s of every SE block from the last forward pass.

    Returns an OrderedDict ``{"layer2.1.se": s}`` in network order, each s a NumPy array
    (N, C) (N, C, H, W for ``no_squeeze``): the values the paper's Sec. 7 plots per class
    ("role of excitation").
    """
    blocks = [(name, m) for name, m in model.named_modules() if isinstance(m, SEBlock)]
    if not blocks:
        raise ValueError("gate_values: this model has no SE blocks (is it a plain resnet?).")
    if all(m.gate_values is None for _, m in blocks):
        raise ValueError("gate_values: no forward pass has run yet; call model(x) first.")
    return OrderedDict((name, to_numpy(m.gate_values)) for name, m in blocks
                       if m.gate_values is not None)
