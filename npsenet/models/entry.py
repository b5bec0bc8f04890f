"""The check at a model's entry: a bad batch is refused before any layer runs.

Every model's ``forward`` starts with :func:`check_model_input`, so a batch of the wrong
rank, channel count, dtype or device, or one too small for the network, gives one line
that names the model, what came and what it takes, and nothing in the model changes.

How small is too small depends on the network: each convolution and pooling needs a map
at least as large as its window, and in training mode each BatchNorm needs more than one
value per channel (batch * H * W > 1 at its input). In training mode, where a step moves
the running statistics, the model learns the map sizes its layers see for an input size
by running itself once on a zero image of that size (batch 1, evaluation mode, under
``no_grad``; the model is restored afterwards) and remembers them, so the check costs one
small forward per new input size. In evaluation mode, which updates no statistics, the
size is left to the layers: one that cannot take its input raises, and the model is
restored as after any failed call (``npsenet.nn.Module``). :func:`smallest_input`
searches the sizes for the smallest square image a model takes.

    model = ns.models.se_resnet20()
    smallest_input(model, batch=1)     # 5: one image needs its deepest maps (4x smaller) 2x2
    smallest_input(model, batch=2)     # 1: two 1x1 maps are two values per channel
"""
from __future__ import annotations

import threading

from ..backend import device_of
from ..nn import Conv2d, no_grad
from ..nn._checks import check_input, dtype_kind
from ..nn.norm import record_batchnorm_inputs

_state = threading.local()       # .tracing: inside a model's own size trace
_LARGEST = 4096                  # sides searched by smallest_input


def model_name(model):
    """The registered name (``se_resnet20``), or the class name of a model built directly."""
    return getattr(model, "name", None) or type(model).__name__


def _first_conv(model):
    return next((m for m in model.modules() if isinstance(m, Conv2d)), None)


def check_model_input(model, x):
    """Refuse ``x`` unless ``model`` can run it: a 4-D float array (N, C, H, W) with the
    model's channels, dtype and device, and, in training mode, large enough for every
    layer and giving every BatchNorm more than one value per channel. Raises ValueError."""
    if getattr(_state, "tracing", False):
        return
    name = model_name(model)
    conv = _first_conv(model)
    channels = conv.in_channels if conv is not None else None
    dtype = conv.weight.dtype if conv is not None else None
    check_input(x, name, 4, f"(N, {channels or 'C'}, H, W)", channels, dtype=dtype)
    if conv is not None and device_of(x) != device_of(conv.weight.data):
        where = device_of(conv.weight.data)
        raise ValueError(f"{name}: the input is on the {device_of(x)} but the model is on the "
                         f"{where}; move one of them, e.g. ns.backend.to_device(x, {where!r}) or "
                         f"model.to({device_of(x)!r}).")
    if not model.training:
        return      # no statistics move: the layers check the size (module docstring)
    n, _, h, w = x.shape
    smallest, error = map_sizes(model, h, w)
    if error is not None:
        side = smallest_input(model, batch=n)
        raise ValueError(f"{name}: a {tuple(x.shape)} batch is too small for this network "
                         f"({error}); it takes images of at least {_side(side)}. "
                         "Resize or pad the images.")
    if model.training and smallest is not None and n * smallest[0] * smallest[1] < 2:
        side = smallest_input(model, batch=n)
        raise ValueError(f"{name}: a {tuple(x.shape)} batch gives its deepest BatchNorm one "
                         f"value per channel ({smallest[0]}x{smallest[1]} maps, batch {n}); "
                         "training needs more than one. Use a batch of at least 2, images "
                         f"of at least {_side(side)}, or call model.eval().")


def _side(side):
    return f"{side}x{side}" if side is not None else f"{_LARGEST}x{_LARGEST}"


def map_sizes(model, h, w):
    """``(smallest, error)`` for an (N, C, h, w) input: ``smallest`` is the smallest
    (H, W) a BatchNorm of ``model`` sees (None without BatchNorm), ``error`` the first
    line of the error the network raises on that size (None when it runs). Remembered
    per size on the model."""
    sizes = model.__dict__.get("_entry_map_sizes")
    if sizes is None:
        sizes = {}
        object.__setattr__(model, "_entry_map_sizes", sizes)
    if (h, w) not in sizes:
        sizes[(h, w)] = _trace(model, h, w)
    return sizes[(h, w)]


def _trace(model, h, w):
    conv = _first_conv(model)
    xp = model.xp
    x = xp.zeros((1, conv.in_channels, h, w), dtype=conv.weight.dtype)
    snapshot = model._snapshot()
    _state.tracing = True
    try:
        with no_grad(), record_batchnorm_inputs() as seen:
            model.eval()
            model.forward(x)
    except ValueError as e:
        return None, _clause(str(e)) or type(e).__name__
    finally:
        _state.tracing = False
        model._restore(snapshot)
    smallest = min(seen, key=lambda s: s[0] * s[1]) if seen else None
    return smallest, None


def _clause(message):
    """The first clause of a layer's error, to quote inside the model's own line."""
    first = message.splitlines()[0] if message else ""
    return first.split("; ")[0].rstrip(". ")


def smallest_input(model, batch=None):
    """The smallest side s of a square (batch, C, s, s) input ``model`` runs: in
    evaluation mode for ``batch=None``, else in training mode with that batch size
    (every BatchNorm needs batch * H * W > 1). None when no side up to 4096 works."""

    def works(s):
        smallest, error = map_sizes(model, s, s)
        if error is not None:
            return False
        return batch is None or smallest is None or batch * smallest[0] * smallest[1] >= 2

    high = 1
    while not works(high):
        if high >= _LARGEST:
            return None
        high = min(2 * high, _LARGEST)
    low = high // 2          # works(low) is False (or low is 0)
    while high - low > 1:
        middle = (low + high) // 2
        if works(middle):
            high = middle
        else:
            low = middle
    return high
