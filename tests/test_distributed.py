"""Data-parallel training: SyncBN's backward (N ranks simulated in one process), the
sharding arithmetic, the NCCL pieces that run without a GPU, and with 2 MPI processes on
loopback: one step of 2 x 64 = one step of 1 x 128, bit-identical ranks after an epoch, a
dead rank, SIGTERM to the launcher and the resume."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import wait_for_file

import npsenet as ns
from npsenet import distributed
from npsenet.distributed import ThreadGroup, shard_bounds
from npsenet.distributed.nccl import Watchdog, exchange_nccl_id
from npsenet.nn.functional import batchnorm_backward, batchnorm_forward
from npsenet.nn.fast.layout import channels_last
from npsenet.nn.functional.sync_batchnorm import (sync_batchnorm_backward,
                                                  sync_batchnorm_forward)
from npsenet.nn.sync_batchnorm import SyncBatchNorm

WORKER = Path(__file__).with_name("distributed_worker.py")
ROOT = Path(__file__).resolve().parents[1]


# -- in one process --------------------------------------------------------------------------
def _sync_bn_pass(x, gamma, beta, dy, size, pairs=None):
    """SyncBN forward and backward with the batch split over ``size`` simulated ranks, on
    the plain pair (or ``pairs``: the fast path's ops); returns y, dx (re-joined), and
    dgamma, dbeta summed over the ranks."""
    group = ThreadGroup(size)
    forward = pairs.sync_batchnorm_forward if pairs else sync_batchnorm_forward
    backward = pairs.sync_batchnorm_backward if pairs else sync_batchnorm_backward

    def rank(comm):
        lo, hi = shard_bounds(len(x), comm.rank, size)
        shard, dy_shard = x[lo:hi], dy[lo:hi]
        if pairs:   # as in a network on the fast path: channels-last memory
            shard, dy_shard = channels_last(shard), channels_last(dy_shard)
        y, mu, var, count, cache = forward(shard, gamma, beta, 1e-5, comm)
        dx, dgamma, dbeta = backward(dy_shard, cache)
        return y, dx, dgamma, dbeta, count

    parts = group.run(rank)
    assert all(p[4] == x.shape[0] * x.shape[2] * x.shape[3] for p in parts)
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
            sum(p[2] for p in parts), sum(p[3] for p in parts))


def test_sync_bn_over_simulated_ranks_is_batch_norm_over_the_whole_batch():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (7, 4, 3, 5))       # 7 images: shards of 3 and 4
    gamma, beta = rng.normal(size=4), rng.normal(size=4)
    dy = rng.normal(size=x.shape)
    y_ref, _, _, cache = batchnorm_forward(x, gamma, beta, 1e-5)
    dx_ref, dgamma_ref, dbeta_ref = batchnorm_backward(dy, cache)
    y, dx, dgamma, dbeta = _sync_bn_pass(x, gamma, beta, dy, 2)
    for got, want in ((y, y_ref), (dx, dx_ref), (dgamma, dgamma_ref), (dbeta, dbeta_ref)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
@pytest.mark.parametrize("size", [1, 2, 3])
@pytest.mark.parametrize("mean", [3.0, 1e4], ids=["mean3", "mean1e4"])
def test_the_fast_sync_bn_pair_is_the_plain_one_and_batch_norm_on_the_whole_batch(
        dtype, tol, size, mean):
    """The fast path's pair (fast/elementwise.py: per-rank two-pass sums, combined in
    float64) gives the plain pair's numbers and batch norm's on the whole batch, also for a
    channel whose mean is 10,000 times its spread (where float32 sums of x and x^2 lose it)."""
    import npsenet.nn.fast.ops as fast_ops
    if mean > 100 and dtype == np.float64:
        tol = 1e-10     # x - mu at 1e4 has 4 fewer digits than at 3, whoever computes it
    rng = np.random.default_rng(5)
    x = rng.normal(mean, 1.0, (7, 16, 4, 6)).astype(dtype)
    gamma, beta = rng.normal(size=16).astype(dtype), rng.normal(size=16).astype(dtype)
    dy = rng.normal(size=x.shape).astype(dtype)
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    y_ref, _, _, cache = batchnorm_forward(x64, gamma.astype(np.float64),
                                           beta.astype(np.float64), 1e-5)
    refs = (y_ref, *batchnorm_backward(dy64, cache))
    fast = _sync_bn_pass(x, gamma, beta, dy, size, pairs=fast_ops)
    plain = _sync_bn_pass(x, gamma, beta, dy, size)
    for got, want in zip(fast, refs):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())
    if mean < 100:   # at 1e4 the plain pair's S2/M - mu^2 is the less accurate of the two
        for got, want in zip(fast, plain):
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


def test_sync_bn_backward_matches_numerical_gradients_over_two_ranks():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 3, 2, 3))
    gamma, beta = rng.normal(size=3), rng.normal(size=3)
    weights = rng.normal(size=x.shape)          # L = sum(weights * y)
    _, dx, dgamma, _ = _sync_bn_pass(x, gamma, beta, weights, 2)

    def loss(x_, gamma_):
        return float((weights * _sync_bn_pass(x_, gamma_, beta, weights, 2)[0]).sum())

    eps = 1e-6
    for index in [(0, 0, 0, 0), (1, 2, 1, 2), (3, 1, 0, 1), (2, 0, 1, 0)]:
        plus, minus = x.copy(), x.copy()
        plus[index] += eps
        minus[index] -= eps
        numeric = (loss(plus, gamma) - loss(minus, gamma)) / (2 * eps)
        assert abs(numeric - dx[index]) < 1e-6 * max(1.0, abs(numeric))
    for c in range(3):
        plus, minus = gamma.copy(), gamma.copy()
        plus[c] += eps
        minus[c] -= eps
        numeric = (loss(x, plus) - loss(x, minus)) / (2 * eps)
        assert abs(numeric - dgamma[c]) < 1e-6 * max(1.0, abs(numeric))


def test_sync_batchnorm_layer_keeps_batchnorm_keys_and_running_statistics():
    ns.manual_seed(0)
    model = ns.models.resnet20(num_classes=10)
    keys = list(model.state_dict())
    SyncBatchNorm.convert(model, ThreadGroup(1).comms[0])
    assert list(model.state_dict()) == keys
    assert sum(isinstance(m, SyncBatchNorm) for m in model.modules()) > 0
    layer = SyncBatchNorm(3, comm=None).to(dtype=np.float64)
    reference = ns.nn.BatchNorm2d(3).to(dtype=np.float64)
    x = np.random.default_rng(2).normal(size=(4, 3, 2, 2))
    np.testing.assert_array_equal(layer(x), reference(x))
    np.testing.assert_array_equal(layer.running_var, reference.running_var)


def test_shard_bounds_cover_the_batch_and_differ_by_at_most_one():
    for count in (7, 64, 129):
        for size in (1, 2, 3, 4):
            bounds = [shard_bounds(count, r, size) for r in range(size)]
            assert bounds[0][0] == 0 and bounds[-1][1] == count
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
            lengths = [hi - lo for lo, hi in bounds]
            assert max(lengths) - min(lengths) <= 1


def _mirror(images, rng):
    """A custom augmentation (its draws cannot be split between ranks)."""
    return np.where(rng.random(len(images))[:, None, None, None] < 0.5,
                    images[..., ::-1], images)


@pytest.mark.parametrize("augment", [True, False, _mirror], ids=["standard", "none", "custom"])
@pytest.mark.parametrize("normalize", [None, ns.data.Normalize((120.0, 110.0, 100.0),
                                                               (60.0, 61.0, 62.0))],
                         ids=["scale", "normalize"])
@pytest.mark.parametrize("size,train", [(2, True), (3, True), (3, False)])
def test_each_rank_makes_only_its_shard_and_the_shards_are_the_whole_batch(
        augment, normalize, size, train):
    """Every rank makes only its rows of each batch (ShardedLoader over
    BatchLoader.batch_rows), with the whole batch's draws: bit for bit one process's
    batches, over two epochs; a last batch smaller than the ranks is skipped in training."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (21, 3, 8, 8), dtype=np.uint8)   # batches 10, 10, 1
    labels = rng.integers(0, 10, 21)

    def loader():
        return ns.data.BatchLoader(images, labels, 10, shuffle=True, augment=augment,
                                   normalize=normalize, seed=3)

    whole, ranks = loader(), [distributed.ShardedLoader(loader(), r, size, train)
                              for r in range(size)]
    for _ in range(2):
        batches = [b for b in whole if not (train and len(b[1]) < size)]
        assert len(batches) == (2 if train else 3)
        for r, rank in enumerate(ranks):
            shards = list(rank)
            mine = [(x[lo:hi], y[lo:hi]) for x, y in batches
                    for lo, hi in [shard_bounds(len(y), r, size)] if hi > lo]
            assert len(shards) == len(mine) and (not train or len(rank) == len(mine))
            for (x, y), (x_ref, y_ref) in zip(shards, mine):
                assert np.array_equal(x, x_ref) and np.array_equal(y, y_ref)


def test_a_simulated_rank_that_never_comes_times_out_with_one_line():
    group = ThreadGroup(2, timeout=0.2)
    with pytest.raises(distributed.CollectiveTimeout, match="rank 0 of 2: the all-reduce"):
        group.comms[0].allreduce_sum(np.ones(3))


def test_the_collective_timeout_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv(distributed.TIMEOUT_VARIABLE, "2.5")
    assert distributed.collective_timeout() == 2.5
    monkeypatch.setenv(distributed.TIMEOUT_VARIABLE, "soon")
    with pytest.raises(distributed.DistributedError, match="positive number of seconds"):
        distributed.collective_timeout()


def test_the_nccl_id_made_on_rank_0_reaches_every_rank():
    group, made = ThreadGroup(3), []

    def make():
        made.append(1)
        return tuple(range(128))

    ids = group.run(lambda comm: exchange_nccl_id(comm, make))
    assert ids == [tuple(range(128))] * 3 and made == [1]


def test_two_ranks_on_one_gpu_are_refused_in_one_line_before_nccl_is_asked():
    from npsenet.distributed.nccl import check_one_gpu_per_rank

    def ranks(identities):
        def rank(comm):          # each rank's own outcome: None, or its error's message
            try:
                return check_one_gpu_per_rank(comm, identities[comm.rank])
            except distributed.DistributedError as exc:
                return str(exc)
        return ThreadGroup(len(identities)).run(rank)

    assert ranks([("a", "0000:01:00.0"), ("a", "0000:02:00.0"), ("b", "0000:01:00.0")]) == \
        [None] * 3
    shared = ranks([("a", "0000:01:00.0"), ("a", "0000:01:00.0"), ("a", "0000:02:00.0")])
    assert shared[2] is None and shared[0] == shared[1]
    assert shared[0].startswith("ranks 0 and 1 would share one GPU (0000:01:00.0 on a)")
    assert "this machine gives the ranks 2 GPUs: use --nproc 2 or fewer" in shared[0]


def test_the_nccl_watchdog_reports_a_collective_that_never_finishes():
    class Event:
        done = False

    reported, finished = [], Event()
    finished.done = True
    comm = ThreadGroup(2).comms[1]
    dog = Watchdog(comm, 0.1, reported.append, poll=0.01)
    dog.watch(finished, "broadcast")
    dog.watch(Event(), "all-reduce of the gradients (step 3)")
    deadline = time.monotonic() + 5
    while not reported and time.monotonic() < deadline:
        time.sleep(0.01)
    dog.close()
    assert len(reported) == 1 and "rank 1 of 2: the all-reduce of the gradients (step 3)" \
        in reported[0]


def test_the_launcher_command_drops_nproc_and_sets_threads():
    from npsenet.distributed.launch import command, rank_environment, without_nproc
    argv = without_nproc(["train", "--nproc", "2", "--epochs", "1", "--nproc=3", "--sync-bn"])
    assert argv == ["train", "--epochs", "1", "--sync-bn"]
    cmd = command(argv, 2, mpiexec="mpiexec", python="py")
    assert cmd == ["mpiexec", "-n", "2", "py", "-m", "npsenet", "train", "--epochs", "1",
                   "--sync-bn"]
    env = rank_environment(2, environ={"OMP_NUM_THREADS": "4"})
    assert env["OMP_NUM_THREADS"] == "4" and int(env["OPENBLAS_NUM_THREADS"]) >= 1


# -- 2 processes on loopback ------------------------------------------------------------------
def _mpiexec():
    pytest.importorskip("mpi4py")
    beside = Path(sys.executable).parent / "mpiexec"
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    if not found:
        pytest.skip("mpiexec is not installed")
    return found


def _env(tmp_path, **extra):
    import os
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1", MPLBACKEND="Agg",
               **extra)
    env.setdefault(distributed.TIMEOUT_VARIABLE, "60")
    return env


def _ranks(tmp_path, *args, timeout=120, flags=(), **env):
    cmd = [_mpiexec(), "-n", "2", *flags, sys.executable, str(WORKER), *map(str, args)]
    return subprocess.run(cmd, env=_env(tmp_path, **env), capture_output=True, text=True,
                          timeout=timeout, cwd=tmp_path)


def test_one_step_of_2_x_64_with_sync_bn_is_one_step_of_1_x_128(tmp_path):
    out = tmp_path / "step.npz"
    proc = _ranks(tmp_path, "step", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sys.path.insert(0, str(WORKER.parent))
    try:
        import distributed_worker as worker
    finally:
        sys.path.pop(0)
    saved = np.load(out)
    assert len(set(saved["digests"].tolist())) == 1      # both ranks hold the same arrays
    results = {(variant, dtype): worker.one_step(None, dtype, variant)
               for variant, dtype in worker.VARIANTS}

    def stacked(kind, variant, dtype, source=None):
        """Every gradient (or floating state array) of one step, as one float64 vector."""
        arrays = results[variant, dtype][1 if kind == "grad" else 2]
        key = worker.variant_key(variant, dtype)
        return np.concatenate([
            (arrays[name] if source is None else source[f"{key}/{kind}/{name}"])
            .astype(np.float64).ravel() for name in sorted(arrays)
            if arrays[name].dtype.kind == "f"])

    for kind in ("grad", "state"):
        for variant in ("relu", "smooth"):
            # float64: 2 x 64 is 1 x 128 to 1e-12
            want64 = stacked(kind, variant, np.float64)
            got64 = stacked(kind, variant, np.float64, saved)
            assert np.abs(got64 - want64).max() <= 1e-12 * np.abs(want64).max(), (kind, variant)
            want32 = stacked(kind, variant, np.float32)
            got32 = stacked(kind, variant, np.float32, saved)
            if variant == "smooth":
                # float32: 2 x 64 is as close to 1 x 128 as float32 itself is to float64.
                # Only without kinks: with ReLU, an activation within float32 round-off of 0
                # can fall on the other side of 0 in one float32 computation and not in the
                # other, and its gradient then passes in one and not the other (seen: 1 of
                # 262,144 activations of one layer, which moved the gradients below it by
                # 1e-3, 5x the round-off of the rest)
                round_off = np.linalg.norm(want32 - want64)
                assert np.linalg.norm(got32 - want32) <= 3 * round_off, (kind, variant)
            # with or without kinks, float32 stays near float64
            assert np.linalg.norm(got32 - want64) <= 1e-2 * np.linalg.norm(want64), (kind, variant)
    for variant, dtype in worker.VARIANTS:
        loss = results[variant, dtype][0]
        saved_loss = float(saved[f"{worker.variant_key(variant, dtype)}/loss"])
        assert abs(saved_loss - loss) <= 1e-5 * loss, (variant, dtype)
    steps = results["relu", np.float32][2]["bn1.num_batches_tracked"]
    np.testing.assert_array_equal(saved["float32/state/bn1.num_batches_tracked"], steps)


def test_after_an_epoch_every_rank_holds_bit_identical_weights(tmp_path):
    out = tmp_path / "epoch.json"
    proc = _ranks(tmp_path, "epoch", out, tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert len(result["digests"]) == 2 and len(set(result["digests"])) == 1
    assert result["steps"] == 4 and len(result["metrics"]) == 1  # 136 images, batch 35
    assert (tmp_path / "run" / "checkpoint.npz").exists()


def test_a_rank_that_dies_makes_the_other_stop_with_one_line(tmp_path):
    version = subprocess.run([_mpiexec(), "--version"], capture_output=True, text=True)
    if "HYDRA" not in version.stdout + version.stderr:
        pytest.skip("keeping the surviving rank alive needs MPICH's -disable-auto-cleanup")
    started = time.monotonic()
    proc = _ranks(tmp_path, "die", flags=("-disable-auto-cleanup",), timeout=60,
                  **{distributed.TIMEOUT_VARIABLE: "2"})
    assert time.monotonic() - started < 50
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if "npsenet: error:" in line]
    assert len(lines) == 1, proc.stderr
    assert "rank 0 of 2: the all-reduce of the gradients (step 1) got no answer" in lines[0]
    assert "Traceback" not in proc.stderr


TRAIN = ["train", "--model", "resnet20", "--dataset", "synthetic", "--epochs", "2",
         "--batch-size", "32", "--limit-train", "64", "--limit-test", "32",
         "--warmup-epochs", "0", "--no-progress"]


def test_sigterm_to_the_launcher_saves_one_checkpoint_and_resume_continues(tmp_path):
    _mpiexec()
    out, env = tmp_path / "run", _env(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "npsenet", *TRAIN, "--nproc", "2",
                             "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    wait_for_file(proc, out / "checkpoint.npz", 120)
    proc.send_signal(signal.SIGTERM)
    printed, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err.count("stopped by SIGTERM") == 1 and f"--resume {out} --nproc 2" in err
    assert "Traceback" not in err
    ckpt = ns.io.load_checkpoint(out / "checkpoint.npz")
    assert ckpt.meta["epoch"] < 2 and ckpt.meta["config"]["nproc"] == 2

    wrong = subprocess.run([sys.executable, "-m", "npsenet", "train", "--resume", str(out)],
                           capture_output=True, text=True, env=env, timeout=120)
    assert wrong.returncode == 2 and "resume it with --nproc 2" in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1

    proc = subprocess.run([sys.executable, "-m", "npsenet", "train", "--resume", str(out),
                           "--nproc", "2", "--no-progress"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("resuming") == 1 and "epoch 2/2" in proc.stdout
    rows = (out / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 2


def test_bench_nproc_refuses_the_gpu_and_a_single_process_in_one_line(capsys):
    from npsenet.cli import main
    assert main(["bench", "--nproc", "2", "--device", "gpu"]) == 2
    assert main(["bench", "--nproc", "2", "--batch-size", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "drop --device gpu" in err[0] and "--batch-size 4" in err[1]


def test_bench_nproc_takes_medians_over_rounds_and_the_ratios_of_each_round(monkeypatch):
    """npsenet bench --nproc: each round is one N-process run and one single-process run;
    the figures are medians over the rounds, the speed-ups medians of each round's ratio."""
    from npsenet.distributed import bench
    runs = iter([{"step_s": 0.2, "allreduce_s": 0.002}, {"npsenet_s": 0.3, "torch_s": 0.2},
                 {"step_s": 0.4, "allreduce_s": 0.004}, {"npsenet_s": 0.5, "torch_s": 0.5},
                 {"step_s": 0.25, "allreduce_s": 0.001}, {"npsenet_s": 0.4, "torch_s": 0.3}])
    monkeypatch.setattr(bench, "_run", lambda cmd, env, what, timeout: next(runs))
    lines = []
    r = bench.run_parallel_benchmark(nproc=2, batch_size=128, rounds=3, progress=lines.append)
    assert len(lines) == 3 and len(r["rounds_detail"]) == 3
    assert (r["parallel_s"], r["single_s"], r["torch_s"], r["allreduce_s"]) == (0.25, 0.4, 0.3,
                                                                                0.002)
    assert r["speedup"] == pytest.approx(1.5)            # of 1.5, 1.25 and 1.6
    assert r["torch_ratio"] == pytest.approx(1.2)        # of 1.0, 1.25 and 1.2
    assert r["parallel_images_per_s"] == pytest.approx(128 / 0.25)
    text = bench.format_parallel(r)
    assert "then of 3 rounds" in text and "1.50x" in text and "PyTorch: 1.20x" in text
    with pytest.raises(ValueError, match="--rounds"):
        bench.run_parallel_benchmark(rounds=0)
