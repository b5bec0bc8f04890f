"""What each rank runs in tests/test_distributed.py (under ``mpiexec -n 2``).

    python distributed_worker.py step OUT.npz        # one SGD step, SyncBN, float32 and float64,
                                                     # of SE-ResNet-20 and of its tanh twin
    python distributed_worker.py epoch OUT.json DIR  # one epoch; every rank's weights' hash
    python distributed_worker.py die                 # rank 1 dies; rank 0 must time out
"""
from __future__ import annotations

import hashlib
import json
import os
import sys

import numpy as np

import npsenet as ns
from npsenet import distributed
from npsenet import train as training
from npsenet.distributed.mpi import MPICommunicator
from npsenet.nn.sync_batchnorm import SyncBatchNorm

BATCH, SIZE = 128, 16


def batch():
    """The global batch: uint8 images and labels, the same on every rank."""
    rng = np.random.default_rng(7)
    return (rng.integers(0, 256, (BATCH, 3, SIZE, SIZE), dtype=np.uint8),
            rng.integers(0, 10, BATCH).astype(np.int64))


def smooth(model):
    """The model with every ReLU replaced by tanh: no kink, so no activation that a
    computation in float32 puts on the other side of 0 from another (see the test)."""
    for _, module in list(model.named_modules()):
        for name, child in list(module._modules.items()):
            if isinstance(child, ns.nn.ReLU):
                setattr(module, name, ns.nn.Tanh())
    return model


def one_step(comm, dtype, variant="relu"):
    """(gradients, weights after one SGD step) of rank ``comm.rank``'s share of the batch,
    with SyncBatchNorm (comm None: the whole batch in one process, plain batch norm), of
    SE-ResNet-20 (``variant="relu"``) or of its tanh twin (``"smooth"``)."""
    ns.manual_seed(0)
    model = ns.models.se_resnet20(num_classes=10).to(dtype=dtype)
    if variant == "smooth":
        model = smooth(model)
    images, labels = batch()
    loader = ns.data.BatchLoader(images, labels, BATCH, shuffle=False, augment=False,
                                 normalize=None)
    loss_fn = ns.nn.SoftmaxCrossEntropy()
    optimizer = ns.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    parallel = None
    if comm is not None:
        SyncBatchNorm.convert(model, comm)
        loader = distributed.ShardedLoader(loader, comm.rank, comm.size)
        loss_fn = distributed.ShardWeightedLoss(loss_fn, loader)
        parallel = distributed.DataParallel(comm, comm, model, loader, sync_bn=True)
    x, y = next(iter(loader))
    loss = loss_fn(model(x.astype(dtype)), y)
    model.zero_grad()
    model.backward(loss_fn.backward())
    if parallel is not None:
        loss, _ = parallel.all_reduce(loss, (y == y).sum())
    grads = {name: p.grad.copy() for name, p in model.named_parameters()}
    optimizer.step()
    state = {name: np.array(a, copy=True) for name, a in model.state_dict().items()}
    return float(loss), grads, state


VARIANTS = [(variant, dtype) for variant in ("relu", "smooth")
            for dtype in (np.float32, np.float64)]


def variant_key(variant, dtype):
    """"float32", "float64", "smooth-float32", "smooth-float64": the npz keys' prefix."""
    return ("" if variant == "relu" else f"{variant}-") + np.dtype(dtype).name


def step(out):
    comm = MPICommunicator()
    arrays = {}
    for variant, dtype in VARIANTS:
        loss, grads, state = one_step(comm, dtype, variant)
        key = variant_key(variant, dtype)
        arrays[f"{key}/loss"] = np.array(loss)
        arrays.update({f"{key}/grad/{k}": v for k, v in grads.items()})
        arrays.update({f"{key}/state/{k}": v for k, v in state.items()})
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(arrays[k]).tobytes()
                                     for k in sorted(arrays))).hexdigest()
    digests = comm.comm.gather(digest, root=0)
    if comm.rank == 0:
        np.savez(out, digests=np.array(digests), **arrays)


def epoch(out, run_dir):
    config = training.default_config(model="resnet20", dataset="synthetic", epochs=1,
                                     batch_size=35, limit_train=136, limit_test=40,
                                     warmup_epochs=0)
    trainer = training.build_trainer(config, run_dir, progress=False)
    trainer.fit()
    comm = distributed.world()              # joined by build_trainer, under mpiexec
    h = hashlib.sha256()
    for name, array in trainer.model.state_dict().items():
        h.update(name.encode())
        h.update(np.ascontiguousarray(array).tobytes())
    digests = comm.comm.gather(h.hexdigest(), root=0)
    if comm.rank == 0:
        with open(out, "w") as f:
            json.dump({"digests": digests, "metrics": trainer.metrics,
                       "steps": len(trainer.train_loader)}, f)


def die():
    comm = MPICommunicator()
    if comm.rank == 1:
        os._exit(1)
    try:
        comm.allreduce_sum(np.ones(4), "all-reduce of the gradients (step 1)")
    except distributed.CollectiveTimeout as exc:
        print(f"npsenet: error: {exc}", file=sys.stderr)
        distributed.exit_now(3)
    distributed.exit_now(0)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "step":
        step(sys.argv[2])
    elif mode == "epoch":
        epoch(sys.argv[2], sys.argv[3])
    elif mode == "die":
        die()
