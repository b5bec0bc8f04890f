"""``python -m npsenet.cli``: the same as ``npsenet`` and ``python -m npsenet``."""
import sys

from . import main

sys.exit(main())
