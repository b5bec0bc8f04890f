"""The documentation's cheap invariants, checked without building it (no mkdocs needed):
every ``::: target`` of the API pages names an importable object, every page in the nav
exists, and the API pages cover the public names of ``npsenet.nn`` and every module of
the two code paths. The site renders offline: MathJax is served with it and no page loads a
script from another host (checked on a real build where mkdocs is installed)."""
from __future__ import annotations

import importlib
import importlib.util
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


# -- the site renders offline: no script from another host -----------------------------------
VENDOR = DOCS / "javascripts" / "vendor" / "mathjax"
REMOTE_SCRIPT = re.compile(r"<script\b[^>]*\bsrc=[\"']?(?:https?:)?//", re.IGNORECASE)
REMOTE_IMPORT = re.compile(r"\bimport\(\s*[\"'](?:https?:)?//", re.IGNORECASE)


def _remote_scripts(html):
    return REMOTE_SCRIPT.findall(html) + REMOTE_IMPORT.findall(html)


def _offline_hook():
    spec = importlib.util.spec_from_file_location("offline_hook", DOCS / "hooks" / "offline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mkdocs_yml_serves_mathjax_with_the_site():
    config = (REPO / "mkdocs.yml").read_text(encoding="utf-8")
    scripts = re.findall(r"^\s*- (\S+\.m?js)\s*$", config.split("\nextra_javascript:", 1)[1],
                         flags=re.MULTILINE)
    assert "javascripts/vendor/mathjax/tex-mml-chtml.js" in scripts
    assert not [s for s in scripts if "//" in s], scripts
    assert "docs/hooks/offline.py" in config
    # what MathJax loads next to itself: the fonts and the TeX extensions (\boldsymbol)
    assert "Apache License" in (VENDOR / "LICENSE").read_text(encoding="utf-8")
    assert (VENDOR / "output" / "chtml" / "fonts" / "woff-v2" / "MathJax_Main-Regular.woff").exists()
    assert (VENDOR / "input" / "tex" / "extensions" / "boldsymbol.js").exists()


def test_the_offline_hook_drops_the_notebook_pages_cdn_loaders():
    page = """<head><!-- Load mathjax -->
<script src=""> </script>
<!-- MathJax configuration -->
<script type="text/x-mathjax-config">
    init_mathjax = function() { MathJax.Hub.Config({}); }
    </script>
<!-- End of mathjax configuration --><script type="module">
  document.addEventListener("DOMContentLoaded", async () => {
    const diagrams = document.querySelectorAll(".jp-Mermaid > pre.mermaid");
    if (!diagrams.length) { return; }
    const mermaid = (await import("https://cdnjs.cloudflare.com/ajax/libs/mermaid/11.10.0/mermaid.esm.min.mjs")).default;
  });
</script><script src="../javascripts/vendor/mathjax/tex-mml-chtml.js"></script></head>"""
    assert _remote_scripts(page)
    out = _offline_hook().on_post_page(page, page=None, config={})
    assert _remote_scripts(out) == []
    assert '<script src="">' not in out and "x-mathjax-config" not in out
    assert '<script src="../javascripts/vendor/mathjax/tex-mml-chtml.js">' in out
    # a page that does hold a mermaid diagram keeps its loader
    with_diagram = page + '<div class="jp-Mermaid"><pre class="mermaid">graph LR</pre></div>'
    assert "cdnjs" in _offline_hook().on_post_page(with_diagram, page=None, config={})


@pytest.fixture(scope="module")
def built_site(tmp_path_factory):
    """The site, built as CI builds it: ``mkdocs build --strict`` (skip without mkdocs)."""
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocs_jupyter"):
        pytest.importorskip(module)
    import subprocess
    import sys
    site = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q",
                           "-d", str(site)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return site


@pytest.mark.slow
def test_the_built_site_loads_no_script_from_another_host(built_site):
    pages = sorted(built_site.rglob("*.html"))
    assert len(pages) > 20
    for page in pages:
        found = _remote_scripts(page.read_text(encoding="utf-8"))
        assert not found, f"{page.relative_to(built_site)} loads {found}"
    assert (built_site / "javascripts" / "vendor" / "mathjax" / "tex-mml-chtml.js").exists()


@pytest.mark.slow
def test_the_built_site_asks_no_font_server(built_site):
    """``theme.font: false``: the pages use the system's fonts, so nothing waits for a font
    server that an offline reader cannot reach."""
    for page in sorted(built_site.rglob("*.html")):
        text = page.read_text(encoding="utf-8")
        assert "fonts.googleapis.com" not in text and "fonts.gstatic.com" not in text, page


@pytest.mark.slow
def test_the_built_api_pages_show_no_garbled_docstring(built_site):
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, str(DOCS / "hooks" / "check_api_html.py"),
                           str(built_site)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
