"""benchmarks/gpu_check.sh without a GPU: the dry run end to end, the early stop where CuPy
sees no GPU, the report's figures and verdicts from given results, the GPU workers on the
recording stand-in for CuPy, the install extras and the error for a missing CuPy."""
import importlib.util
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from npsenet import backend

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"


def _load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


gpu_check = _load_gpu_check()


def _run(tmp_path, *flags):
    env = {**os.environ, "OUT": str(tmp_path / "out"), "PYTHON": sys.executable}
    return subprocess.run(["bash", str(SCRIPT), *flags], capture_output=True, text=True,
                          env=env, timeout=120)


def test_the_dry_run_runs_every_step_on_the_cpu_and_writes_its_report(tmp_path):
    done = _run(tmp_path, "--dry-run")
    assert done.returncode == 0, done.stdout + done.stderr
    out = tmp_path / "out"
    files = sorted(p.name for p in out.iterdir())
    assert all((out / name).is_file() for name in files) and len(files) <= 8, files
    assert "report.md" in files
    report = (out / "report.md").read_text()
    assert "(dry run)" in report and "No GPU figure" in report
    for name in gpu_check.STEP_NAMES:
        assert f"| {name} |" in report and f"[dry run] on a GPU, {name} would run" in done.stdout
    assert report.count("| ok |") == len(gpu_check.STEP_NAMES), report
    assert "not measured (dry run)" in report and " ms" not in report  # no figure at all
    bench_log = (out / "bench_train.log").read_text()
    assert "# on a GPU:" in bench_log and "bench --device gpu --model se_resnet20" in bench_log
    assert "--batch-size 128" in bench_log and '"npsenet_s"' in bench_log
    assert "pytest" in (out / "tests.log").read_text() and "-k gpu" in report + done.stdout


@pytest.mark.skipif(backend.gpu_available(), reason="CuPy sees a GPU here")
def test_without_a_gpu_the_check_stops_early_and_says_so(tmp_path):
    done = _run(tmp_path)
    assert done.returncode == 2
    report = (tmp_path / "out" / "report.md").read_text()
    assert "Stopped early: CuPy sees no GPU" in report
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["env.log", "report.md"]
    assert "stopped early" in done.stderr


def test_an_unknown_step_is_a_usage_error(tmp_path):
    done = _run(tmp_path, "--dry-run", "--only", "bench-train,warp")
    assert done.returncode == 2 and "unknown step(s) warp" in done.stderr


def _steps_with(**results):
    steps = gpu_check.make_steps(1)
    for step in steps:
        step.result = results.get(step.name.replace("-", "_"), {})
        step.status = "ok"
    return steps


def test_the_report_gives_the_figures_and_the_verdicts_on_the_targets():
    bench = dict(model="se_resnet20", batch_size=128, dtype="float32", path="fast",
                 npsenet_s=0.012, torch_s=0.010, ratio=1.2, images_per_s=10667,
                 npsenet_peak_bytes=300 * 2 ** 20, torch_peak_bytes=200 * 2 ** 20)
    epoch = dict(model="se_resnet20", batch_size=128, images=50000, eval_images=10000,
                 train_seconds=6.5, images_per_second=7692, eval_seconds=0.4, train_loss=1.2,
                 pool_peak_bytes=900 * 2 ** 20, device_used_bytes=2 ** 30,
                 device_total_bytes=2 ** 37)
    tests = dict(passed=1100, skipped=40, complete=True)
    lines, targets = gpu_check.figures(
        _steps_with(bench_train=bench, bench_eval=dict(bench, ratio=0.9), epoch=epoch,
                    tests=tests), dry=False)
    text = "\n".join(lines)
    assert "npsenet 12.0 ms" in text and "ratio 1.20x" in text and "300 MiB" in text
    assert "50,000 images" in text and "6.50 s" in text and "900 MiB" in text
    assert "1100 passed, 40 skipped" in text
    assert dict(targets) == {"training step <= 1.5x PyTorch CUDA eager": "met (1.20x)",
                             "50,000-image epoch <= 5 s": "not met (6.50 s)",
                             "GPU tests green": "met"}
    _, targets = gpu_check.figures(_steps_with(tests=dict(passed=3, failed=1, complete=True)),
                                   dry=False)
    assert dict(targets)["GPU tests green"] == "not met"
    assert dict(targets)["training step <= 1.5x PyTorch CUDA eager"] == "not measured"


def test_pytest_counts_from_the_summary_or_from_a_run_cut_short():
    finished = ("tests/a.py::t[gpu] PASSED\n"
                "FAILED tests/b.py::u[gpu] - AssertionError\n"
                "===== 1 failed, 7 passed, 2 skipped, 900 deselected, 1 error in 12.3s =====\n")
    assert gpu_check.pytest_counts(finished) == dict(failed=1, passed=7, skipped=2,
                                                      deselected=900, errors=1, complete=True)
    assert gpu_check.failing_tests(finished) == ["tests/b.py::u[gpu]"]
    cut = "[gw0] PASSED tests/a.py::t[gpu]\n[gw1] PASSED tests/a.py::v[gpu]\n" \
          "[gw0] FAILED tests/b.py::u[gpu]\n"
    assert gpu_check.pytest_counts(cut) == dict(passed=2, failed=1, complete=False)


@pytest.fixture
def stand_in_gpu(monkeypatch):
    from test_device_transfers import FakeCupy
    monkeypatch.setattr(backend, "_cupy", FakeCupy())


def _worker_args(**overrides):
    args = dict(device="gpu", model="resnet20", images=16, eval_images=8, batch_size=8,
                warmup_steps=1, profile_steps=1)
    args.update(overrides)
    return types.SimpleNamespace(**args)


def test_the_gpu_workers_run_on_a_stand_in_gpu(stand_in_gpu, capsys):
    env = gpu_check.measure_env(_worker_args())
    assert env["gpu_usable"] and env["gpu"] == "stand-in GPU (x1)"
    assert env["cuda_runtime"] == "13.0" and "MiB free" in env["gpu_memory"]
    epoch = gpu_check.measure_epoch(_worker_args())
    assert epoch["device"] == "gpu" and epoch["images"] == 16 and epoch["train_seconds"] > 0
    assert epoch["metrics_every"] == 25 and "pool_peak_bytes" in epoch
    assert gpu_check.measure_profile(_worker_args(batch_size=2))["step_ms_profiled"] > 0
    assert "per step under the profiler" in capsys.readouterr().out


def test_the_extras_name_a_cupy_wheel_for_each_cuda_line():
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert [r.split(">")[0] for r in extras["gpu-cuda12"]] == ["cupy-cuda12x"]
    assert [r.split(">")[0] for r in extras["gpu-cuda13"]] == ["cupy-cuda13x"]
    assert extras["gpu"] == extras["gpu-cuda12"]


@pytest.mark.parametrize("driver, extra", [((12, 4), "gpu-cuda12"), ((13, 0), "gpu-cuda13")])
def test_a_missing_cupy_names_the_extra_of_the_drivers_cuda(monkeypatch, driver, extra):
    monkeypatch.setattr(backend, "_CUPY_PROBLEM", "missing")
    monkeypatch.setattr(backend, "cuda_driver_version", lambda: driver)
    message = backend.gpu_unavailable_message()
    assert f'pip install -e ".[{extra}]"' in message and "from a clone" in message
    assert "not on PyPI" in message and "\n" not in message


def test_without_a_driver_the_message_says_how_to_choose(monkeypatch):
    monkeypatch.setattr(backend, "_CUPY_PROBLEM", "missing")
    monkeypatch.setattr(backend, "cuda_driver_version", lambda: None)
    message = backend.gpu_unavailable_message()
    assert "gpu-cuda12" in message and "gpu-cuda13" in message and "nvidia-smi" in message


def test_cupy_without_a_gpu_is_told_apart_from_a_missing_cupy(monkeypatch):
    monkeypatch.setattr(backend, "_CUPY_PROBLEM", "CUDARuntimeError: no CUDA-capable device")
    message = backend.gpu_unavailable_message()
    assert "CuPy is installed but cannot use one" in message and "no CUDA-capable" in message
    if not backend.gpu_available():
        with pytest.raises(RuntimeError, match="CuPy is installed but cannot use one"):
            backend.normalize_device("gpu")
