"""Weights from the PyTorch world: timm's and senet.pytorch's state_dicts, ``.safetensors`` in
and out.

    model = ns.models.se_resnet50()
    ns.io.load_pretrained(model, "seresnet50.safetensors")          # timm's file, source "auto"
    ns.io.save_safetensors("mine.safetensors", model)                # PyTorch loads it as it is

A ``.safetensors`` file is an 8-byte header length, a JSON header naming each tensor's dtype,
shape and byte range, then the raw bytes: no pickle, nothing runs when it is read. It is the
format timm publishes its weights in; :func:`load_safetensors` reads it with
``safetensors.numpy`` (``pip install "safetensors>=0.4"``, the ``weights`` extra), so PyTorch
is not needed.

The key maps (``source`` of :func:`convert_state_dict` and :func:`load_pretrained`), from the
other side's names to npsenet's:

    timm           (seresnet50, seresnext50_32x4d): the same names as npsenet's; the SE's
                   ``se.fc1`` / ``se.fc2`` are 1x1 convolutions, weights (C', C, 1, 1)
                   reshaped to the Linear layers' (C', C); biases as they are
    timm_legacy    (legacy_senet154): ``layer0.conv1 .. layer0.bn3`` -> ``conv1 .. bn3``,
                   ``layerN.i.se_module.fc1/fc2`` -> ``layerN.i.se.fc1/fc2`` (reshaped as
                   above), ``last_linear`` -> ``fc``; everything else as it is
    senet.pytorch  (moskomule/senet.pytorch: se_resnet20 .. se_resnet152):
                   ``se.fc.0`` -> ``se.fc1``, ``se.fc.2`` -> ``se.fc2`` (Linear layers
                   without bias: load them into a model built with ``bias=False``)
    npsenet        the model's own keys (what :func:`save_safetensors` writes)

``num_batches_tracked`` (an int64 scalar per BatchNorm) is kept both ways. Every key and
shape is checked before anything is written; a state that does not fit raises a one-line
ValueError naming a few missing and unexpected keys, and leaves the model as it was. A key
with no counterpart is dropped only when its array is empty (it carries no weights); the
keys dropped are named in one warning. None of the three sources has such keys today.
"""
from __future__ import annotations

import json
import os
import re
import warnings
from collections import OrderedDict

import numpy as np

from .backend import to_numpy

SOURCES = ("timm", "timm_legacy", "senet.pytorch", "npsenet")

# (pattern, replacement) applied in order to each key of the source's state_dict
KEY_MAPS = {
    "timm": (),
    "timm_legacy": ((r"^layer0\.((?:conv|bn)[123])\.", r"\1."),
                    (r"\.se_module\.", ".se."),
                    (r"^last_linear\.", "fc.")),
    "senet.pytorch": ((r"\.se\.fc\.0\.", ".se.fc1."),
                      (r"\.se\.fc\.2\.", ".se.fc2.")),
    "npsenet": (),
}
SE_WEIGHT = re.compile(r"(^|\.)se\.fc[12]\.weight$")
SAFETENSORS_HINT = ('pip install "safetensors>=0.4" (or pip install "npsenet[weights]")')


def _safetensors(what):
    """``import safetensors.numpy``, with an error that says how to install it."""
    try:
        import safetensors
        import safetensors.numpy
    except ImportError:
        raise RuntimeError(f"{what} needs the safetensors package: {SAFETENSORS_HINT}.") from None
    return safetensors


# -- files ---------------------------------------------------------------------------------------

def load_safetensors(path):
    """Every tensor of a ``.safetensors`` file as NumPy arrays, in the file's order.

    Args:
        path: the file (timm's ``model.safetensors``, one written by :func:`save_safetensors`
            or by ``safetensors.torch.save_file``).

    Returns:
        ``OrderedDict[str, np.ndarray]``.

    The header is validated by the safetensors library before any tensor is read: its length
    is bounded (100 MB), it must be JSON, and the byte ranges it names must cover the rest of
    the file exactly, so a truncated or padded file is refused. Each failure (no file, not a
    safetensors file, a damaged header, a dtype NumPy lacks such as bfloat16) is a one-line
    error naming the file.
    """
    safetensors = _safetensors("load_safetensors")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_safetensors: no file at {path}; check the path (timm's "
                                "weights are the model.safetensors file of the model's hub page).")
    try:
        with safetensors.safe_open(path, framework="np") as f:
            return OrderedDict((key, f.get_tensor(key)) for key in f.keys())
    except safetensors.SafetensorError as exc:
        raise ValueError(f"load_safetensors: {path} is not a readable .safetensors file ({exc}); "
                         "the file may be truncated or of another format (a PyTorch .pth/.bin "
                         "pickle must be converted first, e.g. with safetensors.torch.save_file)."
                         ) from None
    except TypeError as exc:
        raise ValueError(f"load_safetensors: {path} holds a tensor NumPy cannot represent "
                         f"({exc}); convert it to float32 first, e.g. in PyTorch: "
                         "save_file({k: v.float() for k, v in load_file(path).items()}, path)."
                         ) from None


def safetensors_metadata(path):
    """The string metadata of a ``.safetensors`` file's header (``{}`` if it has none); for a
    file from :func:`save_safetensors`, ``format``, ``npsenet_model`` and ``npsenet_options``."""
    safetensors = _safetensors("safetensors_metadata")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"safetensors_metadata: no file at {path}; check the path.")
    try:
        with safetensors.safe_open(path, framework="np") as f:
            return dict(f.metadata() or {})
    except safetensors.SafetensorError as exc:
        raise ValueError(f"safetensors_metadata: {path} is not a readable .safetensors file "
                         f"({exc}); the file may be truncated or of another format.") from None


def save_safetensors(path, model):
    """Write ``model``'s state_dict to a ``.safetensors`` file that PyTorch loads as it is.

        ns.io.save_safetensors("se_resnet20.safetensors", model)
        # in PyTorch: twin.load_state_dict(safetensors.torch.load_file(path), strict=True)

    Args:
        path: the file to write (replaced if it exists), atomically
            (:func:`npsenet.io.atomic_write`).
        model: any Module; the arrays are the state_dict's (NumPy, C-contiguous, each in its
            own dtype: float32 or float64 weights, int64 ``num_batches_tracked``).

    The header's metadata: ``{"format": "pt", "npsenet_model": model.name, "npsenet_options":
    JSON of model.options}`` (``format: pt`` is what timm's and transformers' loaders look for;
    the two npsenet entries are empty strings for a model not built by ``ns.models``).
    """
    from .io import atomic_write

    safetensors = _safetensors("save_safetensors")
    name, options = getattr(model, "name", None), getattr(model, "options", None)
    try:
        options_json = "" if options is None else json.dumps(options, sort_keys=True)
    except TypeError as exc:
        raise ValueError(f"save_safetensors: the model's options must be JSON-serialisable "
                         f"({exc}); convert arrays to lists and NumPy numbers to int/float."
                         ) from None
    tensors = {key: np.array(to_numpy(value), order="C", copy=True)     # 0-d stays 0-d
               for key, value in model.state_dict().items()}
    metadata = {"format": "pt", "npsenet_model": name or "", "npsenet_options": options_json}
    data = safetensors.numpy.save(tensors, metadata=metadata)
    with atomic_write(path) as f:
        f.write(data)


# -- key maps ------------------------------------------------------------------------------------

def detect_source(state):
    """The ``source`` whose key layout ``state`` has: ``"timm_legacy"`` (``layer0.*``,
    ``se_module``, ``last_linear``), ``"senet.pytorch"`` (``se.fc.0``), ``"timm"`` (SE weights
    as 1x1 convolutions) or ``"npsenet"`` (anything else: timm's and npsenet's keys are the
    same, and a model without SE reads both alike)."""
    keys = list(state)
    if any(k.startswith(("layer0.", "last_linear.")) or ".se_module." in k for k in keys):
        return "timm_legacy"
    if any(".se.fc.0." in k or ".se.fc.2." in k for k in keys):
        return "senet.pytorch"
    if any(SE_WEIGHT.search(k) and np.ndim(state[k]) == 4 for k in keys):
        return "timm"
    return "npsenet"


def _as_numpy(value):
    """NumPy/CuPy arrays, Python numbers and CPU torch tensors as NumPy arrays."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):   # a torch.Tensor
        value = value.detach().cpu().numpy()
    return np.asarray(to_numpy(value))


def _rename(key, source):
    for pattern, replacement in KEY_MAPS[source]:
        key = re.sub(pattern, replacement, key)
    return key


def _first(keys, count=4):
    """A few keys, and how many more there are."""
    more = f" and {len(keys) - count} more" if len(keys) > count else ""
    return f"{list(keys[:count])}{more}"


def convert_state_dict(state, source, model):
    """``state`` (another library's state_dict) under ``model``'s own keys and shapes.

    Args:
        state: ``{key: array}`` (NumPy arrays, CPU torch tensors), e.g. from
            :func:`load_safetensors`.
        source: one of ``SOURCES`` (the maps are in this module's docstring) or ``"auto"``
            (:func:`detect_source`).
        model: the npsenet model the state is for; only its keys and shapes are read.

    Returns:
        ``OrderedDict`` in ``model.state_dict()``'s order, ready for ``model.load_state_dict``.
        Arrays keep their dtype (``load_state_dict`` casts to the model's).

    Every key and shape is checked first; a mismatch raises a one-line ValueError.
    """
    name = getattr(model, "name", None) or type(model).__name__
    detected = source == "auto"
    if detected:
        source = detect_source(state)
    if source not in SOURCES:
        raise ValueError(f"convert_state_dict: source must be 'auto' or one of {list(SOURCES)}, "
                         f"got {source!r}.")
    how = f"the {source} state_dict" + (" (source detected from its keys; pass source= to "
                                        "choose another)" if detected else "")
    if source == "timm_legacy" and "layer0.conv1.weight" in state \
            and "layer0.conv2.weight" not in state:
        raise ValueError(f"convert_state_dict: {how} has a one-convolution layer0 stem: timm's "
                         "legacy SE-ResNet/SE-ResNeXt (ceil-mode stem pool, stride on the first "
                         "1x1 convolution) have no npsenet counterpart; load timm's seresnet50 "
                         "or seresnext50_32x4d weights (source 'timm') instead.")
    own = model.state_dict()
    mapped, origin, dropped = OrderedDict(), {}, []
    for key, value in state.items():
        new = _rename(key, source)
        value = _as_numpy(value)
        if new not in own and value.size == 0:
            dropped.append(key)
            continue
        if new in mapped:
            raise ValueError(f"convert_state_dict: {how} has both {origin[new]!r} and {key!r}, "
                             f"which map to the same key {new!r}; remove one of them.")
        mapped[new], origin[new] = value, key
    missing = [k for k in own if k not in mapped]
    unexpected = [origin[k] for k in mapped if k not in own]
    if missing or unexpected:
        hint = "Was the model built with the same architecture and options?"
        if source == "senet.pytorch" and any(k.endswith(".bias") and ".se." in k
                                             for k in missing):
            hint = ("senet.pytorch's SE layers have no biases: build the model with bias=False "
                    f"(e.g. ns.models.{name}(bias=False)).")
        parts = []
        if missing:
            parts.append(f"{len(missing)} keys missing (the model has, the state lacks) "
                         f"{_first(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} keys unexpected (the state has, the model lacks) "
                         f"{_first(unexpected)}")
        raise ValueError(f"convert_state_dict: {how} does not fit {name}: {'; '.join(parts)}. "
                         f"{hint}")
    out, wrong = OrderedDict(), []
    for key, target in own.items():
        value = mapped[key]
        want_kind = "f" if np.dtype(target.dtype).kind == "f" else "iu"
        if value.dtype.kind not in want_kind:
            raise ValueError(f"convert_state_dict: {how}: {origin[key]} has dtype {value.dtype}, "
                             f"but {name}'s {key} is {np.dtype(target.dtype)}; weights must be "
                             "floating-point numbers (and num_batches_tracked an integer).")
        shape, want = tuple(value.shape), tuple(target.shape)
        if shape != want and SE_WEIGHT.search(key) and shape == want + (1, 1):
            value = value.reshape(want)                   # a 1x1 convolution's (C', C, 1, 1)
        if tuple(value.shape) != want:
            wrong.append(f"{origin[key]} {shape} vs {want}")
        out[key] = value
    if wrong:
        raise ValueError(f"convert_state_dict: {how} does not fit {name}: {len(wrong)} shapes "
                         f"differ (state vs model) {_first(wrong, 3)}. Was the model built with "
                         "the same num_classes, reduction and divisor?")
    if dropped:
        warnings.warn(f"convert_state_dict: dropped {len(dropped)} empty entries without a "
                      f"counterpart in {name}: {_first(dropped)}.", stacklevel=2)
    return out


def _is_zip(path):
    """Whether ``path`` is a file that starts as a zip archive (an npsenet ``.npz``)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def load_pretrained(model, path_or_state, source="auto"):
    """Load another library's weights into ``model``, in place; returns ``model``.

        model = ns.io.load_pretrained(ns.models.se_resnet50(), "seresnet50.safetensors")
        model = ns.io.load_pretrained(ns.models.se_resnet50(bias=False), senet_pytorch_state,
                                      source="senet.pytorch")

    Args:
        model: the npsenet model (its dtype and device are kept; values are cast to them).
        path_or_state: a ``.safetensors`` file (:func:`load_safetensors`), an npsenet
            checkpoint ``.npz`` (its state, read with every entry checked against ``model``
            first, :func:`npsenet.io.read_state`) or a state_dict (``{key: array}``, NumPy
            arrays or CPU torch tensors).
        source: ``"auto"`` or one of ``SOURCES`` (see :func:`convert_state_dict`).

    Nothing is written unless every key and shape fits (:func:`convert_state_dict`, then
    ``model.load_state_dict(strict=True)``). BatchNorm's running statistics come with the
    weights: call ``model.eval()`` to use them.
    """
    if isinstance(path_or_state, (str, bytes, os.PathLike)):
        path = os.fsdecode(path_or_state)
        if _is_zip(path):   # an npsenet checkpoint: its entries are checked before reading
            from .io import read_state
            model.load_state_dict(read_state(path, model), strict=True)
            return model
        state = load_safetensors(path)
        try:
            converted = convert_state_dict(state, source, model)
        except ValueError as exc:
            raise ValueError(f"load_pretrained: {path}: {exc}") from None
    elif hasattr(path_or_state, "items"):
        converted = convert_state_dict(path_or_state, source, model)
    else:
        raise ValueError(f"load_pretrained: expected a .safetensors path or a state_dict "
                         f"(a mapping of key -> array), got {type(path_or_state).__name__}.")
    model.load_state_dict(converted, strict=True)
    return model


__all__ = ["SOURCES", "convert_state_dict", "detect_source", "load_pretrained",
           "load_safetensors", "safetensors_metadata", "save_safetensors"]
