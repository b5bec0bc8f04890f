"""The role of excitation (TPAMI, Sec. 7.2): what a trained network's SE gates do, in numbers.

The paper feeds images of several classes through a trained SE-ResNet-50 and plots, per
SE block, the mean excitation of every channel for each class (TPAMI, Sec. 7.2, Fig. 6)
and its spread within one class (Fig. 7). This module turns the gates of a test set into
the numbers behind those plots, block by block:

- the **per-class curves**: the mean gate of each channel over the images of each class
  (:func:`class_means`);
- how much the gates depend on the class, twice: as a **share** of their variance
  (R^2, the between-class variance over the total one) and in **gate units** (the standard
  deviation over classes of the class means): a block can have a large R^2 and still
  barely move its gates, when the total variance is tiny (:func:`block_statistics`);
- how **saturated** the gates are: the share above 0.9 and below 0.1, and the mean gate,
  per block and per stage (:func:`stage_statistics`).

Every function takes arrays and returns numbers; ``npsenet gates`` writes them to CSV
files and draws them (:mod:`npsenet.analysis.gate_plots`).

    gates = collect_gates(model, images, normalize)        # {"layer1.0.se": (N, C), ...}
    rows = gate_statistics(gates, labels)                  # one dict per block
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ..backend import to_device
from ..models.gates import gate_values
from ..nn import SEBlock, no_grad

HIGH, LOW = 0.9, 0.1          # a gate above HIGH is "open", below LOW "closed"

# the columns of the one-row-per-block table (gate_statistics) and their meaning
BLOCK_COLUMNS = OrderedDict([
    ("block", "the SE block's module name"),
    ("stage", "the stage it sits in (its name without the block index)"),
    ("depth", "its position in the network, from 0"),
    ("channels", "C, the number of gates"),
    ("images", "N, the images the statistics rest on"),
    ("classes", "K, the classes among them"),
    ("mean_gate", "the mean of all N x C gates"),
    ("frac_above_0.9", "the share of gates above 0.9"),
    ("frac_below_0.1", "the share of gates below 0.1"),
    ("r2", "the share of a gate's variance the class explains, averaged over channels"),
    ("r2_chance", "(K - 1) / (N - 1): the R^2 that gates ignoring the class give on average"),
    ("between_class_std", "the std over classes of the class means, averaged over channels "
                          "(gate units)"),
    ("within_class_std", "the pooled std of the gates within a class, averaged over "
                         "channels (gate units)"),
    ("total_std", "the std of the gates over all images, averaged over channels"),
    ("class_range", "the largest minus the smallest class mean, averaged over channels"),
])

STAGE_COLUMNS = ("stage", "blocks", "gates", "mean_gate", "frac_above_0.9", "frac_below_0.1")


def collect_gates(model, images, normalize=None, batch_size=256, device="cpu"):
    """The excitations of every SE block for a set of images.

    model: a model with SE blocks (on ``device``); images: (N, 3, H, W), uint8 or float,
    NumPy; normalize: the input transform (e.g. ``ns.data.Normalize``), or None when the
    images are already normalised. The model runs in evaluation mode under ``no_grad`` (its
    mode is restored afterwards).

    Returns an OrderedDict ``{"layer1.0.se": s}`` in network order, each s a float64 NumPy
    array (N, C). NoSqueeze gates (N, C, H, W) are averaged over H and W first.
    """
    if not any(isinstance(m, SEBlock) for m in model.modules()):
        raise ValueError(f"collect_gates: this {type(model).__name__} has no SE blocks; "
                         "analyse an SE model (e.g. se_resnet20).")
    if len(images) == 0:
        raise ValueError("collect_gates: got no images; pass at least one test image.")
    was_training = model.training
    model.eval()
    parts = OrderedDict()
    try:
        with no_grad():
            for start in range(0, len(images), batch_size):
                x = images[start:start + batch_size]
                x = normalize(x) if normalize is not None else x
                model(to_device(x, device))
                for block, s in gate_values(model).items():
                    s = np.asarray(s, dtype=np.float64)
                    if s.ndim == 4:                    # NoSqueeze: one gate per position
                        s = s.mean(axis=(2, 3))
                    parts.setdefault(block, []).append(s)
    finally:
        model.train(was_training)
    return OrderedDict((block, np.concatenate(p)) for block, p in parts.items())


def _check(s, labels):
    s = np.asarray(s, dtype=np.float64)
    labels = np.asarray(labels).reshape(-1)
    if s.ndim != 2 or len(s) != len(labels):
        raise ValueError(f"expected gates (N, C) and N labels, got gates of shape {s.shape} "
                         f"and {len(labels)} labels; pass one label per image.")
    if len(labels) < 2:
        raise ValueError("the gate statistics need at least two images.")
    return s, labels


def class_means(s, labels):
    """The per-class curves of one block (TPAMI, Sec. 7.2, Figs. 6 and 7).

    s: gates (N, C); labels: (N,) class indices. Returns ``(classes, means, stds, counts)``:
    the classes present (K,), the mean gate per class and channel (K, C), the standard
    deviation over the class's images (K, C; population std), and the images per class (K,).
    """
    s, labels = _check(s, labels)
    classes = np.unique(labels)
    members = [labels == k for k in classes]
    means = np.stack([s[m].mean(axis=0) for m in members])
    stds = np.stack([s[m].std(axis=0) for m in members])
    counts = np.array([int(m.sum()) for m in members])
    return classes, means, stds, counts


def block_statistics(s, labels):
    """Class-specificity and saturation of one block's gates s (N, C), labels (N,).

    By the law of total variance, for each channel c

        total_c = between_c + within_c,
        between_c = sum_k (N_k / N) (mean_{k,c} - mean_c)^2,
        within_c  = sum_k (N_k / N) var_{k,c},

    and R^2_c = between_c / total_c in [0, 1] (0 for a channel whose gate never varies).
    Returns a dict of floats with the keys of BLOCK_COLUMNS from "channels" on: ``r2`` is
    R^2_c averaged over the channels, ``between_class_std`` the standard deviation over the
    K classes (each class counted once) of the class means, averaged over the channels,
    ``within_class_std`` the mean over channels of sqrt(within_c), ``total_std`` that of
    sqrt(total_c).
    """
    s, labels = _check(s, labels)
    classes, means, _, counts = class_means(s, labels)
    n, k = len(labels), len(classes)
    weights = (counts / n)[:, None]
    overall = s.mean(axis=0)
    total = s.var(axis=0)
    between = (weights * (means - overall) ** 2).sum(axis=0)
    within = np.clip(total - between, 0.0, None)
    r2 = np.where(total > 1e-12, between / np.maximum(total, 1e-12), 0.0)
    return {
        "channels": s.shape[1], "images": n, "classes": k,
        "mean_gate": float(s.mean()),
        "frac_above_0.9": float((s > HIGH).mean()),
        "frac_below_0.1": float((s < LOW).mean()),
        "r2": float(np.clip(r2, 0.0, 1.0).mean()),
        "r2_chance": float((k - 1) / (n - 1)),
        "between_class_std": float(means.std(axis=0).mean()),
        "within_class_std": float(np.sqrt(within).mean()),
        "total_std": float(np.sqrt(total).mean()),
        "class_range": float((means.max(axis=0) - means.min(axis=0)).mean()),
    }


def stage_of(block):
    """The stage a block's name belongs to: ``"layer2.1.se"`` -> ``"layer2"`` (the name
    without its last two parts; a name of fewer parts is its own stage)."""
    parts = block.split(".")
    return ".".join(parts[:-2]) if len(parts) > 2 else parts[0]


def gate_statistics(gates, labels):
    """One dict per block (the columns of BLOCK_COLUMNS), in network order.

    gates: ``{block: s (N, C)}`` as :func:`collect_gates` returns; labels: (N,).
    """
    if not gates:
        raise ValueError("gate_statistics: got no SE blocks; collect gates from an SE model.")
    return [dict(block=block, stage=stage_of(block), depth=depth, **block_statistics(s, labels))
            for depth, (block, s) in enumerate(gates.items())]


def stage_statistics(gates):
    """Saturation per stage: one dict per stage (STAGE_COLUMNS), pooled over all gates of
    all images in its blocks."""
    stages = OrderedDict()
    for block, s in gates.items():
        stages.setdefault(stage_of(block), []).append(np.asarray(s, dtype=np.float64).ravel())
    rows = []
    for stage, parts in stages.items():
        values = np.concatenate(parts)
        rows.append({"stage": stage, "blocks": len(parts), "gates": int(values.size),
                     "mean_gate": float(values.mean()),
                     "frac_above_0.9": float((values > HIGH).mean()),
                     "frac_below_0.1": float((values < LOW).mean())})
    return rows


def default_blocks(blocks):
    """The blocks whose per-class curves are drawn by default: the last block of every stage
    and every block of the last stage (as the paper shows the later blocks of SE-ResNet-50)."""
    blocks = list(blocks)
    stages = OrderedDict()
    for block in blocks:
        stages.setdefault(stage_of(block), []).append(block)
    chosen = [members[-1] for members in list(stages.values())[:-1]]
    chosen += list(stages.values())[-1] if stages else []
    return chosen


def summary_line(row):
    """The one-line terminal summary of a row of :func:`gate_statistics`."""
    return (f"{row['block']:<16s} C={row['channels']:<4d} mean {row['mean_gate']:.3f}  "
            f">0.9 {row['frac_above_0.9']:6.1%}  <0.1 {row['frac_below_0.1']:6.1%}  "
            f"R2 {row['r2']:.3f} (chance {row['r2_chance']:.3f})  "
            f"between-class std {row['between_class_std']:.3f}  "
            f"within-class std {row['within_class_std']:.3f}")
