"""The capstone: a student's pairs in SE-ResNet-20, trained for a few epochs.

The layers of ``npsenet.nn`` call the pairs of whatever path object is active;
:func:`npsenet.exercise.path.student_path` builds one from a workspace (the plain path's
pairs with the student's in their place) and ``ns.nn.switch.using_path`` makes it active.
:func:`check_capstone` then

1. checks the student's ``train_step`` against :func:`train_step` (two steps of a small
   float64 SE-ResNet-20 on the plain path: the same loss and the same parameters);
2. checks the student's pairs inside the model: one step on them gives the plain path's
   logits, loss and parameter gradients;
3. trains SE-ResNet-20 on the student's pairs with the student's ``train_step``:
   ``EPOCHS`` epochs of ``TRAIN_IMAGES`` images of the CIFAR-10 subset (or of CIFAR-10:
   :func:`dataset_for` says where it looks), or of synthetic images when there is none; with
   ``NPSENET_QUICK=1``, one epoch of 64 images.

It passes when both checks hold and every loss of the training is finite. The constants
below are the capstone file's defaults (``npsenet exercise new`` copies them).
"""
from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np

EPOCHS = 3              # epochs of training on your pairs
TRAIN_IMAGES = 1024     # training images per epoch (the first ones of the training split)
TEST_IMAGES = 256       # test images evaluated after each epoch
BATCH_SIZE = 64
DATA_DIR = None         # the folder of cifar-10-batches-py/; None: the grader looks for one

QUICK = {"epochs": 1, "train_images": 64, "test_images": 32, "batch_size": 32}
"""The settings under ``NPSENET_QUICK=1`` (tests, notebooks)."""
PARITY_TOLERANCE = 1e-8
STEP_TOLERANCE = 1e-10


def train_step(model, loss_fn, optimizer, x, y):
    """One SGD step: forward, loss, backward, update; returns (mean loss, logits)."""
    logits = model(x)
    loss = loss_fn(logits, y)
    model.zero_grad()                       # the layers add into param.grad
    model.backward(loss_fn.backward())
    optimizer.step()
    return float(loss), logits


def _small_model(seed=0):
    """SE-ResNet-20 in float64, and a batch of 4 images of 8x8 (enough for its three stages)."""
    from .. import init, models
    init.manual_seed(seed)
    model = models.se_resnet20(num_classes=10).to(dtype=np.float64)
    rng = np.random.default_rng(seed)
    return model, rng.standard_normal((4, 3, 8, 8)), rng.integers(0, 10, 4).astype(np.int64)


def _error(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        return float("inf")
    return float(np.max(np.abs(a - b), initial=0.0) / max(np.max(np.abs(b), initial=0.0), 1e-12))


def _not_done_function(exc):
    """The function whose NotImplementedError this is: the innermost frame's name."""
    tb = exc.__traceback__
    name = None
    while tb is not None:
        name, tb = tb.tb_frame.f_code.co_name, tb.tb_next
    return name


def check_train_step(student_step):
    """The student's training step against :func:`train_step`, two steps on the plain path.

    Returns (error, problem): the worst relative error of the parameters (and loss), and
    a sentence saying what to check (None when the steps agree). Raises
    NotImplementedError if the step is a stub.
    """
    from ..nn import SoftmaxCrossEntropy, fast
    from ..optim import SGD
    worst, runs = 0.0, []
    for step in (train_step, student_step):
        model, x, y = _small_model()
        loss_fn = SoftmaxCrossEntropy()
        optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9)
        before = [p.data.copy() for p in model.parameters()]
        losses, after = [], []
        with fast(False):
            for _ in range(2):
                out = step(model, loss_fn, optimizer, x, y)
                losses.append(out)
                after.append([p.data.copy() for p in model.parameters()])
        runs.append((before, losses, after))
    (before, ref_losses, ref_after), (_, losses, after) = runs
    if not (isinstance(losses[0], (tuple, list)) and len(losses[0]) == 2):
        return math.inf, ("train_step must return (loss, logits): the mean loss as a float "
                          f"and the logits; it returned {type(losses[0]).__name__}.")
    for k in range(2):
        worst = max(worst, abs(float(losses[k][0]) - ref_losses[k][0]) / abs(ref_losses[k][0]))
        worst = max(worst, _error(losses[k][1], ref_losses[k][1]))
        worst = max([worst] + [_error(a, b) for a, b in zip(after[k], ref_after[k])])
    if worst < STEP_TOLERANCE:
        return worst, None
    if all(np.array_equal(a, b) for a, b in zip(after[0], before)):
        return worst, ("the parameters did not change: call optimizer.step() after "
                       "model.backward(loss_fn.backward()).")
    first = max(_error(a, b) for a, b in zip(after[0], ref_after[0]))
    if first < STEP_TOLERANCE:
        return worst, ("the first step is right, the second is not: gradients accumulate "
                       "in param.grad, so call model.zero_grad() before model.backward(...).")
    if abs(float(losses[0][0]) - ref_losses[0][0]) > 1e-9 * abs(ref_losses[0][0]):
        return worst, ("the returned loss is not the batch's mean loss: return "
                       "float(loss_fn(logits, y)) of this step's forward.")
    return worst, ("the step's parameters differ from forward, loss, model.zero_grad(), "
                   "model.backward(loss_fn.backward()), optimizer.step().")


def check_path_in_model(path):
    """One forward and backward of a small SE-ResNet-20 on ``path`` against the plain path.

    Returns (error, worst): the worst relative error over the logits, the loss and every
    parameter gradient, and the name of the worst one."""
    from ..nn import SoftmaxCrossEntropy, fast
    from ..nn.switch import using_path
    answers = []
    for context in (fast(False), using_path(path)):
        model, x, y = _small_model()
        loss_fn = SoftmaxCrossEntropy()
        with context:
            logits = model(x)
            loss = loss_fn(logits, y)
            model.zero_grad()
            model.backward(loss_fn.backward())
        answers.append({"logits": logits, "loss": loss,
                        **{name: p.grad for name, p in model.named_parameters()}})
    reference, mine = answers
    errors = {k: _error(mine[k], reference[k]) for k in reference}
    worst = max(errors, key=errors.get)
    return errors[worst], worst


def settings(module=None, data_dir=None):
    """The capstone's settings: the capstone file's constants (or this module's), the quick
    ones under ``NPSENET_QUICK=1``, and ``data_dir`` when given."""
    def get(name):
        return globals()[name] if module is None else getattr(module, name, globals()[name])

    chosen = {"epochs": get("EPOCHS"), "train_images": get("TRAIN_IMAGES"),
              "test_images": get("TEST_IMAGES"), "batch_size": get("BATCH_SIZE"),
              "data_dir": data_dir or get("DATA_DIR")}
    if os.environ.get("NPSENET_QUICK") == "1":
        chosen.update(QUICK)
    return chosen


def dataset_for(data_dir):
    """Where the capstone's images come from: ("cifar10", folder) for the first folder
    holding cifar-10-batches-py/ among ``data_dir``, ``$NPSENET_CIFAR_SUBSET`` and the
    download cache (``npsenet.data.cache_dir()``, where ``npsenet train`` puts CIFAR-10),
    else ("synthetic", None). A ``data_dir`` given but without CIFAR-10 is an error."""
    if data_dir is not None:
        if not (Path(data_dir) / "cifar-10-batches-py").is_dir():
            raise FileNotFoundError(f"no cifar-10-batches-py/ in {data_dir}; set DATA_DIR "
                                    "(or --data-dir) to the folder that holds it, or to None "
                                    "for synthetic images.")
        return "cifar10", str(data_dir)
    from ..data import cache_dir
    for folder in (os.environ.get("NPSENET_CIFAR_SUBSET"), cache_dir()):
        if folder and (Path(folder) / "cifar-10-batches-py").is_dir():
            return "cifar10", str(folder)
    return "synthetic", None


def train_on(path, student_step, epochs, train_images, test_images, batch_size, data_dir,
             log=None):
    """Train SE-ResNet-20 on ``path`` with ``student_step``; returns one dict per epoch
    (train_loss, train_acc, test_loss, test_acc, seconds) and the data's description."""
    from ..nn.switch import using_path
    from ..train import build_trainer, default_config, evaluate
    dataset, folder = dataset_for(data_dir)
    config = default_config(dataset=dataset, data_dir=folder, download=False, epochs=epochs,
                            batch_size=batch_size, limit_train=train_images,
                            limit_test=test_images, eval_batch_size=max(batch_size, 64),
                            warmup_epochs=0, lr=0.05)
    with tempfile.TemporaryDirectory() as out_dir:
        trainer = build_trainer(config, out_dir, progress=False)
    model, optimizer, schedule = trainer.model, trainer.optimizer, trainer.schedule
    rows = []
    with using_path(path):
        for epoch in range(1, epochs + 1):
            started, losses, correct, seen = time.perf_counter(), [], 0, 0
            model.train()
            for x, y in trainer.train_loader:
                loss, logits = student_step(model, trainer.loss_fn, optimizer, x, y)
                if not math.isfinite(loss):
                    raise FloatingPointError(f"the training loss became {loss} in epoch {epoch}")
                losses.append(loss)
                correct += int((np.asarray(logits).argmax(axis=1) == y).sum())
                seen += len(y)
                schedule.step()
            test_loss, test_acc = evaluate(model, trainer.test_loader, trainer.loss_fn)
            rows.append({"epoch": epoch, "first_loss": losses[0],
                         "train_loss": float(np.mean(losses)), "train_acc": correct / seen,
                         "test_loss": test_loss, "test_acc": test_acc,
                         "seconds": time.perf_counter() - started})
            if log is not None:
                log(_epoch_line(rows[-1], epochs))
    data = f"CIFAR-10 in {folder}" if dataset == "cifar10" else "synthetic"
    return rows, f"{train_images} training images ({data}), batch {batch_size}"


def _epoch_line(row, epochs):
    return (f"epoch {row['epoch']}/{epochs}: train loss {row['train_loss']:.3f}, accuracy "
            f"{100 * row['train_acc']:.1f}%; test loss {row['test_loss']:.3f}, accuracy "
            f"{100 * row['test_acc']:.1f}% ({row['seconds']:.0f} s)")


def check_capstone(workspace, module, data_dir=None, log=None):
    """Grade the capstone of ``workspace``, whose capstone file is loaded as ``module``.

    Returns a :class:`~npsenet.exercise.grader.Result` (its notes hold the training log)."""
    from .catalog import exercise_of
    from .grader import FAIL, NOT_DONE, PASS, Result
    from .path import student_path
    result = Result("capstone", PASS)

    def not_done(exc):
        name = _not_done_function(exc)
        exercise = exercise_of(name)
        result.status = NOT_DONE
        if exercise is not None and exercise.name != "capstone":
            result.notes.append(f"needs {name} of exercise {exercise.name} (not done yet)")
        return result

    try:
        step_error, problem = check_train_step(module.train_step)
    except NotImplementedError as exc:
        return not_done(exc)
    result.error = step_error
    if problem:
        result.status = FAIL
        result.messages.append(f"train_step: differs from the reference step (relative "
                               f"error {step_error:.1e})")
        result.hints.append(problem)
        return result
    path = student_path(workspace)
    try:
        error, worst = check_path_in_model(path)
    except NotImplementedError as exc:
        return not_done(exc)
    result.error = max(result.error, error)
    if not error < PARITY_TOLERANCE:
        result.status = FAIL
        result.messages.append(f"SE-ResNet-20 on your pairs: {worst} differs from the plain "
                               f"path's (relative error {error:.1e})")
        result.hints.append("check the pair exercises first (npsenet exercise check DIR "
                            "linear activations softmax batchnorm conv squeeze scale): the "
                            "model is only as right as its layers.")
        return result
    options = settings(module, data_dir)
    rows, data = train_on(path, module.train_step, log=log, **options)
    result.notes.append(f"trained on your pairs: {data}")
    result.notes += [_epoch_line(row, options["epochs"]) for row in rows]
    if rows[-1]["train_loss"] < rows[0]["first_loss"]:
        result.notes.append(f"the training loss went from {rows[0]['first_loss']:.3f} "
                            f"(first batch) to {rows[-1]['train_loss']:.3f} (last epoch's mean)")
    else:
        result.notes.append("the training loss has not gone down yet; more epochs or images "
                            "(EPOCHS, TRAIN_IMAGES) show whether it learns")
    return result


def run_capstone(file, student_step=None, **overrides):
    """What ``python ex11_capstone.py`` runs: :func:`check_capstone` on the file's folder,
    printing each epoch as it ends and the report at the end. Returns the result."""
    from .report import format_report
    from .workspace import load_module
    file = Path(file).resolve()
    module = load_module(file)
    if student_step is not None:
        module.train_step = student_step
    for key, name in (("epochs", "EPOCHS"), ("train_images", "TRAIN_IMAGES"),
                      ("test_images", "TEST_IMAGES"), ("batch_size", "BATCH_SIZE"),
                      ("data_dir", "DATA_DIR")):
        if key in overrides:
            setattr(module, name, overrides[key])
    result = check_capstone(file.parent, module, log=print)
    print(format_report([result]))
    return result
