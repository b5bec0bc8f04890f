"""Time a training step (forward, loss, backward, SGD) or an eval forward pass, and
compare it with the same step in PyTorch, run in the same process.

    result = run_benchmark(model="se_resnet20", batch_size=128)     # beside PyTorch if installed
    print(format_result(result))

``npsenet bench`` (``npsenet/cli/commands/bench.py``) and ``benchmarks/bench_step.py`` run
the same from the command line.

Method. Both frameworks get the same architecture (``npsenet.torch_reference``), the
same weights and the same batch. Their steps are *interleaved* (npsenet, PyTorch,
npsenet, ...), so a busy machine slows both alike, and each figure is the median over
the timed steps after warm-up. After each switch, one untimed *settle* step runs before
the timed one. A switch leaves the other framework's idle worker threads spinning for a
while (OpenBLAS's for up to ~0.1 s, OpenMP's similarly), which slows the first step
that follows; waiting them out with a pause instead idles the CPU, and the step after
an idle spell is slow too (measured here: after 0.3 s of sleep npsenet's next training
step took ~20% longer, PyTorch's ~4%). With the settle step every timed step is a
steady-state step, as in a training loop, where steps follow each other.

Peak memory is measured in a fresh subprocess per framework: the rise of the process's
peak resident memory (Linux ``VmHWM``, reset through ``/proc/self/clear_refs``) over four
steps above its level just before them, i.e. what a step needs on top of the model and
the batch, with glibc told to return freed blocks at once (see
:func:`measure_peak_memory`).
On the GPU, CuPy's and PyTorch's own allocator peaks are reported instead.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from . import backend
from .models import build_model
from .nn import SoftmaxCrossEntropy, no_grad
from .nn.switch import fast_path, is_fast
from .optim import SGD


def _batch(batch_size, image_size, num_classes, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch_size, 3, image_size, image_size)).astype(np.float32)
    y = rng.integers(0, num_classes, batch_size).astype(np.int64)
    return x, y


class NpsenetStep:
    """One npsenet training step or eval forward, on a fixed batch."""

    def __init__(self, model_name, batch_size, image_size, dtype, device, mode):
        self.model = build_model(model_name).to(device=device, dtype=dtype)
        self.mode = mode
        x, y = _batch(batch_size, image_size, self.model.options["num_classes"])
        self.x = backend.to_device(x.astype(dtype), device)
        self.y = backend.to_device(y, device)
        self.loss_fn = SoftmaxCrossEntropy()
        self.optimizer = SGD(self.model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        self.device = device
        self.model.train(mode == "train")

    def __call__(self):
        if self.mode == "eval":
            with no_grad():               # as PyTorch's side runs under torch.no_grad()
                self.model(self.x)
        else:
            self.optimizer.zero_grad()
            loss = self.loss_fn(self.model(self.x), self.y)
            self.model.backward(self.loss_fn.backward())
            self.optimizer.step()
            float(loss)  # a scalar coming back, as in a real training loop
        backend.synchronize(self.device)


class TorchStep:
    """The same step in PyTorch (eager), with the same weights and batch."""

    def __init__(self, np_step):
        import torch

        from .torch_reference import build_torch_model, copy_weights
        self.torch = torch
        model = np_step.model
        self.model = copy_weights(model, build_torch_model(model.name, **model.options))
        self.device = "cuda" if np_step.device == "gpu" else "cpu"
        dtype = {np.float32: torch.float32, np.float64: torch.float64}[
            np.dtype(np_step.x.dtype).type]
        self.model.to(device=self.device, dtype=dtype)
        self.x = torch.as_tensor(backend.to_numpy(np_step.x), device=self.device)
        self.y = torch.as_tensor(backend.to_numpy(np_step.y), device=self.device)
        self.mode = np_step.mode
        self.model.train(self.mode == "train")
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9,
                                         weight_decay=5e-4)

    def __call__(self):
        torch = self.torch
        if self.mode == "eval":
            with torch.no_grad():
                self.model(self.x)
        else:
            self.optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(self.model(self.x), self.y)
            loss.backward()
            self.optimizer.step()
            loss.item()
        if self.device == "cuda":
            torch.cuda.synchronize()


def torch_available(device="cpu"):
    """Whether PyTorch is installed and, for ``device="gpu"``, built with CUDA and seeing a
    GPU (a CPU-only PyTorch beside CuPy cannot run the comparison on the GPU)."""
    try:
        import torch
    except ImportError:
        return False
    return backend.normalize_device(device) == "cpu" or bool(torch.cuda.is_available())


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_benchmark(model="se_resnet20", batch_size=128, image_size=32, dtype="float32",
                  device="cpu", mode="train", steps=10, warmup=2, compare_torch=None,
                  memory=True, settle=1, plain=False, progress=None):
    """Median step times (seconds) of npsenet and, when available, PyTorch.

    ``plain`` times npsenet's plain path (``npsenet.nn.functional``) instead of the fast
    one (the default). ``progress``, when given, is called with a short line (a str) as
    each phase starts and after each timed step (``npsenet bench`` prints them on stderr).

    ``settle`` untimed steps run after each switch between the frameworks, before the
    timed one (see the module docstring). Returns a dict with ``npsenet_s``, ``torch_s``
    (or None), ``ratio``, ``images_per_s``, the peak memory figures (bytes) and the
    settings.
    """
    with fast_path(not plain):
        return _run_benchmark(model, batch_size, image_size, dtype, device, mode, steps,
                              warmup, compare_torch, memory, settle, progress or _silent)


def _silent(line):
    """The default ``progress``: say nothing."""


def _run_benchmark(model, batch_size, image_size, dtype, device, mode, steps, warmup,
                   compare_torch, memory, settle, progress):
    device = backend.normalize_device(device)
    dtype = np.dtype(dtype)
    if compare_torch is None:
        compare_torch = torch_available(device)
    progress(f"building {model} (batch {batch_size}, {image_size}x{image_size}, "
             f"{dtype.name}, {device})" + (" and its PyTorch twin" if compare_torch else ""))
    ours = NpsenetStep(model, batch_size, image_size, dtype, device, mode)
    theirs = TorchStep(ours) if compare_torch else None
    for index in range(warmup):
        progress(f"warm-up step {index + 1}/{warmup}")
        ours()
        if theirs:
            theirs()
    ours_t, theirs_t = [], []
    for index in range(steps):
        for step, times in ((ours, ours_t), (theirs, theirs_t)):
            if step is None:
                continue
            for _ in range(settle if theirs else 0):
                step()
            times.append(_timed(step))
        progress(f"step {index + 1}/{steps}: npsenet {ours_t[-1] * 1e3:.1f} ms"
                 + (f", PyTorch {theirs_t[-1] * 1e3:.1f} ms" if theirs else ""))
    result = {
        "model": model, "mode": mode, "batch_size": batch_size, "image_size": image_size,
        "dtype": dtype.name, "device": device, "steps": steps,
        "path": "fast" if is_fast() else "plain",
        "npsenet_s": statistics.median(ours_t),
        "torch_s": statistics.median(theirs_t) if theirs else None,
    }
    result["images_per_s"] = batch_size / result["npsenet_s"]
    result["ratio"] = result["npsenet_s"] / result["torch_s"] if theirs else None
    if memory:
        args = dict(model=model, batch_size=batch_size, image_size=image_size,
                    dtype=dtype.name, device=device, mode=mode)
        progress("peak memory of a step: npsenet (in a fresh process)")
        result["npsenet_peak_bytes"] = measure_peak_memory("npsenet", **args)
        if theirs:
            progress("peak memory of a step: PyTorch (in a fresh process)")
            result["torch_peak_bytes"] = measure_peak_memory("torch", **args)
    return result


def measure_peak_memory(framework, **args):
    """Peak memory of one step, measured in a fresh subprocess (see the module docstring)."""
    cmd = [sys.executable, "-m", "npsenet.bench", "--probe", framework, json.dumps(args)]
    # A fixed mmap threshold makes glibc return every large block to the kernel when it is
    # freed, so resident memory follows the live arrays (by default the threshold grows
    # after the first large free, and freed memory stays resident and hides the peak).
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "MALLOC_MMAP_THRESHOLD_": "131072",
           "MALLOC_TRIM_THRESHOLD_": "131072", "NPSENET_FAST": "1" if is_fast() else "0"}
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return int(out.stdout.strip().splitlines()[-1])


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} (peak memory needs Linux)")


def _probe(framework, args):
    """Run in a subprocess: the peak extra bytes of four steps (see the module docstring)."""
    step = NpsenetStep(args["model"], args["batch_size"], args["image_size"],
                       np.dtype(args["dtype"]), args["device"], args["mode"])
    if framework == "torch":
        step = TorchStep(step)
    if args["device"] == "gpu":
        return _probe_gpu(framework, step)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")                          # reset the peak-RSS mark (VmHWM) to the current RSS
    before = _status_kib("VmRSS")
    for _ in range(4):
        step()
    return max(0, _status_kib("VmHWM") - before) * 1024


def _probe_gpu(framework, step):
    if framework == "torch":
        import torch
        step()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        return torch.cuda.max_memory_allocated() - base
    pool = backend.array_module_for("gpu").get_default_memory_pool()
    step()
    base = pool.used_bytes()
    step()
    return pool.total_bytes() - base


def format_result(r):
    """A few human-readable lines."""
    mib = 1024 ** 2
    lines = [f"{r['model']} {r['mode']} step, batch {r['batch_size']}, "
             f"{r['image_size']}x{r['image_size']}, {r['dtype']}, {r['device']} "
             f"(median of {r['steps']} interleaved steps)",
             f"  npsenet: {r['npsenet_s'] * 1e3:8.1f} ms   {r['images_per_s']:8.0f} images/s"
             f"   ({r['path']} path)"]
    if r.get("torch_s"):
        lines.append(f"  PyTorch: {r['torch_s'] * 1e3:8.1f} ms   "
                     f"{r['batch_size'] / r['torch_s']:8.0f} images/s")
        lines.append(f"  ratio npsenet / PyTorch: {r['ratio']:.2f}x")
    if "npsenet_peak_bytes" in r:
        mem = f"  peak step memory: npsenet {r['npsenet_peak_bytes'] / mib:.0f} MiB"
        if r.get("torch_peak_bytes"):
            mem += (f", PyTorch {r['torch_peak_bytes'] / mib:.0f} MiB, ratio "
                    f"{r['npsenet_peak_bytes'] / max(1, r['torch_peak_bytes']):.2f}x")
        lines.append(mem)
    return "\n".join(lines)


if __name__ == "__main__":  # the memory probe's subprocess (see measure_peak_memory)
    print(_probe(sys.argv[2], json.loads(sys.argv[3])))
