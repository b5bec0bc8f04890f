"""The ``npsenet`` command. Each sub-command lives in ``npsenet/cli/commands/<name>.py``
and defines ``add_parser(subparsers)``, which registers its arguments and sets ``func``;
the argparse helpers they share are in :mod:`npsenet.cli.args`.

Only this package parses command lines: the library modules it calls (``npsenet.train``,
``npsenet.bench``, ``npsenet.summary``, ...) take plain keyword arguments and never import
it.

No traceback reaches a user (:func:`main`): every error ends in one line on stderr,

    npsenet train: error: runs/se20 is in use by npsenet train (pid 123 on host, since 04:12); ...

and an exit status:

* 0: done;
* 2: a usage error, a bad setting, a bad or damaged file (an unpickling, zip or zlib error
  among them), an OS error (a full disk, a folder that cannot be written: the line names
  the file and the reason), running out of memory, or a run that diverged;
* 130: Ctrl-C (KeyboardInterrupt) outside a training run (``npsenet train`` itself
  exits 130 or 143 after saving a checkpoint, see its help);
* 1: stdout was closed early (``npsenet summary | head -3``): the command stops quietly, as
  Python's documentation recommends for a broken pipe (stdout goes to /dev/null so that
  the interpreter's last flush stays silent too);
* 3: an unexpected error inside npsenet, i.e. a bug: one line with the exception's type and
  message, and how to see the traceback.

``NPSENET_DEBUG=1`` lets every error through with its full traceback.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import os
import pickle
import pkgutil
import sys
import zipfile
import zlib

from ..nn.switch import fast_path, is_fast
from . import commands

MAX_MESSAGE = 600
"""The longest error line printed (characters); longer messages are cut with an ellipsis."""

# errno -> what to try, for the OSErrors a user can fix
_OS_HINTS = {
    errno.ENOSPC: "free some disk space or choose another --out",
    errno.EDQUOT: "free some space (disk quota) or choose another --out",
    errno.EACCES: "check the file's permissions or choose another path",
    errno.EPERM: "check the file's permissions or choose another path",
    errno.EROFS: "the file system is read-only: choose another path",
    errno.ENOENT: "check the path",
    errno.EISDIR: "pass a file, not a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
}


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


def debugging():
    """Whether ``NPSENET_DEBUG`` asks for tracebacks (set and not 0/empty)."""
    return os.environ.get("NPSENET_DEBUG", "") not in ("", "0")


def one_line(text):
    """``text`` folded to one line (runs of whitespace, newlines included, become one
    space) and cut to :data:`MAX_MESSAGE` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 3] + "..."


def describe_os_error(exc):
    """One line for an OSError: the file(s), the reason and, where one helps, what to try."""
    if exc.strerror is None:           # raised with a message of our own
        return str(exc) or type(exc).__name__
    files = " -> ".join(os.fspath(f) if not isinstance(f, bytes) else f.decode(errors="replace")
                        for f in (exc.filename, exc.filename2) if f is not None)
    line = f"{files}: {exc.strerror}" if files else exc.strerror
    hint = _OS_HINTS.get(exc.errno)
    return f"{line}; {hint}." if hint else f"{line}."


def describe_error(exc):
    """``(exit status, one line)`` for an exception that ends a command."""
    if isinstance(exc, KeyboardInterrupt):
        return 130, "interrupted (Ctrl-C); nothing more was done."
    if isinstance(exc, MemoryError):
        detail = str(exc) or "the arrays did not fit"
        return 2, (f"out of memory ({detail}); try a smaller --batch-size or --limit-train, "
                   "or a machine with more memory.")
    if isinstance(exc, EOFError):
        return 2, (f"a file ended before its data did ({exc or 'EOFError'}); it is truncated "
                   "or damaged: download or copy it again.")
    if isinstance(exc, (pickle.UnpicklingError, zipfile.BadZipFile, zlib.error)):
        return 2, (f"a file is damaged or not in its format ({type(exc).__name__}: {exc}); "
                   "download or copy it again.")
    if isinstance(exc, OSError):
        return 2, describe_os_error(exc)
    if isinstance(exc, (ValueError, RuntimeError)):
        return 2, str(exc) or type(exc).__name__
    return 3, (f"internal error, a bug in npsenet (or a damaged input it failed to "
               f"recognise): {type(exc).__name__}: {exc}. Run again with NPSENET_DEBUG=1 to "
               "see the traceback, and please report it.")


def _quiet_broken_pipe():
    """After a BrokenPipeError: send what is left of stdout to /dev/null, so that the
    interpreter's final flush does not raise again (Python's documented recipe)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def main(argv=None):
    """Run the command ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    command = "npsenet"
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)   # for train --nproc's ranks
        command = f"npsenet {args.command}"
        # --plain: the plain path for the whole command (and back afterwards)
        with fast_path(is_fast() and not getattr(args, "plain", False)):
            status = args.func(args) or 0
        sys.stdout.flush()        # a closed pipe shows here, not at the interpreter's exit
        return status
    except SystemExit:
        raise                     # argparse's usage errors (status 2) and --help (0)
    except BrokenPipeError:
        _quiet_broken_pipe()
        return 1
    except BaseException as exc:  # noqa: BLE001 - every error ends in one line
        if debugging() or not isinstance(exc, Exception) and not isinstance(
                exc, KeyboardInterrupt):
            raise
        status, line = describe_error(exc)
        try:
            print(f"{command}: error: {one_line(line)}", file=sys.stderr, flush=True)
        except (OSError, ValueError):
            pass
        return status
