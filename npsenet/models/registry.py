"""Models by name: factories register themselves, ``build_model`` finds them.

    @register_model
    def tiny_resnet(num_classes=10):
        \"\"\"A one-block-per-stage ResNet.\"\"\"
        return ...

    model = build_model("tiny_resnet", num_classes=5)
    model_names()                                  # ("se_resnet20", ..., "tiny_resnet")

A factory is a function of keyword arguments that returns a model whose ``name`` is the
registered name and whose ``options`` rebuild it: ``build_model(m.name, **m.options)``.
A new family is one module whose factories carry ``@register_model``, imported by
``npsenet/models/__init__.py``.

What the commands need to know before they build a model comes from the registration:
:func:`model_info` gives the default number of classes (the factory's ``num_classes``
default), the input size (``input_size=``; by default 224 for 1000 classes and 32 for
CIFAR's 10), whether the model takes SE options (its factory has a ``reduction``
argument) and its plain twin, the same network without SE (``plain_twin=``; by default
the name without its ``se_`` prefix, when that is registered).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass

_FACTORIES = {}  # name -> factory, in registration order
_EXTRAS = {}     # name -> {"input_size": ..., "plain_twin": ...} given at registration


@dataclass(frozen=True)
class ModelInfo:
    """What is known of a registered model without building it (see :func:`model_info`)."""

    name: str
    num_classes: int
    input_size: int
    takes_se_options: bool
    plain_twin: str | None


def register_model(factory=None, *, name=None, input_size=None, plain_twin=None):
    """Register ``factory`` under ``name`` (default: the function's name); returns it.

    Use as ``@register_model`` or ``@register_model(name="...", input_size=299)``. A name
    registers once. ``input_size``: the height and width the model is meant for (default
    224 when the factory's ``num_classes`` defaults to 1000, else 32). ``plain_twin``: the
    registered name of the same network without SE (default: the name without ``se_``).
    """
    def register(fn):
        key = fn.__name__ if name is None else name
        if key in _FACTORIES:
            raise ValueError(f"register_model: the model name {key!r} is already registered "
                             f"(by {_FACTORIES[key].__module__}.{_FACTORIES[key].__qualname__});"
                             " choose another name.")
        _FACTORIES[key] = fn
        _EXTRAS[key] = {"input_size": input_size, "plain_twin": plain_twin}
        return fn

    return register if factory is None else register(factory)


def model_info(name):
    """The :class:`ModelInfo` of a registered model: default classes and input size,
    whether it takes SE options, and the name of its plain twin (or None)."""
    params = inspect.signature(model_factory(name)).parameters
    num_classes = params["num_classes"].default if "num_classes" in params else 1000
    extras = _EXTRAS[name]
    input_size = extras["input_size"] or (224 if num_classes == 1000 else 32)
    takes_se = "reduction" in params
    twin = extras["plain_twin"]
    if twin is None and takes_se and name.startswith("se_") and name[3:] in _FACTORIES:
        twin = name[3:]
    return ModelInfo(name, num_classes, input_size, takes_se, twin)


def model_names():
    """Every registered model name, in registration order (a tuple)."""
    return tuple(_FACTORIES)


def model_factory(name):
    """The factory registered as ``name``; a ValueError lists the names if there is none."""
    if name not in _FACTORIES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(_FACTORIES)}.")
    return _FACTORIES[name]


def build_model(name, **options):
    """Build a model by name, e.g. ``build_model("se_resnet20", placement="pre")``.

    ``options`` are the factory's arguments; ``build_model(m.name, **m.options)`` rebuilds
    a model ``m`` (with fresh weights). Options the factory does not take raise a
    ValueError before anything is built.
    """
    factory = model_factory(name)
    try:
        inspect.signature(factory).bind(**options)
    except TypeError as exc:
        hint = "" if model_info(name).takes_se_options else " (SE options need an SE model)"
        raise ValueError(f"{name}: {exc}{hint}.") from None
    check_options(name, options)
    return factory(**options)


# the type and range of each option a factory takes (a checkpoint's header is checked
# against these before its model is built: num_classes = 20,000,000 fails here, at once)
MAX_CLASSES = 100_000
OPTION_RANGES = {
    "num_classes": (int, 1, MAX_CLASSES),
    "reduction": (int, 1, 4096),
    "divisor": (int, 1, 1024),
    "drop_rate": (float, 0.0, 0.999),
    "bias": (bool, None, None),
    "no_squeeze": (bool, None, None),
    "squeeze": (str, None, None),
    "gate": (str, None, None),
    "placement": (str, None, None),
    "se_stages": (list, 1, 16),          # stage numbers from 1 to 16 (the factory narrows it)
}


def check_options(name, options):
    """Raise a one-line ValueError unless every option of ``options`` is one that
    :data:`OPTION_RANGES` knows, of its type and in its range (``num_classes`` from 1 to
    100,000, ``reduction`` from 1 to 4096, ...), or a named argument of the factory of
    ``name`` (a model registered outside npsenet checks its own). The factory checks the
    rest (the choices of ``squeeze``, ``gate``, ``placement``; which stages exist)."""
    if not isinstance(options, dict):
        raise ValueError(f"{name}: the options must be a dict of name -> value, got "
                         f"{type(options).__name__}.")
    named = [p.name for p in inspect.signature(model_factory(name)).parameters.values()
             if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    for key, value in options.items():
        if key not in OPTION_RANGES and key in named:
            continue   # an argument of a factory registered elsewhere: it checks it itself
        if key not in OPTION_RANGES:
            raise ValueError(f"{name}: unknown option {key!r}; the options npsenet's models "
                             f"take are {', '.join(OPTION_RANGES)}.")
        kind, low, high = OPTION_RANGES[key]
        if kind is list:
            if value is None:
                continue
            ok = (isinstance(value, (list, tuple)) and len(value) <= high
                  and all(isinstance(v, int) and not isinstance(v, bool) and low <= v <= high
                          for v in value))
            want = f"a list of stage numbers from {low} to {high}"
        elif kind is bool:
            ok, want = isinstance(value, bool), "true or false"
        elif kind is str:
            ok, want = isinstance(value, str) and len(value) <= 64, "a short name"
        elif kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
            want = f"an integer from {low:,} to {high:,}"
        else:
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
                  and low <= value <= high)
            want = f"a number from {low} to {high}"
        if not ok:
            shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
            raise ValueError(f"{name}: option {key} must be {want}, got {shown}.")
