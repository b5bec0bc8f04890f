"""Find docstrings that Markdown garbled, in the built API pages.

    mkdocs build --strict -q && python docs/hooks/check_api_html.py [site]

Reads every ``site/api/**/index.html`` and ``site/fast_path/index.html`` and reports, per
page, text outside code that shows one of the habits of docstrings written for readers of
the source which Markdown renders differently:

* ``em`` / ``strong``: a ``*`` of ``k*k`` or ``x * y`` read as emphasis: emphasis that
  touches a letter or digit outside it, or holds more than words (intended emphasis,
  ``*view*``, and mkdocstrings' own *required* pass);
* ``list run together``: lines starting with ``-``, ``*`` or ``1.`` inside one paragraph
  (a Markdown list needs a blank line before it);
* ``lines run together``: lines such as ``forward(x): ...`` / ``backward(dy): ...``
  joined into one paragraph;
* ``aligned text``: runs of spaces inside a paragraph, an indented equation block that
  did not become a code block;
* ``reST``: roles (``:func:`x```), literal-block markers (``Example::``) or double
  backticks left raw, and unmatched backticks;
* ``section``: a Google-style section title (``Args:``, ``Returns:``) left in a paragraph.

Exit status 1 if anything is found. Needs only the standard library.
"""
from __future__ import annotations

import re
import sys
from html.parser import HTMLParser
from pathlib import Path

SKIP = {"code", "pre", "script", "style", "svg", "kbd"}
BLOCKS = {"p", "li", "td", "th", "dd", "dt", "h1", "h2", "h3", "h4", "h5", "h6", "summary"}
CHECKS = [
    ("list run together", re.compile(r"\n\s*(?:[-*•]|\d+\.)\s+\S")),
    ("lines run together", re.compile(r"\S\s*\n\s*\w+\([^()\n]*\):\s")),
    ("aligned text", re.compile(r"\S {3,}\S")),
    ("reST", re.compile(r":(?:class|func|meth|mod|data|attr|obj|exc):`|\w::(?:\s|$)|``")),
    ("section", re.compile(r"(?:^|\n)\s*(?:Args|Arguments|Returns|Raises|Yields|Attributes|"
                           r"Example|Examples|Note|Notes):\s*\n")),
]


class _Text(HTMLParser):
    """Collects the text of each block outside code, and the emphasis with its neighbours."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.skip = 0
        self.blocks, self.current, self.found = [], [], []
        self.em = None                  # [tag, character before, text parts]
        self.closed = None              # (tag, before, text) of an emphasis just closed
        self.last = " "                 # the last character of text seen

    def handle_starttag(self, tag, attrs):
        if tag in SKIP:
            self.skip += 1
            self.last = "x"             # code next to emphasis: as a letter would be
        elif self.skip:
            return
        elif tag in ("em", "strong"):
            self.em = [tag, self.last, []]
        elif tag in BLOCKS:
            self._flush()

    def handle_endtag(self, tag):
        if tag in SKIP:
            self.skip = max(0, self.skip - 1)
        elif self.skip:
            return
        elif tag in ("em", "strong") and self.em:
            kind, before, parts = self.em
            self.closed = (kind, before, "".join(parts))
            self.em = None
        elif tag in BLOCKS:
            self._flush()

    def handle_data(self, data):
        if self.skip or not data:
            return
        if self.closed:
            self._judge(*self.closed, after=data[0])
        self.current.append(data)
        if self.em:
            self.em[2].append(data)
        self.last = data[-1]

    def _judge(self, kind, before, text, after=" "):
        self.closed = None
        words = re.fullmatch(r"[A-Za-z][\w' ,.:;!?-]*", text.strip())
        touches = before.isalnum() or before in ")]" or after.isalnum() or after in "(["
        if text.strip() != "required" and (touches or not words):
            self.found.append((kind, f"{before}*{text}*{after}"))

    def _flush(self):
        if self.closed:
            self._judge(*self.closed)
        text = "".join(self.current)
        if text.strip():
            self.blocks.append(text)
        self.current = []


def problems(html):
    """(kind, excerpt) for every suspicious piece of text in one page."""
    parser = _Text()
    parser.feed(html)
    parser._flush()
    found = list(parser.found)
    for text in parser.blocks:
        for kind, pattern in CHECKS:
            for m in pattern.finditer(text):
                start = max(0, m.start() - 40)
                found.append((kind, text[start:m.end() + 40]))
        if text.count("`") % 2:
            found.append(("reST", text[:120]))
    return found


def main(site="site"):
    site = Path(site)
    pages = sorted(site.glob("api/**/index.html")) + sorted(site.glob("fast_path/index.html"))
    total = 0
    for page in pages:
        html = page.read_text(encoding="utf-8")
        body = html.split('<article', 1)[-1].split('</article>', 1)[0]  # not nav or footer
        for kind, excerpt in problems(body):
            total += 1
            print(f"{page.relative_to(site)}: {kind}: {' '.join(excerpt.split())!r}")
    print(f"{total} problem(s) in {len(pages)} page(s)")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
