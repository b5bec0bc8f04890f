"""Synchronous data-parallel SGD: the pieces that turn a :class:`~npsenet.train.Trainer`
into one of N ranks training one model (:func:`parallelize`).

* **The batches** (:class:`ShardedLoader`). Every rank runs the same loader, with the same
  seed, so every rank draws the same global batches in the same order; rank r makes only
  its shard, rows ``[lo_r, hi_r)`` of :func:`shard_bounds`. When the global batch B does not
  divide by N, the first ``B % N`` ranks take one image more, and each rank's gradient is
  weighted by ``w_r = n_r N / B`` (1 when it divides) so that the step is still that of
  the mean loss over the B images. An epoch's last batch smaller than N is skipped in
  training (fewer than N images of the epoch): some rank would have no image.
* **The step** (:meth:`DataParallel.all_reduce`), after the backward pass and before the
  optimizer: one flat buffer holds every gradient, the batch-norm running statistics
  (without ``--sync-bn``: each rank normalises over its own shard, as PyTorch's DDP, and
  the running statistics are averaged so every rank keeps the same), the loss and the
  count of correct predictions, and on the CPU the stop flags. One all-reduce sums it;
  the gradients are then divided by N (the sum, then the average) and every rank applies
  the same update to the same weights, so the ranks stay bit-identical.
* **Signals**: SIGINT/SIGTERM reach the ranks at different moments, so a rank only stops
  at a step where the all-reduced flags say that one rank got a signal
  (:meth:`DataParallel.agreed_stop`): every rank stops after the same step, and rank 0
  writes the checkpoint of that step.
* **The start**: every rank builds the model from the same seed, then takes rank 0's
  weights (broadcast), then reseeds ``ns.manual_seed`` with a stream derived from the run's
  seed and its rank (dropout masks differ between shards).
* **Evaluation**: each rank evaluates a shard of the test batches; one all-reduce of the
  loss sum, correct count and image count gives the whole test set's figures.
"""
from __future__ import annotations

import signal

import numpy as np

from ..backend import get_array_module, to_numpy


def shard_bounds(count, rank, size):
    """Rows ``(lo, hi)`` of rank ``rank``'s shard of a batch of ``count`` rows split over
    ``size`` ranks: consecutive, the first ``count % size`` ranks one row longer."""
    base, extra = divmod(int(count), int(size))
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


class ShardedLoader:
    """Rank ``rank``'s shards of the batches of ``loader`` (a
    :class:`~npsenet.data.BatchLoader`); everything else (``state_dict``, ``device``,
    ``batch_size``, ...) is the loader's. Every rank draws the random crops and flips of
    the whole global batch and makes only its own rows of it
    (:meth:`~npsenet.data.BatchLoader.batch_rows`): the shards are bit for bit those of
    one process's batch, and no rank spends time on the others' images.

    Attributes (of the batch last yielded): ``global_count`` (B) and ``weight``
    (``n_r N / B``).

    ``train=True``: a batch smaller than N is skipped by every rank (it is the epoch's last
    one), so that every rank takes part in every step. ``train=False`` (evaluation, no
    collective inside): a rank whose shard is empty just has nothing to evaluate.
    """

    def __init__(self, loader, rank, size, train=True):
        self.loader, self.rank, self.size, self.train = loader, int(rank), int(size), train
        self.global_count, self.weight = 0, 1.0

    def __getattr__(self, name):
        if name == "loader":
            raise AttributeError(name)
        return getattr(self.loader, name)

    def _last_batch(self):
        loader = self.loader
        full = len(loader) * loader.batch_size
        if loader.drop_last:
            return loader.batch_size
        return len(loader.images) - full + loader.batch_size

    def __len__(self):
        steps = len(self.loader)
        if self.train and steps and self._last_batch() < self.size:
            steps -= 1
        return steps

    def _rows(self, count):
        """This rank's rows of a batch of ``count`` images, or None to skip the batch."""
        if count < self.size and self.train:
            return None             # the epoch's last batch; consumed, so the epoch ends
        lo, hi = shard_bounds(count, self.rank, self.size)
        return (lo, hi) if hi > lo else None

    def __iter__(self):
        for x, y, count in self.loader.batch_rows(self._rows):
            if x is None:
                continue
            self.global_count, self.weight = count, len(y) * self.size / count
            yield x, y

    def __repr__(self):
        return f"ShardedLoader(rank {self.rank} of {self.size}, {self.loader!r})"


class ShardWeightedLoss:
    """The trainer's loss, whose backward is scaled by the shard's weight ``w_r`` (see the
    module's description): ``backward()`` returns ``w_r dL_r/dlogits``, a new array."""

    def __init__(self, loss_fn, loader):
        self.loss_fn, self.loader = loss_fn, loader

    def __getattr__(self, name):
        if name == "loss_fn":
            raise AttributeError(name)
        return getattr(self.loss_fn, name)

    def __call__(self, logits, labels):
        return self.loss_fn(logits, labels)

    def backward(self, dloss=1.0):
        return self.loss_fn.backward(dloss * self.loader.weight)


class AgreedStop:
    """The loop's view of the signals: ``signum`` changes only at an all-reduce, to the
    signal one of the ranks got (SIGTERM before SIGINT), so every rank stops together."""

    def __init__(self, local):
        self.local, self.signum = local, None

    def flags(self):
        got = self.local.signum
        return [float(got == signal.SIGINT), float(got == signal.SIGTERM)]

    def agree(self, flags):
        if flags[1] > 0:
            self.signum = signal.SIGTERM
        elif flags[0] > 0:
            self.signum = signal.SIGINT


class DataParallel:
    """One rank's side of the data-parallel step (see the module's description).

    Args:
        comm: the communicator for arrays on the model's device (MPI on the CPU, NCCL on
            the GPU).
        host: the MPI communicator (the stop flags on the GPU, the test metrics).
        model: the rank's model (the same weights on every rank).
        loader: the :class:`ShardedLoader` of the training batches.
        sync_bn: whether the model's batch norms are :class:`~npsenet.nn.sync_batchnorm.
            SyncBatchNorm` (their running statistics are then the same already).
    """

    def __init__(self, comm, host, model, loader, sync_bn=False):
        self.comm, self.host, self.model, self.loader = comm, host, model, loader
        self.params = model.parameters()
        self.buffers = [] if sync_bn else [
            (module, name) for module in model.modules() for name in module._buffers
            if getattr(module, name).dtype.kind == "f"]
        self.on_host = isinstance(self.params[0].data, np.ndarray)
        self._flat, self._steps, self._stop = None, 0, None

    @property
    def is_main(self):
        return self.host.rank == 0

    @property
    def count(self):
        """The number of images in the global batch of the last step."""
        return self.loader.global_count

    def agreed_stop(self, local_stop):
        """The stop object the loop should check, for the signals ``local_stop`` records."""
        self._stop = AgreedStop(local_stop)
        return self._stop

    def _layout(self):
        sizes = [p.size for p in self.params] + [getattr(m, n).size for m, n in self.buffers]
        dtype = np.result_type(*[p.dtype for p in self.params])
        xp = get_array_module(self.params[0].data)
        return xp.zeros(sum(sizes) + 4, dtype=dtype)

    def all_reduce(self, loss, correct):
        """Sum every rank's gradients (weighted by its shard), running statistics, loss and
        correct count in one all-reduce, then average what is averaged. Sets each
        parameter's ``grad`` to the average; returns (the global batch's mean loss, its
        correct count, its size)."""
        if self._flat is None:
            self._flat = self._layout()
        flat, offset, size = self._flat, 0, self.comm.size
        self._steps += 1
        for p in self.params:
            segment = flat[offset:offset + p.size]
            if p.grad is None:
                segment[...] = 0
            else:
                segment.reshape(p.shape)[...] = p.grad
            offset += p.size
        for module, name in self.buffers:
            value = getattr(module, name)
            flat[offset:offset + value.size].reshape(value.shape)[...] = value
            offset += value.size
        flat[offset] = loss * self.loader.weight
        flat[offset + 1] = correct
        flags = self._stop.flags() if self._stop is not None else [0.0, 0.0]
        what = f"all-reduce of the gradients (step {self._steps} of this process)"
        if self.on_host:
            flat[offset + 2:offset + 4] = flags
            self.comm.allreduce_sum(flat, what)
            flags = flat[offset + 2:offset + 4].tolist()
        else:
            self.comm.allreduce_sum(flat, what)
            flags = self.host.allreduce_sum(np.array(flags), "all-reduce of the stop flags")
        if self._stop is not None:
            self._stop.agree(flags)
        flat[:offset + 1] /= size                          # sum, then average
        start = 0
        for p in self.params:
            if p.grad is not None:
                p.grad = flat[start:start + p.size].reshape(p.shape)
            start += p.size
        for module, name in self.buffers:
            value = getattr(module, name)
            setattr(module, name, flat[start:start + value.size].reshape(value.shape).copy())
            start += value.size
        return flat[offset].copy(), flat[offset + 1].copy()

    def evaluate(self, model, loader, loss_fn):
        """:func:`npsenet.train.evaluate` over every rank's shard of the test batches:
        (loss, accuracy) of the whole test set, the same on every rank."""
        from ..train.loop import evaluation_sums

        total = self.host.allreduce_sum(np.array(evaluation_sums(model, loader, loss_fn),
                                                 dtype=np.float64),
                                        "all-reduce of the test metrics")
        if total[2] == 0:
            raise ValueError("evaluate: the test loader yielded no batches on any rank.")
        return float(total[0] / total[2]), float(total[1] / total[2])


def broadcast_model(comm, model):
    """Every array of ``model.state_dict()`` replaced by rank 0's (in place)."""
    for name, array in model.state_dict().items():
        contiguous = array.flags.c_contiguous
        buf = array if contiguous else get_array_module(array).ascontiguousarray(array)
        comm.broadcast(buf, 0, f"broadcast of rank 0's {name}")
        if not contiguous:
            array[...] = buf


def rank_seed(seed, rank):
    """The seed of rank ``rank``'s own random stream, derived from the run's ``seed``."""
    return int(np.random.SeedSequence([int(seed), int(rank)]).generate_state(1)[0])


def weights_digest(model):
    """A float64 checksum pair of the model's parameters (to compare ranks cheaply)."""
    total = np.zeros(2)
    for p in model.parameters():
        host = to_numpy(p.data).astype(np.float64)
        total += (host.sum(), (host * host).sum())
    return total
