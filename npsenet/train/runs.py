"""Starting a run from a recipe, resuming one from its checkpoint, evaluating a saved model.

These are what ``npsenet train`` and ``npsenet eval`` call: they put together the
:class:`~npsenet.train.Trainer` (model, SGD, schedule, loss, loaders) that the
configuration describes.

A run records what it trained on (:func:`_fingerprint`: the number of images of each split
and an MD5 of their labels and of their first and last images) in its configuration, under
``data_fingerprint``; :func:`resume_trainer` refuses to continue on other data unless told
to (``allow_data_change``). Checkpoints written before the fingerprint resume as before.
"""
from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import numpy as np

from .. import data as _data
from .. import distributed
from .. import io as checkpoint_io
from ..backend import normalize_device
from ..init import manual_seed
from ..models import build_model
from ..nn import SoftmaxCrossEntropy
from ..optim import SGD
from .checkpoint import read_run
from .config import (check_batches, check_config, default_config, load_split, make_loaders,
                     make_schedule)
from .lock import hold_run_folder
from .loop import Trainer, evaluate

FINGERPRINT_KEY = "data_fingerprint"
"""The configuration's entry that records what the run trained on (see :func:`_fingerprint`)."""


def build_trainer(config, out_dir, progress=True, sync_bn=False):
    """A fresh run: data, model (seeded), optimizer, schedule and loaders from ``config``.

    The settings (:func:`check_config`) and the batch size against the number of training
    images (:func:`check_batches`) are checked before the model is built. Under ``mpiexec``
    it is one rank of data-parallel training (``sync_bn``: batch norm over the global
    batch), see :func:`npsenet.distributed.parallelize`."""
    check_config(config)
    train_set, test_set = load_split(config, True), load_split(config, False)
    check_batches(config, len(train_set[1]))
    num_classes = len(train_set[2])
    mean, std = _data.channel_stats(train_set[0])
    config = dict(config, mean=[float(v) for v in mean], std=[float(v) for v in std],
                  num_classes=num_classes, train_images=len(train_set[1]),
                  test_images=len(test_set[1]),
                  **distributed.run_settings(sync_bn, config["device"]))
    config[FINGERPRINT_KEY] = _fingerprint(train_set, test_set, config)
    manual_seed(config["seed"])
    model = build_model(config["model"], num_classes=num_classes, **config["model_options"])
    model.to(device=config["device"])
    return _assemble(model, config, train_set, test_set, out_dir, progress)


def resume_trainer(out_dir, device=None, data_dir=None, download=None, progress=True,
                   allow_data_change=False):
    """The run saved in ``out_dir/checkpoint.npz``, ready to continue with :meth:`Trainer.fit`.

    Args:
        out_dir: the run's folder.
        device: move the run to another device ('cpu' or 'gpu'); None keeps the saved one.
        data_dir: where the dataset is now, if it moved; None keeps the saved path.
        download: whether a missing CIFAR may be downloaded; None keeps the saved choice.
        allow_data_change: continue even if the images differ from those the run was
            trained on (same counts, other content); by default that is a ValueError. A
            different number of images is always refused: the saved position of the data
            loaders counts the images.

    Raises :class:`~npsenet.train.lock.RunFolderInUse` when another process trains in
    ``out_dir``.
    """
    if not Path(out_dir).is_dir():
        read_run(out_dir, device, data_dir, download)     # raises: no checkpoint to resume
    # no one else is training there (data parallel: rank 0 holds the lock for all ranks)
    held = hold_run_folder(out_dir, flag="--resume") if distributed.is_main_process() \
        else contextlib.nullcontext()
    with held:
        model, config, train_set, test_set, extra = read_run(out_dir, device, data_dir,
                                                             download)
    distributed.check_resume(config, out_dir)
    saved = config.get(FINGERPRINT_KEY)
    now = _fingerprint(train_set, test_set, config)
    if saved is not None and saved != now:
        if not allow_data_change:
            raise ValueError(f"the data changed since {out_dir} was trained: "
                             f"{_describe_change(saved, now)}. Point --data-dir at the data it "
                             "was trained on, or pass --allow-data-change to continue on "
                             "this data.")
        config[FINGERPRINT_KEY] = now
    trainer = _assemble(model, config, train_set, test_set, out_dir, progress)
    trainer.load_state(extra)
    return trainer


def _assemble(model, config, train_set, test_set, out_dir, progress):
    """The trainer of ``model`` with the loaders, SGD, schedule and loss ``config`` names."""
    train_loader, test_loader = make_loaders(config, train_set, test_set, config["mean"],
                                             config["std"])
    optimizer = SGD(model.parameters(), lr=config["lr"], momentum=config["momentum"],
                    weight_decay=config["weight_decay"], nesterov=config["nesterov"])
    schedule = make_schedule(optimizer, config, len(train_loader))
    for split, labels in (("training", train_set[1]), ("test", test_set[1])):
        _check_labels(labels, config["num_classes"], split)
    # the labels were checked here, once: no per-step check that waits for a GPU
    loss_fn = SoftmaxCrossEntropy(label_smoothing=config["label_smoothing"],
                                  check_device_labels=False)
    return distributed.parallelize(Trainer(model, optimizer, schedule, loss_fn, train_loader,
                                           test_loader, out_dir, config=config,
                                           progress=progress))


def _fingerprint(train_set, test_set, config):
    """What a run trains on, cheaply: per split the number of images and the MD5 of its
    labels and of its first and last images' bytes (enough to tell another dataset, another
    subset or another order; it does not read every image)."""
    record = {"dataset": config["dataset"]}
    for split, (images, labels, _) in (("train", train_set), ("test", test_set)):
        digest = hashlib.md5(np.ascontiguousarray(labels, dtype="<i8").tobytes())
        if len(images):
            digest.update(np.ascontiguousarray(images[0]).tobytes())
            digest.update(np.ascontiguousarray(images[-1]).tobytes())
        record[f"{split}_images"] = int(len(labels))
        record[f"{split}_md5"] = digest.hexdigest()
    return record


def _describe_change(saved, now):
    """The differences between two fingerprints, in words."""
    changes = []
    if saved.get("dataset") != now.get("dataset"):
        changes.append(f"dataset {saved.get('dataset')} then, {now.get('dataset')} now")
    for split in ("train", "test"):
        a, b = saved.get(f"{split}_images"), now.get(f"{split}_images")
        if a != b:
            changes.append(f"{a} {split} images then, {b} now")
        elif saved.get(f"{split}_md5") != now.get(f"{split}_md5"):
            changes.append(f"the {split} images or labels differ (same count, {b})")
    return "; ".join(changes) or "the fingerprints differ"


def _check_labels(labels, num_classes, split):
    """The labels of a split, on the host, in [0, num_classes): one line if not."""
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"the {split} labels must be class numbers from 0 to "
                         f"{num_classes - 1}, got values from {int(labels.min())} to "
                         f"{int(labels.max())}; is the dataset damaged?")


def checkpoint_test_set(checkpoint, path, dataset=None, data_dir=None, device="cpu",
                        limit_test=None, download=True, full_test=False):
    """The test split a saved model is measured on, and the transform of its inputs.

    The dataset, the input normalisation and the number of test images (the run's
    ``limit_test``) default to those of the training run when ``checkpoint`` (a
    :func:`npsenet.io.load_checkpoint` result read from ``path``) was written by
    ``npsenet train``; otherwise the dataset is ``dataset`` (or CIFAR-10) normalised with
    its training split's per-channel statistics, and every test image is used.
    ``limit_test`` (an int) replaces the run's limit; ``full_test=True`` uses every test
    image whatever the run used.

    Returns ``(images, labels, classes, normalize, config)``: uint8 (N, 3, H, W), int64
    (N,), the class names, a :class:`npsenet.data.Normalize`, and the configuration the
    split was loaded with.
    """
    trained = checkpoint.meta.get("config") or {}
    dataset = dataset or trained.get("dataset", "cifar10")
    if full_test:
        limit_test = None
    elif limit_test is None and trained.get("dataset") == dataset:
        limit_test = trained.get("limit_test")   # the test images the run measured on
    config = default_config(dataset=dataset, limit_test=limit_test, download=download,
                            device=device,
                            data_dir=data_dir if data_dir is not None else trained.get("data_dir"))
    images, labels, classes = load_split(config, train=False)
    num_classes = checkpoint.model.options.get("num_classes")
    if num_classes is not None and num_classes != len(classes):
        raise ValueError(f"{path} holds a model with {num_classes} outputs but {dataset} has "
                         f"{len(classes)} classes; pass the --dataset it was trained on.")
    if trained.get("dataset") == dataset and "mean" in trained:
        mean, std = trained["mean"], trained["std"]
    else:
        mean, std = _data.channel_stats(load_split(dict(config, limit_train=None), True)[0])
    return images, labels, classes, _data.Normalize(mean, std), config


def evaluate_checkpoint(path, dataset=None, data_dir=None, device="cpu", batch_size=256,
                        limit_test=None, download=True, full_test=False):
    """Test loss and accuracy of the model saved in ``path`` (any ``ns.io.save_model`` file),
    on the test split :func:`checkpoint_test_set` chooses.

    Returns ``(loss, accuracy, number of test images)``.
    """
    ckpt = checkpoint_io.load_checkpoint(path, device=normalize_device(device))
    images, labels, _, normalize, config = checkpoint_test_set(
        ckpt, path, dataset, data_dir, device, limit_test, download, full_test)
    loader = _data.BatchLoader(images, labels, batch_size, shuffle=False, augment=False,
                               normalize=normalize, device=config["device"])
    trained = ckpt.meta.get("config") or {}
    loss_fn = SoftmaxCrossEntropy(label_smoothing=trained.get("label_smoothing", 0.0))
    loss, accuracy = evaluate(ckpt.model, loader, loss_fn)
    return loss, accuracy, len(labels)
