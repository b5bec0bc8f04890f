"""Numerical gradient checking, for every layer here and for layers students write.

    >>> import numpy as np, npsenet as ns
    >>> layer = ns.nn.Conv2d(3, 4, 3, padding=1).to(dtype=np.float64)
    >>> x = np.random.default_rng(0).standard_normal((2, 3, 5, 5))
    >>> errors = ns.gradcheck.check_layer(layer, x)
    >>> max(errors.values()) < 1e-7
    True

The check (the contract, docs/contract.md#gradients):

* float64 throughout (float32 rounding alone is ~1e-7);
* a **random** upstream gradient g, so the scalar being differentiated is
  L = sum(f(x) * g), never sum(f(x)): a plain sum hides errors in softmax and
  batch-norm backward passes, whose gradients of sum(f) vanish identically;
* central differences, here the fourth-order stencil
  dL/dx_j ≈ [8 (f(x + h e_j) - f(x - h e_j)) - (f(x + 2h e_j) - f(x - 2h e_j))] · g / (12 h),
  with the outputs subtracted before they are weighted, which keeps round-off small;
* relative error max_j |a_j - n_j| / max(1e-8, |a_j| + |n_j|) (CS231n's ``rel_error``).

Layers with a kink (ReLU, max pooling) need inputs at least a few h away from it.
"""
from __future__ import annotations

import numpy as np

from .backend import get_array_module, to_numpy

DEFAULT_STEP = 1e-4


def relative_error(analytic, numerical) -> float:
    """max |a - n| / max(1e-8, |a| + |n|), elementwise, as a Python float."""
    a, n = to_numpy(analytic).astype(np.float64), to_numpy(numerical).astype(np.float64)
    if a.shape != n.shape:
        raise ValueError(f"relative_error: shapes differ, {a.shape} and {n.shape}.")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - n) / np.maximum(1e-8, np.abs(a) + np.abs(n))))


def numerical_gradient(f, x, dout, step=DEFAULT_STEP):
    """dL/dx for L = sum(f() * dout), where f reads ``x`` (perturbed in place, then restored).

    Args:
        f: a function of no arguments returning the output array (it must read ``x``).
        x: a contiguous float64 array (an input, or a parameter's ``.data``).
        dout: the upstream gradient, shape of f()'s output.
    Returns:
        an array shaped like ``x``.
    """
    xp = get_array_module(x)
    if not x.flags.c_contiguous:
        raise ValueError("numerical_gradient: x must be C-contiguous so it can be perturbed "
                         "in place; pass np.ascontiguousarray(x).")
    flat = x.reshape(-1)
    grad = np.zeros(x.size, dtype=np.float64)
    for j in range(flat.size):
        original = flat[j].copy()
        outputs = []
        for delta in (step, -step, 2 * step, -2 * step):
            flat[j] = original + delta
            outputs.append(xp.array(f(), copy=True))
        flat[j] = original
        d1, d2 = outputs[0] - outputs[1], outputs[2] - outputs[3]
        grad[j] = float(((8 * d1 - d2) * dout).sum()) / (12 * step)
    return xp.asarray(grad.reshape(x.shape))


def _is_float(a):
    return hasattr(a, "dtype") and np.dtype(a.dtype).kind == "f"


def check_layer(layer, *inputs, dout=None, seed=0, step=DEFAULT_STEP):
    """Compare a layer's backward with numerical gradients.

    Args:
        layer: a Module whose ``forward(*inputs)`` returns one array and whose
            ``backward(dout)`` returns dL/d(input) (or a tuple, one per float input).
        inputs: the forward inputs; float ones are checked (integer ones, such as the
            labels of a loss, are passed through).
        dout: the upstream gradient; random normal by default.
    Returns:
        ``{"input": err, "weight": err, ...}``: the relative error for each float input
        (``input0``, ``input1``, ... when there are several) and each parameter (by its
        ``named_parameters`` name). The layer's state (e.g. BN running statistics) is
        restored afterwards; its gradients are left holding the analytic ones.
    """
    for a in list(inputs) + [p.data for p in layer.parameters()]:
        if _is_float(a) and a.dtype != np.float64:
            raise ValueError(f"check_layer needs float64 inputs and parameters, got {a.dtype}. "
                             "Use x.astype(np.float64) and layer.to(dtype=np.float64).")
    xp = get_array_module(inputs[0])
    saved_state = {k: v.copy() for k, v in layer.state_dict().items()}
    inputs = [xp.ascontiguousarray(a) if _is_float(a) else a for a in inputs]

    def f():
        return layer(*inputs)

    out = f()
    if dout is None:
        dout = xp.asarray(np.random.default_rng(seed).standard_normal(out.shape))
    layer.zero_grad()
    grads = layer.backward(dout)
    if not isinstance(grads, tuple):
        grads = (grads,)
    float_positions = [i for i, a in enumerate(inputs) if _is_float(a)]
    names = ["input"] if len(float_positions) == 1 else [f"input{i}" for i in float_positions]
    errors = {}
    for name, i, g in zip(names, float_positions, grads):
        errors[name] = relative_error(g, numerical_gradient(f, inputs[i], dout, step))
    for name, p in layer.named_parameters():
        errors[name] = relative_error(p.grad, numerical_gradient(f, p.data, dout, step))
    layer.load_state_dict(saved_state)
    return errors


def _layer_cases():
    """The layers of npsenet.nn on small float64 inputs, for the `npsenet gradcheck` table."""
    from . import nn
    rng = np.random.default_rng(0)

    def away_from_zero(shape):  # keeps ReLU and max inputs away from their kinks
        x = rng.standard_normal(shape)
        return x + np.sign(x) * 0.1

    def distinct(shape):        # well-separated values, so the max is unique per window
        return rng.permutation(np.prod(shape)).reshape(shape) * 0.1 - 1.0

    labels = np.array([0, 3, 1, 2])
    return [
        ("Conv2d(3, 4, k=3, s=1, p=1)", nn.Conv2d(3, 4, 3, padding=1), (rng.standard_normal((2, 3, 5, 5)),)),
        ("Conv2d(4, 6, k=3, s=2, p=1, groups=2)", nn.Conv2d(4, 6, 3, 2, 1, groups=2),
         (rng.standard_normal((2, 4, 6, 5)),)),
        ("Linear(5, 3)", nn.Linear(5, 3), (rng.standard_normal((4, 5)),)),
        ("ReLU", nn.ReLU(), (away_from_zero((2, 3, 4, 4)),)),
        ("Sigmoid", nn.Sigmoid(), (rng.standard_normal((3, 5)),)),
        ("Tanh", nn.Tanh(), (rng.standard_normal((3, 5)),)),
        ("GlobalAvgPool2d", nn.GlobalAvgPool2d(), (rng.standard_normal((2, 3, 4, 5)),)),
        ("GlobalMaxPool2d", nn.GlobalMaxPool2d(), (distinct((2, 3, 4, 5)),)),
        ("MaxPool2d(3, s=2, p=1)", nn.MaxPool2d(3, 2, 1), (distinct((2, 2, 7, 7)),)),
        ("BatchNorm2d (train)", nn.BatchNorm2d(3), (rng.standard_normal((4, 3, 3, 3)),)),
        ("BatchNorm2d (eval)", nn.BatchNorm2d(3).eval(), (rng.standard_normal((4, 3, 3, 3)),)),
        ("ChannelScale", nn.ChannelScale(),
         (rng.standard_normal((2, 3, 4, 4)), rng.standard_normal((2, 3)))),
        ("SEBlock(8, r=4)", nn.SEBlock(8, reduction=4, bias=True), (rng.standard_normal((2, 8, 4, 4)),)),
        ("SoftmaxCrossEntropy(ls=0.1)", nn.SoftmaxCrossEntropy(label_smoothing=0.1),
         (rng.standard_normal((4, 5)), labels)),
        # the SE family's layers (drawn after the others, whose inputs stay as they were)
        ("Conv2d(4, 4, k=3, s=2, p=1, groups=4) (depthwise)", nn.Conv2d(4, 4, 3, 2, 1, groups=4),
         (rng.standard_normal((2, 4, 7, 6)),)),
        ("AvgPool2d(3, s=2, p=1)", nn.AvgPool2d(3, 2, 1), (rng.standard_normal((2, 2, 7, 7)),)),
        ("MaxPool2d(3, s=2, ceil_mode)", nn.MaxPool2d(3, 2, ceil_mode=True), (distinct((2, 2, 8, 8)),)),
        ("Flatten", nn.Flatten(), (rng.standard_normal((2, 3, 2, 2)),)),
        ("ChannelShuffle(3)", nn.ChannelShuffle(3), (rng.standard_normal((2, 6, 3, 3)),)),
        ("Concat(conv 1x1, conv 3x3)", nn.Concat(nn.Conv2d(3, 2, 1), nn.Conv2d(3, 4, 3, padding=1)),
         (rng.standard_normal((2, 3, 4, 4)),)),
        ("ScaledResidual(conv 3x3, 0.2)", nn.ScaledResidual(nn.Conv2d(3, 3, 3, padding=1), 0.2),
         (away_from_zero((2, 3, 4, 4)),)),
    ]


def gradcheck_all():
    """Rows ``(layer, gradient name, relative error)`` for every layer in npsenet.nn."""
    rows = []
    for title, layer, inputs in _layer_cases():
        layer.to(dtype=np.float64)
        for name, err in check_layer(layer, *inputs).items():
            rows.append((title, name, err))
    return rows
