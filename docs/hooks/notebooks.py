"""mkdocs hook: render the notebooks of ``notebooks/`` as pages under ``notebooks/``.

The notebooks are committed without outputs. ``tests/test_notebooks.py`` executes each
one (quick mode) and writes the executed copy to ``build/notebooks/``; when such a copy
exists and its cells are the committed notebook's cells, the page shows it, outputs and
plots included. Otherwise the page shows the committed notebook without outputs. The
documentation build itself never executes code, so it stays fast (CI runs the tests,
then ``mkdocs build``).
"""
from __future__ import annotations

import json
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

REPO = Path(__file__).resolve().parents[2]
SOURCE_DIR = REPO / "notebooks"
EXECUTED_DIR = REPO / "build" / "notebooks"


def _cell_sources(path):
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return [(c["cell_type"], "".join(c["source"])) for c in cells]


def _best_copy(source):
    """The folder holding ``notebooks/<name>``: ``build/`` when its executed copy is up to
    date with the committed notebook, else the repository itself."""
    executed = EXECUTED_DIR / source.name
    if executed.exists() and _cell_sources(executed) == _cell_sources(source):
        return EXECUTED_DIR.parent
    return REPO


@event_priority(100)  # before mkdocs-jupyter turns .ipynb files into pages
def on_files(files, config):
    for source in sorted(SOURCE_DIR.glob("[0-9][0-9]_*.ipynb")):
        files.append(File(f"notebooks/{source.name}", src_dir=str(_best_copy(source)),
                          dest_dir=config["site_dir"],
                          use_directory_urls=config["use_directory_urls"]))
    return files
