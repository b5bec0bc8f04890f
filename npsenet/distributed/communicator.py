"""What every backend offers: a communicator of N ranks, each collective with a timeout.

    comm.rank, comm.size
    comm.allreduce_sum(array)          # the sum over the ranks, in place; returns array
    comm.broadcast(array, root=0)      # root's values on every rank, in place
    comm.broadcast_object(obj, root=0) # any picklable object (small: settings, ids)
    comm.barrier()

Every collective waits at most :func:`collective_timeout` seconds for the other ranks
(``NPSENET_COLLECTIVE_TIMEOUT``, default 300): a rank that died or hangs makes the others
raise :class:`CollectiveTimeout`, one line that says which collective waited, instead of
waiting for ever. The backends: :class:`~npsenet.distributed.mpi.MPICommunicator`
(processes, host arrays) and :class:`~npsenet.distributed.nccl.NCCLCommunicator` (GPU
arrays); :class:`ThreadGroup` simulates N ranks with threads inside one process (for the
notebook and the tests, no MPI needed).
"""
from __future__ import annotations

import os
import threading

import numpy as np

TIMEOUT_VARIABLE = "NPSENET_COLLECTIVE_TIMEOUT"
DEFAULT_TIMEOUT = 300.0
"""Seconds a collective waits for the other ranks by default. The ranks do the same work
between two collectives, so a collective waits only for their difference (rank 0's
checkpoint and curves at the end of an epoch), not for a whole step."""


class DistributedError(RuntimeError):
    """Something went wrong between the ranks (a message for the user, one line)."""


class CollectiveTimeout(DistributedError):
    """A collective got no answer from the other ranks within the timeout."""


def collective_timeout():
    """The timeout in seconds: ``NPSENET_COLLECTIVE_TIMEOUT`` if set, else 300."""
    text = os.environ.get(TIMEOUT_VARIABLE, "").strip()
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise DistributedError(f"{TIMEOUT_VARIABLE} must be a positive number of seconds, got "
                               f"{text!r}; try {TIMEOUT_VARIABLE}=300.")
    return value


def timeout_error(comm, what, seconds):
    """The :class:`CollectiveTimeout` of rank ``comm.rank`` waiting ``seconds`` in ``what``."""
    return CollectiveTimeout(
        f"rank {comm.rank} of {comm.size}: the {what} got no answer from the other ranks in "
        f"{seconds:g} s: a rank has died or hangs (see its own error above); if it is only "
        f"slow, raise {TIMEOUT_VARIABLE}.")


class Communicator:
    """The interface (see the module's description). ``rank`` counts from 0; rank 0 is
    the one that writes files and prints."""

    rank = 0
    size = 1

    def __init__(self, timeout=None):
        self.timeout = collective_timeout() if timeout is None else float(timeout)

    def allreduce_sum(self, array, what="all-reduce"):
        """Replace ``array`` by its sum over the ranks (in place) and return it."""
        return array

    def broadcast(self, array, root=0, what="broadcast"):
        """Replace ``array`` by rank ``root``'s (in place) and return it."""
        return array

    def broadcast_object(self, obj, root=0, what="broadcast"):
        """Rank ``root``'s ``obj`` (picklable), on every rank."""
        return obj

    def barrier(self, what="barrier"):
        """Wait until every rank is here."""

    @property
    def is_main(self):
        """Whether this is rank 0."""
        return self.rank == 0

    def __repr__(self):
        return f"{type(self).__name__}(rank={self.rank}, size={self.size})"


class ThreadGroup:
    """N simulated ranks in one process, one thread each: ``group.comms[r]`` is rank r's
    communicator. Sums are taken in rank order, so every rank gets the same numbers.

        group = ThreadGroup(2)
        results = group.run(lambda comm: work(comm))   # work runs once per rank, in threads
    """

    def __init__(self, size, timeout=30.0):
        if int(size) != size or size < 1:
            raise ValueError(f"ThreadGroup: size must be a positive integer, got {size!r}.")
        self.size = int(size)
        self._barrier = threading.Barrier(self.size, timeout=timeout)
        self._slots = [None] * self.size
        self.comms = [_ThreadRank(self, r, timeout) for r in range(self.size)]

    def run(self, work):
        """``[work(comms[0]), ..., work(comms[N-1])]``, each call in its own thread; an
        error in any rank is raised here."""
        results, errors = [None] * self.size, [None] * self.size

        def target(r):
            try:
                results[r] = work(self.comms[r])
            except BaseException as exc:   # noqa: BLE001 (re-raised below)
                errors[r] = exc
                self._barrier.abort()

        threads = [threading.Thread(target=target, args=(r,)) for r in range(self.size)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for exc in errors:
            if exc is not None and not isinstance(exc, threading.BrokenBarrierError):
                raise exc
        for exc in errors:
            if exc is not None:
                raise exc
        return results

    def _exchange(self, rank, value, combine):
        self._slots[rank] = value
        self._barrier.wait()
        result = combine(list(self._slots))
        self._barrier.wait()
        return result


class _ThreadRank(Communicator):
    def __init__(self, group, rank, timeout):
        super().__init__(timeout)
        self.group, self.rank, self.size = group, rank, group.size

    def _wait(self, value, combine, what):
        try:
            return self.group._exchange(self.rank, value, combine)
        except threading.BrokenBarrierError:
            raise timeout_error(self, what, self.timeout) from None

    def allreduce_sum(self, array, what="all-reduce"):
        def add(arrays):
            total = arrays[0].copy()
            for a in arrays[1:]:
                total += a
            return total
        array[...] = self._wait(array, add, what)
        return array

    def broadcast(self, array, root=0, what="broadcast"):
        array[...] = self._wait(array, lambda arrays: np.array(arrays[root], copy=True), what)
        return array

    def broadcast_object(self, obj, root=0, what="broadcast"):
        return self._wait(obj, lambda objs: objs[root], what)

    def barrier(self, what="barrier"):
        self._wait(None, lambda _: None, what)
