"""A path object made of a student's pairs: what the capstone runs SE-ResNet-20 on.

The layers of ``npsenet.nn`` call ``active_path().<pair>`` (``npsenet/nn/switch.py``);
inside ``ns.nn.switch.using_path(path)`` that is ``path``. :func:`pairs_with` makes such an
object from the plain path's pairs with some replaced, and :func:`student_path` replaces
them with those of a workspace's pair exercises:

    path = student_path("ws")
    with ns.nn.switch.using_path(path):
        loss = loss_fn(model(x), y)       # every layer on the student's pairs
        model.backward(loss_fn.backward())
"""
from __future__ import annotations

import types
from pathlib import Path

from ..nn import functional


def pairs_with(functions):
    """A module holding every name of ``npsenet.nn.functional``, with ``functions``
    (name -> function) in place of the plain path's."""
    unknown = sorted(set(functions) - set(functional.__all__))
    if unknown:
        raise ValueError(f"pairs_with: {unknown} are not names of npsenet.nn.functional's "
                         "pairs.")
    path = types.ModuleType("npsenet_student_path", "The plain path's pairs, some replaced.")
    for name in functional.__all__:
        setattr(path, name, functions.get(name, getattr(functional, name)))
    path.replaced = sorted(functions)
    return path


def pair_exercises():
    """The exercises whose functions are the plain path's (the ones a model runs on)."""
    from .catalog import EXERCISES
    return [e for e in EXERCISES if e.source.__name__.startswith(functional.__name__ + ".")]


def student_path(workspace):
    """The plain path with the pairs (forward and backward) of ``workspace``'s exercise files
    in their place; a FileNotFoundError names a file that is missing."""
    from .workspace import load_module
    workspace = Path(workspace)
    functions = {}
    for exercise in pair_exercises():
        file = workspace / exercise.filename
        if not file.is_file():
            raise FileNotFoundError(f"{file} is missing; the capstone runs on the files of "
                                    "exercises 1-6 and 8 (npsenet exercise new writes them).")
        module = load_module(file)
        for name in exercise.items:
            if name in functional.__all__ and hasattr(module, name):
                functions[name] = getattr(module, name)
    return pairs_with(functions)
