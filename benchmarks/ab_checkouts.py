"""A/B: the same training step (or eval forward) of two checkouts of npsenet, interleaved
in one process, so that a busy machine slows both alike.

    python benchmarks/ab_checkouts.py --old /path/to/old/checkout --steps 20
    python benchmarks/ab_checkouts.py --old ../old --mode eval
    python benchmarks/ab_checkouts.py --old ../old --new-plain     # the new plain path vs old

The old checkout's package is imported under another name (``npsenet_old``), the new one
is the ``npsenet`` on the path. Each side's step is its own ``npsenet.bench.NpsenetStep``
(the step ``npsenet bench`` times; the old checkout needs one, as every release since
0.1.0 has), with weights from ``manual_seed(0)``; steps alternate old, new, old, ... with
one untimed settle step after each switch (as ``npsenet bench`` does against PyTorch).
Prints each side's median and new/old, the median of the pairwise ratios.
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def import_as(name, package_dir):
    """Import the package in ``package_dir`` under the top-level name ``name``."""
    init = Path(package_dir) / "__init__.py"
    spec = importlib.util.spec_from_file_location(name, init,
                                                  submodule_search_locations=[str(package_dir)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", required=True, help="the old checkout (holding npsenet/)")
    parser.add_argument("--model", default="se_resnet20")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--mode", choices=["train", "eval"], default="train")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--new-plain", action="store_true",
                        help="run the new checkout on its plain path")
    args = parser.parse_args(argv)

    old = import_as("npsenet_old", Path(args.old) / "npsenet")
    import npsenet as new
    if args.new_plain:
        new.nn.use_fast(False)
    steps = {}
    for side, package in (("old", old), ("new", new)):
        package.manual_seed(0)
        bench = importlib.import_module(f"{package.__name__}.bench")
        steps[side] = bench.NpsenetStep(args.model, args.batch_size, 32, np.float32, "cpu",
                                        args.mode)
    for _ in range(args.warmup):
        for step in steps.values():
            step()
    times = {"old": [], "new": []}
    for i in range(args.steps):
        order = ("old", "new") if i % 2 == 0 else ("new", "old")
        for side in order:
            steps[side]()                       # settle after the switch
            times[side].append(timed(steps[side]))
    ratios = [n / o for n, o in zip(times["new"], times["old"])]
    med = {side: statistics.median(t) * 1e3 for side, t in times.items()}
    label = "new (plain path)" if args.new_plain else "new"
    print(f"{args.model} batch {args.batch_size}, {args.mode}, {args.steps} steps each")
    print(f"old {med['old']:.1f} ms, {label} {med['new']:.1f} ms, "
          f"new/old {statistics.median(ratios):.3f} (median of pairwise ratios)")


if __name__ == "__main__":
    main()
