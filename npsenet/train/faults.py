"""How a run stops early: a loss that diverged, or SIGINT/SIGTERM.

* A loss that is NaN or infinite stops the run with :class:`TrainingDiverged`; nothing from
  the bad state is saved, so the last checkpoint is the last good one.
* SIGINT (Ctrl-C) or SIGTERM lets the current step finish, writes a checkpoint of that
  exact point (mid-epoch included) and raises :class:`TrainingInterrupted`;
  ``npsenet train`` then exits with 128 + the signal number (130 for SIGINT, 143 for
  SIGTERM), the shell's convention. A second signal stops at once; the checkpoint on disk
  is still whole, since checkpoints are replaced atomically.

The messages say where the run stopped, from the trainer's ``epoch`` (epochs completed)
and ``step_in_epoch`` (batches completed in the current epoch).
"""
from __future__ import annotations

import math
import os
import signal
import sys
import threading

from ..backend import get_array_module


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


def check_loss(trainer, split, loss):
    """Raise :class:`TrainingDiverged` if ``loss`` (of the ``split``: "training" or "test")
    is NaN or infinite."""
    if not math.isfinite(loss):
        raise diverged(trainer, f"the {split} loss became {loss}")


def check_model(trainer):
    """Raise :class:`TrainingDiverged` if a parameter or buffer of the trainer's model holds
    a NaN or an infinity (checked before anything of the model is saved)."""
    if not all_finite(trainer.model):
        raise diverged(trainer, "a parameter or batch-norm statistic became NaN or infinite")


def all_finite(model):
    """Whether every floating-point array of ``model.state_dict()`` is finite."""
    for array in model.state_dict().values():
        if array.dtype.kind == "f" and not bool(get_array_module(array).isfinite(array).all()):
            return False
    return True


def diverged(trainer, what):
    """The :class:`TrainingDiverged` error for ``what`` went wrong, saying where, what was
    kept and what to try."""
    if trainer.checkpoint_path.exists():
        kept = (f"The last good checkpoint, {trainer.checkpoint_path}, is kept unchanged "
                "(npsenet eval can still read it).")
    else:
        kept = "No checkpoint had been written yet."
    steps = len(trainer.train_loader)
    where = (f"at the end of epoch {trainer.epoch + 1}" if trainer.step_in_epoch >= steps
             else f"at epoch {trainer.epoch + 1}, step {trainer.step_in_epoch + 1}/{steps}")
    lr = trainer.optimizer.lr
    return TrainingDiverged(
        f"{what} {where} (lr {lr:.4g}): training diverged. {kept} Try a smaller --lr "
        f"(e.g. {lr / 10:.3g}) or a longer --warmup-epochs.")


def interrupted(trainer, signum):
    """The :class:`TrainingInterrupted` error for the signal ``signum``, saying where the
    run stopped and how to continue it."""
    name = signal.Signals(signum).name
    where = (f"after epoch {trainer.epoch}" if trainer.step_in_epoch == 0
             else f"in epoch {trainer.epoch + 1} after step {trainer.step_in_epoch}/"
                  f"{len(trainer.train_loader)}")
    return TrainingInterrupted(
        signum, f"stopped by {name} {where}; the checkpoint {trainer.checkpoint_path} holds "
                f"that point. Continue with: npsenet train --resume {trainer.out_dir}")


class StopOnSignals:
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
