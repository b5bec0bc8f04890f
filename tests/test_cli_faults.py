"""The command line against faults and careless use: a second trainer on a folder in use,
an --out that is a file or cannot be written, bad settings, a closed pipe, the default
folder twice, a resume on other data, eval's test images, and errors of every kind ending
in one line. Real processes run with cwd=tmp_path; each asserts the exit status, exactly
one line on stderr, no traceback, and that nothing was lost."""
import errno
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import npsenet as ns
from npsenet import cli
from npsenet import train as training
from npsenet.train import lock

REPO = Path(__file__).resolve().parents[1]
TINY_FLAGS = ["--model", "resnet20", "--dataset", "synthetic", "--batch-size", "16",
              "--limit-train", "32", "--limit-test", "16", "--warmup-epochs", "0",
              "--no-progress"]


def _env():
    env = {k: v for k, v in os.environ.items() if k != "NPSENET_DEBUG"}
    path = [str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    return dict(env, PYTHONPATH=os.pathsep.join(path), OPENBLAS_NUM_THREADS="1",
                MPLBACKEND="Agg")


def npsenet(cwd, *argv, timeout=120):
    """Run ``python -m npsenet ARGV`` in ``cwd``; the CompletedProcess (text)."""
    return subprocess.run([sys.executable, "-m", "npsenet", *map(str, argv)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=_env())


def one_error_line(err, command="train"):
    """The single stderr line of a failed command (asserts there is exactly one)."""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"npsenet {command}: error: "), err
    return lines[0]


# -- the output folder ----------------------------------------------------------------------
def test_a_second_trainer_is_refused_while_a_run_holds_the_folder(tmp_path):
    out = tmp_path / "runs" / "x"
    first = subprocess.Popen([sys.executable, "-m", "npsenet", "train", *TINY_FLAGS,
                              "--epochs", "50", "--out", str(out)], cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             env=_env())
    try:
        deadline = time.monotonic() + 120
        while not (out / "metrics.csv").exists():     # an epoch done: there is a run to lose
            assert first.poll() is None and time.monotonic() < deadline, first.stderr.read()
            time.sleep(0.1)
        for argv, advice in ((["train", *TINY_FLAGS, "--epochs", "2", "--out", out],
                              "wait for it to finish or choose another --out."),
                             (["train", "--resume", out],
                              "wait for it to finish (or stop it) before resuming it.")):
            result = npsenet(tmp_path, *argv)
            assert result.returncode == 2 and result.stdout == ""
            line = one_error_line(result.stderr)
            assert f"{out} is in use by npsenet train (pid {first.pid} on " in line
            assert line.endswith(advice)
        assert first.poll() is None                   # the first trainer goes on
    finally:
        first.kill()                                  # kill -9: the kernel drops the lock
        first.wait(timeout=60)
        first.stderr.close()
    ckpt = ns.io.load_checkpoint(out / "checkpoint.npz")   # the first run's work is whole
    rows = training.read_metrics(out / "metrics.csv")
    assert ckpt.meta["epoch"] >= 1 and 1 <= len(rows) <= ckpt.meta["epoch"] + 1
    assert [r["epoch"] for r in rows] == list(range(1, len(rows) + 1))
    with lock.hold_run_folder(out):                   # released by the process's death
        assert lock.holder(out)["pid"] == os.getpid()
    assert lock.holder(out) == {}


def test_the_lock_names_its_holder_and_is_reentrant(tmp_path):
    with lock.hold_run_folder(tmp_path, command="npsenet train"):
        with lock.hold_run_folder(tmp_path):          # the same process: no conflict
            info = lock.holder(tmp_path)
        assert info["pid"] == os.getpid() and info["command"] == "npsenet train"
        result = npsenet(tmp_path, "train", *TINY_FLAGS, "--out", tmp_path)
        assert result.returncode == 2
        line = one_error_line(result.stderr)
        assert f"{tmp_path} is in use by npsenet train (pid {os.getpid()} on " in line
        started = time.strftime("%H:%M", time.localtime(info["started"]))
        assert f", since {started}); wait for it to finish or choose another --out." in line \
            or ", since 20" in line                  # (a lock taken the day before)
    assert lock.holder(tmp_path) == {}                # the description goes with the lock


def test_an_out_that_is_a_file_is_refused(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("my notes")
    result = npsenet(tmp_path, "train", *TINY_FLAGS, "--out", "notes.txt")
    assert result.returncode == 2 and result.stdout == ""
    assert "--out notes.txt is a file, not a folder" in one_error_line(result.stderr)
    assert target.read_text() == "my notes"


def test_a_read_only_out_fails_before_the_first_step(tmp_path, monkeypatch, capsys):
    """As root chmod stops no write, so the probe is made to fail as a read-only folder's."""
    def refuse(folder):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(folder))
    monkeypatch.setattr(lock, "_probe", refuse)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "ro"
    steps = []
    monkeypatch.setattr(training.Trainer, "_train_step",
                        lambda self, x, y: steps.append(1))
    assert cli.main(["train", *TINY_FLAGS, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    line = one_error_line(captured.err)
    assert f"cannot write in {out} (Permission denied)" in line and "--out" in line
    assert captured.out == "" and steps == [] and list(out.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes into read-only folders")
def test_a_chmod_read_only_out_fails_before_the_first_step(tmp_path):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        result = npsenet(tmp_path, "train", *TINY_FLAGS, "--out", out)
    finally:
        out.chmod(0o755)
    assert result.returncode == 2 and result.stdout == ""
    assert "cannot write in" in one_error_line(result.stderr)
    assert list(out.iterdir()) == []


def test_a_failed_save_stops_the_run_with_one_line(tmp_path, monkeypatch, capsys):
    """A full disk during the second epoch's checkpoint: one line, exit 2, the first kept."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    real_save = ns.io.save_model
    calls = []

    def save(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_save(path, *args, **kwargs)
    monkeypatch.setattr(training.checkpoint.checkpoint_io, "save_model", save)
    assert cli.main(["train", *TINY_FLAGS, "--epochs", "2", "--out", str(out)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"{out / 'checkpoint.npz'}: No space left on device; free some disk space" in line
    assert ns.io.load_checkpoint(out / "checkpoint.npz").meta["epoch"] == 1
    assert len(training.read_metrics(out / "metrics.csv")) == 1
    assert lock.holder(out) == {}                     # the lock went with the failed run


# -- settings, pipes and the default folder ---------------------------------------------------
def test_a_bad_setting_is_refused_before_the_header(tmp_path):
    result = npsenet(tmp_path, "train", "--dataset", "synthetic", "--momentum", "1.5")
    assert result.returncode == 2 and result.stdout == ""
    assert "momentum must be in [0, 1), got 1.5" in one_error_line(result.stderr)
    assert list(tmp_path.iterdir()) == []             # no runs/ folder either


def test_a_pipe_closed_early_ends_quietly(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "npsenet", "summary"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    proc.stdout.close()                               # as `| head` does once it has enough
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and err == b""


def test_the_default_folder_is_fresh_each_time(tmp_path):
    argv = ["train", *TINY_FLAGS, "--epochs", "1"]
    first = npsenet(tmp_path, *argv)
    assert first.returncode == 0, first.stderr
    assert "writing to runs/resnet20-synthetic/" in first.stdout
    assert "after 1 epoch;" in first.stdout and "1 epochs" not in first.stdout
    kept = (tmp_path / "runs/resnet20-synthetic/checkpoint.npz").read_bytes()
    second = npsenet(tmp_path, *argv)
    assert second.returncode == 0, second.stderr
    assert ("writing to runs/resnet20-synthetic-2/ (runs/resnet20-synthetic holds an earlier "
            "run)") in second.stdout
    assert (tmp_path / "runs/resnet20-synthetic/checkpoint.npz").read_bytes() == kept
    assert (tmp_path / "runs/resnet20-synthetic-2/checkpoint.npz").exists()
    again = npsenet(tmp_path, *argv, "--out", "runs/resnet20-synthetic")  # explicit: refused
    assert again.returncode == 2
    assert "already holds a run" in one_error_line(again.stderr)
    assert (tmp_path / "runs/resnet20-synthetic/checkpoint.npz").read_bytes() == kept


# -- the data a run trained on, and eval's test images ------------------------------------------
def _fake_cifar(root, seed, images=20):
    """A CIFAR-10 folder in the official format, ``images`` random images per file."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (images, 3072), dtype=np.uint8),
                 b"labels": [int(v) for v in rng.integers(0, 10, images)]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"label_names": [f"class{i}".encode() for i in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return Path(root)


@pytest.fixture(scope="module")
def cifar_run(tmp_path_factory):
    """One epoch of two on a small fake CIFAR-10 (--limit-test 8 of its 20 test images)."""
    base = tmp_path_factory.mktemp("cifar_run")
    data = _fake_cifar(base / "data", seed=0)
    config = training.default_config(model="resnet20", dataset="cifar10", data_dir=str(data),
                                     download=False, epochs=2, batch_size=25, limit_test=8,
                                     warmup_epochs=0)
    trainer = training.build_trainer(config, base / "run", progress=False)
    trainer.fit(1)
    return base, data, base / "run"


def test_resume_on_other_data_is_refused_unless_allowed(cifar_run, tmp_path):
    base, data, run = cifar_run
    shutil.copytree(run, tmp_path / "run")
    run = tmp_path / "run"
    other = tmp_path / "other"
    shutil.copytree(data, other)
    batch = pickle.loads((other / "cifar-10-batches-py/data_batch_3").read_bytes())
    batch[b"labels"] = [(label + 1) % 10 for label in batch[b"labels"]]   # same count
    (other / "cifar-10-batches-py/data_batch_3").write_bytes(pickle.dumps(batch, protocol=2))
    saved = (run / "checkpoint.npz").read_bytes()
    result = npsenet(tmp_path, "train", "--resume", run, "--data-dir", other)
    assert result.returncode == 2 and result.stdout == ""
    line = one_error_line(result.stderr)
    assert "the data changed since" in line and "the train images or labels differ" in line
    assert "--allow-data-change" in line
    assert (run / "checkpoint.npz").read_bytes() == saved
    # the same data resumes; other data with --allow-data-change too, recording it
    trainer = training.resume_trainer(run, progress=False)
    assert trainer.epoch == 1
    trainer = training.resume_trainer(run, data_dir=other, progress=False,
                                      allow_data_change=True)
    fingerprint = trainer.config["data_fingerprint"]
    assert fingerprint["train_images"] == 100 and fingerprint["test_images"] == 8


def test_a_checkpoint_without_a_fingerprint_resumes_as_before(cifar_run, tmp_path):
    _, _, run = cifar_run
    ckpt = ns.io.load_checkpoint(run / "checkpoint.npz")
    meta = dict(ckpt.meta)
    meta["config"] = {k: v for k, v in meta["config"].items() if k != "data_fingerprint"}
    ns.io.save_model(tmp_path / "checkpoint.npz", ckpt.model, extra=ckpt.extra, meta=meta)
    trainer = training.resume_trainer(tmp_path, progress=False)
    assert trainer.epoch == 1 and "data_fingerprint" not in trainer.config


def test_eval_uses_the_runs_test_images_unless_told(cifar_run, capsys):
    _, _, run = cifar_run
    path = str(run / "checkpoint.npz")
    result = npsenet(run, "eval", "--checkpoint", path)
    assert result.returncode == 0, result.stderr
    assert "(8 images)" in result.stdout                 # the run's --limit-test 8
    assert cli.main(["eval", "--checkpoint", path, "--full-test"]) == 0
    assert "(20 images)" in capsys.readouterr().out
    assert cli.main(["eval", "--checkpoint", path, "--limit-test", "4"]) == 0
    assert "(4 images)" in capsys.readouterr().out


# -- every kind of error: one line ------------------------------------------------------------
@pytest.mark.parametrize("error,status,expected", [
    (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "runs/x/checkpoint.npz"), 2,
     "runs/x/checkpoint.npz: No space left on device; free some disk space"),
    (PermissionError(errno.EACCES, os.strerror(errno.EACCES), "data/batch"), 2,
     "data/batch: Permission denied; check the file's permissions"),
    (MemoryError("Unable to allocate 9.0 GiB"), 2, "out of memory (Unable to allocate 9.0 GiB)"),
    (EOFError("Ran out of input"), 2, "a file ended before its data did (Ran out of input)"),
    (ValueError("first line\n  second line"), 2, "first line second line"),
    (pickle.UnpicklingError("pickle data was truncated"), 2,
     "a file is damaged or not in its format (UnpicklingError: pickle data was truncated)"),
    (KeyboardInterrupt(), 130, "interrupted (Ctrl-C)"),
    (KeyError("weight"), 3, "internal error, a bug in npsenet"),
])
def test_every_error_ends_in_one_line(error, status, expected, monkeypatch, capsys):
    from npsenet.cli.commands import summary

    def fail(args):
        raise error
    monkeypatch.setattr(summary, "run", fail)
    monkeypatch.delenv("NPSENET_DEBUG", raising=False)
    assert cli.main(["summary"]) == status
    line = one_error_line(capsys.readouterr().err, "summary")
    assert expected in line
    if status == 3:
        assert "KeyError: 'weight'" in line and "NPSENET_DEBUG=1" in line
    monkeypatch.setenv("NPSENET_DEBUG", "1")            # the traceback, for a bug report
    with pytest.raises(type(error)):
        cli.main(["summary"])


def test_a_huge_message_is_cut(monkeypatch, capsys):
    from npsenet.cli.commands import summary

    def fail(args):
        raise ValueError("x" * 100_000)
    monkeypatch.setattr(summary, "run", fail)
    assert cli.main(["summary"]) == 2
    line = one_error_line(capsys.readouterr().err, "summary")
    assert len(line) < 700 and line.endswith("...")


def test_bench_shows_its_progress(capsys):
    assert cli.main(["bench", "--model", "resnet20", "--batch-size", "2", "--steps", "2",
                     "--warmup", "1", "--no-torch", "--no-memory"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("bench: building resnet20")
    assert "bench: warm-up step 1/1" in err
    assert [line.split(":")[1] for line in err[2:]] == [" step 1/2", " step 2/2"]


def test_the_gpu_hint_needs_no_pypi_npsenet(monkeypatch):
    monkeypatch.setattr(ns.backend, "_CUPY_PROBLEM", "missing")
    for driver in [(12, 4), (13, 0), None]:
        monkeypatch.setattr(ns.backend, "cuda_driver_version", lambda d=driver: d)
        message = ns.backend.gpu_unavailable_message()
        assert "npsenet[gpu]" not in message and "cupy-cuda1" in message
        assert ".[gpu-cuda1" in message and "\n" not in message
