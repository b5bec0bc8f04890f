"""``Dropout``: inverted dropout before the classifier (SENet-154 drops 0.2 of its pooled
features, Hu et al., TPAMI 2019, appendix "Details of SENet-154"; the Inception and MobileNet
heads use it too). The pair it calls is ``functional/dropout.py``.
"""
from __future__ import annotations

import numbers

import numpy as np

from .. import init
from ..backend import device_of, to_device
from ._checks import check_float_array
from .module import Module
from .switch import active_path


class Dropout(Module):
    """Inverted dropout, as ``torch.nn.Dropout(p)``.

    In training mode with p > 0, each element is kept with probability 1 - p:

        y  = x ⊙ m / (1 - p),      m ~ Bernoulli(1 - p) elementwise
        dx = dy ⊙ m / (1 - p)

    so E[y] = x. In eval mode (``model.eval()``) or with p = 0 it is the identity:
    forward returns x itself and backward returns dy itself (no copy; like every layer,
    the layers before it never write into the gradient they receive).

    Args:
        p: the probability of dropping an element, 0 <= p < 1.
        seed: the seed of the layer's own ``np.random.Generator``; ``None`` draws one from
            ``npsenet.init.rng()``, so ``ns.manual_seed(...)`` before building the model
            makes its masks reproducible.

    The mask is drawn on the CPU in x's dtype and moved to x's device, so the CPU and the
    GPU drop the same elements. Shapes: any; y and dx have x's shape. After a training
    forward, ``mask`` holds m (1 kept, 0 dropped).
    """

    def __init__(self, p=0.5, seed=None):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p < 1:
            raise ValueError(f"Dropout: p must be a probability in [0, 1), got {p!r}; "
                             "p = 0 keeps every element.")
        self.p = float(p)
        if seed is None:
            seed = int(init.rng().integers(2**63))
        self.generator = np.random.default_rng(seed)
        self.mask = None
        self.cache = None

    def extra_repr(self):
        return f"p={self.p}"

    def forward(self, x):
        check_float_array(x, f"Dropout({self.extra_repr()})")
        if not self.training or self.p == 0:
            self.mask = None
            return self.keep(None, None, x)
        keep = self.generator.random(x.shape) >= self.p         # P(keep) = 1 - p
        self.mask = to_device(keep.astype(x.dtype), device_of(x))
        path = active_path()
        y, cache = path.dropout_forward(x, self.mask, self.p)
        return self.keep(path, cache, y)

    def backward(self, dout):
        path, cache = self.kept(dout)
        if path is None:                 # the identity (eval mode or p = 0)
            return dout
        return path.dropout_backward(dout, cache)
