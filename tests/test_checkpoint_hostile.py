"""Hostile and damaged checkpoints, and a full disk during a save.

Each test builds its bad file itself, from a real checkpoint: a tiny run of ResNet-20 on
the synthetic dataset (one epoch of 32 images), or ``save_model`` of a small model, with
entries rewritten through ``zipfile``. It asserts the one-line error, that nothing big was
allocated, that the model or trainer is unchanged and that the files on disk are too.
"""
import errno
import io as _io
import json
import os
import shutil
import subprocess
import sys
import warnings
import zipfile

import numpy as np
import pytest
from helpers import raises_with_peak_memory

import npsenet as ns
from npsenet import train as training
from npsenet.io import CheckpointError, SaveError
from npsenet.train.checkpoint import read_run

TINY = dict(model="resnet20", dataset="synthetic", epochs=2, batch_size=16, limit_train=32,
            limit_test=16, warmup_epochs=0, lr=0.05)
STATE = "__extra__/trainer/state.npy"
HEADER = "__npsenet__.npy"
BIG = 8 * 2**20   # no failed load may allocate this much (the bombs declare 32 MB)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run's folder after one epoch (its checkpoint is the one to damage)."""
    out = tmp_path_factory.mktemp("run")
    trainer = training.build_trainer(training.default_config(**TINY), out, progress=False)
    trainer.fit(1)
    return out


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.npz"
    ns.io.save_model(path, ns.models.se_resnet20(), meta={"epoch": 1})
    return path


@pytest.fixture(scope="module")
def resumed(run_dir, tmp_path_factory):
    """A trainer resumed from a copy of the run (each test puts its checkpoint back)."""
    out = tmp_path_factory.mktemp("resumed") / "run"
    shutil.copytree(run_dir, out)
    return training.resume_trainer(out, progress=False), (out / "checkpoint.npz").read_bytes()


def npy(array, allow_pickle=False):
    buf = _io.BytesIO()
    np.lib.format.write_array(buf, np.asanyarray(array), allow_pickle=allow_pickle)
    return buf.getvalue()


def rewrite(src, dst, replace=(), drop=(), add=(), deflate=()):
    """Copy the zip ``src`` to ``dst`` with members replaced (name -> bytes), dropped or
    added; members named in ``deflate`` are compressed."""
    replace, add = dict(replace), dict(add)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout, \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")   # zipfile warns of a name added twice
        for info in zin.infolist():
            if info.filename in drop:
                continue
            data = replace.get(info.filename, None)
            data = zin.read(info) if data is None else data
            how = zipfile.ZIP_DEFLATED if info.filename in deflate else zipfile.ZIP_STORED
            zout.writestr(info.filename, data, compress_type=how)
        for name, data in add.items():
            zout.writestr(name, data)
    return dst


def edit_json(src, dst, member, change):
    """Rewrite the JSON held by ``member`` (the header or the trainer's state)."""
    with zipfile.ZipFile(src) as z:
        value = json.loads(str(np.lib.format.read_array(_io.BytesIO(z.read(member)))))
    value = change(value)
    return rewrite(src, dst, replace={member: npy(np.array(json.dumps(value)))})


def one_line_error(exc_info, path, damaged=True):
    message = str(exc_info.value)
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith(f"{path}: this checkpoint is damaged: " if damaged else str(path))
    return message


def peak_while(fn):
    """(the CheckpointError ``fn`` raised, the peak of memory traced while it ran)."""
    return raises_with_peak_memory(CheckpointError, fn)


# -- family 1: a small file that declares something big ---------------------------------------

@pytest.mark.parametrize("options, expect", [
    ({"num_classes": 20_000_000}, "num_classes must be an integer from 1 to 100,000"),
    ({"num_classes": True}, "num_classes must be an integer"),
    ({"num_classes": 10.0}, "num_classes must be an integer"),
    ({"reduction": 0}, "reduction must be an integer from 1"),
    ({"divisor": 10**9}, "divisor must be an integer"),
    ({"se_stages": list(range(1000))}, "se_stages must be a list"),
    ({"widths": [10**9] * 3}, "unknown option 'widths'"),
    ({"bias": "yes"}, "bias must be true or false"),
])
def test_model_options_are_checked_before_the_model_is_built(model_file, tmp_path, options,
                                                              expect):
    bad = edit_json(model_file, tmp_path / "bad.npz", HEADER,
                    lambda h: dict(h, options=dict(h["options"], **options)))
    info, peak = peak_while(lambda: ns.io.load_model(bad))
    assert expect in one_line_error(info, bad)
    assert peak < BIG


def test_an_array_that_inflates_far_beyond_its_file_is_refused_from_its_header(model_file,
                                                                             tmp_path):
    # 32 MB of zeros, deflated into 32 kB, in place of the classifier's weights (the same
    # check refuses 2 GB: nothing is inflated before the header is compared)
    declared = np.lib.format.header_data_from_array_1_0(np.zeros(1, np.float32))
    declared["shape"] = (8 * 2**20,)
    head = _io.BytesIO()
    np.lib.format.write_array_header_1_0(head, declared)
    bomb = tmp_path / "bomb.npz"
    rewrite(model_file, bomb, drop={"fc.weight.npy"})
    with zipfile.ZipFile(bomb, "a", compression=zipfile.ZIP_DEFLATED) as z, \
            z.open("fc.weight.npy", "w", force_zip64=True) as f:
        f.write(head.getvalue())
        zeros = bytes(2**20)
        for _ in range(32):
            f.write(zeros)
    assert bomb.stat().st_size < 2 * 2**20
    info, peak = peak_while(lambda: ns.io.load_model(bomb))
    assert "fc.weight is float32 (8388608,) in the file but se_resnet20 needs float32 (10, 64)" \
        in one_line_error(info, bomb)
    assert peak < BIG


def test_a_declared_size_that_does_not_match_the_header_is_refused(model_file, tmp_path):
    with zipfile.ZipFile(model_file) as z:
        data = z.read("fc.bias.npy")
    bad = rewrite(model_file, tmp_path / "bad.npz",
                  replace={"fc.bias.npy": data + bytes(32 * 2**20)}, deflate={"fc.bias.npy"})
    info, peak = peak_while(lambda: ns.io.load_model(bad))
    assert "'fc.bias' declares" in one_line_error(info, bad)
    assert peak < BIG


def test_a_huge_header_is_refused_before_it_is_read(model_file, tmp_path):
    text = np.array(json.dumps({"format": 1, "model": "se_resnet20", "options": {},
                                "meta": {"pad": "x"}}))
    head = np.lib.format.header_data_from_array_1_0(text)
    head["descr"] = "<U%d" % (8 * 2**20)  # 32 MB of text declared
    buf = _io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, head)
    bad = tmp_path / "bad.npz"
    rewrite(model_file, bad, drop={HEADER})
    with zipfile.ZipFile(bad, "a", compression=zipfile.ZIP_DEFLATED) as z, \
            z.open(HEADER, "w", force_zip64=True) as f:
        f.write(buf.getvalue())
        for _ in range(32):
            f.write(bytes(2**20))
    info, peak = peak_while(lambda: ns.io.load_checkpoint(bad))
    assert "the header ('__npsenet__') is not a JSON text" in one_line_error(info, bad)
    assert peak < BIG


# -- family 2: damaged and foreign files, one line each --------------------------------------

def test_pickled_objects_wrong_dtypes_and_missing_or_extra_entries(model_file, tmp_path):
    cases = {
        "pickle": ({"replace": {"fc.bias.npy": npy(np.array([{"x": 1}], dtype=object),
                                                   allow_pickle=True)}},
                   "never pickled objects"),
        "int": ({"replace": {"fc.bias.npy": npy(np.zeros(10, np.int32))}},
                "fc.bias is int32 (10,) in the file but se_resnet20 needs float32 (10,)"),
        "mixed": ({"replace": {"fc.bias.npy": npy(np.zeros(10, np.float64))}},
                  "needs float32"),
        "shape": ({"replace": {"fc.bias.npy": npy(np.zeros(11, np.float32))}},
                  "fc.bias is float32 (11,)"),
        "missing": ({"drop": {"fc.bias.npy"}}, "1 state entries missing ['fc.bias']"),
        "unexpected": ({"add": {"evil.npy": npy(np.zeros(3))}}, "1 unexpected ['evil']"),
        "not npy": ({"add": {"run.sh": b"rm -rf /"}}, "not a .npy array: 'run.sh'"),
        "twice": ({"add": {"fc.bias.npy": npy(np.zeros(10, np.float32))}},
                  "two entries named 'fc.bias.npy'"),
    }
    for name, (change, expect) in cases.items():
        bad = rewrite(model_file, tmp_path / f"{name}.npz", **change)
        with pytest.raises(CheckpointError) as info:
            ns.io.load_checkpoint(bad)
        assert expect in one_line_error(info, bad), name


def test_truncated_corrupted_and_foreign_files(model_file, tmp_path):
    data = model_file.read_bytes()
    cases = {"truncated.npz": data[: len(data) // 3], "empty.npz": b"",
             "text.npz": b"hello", "pickle.npz": b"\x80\x04\x95" + bytes(40)}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError) as info:
            ns.io.load_model(tmp_path / name)
        assert "not a readable npsenet checkpoint" in one_line_error(info, tmp_path / name,
                                                                      damaged=False)
    flipped = bytearray(data)
    at = data.index(b"conv1.weight.npy") + 200   # inside the first array's data
    flipped[at] ^= 0xFF
    (tmp_path / "crc.npz").write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError) as info:
        ns.io.load_model(tmp_path / "crc.npz")
    assert "Bad CRC-32" in one_line_error(info, tmp_path / "crc.npz")
    with pytest.raises(CheckpointError, match="is a folder"):
        ns.io.load_model(tmp_path)


def test_load_pretrained_reads_checkpoints_the_same_way(model_file, tmp_path):
    model = ns.models.se_resnet20()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    bad = rewrite(model_file, tmp_path / "bad.npz",
                  replace={"fc.bias.npy": npy(np.zeros(10, np.int64))})
    with pytest.raises(CheckpointError, match="fc.bias is int64"):
        ns.io.load_pretrained(model, bad)
    with pytest.raises(ValueError, match="dtype <U1"):
        ns.io.load_pretrained(model, dict(model.state_dict(), **{"fc.bias": np.array(["a"] * 10)}))
    for key, value in model.state_dict().items():
        assert np.array_equal(value, before[key]), key      # nothing half-loaded
    ns.io.load_pretrained(model, model_file)                   # a good one loads
    assert np.array_equal(model.state_dict()["fc.weight"],
                          ns.io.load_model(model_file).state_dict()["fc.weight"])


# -- damaged fields of a run's checkpoint ----------------------------------------------------

def _state(change):
    def changed(state):
        change(state)
        return state
    return changed


DAMAGED_STATE = {
    "state is a list": (lambda s: [s], "the trainer's state is a list"),
    "no optimizer": (_state(lambda s: s.pop("optimizer")), "lacks ['optimizer']"),
    "optimizer is a list": (_state(lambda s: s.update(optimizer=[0.1])),
                            "the optimizer's state is a list"),
    "momentum 1.5": (_state(lambda s: s["optimizer"].update(momentum=1.5)),
                     "momentum must be in [0, 1)"),
    "epoch 1e9": (_state(lambda s: s.update(epoch=1e9)), "the epoch count is 1000000000.0, "
                                                          "not an integer"),
    "epoch 10**9": (_state(lambda s: s.update(epoch=10**9)), "outside 0..100,000"),
    "epoch -1": (_state(lambda s: s.update(epoch=-1)), "the epoch count is -1"),
    "step '1'": (_state(lambda s: s.update(step_in_epoch="1")), "not an integer"),
    "step past the epoch": (_state(lambda s: s.update(step_in_epoch=3)), "outside 0..2"),
    "partial": (_state(lambda s: s.update(partial=[])), "the epoch's running sums is a list"),
    "loader position": (_state(lambda s: s["train_loader"].update(position=10**12)),
                        "the train loader's position"),
    "rng garbage": (_state(lambda s: s["train_loader"].update(rng_state={"x": 1})),
                    "not a PCG64 state"),
    "schedule": (_state(lambda s: s.update(schedule=None)), "the schedule's state is NoneType"),
}


@pytest.mark.parametrize("case", sorted(DAMAGED_STATE))
def test_a_damaged_trainer_state_is_one_line_and_changes_nothing(run_dir, tmp_path, case):
    change, expect = DAMAGED_STATE[case]
    out = tmp_path / "run"
    out.mkdir()
    ckpt = out / training.CHECKPOINT_NAME
    edit_json(run_dir / training.CHECKPOINT_NAME, ckpt, STATE, change)
    before = ckpt.read_bytes()
    with pytest.raises(CheckpointError) as info:
        training.resume_trainer(out, progress=False)
    assert expect in one_line_error(info, ckpt)
    # the run folder's lock file (npsenet.train.lock) may be left; nothing else is written
    assert ckpt.read_bytes() == before
    assert [n for n in os.listdir(out) if n != ".lock"] == [training.CHECKPOINT_NAME]


DAMAGED_ENTRIES = {
    "buffer shape": ({"__extra__/optimizer/momentum_buffer/fc.bias.npy":
                      npy(np.zeros(3, np.float32))}, "the momentum buffer of fc.bias is "
                                                     "float32 (3,), but the parameter is "
                                                     "float32 (10,)"),
    "buffer strings": ({"__extra__/optimizer/momentum_buffer/fc.bias.npy":
                        npy(np.array(["x"] * 10))}, "the momentum buffer of fc.bias is <U1"),
    "metrics ints": ({"__extra__/metrics/lr.npy": npy(np.zeros(1, np.int64))},
                     "the metrics column metrics/lr is int64"),
    "metrics rows": ({"__extra__/metrics/lr.npy": npy(np.zeros(5))},
                     "different lengths"),
    "metrics epochs": ({"__extra__/metrics/epoch.npy": npy(np.array([7.0]))},
                       "the metrics hold 1 rows with epochs [7.0]"),
}


@pytest.mark.parametrize("case", sorted(DAMAGED_ENTRIES))
def test_damaged_buffers_and_metrics_are_refused_before_reading(run_dir, tmp_path, case):
    replace, expect = DAMAGED_ENTRIES[case]
    (tmp_path / "run").mkdir()
    ckpt = rewrite(run_dir / training.CHECKPOINT_NAME,
                   tmp_path / "run" / training.CHECKPOINT_NAME, replace=replace)
    with pytest.raises(CheckpointError) as info:
        read_run(tmp_path / "run")
    assert expect in one_line_error(info, ckpt)


@pytest.mark.parametrize("change, expect", [
    (lambda m: dict(m, config=[1, 2]), "the run's configuration (meta['config']) is a list"),
    (lambda m: dict(m, config=dict(m["config"], batch_size=1)), "batch_size must be at least"),
    (lambda m: dict(m, config=dict(m["config"], momentum=-1)), "momentum must be a finite"),
    (lambda m: dict(m, config=dict(m["config"], train_images=1e9)), "not an integer"),
    (lambda m: dict(m, config={k: v for k, v in m["config"].items() if k != "lr"}),
     "lacks ['lr']"),
    (lambda m: dict(m, epoch=5), "its header says epoch 5"),
])
def test_a_config_that_fails_the_check_is_damage(run_dir, tmp_path, change, expect):
    (tmp_path / "run").mkdir()
    ckpt = edit_json(run_dir / training.CHECKPOINT_NAME,
                     tmp_path / "run" / training.CHECKPOINT_NAME, HEADER,
                     lambda h: dict(h, meta=change(h["meta"])))
    with pytest.raises(CheckpointError) as info:
        read_run(tmp_path / "run")
    assert expect in one_line_error(info, ckpt)


def test_a_failed_load_leaves_the_trainer_as_it_was(run_dir, resumed):
    trainer = resumed[0]
    snapshot = (trainer.epoch, trainer.step_in_epoch, dict(trainer.partial),
                [dict(r) for r in trainer.metrics], trainer.optimizer.lr,
                [b.copy() for b in trainer.optimizer.momentum_buffers],
                trainer.train_loader.state_dict(), trainer.schedule.state_dict())
    extra = ns.io.load_checkpoint(run_dir / training.CHECKPOINT_NAME).extra
    state = json.loads(str(extra[training.STATE_KEY]))
    state["optimizer"]["lr"] = 0.5
    state["train_loader"]["position"] = 1
    state["schedule"]["last_step"] = 1
    state["partial"]["seen"] = 10**9   # the last field checked is the bad one
    bad = dict(extra, **{training.STATE_KEY: np.array(json.dumps(state))})
    bad["optimizer/momentum_buffer/fc.bias"] = np.full(10, 7.0, np.float32)
    with pytest.raises(CheckpointError, match="the images seen this epoch"):
        trainer.load_state(bad)
    assert snapshot == (trainer.epoch, trainer.step_in_epoch, dict(trainer.partial),
                        [dict(r) for r in trainer.metrics], trainer.optimizer.lr,
                        snapshot[5], trainer.train_loader.state_dict(),
                        trainer.schedule.state_dict())
    for old, new in zip(snapshot[5], trainer.optimizer.momentum_buffers):
        assert np.array_equal(old, new)


# -- family 4: a full disk or an unwritable folder during a save ------------------------------

class _FullDisk:
    """A file whose writes fail with ENOSPC after ``room`` bytes."""

    def __init__(self, f, room):
        self.f, self.room = f, room

    def write(self, data):
        if len(data) > self.room:
            self.f.write(bytes(data)[: self.room])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.f.__exit__(*exc)


@pytest.mark.parametrize("fault", ["ENOSPC mid-write", "EDQUOT at fsync", "EROFS at rename",
                                   "EACCES at open"])
def test_a_failed_save_keeps_the_previous_checkpoint(resumed, monkeypatch, fault):
    trainer, original = resumed
    out, path = trainer.out_dir, trainer.checkpoint_path
    path.write_bytes(original)

    def fail(code):
        def raise_(*args, **kwargs):
            raise OSError(code, os.strerror(code))
        return raise_

    if fault == "ENOSPC mid-write":
        real = os.fdopen
        monkeypatch.setattr(ns.io.os, "fdopen", lambda *a, **k: _FullDisk(real(*a, **k), 4096))
    elif fault == "EDQUOT at fsync":
        monkeypatch.setattr(ns.io.os, "fsync", fail(errno.EDQUOT))
    elif fault == "EROFS at rename":
        monkeypatch.setattr(ns.io.os, "replace", fail(errno.EROFS))
    elif fault == "EACCES at open":
        monkeypatch.setattr(ns.io.os, "open", fail(errno.EACCES))
    with pytest.raises(SaveError) as info:
        trainer.save_checkpoint()
    monkeypatch.undo()
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"could not write {path} (")
    assert "the previous file is kept as it was" in message and "--out" in message
    assert f"[{fault.split()[0]}]" in message and os.strerror(info.value.errno) in message
    assert path.read_bytes() == original                            # byte for byte
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]   # no temporary file left
    trainer.save_checkpoint()                                       # space again: it saves


def test_a_folder_in_the_files_place(tmp_path):
    (tmp_path / "metrics.csv").mkdir()
    with pytest.raises(SaveError) as info:
        with ns.io.atomic_write(tmp_path / "metrics.csv") as f:
            f.write(b"epoch,lr")
    assert "Is a directory [EISDIR]" in str(info.value) and "nothing was written" in str(info.value)
    assert os.listdir(tmp_path) == ["metrics.csv"]
    with pytest.raises(SaveError, match="No such file or directory .ENOENT.*folder exists"):
        ns.io.save_model(tmp_path / "missing" / "c.npz", ns.models.resnet20())


def test_a_real_full_filesystem(tmp_path):
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1600k", "tmpfs", str(folder)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        path = folder / "checkpoint.npz"
        model = ns.models.resnet20()            # 1.1 MB: one fits, a second copy does not
        ns.io.save_model(path, model, meta={"epoch": 1})
        before = path.read_bytes()
        with pytest.raises(SaveError) as info:
            ns.io.save_model(path, model, meta={"epoch": 2})
        assert "No space left on device [ENOSPC]" in str(info.value)
        assert "free some space" in str(info.value)
        assert path.read_bytes() == before and os.listdir(folder) == ["checkpoint.npz"]
    finally:
        subprocess.run(["umount", str(folder)], check=False)


# -- through the command line -----------------------------------------------------------------

def _cli(args, cwd):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(ns.__file__)))
    return subprocess.run([sys.executable, "-m", "npsenet", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_commands_print_one_line_for_a_hostile_or_damaged_checkpoint(run_dir, model_file,
                                                                         tmp_path):
    bad = edit_json(model_file, tmp_path / "bad.npz", HEADER,
                    lambda h: dict(h, options=dict(h["options"], num_classes=20_000_000)))
    result = _cli(["eval", "--checkpoint", "bad.npz", "--dataset", "synthetic"], tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "num_classes" in result.stderr

    (tmp_path / "run").mkdir()
    ckpt = edit_json(run_dir / training.CHECKPOINT_NAME,
                     tmp_path / "run" / training.CHECKPOINT_NAME, STATE,
                     _state(lambda s: s.update(step_in_epoch=1e9)))
    before = ckpt.read_bytes()
    result = _cli(["train", "--resume", "run", "--no-progress"], tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1
    assert "this checkpoint is damaged: the step count inside the epoch" in result.stderr
    assert ckpt.read_bytes() == before
    assert bad.exists()
