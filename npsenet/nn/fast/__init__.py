"""The fast path: the plain path's forward/backward pairs (``npsenet.nn.functional``),
rearranged for speed, behind one switch. ``docs/fast_path.md`` gives the design notes
and the measurements behind each choice.

    ns.nn.use_fast(False)              # every layer on the plain path from here on
    with ns.nn.fast(False):            # ... or only inside the block
        loss = loss_fn(model(x), y)

Files: ``ops.py`` (the pairs the layers call), ``conv.py`` (which convolution algorithm
runs), ``conv_strips.py``, ``conv_patches.py`` and ``conv_depthwise.py`` (the
algorithms; the last for one filter per channel, MobileNet's and ShuffleNet's), ``elementwise.py``
(ReLU, batch norm, squeeze and scale), ``layout.py`` (channels-last memory and the
per-channel sums and broadcasts that are fast in it), ``workspace.py`` (reused memory).
Nothing outside this folder handles memory layouts or reused buffers.

This package is also callable: ``ns.nn.fast(flag)`` is the context manager
:class:`npsenet.nn.switch.fast_path`.
"""
import sys
import types

from ..switch import fast_path, is_fast, use_fast
from .workspace import workspace

__all__ = ["use_fast", "is_fast", "fast_path", "workspace"]


class _CallablePackage(types.ModuleType):
    """Lets ``ns.nn.fast(False)`` be the context manager while ``ns.nn.fast`` stays this
    package (``ns.nn.fast.workspace``)."""

    def __call__(self, flag=True):
        return fast_path(flag)


sys.modules[__name__].__class__ = _CallablePackage
