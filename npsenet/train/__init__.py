"""Training: the loop, per-epoch metrics and curves, checkpoints, exact resume, faults.

    from npsenet.train import build_trainer, default_config, resume_trainer

    trainer = build_trainer(default_config(dataset="synthetic", epochs=2), out_dir="runs/demo")
    trainer.fit()           # writes runs/demo/{metrics.csv, curves.png, checkpoint.npz}
    trainer = resume_trainer("runs/demo")   # later, after a stop: continue where it stopped
    trainer.fit()

Every epoch the trainer

* trains on every batch (a tqdm progress bar shows loss, accuracy and images/s when tqdm
  is installed; the epoch's summary line is printed in any case);
* evaluates on the test set;
* writes ``checkpoint.npz`` (atomically, through :func:`npsenet.io.save_model`): the model,
  and as extra arrays the momentum buffers, the schedule, the data loaders' random state,
  the epoch and the metrics so far; its ``meta`` is the run's configuration (JSON);
* rewrites ``metrics.csv`` (one row per epoch, columns :data:`METRIC_COLUMNS`) and redraws
  ``curves.png`` (when matplotlib is installed).

A run resumed from its checkpoint, after an epoch or after any step, ends with the same
arrays, bit for bit on the CPU, as the run that was never stopped. A NaN or infinite loss
stops the run with :class:`TrainingDiverged` and keeps the last good checkpoint; SIGINT or
SIGTERM saves the exact point and raises :class:`TrainingInterrupted`.

Every name is importable from ``npsenet.train``; the modules behind them:

* :mod:`npsenet.train.config`: the recipe (:func:`default_config`) and the data, loaders
  and learning-rate schedule it names;
* :mod:`npsenet.train.runs`: :func:`build_trainer`, :func:`resume_trainer`,
  :func:`evaluate_checkpoint`;
* :mod:`npsenet.train.loop`: :class:`Trainer` (the training step, the epoch, ``fit``) and
  :func:`evaluate`;
* :mod:`npsenet.train.checkpoint`: what ``checkpoint.npz`` holds and reading it back;
* :mod:`npsenet.train.report`: ``metrics.csv``, ``curves.png``, the progress bar and the
  summary line;
* :mod:`npsenet.train.faults`: divergence and SIGINT/SIGTERM.
"""
from .checkpoint import BUFFER_PREFIX, CHECKPOINT_NAME, METRICS_PREFIX, STATE_KEY
from .config import (DATASETS, SCHEDULES, check_config, default_config, load_split,
                     make_loaders, make_schedule)
from .faults import TrainingDiverged, TrainingInterrupted
from .loop import Trainer, evaluate
from .report import (CURVES_NAME, METRIC_COLUMNS, METRICS_NAME, plot_curves, read_metrics,
                     write_metrics)
from .runs import build_trainer, evaluate_checkpoint, resume_trainer

__all__ = [
    "default_config", "check_config", "load_split", "make_loaders", "make_schedule",
    "build_trainer", "resume_trainer", "evaluate_checkpoint", "Trainer", "evaluate",
    "read_metrics", "write_metrics", "plot_curves", "TrainingDiverged", "TrainingInterrupted",
    "DATASETS", "SCHEDULES", "METRIC_COLUMNS", "CHECKPOINT_NAME", "METRICS_NAME",
    "CURVES_NAME", "STATE_KEY", "BUFFER_PREFIX", "METRICS_PREFIX",
]
