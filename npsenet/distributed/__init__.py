"""Synchronous data-parallel training over processes (MPI) and GPUs (NCCL).

    mpiexec -n 2 npsenet train --dataset synthetic     # or: npsenet train --nproc 2 ...

Each process ("rank") holds the whole model and a shard of every global batch; after the
backward pass one all-reduce sums the gradients, which are averaged, and every rank takes
the same SGD step (:mod:`.data_parallel`). ``docs/distributed.md`` explains it.

The pieces:

* :mod:`.communicator`: the interface (``allreduce_sum``, ``broadcast``, ...), the timeout
  on every collective (``NPSENET_COLLECTIVE_TIMEOUT``), :class:`ThreadGroup` (N ranks
  simulated with threads, no MPI needed);
* :mod:`.mpi`: processes and host arrays, through mpi4py;
* :mod:`.nccl`: GPU arrays through ``cupy.cuda.nccl``, MPI only exchanging NCCL's id;
* :mod:`.launch`: ``--nproc N`` starts ``mpiexec`` and forwards the signals;
* :mod:`.data_parallel`: the sharded batches, the step's all-reduce, evaluation;
* this module: the process's world (:func:`init`, :func:`world`, :func:`rank`,
  :func:`is_main_process`) and :func:`parallelize`, which the trainer calls.
"""
from __future__ import annotations

import os
import sys

from .communicator import (DEFAULT_TIMEOUT, TIMEOUT_VARIABLE, CollectiveTimeout, Communicator,
                           DistributedError, ThreadGroup, collective_timeout)
from .data_parallel import (DataParallel, ShardedLoader, ShardWeightedLoss, broadcast_model,
                            rank_seed, shard_bounds, weights_digest)
from .launch import describe_status, launch, launched_size, local_rank

_world = None           # the host communicator of this process, once init() made it
_devices = {}           # device name -> the communicator for arrays there


def init(device="cpu"):
    """Join the ranks that the MPI launcher started (nothing when it started one, or none):
    returns the world's communicator, or None in a single process. With ``device="gpu"``
    it also makes this rank's GPU (local rank modulo the GPU count) current, before
    anything is allocated there."""
    global _world
    if _world is not None:
        return _world
    if launched_size() <= 1:
        return None
    from .mpi import MPICommunicator
    _world = MPICommunicator()
    if device == "gpu":
        import cupy
        count = cupy.cuda.runtime.getDeviceCount()
        cupy.cuda.Device(local_rank(_world.rank) % max(count, 1)).use()
    if _world.rank != 0:
        sys.stdout = open(os.devnull, "w")   # rank 0 prints; errors still reach stderr
    return _world


def world():
    """The world's communicator, or None in a single process (before :func:`init`)."""
    return _world


def rank():
    """This process's rank (0 in a single process)."""
    return 0 if _world is None else _world.rank


def size():
    """The number of ranks (1 in a single process)."""
    return 1 if _world is None else _world.size


def is_main_process():
    """Whether this process writes the files and prints (rank 0, or a single process)."""
    return rank() == 0


def device_comm(device, host=None):
    """The communicator for arrays on ``device``: the MPI one for 'cpu', NCCL for 'gpu'."""
    host = host or _world
    if device == "cpu":
        return host
    if device not in _devices:
        from .nccl import NCCLCommunicator
        _devices[device] = NCCLCommunicator(host)
    return _devices[device]


def run_settings(sync_bn=False, device="cpu"):
    """What a run's configuration records about its ranks: {} in a single process, else
    ``{"nproc": N, "sync_bn": ...}``. Under an MPI launcher it joins the ranks first
    (:func:`init`), so a script that calls :func:`npsenet.train.build_trainer` under
    ``mpiexec`` trains in parallel as ``npsenet train`` does."""
    init(device)
    return {} if size() == 1 else {"nproc": size(), "sync_bn": bool(sync_bn)}


def check_resume(config, out_dir):
    """One line (ValueError) if the run in ``out_dir`` was trained with another number of
    processes than this one has."""
    init(config.get("device", "cpu"))
    saved, now = int(config.get("nproc", 1)), size()
    if saved != now:
        how = f"--nproc {saved}" if saved > 1 else "one process (no --nproc)"
        raise ValueError(f"{out_dir} was trained with {saved} process{'es' * (saved != 1)} "
                         f"but this run has {now}; its data shards and steps depend on that "
                         f"number: resume it with {how}.")


def parallelize(trainer, host=None):
    """Make ``trainer`` one rank of data-parallel training (``trainer`` itself, unchanged,
    in a single process): shard its loaders, weight its loss, convert its batch norms when
    ``config["sync_bn"]``, take rank 0's weights, derive this rank's random stream, and set
    ``trainer.dist`` to the :class:`DataParallel` of its steps. Returns ``trainer``."""
    host = host or init(trainer.config.get("device", "cpu"))
    if host is None or host.size == 1:
        return trainer
    from ..init import manual_seed
    from ..train.config import make_schedule

    config = trainer.config
    comm = device_comm(config.get("device", "cpu"), host)
    if config.get("sync_bn"):
        from ..nn.sync_batchnorm import SyncBatchNorm
        SyncBatchNorm.convert(trainer.model, comm)
    broadcast_model(comm, trainer.model)
    manual_seed(rank_seed(config.get("seed", 0), host.rank))
    steps = len(trainer.train_loader)
    trainer.train_loader = ShardedLoader(trainer.train_loader, host.rank, host.size)
    trainer.test_loader = ShardedLoader(trainer.test_loader, host.rank, host.size, train=False)
    if len(trainer.train_loader) == 0:
        raise ValueError(f"the training set has fewer images than the {host.size} processes; "
                         "use fewer processes or more images.")
    if len(trainer.train_loader) != steps and trainer.schedule is not None:
        trainer.schedule = make_schedule(trainer.optimizer, config, len(trainer.train_loader))
    trainer.loss_fn = ShardWeightedLoss(trainer.loss_fn, trainer.train_loader)
    trainer.progress = trainer.progress and host.rank == 0
    trainer.dist = DataParallel(comm, host, trainer.model, trainer.train_loader,
                                sync_bn=bool(config.get("sync_bn")))
    return trainer


def check_batch(batch_size, nproc):
    """One line (ValueError) if a global batch of ``batch_size`` cannot give each of the
    ``nproc`` ranks two images (batch norm needs two)."""
    if batch_size < 2 * nproc:
        raise ValueError(f"a global batch of {batch_size} split over {nproc} processes leaves "
                         f"fewer than 2 images per process (batch norm needs 2); use "
                         f"--batch-size {2 * nproc} or more.")


def exit_now(code):
    """Leave at once, without ``MPI_Finalize`` (which would wait for a collective that
    timed out); stdout and stderr are flushed first."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


__all__ = [
    "init", "world", "rank", "size", "is_main_process", "device_comm", "parallelize",
    "run_settings", "check_resume", "check_batch", "exit_now", "launch", "launched_size",
    "local_rank", "describe_status", "Communicator", "ThreadGroup", "DistributedError",
    "CollectiveTimeout",
    "collective_timeout", "TIMEOUT_VARIABLE", "DEFAULT_TIMEOUT", "DataParallel",
    "ShardedLoader", "ShardWeightedLoss", "broadcast_model", "rank_seed", "shard_bounds",
    "weights_digest",
]
