"""SGD and the learning-rate schedules against PyTorch, step by step."""
import math

import numpy as np
import pytest

import npsenet as ns
from npsenet.backend import to_device
from npsenet.nn import Parameter
from npsenet.optim import SGD, CosineLR, MultiStepLR

SHAPES = [(4, 3), (5,), (2, 3, 3, 3)]


def _params(rng, dtype, device="cpu"):
    return [Parameter(to_device(rng.standard_normal(s).astype(dtype), device)) for s in SHAPES]


def _grads(rng, steps, dtype):
    return [[rng.standard_normal(s).astype(dtype) for s in SHAPES] for _ in range(steps)]


@pytest.mark.parametrize("momentum,weight_decay,nesterov", [
    (0.0, 0.0, False), (0.9, 0.0, False), (0.9, 5e-4, False), (0.9, 1e-2, True),
    (0.5, 0.0, True), (0.0, 1e-3, False)])
def test_sgd_matches_torch_step_by_step(momentum, weight_decay, nesterov, rng):
    torch = pytest.importorskip("torch")
    params = _params(rng, np.float64)
    tparams = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    opt = SGD(params, lr=0.07, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    topt = torch.optim.SGD(tparams, lr=0.07, momentum=momentum, weight_decay=weight_decay,
                           nesterov=nesterov)
    for step, grads in enumerate(_grads(rng, 6, np.float64)):
        if step == 3:  # the lr changes between steps, as a schedule does
            opt.lr = 0.02
            topt.param_groups[0]["lr"] = 0.02
        for p, tp, g in zip(params, tparams, grads):
            p.grad = g.copy()
            tp.grad = torch.tensor(g)
        opt.step()
        topt.step()
        for p, tp in zip(params, tparams):
            np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=0, atol=1e-12)


def test_sgd_skips_params_without_grad_and_keeps_them_unbuffered(rng):
    torch = pytest.importorskip("torch")
    params = _params(rng, np.float64)
    tparams = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    opt = SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-3)
    topt = torch.optim.SGD(tparams, lr=0.1, momentum=0.9, weight_decay=1e-3)
    for step, grads in enumerate(_grads(rng, 4, np.float64)):
        for i, (p, tp, g) in enumerate(zip(params, tparams, grads)):
            skip = i == 1 and step < 2  # parameter 1 gets its first gradient at step 2
            p.grad = None if skip else g.copy()
            tp.grad = None if skip else torch.tensor(g)
        before = params[1].data.copy()
        opt.step()
        topt.step()
        if step < 2:
            assert np.array_equal(params[1].data, before)
            assert opt.momentum_buffers[1] is None
        for p, tp in zip(params, tparams):
            np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=0, atol=1e-12)


def test_sgd_updates_in_place_in_the_parameter_dtype(device, rng):
    params = _params(rng, np.float32, device)
    arrays = [p.data for p in params]
    opt = SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
    for grads in _grads(rng, 2, np.float32):
        for p, g in zip(params, grads):
            p.grad = to_device(g, device)
        opt.step()
    for p, a in zip(params, arrays):
        assert p.data is a and p.data.dtype == np.float32
    assert all(b.dtype == np.float32 for b in opt.momentum_buffers)
    opt.zero_grad()
    assert all(p.grad is None for p in params)


def test_sgd_float32_matches_torch(rng):
    torch = pytest.importorskip("torch")
    params = _params(rng, np.float32)
    tparams = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    opt = SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4)
    topt = torch.optim.SGD(tparams, lr=0.1, momentum=0.9, weight_decay=5e-4)
    for grads in _grads(rng, 5, np.float32):
        for p, tp, g in zip(params, tparams, grads):
            p.grad, tp.grad = g.copy(), torch.tensor(g)
        opt.step()
        topt.step()
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-6, atol=1e-6)


def test_sgd_state_dict_round_trip_continues_identically(rng):
    grads = _grads(rng, 6, np.float64)
    start = _params(rng, np.float64)

    def run(split):
        params = [Parameter(p.data.copy()) for p in start]
        opt = SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-3, nesterov=True)
        for step, gs in enumerate(grads):
            if step == split:  # a fresh optimizer restored from the saved state
                saved = opt.state_dict()
                saved["momentum_buffers"] = [b.copy() for b in saved["momentum_buffers"]]
                opt = SGD(params, lr=1.0)
                opt.load_state_dict(saved)
            for p, g in zip(params, gs):
                p.grad = g.copy()
            opt.step()
        return [p.data for p in params]

    for a, b in zip(run(split=None), run(split=3)):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("kwargs,match", [
    (dict(lr=-0.1), "lr"), (dict(lr=float("inf")), "lr"), (dict(lr=float("nan")), "lr"),
    (dict(lr="0.1"), "lr"), (dict(lr=0.1, momentum=-0.5), "momentum"),
    (dict(lr=0.1, momentum=1.0), "momentum"), (dict(lr=0.1, weight_decay=-1e-4), "weight_decay"),
    (dict(lr=0.1, nesterov=True), "nesterov"), (dict(lr=0.1, momentum=0.9, nesterov="yes"),
                                                "nesterov")])
def test_sgd_rejects_bad_arguments(kwargs, match, rng):
    with pytest.raises(ValueError, match=match):
        SGD(_params(rng, np.float32), **kwargs)


def test_sgd_rejects_bad_params_and_mismatched_grads(rng):
    with pytest.raises(ValueError, match="empty"):
        SGD([], lr=0.1)
    with pytest.raises(ValueError, match="Parameter"):
        SGD([np.zeros(3)], lr=0.1)
    params = _params(rng, np.float32)
    with pytest.raises(ValueError, match="more than once"):
        SGD(params + params[:1], lr=0.1)
    params[0].grad = np.zeros((2, 2), np.float32)
    params[1].grad = np.ones(5, np.float32)
    before = params[1].data.copy()
    with pytest.raises(ValueError, match="grad has shape"):
        SGD(params, lr=0.1).step()
    assert np.array_equal(params[1].data, before)  # nothing half-updated


def _sgd(lr=0.1):
    return SGD([Parameter(np.zeros(3))], lr=lr, momentum=0.9)


@pytest.mark.parametrize("milestones,gamma", [([3, 7], 0.1), ([5], 0.5), ([2, 2, 6], 0.2)])
def test_multistep_matches_torch(milestones, gamma):
    torch = pytest.importorskip("torch")
    opt = _sgd()
    schedule = MultiStepLR(opt, milestones, gamma)
    topt = torch.optim.SGD([torch.zeros(3, requires_grad=True)], lr=0.1, momentum=0.9)
    tschedule = torch.optim.lr_scheduler.MultiStepLR(topt, milestones, gamma)
    for _ in range(10):
        assert opt.lr == pytest.approx(topt.param_groups[0]["lr"], rel=1e-12)
        assert schedule.last_lr == opt.lr == schedule.get_lr()
        topt.step()
        schedule.step()
        tschedule.step()


def test_cosine_follows_its_formula():
    base, total, warmup, min_lr = 0.1, 20, 4, 1e-3
    opt = _sgd(base)
    schedule = CosineLR(opt, total, warmup_steps=warmup, min_lr=min_lr)
    seen = []
    for t in range(total + 3):
        if t < warmup:
            expected = base * (t + 1) / (warmup + 1)
        elif t <= total:
            expected = min_lr + 0.5 * (base - min_lr) * (
                1 + math.cos(math.pi * (t - warmup) / (total - warmup)))
        else:
            expected = min_lr
        assert opt.lr == pytest.approx(expected, rel=1e-12, abs=1e-15)
        seen.append(opt.lr)
        schedule.step()
    assert seen[0] < seen[1] < seen[warmup] == pytest.approx(base)  # a rising warm-up
    assert all(a >= b for a, b in zip(seen[warmup:], seen[warmup + 1:]))  # then decays
    assert seen[total] == pytest.approx(min_lr)


def test_cosine_after_warmup_matches_torch_cosine_annealing():
    torch = pytest.importorskip("torch")
    total, warmup = 30, 5
    opt = _sgd()
    schedule = CosineLR(opt, total, warmup_steps=warmup, min_lr=0.002)
    for _ in range(warmup):
        schedule.step()
    topt = torch.optim.SGD([torch.zeros(3, requires_grad=True)], lr=0.1)
    tschedule = torch.optim.lr_scheduler.CosineAnnealingLR(topt, T_max=total - warmup,
                                                           eta_min=0.002)
    for _ in range(total - warmup + 1):
        assert opt.lr == pytest.approx(topt.param_groups[0]["lr"], rel=1e-10)
        topt.step()
        schedule.step()
        tschedule.step()


@pytest.mark.parametrize("make", [lambda o: MultiStepLR(o, [3, 6], 0.1),
                                  lambda o: CosineLR(o, 12, warmup_steps=2, min_lr=1e-4)])
def test_schedule_state_dict_round_trip(make):
    opt = _sgd()
    schedule = make(opt)
    for _ in range(5):
        schedule.step()
    state = schedule.state_dict()
    opt2 = _sgd(lr=0.5)  # a fresh run with another lr, restored from the saved state
    schedule2 = make(opt2)
    schedule2.load_state_dict(state)
    assert opt2.lr == opt.lr
    for _ in range(10):
        schedule.step()
        schedule2.step()
        assert opt2.lr == opt.lr


@pytest.mark.parametrize("make,match", [
    (lambda o: MultiStepLR(o, [5, 3]), "increasing"), (lambda o: MultiStepLR(o, [3], 0.0), "gamma"),
    (lambda o: CosineLR(o, 0), "total_steps"), (lambda o: CosineLR(o, 10, 10), "warmup_steps"),
    (lambda o: CosineLR(o, 10, min_lr=1.0), "min_lr"),
    (lambda o: MultiStepLR(object(), [1]), "lr")])
def test_schedules_reject_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make(_sgd())


def test_optim_is_exported():
    assert ns.optim.SGD is SGD
    assert ns.optim.CosineLR is CosineLR and ns.optim.MultiStepLR is MultiStepLR
