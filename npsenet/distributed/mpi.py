"""The MPI backend: processes started by ``mpiexec`` (or ``npsenet train --nproc N``), host
(NumPy) arrays, through ``mpi4py`` (``pip install "npsenet[distributed]"``).

Each collective is MPI's non-blocking one (``Iallreduce``, ``Ibcast``), then waited for by
testing it: continuously for the first :data:`SPIN_SECONDS` (the other ranks are usually
there already), then every :data:`POLL_SECONDS`, until :attr:`timeout` seconds have
passed, when :class:`~npsenet.distributed.CollectiveTimeout` is raised. A blocking
``MPI_Allreduce`` would wait for ever for a rank that died or hangs. After a timeout the
request is still pending, so the process must leave without ``MPI_Finalize``
(:func:`npsenet.distributed.exit_now`).
"""
from __future__ import annotations

import pickle
import time

import numpy as np

from .communicator import Communicator, DistributedError, timeout_error

SPIN_SECONDS = 0.002
POLL_SECONDS = 0.0002


def import_mpi():
    """``mpi4py.MPI``, or one line saying how to install it."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise DistributedError(f"training with several processes needs mpi4py and an MPI "
                               f"library ({exc}); install them with "
                               "pip install \"npsenet[distributed]\" (mpi4py and mpich).") from None
    return MPI


class MPICommunicator(Communicator):
    """The ranks of ``MPI.COMM_WORLD`` (or of ``comm``, an mpi4py communicator)."""

    def __init__(self, comm=None, timeout=None):
        super().__init__(timeout)
        self.MPI = import_mpi()
        self.comm = self.MPI.COMM_WORLD if comm is None else comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()

    def _wait(self, request, what):
        started = time.perf_counter()
        spin_until, give_up = started + SPIN_SECONDS, started + self.timeout
        while not request.Test():
            now = time.perf_counter()
            if now > give_up:
                raise timeout_error(self, what, self.timeout)
            if now > spin_until:
                time.sleep(POLL_SECONDS)

    @staticmethod
    def _host_buffer(array, what):
        if not isinstance(array, np.ndarray):
            raise DistributedError(f"the MPI {what} takes NumPy arrays, got "
                                   f"{type(array).__name__}; GPU arrays go through NCCL "
                                   "(npsenet.distributed.NCCLCommunicator).")
        if not array.flags.c_contiguous:
            raise DistributedError(f"the MPI {what} takes a contiguous array, got one of shape "
                                   f"{array.shape} that is a strided view; pass "
                                   "np.ascontiguousarray(array) and copy the result back.")
        return array

    def allreduce_sum(self, array, what="all-reduce"):
        if self.size == 1:
            return array
        buf = self._host_buffer(array, what)
        self._wait(self.comm.Iallreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM), what)
        return array

    def broadcast(self, array, root=0, what="broadcast"):
        if self.size == 1:
            return array
        self._wait(self.comm.Ibcast(self._host_buffer(array, what), root=root), what)
        return array

    def broadcast_object(self, obj, root=0, what="broadcast"):
        if self.size == 1:
            return obj
        data = pickle.dumps(obj) if self.rank == root else b""
        length = self.broadcast(np.array([len(data)], dtype=np.int64), root, what)
        buf = (np.frombuffer(data, dtype=np.uint8).copy() if self.rank == root
               else np.empty(int(length[0]), dtype=np.uint8))
        self.broadcast(buf, root, what)
        return obj if self.rank == root else pickle.loads(buf.tobytes())

    def barrier(self, what="barrier"):
        if self.size > 1:
            self._wait(self.comm.Ibarrier(), what)
