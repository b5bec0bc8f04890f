"""Plot the learning curves of several `npsenet train` runs side by side.

    python tools/compare_runs.py runs/se_resnet20 runs/resnet20 --out curves.png

Reads each run's metrics.csv and draws the test (solid) and training (dashed) loss and
top-1 error per epoch, one colour per run, labelled with the run's model name; prints the
final epoch of each run as a table.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def run_label(run_dir):
    """The model name stored in the run's checkpoint, or the folder's name."""
    checkpoint = Path(run_dir) / "checkpoint.npz"
    if checkpoint.exists():
        with np.load(checkpoint, allow_pickle=False) as archive:
            if "__npsenet__" in archive:
                return json.loads(str(archive["__npsenet__"]))["model"]
    return Path(run_dir).name


def main(argv=None):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from npsenet.train import read_metrics

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="folders written by npsenet train --out")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    parser.add_argument("--title", default="", help="a title for the figure")
    args = parser.parse_args(argv)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    print(f"{'run':14s} {'epochs':>6s} {'train loss':>10s} {'test loss':>9s} {'test error':>10s} {'img/s':>6s}")
    for i, run in enumerate(args.runs):
        rows = read_metrics(run / "metrics.csv")
        label, colour = run_label(run), f"C{i}"
        epochs = [r["epoch"] for r in rows]
        for ax, key, scale in ((axes[0], "loss", 1.0), (axes[1], "acc", None)):
            for split, style in (("test", "-o"), ("train", "--")):
                values = [r[f"{split}_{key}"] for r in rows]
                if scale is None:
                    values = [100 * (1 - v) for v in values]
                ax.plot(epochs, values, style, color=colour, ms=4, label=f"{label} {split}")
        last = rows[-1]
        print(f"{label:14s} {last['epoch']:6d} {last['train_loss']:10.4f} {last['test_loss']:9.4f} "
              f"{100 * (1 - last['test_acc']):9.2f}% {np.mean([r['images_per_second'] for r in rows]):6.1f}")
    axes[0].set_title("cross-entropy loss")
    axes[1].set_title("top-1 error (%)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
