"""Checkpoints: round trip, plain NumPy archives (no pickle), atomic writes, clear errors."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

import npsenet as ns


def trained_a_little(model, rng):
    """Move BN statistics and num_batches_tracked off their initial values."""
    model(rng.standard_normal((2, 3, 8, 8)).astype(np.float32))
    return model


def test_round_trip_restores_arrays_options_meta_and_extra(tmp_path, rng):
    model = trained_a_little(ns.models.se_resnet20(num_classes=100, reduction=8, placement="pre",
                                                   se_stages=[2, 3], gate="tanh"), rng)
    path = tmp_path / "checkpoint.npz"
    momentum = {"fc.weight": rng.standard_normal((100, 64))}
    ns.io.save_model(path, model, extra=momentum, meta={"epoch": 3, "best_acc": 0.5})

    checkpoint = ns.io.load_checkpoint(path)
    loaded = checkpoint.model
    assert loaded.name == "se_resnet20"
    assert loaded.options == model.options
    assert checkpoint.meta == {"epoch": 3, "best_acc": 0.5}
    np.testing.assert_array_equal(checkpoint.extra["fc.weight"], momentum["fc.weight"])
    saved, restored = model.state_dict(), loaded.state_dict()
    assert list(saved) == list(restored)
    for key in saved:
        assert restored[key].dtype == saved[key].dtype, key
        np.testing.assert_array_equal(restored[key], saved[key], err_msg=key)
    assert int(restored["bn1.num_batches_tracked"]) == 1

    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(loaded.eval()(x), model.eval()(x))
    assert ns.io.load_model(str(path)).options == model.options


def test_plain_resnet_and_float64_round_trip(tmp_path, rng):
    model = ns.models.resnet20(num_classes=5).to(dtype=np.float64)
    ns.io.save_model(tmp_path / "r.npz", model)
    loaded = ns.io.load_model(tmp_path / "r.npz")
    assert loaded.name == "resnet20" and loaded.options == {"num_classes": 5}
    assert loaded.conv1.weight.dtype == np.float64
    np.testing.assert_array_equal(loaded.fc.weight.data, model.fc.weight.data)


def test_file_is_a_plain_numpy_archive(tmp_path):
    model = ns.models.se_resnet20()
    path = tmp_path / "checkpoint.npz"
    ns.io.save_model(path, model, meta={"epoch": 1})
    with np.load(path, allow_pickle=False) as archive:
        header = json.loads(str(archive["__npsenet__"]))
        assert archive["__npsenet__"].dtype.kind == "U"
        assert header == {"format": 1, "model": "se_resnet20", "options": model.options,
                          "meta": {"epoch": 1}}
        assert archive["layer1.0.se.fc1.weight"].shape == (1, 16)
        assert set(archive.files) == set(model.state_dict()) | {"__npsenet__"}


def test_write_is_atomic_and_replaces_the_file(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.npz"
    ns.io.save_model(path, ns.models.resnet20(), meta={"epoch": 1})
    ns.io.save_model(path, ns.models.resnet20(), meta={"epoch": 2})
    assert os.listdir(tmp_path) == ["checkpoint.npz"]
    assert ns.io.load_checkpoint(path).meta == {"epoch": 2}

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.raises(ns.io.SaveError, match="No space.*previous file is kept"):
        ns.io.save_model(path, ns.models.resnet20(), meta={"epoch": 3})
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["checkpoint.npz"]            # no temporary file left
    assert ns.io.load_checkpoint(path).meta == {"epoch": 2}      # the old file is intact


@pytest.mark.parametrize("fails", ["block", "fsync", "replace"])
def test_atomic_write_that_fails_keeps_the_old_file(tmp_path, monkeypatch, fails):
    path = tmp_path / "metrics.csv"
    path.write_bytes(b"old content")

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    if fails != "block":  # the flush to disk or the rename fails
        monkeypatch.setattr(os, fails, disk_full)
    with pytest.raises(ns.io.SaveError, match="metrics.csv.*No space"):
        with ns.io.atomic_write(path) as f:
            f.write(b"new con")
            if fails == "block":  # the writer fails half-way
                disk_full()
            f.write(b"tent")
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["metrics.csv"]              # no temporary file left
    assert path.read_bytes() == b"old content"


def test_atomic_write_replaces_the_file(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_bytes(b"old content")
    with ns.io.atomic_write(path) as f:
        f.write(b"new content")
    assert os.listdir(tmp_path) == ["metrics.csv"]
    assert path.read_bytes() == b"new content"


def test_checkpoint_permissions_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        ns.io.save_model(tmp_path / "checkpoint.npz", ns.models.resnet20())
    finally:
        os.umask(old)
    assert (tmp_path / "checkpoint.npz").stat().st_mode & 0o777 == 0o644


def test_temporary_files_of_a_killed_writer_are_removed_by_the_next_save(tmp_path):
    path = tmp_path / "checkpoint.npz"
    (tmp_path / ".checkpoint.npz.1234.deadbeef.tmp").write_bytes(b"half a checkpoint")
    (tmp_path / ".other.npz.1234.deadbeef.tmp").write_bytes(b"not ours")
    ns.io.save_model(path, ns.models.resnet20())
    assert sorted(os.listdir(tmp_path)) == [".other.npz.1234.deadbeef.tmp", "checkpoint.npz"]


def test_npz_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "weights.npz"
    np.savez(path, w=np.zeros(3))
    with pytest.raises(ValueError, match="not an npsenet checkpoint"):
        ns.io.load_model(path)


def test_truncated_and_foreign_files(tmp_path):
    path = tmp_path / "checkpoint.npz"
    ns.io.save_model(path, ns.models.resnet20())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        ns.io.load_model(path)
    text = tmp_path / "notes.npz"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a readable npsenet checkpoint"):
        ns.io.load_model(text)
    single = tmp_path / "array.npy"
    np.save(single, np.zeros(2))
    with pytest.raises(ValueError, match="single array"):
        ns.io.load_model(single)
    with pytest.raises(FileNotFoundError):
        ns.io.load_model(tmp_path / "missing.npz")


def test_unknown_model_and_missing_keys(tmp_path):
    model = ns.models.resnet20()
    header = {"format": 1, "model": "se_resnet19", "options": {}, "meta": {}}
    arrays = {k: np.asarray(v) for k, v in model.state_dict().items()}
    np.savez(tmp_path / "unknown.npz", __npsenet__=np.array(json.dumps(header)), **arrays)
    with pytest.raises(ValueError, match="unknown model 'se_resnet19'"):
        ns.io.load_model(tmp_path / "unknown.npz")

    header = {"format": 1, "model": "resnet20", "options": {"num_classes": 10}, "meta": {}}
    del arrays["fc.bias"]
    np.savez(tmp_path / "missing.npz", __npsenet__=np.array(json.dumps(header)), **arrays)
    with pytest.raises(ValueError, match="fc.bias"):
        ns.io.load_model(tmp_path / "missing.npz")


def test_save_needs_a_named_model_and_json_meta(tmp_path):
    with pytest.raises(ValueError, match="name"):
        ns.io.save_model(tmp_path / "x.npz", ns.nn.Linear(2, 3))
    with pytest.raises(ValueError, match="JSON"):
        ns.io.save_model(tmp_path / "x.npz", ns.models.resnet20(), meta={"w": np.zeros(2)})
    assert os.listdir(tmp_path) == []


def test_load_onto_each_device(tmp_path, device):
    ns.io.save_model(tmp_path / "c.npz", ns.models.se_resnet20().to(device=device))
    model = ns.io.load_model(tmp_path / "c.npz", device=device)
    assert model.device == device
