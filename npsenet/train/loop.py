"""The training loop: :class:`Trainer` trains epoch by epoch; :func:`evaluate` measures.

Each epoch :meth:`Trainer.fit` trains on every batch (:meth:`Trainer._train_step`, one SGD
step), evaluates on the test set, then writes the checkpoint (:mod:`.checkpoint`) and
``metrics.csv``, ``curves.png`` and the summary line (:mod:`.report`). A NaN or infinite
loss and SIGINT/SIGTERM stop it as :mod:`.faults` describes.

On the GPU nothing crosses between host and device inside an epoch but the batches going
up (:class:`~npsenet.data.BatchLoader`) and the metrics coming down: each step's loss and
count of correct predictions stay on the device (:class:`DeviceMetrics`) until every
``metrics_every`` steps one small array brings the group's figures to the host, where the
progress bar, the running sums and the divergence check take them in step order. A step
that reads a number from the GPU (``float(loss)``) would wait for the GPU to finish its
queue and leave it idle while the host prepares the next step; on the CPU the numbers are
already on the host, so there the figures are read after every step.
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path

from ..backend import get_array_module, to_numpy
from ..nn import no_grad
from .checkpoint import CHECKPOINT_NAME, load_trainer_state, save_trainer
from .faults import StopOnSignals, check_loss, check_model, interrupted
from .lock import check_writable, hold_run_folder
from .report import EpochProgress, epoch_row, fresh_partial, report_epoch


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
        metrics_every: bring the training loss and accuracy to the host every this many
            steps (and at the end of the epoch, and before a checkpoint); a NaN loss is
            noticed then, and reported at the step where it occurred. ``None``: every step
            on the CPU, every :data:`GPU_METRICS_EVERY` steps on the GPU.
    """

    def __init__(self, model, optimizer, schedule, loss_fn, train_loader, test_loader,
                 out_dir, config=None, progress=True, metrics_every=None):
        self.model, self.optimizer, self.schedule = model, optimizer, schedule
        self.loss_fn = loss_fn
        self.train_loader, self.test_loader = train_loader, test_loader
        self.out_dir = Path(out_dir)
        self.config = dict(config or {})
        self.progress = progress
        if metrics_every is not None and (int(metrics_every) != metrics_every
                                          or metrics_every < 1):
            raise ValueError(f"Trainer: metrics_every must be a positive integer or None, got "
                             f"{metrics_every!r}.")
        self.metrics_every = metrics_every
        self.epoch = 0              # epochs completed
        self.step_in_epoch = 0      # batches completed in the current epoch
        self.partial = fresh_partial()  # the current epoch's running sums
        self.metrics = []           # one dict per completed epoch (METRIC_COLUMNS)
        self.param_names = [name for name, _ in model.named_parameters()]
        self.dist = None            # several processes: npsenet.distributed.parallelize

    @property
    def checkpoint_path(self):
        return self.out_dir / CHECKPOINT_NAME

    def fit(self, epochs=None):
        """Train until ``epochs`` epochs are complete in total (default: ``config["epochs"]``).

        Returns the list of per-epoch metric dicts. Raises :class:`TrainingDiverged` on a
        NaN/Inf loss, :class:`TrainingInterrupted` after SIGINT/SIGTERM (checkpoint
        written), ValueError before the first step when ``out_dir`` cannot be written and
        :class:`~npsenet.train.lock.RunFolderInUse` when another process trains there
        (:mod:`.lock`: the folder's lock is held while ``fit`` runs).
        """
        epochs = self.config.get("epochs") if epochs is None else epochs
        if not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"fit: epochs must be a positive integer, got {epochs!r}.")
        if self.dist is None or self.dist.is_main:
            check_writable(self.out_dir)        # a folder we can write, before the first step
            held = hold_run_folder(self.out_dir)
        else:                                   # data parallel: only rank 0 writes (and locks)
            held = contextlib.nullcontext()
        with held, StopOnSignals() as stop:
            if self.dist is not None:   # the ranks stop together, at the same step
                stop = self.dist.agreed_stop(stop)
            while self.epoch < epochs:
                self._train_epoch(epochs, stop)
                started = time.perf_counter()
                test_loss, test_acc = (evaluate if self.dist is None else self.dist.evaluate)(
                    self.model, self.test_loader, self.loss_fn)
                self.partial["eval_seconds"] = time.perf_counter() - started
                self._finish_epoch(test_loss, test_acc)
                if stop.signum is not None and self.epoch < epochs:
                    raise interrupted(self, stop.signum)
        return self.metrics

    def _train_epoch(self, epochs, stop):
        """Train on the epoch's batches: all of them, or after a mid-epoch resume the ones
        left. After a signal, save the checkpoint of that step and raise."""
        if self.step_in_epoch == 0:
            self.partial = fresh_partial(lr=self.optimizer.lr)
        self.model.train()
        every = self._metrics_interval()
        pending = DeviceMetrics()
        with EpochProgress(self.partial, len(self.train_loader), self.step_in_epoch,
                           f"epoch {self.epoch + 1}/{epochs}", self.progress) as progress:
            for x, y in self.train_loader:
                self.partial["lr_sum"] = self.partial.get("lr_sum", 0.0) + self.optimizer.lr
                self.partial["lr_steps"] = self.partial.get("lr_steps", 0) + 1
                pending.add(*self._train_step(x, y),
                            len(y) if self.dist is None else self.dist.count)
                self.step_in_epoch += 1
                if len(pending) >= every or stop.signum is not None:
                    self._take_metrics(pending, progress)
                if stop.signum is not None:
                    self.save_checkpoint()
                    raise interrupted(self, stop.signum)
            self._take_metrics(pending, progress)

    def _metrics_interval(self):
        """How many steps the training metrics wait on the device (``metrics_every``)."""
        if self.metrics_every is not None:
            return int(self.metrics_every)
        on_cpu = getattr(self.train_loader, "device", "cpu") == "cpu"
        return 1 if on_cpu else GPU_METRICS_EVERY

    def _take_metrics(self, pending, progress):
        """Bring the pending steps' losses and correct counts to the host (one copy), check
        each loss in step order, then add them to the epoch's sums and the progress bar."""
        if not len(pending):
            return
        losses, corrects, counts = pending.fetch()
        done = self.step_in_epoch
        for index, loss in enumerate(losses):
            self.step_in_epoch = done - len(losses) + index   # the step the loss belongs to
            check_loss(self, "training", loss)
        self.step_in_epoch = done
        progress.add_batches(losses, corrects, counts)

    def _train_step(self, x, y):
        """One SGD step on a batch; returns (mean loss, number of correct predictions) as
        0-d arrays on the model's device, for :class:`DeviceMetrics`."""
        logits = self.model(x)
        loss = self.loss_fn(logits, y)
        correct = (logits.argmax(axis=1) == y).sum()
        self.model.zero_grad()
        self.model.backward(self.loss_fn.backward())
        if self.dist is not None:   # one all-reduce: the gradients summed, then averaged
            loss, correct = self.dist.all_reduce(loss, correct)
        self.optimizer.step()
        if self.schedule is not None:
            self.schedule.step()
        return loss, correct

    def _finish_epoch(self, test_loss, test_acc):
        """Record the epoch's row (if the run is still finite), then write the checkpoint,
        metrics.csv and curves.png and print the summary line."""
        check_loss(self, "test", test_loss)
        check_model(self)
        self.metrics.append(epoch_row(self.epoch + 1, self.partial, test_loss, test_acc))
        self.epoch += 1
        self.step_in_epoch = 0
        self.partial = fresh_partial()
        self.save_checkpoint()
        if self.dist is None or self.dist.is_main:
            report_epoch(self.metrics, self.out_dir, self.config.get("epochs"))

    def save_checkpoint(self):
        """Write ``out_dir/checkpoint.npz`` atomically: the model, and as extra arrays the
        momentum buffers, the metrics and the trainer's state (schedule, loaders, epoch,
        position inside the epoch) as JSON. Refuses to save a NaN/Inf state."""
        save_trainer(self)

    def load_state(self, extra):
        """Restore what :meth:`save_checkpoint` stored in the checkpoint's ``extra`` arrays
        (the model itself is restored by :func:`npsenet.io.load_checkpoint`)."""
        load_trainer_state(self, extra)


def evaluate(model, loader, loss_fn):
    """Mean loss and accuracy of ``model`` (in eval mode) over every batch of ``loader``.

    The batches' losses and correct counts stay on the model's device until the last batch
    and come to the host in one copy. Returns ``(loss, accuracy)`` as Python floats; the
    model's train/eval mode is restored.
    """
    loss_sum, correct, seen = evaluation_sums(model, loader, loss_fn)
    if not seen:
        raise ValueError("evaluate: the loader yielded no batches.")
    return loss_sum / seen, correct / seen


def evaluation_sums(model, loader, loss_fn):
    """(sum of the batches' loss times their size, correct predictions, images) of
    ``model`` in eval mode over ``loader``, on the host; (0.0, 0, 0) for a loader that
    yields nothing (a data-parallel rank whose test shard is empty). The model's
    train/eval mode is restored."""
    was_training = model.training
    model.eval()
    pending = DeviceMetrics()
    try:
        with no_grad():  # nothing cached for a backward pass that never comes
            for x, y in loader:
                logits = model(x)
                pending.add(loss_fn(logits, y), (logits.argmax(axis=1) == y).sum(), len(y))
    finally:
        model.train(was_training)
    if not len(pending):
        return 0.0, 0, 0
    losses, corrects, counts = pending.fetch()
    loss_sum = 0.0
    for loss, count in zip(losses, counts):
        loss_sum += loss * count
    return loss_sum, sum(corrects), sum(counts)


GPU_METRICS_EVERY = 25
"""Training steps between two copies of the metrics to the host when training on the GPU
(about 16 copies in an epoch of 391 batches); see :class:`Trainer`'s ``metrics_every``."""


class DeviceMetrics:
    """The losses and correct counts of steps not yet read, kept where they were computed.

        pending = DeviceMetrics()
        pending.add(loss, correct, len(y))        # 0-d arrays on the device, an int
        losses, corrects, counts = pending.fetch() # one device-to-host copy, then empty

    :meth:`fetch` stacks them into one (2, steps) float64 array on the device and copies
    that to the host: one transfer and one wait for the GPU per group of steps, instead of
    two per step. float64 holds every float32 loss and every count exactly, so the figures
    are those that ``float(loss)`` and ``int(correct)`` would read one by one.
    """

    def __init__(self):
        self.losses, self.corrects, self.counts = [], [], []

    def __len__(self):
        return len(self.counts)

    def add(self, loss, correct, count):
        """Keep one step's mean loss and correct count (arrays, not read) and its batch size."""
        self.losses.append(loss)
        self.corrects.append(correct)
        self.counts.append(int(count))

    def fetch(self):
        """(losses as floats, correct counts as ints, batch sizes) of the kept steps, in
        order, brought to the host in one copy; the store is emptied."""
        xp = get_array_module(self.losses[0])
        stacked = xp.stack([xp.stack(self.losses).astype(xp.float64),
                            xp.stack(self.corrects).astype(xp.float64)])
        host = to_numpy(stacked)
        losses, corrects, counts = host[0].tolist(), [int(c) for c in host[1]], self.counts
        self.losses, self.corrects, self.counts = [], [], []
        return losses, corrects, counts
