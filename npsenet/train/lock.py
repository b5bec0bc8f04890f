"""The run folder: one trainer at a time, and a folder that can be written, checked before
the first step.

    check_writable("runs/se20")                # a folder (created if need be) we can write in
    with hold_run_folder("runs/se20"):         # RunFolderInUse if another process holds it
        trainer.fit()

The lock is ``fcntl.flock`` on ``DIR/.lock``, held for the whole run. The kernel releases
it when the process ends in any way (kill -9 included), so a stale ``.lock`` file never
blocks a later run; while it is held the file records who holds it (pid, host, command,
start time) so that the refusal can say so:

    runs/se20 is in use by npsenet train (pid 123 on host, since 04:12); wait for it to
    finish or choose another --out

The lock is re-entrant within a process (``npsenet train`` takes it before it reads a
checkpoint, and :meth:`~npsenet.train.Trainer.fit` takes it again). Where ``fcntl`` does
not exist (Windows) the folder is not locked.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:          # Windows: no advisory locks, the run goes on unlocked
    fcntl = None

LOCK_NAME = ".lock"
"""The lock file's name in the run's folder."""
PROBE_NAME = ".write-probe"
"""The prefix of the probe file that :func:`check_writable` creates and removes."""

_HELD = {}   # resolved folder -> [open lock file, depth]


class RunFolderInUse(RuntimeError):
    """Another process holds the run folder's lock; the message names it."""


def check_writable(folder, flag="--out"):
    """Make sure ``folder`` is a folder that can be created and written: create it (and its
    parents) if missing, then create and remove a small probe file in it.

    Raises ValueError with one line (naming ``flag``, the option that chose the folder) when
    it is a file, cannot be created or cannot be written. Returns the folder as a Path.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{flag} {folder} is a file, not a folder; choose a folder for the "
                         f"run's checkpoint and metrics, e.g. {flag} {folder}.run")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot create the folder {folder} ({_reason(exc)}); choose "
                         f"another {flag}.") from None
    try:
        _probe(folder)
    except OSError as exc:
        raise ValueError(f"cannot write in {folder} ({_reason(exc)}); fix its permissions or "
                         f"choose another {flag}.") from None
    return folder


def _probe(folder):
    """Create, write, flush and remove a probe file in ``folder`` (OSError if that fails)."""
    path = Path(folder) / f"{PROBE_NAME}.{os.getpid()}"
    try:
        with open(path, "wb") as f:
            f.write(b"npsenet")
            f.flush()
            os.fsync(f.fileno())
    finally:
        if path.exists():
            path.unlink()


def _reason(exc):
    return exc.strerror or str(exc) or type(exc).__name__


def holder(folder):
    """What the lock file of ``folder`` says about its holder (a dict, maybe empty)."""
    try:
        text = (Path(folder) / LOCK_NAME).read_text()
        info = json.loads(text) if text.strip() else {}
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def describe_holder(folder, info, flag="--out"):
    """The one-line refusal for ``folder`` held by ``info`` (see :func:`holder`)."""
    started = info.get("started")
    since = ""
    if isinstance(started, (int, float)):
        fmt = "%H:%M" if time.strftime("%Y%m%d", time.localtime(started)) == \
            time.strftime("%Y%m%d") else "%Y-%m-%d %H:%M"
        since = f", since {time.strftime(fmt, time.localtime(started))}"
    who = info.get("command") or "another process"
    pid = info.get("pid")
    where = f"pid {pid} on {info.get('host', '?')}{since}" if pid else "its holder unknown"
    if flag == "--resume":
        return (f"{folder} is in use by {who} ({where}); wait for it to finish (or stop it) "
                "before resuming it.")
    return (f"{folder} is in use by {who} ({where}); wait for it to finish or choose "
            f"another {flag}.")


@contextmanager
def hold_run_folder(folder, command=None, flag="--out"):
    """Hold the lock of the existing folder ``folder`` while the block runs.

    Raises :class:`RunFolderInUse` at once (never waits) when another process holds it,
    and ValueError when the lock file cannot be created (a folder that cannot be written).
    ``command`` is what the lock file records (default: ``npsenet <sub-command>`` or the
    program's name).
    """
    key = os.path.realpath(folder)
    if key in _HELD:                    # this process holds it already
        _HELD[key][1] += 1
        try:
            yield
        finally:
            _HELD[key][1] -= 1
        return
    handle = _acquire(Path(folder), command, flag)
    _HELD[key] = [handle, 1]
    try:
        yield
    finally:
        del _HELD[key]
        _release(handle)


def _acquire(folder, command, flag):
    path = folder / LOCK_NAME
    try:
        handle = open(path, "a+")
    except OSError as exc:
        raise ValueError(f"cannot write in {folder} ({_reason(exc)}); fix its permissions or "
                         f"choose another {flag}.") from None
    if fcntl is None:
        return handle
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise RunFolderInUse(describe_holder(folder, holder(folder), flag)) from None
    info = {"pid": os.getpid(), "host": socket.gethostname(),
            "command": command or _command_name(), "started": time.time()}
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(info))
        handle.flush()
    except OSError:
        pass        # the lock holds all the same; only the description is missing
    return handle


def _release(handle):
    try:
        handle.seek(0)
        handle.truncate()       # the holder's description goes with the lock
    except OSError:
        pass
    handle.close()              # closing the file releases the flock


def _command_name():
    argv = [os.path.basename(sys.argv[0])] + sys.argv[1:2] if sys.argv and sys.argv[0] else []
    if argv and argv[0] in ("__main__.py", "-m", "-c", ""):
        argv[0] = "npsenet"
    return " ".join(argv) or "python"
