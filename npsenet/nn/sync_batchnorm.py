"""``SyncBatchNorm``: batch norm whose training statistics are those of the global batch
that several processes share (``npsenet train --sync-bn``). The pair it calls is that of
the active path: ``functional/sync_batchnorm.py``, which gives the equations of both
passes, or its fast form in ``fast/elementwise.py``.

It is a :class:`~npsenet.nn.BatchNorm2d` (same parameters, buffers and state_dict keys, so
checkpoints move freely between the two) whose training-mode forward and backward
all-reduce their per-channel sums through ``comm``. The running statistics are updated
from the global mean and variance, so they are the same on every rank. Evaluation mode is
batch norm's, with no communication. Without ``comm`` (or with one rank) it is batch norm.

    model = ns.models.se_resnet20()
    SyncBatchNorm.convert(model, comm)      # every BatchNorm2d in place, weights kept
"""
from __future__ import annotations

from . import functional
from ._checks import check_input
from .norm import BatchNorm2d
from .switch import active_path


def _sync_path():
    """The active path (``npsenet/nn/switch.py``) where it has the synchronised pair (the
    plain and the fast one do), else the plain path (a custom set of pairs, such as the
    course kit's, may hold only the single-process ones)."""
    path = active_path()
    return path if hasattr(path, "sync_batchnorm_forward") else functional


class SyncBatchNorm(BatchNorm2d):
    """Batch norm for (N, C, H, W) shards of a global batch, statistics all-reduced.

    Args:
        num_features, eps, momentum: as :class:`~npsenet.nn.BatchNorm2d`.
        comm: the communicator of the ranks (``allreduce_sum``), e.g.
            ``npsenet.distributed.world()``; not part of the state_dict.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, comm=None):
        super().__init__(num_features, eps=eps, momentum=momentum)
        object.__setattr__(self, "comm", comm)

    @classmethod
    def convert(cls, model, comm):
        """Turn every ``BatchNorm2d`` of ``model`` into a ``SyncBatchNorm`` on ``comm``, in
        place (the layers keep their parameters, buffers and names); returns ``model``."""
        for module in model.modules():
            if isinstance(module, BatchNorm2d):
                module.__class__ = cls
                object.__setattr__(module, "comm", comm)
        return model

    def extra_repr(self):
        size = getattr(self.comm, "size", 1)
        return super().extra_repr() + f", ranks={size}"

    def forward(self, x):
        comm = self.__dict__.get("comm")
        if not self.training or comm is None or getattr(comm, "size", 1) == 1:
            object.__setattr__(self, "_synced", False)
            return super().forward(x)
        check_input(x, f"SyncBatchNorm({self.num_features})", 4, "(N, C, H, W)",
                    self.num_features, dtype=self.weight.dtype)
        path = _sync_path()
        y, mean, var, count, cache = path.sync_batchnorm_forward(
            x, self.weight.data, self.bias.data, self.eps, comm)
        if isinstance(count, int) and count < 2:
            raise ValueError(f"SyncBatchNorm: training needs more than one value per channel "
                             f"over all ranks, got {count}. Use a larger global batch, or "
                             "call .eval().")
        self._update_running_stats(mean, var, count)
        object.__setattr__(self, "_synced", True)
        return self.keep(path, cache, y)

    def backward(self, dout):
        if not self.__dict__.get("_synced"):
            return super().backward(dout)
        path, cache = self.kept(dout)
        dx, dgamma, dbeta = path.sync_batchnorm_backward(dout, cache)
        self.weight.accumulate_grad(dgamma)
        self.bias.accumulate_grad(dbeta)
        return dx
