"""Time ResNet-50 against SE-ResNet-50 in npsenet: what 0.3% more multiply-adds costs.

    python3 tools/cost_timing.py                       # batch 2, 224 x 224, 5 rounds
    python3 tools/cost_timing.py --repeats 9           # what docs/assets/results/cost/ holds
    python3 tools/cost_timing.py --image-size 64 --repeats 3 --out /tmp/timing.csv

Three models are timed: ``resnet50``, ``se_resnet50`` and ``se_resnet50`` without SE in its
last stage (``se_stages=[1, 2, 3]``, the variant of TPAMI, Sec. 4 and Sec. 7.2). Each round
runs every model once, in turn (interleaved A/B/C repeats, so that a busy machine slows
all of them alike); before each timed step one untimed step of the same model settles the
caches. Two steps are timed per model and round: an eval ``forward`` (under ``no_grad``)
and a training ``step`` (forward, loss, backward, SGD update at learning rate 0, so
that every round computes on the same weights). In the SE models the time
spent inside the SE blocks (their forward and their backward) is measured too, by wrapping
each block's ``forward`` and ``backward`` with a clock.

The CSV (default ``docs/assets/results/cost/timing.csv``) has one row per model, round and
step: ``model, round, step, seconds, se_seconds, update_seconds`` (the seconds of the
whole call, of the part inside the SE blocks, and of the part in the SGD update); its
``#`` comment lines name the machine, the command and the settings. Wall-clock times on a shared machine are noisy:
read the medians and the ratios between models, not the absolute figures.
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import npsenet as ns  # noqa: E402
from npsenet.nn import SEBlock, SoftmaxCrossEntropy, no_grad  # noqa: E402
from npsenet.optim import SGD  # noqa: E402

MODELS = {
    "resnet50": ("resnet50", {}),
    "se_resnet50": ("se_resnet50", {}),
    "se_resnet50_no_last_stage": ("se_resnet50", {"se_stages": [1, 2, 3]}),
}
DEFAULT_OUT = REPO / "docs" / "assets" / "results" / "cost" / "timing.csv"


class SEClock:
    """Wraps every SEBlock's forward and backward of a model with a stopwatch."""

    def __init__(self, model):
        self.seconds = 0.0
        for module in model.modules():
            if isinstance(module, SEBlock):
                for method in ("forward", "backward"):
                    object.__setattr__(module, method, self._timed(getattr(module, method)))

    def _timed(self, fn):
        def timed(*args):
            start = time.perf_counter()
            try:
                return fn(*args)
            finally:
                self.seconds += time.perf_counter() - start
        return timed


class Case:
    """One model with its fixed batch, its optimizer and its SE clock."""

    def __init__(self, label, batch_size, image_size, seed=0):
        name, options = MODELS[label]
        ns.manual_seed(seed)
        self.label = label
        self.model = ns.models.build_model(name, **options)
        rng = np.random.default_rng(seed)
        self.x = rng.standard_normal((batch_size, 3, image_size, image_size)).astype(np.float32)
        self.y = rng.integers(0, self.model.options["num_classes"], batch_size)
        self.loss_fn = SoftmaxCrossEntropy()
        # learning rate 0: the weights, and so the arithmetic, stay the same in every round
        # (no drift towards overflow on a fixed batch); the update still reads and writes
        # every parameter, its gradient and its momentum
        self.optimizer = SGD(self.model.parameters(), lr=0.0, momentum=0.9, weight_decay=5e-4)
        self.clock = SEClock(self.model)
        self.update_seconds = 0.0

    def forward(self):
        self.model.eval()
        with no_grad():
            self.model(self.x)

    def step(self):
        self.model.train()
        self.optimizer.zero_grad()
        loss = self.loss_fn(self.model(self.x), self.y)
        self.model.backward(self.loss_fn.backward())
        start = time.perf_counter()
        self.optimizer.step()
        self.update_seconds = time.perf_counter() - start
        float(loss)

    def timed(self, kind):
        """(seconds, seconds inside SE blocks, seconds in the SGD update) of one settled
        call of forward or step."""
        fn = getattr(self, kind)
        fn()                                   # settle: caches, workspaces, allocator
        self.clock.seconds = self.update_seconds = 0.0
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start, self.clock.seconds, self.update_seconds


def machine_line():
    cpus = os.cpu_count()
    try:
        load = "load average %.1f %.1f %.1f" % os.getloadavg()
    except OSError:
        load = "load average unknown"
    return (f"{platform.node() or 'unknown host'}, {platform.processor() or platform.machine()}, "
            f"{cpus} CPUs, {load}, Python {platform.python_version()}, NumPy {np.__version__}, "
            f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}")


def run(batch_size, image_size, repeats, kinds=("forward", "step"), log=print):
    """Interleaved rounds; returns rows (model, round, step, seconds, se_seconds,
    update_seconds)."""
    cases = [Case(label, batch_size, image_size) for label in MODELS]
    rows = []
    for round_ in range(repeats):
        for kind in kinds:
            for case in cases:
                seconds, se_seconds, update_seconds = case.timed(kind)
                rows.append((case.label, round_, kind, seconds, se_seconds, update_seconds))
                log(f"round {round_ + 1}/{repeats}  {kind:7s}  {case.label:26s} "
                    f"{seconds:7.3f} s  (SE blocks {se_seconds:6.3f} s, "
                    f"SGD update {update_seconds:6.3f} s)")
    return rows


def medians(rows):
    """{(model, step): (median seconds, median SE seconds, median update seconds,
    fastest seconds)}."""
    out = {}
    for key in sorted({(r[0], r[2]) for r in rows}):
        chosen = [r for r in rows if (r[0], r[2]) == key]
        out[key] = tuple(statistics.median(r[i] for r in chosen) for i in (3, 4, 5)) + (
            min(r[3] for r in chosen),)
    return out


def paired_ratios(rows, kind):
    """{model: median over rounds of (its time / ResNet-50's time in the same round)}: each
    round's models ran back to back, so a round's ratio shares that moment's load."""
    base = {r[1]: r[3] for r in rows if r[0] == "resnet50" and r[2] == kind}
    out = {}
    for label in MODELS:
        ratios = [r[3] / base[r[1]] for r in rows if r[0] == label and r[2] == kind]
        out[label] = statistics.median(ratios)
    return out


def write_csv(path, rows, header_lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        for line in header_lines:
            f.write(f"# {line}\n")
        writer = csv.writer(f)
        writer.writerow(["model", "round", "step", "seconds", "se_seconds", "update_seconds"])
        for model, round_, kind, *times in rows:
            writer.writerow([model, round_, kind] + [f"{t:.6f}" for t in times])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the CSV to write")
    parser.add_argument("--note", default="", help="a line about the machine, kept in the CSV")
    args = parser.parse_args(argv)
    if min(args.batch_size, args.repeats) < 1 or args.image_size < 32:
        print(f"cost_timing: expected --batch-size and --repeats of at least 1 and "
              f"--image-size of at least 32, got {args.batch_size}, {args.repeats} and "
              f"{args.image_size}; try the defaults.", file=sys.stderr)
        return 2
    start = time.time()
    rows = run(args.batch_size, args.image_size, args.repeats)
    stats = medians(rows)
    command = "python3 tools/cost_timing.py " + shlex.join(argv if argv is not None
                                                            else sys.argv[1:])
    header = [f"machine: {machine_line()}",
              f"command: {command.strip()}",
              f"settings: batch {args.batch_size}, {args.image_size}x{args.image_size}, "
              f"{args.repeats} interleaved rounds, float32, CPU (NumPy), "
              f"{time.time() - start:.0f} s in all, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"]
    if args.note:
        header.append(f"note: {args.note}")
    try:
        write_csv(args.out, rows, header)
    except OSError as exc:
        print(f"cost_timing: could not write {args.out} ({exc.strerror}); try --out with a "
              f"folder you can write to.", file=sys.stderr)
        return 1
    print(f"\nmedians over {args.repeats} rounds (batch {args.batch_size}, "
          f"{args.image_size}x{args.image_size}):")
    for kind in ("forward", "step"):
        paired = paired_ratios(rows, kind)
        for label in MODELS:
            seconds, se_seconds, update_seconds, _ = stats[(label, kind)]
            share = f", SE blocks {se_seconds / seconds:.1%}" if se_seconds else ""
            update = f", SGD update {update_seconds / seconds:.1%}" if update_seconds else ""
            print(f"  {kind:7s} {label:26s} {seconds:7.3f} s  x{paired[label]:.3f} of ResNet-50 "
                  f"(median of the rounds' ratios){share}{update}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
