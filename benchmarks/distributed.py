"""Data-parallel training on a CPU: N processes x 1 thread against 1 process x N threads.

    python benchmarks/distributed.py --nproc 2            # the step (npsenet bench --nproc 2)
    python benchmarks/distributed.py --nproc 2 --epoch         # and one epoch each way
    python benchmarks/distributed.py --nproc 2 --epoch --data-dir DIR --json

The step: images/s of the whole training step, all-reduce included, of N processes x 1
thread, of 1 process x N threads and of PyTorch with N threads (when installed), at the
same global batch (``npsenet.distributed.bench``).

``--epoch``: one epoch of ``npsenet train`` (SE-ResNet-20 by default) on the CIFAR subset
each way (``--nproc N`` with 1 BLAS thread per rank, then one process with N threads),
same global batch and seed, ``--rounds`` times; the images/s are those ``metrics.csv``
records (training images over training time), and each figure is the median over the
rounds (the speed-up: the median of the rounds' ratios). Run it on a quiet machine: the
runs take turns, so anything else running shifts the comparison.
"""
import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from npsenet.distributed.bench import format_parallel, run_parallel_benchmark

SUBSET = Path("/work/shared/data/cifar10-subset")


def _train(args, nproc, out):
    cmd = [sys.executable, "-m", "npsenet", "train", "--model", args.model, "--epochs", "1",
           "--warmup-epochs", "0", "--batch-size", str(args.batch_size), "--no-progress",
           "--out", str(out), "--seed", "0"]
    if args.data_dir:
        cmd += ["--data-dir", str(args.data_dir), "--no-download"]
    if args.limit_train:
        cmd += ["--limit-train", str(args.limit_train)]
    env = dict(os.environ)
    threads = "1" if nproc > 1 else str(args.nproc)
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = threads
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"npsenet train failed: {done.stderr.strip().splitlines()[-1:]}")
    with open(out / "metrics.csv") as f:
        row = list(csv.DictReader(f))[-1]
    return {"images_per_s": float(row["images_per_second"]),
            "epoch_s": float(row["epoch_seconds"]), "test_acc": float(row["test_acc"])}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--model", default="se_resnet20")
    p.add_argument("--batch-size", type=int, default=128, help="the global batch")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3,
                   help="rounds of the step comparison (and of the epoch with --epoch)")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--epoch", action="store_true", help="also one epoch each way")
    p.add_argument("--data-dir", default=SUBSET if SUBSET.exists() else None,
                   help=f"the CIFAR-10 folder for --epoch (default {SUBSET} if present)")
    p.add_argument("--limit-train", type=int, default=None)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    result = {"step": run_parallel_benchmark(
        nproc=args.nproc, model=args.model, batch_size=args.batch_size, steps=args.steps,
        warmup=args.warmup, compare_torch=False if args.no_torch else None,
        rounds=args.rounds, progress=lambda line: print(line, file=sys.stderr, flush=True))}
    if args.epoch:
        rounds = []
        with tempfile.TemporaryDirectory() as tmp:
            for index in range(args.rounds):
                print(f"epoch round {index + 1}/{args.rounds}", file=sys.stderr, flush=True)
                rounds.append({"parallel": _train(args, args.nproc, Path(tmp) / f"p{index}"),
                               "single": _train(args, 1, Path(tmp) / f"s{index}")})
        middle = statistics.median
        result["epoch"] = {
            way: {key: middle([r[way][key] for r in rounds]) for key in rounds[0][way]}
            for way in ("parallel", "single")}
        result["epoch"]["speedup"] = middle(
            [r["parallel"]["images_per_s"] / r["single"]["images_per_s"] for r in rounds])
        result["epoch"]["rounds_detail"] = rounds
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(format_parallel(result["step"]))
    if args.epoch:
        e, n = result["epoch"], args.nproc
        print(f"one epoch of {args.model}, global batch {args.batch_size} (median of "
              f"{args.rounds} rounds):")
        print(f"  {n} processes x 1 thread: {e['parallel']['images_per_s']:8.0f} images/s "
              f"({e['parallel']['epoch_s']:.1f} s with evaluation)")
        print(f"  1 process x {n} threads: {e['single']['images_per_s']:8.0f} images/s "
              f"({e['single']['epoch_s']:.1f} s with evaluation)")
        print(f"  speed-up: {e['speedup']:.2f}x")


if __name__ == "__main__":
    main()
