"""The trainer and the `train` / `eval` commands, on tiny synthetic runs."""
import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import npsenet as ns
from npsenet import cli
from npsenet import train as training

REPO = Path(__file__).resolve().parents[1]

TINY = dict(model="resnet20", dataset="synthetic", epochs=3, batch_size=32, limit_train=128,
            limit_test=64, warmup_epochs=0, lr=0.05)
TINY_FLAGS = ["--model", "resnet20", "--dataset", "synthetic", "--batch-size", "32",
              "--limit-train", "64", "--limit-test", "32", "--warmup-epochs", "0",
              "--no-progress"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Three epochs trained without a break; the checkpoint after epoch 1 is copied aside."""
    out = tmp_path_factory.mktemp("run")
    trainer = training.build_trainer(training.default_config(**TINY), out, progress=False)
    trainer.fit(1)
    snapshot = tmp_path_factory.mktemp("after_epoch_1")
    shutil.copy(out / training.CHECKPOINT_NAME, snapshot / training.CHECKPOINT_NAME)
    trainer.fit()
    return trainer, out, snapshot


def test_a_run_writes_metrics_curves_and_a_checkpoint(tiny_run):
    trainer, out, _ = tiny_run
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == training.METRIC_COLUMNS
    assert [r[0] for r in rows[1:]] == ["1", "2", "3"]
    parsed = training.read_metrics(out / "metrics.csv")
    for row, kept in zip(parsed, trainer.metrics):
        assert row["test_acc"] == pytest.approx(kept["test_acc"], rel=1e-5)
        assert 0.0 <= row["train_acc"] <= 1.0 and row["epoch_seconds"] > 0
        assert row["images_per_second"] > 0
    # lr: the mean rate over the epoch's steps (cosine from 0.05 over 3 epochs of 4 steps)
    rates = [0.05 * 0.5 * (1 + np.cos(np.pi * step / 12)) for step in range(12)]
    for epoch, row in enumerate(parsed):
        assert row["lr"] == pytest.approx(np.mean(rates[4 * epoch:4 * epoch + 4]), rel=1e-5)
    assert parsed[1]["lr"] < parsed[0]["lr"] < 0.05  # the cosine schedule decays
    png = (out / "curves.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000

    with np.load(out / "checkpoint.npz", allow_pickle=False) as archive:
        assert "conv1.weight" in archive.files
        assert any(k.startswith("__extra__/optimizer/momentum_buffer/") for k in archive.files)
    model = ns.io.load_model(out / "checkpoint.npz")
    assert model.name == "resnet20"
    for key, value in trainer.model.state_dict().items():
        assert np.array_equal(model.state_dict()[key], value), key
    ckpt = ns.io.load_checkpoint(out / "checkpoint.npz")
    assert ckpt.meta["config"]["batch_size"] == 32 and ckpt.meta["epoch"] == 3
    assert ckpt.extra["metrics/test_acc"].tolist() == [r["test_acc"] for r in trainer.metrics]


def test_the_loss_goes_down_and_accuracy_rises_above_chance(tiny_run):
    metrics = tiny_run[0].metrics
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"] - 0.1
    assert metrics[-1]["train_acc"] > 0.15  # ten classes: chance is 0.1


def test_resume_after_an_epoch_is_bit_identical(tiny_run, tmp_path):
    trainer, _, snapshot = tiny_run
    shutil.copytree(snapshot, tmp_path / "resumed")
    resumed = training.resume_trainer(tmp_path / "resumed", progress=False)
    assert resumed.epoch == 1 and resumed.optimizer.lr < trainer.metrics[0]["lr"]
    resumed.fit()
    expected = trainer.model.state_dict()
    got = resumed.model.state_dict()
    assert list(got) == list(expected)
    for key in expected:
        assert got[key].dtype == expected[key].dtype
        assert np.array_equal(got[key], expected[key]), key
    for a, b in zip(resumed.optimizer.momentum_buffers, trainer.optimizer.momentum_buffers):
        assert np.array_equal(a, b)
    assert [r["test_loss"] for r in resumed.metrics] == [r["test_loss"] for r in trainer.metrics]


def test_a_short_run_on_each_device(device, tmp_path):
    """The whole pipeline with --device gpu (CuPy) where a GPU is present: the loss
    stays finite, the checkpoint loads on the CPU, and eval runs on the device."""
    config = training.default_config(**dict(TINY, epochs=1), device=device)
    trainer = training.build_trainer(config, tmp_path, progress=False)
    trainer.fit()
    assert np.isfinite(trainer.metrics[-1]["train_loss"])
    model = ns.io.load_model(tmp_path / training.CHECKPOINT_NAME)
    assert ns.backend.device_of(model.parameters()[0].data) == "cpu"
    loss, accuracy, count = training.evaluate_checkpoint(tmp_path / training.CHECKPOINT_NAME,
                                                         device=device)
    assert np.isfinite(loss) and 0.0 <= accuracy <= 1.0 and count > 0


def test_eval_command_prints_the_accuracy(tiny_run, capsys):
    trainer, out, _ = tiny_run
    assert cli.main(["eval", "--checkpoint", str(out / "checkpoint.npz"),
                     "--limit-test", "64"]) == 0
    lines = capsys.readouterr().out.splitlines()
    accuracy = [line for line in lines if line.startswith("test accuracy: ")]
    assert len(accuracy) == 1
    assert accuracy[0] == f"test accuracy: {trainer.metrics[-1]['test_acc']:.4f}"


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """The command runs in an empty folder (a runs/ folder in the cwd changes nothing)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_train_command_runs_and_refuses_to_overwrite(in_tmp, capsys):
    tmp_path = in_tmp
    out = tmp_path / "cli"
    flags = TINY_FLAGS[:TINY_FLAGS.index("--warmup-epochs")] + ["--no-progress"]
    # one epoch with the default warm-up: the warm-up shrinks to fit
    assert cli.main(["train", *flags, "--epochs", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    # two steps: lr 0.1 then 0.05 (cosine over 2 steps, no warm-up), mean 0.075
    assert "epoch 1/1  lr 0.0750" in printed and "after 1 epoch;" in printed
    assert (out / "checkpoint.npz").exists() and (out / "metrics.csv").exists()
    assert cli.main(["train", *TINY_FLAGS, "--epochs", "1", "--out", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert cli.main(["train", "--resume", str(out)]) == 0
    assert "already finished" in capsys.readouterr().out


@pytest.mark.parametrize("argv,expected", [
    (["train", "--epochs", "0"], "--epochs: expected a positive integer"),
    (["train", "--lr", "fast"], "--lr: expected a finite number"),
    (["train", "--lr", "1e400"], "--lr: expected a finite number"),
    (["train", "--dataset", "mnist"], "invalid choice: 'mnist'"),
    (["train", "--schedule", "linear"], "invalid choice: 'linear'"),
    (["train", "--batch-size", "-3"], "--batch-size: expected a positive integer"),
    (["eval"], "--checkpoint"),
])
def test_bad_flags_give_an_argparse_error(argv, expected, in_tmp, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err


@pytest.mark.parametrize("argv,expected", [
    (["train", "--dataset", "synthetic", "--epochs", "2", "--warmup-epochs", "2"],
     "warmup_epochs (2) must be smaller than epochs (2)"),
    (["train", "--model", "resnet20", "--reduction", "8"], "apply only to SE models"),
    (["train", "--dataset", "synthetic", "--momentum", "1.5"], "momentum must be in [0, 1)"),
    (["train", "--dataset", "synthetic", "--label-smoothing", "1"], "label_smoothing must be"),
    (["train", "--resume", "{tmp}/nothing"], "no checkpoint to resume from"),
    (["train", "--resume", "{tmp}", "--lr", "0.5"], "--lr cannot be given"),
    (["train", "--resume", "{tmp}", "--reduction", "4"], "--reduction cannot be given"),
    (["eval", "--checkpoint", "{tmp}/missing.npz"], "no checkpoint at"),
    (["train", "--dataset", "cifar10", "--data-dir", "{tmp}", "--no-download"],
     "CIFAR10 not found"),
    (["train", "--dataset", "synthetic", "--limit-train", "64"],
     "batch_size 128 is larger than the 64 training images (--limit-train 64)"),
    (["train", "--dataset", "synthetic", "--limit-train", "65", "--batch-size", "32"],
     "leave a last batch of one image"),
    (["train", "--dataset", "synthetic", "--allow-data-change"], "applies to --resume only"),
])
def test_bad_settings_give_one_clean_line(argv, expected, in_tmp, capsys):
    tmp_path = in_tmp
    (tmp_path / "runs" / "se_resnet20-synthetic").mkdir(parents=True)   # an earlier run's
    (tmp_path / "runs" / "se_resnet20-synthetic" / "checkpoint.npz").write_bytes(b"")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"npsenet {argv[0]}: error: ") and expected in err
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert capsys.readouterr().out == ""           # checked before the header is printed


def test_a_usage_error_from_the_installed_command_has_no_traceback(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
    result = subprocess.run([sys.executable, "-m", "npsenet", "train", "--epochs", "two"],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert "argument --epochs: expected a positive integer, got 'two'" in result.stderr
    assert "Traceback" not in result.stderr


def test_default_config_rejects_unknown_settings():
    with pytest.raises(ValueError, match="unknown setting"):
        training.default_config(learning_rate=0.1)
    assert training.default_config()["schedule"] == "cosine"
    with pytest.raises(ValueError, match=r"^lr must be a finite number >= 0, got -1"):
        training.default_config(lr=-1.0)
    with pytest.raises(ValueError, match=r"^momentum must be in \[0, 1\)"):
        training.default_config(momentum=1.5)


def _pytorch_reference():
    """benchmarks/pytorch_reference.py as a module (it is a script, not part of the package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "pytorch_reference.py"
    spec = importlib.util.spec_from_file_location("pytorch_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["se_resnet20", "resnet20"])
def test_the_pytorch_reference_model_is_the_same_network(name, rng):
    torch = pytest.importorskip("torch")
    reference = _pytorch_reference()
    config = training.default_config(model=name, seed=3)
    twin = reference.build_model(config, num_classes=10).double()
    ns.manual_seed(3)
    model = ns.models.build_model(name, num_classes=10).to(dtype=np.float64)
    x = rng.standard_normal((4, 3, 32, 32))
    y = np.array([0, 3, 9, 3])
    loss_fn = ns.nn.SoftmaxCrossEntropy()
    logits = model(x)
    loss_fn(logits, y)
    model.backward(loss_fn.backward())
    twin_logits = twin(torch.from_numpy(x))
    torch.nn.functional.cross_entropy(twin_logits, torch.from_numpy(y)).backward()
    np.testing.assert_allclose(logits, twin_logits.detach().numpy(), rtol=0, atol=1e-10)
    grads = dict(model.named_parameters())
    for key, p in twin.named_parameters():
        np.testing.assert_allclose(grads[key].grad, p.grad.numpy(), rtol=0, atol=1e-10,
                                   err_msg=key)


@pytest.mark.parametrize("schedule", ["cosine", "multistep"])
def test_the_pytorch_reference_follows_the_same_schedule(schedule):
    pytest.importorskip("torch")
    reference = _pytorch_reference()
    config = training.default_config(schedule=schedule, epochs=5, warmup_epochs=1, lr=0.1)
    steps_per_epoch = 7
    optimizer = ns.optim.SGD([ns.nn.Parameter(np.zeros(2))], lr=0.1)
    schedule = training.make_schedule(optimizer, config, steps_per_epoch)
    for step in range(config["epochs"] * steps_per_epoch):
        expected = 0.1 * reference.lr_factor(step, config, steps_per_epoch)
        assert optimizer.lr == pytest.approx(expected, rel=1e-12, abs=1e-15)
        schedule.step()


def test_curves_and_progress_bars_are_optional(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setattr(training.report, "_MATPLOTLIB_NOTED", [])
    rows = [{c: 1.0 for c in training.METRIC_COLUMNS}]
    assert training.plot_curves(rows, tmp_path / "curves.png") is False
    assert training.plot_curves(rows, tmp_path / "curves.png") is False
    assert not (tmp_path / "curves.png").exists()
    assert capsys.readouterr().err.count("matplotlib is not installed") == 1
    assert training.report._progress_bar(10, 0, "epoch 1/1", enabled=True) is None


def test_a_run_checks_its_labels_once_on_the_host():
    """The trainer checks every label before the first step (the loss then skips the
    per-step range check that would wait for a GPU)."""
    from npsenet.train.runs import _check_labels
    _check_labels(np.array([0, 9, 3]), 10, "training")
    with pytest.raises(ValueError, match=r"training labels must be class numbers from 0 to 9, "
                                         r"got values from 0 to 10"):
        _check_labels(np.array([0, 10]), 10, "training")
    loss = ns.nn.SoftmaxCrossEntropy(check_device_labels=False)
    with pytest.raises(ValueError, match="labels must be in"):   # NumPy labels: still checked
        loss(np.zeros((2, 3)), np.array([0, 3]))
