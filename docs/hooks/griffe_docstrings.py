"""Griffe extension for the API reference: npsenet's docstrings read well as Markdown.

The docstrings are written for readers of the source, in two habits that Markdown does
not share:

* cross-references as reST roles, :class:`Conv2d` or :func:`~npsenet.io.load_model`,
  which are shown here as code, `Conv2d` and `load_model`;
* module docstrings whose examples are indented under an unindented summary line.
  Python's docstring cleaning removes the indentation common to the lines after the first,
  which turns such examples into plain paragraphs; for module docstrings (which start at
  column 0) the text is taken from the source as written, so the examples stay code blocks.
"""
from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|obj|exc):`~?(?:[\w.]*\.)?([^`.]+)`")


def _as_written(module):
    """The module docstring as in the file, without the common-indentation removal."""
    docstring = module.docstring
    lines = module.filepath.read_text(encoding="utf-8").splitlines()
    raw = "\n".join(lines[docstring.lineno - 1:docstring.endlineno]).strip()
    raw = re.sub(r'^[rRuU]?("""|\'\'\')', "", raw)
    raw = re.sub(r'("""|\'\'\')$', "", raw)
    return raw.strip("\n").rstrip()


def _without_roles(obj):
    if obj.docstring is not None:
        obj.docstring.value = ROLE.sub(r"`\1`", obj.docstring.value)


class ReadableDocstrings(griffe.Extension):
    def on_module(self, *, mod, **kwargs):
        if mod.docstring is not None and mod.docstring.lineno is not None:
            mod.docstring.value = _as_written(mod)
        _without_roles(mod)

    def on_class(self, *, cls, **kwargs):
        _without_roles(cls)

    def on_function(self, *, func, **kwargs):
        _without_roles(func)

    def on_attribute(self, *, attr, **kwargs):
        _without_roles(attr)
