"""Stochastic gradient descent with momentum and weight decay, exactly PyTorch's update.

For each parameter w with gradient g (dL/dw from the backward pass), learning rate
lr, momentum mu and weight decay lambda, one ``step()`` does:

    g   <- g + lambda * w                     (L2 weight decay, added to the gradient)
    b   <- g                      on the first step (the momentum buffer)
    b   <- mu * b + g             afterwards (no dampening)
    d   <- g + mu * b             with Nesterov momentum,  d <- b  without
    w   <- w - lr * d

This is ``torch.optim.SGD(params, lr, momentum, weight_decay=lambda, nesterov=...)``
with ``dampening=0``. The update is done in place on ``w.data`` in the parameter's
own dtype (float32 parameters stay float32) with the parameter's array library
(NumPy or CuPy). Parameters whose ``grad`` is ``None`` are skipped, as in PyTorch.
"""
from __future__ import annotations

import math

from ..backend import device_of, get_array_module, to_device


def _check_number(value, name, minimum=0.0):
    """A finite float >= ``minimum``; otherwise a ValueError naming what came."""
    if isinstance(value, (bool, str)) or not hasattr(value, "__float__"):
        raise ValueError(f"SGD: {name} must be a number, got {type(value).__name__} "
                         f"{value!r}.")
    value = float(value)
    if not math.isfinite(value) or value < minimum:
        raise ValueError(f"SGD: {name} must be a finite number >= {minimum:g}, got {value!r}.")
    return value


def _hyperparameters(lr, momentum, weight_decay, nesterov):
    """Validated ``(lr, momentum, weight_decay, nesterov)`` as Python floats and a bool."""
    lr = _check_number(lr, "lr")  # 0 is allowed, as in PyTorch: a schedule may end there
    momentum = _check_number(momentum, "momentum")
    if momentum >= 1.0:
        raise ValueError(f"SGD: momentum must be in [0, 1), got {momentum!r}; "
                         "0.9 is the usual choice.")
    weight_decay = _check_number(weight_decay, "weight_decay")
    if not isinstance(nesterov, bool):
        raise ValueError(f"SGD: nesterov must be True or False, got {nesterov!r}.")
    if nesterov and momentum == 0.0:
        raise ValueError("SGD: nesterov=True needs momentum > 0 (Nesterov momentum "
                         "without momentum is plain SGD); set momentum=0.9, for example.")
    return lr, momentum, weight_decay, nesterov


def _check_grad(i, p):
    """Parameter ``i``'s grad, unless None, must be an array of its shape, dtype and device."""
    g = p.grad
    if g is None:
        return
    if not (hasattr(g, "shape") and hasattr(g, "dtype")):
        raise ValueError(f"SGD: the grad of parameter {i} is a {type(g).__name__}, expected "
                         f"an array of shape {tuple(p.data.shape)}; gradients come from "
                         "model.backward(...).")
    if tuple(g.shape) != tuple(p.data.shape):
        raise ValueError(f"SGD: parameter {i} has shape {tuple(p.data.shape)} but its "
                         f"grad has shape {tuple(g.shape)}.")
    if g.dtype != p.data.dtype:
        raise ValueError(f"SGD: parameter {i} is {p.data.dtype} but its grad is {g.dtype}; "
                         f"the optimizer does not cast. Use grad.astype(np.{p.data.dtype}).")
    if device_of(g) != device_of(p.data):
        raise ValueError(f"SGD: parameter {i} is on the {device_of(p.data)} but its grad is "
                         f"on the {device_of(g)}; move the grad with ns.backend.to_device(grad, "
                         f"{device_of(p.data)!r}).")


class SGD:
    """SGD with optional (Nesterov) momentum and L2 weight decay.

    Args:
        params: an iterable of :class:`~npsenet.nn.Parameter` (``model.parameters()``).
        lr: the learning rate (>= 0); schedules change ``optimizer.lr`` between steps.
        momentum: mu in [0, 1); 0 disables the momentum buffer.
        weight_decay: lambda >= 0, the coefficient of the L2 term added to each gradient.
        nesterov: use Nesterov momentum (needs ``momentum > 0``).

    Example::

        opt = ns.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        model.zero_grad()              # (or opt.zero_grad())
        loss = loss_fn(model(x), y)
        model.backward(loss_fn.backward())
        opt.step()
    """

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
        self.params = list(params)
        if not self.params:
            raise ValueError("SGD: got an empty list of parameters; pass model.parameters() "
                             "of a model that has parameters.")
        for i, p in enumerate(self.params):
            if not (hasattr(p, "data") and hasattr(p, "grad")):
                raise ValueError(f"SGD: expected Parameter objects (model.parameters()); item "
                                 f"{i} is {type(p).__name__}.")
        if len({id(p) for p in self.params}) != len(self.params):
            raise ValueError("SGD: a parameter appears more than once in the list; it would "
                             "be updated twice per step.")
        self.lr, self.momentum, self.weight_decay, self.nesterov = _hyperparameters(
            lr, momentum, weight_decay, nesterov)
        # one buffer per parameter, created at its first update (None until then)
        self.momentum_buffers = [None] * len(self.params)

    def zero_grad(self):
        """Forget the accumulated gradients (``grad = None``), as ``model.zero_grad()``."""
        for p in self.params:
            p.grad = None

    def step(self):
        """Update every parameter that has a gradient, in place. Every gradient is checked
        (an array of its parameter's shape, dtype and device) before anything changes."""
        for i, p in enumerate(self.params):  # check everything before changing anything
            _check_grad(i, p)
        lr, mu, wd = self.lr, self.momentum, self.weight_decay
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            xp = get_array_module(p.data)
            grad = p.grad
            if wd != 0.0:
                grad = grad + wd * p.data
            if mu != 0.0:
                buf = self.momentum_buffers[i]
                if buf is None:
                    buf = xp.array(grad, dtype=p.data.dtype, copy=True)
                    self.momentum_buffers[i] = buf
                else:
                    buf *= mu
                    buf += grad
                grad = grad + mu * buf if self.nesterov else buf
            p.data -= (lr * grad).astype(p.data.dtype, copy=False)

    # -- saving and restoring ------------------------------------------------------
    def state_dict(self):
        """The hyperparameters and the momentum buffers (arrays, or None where a
        parameter has not been updated yet), in the order of ``params``."""
        return {
            "lr": self.lr,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "nesterov": self.nesterov,
            "momentum_buffers": list(self.momentum_buffers),
        }

    def load_state_dict(self, state):
        """Restore :meth:`state_dict`; buffers are copied to each parameter's device and dtype.

        Everything is checked before anything changes: a ValueError leaves the optimizer
        as it was."""
        keys = ("lr", "momentum", "weight_decay", "nesterov", "momentum_buffers")
        if not isinstance(state, dict) or any(k not in state for k in keys):
            got = (f"a dict lacking {[k for k in keys if k not in state]}"
                   if isinstance(state, dict) else type(state).__name__)
            raise ValueError(f"SGD.load_state_dict: expected the dict SGD.state_dict() returns "
                             f"(keys {list(keys)}), got {got}.")
        buffers = state["momentum_buffers"]
        if not isinstance(buffers, (list, tuple)):
            raise ValueError(f"SGD.load_state_dict: momentum_buffers must be a list (one array "
                             f"or None per parameter), got {type(buffers).__name__}.")
        for i, buf in enumerate(buffers):
            kind = getattr(getattr(buf, "dtype", None), "kind", None)
            if buf is not None and (kind != "f" or not hasattr(buf, "shape")):
                raise ValueError(f"SGD.load_state_dict: momentum buffer {i} must be a "
                                 f"floating-point array or None, got {type(buf).__name__}"
                                 f"{' of dtype ' + str(buf.dtype) if kind else ''}.")
        if len(buffers) != len(self.params):
            raise ValueError(f"SGD.load_state_dict: the state has {len(buffers)} momentum "
                             f"buffers but the optimizer has {len(self.params)} parameters. "
                             "Was it saved from the same model?")
        for i, (p, buf) in enumerate(zip(self.params, buffers)):
            if buf is not None and tuple(buf.shape) != tuple(p.data.shape):
                raise ValueError(f"SGD.load_state_dict: momentum buffer {i} has shape "
                                 f"{tuple(buf.shape)} but parameter {i} has "
                                 f"{tuple(p.data.shape)}.")
        self.lr, self.momentum, self.weight_decay, self.nesterov = _hyperparameters(
            state["lr"], state["momentum"], state["weight_decay"], bool(state["nesterov"]))
        self.momentum_buffers = [
            None if buf is None else
            to_device(buf, device_of(p.data)).astype(p.data.dtype, copy=True)
            for p, buf in zip(self.params, buffers)]

    def __repr__(self):
        return (f"SGD(lr={self.lr:g}, momentum={self.momentum:g}, "
                f"weight_decay={self.weight_decay:g}, nesterov={self.nesterov})")
