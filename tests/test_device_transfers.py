"""What crosses between host and device while training, counted on the CPU.

A stand-in for CuPy (:class:`FakeCupy`) holds "device" arrays as a NumPy subclass,
:class:`DeviceArray`. Everything stays NumPy underneath, but every way a value reaches
the host (``float()``, ``int()``, ``bool()``, ``.item()``, ``.tolist()``, ``asnumpy``)
and every host array that goes up (``asarray``/``array`` of a NumPy array) is recorded
with the line that caused it, and, as CuPy would, a ufunc refuses a host array mixed with
device arrays. Installed as ``npsenet.backend``'s CuPy, it runs the ``device="gpu"`` code
on any machine, so these tests check that an epoch moves only its batches up and its
metrics down, without a GPU.
"""
import math
import traceback
import types
from pathlib import Path

import numpy as np
import pytest

import npsenet as ns
from npsenet import backend
from npsenet import train as training
from npsenet.train import faults

HERE = Path(__file__).resolve()
PACKAGE = Path(ns.__file__).resolve().parent


class Transfers:
    """The recorded copies: (direction "up" or "down", file, line) in order."""

    def __init__(self):
        self.events = []

    def record(self, direction):
        for frame in reversed(traceback.extract_stack()[:-2]):
            if Path(frame.filename).resolve() != HERE:
                self.events.append((direction, frame.filename, frame.lineno))
                return

    def clear(self):
        self.events.clear()

    def count(self, direction, *, inside=None, outside=None):
        """How many copies went ``direction``, optionally only from (or not from) a folder
        of the package such as "nn"."""
        def keep(filename):
            path = Path(filename).resolve()
            if inside is not None and not path.is_relative_to(PACKAGE / inside):
                return False
            return outside is None or not path.is_relative_to(PACKAGE / outside)
        return sum(1 for d, f, _ in self.events if d == direction and keep(f))

    def lines(self):
        return [f"{d} {Path(f).name}:{n}" for d, f, n in self.events]


TRANSFERS = Transfers()


class DeviceArray(np.ndarray):
    """A NumPy array standing for a GPU array: reading it on the host is a recorded copy."""

    def _host(self):
        return self.view(np.ndarray)

    def __float__(self):
        TRANSFERS.record("down")
        return float(self._host())

    def __int__(self):
        TRANSFERS.record("down")
        return int(self._host())

    def __index__(self):
        TRANSFERS.record("down")
        return self._host().__index__()

    def __bool__(self):
        TRANSFERS.record("down")
        return bool(self._host())

    def item(self, *args):
        TRANSFERS.record("down")
        return self._host().item(*args)

    def tolist(self):
        TRANSFERS.record("down")
        return self._host().tolist()

    def get(self):
        TRANSFERS.record("down")
        return self._host().copy()

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        for value in inputs:
            if type(value) is np.ndarray and value.ndim > 0:
                raise TypeError(f"{ufunc.__name__}: a host array mixed with device arrays "
                                "(CuPy raises here too)")
        inputs = [v._host() if isinstance(v, DeviceArray) else v for v in inputs]
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = tuple(o._host() if isinstance(o, DeviceArray) else o for o in out)
        result = getattr(ufunc, method)(*inputs, **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return on_device(result)

    def __array_function__(self, func, types_, args, kwargs):
        return on_device(super().__array_function__(func, types_, args, kwargs))


def on_device(result):
    """NumPy results as device arrays (0-d arrays for scalars, as CuPy's reductions give)."""
    if isinstance(result, DeviceArray):
        return result
    if isinstance(result, np.ndarray):
        return result.view(DeviceArray)
    if isinstance(result, np.generic):
        return np.asarray(result).view(DeviceArray)
    if isinstance(result, (tuple, list)):
        return type(result)(on_device(r) for r in result)
    return result


class DeviceNamespace(types.ModuleType):
    """NumPy's functions (and submodules') with their array results on the device."""

    def __init__(self, name, inner):
        super().__init__(name)
        self._inner = inner

    def __getattr__(self, name):
        attr = getattr(self._inner, name)
        if isinstance(attr, types.ModuleType):
            return DeviceNamespace(name, attr)
        if callable(attr) and not isinstance(attr, type):
            return lambda *args, **kwargs: on_device(attr(*args, **kwargs))
        return attr


class FakeCupy(DeviceNamespace):
    """The parts of CuPy that npsenet uses, over NumPy, with every copy recorded."""

    ndarray = DeviceArray

    def __init__(self):
        super().__init__("cupy", np)

    def asarray(self, x, dtype=None):
        if isinstance(x, DeviceArray):
            return x if dtype is None else x.astype(dtype, copy=False)
        TRANSFERS.record("up")
        return np.array(x, dtype=dtype).view(DeviceArray)

    def array(self, x, dtype=None, copy=True):
        if not isinstance(x, DeviceArray):
            TRANSFERS.record("up")
        return np.array(x, dtype=dtype).view(DeviceArray)

    def asnumpy(self, x):
        if not isinstance(x, DeviceArray):
            return np.asarray(x)
        TRANSFERS.record("down")
        return x._host().copy()

    def get_array_module(self, *arrays):
        return self if any(isinstance(a, DeviceArray) for a in arrays) else np

    def get_default_memory_pool(self):
        return FakeMemoryPool()


class FakeMemoryPool:
    """CuPy's memory pool, as far as npsenet and the GPU check ask it (no real figures)."""

    def used_bytes(self):
        return 0

    def total_bytes(self):
        return 0

    def free_all_blocks(self):
        pass


class FakeRuntime:
    """cupy.cuda.runtime: one device, CUDA 13."""

    def getDeviceCount(self):  # noqa: N802 (CuPy's names)
        return 1

    def getDeviceProperties(self, index):  # noqa: N802
        return {"name": b"stand-in GPU"}

    def memGetInfo(self):  # noqa: N802
        return 1 << 30, 1 << 32

    def runtimeGetVersion(self):  # noqa: N802
        return 13000

    def driverGetVersion(self):  # noqa: N802
        return 13000


class FakeStream:
    def synchronize(self):
        pass


FakeCupy.cuda = types.SimpleNamespace(runtime=FakeRuntime(), get_current_stream=FakeStream)


@pytest.fixture
def fake_gpu(monkeypatch):
    """npsenet's "gpu" device is FakeCupy for the test; the recorded copies start empty."""
    monkeypatch.setattr(backend, "_cupy", FakeCupy())
    TRANSFERS.clear()
    yield TRANSFERS
    TRANSFERS.clear()


def _loader(device, augment=True, keep_on_device=True, count=40, batch_size=16, **options):
    data = ns.data.SyntheticCIFAR(num_samples=count, seed=5)
    return ns.data.BatchLoader(data.images, data.labels, batch_size, shuffle=True,
                               augment=augment, normalize=ns.data.Normalize([0.5] * 3, [0.25] * 3),
                               seed=3, device=device, keep_on_device=keep_on_device, **options)


# ------------------------------------------------------------------------- the loader

@pytest.mark.parametrize("augment", [True, False])
def test_batches_made_on_the_device_are_the_host_batches(fake_gpu, augment):
    on_gpu, on_cpu = _loader("gpu", augment), _loader("cpu", augment)
    assert on_gpu.on_device and not on_cpu.on_device
    for _ in range(2):  # two epochs: new orders and new crops
        for (x, y), (x_cpu, y_cpu) in zip(on_gpu, on_cpu, strict=True):
            assert isinstance(x, DeviceArray) and isinstance(y, DeviceArray)
            assert x.dtype == np.float32 and y.dtype == np.int64 and x.flags.c_contiguous
            np.testing.assert_array_equal(x._host(), x_cpu)
            np.testing.assert_array_equal(y._host(), y_cpu)


def test_an_epoch_on_the_device_sends_one_small_array_per_batch(fake_gpu):
    loader = _loader("gpu")
    list(loader)
    # once: the images and labels, the normalisation's mean and std; then one per batch
    assert fake_gpu.count("up") == 4 + len(loader), fake_gpu.lines()
    assert fake_gpu.count("down") == 0, fake_gpu.lines()
    fake_gpu.clear()
    list(loader)
    assert fake_gpu.count("up") == len(loader) and fake_gpu.count("down") == 0


@pytest.mark.parametrize("options", [dict(keep_on_device=False),
                                     dict(augment=lambda images, rng: images)])
def test_batches_made_on_the_host_copy_each_finished_batch(fake_gpu, options):
    loader = _loader("gpu", **options)
    assert not loader.on_device
    batches = list(loader)
    assert isinstance(batches[0][0], DeviceArray)
    assert fake_gpu.count("up") == 2 * len(loader) and fake_gpu.count("down") == 0


def test_crop_and_flip_on_the_device_matches_the_host(fake_gpu):
    images = np.random.default_rng(0).integers(0, 256, (12, 3, 8, 8)).astype(np.uint8)
    offsets = ns.data.transforms.crop_offsets(12, 2, np.random.default_rng(1))
    flips = ns.data.transforms.flip_draws(12, np.random.default_rng(2))
    on_device = ns.data.crop_and_flip(backend.to_device(images, "gpu"), offsets, flips, 2)
    assert isinstance(on_device, DeviceArray)
    np.testing.assert_array_equal(on_device._host(),
                                  ns.data.crop_and_flip(images, offsets, flips, 2))


# ---------------------------------------------------------------------- the training loop

TINY = dict(model="se_resnet20", dataset="synthetic", epochs=1, batch_size=8, limit_train=24,
            limit_test=16, eval_batch_size=8, warmup_epochs=0)


def _trainer(tmp_path, device, metrics_every=None):
    config = training.default_config(**TINY, device=device)
    trainer = training.build_trainer(config, tmp_path, progress=False)
    trainer.metrics_every = metrics_every
    return trainer


def _train_one_epoch(trainer):
    with faults.StopOnSignals() as stop:
        trainer._train_epoch(1, stop)


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "plain"])
def test_a_training_epoch_moves_its_batches_up_and_one_array_per_interval_down(
        fake_gpu, tmp_path, fast):
    with ns.nn.fast(fast):
        trainer = _trainer(tmp_path, "gpu", metrics_every=2)
        steps = len(trainer.train_loader)
        fake_gpu.clear()
        _train_one_epoch(trainer)
    assert trainer.step_in_epoch == steps == 3 and trainer.partial["seen"] == 24
    assert isinstance(trainer.model.parameters()[0].data, DeviceArray)
    # outside the layers: the dataset and the normalisation's statistics once, then one
    # small array per batch up, and one array of metrics down every two steps (and at the
    # end of the epoch)
    assert fake_gpu.count("up") == 4 + steps, fake_gpu.lines()
    assert fake_gpu.count("down", outside="nn") == math.ceil(steps / 2), fake_gpu.lines()


def test_no_layer_reads_a_number_from_the_device_during_an_epoch(fake_gpu, tmp_path):
    trainer = _trainer(tmp_path, "gpu")
    fake_gpu.clear()
    _train_one_epoch(trainer)
    assert fake_gpu.count("down", inside="nn") == 0, fake_gpu.lines()


def test_evaluation_brings_its_figures_down_once(fake_gpu, tmp_path):
    trainer = _trainer(tmp_path, "gpu")
    fake_gpu.clear()
    loss, accuracy = training.evaluate(trainer.model, trainer.test_loader, trainer.loss_fn)
    assert isinstance(loss, float) and 0.0 <= accuracy <= 1.0
    assert fake_gpu.count("down", outside="nn") == 1, fake_gpu.lines()


def test_a_whole_run_on_the_device_writes_its_checkpoint(fake_gpu, tmp_path):
    trainer = _trainer(tmp_path, "gpu")
    [row] = trainer.fit()
    assert math.isfinite(row["train_loss"]) and row["images_per_second"] > 0
    model = ns.io.load_model(tmp_path / "checkpoint.npz")
    assert type(model.parameters()[0].data) is np.ndarray


def test_the_figures_do_not_depend_on_how_often_they_are_read(fake_gpu, tmp_path):
    rows = []
    for every in (1, 2):
        trainer = _trainer(tmp_path / str(every), "gpu", metrics_every=every)
        _train_one_epoch(trainer)
        rows.append({k: trainer.partial[k] for k in ("loss_sum", "correct", "seen")})
    assert rows[0] == rows[1]
    assert isinstance(rows[0]["correct"], int) and isinstance(rows[0]["loss_sum"], float)


def test_a_nan_loss_is_reported_at_its_own_step_when_read_later(fake_gpu, tmp_path):
    trainer = _trainer(tmp_path, "gpu", metrics_every=4)
    step, calls = trainer._train_step, []

    def nan_at_the_second_step(x, y):
        loss, correct = step(x, y)
        calls.append(1)
        return (loss * np.float32("nan") if len(calls) == 2 else loss), correct

    trainer._train_step = nan_at_the_second_step
    with pytest.raises(training.TrainingDiverged, match="at epoch 1, step 2/3"):
        _train_one_epoch(trainer)
    assert len(calls) == 3  # noticed when the epoch's metrics were read, after its last step


def test_metrics_every_must_be_a_positive_integer(tmp_path):
    t = _trainer(tmp_path, "cpu")
    for bad in (0, 2.5):
        with pytest.raises(ValueError, match="metrics_every must be a positive integer"):
            training.Trainer(t.model, t.optimizer, None, t.loss_fn, t.train_loader,
                             t.test_loader, tmp_path, metrics_every=bad)
