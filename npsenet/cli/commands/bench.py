"""``npsenet bench``: time a training step beside PyTorch (see :mod:`npsenet.bench`).

    npsenet bench --model se_resnet20 --batch-size 128            # beside PyTorch if installed
    npsenet bench --mode eval --steps 20 --json
    npsenet bench --plain                     # the plain path, beside PyTorch
    npsenet bench --nproc 2                   # 2 processes x 1 thread, 1 x 2, PyTorch x 2
    npsenet bench --nproc 2 --rounds 5        # ... alternated 5 times, medians of the rounds
"""
from __future__ import annotations

import argparse
import json
import sys

from ..args import add_device_argument, add_plain_argument, non_negative_int, positive_int


def add_parser(sub):
    p = sub.add_parser("bench", help="time a training step (beside PyTorch when installed)",
                       description="Median time of a training step (forward, loss, backward, "
                                   "SGD) or an eval forward pass, its throughput and peak "
                                   "memory; with PyTorch installed, the same step in PyTorch "
                                   "interleaved in the same process, and the ratio.")
    add_device_argument(p)
    add_plain_argument(p)
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(parser):
    """The benchmark's settings (all but ``--device``): the arguments of
    :func:`npsenet.bench.run_benchmark`, and ``--json``."""
    parser.add_argument("--model", default="se_resnet20", help="model name (default se_resnet20)")
    parser.add_argument("--batch-size", type=positive_int, default=128)
    parser.add_argument("--image-size", type=positive_int, default=32)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--mode", choices=["train", "eval"], default="train",
                        help="train: forward + loss + backward + SGD; eval: forward only")
    parser.add_argument("--steps", type=positive_int, default=10,
                        help="timed steps (median reported)")
    parser.add_argument("--warmup", type=non_negative_int, default=2)
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory probes")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress lines on stderr (one per phase and timed step)")
    parser.add_argument("--nproc", type=positive_int, default=None, metavar="N",
                        help="data parallel: N processes x 1 thread (mpiexec) beside 1 process "
                             "x N threads and PyTorch with N threads, same global batch")
    parser.add_argument("--rounds", type=positive_int, default=3,
                        help="with --nproc: rounds of (N processes, then 1 process), medians "
                             "over the rounds (default 3)")
    parser.add_argument("--nproc-worker", default=None, help=argparse.SUPPRESS)


def run_from_args(args):
    """Run the benchmark that ``args`` describe and print it; returns the result dict."""
    from ...bench import format_result, run_benchmark

    if getattr(args, "nproc_worker", None) or (getattr(args, "nproc", None) or 1) > 1:
        return _run_parallel(args)
    result = run_benchmark(model=args.model, batch_size=args.batch_size,
                           image_size=args.image_size, dtype=args.dtype, device=args.device,
                           mode=args.mode, steps=args.steps, warmup=args.warmup,
                           compare_torch=False if args.no_torch else None,
                           memory=not args.no_memory, plain=getattr(args, "plain", False),
                           progress=None if getattr(args, "no_progress", False) else _progress)
    print(json.dumps(result, indent=2) if args.json else format_result(result))
    return result


def _progress(line):
    """A progress line on stderr (stdout keeps only the result, e.g. for --json)."""
    print(f"bench: {line}", file=sys.stderr, flush=True)


def run(args):
    run_from_args(args)


def _run_parallel(args):
    """``--nproc N`` (and its ranks' ``--nproc-worker``): see npsenet.distributed.bench."""
    from ...distributed import bench

    if args.nproc_worker:
        return bench.rank_benchmark(json.loads(args.nproc_worker))
    if (args.device or "cpu") != "cpu" or args.mode != "train":
        raise ValueError("--nproc times the training step on the cpu; drop --device gpu and "
                         "--mode eval.")
    result = bench.run_parallel_benchmark(
        nproc=args.nproc, model=args.model, batch_size=args.batch_size,
        image_size=args.image_size, dtype=args.dtype, steps=args.steps, warmup=args.warmup,
        compare_torch=False if args.no_torch else None, rounds=args.rounds,
        progress=None if getattr(args, "no_progress", False) else _progress)
    print(json.dumps(result, indent=2) if args.json else bench.format_parallel(result))
    return result
