"""Train every CIFAR version of the SE family with and without SE, under one recipe, and
write the table of docs/architectures.md#cifar.

    python tools/train_family.py --data-dir ../shared/data/cifar10-subset --epochs 5 \
        --seeds 0 1 --out runs/family --table docs/assets/results/family_cifar.csv

For each registered ``*_cifar`` model (or those named with ``--models``) and each seed it
runs ``npsenet.train`` with the default recipe of ``npsenet train`` (SGD, momentum 0.9,
weight decay 5e-4, batch 128, lr 0.1 with warm-up and cosine decay, crops and flips) for
``--epochs`` epochs, then writes one CSV row per model: parameters, the final test error
of every seed, their mean, and the last epoch's seconds. A run whose folder already holds a
finished ``metrics.csv`` is read instead of trained again, so an interrupted sweep
continues where it stopped.

The test set of the CIFAR-10 subset has 466 images: one image is 0.21 points, and the
binomial standard error of an error rate near 50% is sqrt(0.5 * 0.5 / 466) = 2.3 points,
so differences of a few points between two models are within the noise of one seed.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path


def cifar_models(names=None):
    """The ``*_cifar`` models, each SE model followed by its plain twin."""
    from npsenet.models import model_names
    from npsenet.models.registry import model_info

    chosen = names or [n for n in model_names() if n.endswith("_cifar")]
    ordered = []
    for name in chosen:
        info = model_info(name)
        pair = [name, info.plain_twin] if info.takes_se_options and info.plain_twin else [name]
        ordered += [n for n in pair if n not in ordered]
    return ordered


def final_row(run_dir):
    """The last epoch of a finished run's metrics.csv, as a dict (None if absent)."""
    metrics = Path(run_dir) / "metrics.csv"
    if not metrics.exists():
        return None
    rows = list(csv.DictReader(metrics.open()))
    return rows[-1] if rows else None


def train_one(name, seed, epochs, data_dir, run_dir):
    """Train ``name`` with seed ``seed`` (unless ``run_dir`` holds the finished run);
    returns (the last epoch's metrics row, that epoch's seconds)."""
    from npsenet.train import build_trainer, default_config

    row = final_row(run_dir)
    if row is None or int(row["epoch"]) != epochs:
        config = default_config(model=name, dataset="cifar10", data_dir=str(data_dir),
                                download=False, epochs=epochs, seed=seed)
        build_trainer(config, out_dir=run_dir, progress=False).fit()
        row = final_row(run_dir)
    return row, float(row["epoch_seconds"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="folder holding cifar-10-batches-py/")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--models", nargs="+", default=None,
                        help="model names (default: every registered *_cifar model)")
    parser.add_argument("--out", default="runs/family", help="folder for the runs")
    parser.add_argument("--table", default="docs/assets/results/family_cifar.csv")
    args = parser.parse_args(argv)

    import npsenet as ns

    rows = []
    for name in cifar_models(args.models):
        errors, times = [], []
        for seed in args.seeds:
            run_dir = Path(args.out) / f"{name}-seed{seed}"
            row, seconds = train_one(name, seed, args.epochs, args.data_dir, run_dir)
            errors.append(1.0 - float(row["test_acc"]))
            times.append(seconds)
            print(f"{name} seed {seed}: test error {100 * errors[-1]:.2f}%", flush=True)
        params = sum(p.size for p in ns.models.build_model(name).parameters())
        rows.append({"model": name, "parameters": params, "epochs": args.epochs,
                     "seeds": " ".join(map(str, args.seeds)),
                     "test_errors": " ".join(f"{100 * e:.2f}" for e in errors),
                     "mean_test_error": f"{100 * sum(errors) / len(errors):.2f}",
                     "seconds_per_epoch": f"{sum(times) / len(times):.1f}"})
    Path(args.table).parent.mkdir(parents=True, exist_ok=True)
    with open(args.table, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {args.table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
