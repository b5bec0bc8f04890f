"""Griffe extension for the API reference: npsenet's docstrings read well as Markdown.

The docstrings are written for readers of the source, in two habits that Markdown does
not share:

* cross-references as reST roles, :class:`Conv2d` or :func:`~npsenet.io.load_model`,
  which are shown here as code, `Conv2d` and `load_model`, and reST's "Example::" before
  a code block, shown as "Example:";
* module docstrings whose examples are indented under an unindented summary line.
  Python's docstring cleaning removes the indentation common to the lines after the first,
  which turns such examples into plain paragraphs; for module docstrings (which start at
  column 0) the text is taken from the source as written, so the examples stay code blocks.
"""
from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|obj|exc):`~?(?:[\w.]*\.)?([^`.]+)`")
LITERAL_BLOCK_MARKER = re.compile(r"(\w)::$", flags=re.MULTILINE)


def _as_written(module):
    """The module docstring as in the file, without the common-indentation removal."""
    docstring = module.docstring
    lines = module.filepath.read_text(encoding="utf-8").splitlines()
    raw = "\n".join(lines[docstring.lineno - 1:docstring.endlineno]).strip()
    raw = re.sub(r'^[rRuU]?("""|\'\'\')', "", raw)
    raw = re.sub(r'("""|\'\'\')$', "", raw)
    return raw.strip("\n").rstrip()


def _as_markdown(obj):
    if obj.docstring is not None:
        text = ROLE.sub(r"`\1`", obj.docstring.value)
        obj.docstring.value = LITERAL_BLOCK_MARKER.sub(r"\1:", text)


class ReadableDocstrings(griffe.Extension):
    def on_module(self, *, mod, **kwargs):
        if mod.docstring is not None and mod.docstring.lineno is not None:
            mod.docstring.value = _as_written(mod)
        _as_markdown(mod)

    def on_class(self, *, cls, **kwargs):
        _as_markdown(cls)

    def on_function(self, *, func, **kwargs):
        _as_markdown(func)

    def on_attribute(self, *, attr, **kwargs):
        _as_markdown(attr)
