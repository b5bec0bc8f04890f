"""mkdocs hook: one griffe loader warning is not a documentation error.

``npsenet.models.__all__`` lists the model names by unpacking ``MODEL_NAMES``; griffe reads
``__all__`` statically, cannot expand it, and warns, which ``mkdocs build --strict`` would
treat as a failure. The API pages list their members explicitly, so the warning is
reported at INFO level instead. Every other warning keeps failing the strict build.
"""
from __future__ import annotations

import logging


class _UnsupportedAllItem(logging.Filter):
    def filter(self, record):
        if record.levelno == logging.WARNING and "Unsupported item in" in record.getMessage() \
                and "__all__" in record.getMessage():
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def on_startup(command, dirty):
    for name in ("griffe", "mkdocs.plugins.griffe", "mkdocs.plugins.mkdocstrings_handlers"):
        logging.getLogger(name).addFilter(_UnsupportedAllItem())
