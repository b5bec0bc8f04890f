"""The training loop: :class:`Trainer` trains epoch by epoch; :func:`evaluate` measures.

Each epoch :meth:`Trainer.fit` trains on every batch (:meth:`Trainer._train_step`, one SGD
step), evaluates on the test set, then writes the checkpoint (:mod:`.checkpoint`) and
``metrics.csv``, ``curves.png`` and the summary line (:mod:`.report`). A NaN or infinite
loss and SIGINT/SIGTERM stop it as :mod:`.faults` describes.
"""
from __future__ import annotations

import time
from pathlib import Path

from ..nn import no_grad
from .checkpoint import CHECKPOINT_NAME, load_trainer_state, save_trainer
from .faults import StopOnSignals, check_loss, check_model, interrupted
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
        self.partial = fresh_partial()  # the current epoch's running sums
        self.metrics = []           # one dict per completed epoch (METRIC_COLUMNS)
        self.param_names = [name for name, _ in model.named_parameters()]

    @property
    def checkpoint_path(self):
        return self.out_dir / CHECKPOINT_NAME

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
        with StopOnSignals() as stop:
            while self.epoch < epochs:
                self._train_epoch(epochs, stop)
                started = time.perf_counter()
                test_loss, test_acc = evaluate(self.model, self.test_loader, self.loss_fn)
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
        with EpochProgress(self.partial, len(self.train_loader), self.step_in_epoch,
                           f"epoch {self.epoch + 1}/{epochs}", self.progress) as progress:
            for x, y in self.train_loader:
                loss, correct = self._train_step(x, y)
                progress.add(loss, correct, len(y))
                self.step_in_epoch += 1
                if stop.signum is not None:
                    self.save_checkpoint()
                    raise interrupted(self, stop.signum)

    def _train_step(self, x, y):
        """One SGD step on a batch; returns (mean loss, number of correct predictions)."""
        logits = self.model(x)
        loss = float(self.loss_fn(logits, y))
        check_loss(self, "training", loss)
        correct = int((logits.argmax(axis=1) == y).sum())
        self.model.zero_grad()
        self.model.backward(self.loss_fn.backward())
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
