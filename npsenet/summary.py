"""A per-layer table of output shapes, parameters and multiply-adds (MACs).

    >>> import npsenet as ns
    >>> s = ns.summary(ns.models.se_resnet20(), (1, 3, 32, 32))
    >>> s.total_params
    274490
    >>> print(s)                                   # doctest: +SKIP

``summary`` runs one forward pass on zeros in eval mode, under ``ns.no_grad()``, and
records, for every leaf layer in the order it ran, its output shape, its parameter count
and its MACs for the whole input batch. The model keeps its training mode, state and SE
gate values; like any forward under ``no_grad``, it leaves nothing cached for backward.

How MACs are counted (one multiply-add = 1):

* ``Conv2d``: C_out · H' · W' · (C_in / g) · k · k per sample (bias additions not counted);
  ``FactorizedConv2d`` (a kh x kw kernel): C_out · H' · W' · C_in · kh · kw.
* ``Linear``: in · out per sample (the SE's W1 and W2, and ``fc``).
* ``BatchNorm2d``: one per output element (in eval mode it is y = a · x + b).
* ``GlobalAvgPool2d`` (the squeeze): one per input element,
  z_c = Σ_ij u_c(i, j) / (H W) being a weighted sum.
* ``AvgPool2d``: k · k per output element, one per input element of each window
  (y = Σ_ij x_pad(s h + i, s w + j) / k², a weighted sum; padding counted).
* the SE's scale x̃_c = s_c · u_c: one per output element (a row ``<block>.se`` of type
  ``scale``).
* no MACs for ReLU, sigmoid, tanh, max pooling and the residual addition (comparisons,
  elementwise functions and additions, not multiply-adds), nor for ``Flatten``,
  ``ChannelShuffle``, ``Dropout`` and ``Concat`` (they only move or mask values).

With these rules ResNet-50 at 224x224 takes 4.100 G MACs: 4.087 G in its convolutions,
2 M in ``fc`` (together the 4.09 G usually quoted) and 11 M in batch norm. SE-ResNet-50
adds 13.6 M: 2.5 M in the SE's FC layers, 5.5 M in the squeeze and 5.5 M in the scale,
+0.33% (the paper: 3.87 against 3.86 GFLOPs, +0.26%; counting the FC layers and the scale
alone gives +0.20%). SE adds 2,530,992 parameters, +9.9% (the paper's ~10%).
``npsenet summary --compare`` prints these figures.
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np

from .nn import (AvgPool2d, BatchNorm2d, ChannelScale, Conv2d, GlobalAvgPool2d, Linear, SEBlock,
                 no_grad)
from .nn.factorized_conv import FactorizedConv2d

Row = namedtuple("Row", ["name", "kind", "output_shape", "params", "macs"])


def _macs(module, inputs, output):
    """Multiply-adds of one call of a leaf layer (see the module docstring)."""
    if isinstance(module, Conv2d):
        k = module.kernel_size
        return int(np.prod(output.shape)) * (module.in_channels // module.groups) * k * k
    if isinstance(module, FactorizedConv2d):
        return int(np.prod(output.shape)) * int(np.prod(module.weight.shape[1:]))
    if isinstance(module, Linear):
        return int(np.prod(output.shape)) * module.in_features
    if isinstance(module, BatchNorm2d):
        return int(output.size)
    if isinstance(module, GlobalAvgPool2d):
        return int(inputs[0].size)
    if isinstance(module, AvgPool2d):
        return int(output.size) * module.kernel_size * module.kernel_size
    return 0


class Summary:
    """The result of :func:`summary`.

    Attributes:
        rows: a list of ``Row(name, kind, output_shape, params, macs)``, in execution order.
        total_params: the model's parameter count (every parameter sits in a leaf layer).
        total_macs: the sum of the rows' MACs for the input batch.
        se_params, se_macs: the share of the SE blocks (rows inside a ``.se`` module).
    """

    def __init__(self, title, input_shape, rows):
        self.title = title
        self.input_shape = tuple(input_shape)
        self.rows = rows
        self.total_params = sum(r.params for r in rows)
        self.total_macs = sum(r.macs for r in rows)
        in_se = [r for r in rows if "se" in r.name.split(".")]
        self.se_params = sum(r.params for r in in_se)
        self.se_macs = sum(r.macs for r in in_se)

    def __str__(self):
        header = ("layer", "type", "output shape", "params", "MACs")
        body = [(r.name, r.kind, str(r.output_shape), f"{r.params:,}", f"{r.macs:,}")
                for r in self.rows]
        widths = [max(len(line[i]) for line in [header] + body) for i in range(5)]

        def fmt(line):
            return "  ".join(cell.ljust(w) if i < 3 else cell.rjust(w)
                             for i, (cell, w) in enumerate(zip(line, widths)))

        rule = "-" * len(fmt(header))
        lines = [f"{self.title}, input {self.input_shape}", fmt(header), rule]
        lines += [fmt(line) for line in body]
        lines += [rule,
                  f"total parameters: {self.total_params:,}",
                  f"total MACs:       {self.total_macs:,} ({self.total_macs / 1e9:.3f} G)"]
        if self.se_params or self.se_macs:
            lines.append(f"of which SE:      {self.se_params:,} parameters "
                         f"({100 * self.se_params / self.total_params:.2f}%), "
                         f"{self.se_macs:,} MACs ({100 * self.se_macs / self.total_macs:.2f}%)")
        return "\n".join(lines)

    def __repr__(self):
        return (f"Summary({self.title!r}, input={self.input_shape}, "
                f"params={self.total_params:,}, MACs={self.total_macs:,})")


def summary(model, input_shape):
    """Run ``model`` once on zeros of ``input_shape`` (N, C, H, W) and tabulate its layers.

    Returns a :class:`Summary`; ``print(summary(...))`` shows the table.
    """
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 4 or min(input_shape) < 1:
        raise ValueError(f"summary: input_shape must be (N, C, H, W) with positive sizes, e.g. "
                         f"(1, 3, 32, 32); got {input_shape}.")
    params = model.parameters()
    dtype = params[0].dtype if params else np.float32
    rows, counted = [], set()
    modules = list(model.named_modules())
    modes = {id(m): m.training for _, m in modules}
    gates = {id(m): m.gate_values for _, m in modules if isinstance(m, SEBlock)}
    # an SE block's scale is its own row (``<block>.se``, kind "scale"), not its sub-module's
    inner_scales = {id(m.scale) for _, m in modules if isinstance(m, SEBlock)
                    and isinstance(getattr(m, "scale", None), ChannelScale)}

    def record(name, module):
        forward = module.forward
        leaf = not module._modules and id(module) not in inner_scales

        def recording_forward(*inputs):
            output = forward(*inputs)
            if leaf or isinstance(module, SEBlock):
                own = 0 if id(module) in counted else sum(
                    p.size for p in module._parameters.values())
                counted.add(id(module))
                kind = "scale" if isinstance(module, SEBlock) else type(module).__name__
                macs = output.size if isinstance(module, SEBlock) else _macs(module, inputs,
                                                                              output)
                rows.append(Row(name, kind, tuple(output.shape), own, int(macs)))
            return output

        object.__setattr__(module, "forward", recording_forward)

    try:
        for name, module in modules:
            if name:
                record(name, module)
        model.eval()
        with no_grad():
            model(model.xp.zeros(input_shape, dtype=dtype))
    finally:
        for _, module in modules:
            module.__dict__.pop("forward", None)
            object.__setattr__(module, "training", modes[id(module)])
            if id(module) in gates:
                module.gate_values = gates[id(module)]
    title = getattr(model, "name", None) or type(model).__name__
    return Summary(title, input_shape, rows)
