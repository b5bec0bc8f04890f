"""The figures of the role-of-excitation analysis (TPAMI, Sec. 7.2), drawn from its numbers.

Each function takes the arrays or rows of :mod:`npsenet.analysis.gates` and returns a
matplotlib ``Figure`` (drawn on the Agg canvas: no pyplot, no global backend change); the
caller saves it (``fig.savefig(path)``) or shows it in a notebook.

- :func:`per_class_figure`: the mean gate per channel for every class, one panel per block
  (cf. TPAMI, Sec. 7.2, Fig. 6);
- :func:`within_class_figure`: mean and standard deviation over the images of one class
  (cf. Fig. 7);
- :func:`by_depth_figure`: R^2 and the between- and within-class spreads in gate units,
  and the saturation, block by block.
"""
from __future__ import annotations

import math

import numpy as np


def _figure(width, height):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise RuntimeError('drawing the gate figures needs matplotlib; install it with '
                           'pip install "npsenet[train]".') from None
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _block_panels(blocks, draw, ylabel, title, ncol=1, columns=3):
    """One panel per block (``draw(ax, block)`` plots into it) on the full gate range
    [0, 1], a shared y label, the first panel's legend in the cell after the last panel,
    and the title: the layout both per-channel figures share."""
    rows = max(1, math.ceil((len(blocks) + 1) / columns))   # one more cell for the legend
    fig = _figure(4.4 * columns, 3.3 * rows)
    axes = fig.subplots(rows, columns, squeeze=False, sharey=True).ravel()
    for ax in axes[len(blocks) + 1:]:
        ax.axis("off")
    for ax, block in zip(axes, blocks):
        draw(ax, block)
        ax.set_title(_short(block))
        ax.set_xlabel("channel index")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    for ax in axes[::columns]:
        ax.set_ylabel(ylabel)
    legend = axes[len(blocks)]
    legend.axis("off")
    legend.legend(*axes[0].get_legend_handles_labels(), loc="center", ncol=ncol,
                  frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _short(block):
    return block[:-3] if block.endswith(".se") else block


def per_class_figure(curves, class_names, overall=None, title=None):
    """Per-class mean gates, one panel per block.

    curves: ``{block: means (K, C)}`` (:func:`~npsenet.analysis.gates.class_means`);
    class_names: K names; overall: ``{block: (C,)}`` the mean over all images (black), or
    None. The gate axis is the full range [0, 1].
    """
    def draw(ax, block):
        for i, curve in enumerate(np.asarray(curves[block])):
            ax.plot(curve, color=f"C{i % 10}", lw=1.0, label=class_names[i])
        if overall is not None:
            ax.plot(np.asarray(overall[block]), color="k", lw=2.0, label="all images")

    return _block_panels(list(curves), draw, "mean gate of the class", title or (
        "excitation per class at increasing depth (cf. TPAMI, Sec. 7.2, Fig. 6)"), ncol=2)


def within_class_figure(spreads, class_name, count, title=None):
    """Mean and standard deviation of the gates over the images of one class, per block.

    spreads: ``{block: (mean (C,), std (C,))}``; class_name, count: the class and its
    number of images. The gate axis is the full range [0, 1].
    """
    def draw(ax, block):
        mean, std = (np.asarray(v) for v in spreads[block])
        channels = np.arange(len(mean))
        ax.fill_between(channels, mean - std, mean + std, color="C0", alpha=0.3,
                        label="mean ± 1 std")
        ax.plot(channels, mean, color="C0", label="mean")

    return _block_panels(list(spreads), draw, "gate", title or (
        f"gates of the {count} images of class '{class_name}' (cf. TPAMI, Sec. 7.2, Fig. 7)"))


def by_depth_figure(rows, title=None):
    """Three panels over the blocks, in network order: R^2 against its chance level; the
    between-class and within-class standard deviations in gate units; the mean gate and the
    shares of gates above 0.9 and below 0.1. rows: :func:`~npsenet.analysis.gates.gate_statistics`.
    """
    fig = _figure(15, 4.2)
    axes = fig.subplots(1, 3)
    depth = np.arange(len(rows))
    names = [_short(r["block"]) for r in rows]
    column = lambda key: [float(r[key]) for r in rows]          # noqa: E731

    axes[0].plot(depth, column("r2"), "o-", label="$R^2$ (mean over channels)")
    axes[0].plot(depth, column("r2_chance"), "--", color="0.5",
                 label="chance level (K-1)/(N-1)")
    axes[0].set_ylim(0, 1)
    axes[0].set_title("share of gate variance explained by the class")

    axes[1].plot(depth, column("between_class_std"), "o-",
                 label="between classes: std of the class means")
    axes[1].plot(depth, column("within_class_std"), "s--", label="within a class (pooled std)")
    axes[1].set_ylim(0, 0.5)                  # the full range: a gate in [0, 1] has std <= 0.5
    axes[1].set_title("spread of the gates, in gate units")

    axes[2].plot(depth, column("mean_gate"), "o-", label="mean gate")
    axes[2].plot(depth, column("frac_above_0.9"), "^--", label="share of gates > 0.9")
    axes[2].plot(depth, column("frac_below_0.1"), "v--", label="share of gates < 0.1")
    axes[2].set_ylim(0, 1)
    axes[2].set_title("saturation")
    for ax in axes:
        ax.set_xticks(depth)
        ax.set_xticklabels(names, rotation=45, ha="right")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
