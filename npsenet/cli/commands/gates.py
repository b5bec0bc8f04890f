"""``npsenet gates``: the role of excitation (TPAMI, Sec. 7.2) on a trained SE model.

    npsenet gates --checkpoint runs/se_resnet20-cifar10/checkpoint.npz
    layer1.0.se      C=16   mean 0.512  >0.9   0.0%  <0.1   0.0%  R2 0.071 (chance 0.019) ...
    ...
    wrote runs/se_resnet20-cifar10/gates/: gates.csv, stages.csv, class_means.csv,
    per_class.png, within_class.png, by_depth.png

Runs the test set (the checkpoint's dataset, data folder and --limit-test by default)
through the model and writes, into --out (default: a gates/ folder beside the checkpoint):

- ``gates.csv``: one row per SE block (the columns of
  :data:`npsenet.analysis.gates.BLOCK_COLUMNS`: R^2, the between- and within-class spreads
  in gate units, the saturation);
- ``stages.csv``: the saturation per stage;
- ``class_means.csv``: the per-class curves, one row per block, class and channel (mean and
  std of the gate over the class's images);
- ``per_class.png``, ``within_class.png``, ``by_depth.png``: the figures.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

from ..args import (add_checkpoint_input_arguments, add_device_argument, add_plain_argument,
                    positive_int)


def add_parser(sub):
    p = sub.add_parser(
        "gates", help="per-class excitations of a trained SE model (the paper's Sec. 7.2)",
        description="Run the test set through a trained SE model and write the paper's "
                    "role-of-excitation analysis (TPAMI, Sec. 7.2): per SE block the mean gate "
                    "per class and channel, the within-class spread, the share of gate "
                    "variance explained by the class (R^2) and the between-class spread in "
                    "gate units, and the saturation per stage, as CSV files and PNG figures. "
                    "The dataset, data folder and --limit-test default to the checkpoint's "
                    "training run.")
    add_checkpoint_input_arguments(
        p, "a checkpoint.npz of an SE model (written by npsenet train)")
    p.add_argument("--limit-test", type=positive_int, default=None, metavar="N",
                   help="use only the first N test images (default: as the training run)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default: gates/ beside the checkpoint)")
    p.add_argument("--blocks", default=None, metavar="B1,B2,...",
                   help="the blocks whose per-class curves are drawn, e.g. "
                        "layer1.2.se,layer3.2.se (default: the last block of each stage and "
                        "every block of the last stage)")
    p.add_argument("--class-index", type=int, default=None, metavar="K",
                   help="the class whose within-class spread is drawn (default: the first "
                        "class present)")
    add_plain_argument(p)
    add_device_argument(p)
    p.set_defaults(func=run)


def load_test_set(checkpoint, path, dataset=None, data_dir=None, limit_test=None,
                  download=True, device="cpu"):
    """The test images, labels, class names and input transform for ``checkpoint``: its
    training run's dataset, data folder, --limit-test and normalisation unless given
    (:func:`npsenet.train.runs.checkpoint_test_set`)."""
    from ...train.runs import checkpoint_test_set

    images, labels, classes, normalize, config = checkpoint_test_set(
        checkpoint, path, dataset, data_dir, device, limit_test, download)
    return images, labels, classes, normalize, config["dataset"]


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _fmt(value):
    return f"{value:.6f}" if isinstance(value, float) else value


def run(args):
    from ... import io as checkpoint_io
    from ...analysis import gate_plots
    from ...analysis import gates as analysis
    from ...backend import normalize_device
    from ...nn import SEBlock

    device = normalize_device(args.device)
    path = Path(args.checkpoint)
    if path.is_dir():
        raise ValueError(f"--checkpoint expects a checkpoint.npz file, got the folder {path}; "
                         f"try --checkpoint {path / 'checkpoint.npz'}.")
    checkpoint = checkpoint_io.load_checkpoint(path, device=device)
    model = checkpoint.model
    name = (checkpoint.meta.get("config") or {}).get("model") or type(model).__name__
    if not any(isinstance(m, SEBlock) for m in model.modules()):
        raise ValueError(f"{path} holds a model without SE blocks ({name}), so it has no "
                         "excitations to analyse; pass the checkpoint of an SE model "
                         "(e.g. one trained with --model se_resnet20).")
    images, labels, classes, normalize, dataset = load_test_set(
        checkpoint, path, dataset=args.dataset, data_dir=args.data_dir,
        limit_test=args.limit_test, download=args.download is not False, device=device)
    print(f"collecting the gates of {len(labels)} {dataset} test images "
          f"({len(set(labels.tolist()))} classes) on the {device}", flush=True)
    gates = analysis.collect_gates(model, images, normalize, batch_size=args.batch_size,
                                   device=device)
    blocks = list(gates)
    shown = analysis.default_blocks(blocks)
    if args.blocks:
        shown = [b.strip() for b in args.blocks.split(",") if b.strip()]
        unknown = [b for b in shown if b not in gates]
        if unknown or not shown:
            raise ValueError(f"--blocks: {', '.join(unknown) or args.blocks!r} is not an SE "
                             f"block of this model; its blocks are {', '.join(blocks)}.")
    rows = analysis.gate_statistics(gates, labels)
    stages = analysis.stage_statistics(gates)
    curves = {b: analysis.class_means(gates[b], labels) for b in blocks}
    present = curves[blocks[0]][0]
    if args.class_index is None:
        args.class_index = int(present[0])
    if args.class_index not in present.tolist():
        raise ValueError(f"--class-index {args.class_index}: no test image of that class; "
                         f"choose one of {present.tolist()}.")

    for row in rows:
        print(analysis.summary_line(row))
    for row in stages:
        print(f"stage {row['stage']:<10s} ({row['blocks']} blocks) mean gate "
              f"{row['mean_gate']:.3f}  >0.9 {row['frac_above_0.9']:6.1%}  "
              f"<0.1 {row['frac_below_0.1']:6.1%}")

    out = Path(args.out) if args.out else path.parent / "gates"
    files = ("gates.csv", "stages.csv", "class_means.csv", "per_class.png",
             "within_class.png", "by_depth.png")
    try:
        _write_outputs(out, rows, stages, curves, shown, classes, gates, labels,
                       args.class_index, name, analysis, gate_plots)
    except OSError as exc:
        raise ValueError(f"could not write to {out}: {exc.strerror or exc}; choose a writable "
                         "--out folder with free space.") from None
    print(f"wrote {out}{os.sep}: {', '.join(files)}")
    return 0


def _write_outputs(out, rows, stages, curves, shown, classes, gates, labels, class_index,
                   name, analysis, gate_plots):
    out.mkdir(parents=True, exist_ok=True)
    columns = list(analysis.BLOCK_COLUMNS)
    _write_csv(out / "gates.csv", columns, [[_fmt(r[c]) for c in columns] for r in rows])
    _write_csv(out / "stages.csv", analysis.STAGE_COLUMNS,
               [[_fmt(r[c]) for c in analysis.STAGE_COLUMNS] for r in stages])
    table = []
    for block, (present, means, stds, counts) in curves.items():
        for i, k in enumerate(present):
            for c in range(means.shape[1]):
                table.append([block, int(k), classes[k], int(counts[i]), c,
                              _fmt(float(means[i, c])), _fmt(float(stds[i, c]))])
    _write_csv(out / "class_means.csv",
               ["block", "class", "class_name", "images", "channel", "mean", "std"], table)

    present = curves[shown[0]][0]
    names = [classes[k] for k in present]
    n = len(labels)
    fig = gate_plots.per_class_figure(
        {b: curves[b][1] for b in shown}, names, {b: gates[b].mean(axis=0) for b in shown},
        title=f"{name}: mean gate per class and channel, {n} test images "
              "(cf. TPAMI, Sec. 7.2, Fig. 6)")
    fig.savefig(out / "per_class.png", dpi=110)
    i = present.tolist().index(class_index)
    fig = gate_plots.within_class_figure(
        {b: (curves[b][1][i], curves[b][2][i]) for b in shown}, classes[class_index],
        int(curves[shown[0]][3][i]))
    fig.savefig(out / "within_class.png", dpi=110)
    fig = gate_plots.by_depth_figure(
        rows, title=f"{name}: class-specificity and saturation by depth, {n} test images")
    fig.savefig(out / "by_depth.png", dpi=110)
