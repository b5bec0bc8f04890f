"""mkdocs hook: every page of the site runs with no script from another host.

MathJax is served with the site (``docs/javascripts/vendor/mathjax/``, listed in
``mkdocs.yml``). The notebook pages of mkdocs-jupyter carry two leftovers of Jupyter's
own HTML export, removed here from each page after it is rendered:

* ``<script src="">``, the slot of the export's MathJax 2 (the site's MathJax 3 typesets
  the notebooks too), with the MathJax 2 configuration that goes with it;
* the loader of mermaid.js, which imports it from a CDN when a page holds a mermaid
  diagram; no notebook here does, so it is dropped from pages without one.

``tests/test_docs.py`` checks the built site: no ``<script src>`` and no ``import()`` of
another host.
"""
from __future__ import annotations

import re

EMPTY_SCRIPT = re.compile(r"<!-- Load mathjax -->\s*<script src=\"\">\s*</script>\s*"
                          r"(<!-- MathJax configuration -->\s*"
                          r"<script type=\"text/x-mathjax-config\">.*?</script>\s*"
                          r"<!-- End of mathjax configuration -->)?", re.DOTALL)
MERMAID_LOADER = re.compile(r"<script type=\"module\">(?:(?!</script>).)*?"
                            r"querySelectorAll\(\"\.jp-Mermaid(?:(?!</script>).)*</script>",
                            re.DOTALL)


def on_post_page(output, page, config):
    output = EMPTY_SCRIPT.sub("", output)
    if 'class="jp-Mermaid' not in output:
        output = MERMAID_LOADER.sub("", output)
    return output
