"""The ``npsenet`` command. Each sub-command lives in ``npsenet/cli/commands/<name>.py``
and defines ``add_parser(subparsers)``, which registers its arguments and sets ``func``;
the argparse helpers they share are in :mod:`npsenet.cli.args`.

Only this package parses command lines: the library modules it calls (``npsenet.train``,
``npsenet.bench``, ``npsenet.summary``, ...) take plain keyword arguments and never import
it.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from ..nn.switch import fast_path, is_fast
from . import commands


def build_parser():
    parser = argparse.ArgumentParser(
        prog="npsenet",
        description="Squeeze-and-Excitation Networks from scratch in NumPy: train, evaluate, "
                    "check gradients, benchmark and summarise SE-ResNets.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{commands.__name__}.{info.name}").add_parser(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)   # for train --nproc's ranks
    try:
        # --plain: the plain path for the whole command (and back afterwards)
        with fast_path(is_fast() and not getattr(args, "plain", False)):
            return args.func(args) or 0
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        # errors meant for the user: one clear line, no traceback
        print(f"npsenet {args.command}: error: {exc}", file=sys.stderr)
        return 2
