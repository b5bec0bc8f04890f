"""``npsenet train``: train an (SE-)ResNet on CIFAR-10/100 or the synthetic dataset.

    npsenet train                                    # SE-ResNet-20 on CIFAR-10 (downloaded)
    npsenet train --dataset synthetic --epochs 2     # a quick offline run
    npsenet train --resume runs/se_resnet20-cifar10  # continue a stopped run, bit for bit
    npsenet train --nproc 2 --sync-bn                # 2 processes (or: mpiexec -n 2 npsenet train)

Exit codes: 0 when the run finishes; 130 (SIGINT, Ctrl-C) or 143 (SIGTERM) when a signal
stopped it after writing a checkpoint (resume it with ``--resume``); 2 for a usage error,
a bad setting, an output folder that is a file, cannot be written or is in use by another
trainer, a failed save (a full disk: the previous checkpoint is kept) or a diverged run
(NaN/Inf loss; the last good checkpoint is kept).

Everything that can be checked is checked before the header line is printed and before
anything is written: the settings, the output folder (a folder, writable, not locked by
another trainer, not holding a run unless resumed), the data (the batch size against the
number of training images; on --resume, the data the run was trained on).
"""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from ..args import (DEFAULT_MODEL, SE_ARGUMENTS, add_data_arguments, add_device_argument,
                    add_model_arguments, add_plain_argument, model_from_args,
                    model_options_from_args, non_negative_float, non_negative_int,
                    positive_int)


# the settings a resumed run keeps from its checkpoint (each argparse dest is the config key)
TRAINING_FLAGS = ("model", "epochs", "batch_size", "lr", "momentum", "weight_decay",
                  "label_smoothing", "schedule", "warmup_epochs", "seed", "limit_train",
                  "limit_test", "dataset", "out")


def add_parser(sub):
    from ...train import DATASETS, SCHEDULES, default_config

    d = default_config()
    p = sub.add_parser(
        "train", help="train an SE-ResNet with per-epoch metrics, checkpoints and curves",
        description="Train a model with SGD (momentum 0.9, weight decay 5e-4), pad-4 crop and "
                    "flip augmentation, and a cosine learning-rate schedule after a linear "
                    "warm-up. Writes OUT/metrics.csv, OUT/curves.png and OUT/checkpoint.npz "
                    "every epoch. Ctrl-C or SIGTERM saves a checkpoint and exits (130/143); "
                    "--resume OUT continues exactly where it stopped.")
    add_model_arguments(p)
    add_plain_argument(p)
    data = p.add_argument_group("data")
    add_data_arguments(data, DATASETS, None)
    data.add_argument("--limit-train", type=positive_int, default=None, metavar="N",
                      help="use only the first N training images")
    data.add_argument("--limit-test", type=positive_int, default=None, metavar="N",
                      help="use only the first N test images")
    opt = p.add_argument_group("training")
    opt.add_argument("--epochs", type=positive_int, default=None,
                     help=f"number of epochs (default {d['epochs']})")
    opt.add_argument("--batch-size", type=positive_int, default=None,
                     help=f"images per step (default {d['batch_size']})")
    opt.add_argument("--lr", type=non_negative_float, default=None,
                     help=f"peak learning rate (default {d['lr']})")
    opt.add_argument("--momentum", type=non_negative_float, default=None,
                     help=f"SGD momentum (default {d['momentum']})")
    opt.add_argument("--weight-decay", type=non_negative_float, default=None,
                     help=f"L2 weight decay (default {d['weight_decay']})")
    opt.add_argument("--label-smoothing", type=non_negative_float, default=None,
                     help=f"label smoothing of the loss (default {d['label_smoothing']})")
    opt.add_argument("--schedule", choices=SCHEDULES, default=None,
                     help="cosine (with linear warm-up; default) or multistep (/10 at 50%% "
                          "and 75%% of the run)")
    opt.add_argument("--warmup-epochs", type=non_negative_int, default=None,
                     help=f"epochs of linear warm-up for cosine (default {d['warmup_epochs']})")
    opt.add_argument("--seed", type=non_negative_int, default=None,
                     help=f"seeds the initial weights and the batches (default {d['seed']})")
    run_group = p.add_argument_group("run")
    run_group.add_argument("--out", default=None, metavar="DIR",
                           help="output folder (default: runs/<model>-<dataset>, or the first "
                                "of runs/<model>-<dataset>-2, -3, ... that holds no run); "
                                "one trainer at a time (DIR/.lock)")
    run_group.add_argument("--resume", default=None, metavar="DIR",
                           help="continue the run saved in DIR with its saved settings")
    run_group.add_argument("--allow-data-change", action="store_true",
                           help="with --resume: continue even if the data differ from those "
                                "the run was trained on (same number of images)")
    run_group.add_argument("--no-progress", action="store_true",
                           help="no progress bars (the per-epoch lines are still printed)")
    add_device_argument(p)
    par = p.add_argument_group("several processes (docs/distributed.md)")
    par.add_argument("--nproc", type=positive_int, default=None, metavar="N",
                     help="train with N processes under mpiexec, the batch split between them "
                          "(needs npsenet[distributed])")
    par.add_argument("--sync-bn", action="store_true",
                     help="batch norm over the global batch, not each process's share")
    # None marks "not given", so --resume can tell the settings it must not change
    p.set_defaults(func=run, model=None, device=None)


def run(args):
    from ... import distributed

    if (args.nproc or 1) > 1 and distributed.launched_size() == 1:
        status = distributed.launch(getattr(args, "argv", None) or sys.argv[1:], args.nproc)
        problem = distributed.describe_status(status, args.nproc)
        if problem:
            print(f"npsenet train: error: {problem}", file=sys.stderr)
        return status
    world = distributed.init(args.device or "cpu")
    if world is None:
        return _run(args)
    if args.nproc not in (None, world.size):
        raise ValueError(f"--nproc {args.nproc} was given but mpiexec started {world.size} "
                         "processes; give one of the two.")
    try:
        return _run(args)
    except (ValueError, RuntimeError, FileNotFoundError, OSError) as exc:
        # a ValueError (settings, data) is the same on every rank: rank 0 says it
        if world.rank == 0 or not isinstance(exc, ValueError):
            who = "" if world.rank == 0 else f"(rank {world.rank} of {world.size}) "
            from .. import describe_error, one_line
            print(f"npsenet train: error: {who}{one_line(describe_error(exc)[1])}",
                  file=sys.stderr, flush=True)
        distributed.exit_now(2)   # not MPI_Finalize: another rank may be in a collective


def _run(args):
    from ... import distributed
    from ... import train as training
    from ...train.lock import check_writable, hold_run_folder

    with contextlib.ExitStack() as held:
        if args.resume:
            trainer = _resume(args, training, held, check_writable, hold_run_folder)
            if trainer is None:
                return 0
        else:
            trainer = _new_run(args, training, held, check_writable, hold_run_folder)
        try:
            trainer.fit()
        except training.TrainingInterrupted as stop:
            if distributed.is_main_process():
                more = f" --nproc {distributed.size()}" if distributed.size() > 1 else ""
                print(f"{stop}{more}", file=sys.stderr, flush=True)
            return 128 + stop.signum
    last = trainer.metrics[-1]
    print(f"done: test accuracy {last['test_acc']:.4f} after {_epochs(last['epoch'])}; "
          f"{trainer.out_dir}/ holds checkpoint.npz, metrics.csv and curves.png")
    return 0


def _epochs(count):
    """'1 epoch', '2 epochs'."""
    return f"{count} epoch{'s' * (count != 1)}"


def _resume(args, training, held, check_writable, hold_run_folder):
    """The trainer of the run in ``--resume DIR``, its folder locked (None: nothing to do)."""
    given = [f"--{dest.replace('_', '-')}" for dest in TRAINING_FLAGS
             if getattr(args, dest) is not None]
    given += ["--sync-bn"] if args.sync_bn else []
    given += [SE_ARGUMENTS["se_bias" if key == "bias" else key]
              for key in model_options_from_args(args)]
    if given:
        raise ValueError(f"--resume continues a run with the settings saved in its "
                         f"checkpoint, so {', '.join(given)} cannot be given with it "
                         "(only --device, --data-dir, --download, --allow-data-change and "
                         "--no-progress can). Start a new run with --out DIR to change them.")
    from ... import distributed

    folder = Path(args.resume)
    # (a missing run: resume_trainer says there is nothing to resume; data parallel: rank 0
    # checks and locks the folder for all ranks)
    if folder.is_dir() and distributed.is_main_process():
        check_writable(folder, flag="--resume")
        held.enter_context(hold_run_folder(folder, command="npsenet train --resume",
                                           flag="--resume"))
    trainer = training.resume_trainer(args.resume, device=args.device,
                                      data_dir=args.data_dir, download=args.download,
                                      progress=not args.no_progress,
                                      allow_data_change=args.allow_data_change)
    epochs = trainer.config["epochs"]
    if trainer.epoch >= epochs:
        print(f"{args.resume} already finished its {_epochs(epochs)}; nothing to do.")
        return None
    print(f"resuming {args.resume} at epoch {trainer.epoch + 1}/{epochs}"
          + (f", step {trainer.step_in_epoch + 1}" if trainer.step_in_epoch else ""),
          flush=True)
    return trainer


def _new_run(args, training, held, check_writable, hold_run_folder):
    """A new run: the settings checked, then its folder chosen, checked and locked, then
    the data loaded and checked against the batch size; only then the header."""
    from ... import distributed

    if args.allow_data_change:
        raise ValueError("--allow-data-change applies to --resume only (a new run records "
                         "the data it trains on); drop it, or add --resume DIR.")
    args.model = args.model or DEFAULT_MODEL
    dataset = args.dataset or "cifar10"
    model_from_args(args, num_classes=10)  # checks the SE options against --model
    settings = {dest: getattr(args, dest) for dest in TRAINING_FLAGS
                if dest != "out" and getattr(args, dest) is not None}
    settings.update(dataset=dataset, model_options=model_options_from_args(args),
                    data_dir=None if args.data_dir is None else str(Path(args.data_dir).resolve()),
                    download=args.download is not False,
                    device=args.device or "cpu")
    config = training.default_config(**settings)     # checks every setting
    if distributed.size() > 1:
        distributed.check_batch(config["batch_size"], distributed.size())
    if not distributed.is_main_process():
        # data parallel: rank 0 chooses, checks and locks the folder and writes in it
        out, note = Path(args.out or Path("runs") / f"{args.model}-{dataset}"), ""
    elif args.out is not None:
        out, note = Path(args.out), ""
        check_writable(out)
        held.enter_context(hold_run_folder(out, command="npsenet train"))
        if (out / training.CHECKPOINT_NAME).exists():
            raise ValueError(f"{out} already holds a run ({training.CHECKPOINT_NAME}); "
                             f"continue it with --resume {out}, or choose another --out.")
    else:
        out, note = _fresh_folder(Path("runs") / f"{args.model}-{dataset}", held,
                                  check_writable, hold_run_folder)
    trainer = training.build_trainer(config, out, progress=not args.no_progress,
                                     sync_bn=args.sync_bn)
    epochs = config["epochs"]
    print(f"training {config['model']} on {dataset} for {_epochs(epochs)} "
          f"(batch {config['batch_size']}, lr {config['lr']}, {config['schedule']} schedule) "
          f"on the {config['device']}"
          + (f" with {distributed.size()} processes" if distributed.size() > 1 else "")
          + f"; writing to {out}/{note}", flush=True)
    return trainer


def _fresh_folder(base, held, check_writable, hold_run_folder):
    """The first of ``base``, ``base-2``, ``base-3``, ... that holds no run and that no
    other trainer is using, checked and locked; and a note naming the folders passed over."""
    from ...train.lock import LOCK_NAME, RunFolderInUse

    for number in range(1, 10_000):
        out = base if number == 1 else base.with_name(f"{base.name}-{number}")
        if out.exists() and (not out.is_dir()
                             or any(entry.name != LOCK_NAME for entry in out.iterdir())):
            continue                  # a file, or a folder that holds something already
        check_writable(out)
        lock = contextlib.ExitStack()
        try:
            lock.enter_context(hold_run_folder(out, command="npsenet train"))
        except RunFolderInUse:
            continue                  # another trainer has just chosen it
        if any(entry.name != LOCK_NAME for entry in out.iterdir()):
            lock.close()              # filled since we looked
            continue
        held.enter_context(lock)
        note = "" if number == 1 else (f" ({base} holds an earlier run)" if number == 2 else
                                       f" ({base} to {base.name}-{number - 1} hold runs)")
        return out, note
    raise ValueError(f"{base} and the next 9,998 numbered folders all hold runs; choose a "
                     "folder with --out DIR.")
