"""``npsenet bench --nproc N``: the data-parallel training step beside one process.

    result = run_parallel_benchmark(nproc=2, model="se_resnet20", batch_size=128)
    print(format_parallel(result))

Three figures, images per second of the whole step at the same global batch B:

* **N processes x 1 thread**: ``mpiexec -n N`` ranks, each a training step on B/N images
  (forward, loss, backward, the all-reduce of the gradients, SGD); every rank's step ends
  with the same all-reduce, so the step time is the same on each; rank 0's median counts.
* **1 process x N threads**: ``npsenet bench`` at batch B with N BLAS threads;
* **PyTorch, N threads**: the same step in PyTorch, interleaved with the previous one in
  that process (see :mod:`npsenet.bench`), when PyTorch is installed.

The first runs in its own processes and the other two in another, one after the other.
On a shared machine the load changes from one run to the next, so the comparison runs in
``rounds`` rounds (3 by default), each one run of the N processes and then one of the
single process (with PyTorch); each figure is the median over the rounds of each run's
median step, and ``speedup`` and ``torch_ratio`` are the medians of the rounds' own ratios
(each a pair of runs taken one right after the other). ``rounds_detail`` keeps every
round's figures.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import types

from .communicator import DistributedError
from .launch import command


def _environment(threads):
    env = dict(os.environ)
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = str(threads)
    return env


def _last_json(text, what):
    try:
        return json.loads(text)              # npsenet bench --json: one indented object
    except ValueError:
        pass
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise DistributedError(f"the {what} printed no result; its output ended with: "
                           f"{text.strip()[-300:]!r}")


def _run(cmd, env, what, timeout):
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DistributedError(f"the {what} took more than {timeout} s; use fewer --steps.") \
            from None
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise DistributedError(f"the {what} failed (exit status {out.returncode}): {last}")
    return _last_json(out.stdout, what)


def run_parallel_benchmark(nproc=2, model="se_resnet20", batch_size=128, image_size=32,
                           dtype="float32", steps=10, warmup=2, compare_torch=None,
                           timeout=1800, rounds=3, progress=None):
    """The three figures of the module's description, as a dict (seconds and images/s)."""
    if nproc < 2:
        raise ValueError(f"--nproc must be at least 2 to compare with one process, got {nproc}.")
    if batch_size < 2 * nproc:
        raise ValueError(f"a global batch of {batch_size} leaves fewer than 2 images for each "
                         f"of {nproc} processes; use --batch-size {2 * nproc} or more.")
    if int(rounds) != rounds or rounds < 1:
        raise ValueError(f"--rounds must be a positive integer, got {rounds!r}.")
    settings = dict(model=model, batch_size=batch_size, image_size=image_size, dtype=dtype,
                    steps=steps, warmup=warmup)
    single = [sys.executable, "-m", "npsenet", "bench", "--model", model, "--batch-size",
              str(batch_size), "--image-size", str(image_size), "--dtype", dtype,
              "--steps", str(steps), "--warmup", str(warmup), "--no-memory", "--json",
              "--no-progress"]
    if compare_torch is False:
        single.append("--no-torch")
    detail = []
    for index in range(int(rounds)):
        if progress is not None:
            progress(f"round {index + 1}/{rounds}: {nproc} processes x 1 thread, then 1 "
                     f"process x {nproc} threads")
        ranks = _run(command(["bench", "--nproc-worker", json.dumps(settings)], nproc),
                     _environment(1), f"{nproc}-process benchmark", timeout)
        one = _run(single, _environment(nproc), "one-process benchmark", timeout)
        detail.append({"parallel_s": ranks["step_s"], "allreduce_s": ranks["allreduce_s"],
                       "single_s": one["npsenet_s"], "torch_s": one.get("torch_s")})
    median = statistics.median

    def middle(key):
        values = [d[key] for d in detail if d[key] is not None]
        return median(values) if values else None

    result = dict(settings, nproc=nproc, rounds=int(rounds), parallel_s=middle("parallel_s"),
                  allreduce_s=middle("allreduce_s"), single_s=middle("single_s"),
                  torch_s=middle("torch_s"), rounds_detail=detail)
    result["parallel_images_per_s"] = batch_size / result["parallel_s"]
    result["single_images_per_s"] = batch_size / result["single_s"]
    result["torch_images_per_s"] = batch_size / result["torch_s"] if result["torch_s"] else None
    result["speedup"] = median([d["single_s"] / d["parallel_s"] for d in detail])
    result["torch_ratio"] = (median([d["torch_s"] / d["parallel_s"] for d in detail])
                             if result["torch_s"] else None)
    return result


def format_parallel(r):
    """A few human-readable lines."""
    n = r["nproc"]
    rounds = r.get("rounds", 1)
    lines = [f"{r['model']} training step, global batch {r['batch_size']}, "
             f"{r['image_size']}x{r['image_size']}, {r['dtype']}, cpu (median of {r['steps']} "
             f"steps{f', then of {rounds} rounds' if rounds > 1 else ''})",
             f"  npsenet, {n} processes x 1 thread: {r['parallel_s'] * 1e3:8.1f} ms "
             f"{r['parallel_images_per_s']:8.0f} images/s  (all-reduce "
             f"{r['allreduce_s'] * 1e3:.1f} ms of it)",
             f"  npsenet, 1 process x {n} threads: {r['single_s'] * 1e3:8.1f} ms "
             f"{r['single_images_per_s']:8.0f} images/s",
             f"  speed-up of {n} processes: {r['speedup']:.2f}x"]
    if r.get("torch_s"):
        lines.append(f"  PyTorch, {n} threads:              {r['torch_s'] * 1e3:8.1f} ms "
                     f"{r['torch_images_per_s']:8.0f} images/s  (npsenet {n} processes / "
                     f"PyTorch: {r['torch_ratio']:.2f}x)")
    return "\n".join(lines)


def rank_benchmark(settings):
    """One rank's side (under ``mpiexec``): the median step time, all-reduce included, and
    the median all-reduce time; rank 0 prints them as one JSON line."""
    import numpy as np

    from ..bench import NpsenetStep
    from . import DataParallel, init, shard_bounds

    comm = init()
    if comm is None:
        raise DistributedError("npsenet bench --nproc-worker runs under mpiexec; use "
                               "npsenet bench --nproc N.")
    lo, hi = shard_bounds(settings["batch_size"], comm.rank, comm.size)
    step = NpsenetStep(settings["model"], hi - lo, settings["image_size"],
                       np.dtype(settings["dtype"]), "cpu", "train")
    shard = types.SimpleNamespace(weight=(hi - lo) * comm.size / settings["batch_size"],
                                  global_count=settings["batch_size"])
    parallel = DataParallel(comm, comm, step.model, shard)
    reduce_times = []

    def one_step():
        step.optimizer.zero_grad()
        loss = step.loss_fn(step.model(step.x), step.y)
        step.model.backward(step.loss_fn.backward(shard.weight))
        started = time.perf_counter()
        loss, _ = parallel.all_reduce(loss, 0)
        reduce_times.append(time.perf_counter() - started)
        step.optimizer.step()
        float(loss)

    for _ in range(settings["warmup"]):
        one_step()
    comm.barrier()
    times = []
    for _ in range(settings["steps"]):
        started = time.perf_counter()
        one_step()
        times.append(time.perf_counter() - started)
    if comm.rank == 0:
        timed = reduce_times[settings["warmup"]:]
        print(json.dumps({"step_s": statistics.median(times),
                          "allreduce_s": statistics.median(timed)}), flush=True)
