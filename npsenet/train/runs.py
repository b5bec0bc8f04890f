"""Starting a run from a recipe, resuming one from its checkpoint, evaluating a saved model.

These are what ``npsenet train`` and ``npsenet eval`` call: they put together the
:class:`~npsenet.train.Trainer` (model, SGD, schedule, loss, loaders) that the
configuration describes.
"""
from __future__ import annotations

from .. import data as _data
from .. import distributed
from .. import io as checkpoint_io
from ..backend import normalize_device
from ..init import manual_seed
from ..models import build_model
from ..nn import SoftmaxCrossEntropy
from ..optim import SGD
from .checkpoint import read_run
from .config import check_config, default_config, load_split, make_loaders, make_schedule
from .loop import Trainer, evaluate


def build_trainer(config, out_dir, progress=True, sync_bn=False):
    """A fresh run: data, model (seeded), optimizer, schedule and loaders from ``config``.
    Under ``mpiexec`` it is one rank of data-parallel training (``sync_bn``: batch norm
    over the global batch), see :func:`npsenet.distributed.parallelize`."""
    check_config(config)
    train_set, test_set = load_split(config, True), load_split(config, False)
    num_classes = len(train_set[2])
    mean, std = _data.channel_stats(train_set[0])
    config = dict(config, mean=[float(v) for v in mean], std=[float(v) for v in std],
                  num_classes=num_classes, train_images=len(train_set[1]),
                  test_images=len(test_set[1]),
                  **distributed.run_settings(sync_bn, config["device"]))
    manual_seed(config["seed"])
    model = build_model(config["model"], num_classes=num_classes, **config["model_options"])
    model.to(device=config["device"])
    return _assemble(model, config, train_set, test_set, out_dir, progress)


def resume_trainer(out_dir, device=None, data_dir=None, download=None, progress=True):
    """The run saved in ``out_dir/checkpoint.npz``, ready to continue with :meth:`Trainer.fit`.

    Args:
        out_dir: the run's folder.
        device: move the run to another device ('cpu' or 'gpu'); None keeps the saved one.
        data_dir: where the dataset is now, if it moved; None keeps the saved path.
        download: whether a missing CIFAR may be downloaded; None keeps the saved choice.
    """
    model, config, train_set, test_set, extra = read_run(out_dir, device, data_dir, download)
    distributed.check_resume(config, out_dir)
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


def _check_labels(labels, num_classes, split):
    """The labels of a split, on the host, in [0, num_classes): one line if not."""
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"the {split} labels must be class numbers from 0 to "
                         f"{num_classes - 1}, got values from {int(labels.min())} to "
                         f"{int(labels.max())}; is the dataset damaged?")


def evaluate_checkpoint(path, dataset=None, data_dir=None, device="cpu", batch_size=256,
                        limit_test=None, download=True):
    """Test loss and accuracy of the model saved in ``path`` (any ``ns.io.save_model`` file).

    The dataset and the input normalisation default to those of the training run when the
    checkpoint was written by ``npsenet train``; otherwise the dataset is ``dataset`` (or
    CIFAR-10) normalised with its training split's per-channel statistics.

    Returns ``(loss, accuracy, number of test images)``.
    """
    ckpt = checkpoint_io.load_checkpoint(path, device=normalize_device(device))
    trained = ckpt.meta.get("config") or {}
    dataset = dataset or trained.get("dataset", "cifar10")
    config = default_config(dataset=dataset, eval_batch_size=batch_size, limit_test=limit_test,
                            download=download, device=device,
                            data_dir=data_dir if data_dir is not None else trained.get("data_dir"))
    test_set = load_split(config, train=False)
    num_classes = ckpt.model.options.get("num_classes")
    if num_classes is not None and num_classes != len(test_set[2]):
        raise ValueError(f"the checkpoint's model has {num_classes} outputs but {dataset} has "
                         f"{len(test_set[2])} classes; pass the --dataset it was trained on.")
    if trained.get("dataset") == dataset and "mean" in trained:
        mean, std = trained["mean"], trained["std"]
    else:
        mean, std = _data.channel_stats(load_split(dict(config, limit_train=None), True)[0])
    loader = _data.BatchLoader(*test_set[:2], batch_size, shuffle=False, augment=False,
                               normalize=_data.Normalize(mean, std), device=config["device"])
    loss_fn = SoftmaxCrossEntropy(label_smoothing=trained.get("label_smoothing", 0.0))
    loss, accuracy = evaluate(ckpt.model, loader, loss_fn)
    return loss, accuracy, len(test_set[1])
