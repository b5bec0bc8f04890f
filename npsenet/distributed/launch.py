"""``npsenet train --nproc N``: start the N ranks with ``mpiexec`` and wait for them.

    launch(["train", "--dataset", "synthetic"], 2)   # = mpiexec -n 2 python -m npsenet train ...

The launcher runs ``mpiexec -n N <python> -m npsenet <arguments>`` in a session of its own
(so that Ctrl-C in the terminal reaches only the launcher), forwards SIGINT and SIGTERM
to it once each (``mpiexec`` passes them on to every rank, which stop together after a
checkpoint) and returns its exit status. Each rank gets ``OPENBLAS_NUM_THREADS`` (and the
OpenMP and MKL equivalents) = cores / N unless they are set already, so N ranks do not
fight over the cores. ``mpiexec`` is the one installed beside this Python (the ``mpich``
wheel puts it there), else the first on ``PATH``.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from .communicator import DistributedError

THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
WORLD_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE",
                        "PMIX_SIZE")
LOCAL_RANK_VARIABLES = ("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK",
                        "MV2_COMM_WORLD_LOCAL_RANK", "PMI_LOCAL_RANK")


def launched_size(environ=None):
    """The number of ranks the MPI launcher that started this process asked for (1 when no
    launcher started it), from the variables it sets."""
    environ = os.environ if environ is None else environ
    for name in WORLD_SIZE_VARIABLES:
        value = environ.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return 1


def local_rank(default=0, environ=None):
    """This process's rank among those on its machine (picks its GPU)."""
    environ = os.environ if environ is None else environ
    for name in LOCAL_RANK_VARIABLES:
        value = environ.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return default


def find_mpiexec():
    """The ``mpiexec`` to use, or one line saying how to get one."""
    beside = Path(sys.executable).parent / "mpiexec"
    if beside.exists():
        return str(beside)
    found = shutil.which("mpiexec")
    if found:
        return found
    raise DistributedError("--nproc needs mpiexec, which was not found beside "
                           f"{sys.executable} or on PATH; install it with "
                           "pip install \"npsenet[distributed]\" (mpi4py and mpich).")


def without_nproc(arguments):
    """``arguments`` without ``--nproc N`` / ``--nproc=N``."""
    out, skip = [], False
    for argument in arguments:
        if skip:
            skip = False
        elif argument == "--nproc":
            skip = True
        elif not argument.startswith("--nproc="):
            out.append(argument)
    return out


def rank_environment(nproc, environ=None):
    """The environment of the ranks: this one, with one BLAS thread per core share."""
    env = dict(os.environ if environ is None else environ)
    threads = str(max(1, (os.cpu_count() or 1) // int(nproc)))
    for name in THREAD_VARIABLES:
        env.setdefault(name, threads)
    return env


def command(arguments, nproc, mpiexec=None, python=None, extra=()):
    """The ``mpiexec`` command line that runs ``python -m npsenet <arguments>`` N times."""
    return [mpiexec or find_mpiexec(), "-n", str(int(nproc)), *extra,
            python or sys.executable, "-m", "npsenet", *arguments]


def run_ranks(cmd, env=None):
    """Run ``cmd`` (an ``mpiexec`` command) in a session of its own; SIGINT and SIGTERM
    sent to this process go to it. Returns its exit status (128 + n if a signal n ended
    it)."""
    try:
        process = subprocess.Popen(cmd, env=env, start_new_session=True)
    except OSError as exc:
        raise DistributedError(f"could not start {cmd[0]} ({exc}); check the MPI "
                               "installation (pip install \"npsenet[distributed]\").") from None
    forwarded = set()

    def forward(signum, frame):
        if signum not in forwarded:      # once each: a second one makes mpiexec abort
            forwarded.add(signum)
            try:
                process.send_signal(signum)
            except ProcessLookupError:
                pass

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            try:
                status = process.wait()
                break
            except InterruptedError:      # pragma: no cover (Python retries by itself)
                continue
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 128 - status if status < 0 else status


def launch(arguments, nproc, env=None):
    """``npsenet <arguments>`` in ``nproc`` processes under ``mpiexec``; their status."""
    if int(nproc) != nproc or nproc < 1:
        raise ValueError(f"--nproc must be a positive number of processes, got {nproc!r}.")
    cmd = command(without_nproc(arguments), nproc)
    return run_ranks(cmd, rank_environment(nproc) if env is None else env)


def describe_status(status, nproc):
    """One line about the ranks' exit status ``status`` (for the launcher's user), or None
    when there is nothing to add (0, or a signal that stopped the run after a checkpoint)."""
    if status in (0, 130, 143):
        return None
    if status > 128:
        name = signal.Signals(status - 128).name if status - 128 in signal.valid_signals() \
            else f"signal {status - 128}"
        return (f"a rank was killed by {name} (exit status {status}); mpiexec stopped the "
                f"other {nproc - 1}. Out of memory? The last checkpoint is kept: continue "
                "with --resume.")
    return (f"the {nproc} ranks stopped with exit status {status} (see the first error "
            "above); the last checkpoint is kept.")
