"""The NCCL backend: one GPU per rank, collectives on device (CuPy) arrays through
``cupy.cuda.nccl``; nothing goes through the host.

MPI only starts it: rank 0 makes NCCL's unique id and MPI broadcasts it
(:func:`exchange_nccl_id`), then every rank joins the NCCL communicator with it. Each
GPU's collective is queued on the current CUDA stream, like a kernel: the host does not
wait for it (waiting would leave the GPU idle while the host prepares the next step).

The timeout therefore cannot be a loop on the host. A :class:`Watchdog` thread keeps an
event recorded after each collective and checks, without blocking, whether the GPU got
past it; one still pending after the timeout means a rank died or hangs, and the watchdog
aborts the NCCL communicator (so the GPU's waiting kernels return) and ends the process
with one line on stderr, as the main thread may itself be stuck waiting for the GPU.
"""
from __future__ import annotations

import os
import socket
import sys
import threading
import time

from .communicator import Communicator, DistributedError, timeout_error

WATCHDOG_POLL_SECONDS = 0.05
TIMEOUT_EXIT_CODE = 3


def exchange_nccl_id(host_comm, make_id):
    """NCCL's unique id, made on rank 0 by ``make_id()`` and broadcast by ``host_comm``
    (any communicator with ``broadcast_object``), the same on every rank."""
    uid = make_id() if host_comm.rank == 0 else None
    uid = host_comm.broadcast_object(uid, root=0, what="broadcast of the NCCL id")
    if uid is None:
        raise DistributedError("the NCCL id did not arrive from rank 0; is rank 0 running "
                               "with --device gpu too?")
    return uid


def check_one_gpu_per_rank(host_comm, identity):
    """One line (:class:`DistributedError`) if another rank uses the same GPU as this one.

    ``identity`` is this rank's (host name, GPU PCI bus id); every rank's is exchanged over
    ``host_comm`` (one ``broadcast_object`` per rank). NCCL refuses two ranks of one
    communicator on one GPU ("Duplicate GPU detected", since NCCL 2.5), so the error says
    so before NCCL does, in npsenet's words."""
    identities = [host_comm.broadcast_object(identity if host_comm.rank == root else None,
                                             root=root, what="exchange of the GPUs' ids")
                  for root in range(host_comm.size)]
    owners = {}
    for rank, ident in enumerate(identities):
        owners.setdefault(tuple(ident), []).append(rank)
    shared = owners[tuple(identity)]
    if len(shared) > 1:
        per_host = {}
        for host, _bus in owners:
            per_host[host] = per_host.get(host, 0) + 1
        gpus = per_host[identity[0]]
        raise DistributedError(
            f"ranks {' and '.join(map(str, shared))} would share one GPU ({identity[1]} on "
            f"{identity[0]}), and NCCL needs a GPU of its own for each rank; this machine "
            f"gives the ranks {gpus} GPU{'s' * (gpus != 1)}: use --nproc {gpus} or fewer (or "
            f"train on the cpu).")


class Watchdog:
    """Watches events recorded after device collectives; ``on_timeout(message)`` is called
    (from the watchdog's thread) for the first one not done ``timeout`` seconds after it
    was recorded. An event is anything with a ``done`` attribute (``cupy.cuda.Event``)."""

    def __init__(self, comm, timeout, on_timeout, poll=WATCHDOG_POLL_SECONDS):
        self.comm, self.timeout, self.on_timeout, self.poll = comm, timeout, on_timeout, poll
        self._pending, self._lock = [], threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="nccl-watchdog", daemon=True)
        self._thread.start()

    def watch(self, event, what):
        """Start the clock of ``what`` (its event recorded on the stream just after it)."""
        with self._lock:
            self._pending.append((event, time.monotonic() + self.timeout, what))

    def overdue(self):
        """The first pending collective past its deadline (forgets those done), or None."""
        now = time.monotonic()
        with self._lock:
            self._pending = [item for item in self._pending if not item[0].done]
            for _event, deadline, what in self._pending:
                if now > deadline:
                    return what
        return None

    def _watch(self):
        while not self._stop.wait(self.poll):
            what = self.overdue()
            if what is not None:
                self.on_timeout(str(timeout_error(self.comm, what, self.timeout)))
                return

    def close(self):
        self._stop.set()


def _die(comm, message):
    print(f"npsenet: error: {message}", file=sys.stderr, flush=True)
    try:
        comm.abort()
    finally:
        os._exit(TIMEOUT_EXIT_CODE)


class NCCLCommunicator(Communicator):
    """The ranks of ``host_comm`` (an :class:`~npsenet.distributed.mpi.MPICommunicator`)
    on their GPUs: rank r uses GPU ``local_rank % number of GPUs`` (see
    :func:`npsenet.distributed.local_rank`), made current by :func:`npsenet.distributed.init`
    (or here, with ``device_index``). One GPU per rank: two ranks on one GPU are refused
    (:func:`check_one_gpu_per_rank`). A single rank's collectives still go through NCCL
    (the GPU check, ``benchmarks/gpu_check.py``, runs them so on a machine with one GPU)."""

    def __init__(self, host_comm, device_index=None, timeout=None):
        super().__init__(host_comm.timeout if timeout is None else timeout)
        try:
            import cupy
            from cupy.cuda import nccl
        except ImportError as exc:
            raise DistributedError(f"--device gpu with several processes needs CuPy with NCCL "
                                   f"({exc}); install the CuPy wheel of your CUDA version "
                                   "(pip install cupy-cuda12x or cupy-cuda13x) and NCCL "
                                   "(e.g. pip install nvidia-nccl-cu12), or train on the "
                                   "cpu.") from None
        self.cupy, self.nccl = cupy, nccl
        self.host, self.rank, self.size = host_comm, host_comm.rank, host_comm.size
        if device_index is not None:
            cupy.cuda.Device(device_index).use()
        bus_id = cupy.cuda.runtime.deviceGetPCIBusId(cupy.cuda.Device().id)
        check_one_gpu_per_rank(host_comm, (socket.gethostname(), bus_id))
        uid = exchange_nccl_id(host_comm, nccl.get_unique_id)
        self.comm = nccl.NcclCommunicator(self.size, uid, self.rank)
        self.watchdog = Watchdog(self, self.timeout, lambda message: _die(self.comm, message))
        self._types = {"float32": nccl.NCCL_FLOAT32, "float64": nccl.NCCL_FLOAT64,
                       "float16": nccl.NCCL_FLOAT16, "int64": nccl.NCCL_INT64,
                       "int32": nccl.NCCL_INT32, "uint8": nccl.NCCL_UINT8}

    def _check(self, array, what):
        if not isinstance(array, self.cupy.ndarray) or not array.flags.c_contiguous:
            raise DistributedError(f"the NCCL {what} takes a contiguous CuPy array, got "
                                   f"{type(array).__name__}; host arrays go through MPI.")
        kind = self._types.get(array.dtype.name)
        if kind is None:
            raise DistributedError(f"the NCCL {what} takes one of {sorted(self._types)}, got "
                                   f"{array.dtype}.")
        return kind

    def _queued(self, what):
        event = self.cupy.cuda.Event(block=False, disable_timing=True)
        event.record()
        self.watchdog.watch(event, what)

    def allreduce_sum(self, array, what="all-reduce"):
        kind = self._check(array, what)
        stream = self.cupy.cuda.get_current_stream().ptr
        self.comm.allReduce(array.data.ptr, array.data.ptr, array.size, kind,
                            self.nccl.NCCL_SUM, stream)
        self._queued(what)
        return array

    def broadcast(self, array, root=0, what="broadcast"):
        kind = self._check(array, what)
        stream = self.cupy.cuda.get_current_stream().ptr
        self.comm.bcast(array.data.ptr, array.size, kind, root, stream)
        self._queued(what)
        return array

    def broadcast_object(self, obj, root=0, what="broadcast"):
        return self.host.broadcast_object(obj, root, what)

    def barrier(self, what="barrier"):
        self.host.barrier(what)
