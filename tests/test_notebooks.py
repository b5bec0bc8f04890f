"""The teaching notebooks run top to bottom, headless, in quick mode.

Each notebook is executed with nbclient in ``notebooks/`` (so its relative data paths
resolve), with ``NPSENET_QUICK=1`` (tiny data, one or two epochs) and the Agg backend.
The executed copies, outputs included, are written to ``build/notebooks/``; the
documentation build renders those when they exist (see ``docs/hooks.py``).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"
EXECUTED_DIR = REPO / "build" / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
EXERCISE_DIR = NOTEBOOK_DIR / "exercises"
EXERCISE_NOTEBOOKS = sorted(EXERCISE_DIR.glob("[0-9][0-9]_*_exercise.ipynb"))
TIMEOUT_S = 300


def test_the_notebooks_are_there():
    names = [p.stem[:2] for p in NOTEBOOKS]
    assert names == [f"{i:02d}" for i in range(len(names))] and len(names) >= 6, names


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, monkeypatch):
    monkeypatch.setenv("NPSENET_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    client.execute()
    EXECUTED_DIR.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, EXECUTED_DIR / path.name)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_derives_and_checks(path):
    """A derivation in display math, a check that asserts, and no committed outputs."""
    nb = nbformat.read(path, as_version=4)
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert re.search(r"\$\$.+?\$\$", markdown, flags=re.S), "no display math ($$ ... $$)"
    assert re.search(r"^\s*assert\b", code, flags=re.M), "no assert statement"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, \
                "outputs are committed; run python tools/strip_notebooks.py"


@pytest.mark.notebooks
@pytest.mark.parametrize("path", EXERCISE_NOTEBOOKS, ids=[p.stem for p in EXERCISE_NOTEBOOKS])
def test_exercise_notebook_runs_with_its_solutions(path):
    """The teacher's version (solutions in) runs, and every checking cell passes."""
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=60, kernel_name="python3",
                                     resources={"metadata": {"path": str(EXERCISE_DIR)}})
    client.execute()


@pytest.mark.parametrize("path", EXERCISE_NOTEBOOKS, ids=[p.stem for p in EXERCISE_NOTEBOOKS])
def test_exercise_notebook_follows_nbgrader(path):
    """Solution regions in nbgrader's cells, a checking cell after each, a student version
    without the solutions, and no committed outputs."""
    from npsenet.exercise import student_notebook
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    assert re.search(r"\$\$.+?\$\$", nb.cells[0].source, flags=re.S)
    code = [c for c in nb.cells if c.cell_type == "code"]
    solutions = [i for i, c in enumerate(code) if "### BEGIN SOLUTION" in c.source]
    assert solutions
    for i in solutions:
        assert code[i].metadata["nbgrader"]["solution"] is True
        check = code[i + 1]
        assert "check_function(" in check.source and "assert result.passed" in check.source
        assert check.metadata["nbgrader"]["grade"] is True
    for cell in code:
        assert not cell.outputs and cell.execution_count is None
    student = student_notebook(nb)
    for i in solutions:
        text = student["cells"][nb.cells.index(code[i])]["source"]
        assert "raise NotImplementedError()" in text and "SOLUTION" not in text
    assert len(EXERCISE_NOTEBOOKS) == 5
