"""Griffe extension for the API reference: npsenet's docstrings read well as Markdown.

The docstrings are written for readers of the source, in habits that Markdown does not
share. Outside code (code spans, fenced and indented code blocks), this extension shows:

* cross-references as reST roles, :class:`Conv2d`, :func:`npsenet.io.load_model` or
  :func:`~npsenet.io.load_model`, as code that reads as Sphinx shows them, `Conv2d`,
  `npsenet.io.load_model` and `load_model`, and reST's "Example::" before a code block
  as "Example:";
* a ``*`` that multiplies, ``k*k``, ``N*H*W``, ``x * y`` or ``x**2``, as a star: Markdown
  would pair two of them into emphasis (``s*h + i, s*w`` became "s<em>h + i, s</em>w").
  Stars that open or close emphasis (``*view*``, ``**bold**``) and list bullets stay;
* an index that follows an index, ``W_rows[i][(j, c), o]``, as written: Markdown would
  read ``[i][(j, c), o]`` as a reference link;
* lines that each describe a call, ``forward(x): ...`` then ``backward(dy): ...``, as
  paragraphs of their own: Markdown would join them into one;
* a Google-style section title (``Args:``, ``Returns:``, ...) directly under a line of
  text as a section: griffe wants a blank line above it, and without one shows the title
  and its items as plain text;
* module docstrings whose examples are indented under an unindented summary line as
  written. Python's docstring cleaning removes the indentation common to the lines after
  the first, which turns such examples into plain paragraphs; for module docstrings (which
  start at column 0) the text is taken from the source as written, so the examples stay
  code blocks.

``docs/hooks/check_api_html.py`` finds what is still garbled in the built pages.
"""
from __future__ import annotations

import re

import griffe

# :func:`a.b.c` shows a.b.c, :func:`~a.b.c` shows c (as Sphinx does)
ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|obj|exc):`(?:~(?:[\w.]*\.)?)?([^`]+)`")
LITERAL_BLOCK_MARKER = re.compile(r"(\w)::$")
FENCE = re.compile(r"^\s*(```|~~~)")
# griffe's Google-style section titles (its _section_kind), alone on their line
SECTION = re.compile(
    r"^\s*(?:Args|Arguments|Params|Parameters|Keyword Args|Keyword Arguments|Other Args|"
    r"Other Arguments|Other Params|Other Parameters|Raises|Exceptions|Returns|Yields|"
    r"Receives|Examples|Attributes|Functions|Methods|Classes|Modules|Warns|Warnings):\s*$")
# a line that starts by naming a call, "forward(x): ..." or "backward(dy): ..."
CALL_LABEL = re.compile(r"^\s*\w+\([^()]*\):\s")
CODE_SPAN = re.compile(r"(`+).*?\1")
# a run of stars between two operands: k*k, N*H*W, (a)*b, x**2
STARS_BETWEEN = re.compile(r"(?<=[\w)\]'])\*+(?=[\w(\[])")
STAR_ALONE = re.compile(r"(?<=\S) \* (?=\S)")            # x * y (not a list bullet)
INDEX_AFTER_INDEX = re.compile(r"(?<=\])\[")            # [i][j]: not a reference link


def _as_written(module):
    """The module docstring as in the file, without the common-indentation removal."""
    docstring = module.docstring
    lines = module.filepath.read_text(encoding="utf-8").splitlines()
    raw = "\n".join(lines[docstring.lineno - 1:docstring.endlineno]).strip()
    raw = re.sub(r'^[rRuU]?("""|\'\'\')', "", raw)
    raw = re.sub(r'("""|\'\'\')$', "", raw)
    return raw.strip("\n").rstrip()


def _escape_stars(text):
    return STAR_ALONE.sub(r" \\* ", STARS_BETWEEN.sub(lambda m: "\\*" * len(m.group()), text))


def _prose(line):
    """One line of text outside code blocks: roles as code, stars and indices kept."""
    line = ROLE.sub(r"`\1`", line)
    line = LITERAL_BLOCK_MARKER.sub(r"\1:", line)
    pieces, last = [], 0
    for span in CODE_SPAN.finditer(line):                 # code spans stay as they are
        pieces.append(_markdown_safe(line[last:span.start()]))
        pieces.append(span.group())
        last = span.end()
    pieces.append(_markdown_safe(line[last:]))
    return "".join(pieces)


def _markdown_safe(text):
    return INDEX_AFTER_INDEX.sub("&#91;", _escape_stars(text))


def _indent(line):
    return len(line) - len(line.lstrip(" "))


def _as_markdown_text(text):
    """The docstring's text with the prose lines made Markdown-safe and a blank line
    above every section title and every line that starts with a call label; code blocks
    untouched.

    A line is code inside a fence, or when it is indented four spaces past its context's
    margin and follows a blank line or another code line. The margin is 0 in text, and
    inside a section (until a line no deeper than its title) that of the item
    descriptions, eight spaces past the title's."""
    out, fence, code, previous_blank, section = [], None, False, True, None
    for line in text.split("\n"):
        if fence:
            out.append(line)
            if line.strip().startswith(fence):
                fence = None
            continue
        if FENCE.match(line):
            fence = FENCE.match(line).group(1)
            out.append(line)
            continue
        if not line.strip():
            out.append(line)
            previous_blank = True
            continue
        indent = _indent(line)
        if section is not None and indent <= section:
            section = None
        margin = 0 if section is None else section + 8
        code = indent >= margin + 4 and (previous_blank or code)
        if code:
            out.append(line)
        elif SECTION.match(line):
            if not previous_blank:
                out.append("")
            section = indent
            out.append(line)
        elif section is None and not previous_blank and CALL_LABEL.match(line):
            out.extend(["", _prose(line)])             # forward(x): ... its own paragraph
        else:
            out.append(_prose(line))
        previous_blank = False
    return "\n".join(out)


def _as_markdown(obj):
    if obj.docstring is not None:
        obj.docstring.value = _as_markdown_text(obj.docstring.value)


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
