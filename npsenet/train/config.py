"""The training recipe: its settings, and the data, loaders and schedule they name.

The recipe (:func:`default_config`) is the usual one for CIFAR ResNets: SGD with momentum
0.9, weight decay 5e-4, batch 128, learning rate 0.1, pad-4 random crop and horizontal
flip, inputs normalised with the training set's per-channel mean and std. The learning rate
follows a cosine schedule stepped once per iteration, after a linear warm-up of one epoch
(:class:`~npsenet.optim.CosineLR`); ``schedule="multistep"`` divides it by 10 at 50% and
75% of the run instead (:class:`~npsenet.optim.MultiStepLR`). We default to cosine because
it has no milestones to tune to the run's length, which matters for short runs.
"""
from __future__ import annotations

from .. import data as _data
from ..backend import normalize_device
from ..optim import CosineLR, MultiStepLR
from ..optim.sgd import _hyperparameters as _check_sgd

DATASETS = _data.DATASETS
"""The names the ``dataset`` setting takes (those of :func:`npsenet.data.get_dataset`)."""
SCHEDULES = ("cosine", "multistep")
"""The names the ``schedule`` setting takes."""


def default_config(**overrides):
    """The training recipe as a JSON-able dict; keyword arguments replace entries.

    Keys: model, model_options (SE options for ``build_model``), dataset, data_dir,
    download, epochs, batch_size, lr, momentum, weight_decay, nesterov, label_smoothing,
    schedule ("cosine" | "multistep"), warmup_epochs (cosine only; by default one epoch,
    none for a one-epoch run), seed, device,
    limit_train, limit_test (use only the first N images; None for all), eval_batch_size.
    """
    config = {
        "model": "se_resnet20", "model_options": {}, "dataset": "cifar10", "data_dir": None,
        "download": True, "epochs": 30, "batch_size": 128, "lr": 0.1, "momentum": 0.9,
        "weight_decay": 5e-4, "nesterov": False, "label_smoothing": 0.0, "schedule": "cosine",
        "warmup_epochs": 1, "seed": 0, "device": "cpu", "limit_train": None,
        "limit_test": None, "eval_batch_size": 256,
    }
    unknown = sorted(set(overrides) - set(config))
    if unknown:
        raise ValueError(f"default_config: unknown setting(s) {unknown}; the settings are "
                         f"{sorted(config)}.")
    config.update(overrides)
    if "warmup_epochs" not in overrides and isinstance(config["epochs"], int):
        # the default warm-up shrinks to fit a one-epoch run
        config["warmup_epochs"] = min(config["warmup_epochs"], max(config["epochs"] - 1, 0))
    check_config(config)
    return config


def check_config(config):
    """Raise ValueError naming the first setting that cannot work."""
    if config["dataset"] not in DATASETS:
        raise ValueError(f"dataset must be one of {list(DATASETS)}, got {config['dataset']!r}.")
    if config["schedule"] not in SCHEDULES:
        raise ValueError(f"schedule must be one of {list(SCHEDULES)}, got "
                         f"{config['schedule']!r}.")
    for key in ("epochs", "batch_size", "eval_batch_size"):
        if not isinstance(config[key], int) or config[key] < 1:
            raise ValueError(f"{key} must be a positive integer, got {config[key]!r}.")
    if config["batch_size"] < 2:
        raise ValueError("batch_size must be at least 2: batch norm needs two images to "
                         "compute a variance.")
    for key in ("limit_train", "limit_test"):
        if config[key] is not None and (not isinstance(config[key], int) or config[key] < 1):
            raise ValueError(f"{key} must be a positive number of images, got {config[key]!r}.")
    if not isinstance(config["warmup_epochs"], int) or config["warmup_epochs"] < 0:
        raise ValueError(f"warmup_epochs must be a non-negative integer, got "
                         f"{config['warmup_epochs']!r}.")
    if config["schedule"] == "cosine" and config["warmup_epochs"] >= config["epochs"]:
        raise ValueError(f"warmup_epochs ({config['warmup_epochs']}) must be smaller than "
                         f"epochs ({config['epochs']}); use --warmup-epochs 0 for short runs.")
    if not 0.0 <= config["label_smoothing"] < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {config['label_smoothing']!r}.")
    try:
        _check_sgd(config["lr"], config["momentum"], config["weight_decay"], config["nesterov"])
    except ValueError as exc:                  # "SGD: momentum must be in [0, 1), ..."
        raise ValueError(str(exc).removeprefix("SGD: ")) from None
    normalize_device(config["device"])


def check_batches(config, train_images):
    """Raise ValueError (one line) when the training split cannot fill the run's batches:
    no images, a batch larger than the split, or a last batch of a single image (batch
    norm cannot compute a variance from one image)."""
    batch, limit = config["batch_size"], config.get("limit_train")
    cut = f" (--limit-train {limit})" if limit is not None else ""
    if train_images < 2:
        raise ValueError(f"the training split has {train_images} image(s){cut}; a run needs "
                         "at least 2 (batch norm computes a variance over the batch).")
    if batch > train_images:
        raise ValueError(f"batch_size {batch} is larger than the {train_images} training "
                         f"images{cut}; use --batch-size {train_images} or less, or more "
                         "training images.")
    if train_images % batch == 1:
        raise ValueError(f"the {train_images} training images{cut} leave a last batch of one "
                         f"image at batch_size {batch}, and batch norm cannot compute a "
                         f"variance from one image; use --batch-size {batch + 1} or "
                         f"--limit-train {train_images - 1}.")


def load_split(config, train):
    """The training or test split named by ``config`` (images uint8, labels int64, classes),
    cut to ``limit_train`` / ``limit_test`` images."""
    dataset = _data.get_dataset(config["dataset"], data_dir=config["data_dir"], train=train,
                                download=bool(config["download"]))
    limit = config["limit_train" if train else "limit_test"]
    images, labels = dataset.images, dataset.labels
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return images, labels, list(dataset.classes)


def make_loaders(config, train_set, test_set, mean, std):
    """The training loader (shuffled, augmented) and the test loader (in order)."""
    normalize = _data.Normalize(mean, std)
    train_loader = _data.BatchLoader(*train_set[:2], config["batch_size"], shuffle=True,
                                     augment=True, normalize=normalize, seed=config["seed"],
                                     device=config["device"])
    test_loader = _data.BatchLoader(*test_set[:2], config["eval_batch_size"], shuffle=False,
                                    augment=False, normalize=normalize, seed=config["seed"],
                                    device=config["device"])
    return train_loader, test_loader


def make_schedule(optimizer, config, steps_per_epoch):
    """The run's learning-rate schedule, stepped once per iteration: cosine after a linear
    warm-up of ``warmup_epochs``, or /10 at 50% and 75% of the iterations (multistep)."""
    total = config["epochs"] * steps_per_epoch
    if config["schedule"] == "cosine":
        return CosineLR(optimizer, total, warmup_steps=config["warmup_epochs"] * steps_per_epoch)
    return MultiStepLR(optimizer, [total // 2, (total * 3) // 4], gamma=0.1)
