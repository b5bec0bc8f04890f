"""The documentation's cheap invariants, checked without building it (no mkdocs needed):
every ``::: target`` of the API pages names an importable object, every page in the nav
exists, and the API pages cover the public names of ``npsenet.nn`` and every module of
the two code paths."""
from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
API_PAGES = sorted(DOCS.glob("api/*.md")) + [DOCS / "fast_path.md"]
TARGET = re.compile(r"^:::\s+(\S+)", flags=re.MULTILINE)


def _targets(page):
    return TARGET.findall(page.read_text(encoding="utf-8"))


def _resolve(path):
    """The object a dotted path names: the longest importable module, then attributes."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name)
        return obj
    raise ModuleNotFoundError(path)


@pytest.mark.parametrize("page", API_PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_every_api_target_resolves(page):
    for target in _targets(page):
        try:
            _resolve(target)
        except (ImportError, AttributeError) as exc:
            pytest.fail(f"{page.relative_to(REPO)}: '::: {target}' does not resolve ({exc})")


def test_every_nav_entry_exists():
    nav = (REPO / "mkdocs.yml").read_text(encoding="utf-8").split("\nnav:", 1)[1]
    nav = re.split(r"\n\S", nav, maxsplit=1)[0]            # up to the next top-level key
    entries = re.findall(r"^\s*- (?:[^\n:]+: )?(\S+\.(?:md|ipynb))\s*$", nav, flags=re.MULTILINE)
    assert len(entries) > 10
    for entry in entries:
        # the notebooks hook serves notebooks/*.ipynb of the repository as docs pages
        path = REPO / entry if entry.startswith("notebooks/") else DOCS / entry
        assert path.exists(), f"mkdocs.yml nav: {entry} does not exist"


def test_the_layers_page_documents_every_public_name_of_npsenet_nn():
    import npsenet.nn
    targets = set(_targets(DOCS / "api" / "nn.md"))
    for name in npsenet.nn.__all__:
        if name in ("fast", "functional"):          # the two paths have pages of their own
            continue
        assert f"npsenet.nn.{name}" in targets, f"docs/api/nn.md lacks '::: npsenet.nn.{name}'"
    assert "npsenet.nn.switch.fast_path" in targets           # ns.nn.fast(flag)
    internal = [t for t in targets if t.startswith(("npsenet.nn.module.", "npsenet.nn.fast"))]
    assert internal == []


@pytest.mark.parametrize("package, page", [("functional", "api/functional.md"),
                                           ("fast", "fast_path.md")])
def test_each_path_page_documents_every_module_of_its_package(package, page):
    targets = set(_targets(DOCS / page))
    for module in sorted((REPO / "npsenet" / "nn" / package).glob("*.py")):
        if module.stem != "__init__":
            assert f"npsenet.nn.{package}.{module.stem}" in targets, (page, module.name)
