"""A student's workspace: writing its files, and loading them back.

:func:`new_workspace` writes one Python file per exercise (:data:`~.catalog.EXERCISES`)
and a README.md. Each file is assembled from the project's own code, the single source of
the solutions: the given functions and constants are copied from the module they live in
(their source lines, found with ``ast``); each function to do keeps its signature and gets
the exercise's stub docstring and ``raise NotImplementedError``; ``solutions=True`` copies
the project's function instead. Nothing here holds a second copy of a solution.
"""
from __future__ import annotations

import ast
import importlib.util
import inspect
import sys
import textwrap
from functools import lru_cache
from pathlib import Path

from .catalog import EXERCISES

README = "README.md"


@lru_cache(maxsize=None)
def _parsed(module):
    source = inspect.getsource(module)
    return source.splitlines(), ast.parse(source)


def _node(module, name):
    """The top-level function or assignment that defines ``name`` in ``module``."""
    lines, tree = _parsed(module)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return node
    raise LookupError(f"{module.__name__} defines no {name!r} at its top level.")


def source_of(module, name):
    """The source lines of ``name`` in ``module``, as written there (comments included)."""
    lines, _ = _parsed(module)
    node = _node(module, name)
    return "\n".join(lines[node.lineno - 1:node.end_lineno])


def stub_of(module, name, docstring):
    """``name``'s signature with ``docstring`` and ``raise NotImplementedError``."""
    lines, _ = _parsed(module)
    node = _node(module, name)
    body = node.body[0]
    has_docstring = (isinstance(body, ast.Expr) and isinstance(body.value, ast.Constant)
                     and isinstance(body.value.value, str))
    first_body_line = body.lineno if has_docstring else node.body[0].lineno
    header = "\n".join(lines[node.lineno - 1:first_body_line - 1])
    doc = textwrap.indent(f'"""{docstring}\n"""', "    ")
    return (f"{header}\n{doc}\n"
            f'    raise NotImplementedError("{name}: not done yet (see its docstring)")')


def render(exercise, solutions=False):
    """The text of ``exercise``'s file: the reference solutions filled in with ``solutions``,
    stubs otherwise."""
    number = EXERCISES.index(exercise) + 1
    head = [f"Exercise {number} of {len(EXERCISES)} · {exercise.name}: {exercise.title}", "",
            exercise.intro, "",
            f"Check it: npsenet exercise check . {exercise.name}    (from this folder)"]
    if solutions:
        head += ["", "This copy holds the reference solution (npsenet exercise new --solutions)."]
    text = '"""' + "\n".join(head) + '\n"""\nfrom __future__ import annotations\n'
    if exercise.imports:
        text += "\n" + "\n".join(exercise.imports) + "\n"
    previous = None
    for name in exercise.items:
        if name in exercise.todo and not solutions:
            item = stub_of(exercise.source, name, exercise.todo[name])
        else:
            item = source_of(exercise.source, name)
        if _is_block(item):
            text += "\n\n"
        elif previous is None or _is_block(previous):
            text += "\n"                  # consecutive constants stay together
        text += item + "\n"
        previous = item
    return text + exercise.epilogue


def _is_block(text):
    return text.lstrip().startswith(("def ", "class "))


def readme_text(solutions=False):
    """The workspace's README: the order, what each exercise teaches, how to check."""
    lines = ["# npsenet exercises: the backward passes of an SE-ResNet", "",
             "Each file holds the forward pass of a layer (given) and its backward pass "
             "as a stub: replace the `raise NotImplementedError(...)` with your code. The "
             "docstrings give the shapes and what to derive; notebooks 01-05 of npsenet "
             "derive each step.", ""]
    if solutions:
        lines += ["**This workspace holds the reference solutions** "
                  "(`npsenet exercise new --solutions`).", ""]
    lines += ["Work through them in this order:", "",
              "| # | file | exercise | what it teaches |", "|---|---|---|---|"]
    for i, e in enumerate(EXERCISES, 1):
        lines.append(f"| {i} | `{e.filename}` | {e.title} | {e.teaches} |")
    lines += ["", "## Checking your work", "",
              "    npsenet exercise check .                # every exercise",
              "    npsenet exercise check . linear conv    # some of them", "",
              "The grader runs each exercise in its own process (an endless loop or a crash "
              "is reported, and it goes on), checks every gradient against numerical "
              "derivatives and the reference on random shapes with a random upstream "
              "gradient, checks that `dout` is left unchanged and that shapes and dtypes are "
              "kept, and prints a table: pass, FAIL or not done yet, and the worst relative "
              "error. For a failure it names the mistake when it recognises it (a forgotten "
              "1/(H W), a transposed weight gradient, a missing path, gradients in the wrong "
              "order, ...) and says what to check.", "",
              "The composite exercises (7, 9, 10) import the plain path's pairs "
              "(`npsenet.nn.functional`) so that each stands on its own; the capstone (11) "
              "runs SE-ResNet-20 on your pairs of exercises 1-6 and 8 "
              "(`npsenet.exercise.student_path`) and trains it for a few epochs "
              "(`python ex11_capstone.py`, or the grader).", ""]
    return "\n".join(lines)


def new_workspace(folder, solutions=False, overwrite=False):
    """Write a workspace into ``folder`` (created if needed): every exercise's file and a
    README.md. Existing exercise files are kept unless ``overwrite`` (a FileExistsError
    names them). Returns the paths written."""
    folder = Path(folder)
    targets = [folder / e.filename for e in EXERCISES] + [folder / README]
    existing = [p.name for p in targets if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{folder} already holds {', '.join(existing[:3])}"
                              f"{' ...' if len(existing) > 3 else ''}; choose a new folder, "
                              "or pass --force to overwrite them.")
    folder.mkdir(parents=True, exist_ok=True)
    for exercise in EXERCISES:
        (folder / exercise.filename).write_text(render(exercise, solutions), encoding="utf-8")
    (folder / README).write_text(readme_text(solutions), encoding="utf-8")
    return targets


def load_module(path):
    """Import the Python file ``path`` as a module named after it (its folder goes on
    sys.path, so the workspace's files can import one another)."""
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; npsenet exercise new writes the "
                                "workspace's files.")
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module
