"""The exercise notebooks' student versions, by nbgrader's convention.

In ``notebooks/exercises/`` every solution sits inside its code cell between the lines
``### BEGIN SOLUTION`` and ``### END SOLUTION``, and the solution cells carry nbgrader's
metadata, so a teacher using nbgrader releases them as they are (``nbgrader
generate_assignment``). Without nbgrader, :func:`student_notebook` (or ``npsenet exercise
strip``) does the same replacement: each region becomes ``raise NotImplementedError()``
at the region's indentation, and the cells' outputs are cleared.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = "raise NotImplementedError()"


def strip_solutions(source):
    """``source`` (a code cell's text) with every solution region replaced by the stub."""
    out, inside = [], False
    for line in source.splitlines():
        marker = line.strip()
        if marker == BEGIN:
            if inside:
                raise ValueError(f"a {BEGIN!r} inside another solution region")
            inside = True
            indent = line[:len(line) - len(line.lstrip())]
            out.append(indent + "# YOUR CODE HERE")
            out.append(indent + STUB)
        elif marker == END:
            if not inside:
                raise ValueError(f"a {END!r} without its {BEGIN!r}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"a {BEGIN!r} without its {END!r}")
    return "\n".join(out)


def _cell_source(cell):
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def student_notebook(notebook):
    """The student version of ``notebook`` (a dict in nbformat 4's JSON layout): solution
    regions replaced, outputs and execution counts cleared. The input is not changed."""
    nb = copy.deepcopy(notebook)
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        cell["source"] = strip_solutions(_cell_source(cell))
        cell["outputs"], cell["execution_count"] = [], None
    return nb


def write_student_notebooks(paths, out_dir):
    """Write the student version of each notebook in ``paths`` into ``out_dir``, under the
    same file names; returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in map(Path, paths):
        notebook = json.loads(path.read_text(encoding="utf-8"))
        target = out_dir / path.name
        if target.resolve() == path.resolve():
            raise ValueError(f"{target} is the notebook itself; choose another --out folder.")
        target.write_text(json.dumps(student_notebook(notebook), indent=1, ensure_ascii=False)
                          + "\n", encoding="utf-8")
        written.append(target)
    return written
