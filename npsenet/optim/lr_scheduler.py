"""Learning-rate schedules: they set ``optimizer.lr`` before each update.

A schedule counts its ``step()`` calls, t = 0, 1, 2, ..., and sets the learning rate
as a function of t, like PyTorch's schedulers:

    schedule = CosineLR(optimizer, total_steps=epochs * len(loader), warmup_steps=len(loader))
    for epoch in range(epochs):
        for x, y in loader:
            ...                       # forward, backward
            optimizer.step()          # uses lr(t)
            schedule.step()           # t <- t + 1, optimizer.lr <- lr(t)

Step a schedule once per iteration (then ``total_steps``, ``warmup_steps`` and
``milestones`` count iterations, as above) or once per epoch (then they count
epochs); the formulas are the same. Building a schedule sets lr(0) at once.
``npsenet train`` steps them once per iteration.
"""
from __future__ import annotations

import bisect
import math


def _check_optimizer(optimizer, schedule):
    if not hasattr(optimizer, "lr"):
        raise ValueError(f"{schedule}: expected an optimizer with an `lr` attribute "
                         f"(ns.optim.SGD), got {type(optimizer).__name__}.")


class _Schedule:
    """What every schedule shares: the step counter, ``base_lr``, saving and restoring."""

    def __init__(self, optimizer):
        _check_optimizer(optimizer, type(self).__name__)
        self.optimizer = optimizer
        self.base_lr = float(optimizer.lr)
        self.last_step = 0
        self._apply()

    def lr_at(self, t):
        """The learning rate after ``t`` calls of :meth:`step`."""
        raise TypeError(f"{type(self).__name__} must define lr_at(t).")

    def get_lr(self):
        """The learning rate for the current step (what ``optimizer.lr`` holds now)."""
        return self.lr_at(self.last_step)

    def step(self):
        """Advance one iteration (or epoch) and set the optimizer's learning rate."""
        self.last_step += 1
        self._apply()

    def _apply(self):
        self.last_lr = self.get_lr()
        self.optimizer.lr = self.last_lr

    def state_dict(self):
        """``{"base_lr", "last_step"}``: enough to continue exactly where it stopped."""
        return {"base_lr": self.base_lr, "last_step": self.last_step}

    def load_state_dict(self, state):
        """Restore :meth:`state_dict` and set the optimizer's learning rate accordingly."""
        last_step = int(state["last_step"])
        if last_step < 0:
            raise ValueError(f"{type(self).__name__}.load_state_dict: last_step must be >= 0, "
                             f"got {last_step}.")
        self.base_lr = float(state["base_lr"])
        self.last_step = last_step
        self._apply()


class MultiStepLR(_Schedule):
    """Multiply the learning rate by ``gamma`` at each milestone (PyTorch's MultiStepLR).

        lr(t) = base_lr * gamma ** (number of milestones m with m <= t)

    Args:
        optimizer: its current ``lr`` is ``base_lr``.
        milestones: increasing step counts (iterations or epochs, see the module doc),
            e.g. 50% and 75% of the training run.
        gamma: the decay factor at each milestone, in (0, 1].
    """

    def __init__(self, optimizer, milestones, gamma=0.1):
        milestones = [int(m) for m in milestones]
        if any(m < 0 for m in milestones) or milestones != sorted(milestones):
            raise ValueError(f"MultiStepLR: milestones must be increasing non-negative step "
                             f"counts, got {milestones}.")
        if not 0.0 < float(gamma) <= 1.0:
            raise ValueError(f"MultiStepLR: gamma must be in (0, 1], got {gamma!r}; 0.1 is usual.")
        self.milestones = milestones
        self.gamma = float(gamma)
        super().__init__(optimizer)

    def lr_at(self, t):
        return self.base_lr * self.gamma ** bisect.bisect_right(self.milestones, t)

    def __repr__(self):
        return f"MultiStepLR(milestones={self.milestones}, gamma={self.gamma:g})"


class CosineLR(_Schedule):
    """Linear warm-up, then cosine decay to ``min_lr`` (SGDR without restarts).

    With W = ``warmup_steps`` and T = ``total_steps``:

        lr(t) = base_lr * (t + 1) / (W + 1)                                  for t < W
        lr(t) = min_lr + (base_lr - min_lr) * (1 + cos(pi * (t - W) / (T - W))) / 2
                                                                             for W <= t <= T
        lr(t) = min_lr                                                       for t > T

    The warm-up rises from base_lr / (W + 1) to base_lr in equal steps; after it the
    schedule is PyTorch's ``CosineAnnealingLR(T_max=T - W, eta_min=min_lr)``.

    Args:
        optimizer: its current ``lr`` is ``base_lr``.
        total_steps: T, the length of the whole run (iterations or epochs).
        warmup_steps: W < T steps of linear warm-up (0 for none).
        min_lr: the final learning rate, 0 <= min_lr <= base_lr.
    """

    def __init__(self, optimizer, total_steps, warmup_steps=0, min_lr=0.0):
        _check_optimizer(optimizer, "CosineLR")
        total_steps, warmup_steps = int(total_steps), int(warmup_steps)
        if total_steps < 1:
            raise ValueError(f"CosineLR: total_steps must be >= 1, got {total_steps}.")
        if not 0 <= warmup_steps < total_steps:
            raise ValueError(f"CosineLR: warmup_steps must be in [0, total_steps={total_steps}), "
                             f"got {warmup_steps}; a few percent of the run is usual.")
        if not 0.0 <= float(min_lr) <= float(optimizer.lr):
            raise ValueError(f"CosineLR: min_lr must be in [0, lr={optimizer.lr:g}], "
                             f"got {min_lr!r}.")
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.min_lr = float(min_lr)
        super().__init__(optimizer)

    def lr_at(self, t):
        w, total = self.warmup_steps, self.total_steps
        if t < w:
            return self.base_lr * (t + 1) / (w + 1)
        if t > total:
            return self.min_lr
        progress = (t - w) / (total - w)
        return self.min_lr + (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * progress)) / 2

    def __repr__(self):
        return (f"CosineLR(total_steps={self.total_steps}, warmup_steps={self.warmup_steps}, "
                f"min_lr={self.min_lr:g})")
