"""Faults, with real processes and real signals: a diverging run, SIGINT/SIGTERM during
training (checkpoint, clean exit, bit-identical resume) and SIGKILL during a checkpoint
write (the previous checkpoint stays whole)."""
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import wait_for_file

import npsenet as ns
from npsenet import train as training

REPO = Path(__file__).resolve().parents[1]

TINY = dict(model="resnet20", dataset="synthetic", epochs=3, batch_size=32, limit_train=64,
            limit_test=32, warmup_epochs=0)
TINY_FLAGS = ["--model", "resnet20", "--dataset", "synthetic", "--epochs", "3",
              "--batch-size", "32", "--limit-train", "64", "--limit-test", "32",
              "--warmup-epochs", "0", "--no-progress"]


def _npsenet(cwd, *argv):
    """``python -m npsenet ARGV`` started in ``cwd`` (a test's tmp_path, never the repo),
    importing this checkout's npsenet."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
    return subprocess.Popen([sys.executable, "-m", "npsenet", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd, env=env)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The final weights of the tiny run trained without a break."""
    trainer = training.build_trainer(training.default_config(**TINY),
                                     tmp_path_factory.mktemp("reference"), progress=False)
    trainer.fit()
    return {k: v.copy() for k, v in trainer.model.state_dict().items()}


def _assert_same_arrays(state, expected):
    assert list(state) == list(expected)
    for key, value in expected.items():
        assert state[key].dtype == value.dtype and np.array_equal(state[key], value), key


def test_an_absurd_learning_rate_stops_with_a_clear_message(tmp_path):
    proc = _npsenet(tmp_path, "train", *TINY_FLAGS, "--lr", "1e30", "--out",
                    str(tmp_path / "run"))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2
    assert "npsenet train: error: the training loss became nan" in err
    assert "training diverged" in err and "Try a smaller --lr" in err
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


def test_divergence_keeps_the_last_good_checkpoint(tmp_path):
    trainer = training.build_trainer(training.default_config(**TINY), tmp_path, progress=False)
    trainer.fit(1)
    path = tmp_path / "checkpoint.npz"
    saved = path.read_bytes()
    trainer.schedule.base_lr = 1e30  # the run blows up in epoch 2
    with np.errstate(all="ignore"), pytest.raises(training.TrainingDiverged) as info:
        trainer.fit()
    message = str(info.value)
    assert "epoch 2" in message and "last good checkpoint" in message and str(path) in message
    assert path.read_bytes() == saved
    ckpt = ns.io.load_checkpoint(path)
    assert ckpt.meta["epoch"] == 1
    assert all(np.isfinite(a).all() for a in ckpt.model.state_dict().values()
               if a.dtype.kind == "f")


def test_a_nan_test_loss_saves_nothing(tmp_path, monkeypatch):
    trainer = training.build_trainer(training.default_config(**dict(TINY, epochs=1)), tmp_path,
                                     progress=False)
    monkeypatch.setattr(training.loop, "evaluate", lambda *args: (float("nan"), 0.0))
    with pytest.raises(training.TrainingDiverged, match="the test loss became nan at the end "
                                                        "of epoch 1"):
        trainer.fit()
    assert not (tmp_path / "checkpoint.npz").exists()
    assert not (tmp_path / "metrics.csv").exists()


def test_sigint_mid_epoch_saves_and_resumes_bit_identically(tmp_path, uninterrupted):
    trainer = training.build_trainer(training.default_config(**TINY), tmp_path, progress=False)
    step = trainer._train_step
    calls = []

    def step_then_press_ctrl_c(x, y):
        result = step(x, y)
        calls.append(1)
        if len(calls) == 3:  # the first step of epoch 2 (two steps per epoch)
            os.kill(os.getpid(), signal.SIGINT)
        return result

    trainer._train_step = step_then_press_ctrl_c
    handler_before = signal.getsignal(signal.SIGINT)
    with pytest.raises(training.TrainingInterrupted) as info:
        trainer.fit()
    assert info.value.signum == signal.SIGINT
    assert "in epoch 2 after step 1/2" in str(info.value)
    assert signal.getsignal(signal.SIGINT) is handler_before  # the handler is restored
    resumed = training.resume_trainer(tmp_path, progress=False)
    assert (resumed.epoch, resumed.step_in_epoch) == (1, 1)
    resumed.fit()
    _assert_same_arrays(resumed.model.state_dict(), uninterrupted)
    assert [r["epoch"] for r in training.read_metrics(tmp_path / "metrics.csv")] == [1, 2, 3]


def test_sigterm_stops_the_command_cleanly_and_resume_is_bit_identical(tmp_path, uninterrupted):
    out = tmp_path / "run"
    proc = _npsenet(tmp_path, "train", *TINY_FLAGS, "--out", str(out))
    wait_for_file(proc, out / "checkpoint.npz", 240)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err and f"--resume {out}" in err
    assert "Traceback" not in err
    ckpt = ns.io.load_checkpoint(out / "checkpoint.npz")
    assert ckpt.meta["epoch"] < 3

    proc = _npsenet(tmp_path, "train", "--resume", str(out), "--no-progress")
    printed, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    assert "resuming" in printed and "epoch 3/3" in printed
    _assert_same_arrays(ns.io.load_model(out / "checkpoint.npz").state_dict(), uninterrupted)


WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    import npsenet as ns

    model = ns.models.resnet20()
    big = np.arange(3_000_000, dtype=np.float64)  # 24 MB, so a write takes a while
    count = 0
    while True:
        count += 1
        ns.io.save_model(sys.argv[1], model, extra={"big": big + count,
                                                    "count": np.array(count)},
                         meta={"count": count})
        print(count, flush=True)
""")


def test_sigkill_during_checkpoint_writes_leaves_a_whole_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.npz"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    shuffle = random.Random(0)
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, str(script), str(path)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip(), "the writer did not write its first checkpoint"
        time.sleep(shuffle.uniform(0.0, 0.5))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL
        ckpt = ns.io.load_checkpoint(path)  # always a complete file, never a torn one
        count = int(ckpt.extra["count"])
        assert ckpt.meta["count"] == count >= 1
        assert ckpt.extra["big"][0] == count and ckpt.extra["big"][-1] == 2_999_999 + count
        assert ckpt.model.name == "resnet20"
