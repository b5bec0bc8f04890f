"""A run's ``checkpoint.npz``: what it holds beside the model, and reading it back to resume.

The trainer writes it after every epoch and when a signal stops the run mid-epoch, through
:func:`npsenet.io.save_model` (so atomically). Besides the model it holds, as extra arrays:

* :data:`STATE_KEY`: the trainer's state as JSON: the epoch, the position inside the epoch
  and that epoch's running sums, the optimizer's settings, the schedule and both data
  loaders' random state and position;
* :data:`BUFFER_PREFIX` + parameter name: the optimizer's momentum buffers;
* :data:`METRICS_PREFIX` + column: the metrics so far, one float64 array per column of
  ``metrics.csv``.

Its ``meta`` is ``{"config": the run's configuration, "epoch", "step_in_epoch"}``.

Resuming restores all of that, so on the CPU a run resumed after any step ends with
exactly the same arrays, bit for bit, as the run that was never interrupted. (Nothing
draws from NumPy's global random state: the weights come from ``ns.manual_seed``'s
generator, the batches from the loader's own, so there is no global state to save.)
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import io as checkpoint_io
from ..backend import normalize_device
from ..distributed import is_main_process
from .config import load_split
from .faults import check_model
from .report import METRIC_COLUMNS

CHECKPOINT_NAME = "checkpoint.npz"
"""The checkpoint's file name in the run's folder."""
STATE_KEY = "trainer/state"
"""The extra array holding the trainer's state as JSON."""
BUFFER_PREFIX = "optimizer/momentum_buffer/"
"""Prefix of the extra arrays holding the momentum buffers, one per parameter name."""
METRICS_PREFIX = "metrics/"
"""Prefix of the extra arrays holding the metrics so far, one per column."""


def save_trainer(trainer):
    """Write ``trainer.checkpoint_path`` atomically: the model, and as extra arrays the
    momentum buffers, the metrics and the trainer's state (schedule, loaders, epoch,
    position inside the epoch) as JSON. Refuses to save a NaN/Inf state
    (:class:`~npsenet.train.TrainingDiverged`)."""
    check_model(trainer)
    if not is_main_process():   # data parallel: the ranks hold the same state; rank 0 writes
        return
    optimizer_state = dict(trainer.optimizer.state_dict())
    buffers = optimizer_state.pop("momentum_buffers")
    state = {
        "epoch": trainer.epoch, "step_in_epoch": trainer.step_in_epoch,
        "partial": trainer.partial, "optimizer": optimizer_state,
        "schedule": None if trainer.schedule is None else trainer.schedule.state_dict(),
        "train_loader": trainer.train_loader.state_dict(),
        "test_loader": trainer.test_loader.state_dict(),
    }
    extra = {STATE_KEY: np.array(json.dumps(state))}
    for name, buf in zip(trainer.param_names, buffers):
        if buf is not None:
            extra[BUFFER_PREFIX + name] = buf
    for column in METRIC_COLUMNS:
        extra[METRICS_PREFIX + column] = np.array([row[column] for row in trainer.metrics],
                                                  dtype=np.float64)
    checkpoint_io.save_model(trainer.checkpoint_path, trainer.model, extra=extra,
                             meta={"config": trainer.config, "epoch": trainer.epoch,
                                   "step_in_epoch": trainer.step_in_epoch})


def load_trainer_state(trainer, extra):
    """Restore into ``trainer`` what :func:`save_trainer` stored in the checkpoint's
    ``extra`` arrays (the model itself is restored by :func:`npsenet.io.load_checkpoint`)."""
    state = json.loads(str(extra[STATE_KEY]))
    buffers = [extra.get(BUFFER_PREFIX + name) for name in trainer.param_names]
    trainer.optimizer.load_state_dict(dict(state["optimizer"], momentum_buffers=buffers))
    if trainer.schedule is not None and state["schedule"] is not None:
        trainer.schedule.load_state_dict(state["schedule"])
    trainer.train_loader.load_state_dict(state["train_loader"])
    trainer.test_loader.load_state_dict(state["test_loader"])
    trainer.epoch, trainer.step_in_epoch = state["epoch"], state["step_in_epoch"]
    trainer.partial = state["partial"]
    columns = {c: extra[METRICS_PREFIX + c].tolist() for c in METRIC_COLUMNS}
    trainer.metrics = [{c: (int(columns[c][i]) if c == "epoch" else columns[c][i])
                        for c in METRIC_COLUMNS} for i in range(len(columns["epoch"]))]


def read_run(out_dir, device=None, data_dir=None, download=None):
    """The run saved in ``out_dir/checkpoint.npz``, checked against its data.

    ``device``, ``data_dir`` and ``download`` replace the saved settings when not None.
    Returns ``(model, config, train_set, test_set, extra)``: the model on the run's
    device, the run's configuration, both splits (as :func:`load_split` gives them) and
    the checkpoint's extra arrays, for :func:`load_trainer_state`.
    """
    path = Path(out_dir) / CHECKPOINT_NAME
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint to resume from: {path} does not exist. "
                                "Pass the --out folder of an earlier `npsenet train` run.")
    ckpt = checkpoint_io.load_checkpoint(path)
    config = ckpt.meta.get("config")
    if config is None or STATE_KEY not in ckpt.extra:
        raise ValueError(f"{path} holds a model but not a training run (no trainer state); "
                         "it can be evaluated (npsenet eval) but not resumed.")
    if device is not None:
        config["device"] = normalize_device(device)
    if data_dir is not None:
        config["data_dir"] = str(data_dir)
    if download is not None:
        config["download"] = bool(download)
    train_set, test_set = load_split(config, True), load_split(config, False)
    if len(train_set[1]) != config["train_images"] or len(test_set[1]) != config["test_images"]:
        raise ValueError(f"the dataset changed since {path} was written: it was trained on "
                         f"{config['train_images']}/{config['test_images']} train/test images, "
                         f"now {len(train_set[1])}/{len(test_set[1])} are found. Point "
                         "--data-dir at the same data.")
    model = ckpt.model.to(device=config["device"])
    return model, config, train_set, test_set, ckpt.extra
