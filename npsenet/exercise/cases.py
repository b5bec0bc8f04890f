"""The grader's test cases: random shapes and hyperparameters for every function a student
writes, and how to call it.

A :class:`Case` holds float64 inputs and two callables that run the student's pair (or
the reference's) on them: ``forward(pairs, inputs) -> (y, cache)`` and
``backward(pairs, dout, cache)``, which returns the backward's answer as it comes: one
gradient per name in ``wrt``, in that order (one array, or a tuple). ``pairs`` is any
object with the exercise's functions as attributes: the student's module, or the
reference namespace.

Each function has a list of case makers (``rng -> Case``); :data:`CASES` maps the function's
name to them. The grader draws each case again when the reference itself fails the
numerical check on it (an input within a finite-difference step of a ReLU's kink), so
makers need not avoid kinks.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial
from typing import Callable

import numpy as np


@dataclass
class Case:
    """One call of a student's backward, with everything needed to check it.

    Attributes:
        function: the name of the function it checks, e.g. ``"linear_backward"``.
        label: the shapes and hyperparameters, as the hints print them.
        inputs: name -> float64 array (None for an absent bias); integer arrays (labels)
            are passed through and never differentiated.
        wrt: the names of ``inputs`` that the backward's gradients belong to, in order.
        grad_names: how the gradients are called in messages, e.g. ``("dx", "dW", "db")``.
        forward: ``(pairs, inputs) -> (y, cache)``.
        backward: ``(pairs, dout, cache) ->`` the backward's answer (one array, or a tuple
            with one entry per ``wrt``).
        scalar_output: the forward returns a loss (0-d); its dout is a random scalar.
    """

    function: str
    label: str
    inputs: dict
    wrt: tuple
    grad_names: tuple
    forward: Callable
    backward: Callable
    scalar_output: bool = False
    options: dict = field(default_factory=dict)

    def astype(self, dtype):
        """The same case with its float inputs cast to ``dtype``."""
        cast = {k: (v.astype(dtype) if isinstance(v, np.ndarray) and v.dtype.kind == "f"
                    else v) for k, v in self.inputs.items()}
        return replace(self, inputs=cast)

    def copy_inputs(self):
        """A copy whose arrays are fresh, so that nothing a call does leaks into the next."""
        return replace(self, inputs={k: (v.copy() if isinstance(v, np.ndarray) else v)
                                     for k, v in self.inputs.items()})


class AnswerError(Exception):
    """A backward's answer that has the wrong form (the message says what was expected)."""


def _shape(*dims):
    return "x".join(str(d) for d in dims)


# -- linear -----------------------------------------------------------------------------------
def linear_case(rng, square, bias):
    n, d_in = int(rng.integers(2, 6)), int(rng.integers(2, 7))
    d_out = d_in if square else d_in + int(rng.integers(1, 4))
    return Case(
        "linear_backward", f"x {_shape(n, d_in)}, W {_shape(d_out, d_in)}, "
                           f"bias {'yes' if bias else 'no'}",
        {"x": rng.standard_normal((n, d_in)), "weight": rng.standard_normal((d_out, d_in)),
         "bias": rng.standard_normal(d_out) if bias else None},
        ("x", "weight", "bias"), ("dx", "dW", "db"),
        lambda m, a: m.linear_forward(a["x"], a["weight"], a["bias"]),
        lambda m, d, c: m.linear_backward(d, c))


# -- activations ------------------------------------------------------------------------------
def relu_case(rng, shape):
    # |x| >= 0.05: no input within a finite-difference step of the kink at 0
    x = rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.05, 2.0, size=shape)
    return Case("relu_backward", f"x {_shape(*shape)}", {"x": x}, ("x",), ("dx",),
                lambda m, a: m.relu_forward(a["x"]),
                lambda m, d, c: m.relu_backward(d, c))


def sigmoid_case(rng, shape):
    return Case("sigmoid_backward", f"x {_shape(*shape)}", {"x": 3 * rng.standard_normal(shape)},
                ("x",), ("dx",), lambda m, a: m.sigmoid_forward(a["x"]),
                lambda m, d, c: m.sigmoid_backward(d, c))


# -- softmax cross-entropy ----------------------------------------------------------------------
def softmax_case(rng, smoothing):
    n, k = int(rng.integers(2, 7)), int(rng.integers(2, 8))
    labels = rng.integers(0, k, n).astype(np.int64)
    return Case(
        "softmax_cross_entropy_backward",
        f"logits {_shape(n, k)}, label_smoothing {smoothing}",
        {"logits": 2 * rng.standard_normal((n, k)), "labels": labels}, ("logits",),
        ("dlogits",),
        lambda m, a: m.softmax_cross_entropy_forward(a["logits"], a["labels"], smoothing),
        lambda m, d, c: m.softmax_cross_entropy_backward(d, c),
        scalar_output=True)


# -- batch norm ---------------------------------------------------------------------------------
def batchnorm_case(rng, shape, eps):
    c = shape[1]
    x = rng.standard_normal(shape) * rng.uniform(0.5, 3.0, (1, c, 1, 1)) \
        + rng.standard_normal((1, c, 1, 1))

    def forward(m, a):
        y, _, _, cache = m.batchnorm_forward(a["x"], a["gamma"], a["beta"], eps)
        return y, cache

    return Case("batchnorm_backward", f"x {_shape(*shape)}, eps {eps:g}",
                {"x": x, "gamma": rng.uniform(0.5, 2.0, c), "beta": rng.standard_normal(c)},
                ("x", "gamma", "beta"), ("dx", "dgamma", "dbeta"), forward,
                lambda m, d, c_: m.batchnorm_backward(d, c_))


# -- convolution --------------------------------------------------------------------------------
def col2im_case(rng, kernel, stride, padding):
    n, c, h, w = 2, int(rng.integers(1, 4)), int(rng.integers(4, 7)), int(rng.integers(4, 7))
    shape = (n, c, h, w)
    return Case("col2im", f"x {_shape(*shape)}, k {kernel}, stride {stride}, padding {padding}",
                {"x": rng.standard_normal(shape)}, ("x",), ("dx",),
                lambda m, a: (m.im2col(a["x"], kernel, stride, padding), None),
                lambda m, d, _: m.col2im(d, shape, kernel, stride, padding),
                options={"kernel": kernel, "stride": stride, "padding": padding})


def conv_case(rng, c_in, c_out, kernel, stride, padding, groups, bias):
    n, h, w = 2, int(rng.integers(4, 6)), int(rng.integers(4, 6))
    label = (f"x {_shape(n, c_in, h, w)}, W {_shape(c_out, c_in // groups, kernel, kernel)}, "
             f"stride {stride}, padding {padding}, groups {groups}, bias {'yes' if bias else 'no'}")
    return Case(
        "conv2d_backward", label,
        {"x": rng.standard_normal((n, c_in, h, w)),
         "weight": rng.standard_normal((c_out, c_in // groups, kernel, kernel)),
         "bias": rng.standard_normal(c_out) if bias else None},
        ("x", "weight", "bias"), ("dx", "dW", "db"),
        lambda m, a: m.conv2d_forward(a["x"], a["weight"], a["bias"], stride, padding, groups),
        lambda m, d, c: m.conv2d_backward(d, c), options={"groups": groups})


# -- the squeeze --------------------------------------------------------------------------------
def avg_squeeze_case(rng, shape):
    return Case("global_avg_pool_backward", f"u {_shape(*shape)}",
                {"u": rng.standard_normal(shape)}, ("u",), ("du",),
                lambda m, a: m.global_avg_pool_forward(a["u"]),
                lambda m, d, c: m.global_avg_pool_backward(d, c))


def max_squeeze_case(rng, shape):
    # distinct values 0.05 apart: every channel has one clear winner
    u = rng.permutation(int(np.prod(shape))).reshape(shape) * 0.05 - 1.0
    return Case("global_max_pool_backward", f"u {_shape(*shape)}", {"u": u}, ("u",), ("du",),
                lambda m, a: m.global_max_pool_forward(a["u"]),
                lambda m, d, c: m.global_max_pool_backward(d, c))


# -- the excitation, the scale and the SE block -------------------------------------------------
def _excitation_weights(rng, c, reduction, bias):
    hidden = max(1, c // reduction)
    return {"w1": rng.standard_normal((hidden, c)) / np.sqrt(c),
            "b1": 0.1 * rng.standard_normal(hidden) if bias else None,
            "w2": rng.standard_normal((c, hidden)) / np.sqrt(hidden),
            "b2": 0.1 * rng.standard_normal(c) if bias else None}


def excitation_case(rng, c, reduction, bias):
    n = int(rng.integers(2, 5))
    inputs = {"z": rng.standard_normal((n, c)), **_excitation_weights(rng, c, reduction, bias)}
    return Case(
        "excitation_backward",
        f"z {_shape(n, c)}, reduction {reduction}, biases {'yes' if bias else 'no'}", inputs,
        ("z", "w1", "b1", "w2", "b2"), ("dz", "dW1", "db1", "dW2", "db2"),
        lambda m, a: m.excitation_forward(a["z"], a["w1"], a["b1"], a["w2"], a["b2"]),
        lambda m, d, c_: m.excitation_backward(d, c_))


def scale_case(rng, shape):
    return Case("channel_scale_backward", f"u {_shape(*shape)}, s {_shape(*shape[:2])}",
                {"u": rng.standard_normal(shape), "s": rng.uniform(0.1, 0.9, shape[:2])},
                ("u", "s"), ("du", "ds"), lambda m, a: m.channel_scale_forward(a["u"], a["s"]),
                lambda m, d, c: m.channel_scale_backward(d, c))


def se_block_case(rng, shape, reduction, bias):
    n, c = shape[:2]
    # a per-channel offset gives the channels distinct means, so z is not close to 0
    u = rng.standard_normal(shape) + rng.standard_normal((n, c, 1, 1))
    inputs = {"u": u, **_excitation_weights(rng, c, reduction, bias)}
    return Case(
        "se_block_backward",
        f"u {_shape(*shape)}, reduction {reduction}, biases {'yes' if bias else 'no'}", inputs,
        ("u", "w1", "b1", "w2", "b2"), ("du", "dW1", "db1", "dW2", "db2"),
        lambda m, a: m.se_block_forward(a["u"], a["w1"], a["b1"], a["w2"], a["b2"]),
        lambda m, d, c_: m.se_block_backward(d, c_))


# -- the residual block ------------------------------------------------------------------------
def residual_params(rng, c_in, c_out, placement, reduction=2, bias=False):
    """Random parameters of a BasicBlock with SE, under torchvision's names."""
    se_c = c_in if placement == "pre" else c_out
    hidden = max(1, se_c // reduction)
    p = {"conv1.weight": rng.standard_normal((c_out, c_in, 3, 3)) / np.sqrt(9 * c_in),
         "bn1.weight": rng.uniform(0.5, 1.5, c_out), "bn1.bias": 0.2 * rng.standard_normal(c_out),
         "conv2.weight": rng.standard_normal((c_out, c_out, 3, 3)) / np.sqrt(9 * c_out),
         "bn2.weight": rng.uniform(0.5, 1.5, c_out), "bn2.bias": 0.2 * rng.standard_normal(c_out),
         "se.fc1.weight": rng.standard_normal((hidden, se_c)) / np.sqrt(se_c),
         "se.fc2.weight": rng.standard_normal((se_c, hidden)) / np.sqrt(hidden)}
    if bias:
        p["se.fc1.bias"] = 0.1 * rng.standard_normal(hidden)
        p["se.fc2.bias"] = 0.1 * rng.standard_normal(se_c)
    if c_in != c_out:
        p["downsample.0.weight"] = rng.standard_normal((c_out, c_in, 1, 1)) / np.sqrt(c_in)
        p["downsample.1.weight"] = rng.uniform(0.5, 1.5, c_out)
        p["downsample.1.bias"] = 0.2 * rng.standard_normal(c_out)
    return p


def residual_case(rng, placement, c_in, c_out, stride, bias=False):
    shape = (2, c_in, 4, 4)
    params = residual_params(rng, c_in, c_out, placement, bias=bias)
    names = tuple(params)

    def forward(m, a):
        return m.residual_block_forward(a["x"], {k: a[k] for k in names}, stride, placement)

    def backward(m, d, c):
        answer = m.residual_block_backward(d, c)
        if not (isinstance(answer, (tuple, list)) and len(answer) == 2
                and isinstance(answer[1], dict)):
            raise AnswerError("residual_block_backward must return (dx, grads), grads a dict "
                              "of parameter gradients under the names of params; got "
                              f"{type(answer).__name__}.")
        dx, grads = answer
        missing = [k for k in names if k not in grads]
        if missing:
            raise AnswerError(f"grads lacks {missing}: one gradient per parameter, under the "
                              "names of params.")
        return (dx,) + tuple(grads[k] for k in names)

    shortcut = "projection" if c_in != c_out else "identity shortcut"
    return Case("residual_block_backward",
                f"placement {placement}, x {_shape(*shape)}, C_out {c_out}, stride {stride}, "
                f"{shortcut}", {"x": rng.standard_normal(shape), **params}, ("x",) + names,
                ("dx",) + tuple(f"d[{k!r}]" for k in names), forward, backward,
                options={"placement": placement})


CASES = {
    "linear_backward": [partial(linear_case, square=True, bias=True),
                        partial(linear_case, square=False, bias=True),
                        partial(linear_case, square=False, bias=False)],
    "relu_backward": [partial(relu_case, shape=(3, 5)), partial(relu_case, shape=(2, 3, 4, 4))],
    "sigmoid_backward": [partial(sigmoid_case, shape=(4, 6)),
                         partial(sigmoid_case, shape=(2, 3, 2, 2))],
    "softmax_cross_entropy_backward": [partial(softmax_case, smoothing=0.0),
                                       partial(softmax_case, smoothing=0.1)],
    "batchnorm_backward": [partial(batchnorm_case, shape=(4, 3, 2, 3), eps=1e-5),
                           partial(batchnorm_case, shape=(1, 2, 3, 3), eps=1e-3),
                           partial(batchnorm_case, shape=(5, 4, 1, 1), eps=1e-5)],
    "col2im": [partial(col2im_case, kernel=3, stride=1, padding=1),
               partial(col2im_case, kernel=3, stride=2, padding=1),
               partial(col2im_case, kernel=2, stride=2, padding=0)],
    "conv2d_backward": [partial(conv_case, c_in=3, c_out=3, kernel=3, stride=1, padding=1,
                                groups=1, bias=True),
                        partial(conv_case, c_in=2, c_out=4, kernel=3, stride=2, padding=1,
                                groups=1, bias=True),
                        partial(conv_case, c_in=4, c_out=2, kernel=1, stride=1, padding=0,
                                groups=2, bias=False)],
    "global_avg_pool_backward": [partial(avg_squeeze_case, shape=(2, 3, 4, 5)),
                                 partial(avg_squeeze_case, shape=(3, 2, 3, 3))],
    "global_max_pool_backward": [partial(max_squeeze_case, shape=(2, 3, 4, 5)),
                                 partial(max_squeeze_case, shape=(3, 2, 3, 3))],
    "excitation_backward": [partial(excitation_case, c=8, reduction=4, bias=False),
                            partial(excitation_case, c=6, reduction=2, bias=True)],
    "channel_scale_backward": [partial(scale_case, shape=(2, 3, 4, 4)),
                               partial(scale_case, shape=(3, 4, 2, 3))],
    "se_block_backward": [partial(se_block_case, shape=(2, 8, 4, 4), reduction=4, bias=False),
                          partial(se_block_case, shape=(3, 6, 3, 2), reduction=2, bias=True)],
    "residual_block_backward": [
        partial(residual_case, placement="standard", c_in=2, c_out=2, stride=1),
        partial(residual_case, placement="pre", c_in=2, c_out=4, stride=2),
        partial(residual_case, placement="post", c_in=2, c_out=2, stride=1, bias=True),
        partial(residual_case, placement="identity", c_in=2, c_out=4, stride=2)],
}
"""Function name -> its case makers (``rng -> Case``)."""
