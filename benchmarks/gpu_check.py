"""The GPU check: npsenet's whole CuPy path on a GPU machine in under 8 minutes, one command.

    bash benchmarks/gpu_check.sh                 # on the GPU machine: $OUT, else runs/gpu_check/
    bash benchmarks/gpu_check.sh --dry-run       # anywhere: what it would run, with CPU stand-ins
    bash benchmarks/gpu_check.sh --only bench-train,epoch    # some of the steps

It needs nothing from a package index: it runs from the checkout (``PYTHONPATH``, which
``gpu_check.sh`` sets) with the Python, NumPy, CuPy and PyTorch found on the machine
(any PyTorch version; a CUDA build for the comparison). The steps, each a subprocess
under its own ``timeout`` so that one hang cannot eat the rest, and all of them within
``--budget`` seconds:

1. ``env``: versions, the GPU's name and memory; stops here, saying so, if CuPy sees no GPU.
2. ``bench-train`` and ``bench-eval``: ``npsenet bench --device gpu`` for SE-ResNet-20 at
   batch 128, a training step and an eval forward, beside PyTorch CUDA eager in the same
   process, with each framework's peak GPU memory for a step.
3. ``epoch``: one training epoch of 50,000 synthetic 32 x 32 images (the synthetic
   training split repeated) through :class:`npsenet.train.Trainer` and the GPU
   :class:`~npsenet.data.BatchLoader`, after a few untimed warm-up steps, then the
   evaluation of 10,000 images; and the peak GPU memory of CuPy's pool over it.
4. ``profile``: where the host spends a training step (cProfile, top functions by own time).
5. ``nccl``: the NCCL all-reduce and broadcast of ``npsenet.distributed`` on device arrays,
   one rank (NCCL refuses two ranks of one communicator on one GPU, so a machine with one
   GPU checks the calls, not the traffic); on a machine with two GPUs or more and mpi4py,
   also one epoch of ``npsenet train --nproc 2 --device gpu`` on synthetic images.
6. ``tests``: every ``device="gpu"`` test (``pytest -k gpu``, float64 parity on the GPU
   included), on several pytest-xdist workers when it is installed.

It writes ``report.md`` (figures, the targets, what failed) and one log per step into the
output folder: eight files, no subfolders. ``--dry-run`` runs the same script on a CPU
machine: each GPU step prints the command it would run and runs a small CPU stand-in
that exercises the same code (argument parsing, the workers, the report), and the report
shows no GPU figure.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).resolve()
DEFAULT_OUT = REPO / "runs" / "gpu_check"
DEFAULT_BUDGET_S = 450           # all the steps together: 7.5 minutes
TARGET_STEP_RATIO = 1.5          # training step, npsenet / PyTorch CUDA eager
TARGET_EPOCH_S = 5.0             # one 50,000-image epoch of SE-ResNet-20
MODEL, BATCH = "se_resnet20", 128
EPOCH_IMAGES, EVAL_IMAGES, WARMUP_STEPS = 50_000, 10_000, 5
MIB = 1024 ** 2


@dataclass
class Step:
    """One step: its name, its command on the GPU and its CPU stand-in for ``--dry-run``,
    its time limit and what the report says of it."""

    name: str
    what: str
    limit_s: int
    gpu: list
    dry: list
    log: str = ""
    status: str = "not run"
    seconds: float = 0.0
    stdout: str = ""
    note: str = ""
    result: dict = field(default_factory=dict)

    def __post_init__(self):
        self.log = self.log or self.name.replace("-", "_") + ".log"


def python():
    return [sys.executable]


def bench_command(mode, device, small=False):
    """``npsenet bench`` for the figures (or, ``small``, a two-image CPU stand-in)."""
    if small:
        return python() + ["-m", "npsenet", "bench", "--device", device, "--model", "resnet20",
                           "--batch-size", "2", "--mode", mode, "--steps", "1", "--warmup",
                           "0", "--no-torch", "--no-memory", "--json"]
    return python() + ["-m", "npsenet", "bench", "--device", device, "--model", MODEL,
                       "--batch-size", str(BATCH), "--mode", mode, "--steps", "20",
                       "--warmup", "3", "--json"]


def worker_command(measure, device, small=False):
    """This script as a worker: ``--measure env|epoch|profile``."""
    command = python() + [str(SCRIPT), "--measure", measure, "--device", device]
    if small:
        command += ["--model", "resnet20", "--images", "16", "--eval-images", "8",
                    "--batch-size", "8" if measure == "epoch" else "2", "--warmup-steps", "1",
                    "--profile-steps", "1"]
    return command


def test_command(workers, dry):
    """pytest over every test with a ``gpu`` variant (the ``device`` fixture's id)."""
    if dry:  # the selection, on one file, without running it
        return python() + ["-m", "pytest", "--collect-only", "-q", "-k", "gpu",
                           "-p", "no:cacheprovider", str(REPO / "tests" / "test_optim.py")]
    command = python() + ["-m", "pytest", str(REPO / "tests"), "-k", "gpu", "-v",
                          "-p", "no:cacheprovider", "--continue-on-collection-errors",
                          "--tb=short", "-rfE", "--durations=15"]
    if workers > 1:
        command += ["-n", str(workers)]
    return command


STEP_NAMES = ("env", "bench-train", "bench-eval", "epoch", "profile", "nccl", "tests")


def make_steps(workers):
    return [
        Step("env", "versions and the GPU", 30, worker_command("env", "gpu"),
             worker_command("env", "cpu")),
        Step("bench-train", f"{MODEL} training step, batch {BATCH}, beside PyTorch", 120,
             bench_command("train", "gpu"), bench_command("train", "cpu", small=True)),
        Step("bench-eval", f"{MODEL} eval forward, batch {BATCH}, beside PyTorch", 45,
             bench_command("eval", "gpu"), bench_command("eval", "cpu", small=True)),
        Step("epoch", f"one {EPOCH_IMAGES:,}-image epoch of {MODEL}", 100,
             worker_command("epoch", "gpu"), worker_command("epoch", "cpu", small=True)),
        Step("profile", "host time of a training step, by function", 30,
             worker_command("profile", "gpu"), worker_command("profile", "cpu", small=True)),
        Step("nccl", "NCCL collectives of npsenet.distributed on the GPU", 60,
             worker_command("nccl", "gpu"), worker_command("nccl", "cpu", small=True)),
        Step("tests", "every device='gpu' test", 240, test_command(workers, False),
             test_command(workers, True)),
    ]


# -- running the steps -------------------------------------------------------------------------
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def run_step(step, out, dry, deadline):
    """Run the step's command (the stand-in in a dry run) under ``timeout``; write its log."""
    command = step.dry if dry else step.gpu
    limit = int(min(step.limit_s, deadline - time.monotonic()))
    if limit < 5:
        step.status, step.note = "skipped", "no time left in the budget"
        return step
    if dry:
        print(f"[dry run] on a GPU, {step.name} would run (timeout {step.limit_s} s):\n"
              f"    {shlex.join(step.gpu)}", flush=True)
    wrapped = (["timeout", "-k", "10", str(limit)] if shutil.which("timeout") else []) + command
    environment = dict(os.environ)
    if dry:  # the stand-ins are checks, not timings: one BLAS thread keeps them quick anywhere
        environment.update({name: "1" for name in THREAD_VARIABLES})
    started = time.monotonic()
    try:
        done = subprocess.run(wrapped, capture_output=True, text=True, cwd=REPO,
                              timeout=limit + 20, env=environment)
        rc, stdout, stderr = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as expired:
        rc = 124
        stdout, stderr = _text(expired.stdout), _text(expired.stderr)
    step.seconds = time.monotonic() - started
    step.stdout = stdout
    step.status = "ok" if rc == 0 else ("timed out" if rc in (124, 137) else f"failed (rc {rc})")
    if step.status == "timed out":
        step.note = f"stopped after {limit} s"
    header = (f"$ {shlex.join(command)}\n# {'dry run: CPU stand-in; ' if dry else ''}"
              f"timeout {limit} s, took {step.seconds:.1f} s, {step.status}\n")
    if dry:
        header += f"# on a GPU: {shlex.join(step.gpu)}\n"
    (out / step.log).write_text(header + "\n--- stdout\n" + stdout + "\n--- stderr\n" + stderr)
    print(f"{step.name}: {step.status} in {step.seconds:.1f} s ({step.log})", flush=True)
    return step


def _text(data):
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def last_json(text):
    """The last JSON object in ``text``: a ``RESULT {...}`` line, or a whole JSON document."""
    for line in reversed(text.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    start = text.find("{")
    if start < 0:
        return {}
    try:
        return json.loads(text[start:])
    except json.JSONDecodeError:
        return {}


PYTEST_COUNTS = ("passed", "failed", "skipped", "errors", "error", "xfailed", "xpassed",
                 "deselected")


def pytest_counts(text):
    """Counts of the pytest run in ``text``: from its summary line, or, when it was cut
    short, from the per-test lines that ``-v`` prints."""
    counts = {}
    finished = re.compile(r"^=+ .*\d+ (passed|failed|error|skipped|deselected).* in [\d.]+s")
    summary = [line for line in text.splitlines() if finished.match(line)]
    if summary:
        for number, word in re.findall(r"(\d+) (\w+)", summary[-1]):
            if word in PYTEST_COUNTS:
                word = "errors" if word == "error" else word
                counts[word] = counts.get(word, 0) + int(number)
        counts["complete"] = True
        return counts
    for word in ("PASSED", "FAILED", "SKIPPED", "ERROR", "XFAIL", "XPASS"):
        found = len(re.findall(rf"\b{word}\b", text))
        if found:
            key = {"ERROR": "errors", "XFAIL": "xfailed", "XPASS": "xpassed"}.get(word,
                                                                                  word.lower())
            counts[key] = found
    counts["complete"] = False
    return counts


def failing_tests(text, limit=25):
    """The ids of failed or erroring tests, from pytest's short summary (``-rfE``)."""
    ids = re.findall(r"^(?:FAILED|ERROR) (\S+)", text, flags=re.M)
    return list(dict.fromkeys(ids))[:limit]


def collected(text):
    match = re.search(r"(\d+)(?:/\d+)? tests? collected", text)
    return int(match.group(1)) if match else None


# -- the report --------------------------------------------------------------------------------
def _ms(seconds):
    return "-" if seconds is None else f"{seconds * 1e3:.1f} ms"


def _mib(count):
    return "-" if count is None else f"{count / MIB:.0f} MiB"


def _verdict(value, target):
    if value is None:
        return "not measured"
    return "met" if value <= target else "not met"


def figures(steps, dry):
    """The report's figure lines, and the verdicts on the issue's targets."""
    by_name = {s.name: s for s in steps}
    lines, targets = [], []
    if dry:
        lines.append("No GPU figure: this was a dry run. The CPU stand-ins checked the "
                     "commands, the workers and this report; the commands each step would "
                     "run on a GPU are in its log.")
        targets = [("training step <= 1.5x PyTorch CUDA eager", "not measured (dry run)"),
                   ("50,000-image epoch <= 5 s", "not measured (dry run)"),
                   ("GPU tests green", "not run (dry run)")]
        return lines, targets
    train = by_name["bench-train"].result
    if train:
        step = (f"- training step ({train.get('model')}, batch {train.get('batch_size')}, "
                f"{train.get('dtype')}, {train.get('path')} path): npsenet "
                f"{_ms(train.get('npsenet_s'))} ({train.get('images_per_s', 0):.0f} images/s), ")
        if train.get("ratio"):
            step += f"PyTorch CUDA eager {_ms(train.get('torch_s'))}, ratio {train['ratio']:.2f}x"
        else:
            step += "no PyTorch CUDA to compare with"
        lines.append(step)
        lines.append(f"- peak GPU memory of a training step: npsenet "
                     f"{_mib(train.get('npsenet_peak_bytes'))}, PyTorch "
                     f"{_mib(train.get('torch_peak_bytes'))}")
    evaluation = by_name["bench-eval"].result
    if evaluation:
        ratio = (f", ratio {evaluation['ratio']:.2f}x" if evaluation.get("ratio") else "")
        lines.append(f"- eval forward: npsenet {_ms(evaluation.get('npsenet_s'))}, PyTorch "
                     f"{_ms(evaluation.get('torch_s'))}{ratio}; peak memory npsenet "
                     f"{_mib(evaluation.get('npsenet_peak_bytes'))}, PyTorch "
                     f"{_mib(evaluation.get('torch_peak_bytes'))}")
    epoch = by_name["epoch"].result
    if epoch:
        lines.append(f"- one epoch of {epoch['images']:,} images ({epoch['model']}, batch "
                     f"{epoch['batch_size']}): training {epoch['train_seconds']:.2f} s "
                     f"({epoch['images_per_second']:.0f} images/s), evaluation of "
                     f"{epoch['eval_images']:,} images {epoch['eval_seconds']:.2f} s; "
                     f"train loss {epoch['train_loss']:.3f}; before it, "
                     f"{epoch.get('warmup_steps')} warm-up steps (compiling the kernels) took "
                     f"{epoch.get('warmup_seconds', 0):.1f} s")
        if epoch.get("pool_peak_bytes") is not None:
            lines.append(f"- peak GPU memory over the epoch: CuPy's pool held "
                         f"{_mib(epoch['pool_peak_bytes'])} at most; the device had "
                         f"{_mib(epoch.get('device_used_bytes'))} in use of "
                         f"{_mib(epoch.get('device_total_bytes'))} after it")
    nccl = by_name["nccl"].result if "nccl" in by_name else {}
    if nccl:
        lines.append(f"- NCCL: {nccl.get('summary', 'no result')}")
    tests = by_name["tests"].result
    if tests:
        counts = ", ".join(f"{tests[k]} {k}" for k in PYTEST_COUNTS if tests.get(k))
        lines.append(f"- GPU tests: {counts or 'no result'}"
                     f"{'' if tests.get('complete') else ' (cut short: counts so far)'}")
    ratio = train.get("ratio") if train else None
    epoch_s = epoch.get("train_seconds") if epoch else None
    green = None
    if tests:
        green = (tests.get("complete") and tests.get("passed", 0) > 0
                 and not tests.get("failed") and not tests.get("errors"))
    targets = [("training step <= 1.5x PyTorch CUDA eager",
                _verdict(ratio, TARGET_STEP_RATIO) + (f" ({ratio:.2f}x)" if ratio else "")),
               ("50,000-image epoch <= 5 s",
                _verdict(epoch_s, TARGET_EPOCH_S) + (f" ({epoch_s:.2f} s)" if epoch_s else "")),
               ("GPU tests green", "not run" if green is None else ("met" if green else "not met"))]
    return lines, targets


def write_report(out, steps, env, dry, stopped, started_at, elapsed):
    title = "npsenet GPU check" + (" (dry run)" if dry else "")
    lines = [f"# {title}", "",
             f"{time.strftime('%Y-%m-%d %H:%M:%S %Z', started_at)}, commit {commit()}, "
             f"{elapsed:.0f} s in all.", ""]
    if dry:
        lines += ["Dry run: each GPU step was replaced by a CPU stand-in; the command it would "
                  "run on a GPU is printed in its log.", ""]
    if stopped:
        lines += [f"**Stopped early: {stopped}**", ""]
    lines += ["## Machine", ""]
    for key in ("python", "numpy", "cupy", "gpu", "gpu_memory", "cuda_runtime", "cuda_driver",
                "torch", "torch_cuda", "pytest", "xdist", "hypothesis"):
        if key in env:
            lines.append(f"- {key.replace('_', ' ')}: {env[key]}")
    lines += ["", "## Figures", ""]
    figure_lines, targets = figures(steps, dry)
    lines += figure_lines or ["Nothing was measured."]
    lines += ["", "## Targets", "", "| target | verdict |", "|---|---|"]
    lines += [f"| {name} | {verdict} |" for name, verdict in targets]
    lines += ["", "## Steps", "", "| step | what | status | seconds | log |",
              "|---|---|---|---|---|"]
    for s in steps:
        status = s.status + (f": {s.note}" if s.note else "")
        log = s.log if s.seconds else "-"
        lines.append(f"| {s.name} | {s.what} | {status} | {s.seconds:.1f} | {log} |")
    tests = next((s for s in steps if s.name == "tests"), None)
    failures = tests.result.get("failing", []) if tests and tests.result else []
    if failures:
        lines += ["", "## Failing tests (first 25; tracebacks in tests.log)", ""]
        lines += [f"- `{name}`" for name in failures]
    (out / "report.md").write_text("\n".join(lines) + "\n")


def commit():
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                              capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if done.returncode != 0:
        return "unknown (no git checkout)"
    return done.stdout.strip() + (" with local changes" if dirty.stdout.strip() else "")


def read_results(step, dry):
    """Fill ``step.result`` from its output."""
    if step.status != "ok" and step.name != "tests":
        return
    if step.name == "tests":
        log = step.stdout
        step.result = ({"collected": collected(log)} if dry else
                       dict(pytest_counts(log), failing=failing_tests(log)))
    elif step.name != "profile":
        step.result = last_json(step.stdout)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true",
                        help="no GPU: print each GPU command and run a CPU stand-in instead")
    parser.add_argument("--out", default=None,
                        help="output folder (default: $OUT when set, else runs/gpu_check/)")
    parser.add_argument("--only", default=None,
                        help="comma-separated steps to run (env always runs): bench-train, "
                             "bench-eval, epoch, profile, nccl, tests")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S,
                        help=f"seconds for all the steps together (default {DEFAULT_BUDGET_S})")
    parser.add_argument("--workers", type=int, default=None,
                        help="pytest-xdist workers for the tests (default: up to 8, when "
                             "pytest-xdist is installed)")
    parser.add_argument("--wheels", default=None,
                        help="a folder of wheels (pytest, pytest-xdist, hypothesis) to install "
                             "from, offline, when pytest is missing")
    parser.add_argument("--measure", choices=["env", "epoch", "profile", "nccl"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--device", default="gpu", help=argparse.SUPPRESS)
    parser.add_argument("--model", default=MODEL, help=argparse.SUPPRESS)
    parser.add_argument("--images", type=int, default=EPOCH_IMAGES, help=argparse.SUPPRESS)
    parser.add_argument("--eval-images", type=int, default=EVAL_IMAGES, help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=BATCH, help=argparse.SUPPRESS)
    parser.add_argument("--warmup-steps", type=int, default=WARMUP_STEPS, help=argparse.SUPPRESS)
    parser.add_argument("--profile-steps", type=int, default=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        return measure(args)

    wanted = None if args.only is None else {name.strip() for name in args.only.split(",")}
    unknown = (wanted or set()) - set(STEP_NAMES)
    if unknown:
        parser.error(f"--only: unknown step(s) {', '.join(sorted(unknown))}; the steps are "
                     f"{', '.join(STEP_NAMES[1:])}.")
    started_at, clock = time.localtime(), time.monotonic()
    deadline = clock + args.budget
    out = Path(args.out or os.environ.get("OUT") or DEFAULT_OUT).resolve()
    out.mkdir(parents=True, exist_ok=True)
    env_step = make_steps(1)[0]
    run_step(env_step, out, args.dry_run, deadline)
    env = last_json(env_step.stdout) if env_step.status == "ok" else {}
    workers = args.workers if args.workers is not None else (
        min(8, max(1, (os.cpu_count() or 2) // 2)) if env.get("xdist") not in (None, "missing")
        else 1)
    steps = make_steps(workers)
    steps[0] = env_step
    stopped = None
    if env_step.status != "ok":
        stopped = f"the environment probe failed ({env_step.status}); see env.log"
    elif not args.dry_run and not env.get("gpu_usable"):
        stopped = f"CuPy sees no GPU ({env.get('cupy_problem', 'unknown reason')})"
    if stopped:
        print(f"stopped early: {stopped}", file=sys.stderr)
    else:
        for step in steps[1:]:
            if wanted is not None and step.name not in wanted:
                step.status = "skipped (--only)"
                continue
            if step.name == "tests" and not args.dry_run:
                ensure_pytest(env, args.wheels, step)
                if step.status.startswith("skipped"):
                    continue
            run_step(step, out, args.dry_run, deadline)
            read_results(step, args.dry_run)
    write_report(out, steps, env, args.dry_run, stopped, started_at, time.monotonic() - clock)
    print(f"report: {out / 'report.md'}")
    if stopped:
        return 2
    ran = [s for s in steps if not s.status.startswith("skipped")]
    tests = steps[-1].result
    failed_tests = bool(tests.get("failed") or tests.get("errors")) if not args.dry_run else False
    return 0 if all(s.status == "ok" for s in ran) and not failed_tests else 1


def ensure_pytest(env, wheels, step):
    """pytest is needed for the tests step: install it from ``wheels`` (offline) when it is
    missing and a folder was given, else skip the step saying why."""
    if env.get("pytest") not in (None, "missing"):
        return
    if wheels:
        done = subprocess.run(python() + ["-m", "pip", "install", "--no-index", "--find-links",
                                          str(wheels), "pytest", "pytest-xdist", "hypothesis"],
                              capture_output=True, text=True, timeout=120)
        if done.returncode == 0:
            return
        step.note = f"pip install from {wheels} failed: {done.stderr.strip()[-200:]}"
    step.status = "skipped"
    step.note = step.note or ("pytest is not installed here (pass --wheels DIR with the "
                              "pytest, pytest-xdist and hypothesis wheels)")


# -- the workers (run as subprocesses by the steps) -------------------------------------------
def measure(args):
    result = {"env": measure_env, "epoch": measure_epoch, "profile": measure_profile,
              "nccl": measure_nccl}[args.measure](args)
    if result is not None:
        print("RESULT " + json.dumps(result), flush=True)
    return 0


def _version(name, distribution=None):
    """The installed version of a package (from its metadata, without importing it), or
    "missing"."""
    from importlib import metadata
    try:
        return metadata.version(distribution or name)
    except metadata.PackageNotFoundError:
        pass
    try:  # a package without metadata (vendored, or on PYTHONPATH)
        module = __import__(name)
    except Exception as error:  # noqa: BLE001 (any failure to import is reported)
        return "missing" if isinstance(error, ImportError) else f"{type(error).__name__}: {error}"
    return getattr(module, "__version__", "installed")


def measure_env(args):
    """Versions and the GPU, as JSON; ``gpu_usable`` says whether npsenet can use it."""
    import numpy as np

    from npsenet import backend
    env = {"python": sys.version.split()[0], "numpy": np.__version__,
           "npsenet": str(Path(backend.__file__).parent), "pytest": _version("pytest"),
           "xdist": _version("xdist", "pytest-xdist"), "hypothesis": _version("hypothesis"),
           "gpu_usable": backend.gpu_available()}
    env["cupy"] = (backend.array_module_for("gpu").__version__ if backend.gpu_available()
                   else _cupy_distribution())
    if backend.gpu_available():
        cupy = backend.array_module_for("gpu")
        props = cupy.cuda.runtime.getDeviceProperties(0)
        name = props["name"]
        env["gpu"] = (name.decode() if isinstance(name, bytes) else str(name)) + (
            f" (x{cupy.cuda.runtime.getDeviceCount()})")
        free, total = cupy.cuda.runtime.memGetInfo()
        env["gpu_memory"] = f"{total / MIB:.0f} MiB, {free / MIB:.0f} MiB free"
        env["cuda_runtime"] = _cuda_version(cupy.cuda.runtime.runtimeGetVersion())
        env["cuda_driver"] = _cuda_version(cupy.cuda.runtime.driverGetVersion())
    else:
        env["cupy_problem"] = backend.gpu_unavailable_message()
    env["torch"] = _version("torch")
    if env["torch"] != "missing" and args.device == "gpu":  # importing torch takes seconds
        try:
            import torch
            env["torch_cuda"] = (f"CUDA {torch.version.cuda}, sees a GPU: "
                                 f"{torch.cuda.is_available()}" if torch.version.cuda
                                 else "a CPU-only build")
        except Exception as error:  # noqa: BLE001
            env["torch_cuda"] = f"torch does not import: {type(error).__name__}: {error}"
    for key, value in env.items():
        print(f"{key}: {value}")
    return env


def _cupy_distribution():
    """Which CuPy wheel is installed (its distribution name and version), or "missing"."""
    for name in ("cupy-cuda13x", "cupy-cuda12x", "cupy-cuda11x", "cupy"):
        version = _version("cupy", name)
        if version != "missing":
            return f"{name} {version}"
    return "missing"


def _cuda_version(number):
    return f"{number // 1000}.{number % 1000 // 10}"


def measure_epoch(args):
    """One epoch of ``--images`` synthetic images through the Trainer, after warm-up steps."""
    import tempfile

    import numpy as np

    import npsenet as ns
    from npsenet import backend
    from npsenet import train as training
    device = backend.normalize_device(args.device)
    base, test = ns.data.SyntheticCIFAR(train=True), ns.data.SyntheticCIFAR(train=False)

    def repeated(split, count):
        reps = math.ceil(count / len(split.labels))
        return (np.concatenate([split.images] * reps)[:count],
                np.concatenate([split.labels] * reps)[:count])

    train_set, test_set = repeated(base, args.images), repeated(test, args.eval_images)
    config = training.default_config(model=args.model, dataset="synthetic", epochs=1,
                                     batch_size=args.batch_size, device=device,
                                     warmup_epochs=0, eval_batch_size=256)
    mean, std = ns.data.channel_stats(base.images)
    train_loader, test_loader = training.make_loaders(config, train_set, test_set, mean, std)
    ns.manual_seed(0)
    model = ns.models.build_model(args.model, num_classes=10).to(device=device)
    optimizer = ns.optim.SGD(model.parameters(), lr=config["lr"], momentum=config["momentum"],
                             weight_decay=config["weight_decay"])
    schedule = training.make_schedule(optimizer, config, len(train_loader))
    with tempfile.TemporaryDirectory() as folder:
        trainer = training.Trainer(model, optimizer, schedule, ns.nn.SoftmaxCrossEntropy(),
                                   train_loader, test_loader, folder, config=config,
                                   progress=False)
        warm = ns.data.BatchLoader(*train_set, args.batch_size, shuffle=True, augment=True,
                                   normalize=ns.data.Normalize(mean, std), device=device)
        batches = iter(warm)
        started = time.perf_counter()
        for _ in range(args.warmup_steps):   # compiles the kernels; not timed
            trainer._train_step(*next(batches))
        backend.synchronize(device)
        warmup_seconds = time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(args.warmup_steps):   # a few steady steps: the epoch's estimate
            trainer._train_step(*next(batches))
        backend.synchronize(device)
        steady = (time.perf_counter() - started) / args.warmup_steps
        print(f"warm-up: {args.warmup_steps} steps in {warmup_seconds:.1f} s; then "
              f"{steady * 1e3:.1f} ms a step, so about {steady * len(train_loader):.1f} s for "
              f"the epoch's {len(train_loader)} steps", flush=True)
        pool = backend.array_module_for("gpu").get_default_memory_pool() if device == "gpu" \
            else None
        if pool is not None:
            pool.free_all_blocks()
        started = time.perf_counter()
        [row] = trainer.fit(1)
        backend.synchronize(device)
        wall = time.perf_counter() - started
    train_seconds = args.images / row["images_per_second"]   # the row's rate is over training
    result = {"model": args.model, "device": device, "images": args.images,
              "eval_images": args.eval_images, "batch_size": args.batch_size,
              "warmup_steps": args.warmup_steps, "warmup_seconds": warmup_seconds,
              "steady_step_ms": steady * 1e3,
              "train_seconds": train_seconds, "images_per_second": row["images_per_second"],
              "eval_seconds": row["epoch_seconds"] - train_seconds,
              "fit_seconds": wall, "train_loss": row["train_loss"], "train_acc": row["train_acc"],
              "test_acc": row["test_acc"], "metrics_every": trainer._metrics_interval()}
    if pool is not None:
        free, total = backend.array_module_for("gpu").cuda.runtime.memGetInfo()
        result.update(pool_peak_bytes=pool.total_bytes(), device_used_bytes=total - free,
                      device_total_bytes=total)
    print(f"{args.images} images in {result['train_seconds']:.2f} s "
          f"({result['images_per_second']:.0f} images/s); eval {result['eval_seconds']:.2f} s")
    return result


def measure_profile(args):
    """cProfile over a few training steps: where the host's time goes, by function."""
    import cProfile
    import io
    import pstats

    from npsenet import backend
    from npsenet.bench import NpsenetStep
    device = backend.normalize_device(args.device)
    step = NpsenetStep(args.model, args.batch_size, 32, "float32", device, "train")
    step()
    step()  # warm-up: kernels compiled, buffers allocated
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    for _ in range(args.profile_steps):
        step()
    profiler.disable()
    wall = (time.perf_counter() - started) / args.profile_steps
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(20)
    print(f"{args.model}, batch {args.batch_size}, {device}: {wall * 1e3:.1f} ms per step "
          f"under the profiler (each step ends with a synchronize, so on the GPU the host "
          f"waits inside synchronize for what is left of the GPU's work)\n")
    print(text.getvalue())
    return {"step_ms_profiled": wall * 1e3}


NCCL_ELEMENTS = 274_490      # SE-ResNet-20's parameters: the gradient buffer of one step


def measure_nccl(args):
    """npsenet's NCCL communicator on this machine's GPU(s): one rank's all-reduce and
    broadcast on a CuPy array (checked, and the all-reduce timed); with two GPUs or more
    and mpi4py, one epoch of ``npsenet train --nproc 2 --device gpu``. On the CPU (the dry
    run's stand-in) the one-GPU-per-rank check over two simulated ranks."""
    from npsenet.distributed import DistributedError, ThreadGroup
    from npsenet.distributed.nccl import check_one_gpu_per_rank
    if args.device != "gpu":
        group = ThreadGroup(2)

        def rank(comm):
            try:
                check_one_gpu_per_rank(comm, ("host", "0000:01:00.0"))
            except DistributedError as error:
                return str(error)
        refused = group.run(rank)
        print(f"two simulated ranks on one GPU: {refused[0]}")
        return {"summary": "dry run: no NCCL call", "refused": refused[0] is not None}
    import cupy

    from npsenet.distributed.nccl import NCCLCommunicator
    result = {"gpus": cupy.cuda.runtime.getDeviceCount()}
    try:
        comm = NCCLCommunicator(ThreadGroup(1).comms[0])
    except Exception as error:  # noqa: BLE001 (reported: NCCL missing or failing)
        result["summary"] = f"the communicator failed: {type(error).__name__}: {error}"
        print(result["summary"])
        return result
    buf = cupy.arange(NCCL_ELEMENTS, dtype=cupy.float32)
    expected = buf.copy()
    comm.allreduce_sum(buf, "check all-reduce")
    comm.broadcast(buf, 0, "check broadcast")
    cupy.cuda.get_current_stream().synchronize()
    correct = bool((buf == expected).all())
    times = []
    for _ in range(20):
        started = time.perf_counter()
        comm.allreduce_sum(buf, "timed all-reduce")
        cupy.cuda.get_current_stream().synchronize()
        times.append(time.perf_counter() - started)
    overdue = comm.watchdog.overdue()
    comm.watchdog.close()
    times.sort()
    result.update(correct=correct, allreduce_ms=times[len(times) // 2] * 1e3,
                  watchdog_clear=overdue is None)
    result["summary"] = (
        f"one rank: all-reduce and broadcast of {NCCL_ELEMENTS:,} float32 "
        f"{'correct' if correct else 'WRONG'}, all-reduce {result['allreduce_ms']:.3f} ms "
        f"(median of 20); watchdog {'clear' if overdue is None else 'reports ' + overdue}")
    if result["gpus"] >= 2 and _version("mpi4py") != "missing":
        result["two_ranks"] = _two_gpu_epoch()
        result["summary"] += f"; 2 ranks on 2 GPUs: {result['two_ranks']}"
    else:
        result["summary"] += (f"; 2 ranks not run ({result['gpus']} GPU"
                              f"{'s' * (result['gpus'] != 1)}, mpi4py {_version('mpi4py')}: "
                              "NCCL needs a GPU per rank, and mpiexec comes with mpi4py)")
    print(result["summary"])
    return result


def _two_gpu_epoch():
    """One epoch of ``npsenet train --nproc 2 --device gpu`` on synthetic images: its summary
    line, or how it failed."""
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run(python() + ["-m", "npsenet", "train", "--dataset", "synthetic",
                                          "--epochs", "1", "--nproc", "2", "--device", "gpu",
                                          "--no-progress", "--out", folder],
                              capture_output=True, text=True, timeout=40, cwd=REPO)
    lines = (done.stdout + done.stderr).strip().splitlines() or ["(no output)"]
    return ("ok: " if done.returncode == 0 else f"failed (rc {done.returncode}): ") + lines[-1]


if __name__ == "__main__":
    sys.exit(main())
