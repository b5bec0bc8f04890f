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
"""
from __future__ import annotations

import inspect

_FACTORIES = {}  # name -> factory, in registration order


def register_model(factory=None, *, name=None):
    """Register ``factory`` under ``name`` (default: the function's name); returns it.

    Use as ``@register_model`` or ``@register_model(name="...")``. A name registers once.
    """
    def register(fn):
        key = fn.__name__ if name is None else name
        if key in _FACTORIES:
            raise ValueError(f"register_model: the model name {key!r} is already registered "
                             f"(by {_FACTORIES[key].__module__}.{_FACTORIES[key].__qualname__});"
                             " choose another name.")
        _FACTORIES[key] = fn
        return fn

    return register if factory is None else register(factory)


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
        hint = " (SE options need an se_ model)" if not name.startswith("se_") else ""
        raise ValueError(f"{name}: {exc}{hint}.") from None
    return factory(**options)
