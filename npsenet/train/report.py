"""What a run reports: the running sums of an epoch, the progress bar, the summary line
printed after each epoch, ``metrics.csv`` and ``curves.png``.

The columns of ``metrics.csv`` (:data:`METRIC_COLUMNS`): ``epoch`` (from 1); ``lr``, the
mean learning rate over the epoch's training steps (the schedule changes it every step; the
mean is the rate an epoch's updates saw on average, and is what the summary line prints);
``train_loss`` and ``train_acc``, the mean loss and
accuracy over the epoch's training batches (in training mode, augmented, as they were
seen); ``test_loss`` and ``test_acc`` on the test set in evaluation mode;
``epoch_seconds``, training plus evaluation; ``images_per_second``, training images over
training time.

The progress bar (loss, accuracy and images/s so far) needs tqdm and ``curves.png`` needs
matplotlib (``pip install tqdm matplotlib``, or ``pip install ".[train]"`` in a clone);
without them the run goes on, and the summary line is printed in any case. Both files are
replaced atomically (:func:`npsenet.io.atomic_write`), so a reader never sees half of one.
"""
from __future__ import annotations

import csv
import io
import sys
import time
from pathlib import Path

from ..io import atomic_write

METRICS_NAME = "metrics.csv"
"""The metrics file's name in the run's folder."""
CURVES_NAME = "curves.png"
"""The learning curves' file name in the run's folder."""
METRIC_COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc",
                  "epoch_seconds", "images_per_second")
"""The columns of ``metrics.csv``, in order (see the module's description)."""


# -- an epoch in progress ---------------------------------------------------------------------
def fresh_partial(lr=None):
    """The running sums of an epoch that starts at learning rate ``lr``, as the JSON-able
    dict that a mid-epoch checkpoint saves (``lr_sum`` and ``lr_steps`` add up the rate of
    every step, for the ``lr`` column's mean)."""
    return {"lr": lr, "lr_sum": 0.0, "lr_steps": 0, "loss_sum": 0.0, "correct": 0,
            "seen": 0, "train_seconds": 0.0, "eval_seconds": 0.0}


def epoch_row(epoch, partial, test_loss, test_acc):
    """The ``metrics.csv`` row of the finished epoch ``epoch`` (from 1), from its running
    sums ``partial`` and the test set's loss and accuracy."""
    p = partial
    # the mean rate over the epoch's steps (a partial saved before lr_sum existed: the first)
    lr = p["lr_sum"] / p["lr_steps"] if p.get("lr_steps") else p["lr"]
    return {
        "epoch": epoch, "lr": lr, "train_loss": p["loss_sum"] / p["seen"],
        "train_acc": p["correct"] / p["seen"], "test_loss": test_loss, "test_acc": test_acc,
        "epoch_seconds": p["train_seconds"] + p["eval_seconds"],
        "images_per_second": p["seen"] / max(p["train_seconds"], 1e-9),
    }


class EpochProgress:
    """Adds training batches to the running sums ``partial`` (in place), keeps its
    ``train_seconds`` up to date (continuing the count of a resumed epoch) and moves the
    progress bar, when ``enabled`` and tqdm is installed.

        with EpochProgress(partial, len(loader), done, "epoch 1/30", enabled) as progress:
            for x, y in loader:
                ...
                progress.add(loss, correct, len(y))

    The trainer hands over its batches in groups (:meth:`add_batches`) when their losses
    arrive from the device, so the bar moves by a group at a time and its figures (loss,
    accuracy, images/s) always cover exactly the batches it counts.
    """

    def __init__(self, partial, total, done, description, enabled):
        self.partial = partial
        self._bar = _progress_bar(total, done, description, enabled)
        self._start = time.perf_counter() - partial["train_seconds"]

    def add(self, loss, correct, count):
        """Count a batch of ``count`` images with mean loss ``loss``, ``correct`` right."""
        self.add_batches([loss], [correct], [count])

    def add_batches(self, losses, corrects, counts):
        """Count several batches, in order: batch i has ``counts[i]`` images, mean loss
        ``losses[i]`` and ``corrects[i]`` right (Python numbers)."""
        p = self.partial
        for loss, correct, count in zip(losses, corrects, counts):
            p["loss_sum"] += loss * count
            p["correct"] += correct
            p["seen"] += count
        p["train_seconds"] = time.perf_counter() - self._start
        if self._bar is not None and p["seen"]:
            self._bar.update(len(counts))
            self._bar.set_postfix(loss=f"{p['loss_sum'] / p['seen']:.3f}",
                                  acc=f"{p['correct'] / p['seen']:.3f}",
                                  img_s=f"{p['seen'] / max(p['train_seconds'], 1e-9):.0f}")

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        if self._bar is not None:
            self._bar.close()


def _progress_bar(total, initial, description, enabled):
    """A tqdm bar over the epoch's batches, or None (disabled, or tqdm not installed)."""
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, desc=description, unit="batch", leave=False,
                dynamic_ncols=True)


# -- after an epoch ---------------------------------------------------------------------------
def report_epoch(rows, out_dir, epochs):
    """Rewrite ``out_dir/metrics.csv``, redraw ``out_dir/curves.png`` and print the summary
    line of the last of ``rows`` (an epoch of ``epochs``)."""
    out_dir = Path(out_dir)
    write_metrics(rows, out_dir / METRICS_NAME)
    plot_curves(rows, out_dir / CURVES_NAME)
    print(_summary_line(rows[-1], epochs), flush=True)


def _summary_line(row, epochs):
    return (f"epoch {row['epoch']}/{epochs}  lr {row['lr']:.4f}  "
            f"train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}  "
            f"test loss {row['test_loss']:.4f} acc {row['test_acc']:.4f}  "
            f"{row['epoch_seconds']:.1f} s  {row['images_per_second']:.1f} img/s")


def write_metrics(rows, path):
    """Write ``rows`` (dicts with :data:`METRIC_COLUMNS`) as CSV, replacing ``path`` atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: (row[c] if c == "epoch" else f"{row[c]:.6g}") for c in METRIC_COLUMNS})
    with atomic_write(path) as f:
        f.write(buffer.getvalue().encode())


def read_metrics(path):
    """The rows of a metrics.csv as dicts of numbers (``epoch`` an int)."""
    with open(path, newline="") as f:
        return [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()}
                for row in csv.DictReader(f)]


_MATPLOTLIB_NOTED = []


def plot_curves(rows, path):
    """Draw loss and accuracy per epoch (train and test) into the PNG ``path``.

    Uses matplotlib's Agg canvas directly (no pyplot, no global backend change). Without
    matplotlib it prints a one-line note (once) and returns False.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        if not _MATPLOTLIB_NOTED:
            _MATPLOTLIB_NOTED.append(True)
            print("note: matplotlib is not installed, so curves.png is not drawn "
                  "(pip install matplotlib).", file=sys.stderr)
        return False
    epochs = [row["epoch"] for row in rows]
    figure = Figure(figsize=(10, 4))
    canvas = FigureCanvasAgg(figure)
    for axes, metric, title in zip(figure.subplots(1, 2), ("loss", "acc"),
                                   ("cross-entropy loss", "accuracy")):
        for split, style in (("train", "o-"), ("test", "s-")):
            axes.plot(epochs, [row[f"{split}_{metric}"] for row in rows], style, label=split)
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_title(title)
        axes.grid(alpha=0.3)
        axes.legend()
    figure.tight_layout()
    with atomic_write(path) as f:
        canvas.print_png(f)
    return True
