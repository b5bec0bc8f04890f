"""The paper's ablation grid (TPAMI, Sec. 6, Tables 10-16) on SE-ResNet-20, several seeds.

    from npsenet.analysis import ablate

    ablate.run_grid("runs/ablate", cells=["default", "r32"], seeds=[0, 1, 2], epochs=3,
                    dataset="cifar10", data_dir="/data/cifar10-subset")
    results = ablate.collect("runs/ablate", ...)       # one row per finished (cell, seed)
    print(ablate.format_table(ablate.summarise(results)))

The paper changes one setting of SE-ResNet-50 at a time on ImageNet; here each **cell**
changes one setting of SE-ResNet-20 (r = 16, average squeeze, sigmoid gate, standard
placement, SE in every stage) on CIFAR:

======================  ====================================  =========================
group                   cells                                 the paper
======================  ====================================  =========================
reduction               r2, r4, r8, default (r = 16), r32     TPAMI, Table 10
squeeze                 default (avg), max                    TPAMI, Table 11
gate                    default (sigmoid), tanh, relu         TPAMI, Table 12
stages                  stage1, stage2, stage3, default       TPAMI, Table 13
placement               default, pre, post, identity          TPAMI, Table 14
3x3                     default, 3x3                          TPAMI, Table 15
nosqueeze               resnet20, nosqueeze, default          TPAMI, Table 16
removal                 default, no_last (SE in stages 1, 2)  TPAMI, Sec. 7.2
baseline                resnet20 (no SE), default             every table's first row
======================  ====================================  =========================

``3x3`` is the paper's SE_3x3 (TPAMI, Table 15) carried over to a basic block: SE-ResNet-20's
blocks have no 1x1-3x3-1x1 bottleneck, so the SE block sits after the first 3x3
convolution's BN and ReLU, before the second 3x3 convolution (``placement="3x3"``, see
:mod:`npsenet.models.blocks`). The paper's Table 13 adds SE to ResNet-50's stages 2, 3
and 4 (conv2_x to conv4_x, not the last, conv5_x); SE-ResNet-20 has three stages, so
``stage1``/``stage2``/``stage3`` stand beside SE_Stage_2/3/4 by position, and the last
stage is the one ``no_last`` removes (the paper's removal experiment, TPAMI, Sec. 7.2).

Each (cell, seed) trains in its own run folder ``OUT/<cell>/seed<k>/`` with
:func:`npsenet.train.build_trainer`: a finished run is skipped, one stopped part-way
(a signal, a crash, a killed process) continues from its checkpoint with
:func:`npsenet.train.resume_trainer`, bit for bit as if never stopped.
"""
from __future__ import annotations

import csv
import io
import json
import math
import sys
from collections import namedtuple
from pathlib import Path

from ..io import atomic_write

# -- the grid ------------------------------------------------------------------------------
Cell = namedtuple("Cell", ["name", "model", "options", "description"])

CELLS = {cell.name: cell for cell in [
    Cell("resnet20", "resnet20", {}, "ResNet-20, no SE"),
    Cell("default", "se_resnet20", {}, "SE-ResNet-20: r = 16, avg, sigmoid, standard, all stages"),
    Cell("r2", "se_resnet20", {"reduction": 2}, "reduction ratio r = 2"),
    Cell("r4", "se_resnet20", {"reduction": 4}, "reduction ratio r = 4"),
    Cell("r8", "se_resnet20", {"reduction": 8}, "reduction ratio r = 8"),
    Cell("r32", "se_resnet20", {"reduction": 32}, "reduction ratio r = 32"),
    Cell("max", "se_resnet20", {"squeeze": "max"}, "squeeze: global max pooling"),
    Cell("tanh", "se_resnet20", {"gate": "tanh"}, "gate: tanh"),
    Cell("relu", "se_resnet20", {"gate": "relu"}, "gate: ReLU"),
    Cell("stage1", "se_resnet20", {"se_stages": [1]}, "SE in stage 1 only"),
    Cell("stage2", "se_resnet20", {"se_stages": [2]}, "SE in stage 2 only"),
    Cell("stage3", "se_resnet20", {"se_stages": [3]}, "SE in stage 3 only"),
    Cell("pre", "se_resnet20", {"placement": "pre"}, "SE-PRE: SE on the block's input"),
    Cell("post", "se_resnet20", {"placement": "post"}, "SE-POST: SE after the addition"),
    Cell("identity", "se_resnet20", {"placement": "identity"},
         "SE-Identity: SE on the shortcut"),
    Cell("3x3", "se_resnet20", {"placement": "3x3"},
         "SE_3x3: SE between the block's two 3x3 convolutions"),
    Cell("nosqueeze", "se_resnet20", {"no_squeeze": True},
         "NoSqueeze: 1x1 convolutions, no pooling"),
    Cell("no_last", "se_resnet20", {"se_stages": [1, 2]}, "no SE in the last stage"),
]}
"""The cells of the grid by name: the model, its SE options, one line on what changes."""

Group = namedtuple("Group", ["key", "title", "source", "rows", "checked"], defaults=[True])
Row = namedtuple("Row", ["label", "cell", "paper_top1", "paper_top5"])

# SE-ResNet-50 on ImageNet (224 x 224 single crop, top-1 / top-5 error, %), from the TPAMI
# version of the paper (Hu, Shen, Albanie, Sun, Wu, 2019); ResNet-50: 23.30 / 6.55.
# checked=False: the numbers of Tables 13, 15 and 16 could not be checked against the
# paper's text when this grid was written (the tables are TPAMI-only); the table printed
# and summary.csv say so, so that nobody cites them from here without looking them up.
GROUPS = [
    Group("baseline", "SE or not", "TPAMI, Tables 13 and 16 (ResNet-50 rows)", [
        Row("ResNet (no SE)", "resnet20", 23.30, 6.55),
        Row("SE, every block", "default", 22.28, 6.03)], False),
    Group("reduction", "reduction ratio r", "TPAMI, Table 10", [
        Row("r = 2", "r2", 22.29, 6.00), Row("r = 4", "r4", 22.25, 6.09),
        Row("r = 8", "r8", 22.26, 5.99), Row("r = 16", "default", 22.28, 6.03),
        Row("r = 32", "r32", 22.72, 6.20)]),
    Group("squeeze", "squeeze operator", "TPAMI, Table 11", [
        Row("avg", "default", 22.28, 6.03), Row("max", "max", 22.57, 6.09)]),
    Group("gate", "excitation (gate) operator", "TPAMI, Table 12", [
        Row("sigmoid", "default", 22.28, 6.03), Row("tanh", "tanh", 23.00, 6.38),
        Row("ReLU", "relu", 23.47, 6.98)]),
    Group("stages", "SE in one stage only", "TPAMI, Table 13", [
        Row("no SE", "resnet20", 23.30, 6.55),
        Row("stage 1 (paper: SE_Stage_2)", "stage1", 23.03, 6.48),
        Row("stage 2 (paper: SE_Stage_3)", "stage2", 23.04, 6.32),
        Row("stage 3 (paper: SE_Stage_4)", "stage3", 22.68, 6.22),
        Row("all (SE_All)", "default", 22.28, 6.03)], False),
    Group("placement", "integration strategy", "TPAMI, Table 14", [
        Row("standard", "default", 22.28, 6.03), Row("SE-PRE", "pre", 22.23, 6.00),
        Row("SE-POST", "post", 22.78, 6.35), Row("SE-Identity", "identity", 22.20, 6.15)]),
    Group("3x3", "SE on the residual branch's 3x3 convolution", "TPAMI, Table 15", [
        Row("SE", "default", 22.28, 6.03), Row("SE_3x3", "3x3", 22.48, 6.02)], False),
    Group("nosqueeze", "the squeeze's global information", "TPAMI, Table 16", [
        Row("no SE", "resnet20", 23.30, 6.55), Row("NoSqueeze", "nosqueeze", 22.93, 6.39),
        Row("SE", "default", 22.28, 6.03)], False),
    Group("removal", "removing the last stage's SE blocks", "TPAMI, Sec. 7.2 (no table)", [
        Row("SE in every stage", "default", None, None),
        Row("no SE in the last stage", "no_last", None, None)]),
]
"""The paper's tables as groups of rows: a label, the cell it is, the paper's errors."""

GROUP_NAMES = tuple(group.key for group in GROUPS)


def select_cells(cells=None, group=None):
    """The cell names to train, in grid order: ``cells`` (names, or "all"), the cells of
    ``group`` (a :data:`GROUP_NAMES` entry, or "all"), or, by default, every cell."""
    if cells is not None and group is not None:
        raise ValueError("give --cells or --group, not both.")
    if group is not None and group != "all":
        groups = {g.key: g for g in GROUPS}
        if group not in groups:
            raise ValueError(f"unknown group {group!r}; the groups are "
                             f"{', '.join(GROUP_NAMES)} (or all).")
        wanted = {row.cell for row in groups[group].rows}
    elif cells is not None and list(cells) != ["all"]:
        unknown = [name for name in cells if name not in CELLS]
        if unknown:
            raise ValueError(f"unknown cell(s) {', '.join(map(repr, unknown))}; the cells are "
                             f"{', '.join(CELLS)} (or all).")
        wanted = set(cells)
    else:
        wanted = set(CELLS)
    return [name for name in CELLS if name in wanted]


# -- running the grid ----------------------------------------------------------------------
def run_dir(out, cell, seed):
    """The run folder of ``cell`` trained with ``seed``: ``out/<cell>/seed<seed>``."""
    return Path(out) / cell / f"seed{seed}"


def cell_config(cell, seed, **settings):
    """The training configuration (:func:`npsenet.train.default_config`) of one run:
    ``cell``'s model and options, ``seed``, and the grid's ``settings`` (epochs, dataset,
    data_dir, batch_size, limit_train, limit_test, device, ...)."""
    from ..train import default_config

    spec = CELLS[cell]
    settings = {k: v for k, v in settings.items() if v is not None}
    return default_config(model=spec.model, model_options=dict(spec.options), seed=seed,
                          **settings)


# the settings whose change makes a saved run another experiment
_COMPARED = ("model", "model_options", "seed", "dataset", "epochs", "batch_size", "lr",
             "weight_decay", "limit_train", "limit_test", "schedule", "warmup_epochs")


def run_state(path, config):
    """``"new"``, ``"finished"`` or ``"partial"`` for the run folder ``path`` of ``config``.

    Raises ValueError (one line) when ``path`` holds a run made with other settings."""
    from ..io import load_checkpoint
    from ..train import CHECKPOINT_NAME

    checkpoint = Path(path) / CHECKPOINT_NAME
    if not checkpoint.exists():
        return "new"
    meta = load_checkpoint(checkpoint).meta
    saved = meta.get("config") or {}
    for key in _COMPARED:
        if saved.get(key) != config.get(key):
            raise ValueError(f"{path} holds a run with {key}={saved.get(key)!r}, but this grid "
                             f"asks for {key}={config.get(key)!r}; use another --out, or the "
                             "settings that run was made with.")
    return "finished" if meta.get("epoch", 0) >= config["epochs"] else "partial"


def plan(out, cells, seeds, **settings):
    """``[(cell, seed, path, state)]`` in the order :func:`run_grid` trains them: seed by
    seed (every cell with the first seed, then the second, ...), so that a grid stopped
    early has every cell with the same number of seeds."""
    jobs = []
    for seed in seeds:
        for cell in cells:
            path = run_dir(out, cell, seed)
            jobs.append((cell, seed, path, run_state(path, cell_config(cell, seed, **settings))))
    return jobs


def run_grid(out, cells, seeds, shard=(0, 1), progress=False, log=print, **settings):
    """Train every (cell, seed) of the grid that is not finished; returns the number of
    runs trained or continued.

    Args:
        out: the grid's folder; each run is ``out/<cell>/seed<k>/``.
        cells: cell names (:func:`select_cells`).
        seeds: the seeds (each seeds the initial weights and the batches).
        shard: ``(i, n)``: train only the i-th of every n runs of the plan, so that n
            processes can share one grid (each run folder belongs to one of them).
        settings: training settings for :func:`cell_config` (epochs, dataset, data_dir,
            batch_size, limit_train, limit_test, device, download).

    A run stopped by SIGINT/SIGTERM raises :class:`npsenet.train.TrainingInterrupted` after
    its checkpoint is written: the same call later continues it.
    """
    from ..train import build_trainer, resume_trainer

    index, count = shard
    jobs = plan(out, cells, seeds, **settings)
    trained = 0
    for number, (cell, seed, path, state) in enumerate(jobs):
        if number % count != index:
            continue
        tag = f"[{number + 1}/{len(jobs)}] {cell} seed {seed}"
        if state == "finished":
            log(f"{tag}: finished, skipped ({path})")
            continue
        if state == "partial":
            trainer = resume_trainer(path, device=settings.get("device"),
                                     data_dir=settings.get("data_dir"), progress=progress)
            log(f"{tag}: continuing at epoch {trainer.epoch + 1}/{trainer.config['epochs']} "
                f"({path})")
        else:
            trainer = build_trainer(cell_config(cell, seed, **settings), path,
                                    progress=progress)
            log(f"{tag}: training {CELLS[cell].description} ({path})")
        trainer.fit()
        trained += 1
    return trained


# -- results -------------------------------------------------------------------------------
RESULT_COLUMNS = ("cell", "seed", "model", "options", "epochs", "test_error", "test_loss",
                  "train_error", "train_seconds", "params", "macs")
"""The columns of the per-seed CSV (``runs.csv``): one row per finished (cell, seed)."""
SUMMARY_COLUMNS = ("group", "source", "label", "cell", "seeds", "epochs", "mean_error",
                   "std_error", "min_error", "max_error", "params", "macs", "paper_top1",
                   "paper_top5", "paper_checked")
"""The columns of the summary CSV (``summary.csv``): one row per row of the paper's tables."""


def model_counts(cell, num_classes=10):
    """(parameters, multiply-adds per 32x32 image) of ``cell``'s model
    (:func:`npsenet.summary`)."""
    from ..models import build_model
    from ..summary import summary

    spec = CELLS[cell]
    model = build_model(spec.model, num_classes=num_classes, **spec.options)
    s = summary(model, (1, 3, 32, 32))
    return s.total_params, s.total_macs


def collect(out, cells, seeds, epochs):
    """One dict per finished run of the grid (columns :data:`RESULT_COLUMNS`), read from
    each run's ``metrics.csv``; runs not yet finished are left out."""
    from ..train import METRICS_NAME, read_metrics

    counts, results = {}, []
    for cell in cells:
        for seed in seeds:
            path = run_dir(out, cell, seed) / METRICS_NAME
            if not path.exists():
                continue
            rows = read_metrics(path)
            if len(rows) < epochs:
                continue
            last = rows[epochs - 1]
            if cell not in counts:
                counts[cell] = model_counts(cell)
            spec = CELLS[cell]
            results.append({
                "cell": cell, "seed": seed, "model": spec.model,
                "options": json.dumps(spec.options, sort_keys=True), "epochs": epochs,
                "test_error": 100.0 * (1.0 - last["test_acc"]), "test_loss": last["test_loss"],
                "train_error": 100.0 * (1.0 - last["train_acc"]),
                "train_seconds": sum(r["epoch_seconds"] for r in rows[:epochs]),
                "params": counts[cell][0], "macs": counts[cell][1]})
    return results


def mean_std(values):
    """(mean, sample standard deviation (n - 1); nan for one value) of ``values``."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def summarise(results, cells=None):
    """One dict per row of the paper's tables (columns :data:`SUMMARY_COLUMNS`) whose cell
    has results (and is in ``cells``, when given), for the groups with two such rows or
    more: mean, std, min and max of the test error over the seeds, beside the paper's
    top-1 and top-5 errors."""
    by_cell = {}
    for result in results:
        by_cell.setdefault(result["cell"], []).append(result)
    rows = []
    for group in GROUPS:
        present = [row for row in group.rows if by_cell.get(row.cell)
                   and (cells is None or row.cell in cells)]
        if len(present) < 2:        # a group is a comparison: one row alone says nothing
            continue
        for row in present:
            runs = by_cell[row.cell]
            errors = [r["test_error"] for r in runs]
            mean, std = mean_std(errors)
            rows.append({"group": group.key, "source": group.source, "label": row.label,
                         "cell": row.cell, "seeds": len(runs), "epochs": runs[0]["epochs"],
                         "mean_error": mean, "std_error": std, "min_error": min(errors),
                         "max_error": max(errors), "params": runs[0]["params"],
                         "macs": runs[0]["macs"], "paper_top1": row.paper_top1,
                         "paper_top5": row.paper_top5,
                         "paper_checked": int(group.checked)})
    return rows


def _paper(value):
    return "" if value is None else f"{value:.2f}"


def format_table(summary_rows, test_images=None):
    """The summary as a text table, one block per group, the paper's numbers beside ours."""
    head = (f"{'':30s} {'paper: ImageNet':>15s}   {'here: test error (%)':>22s} "
            f"{'':>5s} {'params':>9s} {'MACs':>12s}")
    sub = (f"{'setting':30s} {'top-1':>7s} {'top-5':>7s}   {'mean ± std':>22s} {'seeds':>5s} "
           f"{'':>9s} {'':>12s}")
    lines = [head, sub, "-" * len(sub)]
    group = None
    for row in summary_rows:
        if row["group"] != group:
            group = row["group"]
            title = next(g.title for g in GROUPS if g.key == group)
            mark = "" if row.get("paper_checked", 1) else "; paper's numbers not checked*"
            lines.append(f"-- {title} ({row['source']}{mark})")
        std = "   n/a" if math.isnan(row["std_error"]) else f"{row['std_error']:6.2f}"
        lines.append(f"  {row['label']:28s} {_paper(row['paper_top1']):>7s} "
                     f"{_paper(row['paper_top5']):>7s}   {row['mean_error']:13.2f} ± {std} "
                     f"{row['seeds']:5d} {row['params']:9,d} {row['macs']:12,d}")
    if summary_rows:
        epochs = summary_rows[0]["epochs"]
        note = (f"std: over seeds (n - 1); {epochs} epoch{'s' * (epochs != 1)} per run. The "
                "paper: SE-ResNet-50 (ResNet-50 in the no-SE rows), TPAMI version.")
        if test_images:
            note += (f" {test_images} test images: one image is "
                     f"{100.0 / test_images:.2f} points.")
        if not all(row.get("paper_checked", 1) for row in summary_rows):
            note += ("\n* not checked against the paper's text: look them up in the TPAMI "
                     "version before citing them.")
        lines.append(note)
    return "\n".join(lines)


def write_csv(path, rows, columns):
    """Write ``rows`` (dicts) to the CSV ``path`` atomically, floats with 4 decimals."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row[k] is None else
                             f"{row[k]:.4f}" if isinstance(row[k], float) else row[k])
                         for k in columns})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        f.write(text.getvalue().encode())


def read_csv(path):
    """The rows of a CSV written by :func:`write_csv`, numbers as numbers ("" as None)."""
    def value(text):
        if text == "":
            return None
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
        return text
    with open(path, newline="") as f:
        return [{k: value(v) for k, v in row.items()} for row in csv.DictReader(f)]


# -- the figure ----------------------------------------------------------------------------
def plot_summary(summary_rows, path, title=None, results=None):
    """Draw one panel per group: our mean test error ± std over seeds (bars), each seed's
    error (dots, from ``results``, the rows of :func:`collect`; else the min-max range),
    and the paper's ImageNet top-1 error beside them (grey where not checked), all on one
    full axis from 0. Returns False (and draws nothing) without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        print("note: matplotlib is not installed, so the figure is not drawn.", file=sys.stderr)
        return False
    groups = [g for g in GROUPS if any(r["group"] == g.key for r in summary_rows)]
    columns = min(3, len(groups))
    lines = math.ceil(len(groups) / columns)
    figure = Figure(figsize=(5.2 * columns, 3.9 * lines + 0.6))
    FigureCanvasAgg(figure)
    axes_list = figure.subplots(lines, columns, squeeze=False).ravel()
    top = max(r["max_error"] for r in summary_rows) * 1.08
    for axes, group in zip(axes_list, groups):
        rows = [r for r in summary_rows if r["group"] == group.key]
        x = list(range(len(rows)))
        means = [r["mean_error"] for r in rows]
        stds = [0.0 if math.isnan(r["std_error"]) else r["std_error"] for r in rows]
        axes.bar([i - 0.2 for i in x], means, width=0.4, yerr=stds, capsize=4, color="C0",
                 label="here: mean ± std over seeds")
        for i, r in zip(x, rows):
            seeds = [run["test_error"] for run in results or () if run["cell"] == r["cell"]]
            if seeds:
                axes.plot([i - 0.2] * len(seeds), seeds, "k.", ms=5,
                          label="here: each seed" if i == 0 else None)
            else:
                axes.plot([i - 0.2] * 2, [r["min_error"], r["max_error"]], "k_", ms=8)
        paper = [r["paper_top1"] for r in rows]
        if any(p is not None for p in paper):
            axes.bar([i + 0.2 for i, p in zip(x, paper) if p is not None],
                     [p for p in paper if p is not None], width=0.4,
                     color="C1" if group.checked else "0.7",
                     label="paper: ImageNet top-1" + ("" if group.checked else
                                                      " (not checked)"))
        axes.set_ylim(0, min(max(top, 30.0), 102.0))
        axes.set_xticks(x)
        axes.set_xticklabels([r["label"].split(" (")[0] for r in rows], rotation=20,
                             fontsize=8)
        axes.set_title(f"{group.title}\n({group.source})", fontsize=9)
        axes.set_ylabel("error (%)")
        axes.grid(axis="y", alpha=0.3)
    for axes in axes_list[len(groups):]:
        axes.set_visible(False)
    handles = {}
    for axes in axes_list[:len(groups)]:
        for handle, label in zip(*axes.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    figure.legend(list(handles.values()), list(handles), loc="lower center",
                  ncol=len(handles), fontsize=8, frameon=False)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout(rect=(0, 0.05, 1, 1))
    with atomic_write(path) as f:
        figure.canvas.print_png(f)
    return True
