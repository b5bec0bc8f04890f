"""A run's ``checkpoint.npz``: what it holds beside the model, and reading it back to resume.

The trainer writes it after every epoch and when a signal stops the run mid-epoch, through
:func:`npsenet.io.save_model` (so atomically). Besides the model it holds, as extra arrays:

* :data:`STATE_KEY`: the trainer's state as JSON: the epoch, the position inside the epoch
  and that epoch's running sums, the optimizer's settings, the schedule and both data
  loaders' random state and position;
* :data:`BUFFER_PREFIX` + parameter name: the optimizer's momentum buffers;
* :data:`METRICS_PREFIX` + column: the metrics so far, one float64 array per column of
  ``metrics.csv``.

Its ``meta`` is ``{"config": the run's configuration, "epoch", "step_in_epoch"}``.

Reading it back checks all of it before anything changes: the entries' shapes and dtypes
(momentum buffers those of their parameter) before any array is read, then the
configuration, the counts (epoch, steps, positions: integers in their range), the
optimizer's settings, the schedule, the loaders' random state and the metrics. A damaged
field is one line, ``"<path>: this checkpoint is damaged: <what>; <what to do>"``
(:class:`~npsenet.io.CheckpointError`), and the trainer and the file are left as they were.

Resuming restores all of that, so on the CPU a run resumed after any step ends with
exactly the same arrays, bit for bit, as the run that was never interrupted. (Nothing
draws from NumPy's global random state: the weights come from ``ns.manual_seed``'s
generator, the batches from the loader's own, so there is no global state to save.)
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .. import io as checkpoint_io
from ..backend import normalize_device
from ..distributed import is_main_process
from ..io import MAX_JSON_BYTES, CheckpointError, damaged
from ..optim.sgd import _hyperparameters
from .config import check_config, default_config, load_split
from .faults import check_model
from .report import METRIC_COLUMNS, fresh_partial

CHECKPOINT_NAME = "checkpoint.npz"
"""The checkpoint's file name in the run's folder."""
STATE_KEY = "trainer/state"
"""The extra array holding the trainer's state as JSON."""
BUFFER_PREFIX = "optimizer/momentum_buffer/"
"""Prefix of the extra arrays holding the momentum buffers, one per parameter name."""
METRICS_PREFIX = "metrics/"
"""Prefix of the extra arrays holding the metrics so far, one per column."""

MAX_EPOCHS = 100_000
"""The most epochs a run's checkpoint may claim."""
MAX_IMAGES = 100_000_000
"""The most images a run's checkpoint may claim to have trained on."""
RESUME_HINT = ("resume from an earlier copy of the run's folder, or start the run again "
               "with another --out")
RUN_KEYS = frozenset(default_config()) | {"mean", "std", "num_classes", "train_images",
                                          "test_images"}
# what a run may also record: the fingerprint of the data it trained on (npsenet.train.runs)
# and, in data-parallel training, its number of processes and sync_bn (npsenet.distributed)
OPTIONAL_RUN_KEYS = frozenset({"data_fingerprint", "nproc", "sync_bn"})
STATE_KEYS = frozenset({"epoch", "step_in_epoch", "partial", "optimizer", "schedule",
                        "train_loader", "test_loader"})
LOADER_KEYS = frozenset({"seed", "epoch", "position", "rng_state"})


class _Damaged(ValueError):
    """What is wrong with one field (turned into the file's one-line CheckpointError)."""


def _name(value):
    return "a list" if isinstance(value, list) else type(value).__name__


def _dict(value, what, keys=None, optional=frozenset()):
    """``value`` if it is a dict (with exactly ``keys``, and any of ``optional``, when given)."""
    if not isinstance(value, dict):
        raise _Damaged(f"{what} is {_name(value)}, not a JSON object")
    if keys is not None and not set(keys) <= set(value) <= set(keys) | set(optional):
        missing = sorted(set(keys) - set(value))
        unexpected = sorted(set(value) - set(keys) - set(optional))
        raise _Damaged(f"{what} lacks {missing} and has unexpected {unexpected}"[:200]
                       if missing and unexpected else
                       f"{what} lacks {missing}" if missing else
                       f"{what} has unexpected entries {unexpected}"[:200])
    return value


def _int(value, what, low, high):
    """``value`` if it is an integer (not a bool, not 1e9) from ``low`` to ``high``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Damaged(f"{what} is {checkpoint_io._short(value)}, not an integer")
    if not low <= value <= high:
        raise _Damaged(f"{what} is {value:,}, outside {low:,}..{high:,}")
    return value


def _number(value, what, low=0.0, high=math.inf, none=False):
    """``value`` if it is a finite number from ``low`` to ``high`` (or None if ``none``)."""
    if value is None and none:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or not low <= value <= high:
        raise _Damaged(f"{what} is {checkpoint_io._short(value)}, not a finite number "
                       f"from {low:g} to {high:g}")
    return value


def batches(images, batch_size):
    """Batches per epoch of a loader of ``images`` (the run's loaders keep the last one)."""
    return -(-images // batch_size)


# -- the checks ------------------------------------------------------------------------------

def run_extra_check(path):
    """The ``check_extra`` of :func:`npsenet.io.load_checkpoint` for a run's checkpoint:
    the trainer's state a bounded JSON text, each momentum buffer its parameter's shape and
    dtype, each metrics column a float64 vector, nothing else (checked before reading)."""
    def check(model, saved_dtype, headers):
        if STATE_KEY not in headers:
            raise CheckpointError(f"{path} holds a model but not a training run (no trainer "
                                  "state); it can be evaluated (npsenet eval) but not resumed.")
        params = {name: tuple(p.data.shape) for name, p in model.named_parameters()}
        lengths = set()
        for key, head in headers.items():
            if key == STATE_KEY:
                if head.shape != () or head.dtype.kind != "U" \
                        or head.dtype.itemsize > MAX_JSON_BYTES:
                    raise _Damaged(f"the trainer's state is {head.dtype} {head.shape}, not "
                                   "a JSON text")
            elif key.startswith(BUFFER_PREFIX):
                name = key[len(BUFFER_PREFIX):]
                if name not in params:
                    raise _Damaged(f"it holds a momentum buffer for {name!r}, which is not a "
                                   f"parameter of {model.name}")
                if head.shape != params[name] or head.dtype != saved_dtype:
                    raise _Damaged(f"the momentum buffer of {name} is {head.dtype} "
                                   f"{head.shape}, but the parameter is {saved_dtype} "
                                   f"{params[name]}")
            elif key.startswith(METRICS_PREFIX) and key[len(METRICS_PREFIX):] in METRIC_COLUMNS:
                if len(head.shape) != 1 or head.dtype != np.float64 \
                        or head.shape[0] > MAX_EPOCHS:
                    raise _Damaged(f"the metrics column {key} is {head.dtype} {head.shape}, "
                                   f"not float64 values of up to {MAX_EPOCHS:,} epochs")
                lengths.add(head.shape[0])
            else:
                raise _Damaged(f"it holds an unexpected entry {checkpoint_io._short(key)}")
        missing = [c for c in METRIC_COLUMNS if METRICS_PREFIX + c not in headers]
        if missing or len(lengths) > 1:
            raise _Damaged(f"the metrics columns {missing} are missing" if missing else
                           "the metrics columns have different lengths")
    return _wrapped(path, check)


def _wrapped(path, check):
    def run(*args):
        try:
            return check(*args)
        except _Damaged as exc:
            raise damaged(path, str(exc), RESUME_HINT) from None
    return run


def check_run_config(config, model):
    """A copy of the saved configuration ``config``, checked: the settings
    :func:`~npsenet.train.default_config` has plus what the run recorded (mean, std,
    classes, image counts), each of the right type and in range; raises ``_Damaged``."""
    config = dict(_dict(config, "the run's configuration (meta['config'])", RUN_KEYS,
                        OPTIONAL_RUN_KEYS))
    if "data_fingerprint" in config:
        _dict(config["data_fingerprint"], "the configuration's data_fingerprint")
    if "nproc" in config:
        _int(config["nproc"], "the configuration's nproc", 1, 4096)
    if not isinstance(config.get("sync_bn", False), bool):
        raise _Damaged("the configuration's sync_bn is not true or false")
    try:
        check_config(dict(config, device="cpu"))   # the device is checked where it is used
    except (ValueError, TypeError, KeyError) as exc:
        raise _Damaged(f"its configuration fails the check: {str(exc).rstrip('.')}") from None
    if config["model"] != model.name or not isinstance(config["model_options"], dict):
        raise _Damaged(f"its configuration names model {checkpoint_io._short(config['model'])}"
                       f" but the file holds {model.name}")
    if not isinstance(config["device"], str) or not isinstance(config["download"], bool) \
            or not isinstance(config["nesterov"], bool) \
            or not (config["data_dir"] is None or isinstance(config["data_dir"], str)):
        raise _Damaged("its configuration's device, data_dir, download or nesterov is of the "
                       "wrong type")
    _int(config["epochs"], "the configuration's epochs", 1, MAX_EPOCHS)
    _int(config["seed"], "the configuration's seed", 0, 2**63 - 1)
    _int(config["num_classes"], "the configuration's num_classes", 1, 100_000)
    if config["num_classes"] != model.options.get("num_classes", config["num_classes"]):
        raise _Damaged(f"its configuration says {config['num_classes']} classes but the model "
                       f"has {model.options.get('num_classes')}")
    for key in ("train_images", "test_images"):
        _int(config[key], f"the configuration's {key}", 1, MAX_IMAGES)
    for key, low in (("mean", -math.inf), ("std", 1e-12)):
        values = config[key]
        if not isinstance(values, list) or len(values) != 3:
            raise _Damaged(f"the configuration's {key} is {checkpoint_io._short(values)}, not "
                           "three numbers")
        for value in values:
            _number(value, f"a value of the configuration's {key}", low)
    try:
        _hyperparameters(config["lr"], config["momentum"], config["weight_decay"],
                         config["nesterov"])
    except ValueError as exc:
        raise _Damaged(f"its configuration fails the check: {str(exc).rstrip('.')}") from None
    return config


def check_run_state(state, meta, config, extra, train_batches, test_batches,
                    need_schedule=True):
    """The trainer's state (parsed JSON) checked against the configuration and the loaders'
    lengths: every count an integer in its range, the running sums finite, the optimizer's
    settings valid, the loaders' random state one NumPy accepts, the metrics one row per
    epoch. Returns the metrics rows; raises ``_Damaged``."""
    _dict(state, "the trainer's state", STATE_KEYS)
    epoch = _int(state["epoch"], "the epoch count", 0, MAX_EPOCHS)
    step = _int(state["step_in_epoch"], "the step count inside the epoch", 0, train_batches)
    if meta.get("epoch") != epoch or meta.get("step_in_epoch") != step:
        raise _Damaged(f"its header says epoch {checkpoint_io._short(meta.get('epoch'))} step "
                       f"{checkpoint_io._short(meta.get('step_in_epoch'))} but its trainer "
                       f"state says epoch {epoch} step {step}")
    partial = _dict(state["partial"], "the epoch's running sums", fresh_partial())
    _number(partial["lr"], "the epoch's learning rate", none=True)
    _number(partial["loss_sum"], "the epoch's loss sum")
    for key in ("train_seconds", "eval_seconds"):
        _number(partial[key], f"the epoch's {key}")
    seen = _int(partial["seen"], "the images seen this epoch", 0,
                config.get("train_images", MAX_IMAGES))
    _int(partial["correct"], "the correct predictions this epoch", 0, seen)
    optimizer = _dict(state["optimizer"], "the optimizer's state",
                      ("lr", "momentum", "weight_decay", "nesterov"))
    try:
        _hyperparameters(optimizer["lr"], optimizer["momentum"], optimizer["weight_decay"],
                         optimizer["nesterov"])
    except ValueError as exc:
        raise _Damaged(f"the optimizer's state is invalid: {str(exc).rstrip('.')}") from None
    if state["schedule"] is not None or need_schedule:
        schedule = _dict(state["schedule"], "the schedule's state", ("base_lr", "last_step"))
        _number(schedule["base_lr"], "the schedule's base learning rate")
        _int(schedule["last_step"], "the schedule's step count", 0,
             (MAX_EPOCHS + 1) * max(train_batches, 1))
    for split, length in (("train", train_batches), ("test", test_batches)):
        loader = _dict(state[f"{split}_loader"], f"the {split} loader's state", LOADER_KEYS)
        _int(loader["seed"], f"the {split} loader's seed", 0, 2**63 - 1)
        _int(loader["epoch"], f"the {split} loader's epoch", 0, MAX_EPOCHS)
        _int(loader["position"], f"the {split} loader's position", 0, length)
        try:   # on a generator of its own: the loader is not touched
            np.random.Generator(np.random.PCG64()).bit_generator.state = loader["rng_state"]
        except (TypeError, ValueError, KeyError, OverflowError, AttributeError):
            raise _Damaged(f"the {split} loader's random state is not a PCG64 state") from None
    columns = {c: extra[METRICS_PREFIX + c] for c in METRIC_COLUMNS}
    if len(columns["epoch"]) != epoch or \
            columns["epoch"].tolist() != [float(i) for i in range(1, epoch + 1)]:
        raise _Damaged(f"the metrics hold {len(columns['epoch'])} rows with epochs "
                       f"{checkpoint_io._short(columns['epoch'].tolist())}, but the run "
                       f"finished {epoch} epochs")
    lists = {c: v.tolist() for c, v in columns.items()}
    return [{c: (int(lists[c][i]) if c == "epoch" else lists[c][i]) for c in METRIC_COLUMNS}
            for i in range(epoch)]


def parse_state(extra):
    """The trainer's state JSON (an entry already bounded in size)."""
    try:
        return json.loads(str(extra[STATE_KEY]))
    except (ValueError, RecursionError) as exc:
        raise _Damaged(f"the trainer's state is not valid JSON "
                       f"({checkpoint_io._short(str(exc), 80)})") from None


# -- saving and loading ----------------------------------------------------------------------

def save_trainer(trainer):
    """Write ``trainer.checkpoint_path`` atomically: the model, and as extra arrays the
    momentum buffers, the metrics and the trainer's state (schedule, loaders, epoch,
    position inside the epoch) as JSON. Refuses to save a NaN/Inf state
    (:class:`~npsenet.train.TrainingDiverged`) or a state that could not be resumed
    (ValueError); either way, and on a full disk (:class:`~npsenet.io.SaveError`), the
    previous checkpoint is kept."""
    check_model(trainer)
    path = trainer.checkpoint_path
    if not is_main_process():   # data parallel: the ranks hold the same state; rank 0 writes
        return
    optimizer_state = dict(trainer.optimizer.state_dict())
    buffers = optimizer_state.pop("momentum_buffers")
    state = {
        "epoch": trainer.epoch, "step_in_epoch": trainer.step_in_epoch,
        "partial": trainer.partial, "optimizer": optimizer_state,
        "schedule": None if trainer.schedule is None else trainer.schedule.state_dict(),
        "train_loader": trainer.train_loader.state_dict(),
        "test_loader": trainer.test_loader.state_dict(),
    }
    meta = {"config": trainer.config, "epoch": trainer.epoch,
            "step_in_epoch": trainer.step_in_epoch}
    try:
        text = json.dumps(state)
        extra = {STATE_KEY: np.array(text)}
        for name, buf in zip(trainer.param_names, buffers):
            if buf is not None:
                extra[BUFFER_PREFIX + name] = buf
        for column in METRIC_COLUMNS:
            extra[METRICS_PREFIX + column] = np.array(
                [np.nan if row[column] is None else row[column] for row in trainer.metrics],
                dtype=np.float64)
        # what would be read back is checked now: an unresumable state is never written
        config = json.loads(json.dumps(trainer.config))
        if RUN_KEYS <= set(config):   # a run of npsenet train: it must resume
            check_run_config(config, trainer.model)
        check_run_state(json.loads(text), meta, config, extra, len(trainer.train_loader),
                        len(trainer.test_loader), trainer.schedule is not None)
    except (_Damaged, TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"{path}: the run cannot be saved, its state is invalid: "
                         f"{checkpoint_io._short(str(exc), 200)}; the previous checkpoint is "
                         "kept. Start the run again from it with --resume.") from None
    checkpoint_io.save_model(path, trainer.model, extra=extra, meta=meta)


def load_trainer_state(trainer, extra):
    """Restore into ``trainer`` what :func:`save_trainer` stored in the checkpoint's
    ``extra`` arrays (the model itself is restored by :func:`npsenet.io.load_checkpoint`).

    Everything is checked first (against the trainer's own loaders and parameters); a
    damaged field raises :class:`~npsenet.io.CheckpointError` and the trainer is unchanged.
    """
    path = trainer.checkpoint_path
    try:
        if STATE_KEY not in extra:
            raise _Damaged("it has no trainer state")
        missing = [c for c in METRIC_COLUMNS if METRICS_PREFIX + c not in extra]
        if missing:
            raise _Damaged(f"the metrics columns {missing} are missing")
        state = parse_state(extra)
        meta = {"epoch": _dict(state, "the trainer's state").get("epoch"),
                "step_in_epoch": state.get("step_in_epoch")}
        metrics = check_run_state(state, meta, trainer.config, extra,
                                  len(trainer.train_loader), len(trainer.test_loader),
                                  trainer.schedule is not None)
        buffers = []
        for name, p in zip(trainer.param_names, trainer.optimizer.params):
            buf = extra.get(BUFFER_PREFIX + name)
            if buf is not None and (tuple(buf.shape) != tuple(p.data.shape)
                                    or np.dtype(buf.dtype) != np.dtype(p.data.dtype)):
                raise _Damaged(f"the momentum buffer of {name} is {buf.dtype} "
                               f"{tuple(buf.shape)}, but the parameter is {p.data.dtype} "
                               f"{tuple(p.data.shape)}")
            buffers.append(buf)
    except _Damaged as exc:
        raise damaged(path, str(exc), RESUME_HINT) from None
    # everything is checked: nothing below can fail half-way
    trainer.optimizer.load_state_dict(dict(state["optimizer"], momentum_buffers=buffers))
    if trainer.schedule is not None and state["schedule"] is not None:
        trainer.schedule.load_state_dict(state["schedule"])
    trainer.train_loader.load_state_dict(state["train_loader"])
    trainer.test_loader.load_state_dict(state["test_loader"])
    trainer.epoch, trainer.step_in_epoch = state["epoch"], state["step_in_epoch"]
    trainer.partial = state["partial"]
    trainer.metrics = metrics


def read_run(out_dir, device=None, data_dir=None, download=None):
    """The run saved in ``out_dir/checkpoint.npz``, checked against its data.

    ``device``, ``data_dir`` and ``download`` replace the saved settings when not None.
    Returns ``(model, config, train_set, test_set, extra)``: the model on the run's
    device, the run's configuration, both splits (as :func:`load_split` gives them) and
    the checkpoint's extra arrays, for :func:`load_trainer_state`.

    The whole checkpoint is checked here, before any data is loaded: a damaged entry or
    field raises :class:`~npsenet.io.CheckpointError`; the file is never changed.
    """
    path = Path(out_dir) / CHECKPOINT_NAME
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint to resume from: {path} does not exist. "
                                "Pass the --out folder of an earlier `npsenet train` run.")
    if not path.is_file():
        raise ValueError(f"{path} is not a file; pass the --out folder of an earlier "
                         "`npsenet train` run.")
    ckpt = checkpoint_io.load_checkpoint(path, check_extra=run_extra_check(path))
    try:
        config = check_run_config(ckpt.meta.get("config"), ckpt.model)
        state = parse_state(ckpt.extra)
        check_run_state(state, ckpt.meta, config, ckpt.extra,
                        batches(config["train_images"], config["batch_size"]),
                        batches(config["test_images"], config["eval_batch_size"]))
    except _Damaged as exc:
        raise damaged(path, str(exc), RESUME_HINT) from None
    if device is not None:
        config["device"] = normalize_device(device)
    if data_dir is not None:
        config["data_dir"] = str(data_dir)
    if download is not None:
        config["download"] = bool(download)
    train_set, test_set = load_split(config, True), load_split(config, False)
    if len(train_set[1]) != config["train_images"] or len(test_set[1]) != config["test_images"]:
        raise ValueError(f"the dataset changed since {path} was written: it was trained on "
                         f"{config['train_images']}/{config['test_images']} train/test images, "
                         f"now {len(train_set[1])}/{len(test_set[1])} are found. Point "
                         "--data-dir at the same data.")
    model = ckpt.model.to(device=config["device"])
    return model, config, train_set, test_set, ckpt.extra
