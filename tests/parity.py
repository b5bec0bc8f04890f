"""The model parity check every family's tests share: a float64 training step and an eval
forward of an npsenet model against its PyTorch twin (``npsenet.torch_reference``).

    from parity import compare_with_torch
    compare_with_torch(ns.models.se_vgg16_bn(num_classes=10, drop_rate=0.0), (2, 3, 32, 32))

Compared (docs/contract.md#gradients): logits in training and evaluation mode, dL/dx, every
parameter gradient (the two models must have the same parameter names; one that is zero in
exact arithmetic is compared against the largest gradient's scale), BN running
statistics after the step and ``num_batches_tracked``, each to ``tol`` relative to the
array's largest value. Models with dropout must be built with a drop rate of 0 for the
training step (their eval forward is the identity anyway).
"""
from __future__ import annotations

import numpy as np

from npsenet.backend import to_device, to_numpy

TOL = 1e-9


def rel(a, b, floor=1e-300):
    """max |a - b| / max(max |b|, floor): the error relative to the array's scale."""
    a, b = to_numpy(a).astype(np.float64), to_numpy(b).astype(np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), floor))


def torch_twin(model):
    """A float64 PyTorch model with the architecture of an npsenet model (no weights copied)."""
    from npsenet.torch_reference import build_torch_model
    return build_torch_model(model.name, **model.options).double()


def compare_with_torch(model, x_shape, seed=0, device="cpu", reference=None, tol=TOL,
                       floor=1e-300):
    """Train-mode step and eval forward of ``model`` (float64, on ``device``) and its
    PyTorch twin (on the CPU; by default the one its name and options describe).

    ``floor``: the smallest scale an error is relative to. Where a network holds arrays
    that are zero in exact arithmetic (ShuffleNet's ``bn3`` normalises a 1x1 convolution of
    a zero-mean map, so its running mean is round-off on both sides), a floor such as 1e-6
    compares them in absolute terms."""
    import torch

    from npsenet.torch_reference import copy_weights

    model = model.to(dtype=np.float64)
    reference = copy_weights(model, reference.double() if reference is not None
                             else torch_twin(model))
    model.to(device=device)
    rng = np.random.default_rng(seed)
    x_host = rng.standard_normal(x_shape)
    x = to_device(x_host, device)

    # train mode: batch statistics, gradients, running statistics
    model.train()
    reference.train()
    logits = model(x)
    dlogits_host = rng.standard_normal(tuple(logits.shape))
    model.zero_grad()
    dx = model.backward(to_device(dlogits_host, device))
    xt = torch.from_numpy(x_host.copy()).requires_grad_(True)
    logits_t = reference(xt)
    (logits_t * torch.from_numpy(dlogits_host)).sum().backward()
    assert rel(logits, logits_t.detach().numpy(), floor) < tol, "train-mode logits"
    assert rel(dx, xt.grad.numpy(), floor) < tol, "dL/dx"
    torch_params = dict(reference.named_parameters())
    assert set(torch_params) == {name for name, _ in model.named_parameters()}
    # a gradient that is zero in exact arithmetic (a bias that reaches a batch norm only
    # through linear layers, e.g. Inception-ResNet-v2's last up-projection) is round-off on
    # both sides: it must stay below tol times the model's largest gradient
    grad_scale = max(float(np.abs(p.grad.numpy()).max()) for p in torch_params.values())
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        expected = torch_params[name].grad.numpy()
        if np.abs(expected).max() < tol * grad_scale:
            assert np.abs(to_numpy(p.grad)).max() < tol * grad_scale, name
        else:
            assert rel(p.grad, expected, floor) < tol, name
    torch_state = reference.state_dict()
    assert set(torch_state) == set(model.state_dict())
    for key, value in model.state_dict().items():
        if "running" in key:
            assert rel(value, torch_state[key].numpy(), floor) < tol, key
        elif key.endswith("num_batches_tracked"):
            assert int(value) == int(torch_state[key]) == 1, key

    # eval mode: running statistics
    model.eval()
    reference.eval()
    with torch.no_grad():
        expected = reference(torch.from_numpy(x_host)).numpy()
    assert rel(model(x), expected, floor) < tol, "eval-mode logits"
