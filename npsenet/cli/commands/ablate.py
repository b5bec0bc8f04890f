"""``npsenet ablate``: the paper's ablation grid (TPAMI, Tables 10-16) on SE-ResNet-20.

    npsenet ablate --dataset synthetic --cells default,r32 --seeds 0,1 --epochs 1
    npsenet ablate --data-dir DIR --seeds 0,1,2 --epochs 3 --out runs/ablate
    npsenet ablate --data-dir DIR --seeds 0,1,2 --epochs 3 --out runs/ablate --shard 1/2

Each (cell, seed) is a run folder OUT/<cell>/seed<k>/; finished runs are skipped and a
stopped one continues from its checkpoint, so the same command resumes the grid. At the
end it prints mean ± std of the test error over the seeds beside the paper's ImageNet
errors, and writes OUT/runs.csv (per seed), OUT/summary.csv and OUT/ablations.png.

Exit codes: 0 when done; 130/143 when SIGINT/SIGTERM stopped a run (its checkpoint is
written: run the same command again); 2 for a usage error.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..args import (add_device_argument, add_plain_argument, non_negative_int,
                    positive_int)


def _names(text):
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated cell names, got {text!r}")
    return names


def _seeds(text):
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(
            f"expected distinct comma-separated seeds >= 0 such as 0,1,2, got {text!r}")
    return seeds


def _shard(text):
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        index = count = 0
    if not 1 <= index <= count:
        raise argparse.ArgumentTypeError(f"expected I/N with 1 <= I <= N such as 1/2, got "
                                         f"{text!r}")
    return index - 1, count


def add_parser(sub):
    from ...analysis.ablate import CELLS, GROUP_NAMES

    p = sub.add_parser(
        "ablate", help="train the paper's ablation grid on SE-ResNet-20 for several seeds",
        description="Train SE-ResNet-20 with one SE setting changed at a time, as the "
                    "paper's Sec. 6 does for SE-ResNet-50 (TPAMI, Tables 10-16), for several "
                    "seeds, and print mean ± std of the test error beside the paper's "
                    "ImageNet errors, with parameters and multiply-adds. Resumable: run the "
                    "same command again after a stop.")
    p.add_argument("--dataset", choices=["cifar10", "synthetic"], default=None,
                   help="cifar10 (default) or synthetic (generated, offline)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="the folder that holds cifar-10-batches-py/ (not downloaded)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--cells", type=_names, default=None, metavar="NAMES",
                       help=f"comma-separated cells, or all (default): {', '.join(CELLS)}")
    which.add_argument("--group", default=None, metavar="G",
                       help=f"the cells of one table: {', '.join(GROUP_NAMES)}")
    p.add_argument("--seeds", type=_seeds, default=[0, 1, 2], metavar="0,1,2",
                   help="seeds of each cell (default 0,1,2)")
    p.add_argument("--epochs", type=positive_int, default=3, help="epochs per run (default 3)")
    p.add_argument("--warmup-epochs", type=non_negative_int, default=None, metavar="N",
                   help="epochs of linear learning-rate warm-up (default: npsenet train's, "
                        "1, or 0 for a one-epoch run)")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="images per step (default 128)")
    p.add_argument("--limit-train", type=positive_int, default=None, metavar="N",
                   help="use only the first N training images")
    p.add_argument("--limit-test", type=positive_int, default=None, metavar="N",
                   help="use only the first N test images")
    p.add_argument("--out", default="runs/ablate", metavar="DIR",
                   help="the grid's folder (default runs/ablate)")
    p.add_argument("--shard", type=_shard, default=(0, 1), metavar="I/N",
                   help="train only the I-th of every N runs, for N processes side by side "
                        "on one --out (default 1/1: all)")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing: print the table and write the CSVs of the runs done")
    p.add_argument("--progress", action="store_true", help="a progress bar per epoch")
    add_device_argument(p)
    add_plain_argument(p)
    p.set_defaults(func=run)


def run(args):
    from ...analysis import ablate
    from ...train import TrainingInterrupted

    if args.group is not None and args.group not in ablate.GROUP_NAMES + ("all",):
        raise ValueError(f"unknown group {args.group!r}; the groups are "
                         f"{', '.join(ablate.GROUP_NAMES)} (or all).")
    cells = ablate.select_cells(args.cells, args.group)
    dataset = args.dataset or "cifar10"
    if dataset == "cifar10" and args.data_dir is None:
        raise ValueError("--data-dir DIR is needed for cifar10 (the folder that holds "
                         "cifar-10-batches-py/); or use --dataset synthetic.")
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        raise FileNotFoundError(f"--data-dir {args.data_dir} is not a folder; pass the folder "
                                "that holds cifar-10-batches-py/.")
    settings = dict(dataset=dataset, download=False, epochs=args.epochs,
                    batch_size=args.batch_size, warmup_epochs=args.warmup_epochs,
                    limit_train=args.limit_train,
                    limit_test=args.limit_test, device=args.device,
                    data_dir=None if args.data_dir is None else str(Path(args.data_dir).resolve()))
    out = Path(args.out)
    if not args.report_only:
        print(f"ablation grid: {len(cells)} cells x {len(args.seeds)} seeds, {args.epochs} "
              f"epoch{'s' * (args.epochs != 1)} each, on {dataset}; writing to {out}/",
              flush=True)
        try:
            ablate.run_grid(out, cells, args.seeds, shard=args.shard, progress=args.progress,
                            log=lambda line: print(line, flush=True), **settings)
        except TrainingInterrupted as stop:
            print(f"{stop}\nrun the same command again to continue the grid.",
                  file=sys.stderr, flush=True)
            return 128 + stop.signum
    results = ablate.collect(out, cells, args.seeds, args.epochs)
    if not results:
        print(f"no finished runs in {out}/ yet for these cells and seeds.")
        return 0
    summary = ablate.summarise(results, cells)
    test_images = _test_images(out, results)
    print(ablate.format_table(summary, test_images))
    try:
        ablate.write_csv(out / "runs.csv", results, ablate.RESULT_COLUMNS)
        ablate.write_csv(out / "summary.csv", summary, ablate.SUMMARY_COLUMNS)
        drawn = ablate.plot_summary(
            summary, out / "ablations.png",
            title=f"SE-ResNet-20 on {dataset} ({args.epochs} epoch{'s' * (args.epochs != 1)}"
                  f", mean ± std over {len(args.seeds)} seeds)\nbeside the paper's "
                  "SE-ResNet-50 on ImageNet (TPAMI); full axes from 0", results=results)
    except OSError as exc:
        raise RuntimeError(f"could not write the results into {out}/ ({exc.strerror or exc}); "
                           "free some space or choose another --out.") from None
    print(f"wrote {out}/runs.csv, {out}/summary.csv" + (f", {out}/ablations.png" if drawn
                                                          else ""))
    return 0


def _test_images(out, results):
    """The number of test images of the grid's runs (from a run's checkpoint meta)."""
    from ...analysis.ablate import run_dir
    from ...io import load_checkpoint
    from ...train import CHECKPOINT_NAME

    first = results[0]
    try:
        meta = load_checkpoint(run_dir(out, first["cell"], first["seed"]) / CHECKPOINT_NAME).meta
    except (ValueError, FileNotFoundError):
        return None
    return (meta.get("config") or {}).get("test_images")
