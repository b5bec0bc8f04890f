"""Containers that run branches side by side: ``Concat``, the Inception module (Szegedy
et al., CVPR 2015), and ``ScaledResidual``, the scaled residual of Inception-ResNet
(Szegedy et al., AAAI 2017, Sec. 3.3). Both feed one input to several paths, so their
backward sums the gradients that reach the input along each path.

    Concat          y = [b_1(x), ..., b_K(x)] on the channel axis
                    dx = sum_k b_k.backward(dy[:, channels of b_k])
    ScaledResidual  y = ReLU(x + λ f(x))
                    d = ReLU'(x + λ f(x)) ⊙ dy,   dx = d + f.backward(λ d)
"""
from __future__ import annotations

from ..backend import get_array_module
from ._checks import check_dout, check_float_array
from .activation import ReLU
from .module import Module


class Concat(Module):
    """Run every branch on the same input and concatenate their outputs on axis 1.

        y = concatenate([b_1(x), ..., b_K(x)], axis=1)

    forward(x): any input the branches accept -> (N, C_1 + ... + C_K, H, W), where
    branch k returns (N, C_k, H, W); the branches must agree on every axis but 1.
    backward(dy): (N, sum C_k, H, W) -> dx = sum_k b_k.backward(dy[:, C_<k : C_<k + C_k]):
    each branch gets the slice of dy that its output filled, and x, which fed every
    branch, collects the sum of their input gradients.

    Branches are given positionally (sub-modules ``"0"``, ``"1"``, ..., as in
    :class:`Sequential`) or by keyword (``Concat(branch0=..., branch1=...)``, in the
    order given), not both. ``len``, iteration and indexing go over the branches.
    """

    def __init__(self, *branches, **named_branches):
        super().__init__()
        if branches and named_branches:
            raise ValueError("Concat: give the branches either positionally or by keyword, "
                             f"not both (got {len(branches)} positional and "
                             f"{sorted(named_branches)} by keyword).")
        items = named_branches.items() if named_branches else \
            ((str(i), b) for i, b in enumerate(branches))
        for name, branch in items:
            if not isinstance(branch, Module):
                raise ValueError(f"Concat expects Module instances; branch {name} is "
                                 f"{type(branch).__name__}.")
            setattr(self, name, branch)
        if not self._modules:
            raise ValueError("Concat: expected at least one branch, got none.")
        self.cache = None

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __iter__(self):
        return iter(self._modules.values())

    def forward(self, x):
        outputs = [branch(x) for branch in self._modules.values()]
        shapes = [tuple(y.shape) for y in outputs]
        first = outputs[0]
        if any(y.ndim < 2 or y.ndim != first.ndim or y.shape[0] != first.shape[0]
               or y.shape[2:] != first.shape[2:] for y in outputs):
            named = ", ".join(f"{name}: {shape}" for name, shape in zip(self._modules, shapes))
            raise ValueError(f"Concat: the branch outputs must agree on every axis but the "
                             f"channel axis 1, got {named}; check the branches' strides and "
                             "paddings.")
        if any(y.dtype != first.dtype for y in outputs):
            named = ", ".join(f"{name}: {y.dtype}" for name, y in zip(self._modules, outputs))
            raise ValueError(f"Concat: the branch outputs must share one dtype, got {named}.")
        y = get_array_module(first).concatenate(outputs, axis=1)
        self.cache = ([s[1] for s in shapes], y.shape, y.dtype)
        return y

    def backward(self, dout):
        channels, shape, dtype = self.saved_cache()
        check_dout(dout, shape, "Concat", dtype)
        self.release_cache()
        grads, start = [], 0
        for branch, c in zip(self._modules.values(), channels):
            grads.append(branch.backward(dout[:, start:start + c]))
            start += c
        if len(grads) == 1:
            return grads[0]
        dx = grads[0] + grads[1]      # a new array: a branch may hand back its own dout
        for g in grads[2:]:
            dx += g
        return dx


class ScaledResidual(Module):
    """The residual connection of Inception-ResNet (Szegedy et al., AAAI 2017, Sec. 3.3),
    with the branch's output scaled by λ before the addition:

        y = ReLU(x + λ f(x))            (y = x + λ f(x) without the ReLU)

    backward(dy): with d = ReLU'(x + λ f(x)) ⊙ dy (d = dy without the ReLU),

        dx = d + f.backward(λ d)

    the identity path and the branch, summed. The branch receives λ d, the gradient of
    its own output: scaling the result of f.backward(d) instead would give the same dx
    but leave the gradients f adds into its parameters unscaled. dy is not written into.

    Args:
        branch: the residual function f; its output must have x's shape.
        scale: λ (the paper scales by 0.1 to 0.3 to keep very wide networks stable).
        activation: apply the final ReLU (sub-module ``relu``); ``False`` leaves
            y = x + λ f(x).

    Shapes: x (N, C, H, W) (any shape f accepts) -> y of x's shape.
    """

    def __init__(self, branch, scale=1.0, activation=True):
        super().__init__()
        if not isinstance(branch, Module):
            raise ValueError(f"ScaledResidual expects a Module as its branch, got "
                             f"{type(branch).__name__}.")
        if isinstance(scale, bool) or not isinstance(scale, (int, float)):
            raise ValueError(f"ScaledResidual: scale must be a number, got {scale!r}.")
        self.branch = branch
        self.scale = float(scale)
        self.activation = bool(activation)
        if self.activation:
            self.relu = ReLU(inplace=True)     # on x + λ f(x), a new array
        self.cache = None

    def extra_repr(self):
        return f"scale={self.scale}" + ("" if self.activation else ", activation=False")

    def forward(self, x):
        check_float_array(x, f"ScaledResidual({self.extra_repr()})")
        f = self.branch(x)
        if f.shape != x.shape:
            raise ValueError(f"ScaledResidual: the branch's output {tuple(f.shape)} must have "
                             f"the input's shape {tuple(x.shape)} to be added to it.")
        y = x + self.scale * f
        if self.activation:
            y = self.relu(y)
        self.cache = (y.shape, y.dtype)
        return y

    def backward(self, dout):
        shape, dtype = self.saved_cache()
        check_dout(dout, shape, "ScaledResidual", dtype)
        self.release_cache()
        d = self.relu.backward(dout) if self.activation else dout
        return d + self.branch.backward(self.scale * d)
