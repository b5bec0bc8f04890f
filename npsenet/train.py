"""Training: the loop, per-epoch metrics and curves, checkpoints, exact resume, faults.

    from npsenet.train import build_trainer, default_config, resume_trainer

    trainer = build_trainer(default_config(dataset="synthetic", epochs=2), out_dir="runs/demo")
    trainer.fit()           # writes runs/demo/{metrics.csv, curves.png, checkpoint.npz}
    trainer = resume_trainer("runs/demo")   # later, after a stop: continue where it stopped
    trainer.fit()

The recipe (``default_config``) is the usual one for CIFAR ResNets: SGD with momentum 0.9,
weight decay 5e-4, batch 128, learning rate 0.1, pad-4 random crop and horizontal flip,
inputs normalised with the training set's per-channel mean and std. The learning rate
follows a cosine schedule stepped once per iteration, after a linear warm-up of one epoch
(:class:`~npsenet.optim.CosineLR`); ``schedule="multistep"`` divides it by 10 at 50% and
75% of the run instead (:class:`~npsenet.optim.MultiStepLR`). We default to cosine because
it has no milestones to tune to the run's length, which matters for short runs.

Every epoch the trainer

* trains on every batch (a tqdm progress bar shows loss, accuracy and images/s when tqdm
  is installed; the epoch's summary line is printed in any case);
* evaluates on the test set;
* writes ``checkpoint.npz`` (atomically, through :func:`npsenet.io.save_model`): the model,
  and as extra arrays the momentum buffers, the schedule, the data loaders' random state,
  the epoch and the metrics so far; its ``meta`` is the run's configuration (JSON);
* rewrites ``metrics.csv`` (one row per epoch, columns :data:`METRIC_COLUMNS`) and redraws
  ``curves.png`` (when matplotlib is installed).

The columns of ``metrics.csv``: ``epoch`` (from 1); ``lr``, the learning rate of the epoch's
first step; ``train_loss`` and ``train_acc``, the mean loss and accuracy over the epoch's
training batches (in training mode, augmented, as they were seen); ``test_loss`` and
``test_acc`` on the test set in evaluation mode; ``epoch_seconds``, training plus
evaluation; ``images_per_second``, training images over training time.

Resuming restores all of that, so on the CPU a run resumed after any step ends with
exactly the same arrays, bit for bit, as the run that was never interrupted. (Nothing
draws from NumPy's global random state: the weights come from ``ns.manual_seed``'s
generator, the batches from the loader's own, so there is no global state to save.)

Faults:

* A loss that is NaN or infinite stops the run with :class:`TrainingDiverged`; nothing from
  the bad state is saved, so the last checkpoint is the last good one.
* SIGINT (Ctrl-C) or SIGTERM lets the current step finish, writes a checkpoint of that
  exact point (mid-epoch included) and raises :class:`TrainingInterrupted`;
  ``npsenet train`` then exits with 128 + the signal number (130 for SIGINT, 143 for
  SIGTERM), the shell's convention. A second signal stops at once; the checkpoint on disk
  is still whole, since checkpoints are replaced atomically.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

from . import data as _data
from . import io as checkpoint_io
from .backend import get_array_module, normalize_device
from .init import manual_seed
from .models import build_model
from .nn import SoftmaxCrossEntropy, no_grad
from .optim import SGD, CosineLR, MultiStepLR

CHECKPOINT_NAME = "checkpoint.npz"
METRICS_NAME = "metrics.csv"
CURVES_NAME = "curves.png"
METRIC_COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc",
                  "epoch_seconds", "images_per_second")
DATASETS = _data.DATASETS
SCHEDULES = ("cosine", "multistep")
STATE_KEY = "trainer/state"
BUFFER_PREFIX = "optimizer/momentum_buffer/"
METRICS_PREFIX = "metrics/"


class TrainingDiverged(RuntimeError):
    """The loss (or a parameter) became NaN or infinite; the last good checkpoint is kept."""


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM stopped the run after a checkpoint was written.

    Attributes:
        signum: the signal's number; ``128 + signum`` is the conventional exit code.
    """

    def __init__(self, signum, message):
        super().__init__(message)
        self.signum = signum


# -- configuration -------------------------------------------------------------------------
def default_config(**overrides):
    """The training recipe as a JSON-able dict; keyword arguments replace entries.

    Keys: model, model_options (SE options for ``build_model``), dataset, data_dir,
    download, epochs, batch_size, lr, momentum, weight_decay, nesterov, label_smoothing,
    schedule ("cosine" | "multistep"), warmup_epochs (cosine only; by default one epoch,
    none for a one-epoch run), seed, device,
    limit_train, limit_test (use only the first N images; None for all), eval_batch_size.
    """
    config = {
        "model": "se_resnet20", "model_options": {}, "dataset": "cifar10", "data_dir": None,
        "download": True, "epochs": 30, "batch_size": 128, "lr": 0.1, "momentum": 0.9,
        "weight_decay": 5e-4, "nesterov": False, "label_smoothing": 0.0, "schedule": "cosine",
        "warmup_epochs": 1, "seed": 0, "device": "cpu", "limit_train": None,
        "limit_test": None, "eval_batch_size": 256,
    }
    unknown = sorted(set(overrides) - set(config))
    if unknown:
        raise ValueError(f"default_config: unknown setting(s) {unknown}; the settings are "
                         f"{sorted(config)}.")
    config.update(overrides)
    if "warmup_epochs" not in overrides and isinstance(config["epochs"], int):
        # the default warm-up shrinks to fit a one-epoch run
        config["warmup_epochs"] = min(config["warmup_epochs"], max(config["epochs"] - 1, 0))
    check_config(config)
    return config


def check_config(config):
    """Raise ValueError naming the first setting that cannot work."""
    if config["dataset"] not in DATASETS:
        raise ValueError(f"dataset must be one of {list(DATASETS)}, got {config['dataset']!r}.")
    if config["schedule"] not in SCHEDULES:
        raise ValueError(f"schedule must be one of {list(SCHEDULES)}, got "
                         f"{config['schedule']!r}.")
    for key in ("epochs", "batch_size", "eval_batch_size"):
        if not isinstance(config[key], int) or config[key] < 1:
            raise ValueError(f"{key} must be a positive integer, got {config[key]!r}.")
    if config["batch_size"] < 2:
        raise ValueError("batch_size must be at least 2: batch norm needs two images to "
                         "compute a variance.")
    for key in ("limit_train", "limit_test"):
        if config[key] is not None and (not isinstance(config[key], int) or config[key] < 1):
            raise ValueError(f"{key} must be a positive number of images, got {config[key]!r}.")
    if not isinstance(config["warmup_epochs"], int) or config["warmup_epochs"] < 0:
        raise ValueError(f"warmup_epochs must be a non-negative integer, got "
                         f"{config['warmup_epochs']!r}.")
    if config["schedule"] == "cosine" and config["warmup_epochs"] >= config["epochs"]:
        raise ValueError(f"warmup_epochs ({config['warmup_epochs']}) must be smaller than "
                         f"epochs ({config['epochs']}); use --warmup-epochs 0 for short runs.")
    if not 0.0 <= config["label_smoothing"] < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {config['label_smoothing']!r}.")
    normalize_device(config["device"])


# -- data ----------------------------------------------------------------------------------
def load_split(config, train):
    """The training or test split named by ``config`` (images uint8, labels int64, classes),
    cut to ``limit_train`` / ``limit_test`` images."""
    dataset = _data.get_dataset(config["dataset"], data_dir=config["data_dir"], train=train,
                                download=bool(config["download"]))
    limit = config["limit_train" if train else "limit_test"]
    images, labels = dataset.images, dataset.labels
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return images, labels, list(dataset.classes)


def make_loaders(config, train_set, test_set, mean, std):
    """The training loader (shuffled, augmented) and the test loader (in order)."""
    normalize = _data.Normalize(mean, std)
    train_loader = _data.BatchLoader(*train_set[:2], config["batch_size"], shuffle=True,
                                     augment=True, normalize=normalize, seed=config["seed"],
                                     device=config["device"])
    test_loader = _data.BatchLoader(*test_set[:2], config["eval_batch_size"], shuffle=False,
                                    augment=False, normalize=normalize, seed=config["seed"],
                                    device=config["device"])
    return train_loader, test_loader


# -- building and resuming a run -------------------------------------------------------------
def build_trainer(config, out_dir, progress=True):
    """A fresh run: data, model (seeded), optimizer, schedule and loaders from ``config``."""
    check_config(config)
    train_set, test_set = load_split(config, True), load_split(config, False)
    num_classes = len(train_set[2])
    mean, std = _data.channel_stats(train_set[0])
    config = dict(config, mean=[float(v) for v in mean], std=[float(v) for v in std],
                  num_classes=num_classes, train_images=len(train_set[1]),
                  test_images=len(test_set[1]))
    manual_seed(config["seed"])
    model = build_model(config["model"], num_classes=num_classes, **config["model_options"])
    model.to(device=config["device"])
    return _assemble(model, config, train_set, test_set, out_dir, progress)


def resume_trainer(out_dir, device=None, data_dir=None, download=None, progress=True):
    """The run saved in ``out_dir/checkpoint.npz``, ready to continue with :meth:`Trainer.fit`.

    Args:
        out_dir: the run's folder.
        device: move the run to another device ('cpu' or 'gpu'); None keeps the saved one.
        data_dir: where the dataset is now, if it moved; None keeps the saved path.
        download: whether a missing CIFAR may be downloaded; None keeps the saved choice.
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
    trainer = _assemble(model, config, train_set, test_set, out_dir, progress)
    trainer.load_state(ckpt.extra)
    return trainer


def make_schedule(optimizer, config, steps_per_epoch):
    """The run's learning-rate schedule, stepped once per iteration: cosine after a linear
    warm-up of ``warmup_epochs``, or /10 at 50% and 75% of the iterations (multistep)."""
    total = config["epochs"] * steps_per_epoch
    if config["schedule"] == "cosine":
        return CosineLR(optimizer, total, warmup_steps=config["warmup_epochs"] * steps_per_epoch)
    return MultiStepLR(optimizer, [total // 2, (total * 3) // 4], gamma=0.1)


def _assemble(model, config, train_set, test_set, out_dir, progress):
    train_loader, test_loader = make_loaders(config, train_set, test_set, config["mean"],
                                             config["std"])
    optimizer = SGD(model.parameters(), lr=config["lr"], momentum=config["momentum"],
                    weight_decay=config["weight_decay"], nesterov=config["nesterov"])
    schedule = make_schedule(optimizer, config, len(train_loader))
    loss_fn = SoftmaxCrossEntropy(label_smoothing=config["label_smoothing"])
    return Trainer(model, optimizer, schedule, loss_fn, train_loader, test_loader, out_dir,
                   config=config, progress=progress)


# -- the trainer ------------------------------------------------------------------------------
class Trainer:
    """Train ``model`` epoch by epoch, evaluating, logging and checkpointing into ``out_dir``.

    Args:
        model: an npsenet model (``ns.models``; it has ``.name`` and ``.options``).
        optimizer: e.g. :class:`~npsenet.optim.SGD` over ``model.parameters()``.
        schedule: a learning-rate schedule stepped once per iteration, or None.
        loss_fn: :class:`~npsenet.nn.SoftmaxCrossEntropy` (with its label smoothing).
        train_loader, test_loader: :class:`~npsenet.data.BatchLoader` objects yielding
            (x float (N, 3, H, W), y int64 (N,)) on the model's device.
        out_dir: the folder for checkpoint.npz, metrics.csv and curves.png.
        config: the run's settings (JSON-able; saved as the checkpoint's meta); ``epochs``
            is the default length of :meth:`fit`.
        progress: show a tqdm bar per epoch (when tqdm is installed).
    """

    def __init__(self, model, optimizer, schedule, loss_fn, train_loader, test_loader,
                 out_dir, config=None, progress=True):
        self.model, self.optimizer, self.schedule = model, optimizer, schedule
        self.loss_fn = loss_fn
        self.train_loader, self.test_loader = train_loader, test_loader
        self.out_dir = Path(out_dir)
        self.config = dict(config or {})
        self.progress = progress
        self.epoch = 0              # epochs completed
        self.step_in_epoch = 0      # batches completed in the current epoch
        self.partial = _fresh_partial()
        self.metrics = []           # one dict per completed epoch (METRIC_COLUMNS)
        self.param_names = [name for name, _ in model.named_parameters()]

    @property
    def checkpoint_path(self):
        return self.out_dir / CHECKPOINT_NAME

    # -- the loop ----------------------------------------------------------------------------
    def fit(self, epochs=None):
        """Train until ``epochs`` epochs are complete in total (default: ``config["epochs"]``).

        Returns the list of per-epoch metric dicts. Raises :class:`TrainingDiverged` on a
        NaN/Inf loss and :class:`TrainingInterrupted` after SIGINT/SIGTERM (checkpoint
        written).
        """
        epochs = self.config.get("epochs") if epochs is None else epochs
        if not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"fit: epochs must be a positive integer, got {epochs!r}.")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with _StopOnSignals() as stop:
            while self.epoch < epochs:
                self._train_epoch(epochs, stop)
                started = time.perf_counter()
                test_loss, test_acc = evaluate(self.model, self.test_loader, self.loss_fn)
                self.partial["eval_seconds"] = time.perf_counter() - started
                self._finish_epoch(test_loss, test_acc)
                if stop.signum is not None and self.epoch < epochs:
                    raise self._interrupted(stop.signum)
        return self.metrics

    def _train_epoch(self, epochs, stop):
        loader = self.train_loader
        if self.step_in_epoch == 0:
            self.partial = _fresh_partial()
            self.partial["lr"] = self.optimizer.lr
        # after a mid-epoch resume the loader continues with the epoch's remaining batches
        self.model.train()
        bar = _progress_bar(len(loader), self.step_in_epoch,
                            f"epoch {self.epoch + 1}/{epochs}", self.progress)
        start = time.perf_counter() - self.partial["train_seconds"]
        try:
            for x, y in loader:
                loss, correct = self._train_step(x, y)
                p = self.partial
                p["loss_sum"] += loss * len(y)
                p["correct"] += correct
                p["seen"] += len(y)
                p["train_seconds"] = time.perf_counter() - start
                self.step_in_epoch += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{p['loss_sum'] / p['seen']:.3f}",
                                    acc=f"{p['correct'] / p['seen']:.3f}",
                                    img_s=f"{p['seen'] / max(p['train_seconds'], 1e-9):.0f}")
                if stop.signum is not None:
                    self.save_checkpoint()
                    raise self._interrupted(stop.signum)
        finally:
            if bar is not None:
                bar.close()

    def _train_step(self, x, y):
        """One SGD step on a batch; returns (mean loss, number of correct predictions)."""
        logits = self.model(x)
        loss = float(self.loss_fn(logits, y))
        if not math.isfinite(loss):
            raise self._diverged(f"the training loss became {loss}")
        correct = int((logits.argmax(axis=1) == y).sum())
        self.model.zero_grad()
        self.model.backward(self.loss_fn.backward())
        self.optimizer.step()
        if self.schedule is not None:
            self.schedule.step()
        return loss, correct

    def _finish_epoch(self, test_loss, test_acc):
        if not math.isfinite(test_loss):
            raise self._diverged(f"the test loss became {test_loss}")
        if not _all_finite(self.model):
            raise self._diverged("a parameter or batch-norm statistic became NaN or infinite")
        p = self.partial
        row = {
            "epoch": self.epoch + 1, "lr": p["lr"], "train_loss": p["loss_sum"] / p["seen"],
            "train_acc": p["correct"] / p["seen"], "test_loss": test_loss, "test_acc": test_acc,
            "epoch_seconds": p["train_seconds"] + p["eval_seconds"],
            "images_per_second": p["seen"] / max(p["train_seconds"], 1e-9),
        }
        self.metrics.append(row)
        self.epoch += 1
        self.step_in_epoch = 0
        self.partial = _fresh_partial()
        self.save_checkpoint()
        write_metrics(self.metrics, self.out_dir / METRICS_NAME)
        plot_curves(self.metrics, self.out_dir / CURVES_NAME)
        print(_summary_line(row, self.config.get("epochs")), flush=True)

    # -- checkpoints ------------------------------------------------------------------------------
    def save_checkpoint(self):
        """Write ``out_dir/checkpoint.npz`` atomically: the model, and as extra arrays the
        momentum buffers, the metrics and the trainer's state (schedule, loaders, epoch,
        position inside the epoch) as JSON. Refuses to save a NaN/Inf state."""
        if not _all_finite(self.model):
            raise self._diverged("a parameter or batch-norm statistic became NaN or infinite")
        optimizer_state = dict(self.optimizer.state_dict())
        buffers = optimizer_state.pop("momentum_buffers")
        state = {
            "epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "partial": self.partial,
            "optimizer": optimizer_state,
            "schedule": None if self.schedule is None else self.schedule.state_dict(),
            "train_loader": self.train_loader.state_dict(),
            "test_loader": self.test_loader.state_dict(),
        }
        extra = {STATE_KEY: np.array(json.dumps(state))}
        for name, buf in zip(self.param_names, buffers):
            if buf is not None:
                extra[BUFFER_PREFIX + name] = buf
        for column in METRIC_COLUMNS:
            extra[METRICS_PREFIX + column] = np.array([row[column] for row in self.metrics],
                                                      dtype=np.float64)
        checkpoint_io.save_model(self.checkpoint_path, self.model, extra=extra,
                                 meta={"config": self.config, "epoch": self.epoch,
                                       "step_in_epoch": self.step_in_epoch})

    def load_state(self, extra):
        """Restore what :meth:`save_checkpoint` stored in the checkpoint's ``extra`` arrays
        (the model itself is restored by :func:`npsenet.io.load_checkpoint`)."""
        state = json.loads(str(extra[STATE_KEY]))
        buffers = [extra.get(BUFFER_PREFIX + name) for name in self.param_names]
        self.optimizer.load_state_dict(dict(state["optimizer"], momentum_buffers=buffers))
        if self.schedule is not None and state["schedule"] is not None:
            self.schedule.load_state_dict(state["schedule"])
        self.train_loader.load_state_dict(state["train_loader"])
        self.test_loader.load_state_dict(state["test_loader"])
        self.epoch, self.step_in_epoch = state["epoch"], state["step_in_epoch"]
        self.partial = state["partial"]
        columns = {c: extra[METRICS_PREFIX + c].tolist() for c in METRIC_COLUMNS}
        self.metrics = [{c: (int(columns[c][i]) if c == "epoch" else columns[c][i])
                         for c in METRIC_COLUMNS} for i in range(len(columns["epoch"]))]

    # -- messages -----------------------------------------------------------------------------
    def _diverged(self, what):
        if self.checkpoint_path.exists():
            kept = (f"The last good checkpoint, {self.checkpoint_path}, is kept unchanged "
                    "(npsenet eval can still read it).")
        else:
            kept = "No checkpoint had been written yet."
        steps = len(self.train_loader)
        where = (f"at the end of epoch {self.epoch + 1}" if self.step_in_epoch >= steps
                 else f"at epoch {self.epoch + 1}, step {self.step_in_epoch + 1}/{steps}")
        return TrainingDiverged(
            f"{what} {where} (lr {self.optimizer.lr:.4g}): training diverged. "
            f"{kept} Try a smaller --lr (e.g. {self.optimizer.lr / 10:.3g}) or a longer "
            "--warmup-epochs.")

    def _interrupted(self, signum):
        name = signal.Signals(signum).name
        where = (f"after epoch {self.epoch}" if self.step_in_epoch == 0
                 else f"in epoch {self.epoch + 1} after step {self.step_in_epoch}/"
                      f"{len(self.train_loader)}")
        return TrainingInterrupted(
            signum, f"stopped by {name} {where}; the checkpoint {self.checkpoint_path} holds "
                    f"that point. Continue with: npsenet train --resume {self.out_dir}")


def evaluate_checkpoint(path, dataset=None, data_dir=None, device="cpu", batch_size=256,
                        limit_test=None, download=True):
    """Test loss and accuracy of the model saved in ``path`` (any ``ns.io.save_model`` file).

    The dataset and the input normalisation default to those of the training run when the
    checkpoint was written by ``npsenet train``; otherwise the dataset is ``dataset`` (or
    CIFAR-10) normalised with its training split's per-channel statistics.

    Returns ``(loss, accuracy, number of test images)``.
    """
    ckpt = checkpoint_io.load_checkpoint(path, device=normalize_device(device))
    trained = ckpt.meta.get("config") or {}
    dataset = dataset or trained.get("dataset", "cifar10")
    config = default_config(dataset=dataset, eval_batch_size=batch_size, limit_test=limit_test,
                            download=download, device=device,
                            data_dir=data_dir if data_dir is not None else trained.get("data_dir"))
    test_set = load_split(config, train=False)
    num_classes = ckpt.model.options.get("num_classes")
    if num_classes is not None and num_classes != len(test_set[2]):
        raise ValueError(f"the checkpoint's model has {num_classes} outputs but {dataset} has "
                         f"{len(test_set[2])} classes; pass the --dataset it was trained on.")
    if trained.get("dataset") == dataset and "mean" in trained:
        mean, std = trained["mean"], trained["std"]
    else:
        mean, std = _data.channel_stats(load_split(dict(config, limit_train=None), True)[0])
    loader = _data.BatchLoader(*test_set[:2], batch_size, shuffle=False, augment=False,
                               normalize=_data.Normalize(mean, std), device=config["device"])
    loss_fn = SoftmaxCrossEntropy(label_smoothing=trained.get("label_smoothing", 0.0))
    loss, accuracy = evaluate(ckpt.model, loader, loss_fn)
    return loss, accuracy, len(test_set[1])


def evaluate(model, loader, loss_fn):
    """Mean loss and accuracy of ``model`` (in eval mode) over every batch of ``loader``.

    Returns ``(loss, accuracy)`` as Python floats; the model's train/eval mode is restored.
    """
    was_training = model.training
    model.eval()
    loss_sum, correct, seen = 0.0, 0, 0
    try:
        with no_grad():  # nothing cached for a backward pass that never comes
            for x, y in loader:
                logits = model(x)
                loss_sum += float(loss_fn(logits, y)) * len(y)
                correct += int((logits.argmax(axis=1) == y).sum())
                seen += len(y)
    finally:
        model.train(was_training)
    if seen == 0:
        raise ValueError("evaluate: the loader yielded no batches.")
    return loss_sum / seen, correct / seen


def _fresh_partial():
    """The running sums of an epoch in progress (saved in mid-epoch checkpoints)."""
    return {"lr": None, "loss_sum": 0.0, "correct": 0, "seen": 0, "train_seconds": 0.0,
            "eval_seconds": 0.0}


def _all_finite(model):
    for array in model.state_dict().values():
        if array.dtype.kind == "f" and not bool(get_array_module(array).isfinite(array).all()):
            return False
    return True


class _StopOnSignals:
    """While active, SIGINT and SIGTERM only set ``signum`` (the loop checks it after each
    step); a second signal goes to the previous handler (Ctrl-C twice stops at once).
    Handlers can only be installed from the main thread; elsewhere this does nothing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._request_stop)
        return self

    def __exit__(self, *exc_info):
        for s, handler in self._previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def _request_stop(self, signum, frame):
        if self.signum is None:
            self.signum = signum
            print(f"\n{signal.Signals(signum).name} received: finishing the current step and "
                  "saving a checkpoint (send it again to stop at once).", file=sys.stderr,
                  flush=True)
            return
        previous = self._previous.get(signum)
        self.__exit__()
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            os.kill(os.getpid(), signum)


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


def _summary_line(row, epochs):
    return (f"epoch {row['epoch']}/{epochs}  lr {row['lr']:.4f}  "
            f"train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}  "
            f"test loss {row['test_loss']:.4f} acc {row['test_acc']:.4f}  "
            f"{row['epoch_seconds']:.1f} s  {row['images_per_second']:.1f} img/s")


# -- metrics.csv and curves.png -----------------------------------------------------------------
def write_metrics(rows, path):
    """Write ``rows`` (dicts with :data:`METRIC_COLUMNS`) as CSV, replacing ``path`` atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: (row[c] if c == "epoch" else f"{row[c]:.6g}") for c in METRIC_COLUMNS})
    _replace_file(Path(path), buffer.getvalue().encode())


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
                  "(pip install \"npsenet[train]\").", file=sys.stderr)
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
    buffer = io.BytesIO()
    canvas.print_png(buffer)
    _replace_file(Path(path), buffer.getvalue())
    return True


def _replace_file(path, payload: bytes):
    """Write ``payload`` to a temporary file beside ``path``, then rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(payload)
    os.replace(tmp, path)
