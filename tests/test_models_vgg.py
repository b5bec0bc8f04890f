"""VGG-16 with BN and SE-VGG-16 (an SE block after every convolution's ReLU): exact
parameter counts, torchvision's state_dict keys, MACs, forward and backward of the full
ImageNet models (at 32x32, where the pool copies the 1x1 map to 7x7), float64 parity with
the PyTorch twins (VGG-16 at 1/16 of its widths with the ImageNet classifier layout, and
the registered CIFAR models), and the adaptive pool against PyTorch's.
"""
from __future__ import annotations

import json
from functools import partial

import numpy as np
import pytest

import npsenet as ns
from npsenet.cli import main
from npsenet.models.vgg import VGG, ReLUThenSE, vgg16_layout
from npsenet.nn import AdaptiveAvgPool2d

from helpers import count, once

pytestmark = pytest.mark.usefixtures("code_path")   # on the fast and the plain path

SE = {"reduction": 4, "squeeze": "avg", "gate": "sigmoid", "bias": True, "no_squeeze": False,
      "divisor": 1}
COUNTS = {"vgg16_bn": 138_365_992, "se_vgg16_bn": 138_596_784,
          "vgg16_bn_cifar": 924_186, "se_vgg16_bn_cifar": 938_330}
CONVS = (0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40)   # torchvision's feature indices


def small_vgg(se=None, num_classes=5, drop_rate=0.0):
    """VGG-16's layout at 1/16 of the widths with the ImageNet classifier (hidden 8)."""
    return VGG(vgg16_layout(16), num_classes, hidden=8, pool_size=7, drop_rate=drop_rate,
               se_layer=partial(ns.nn.SEBlock, **se) if se else None)


def _parity():
    pytest.importorskip("torch")
    from parity import compare_with_torch
    return compare_with_torch


# -- the full ImageNet models: counts, keys, structure, forward and backward -----------------
def expected_keys(se):
    """torchvision's vgg16_bn keys, and with ``se`` the SE blocks' in the ReLU slots."""
    keys = set()
    for i in CONVS:
        keys |= {f"features.{i}.weight", f"features.{i}.bias"}
        keys |= {f"features.{i + 1}.{k}" for k in
                 ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
        if se:
            keys |= {f"features.{i + 2}.se.{fc}.{p}" for fc in ("fc1", "fc2")
                     for p in ("weight", "bias")}
    for i in (0, 3, 6):
        keys |= {f"classifier.{i}.weight", f"classifier.{i}.bias"}
    return keys


@pytest.mark.parametrize("name", ["vgg16_bn", "se_vgg16_bn"])
def test_full_imagenet_model(name, code_path, rng):
    """One build per model (138 M parameters): the exact count, torchvision's keys, the
    SE blocks after every convolution's ReLU, the twin's keys and shapes, and a float32
    forward and backward at 32x32 (the 1x1 map copied to 7x7, as PyTorch does)."""
    once(code_path)
    model = ns.models.build_model(name)
    assert count(model) == COUNTS[name]
    state = model.state_dict()
    assert set(state) == expected_keys(se=name.startswith("se_"))
    layers = list(model.features)
    for i in CONVS:
        assert isinstance(layers[i], ns.nn.Conv2d) and layers[i].bias is not None
        assert isinstance(layers[i + 2], ReLUThenSE) == name.startswith("se_")
        if name.startswith("se_"):
            assert layers[i + 2].se.channels == layers[i].out_channels
            assert layers[i + 2].se.hidden == layers[i].out_channels // 16
    assert sum(isinstance(m, ReLUThenSE) for m in layers) == (13 if name.startswith("se_") else 0)

    torch = pytest.importorskip("torch")
    from npsenet.torch_reference import build_torch_model
    with torch.device("meta"):                     # shapes only, no 138 M weights drawn
        twin = build_torch_model(name)
    assert {k: tuple(v.shape) for k, v in twin.state_dict().items()} == \
        {k: tuple(np.shape(v)) for k, v in state.items()}

    model.train()
    x = rng.standard_normal((1, 3, 32, 32)).astype(np.float32)
    logits = model(x)
    assert logits.shape == (1, 1000) and logits.dtype == np.float32
    dx = model.backward(np.ones_like(logits))
    assert dx.shape == x.shape and np.isfinite(dx).all()
    assert model.features[0].weight.grad is not None
    assert model.classifier[0].weight.grad.shape == (4096, 512 * 7 * 7)


@pytest.mark.parametrize("name", ["vgg16_bn_cifar", "se_vgg16_bn_cifar"])
def test_cifar_parameter_counts_are_exact(name, zoo, code_path):
    once(code_path)
    assert count(zoo(name)) == COUNTS[name]


def test_initialisation_is_torchvisions(zoo, code_path):
    once(code_path)
    conv = zoo("vgg16_bn_cifar").features[3]
    assert np.all(conv.bias.data == 0)
    fan_out = conv.out_channels * 9
    assert abs(conv.weight.data.std() - np.sqrt(2 / fan_out)) < 0.1 * np.sqrt(2 / fan_out)


@pytest.mark.parametrize("name", ["se_vgg16_bn_cifar", "vgg16_bn_cifar"])
def test_names_and_options_rebuild_the_model(name, zoo, code_path):
    once(code_path)
    model = zoo(name)
    assert model.name == name
    json.dumps(model.options)
    rebuilt = ns.models.build_model(name, **model.options)
    assert rebuilt.options == model.options and count(rebuilt) == count(model)


def test_options_record_the_se_block_and_the_drop_rate(code_path):
    once(code_path)
    model = ns.models.se_vgg16_bn_cifar(num_classes=3, reduction=8, gate="tanh")
    assert model.options == {"num_classes": 3, "reduction": 8, "squeeze": "avg",
                             "gate": "tanh", "bias": False, "no_squeeze": False, "divisor": 1}
    info = ns.models.registry.model_info("se_vgg16_bn")
    assert (info.input_size, info.plain_twin, info.num_classes) == (224, "vgg16_bn", 1000)
    assert ns.models.registry.model_info("vgg16_bn_cifar").input_size == 32


def test_drop_rate_reaches_the_classifier(code_path):
    once(code_path)
    model = VGG(vgg16_layout(16), 4, hidden=8, pool_size=7, drop_rate=0.3)
    drops = [m for m in model.classifier if isinstance(m, ns.nn.Dropout)]
    assert [d.p for d in drops] == [0.3, 0.3]


@pytest.mark.parametrize("bad, words", [({"placement": "pre"}, "unknown SE option"),
                                        ({"reduction": 0}, "reduction"),
                                        ({"gate": "softmax"}, "gate")])
def test_bad_se_options_raise_clear_errors(bad, words, code_path):
    once(code_path)
    with pytest.raises(ValueError, match=words):
        ns.models.se_vgg16_bn_cifar(**bad)


# -- MACs --------------------------------------------------------------------------------------
def test_cifar_macs_and_the_ses_share(code_path):
    once(code_path)
    plain = ns.summary(ns.models.vgg16_bn_cifar(), (1, 3, 32, 32))
    with_se = ns.summary(ns.models.se_vgg16_bn_cifar(), (1, 3, 32, 32))
    assert plain.total_macs == 19_976_960
    assert with_se.total_macs - plain.total_macs == 152_384
    assert with_se.se_params == COUNTS["se_vgg16_bn_cifar"] - COUNTS["vgg16_bn_cifar"]


def test_summary_compare_on_the_command_line(capsys, code_path):
    once(code_path)
    assert main(["summary", "--model", "se_vgg16_bn_cifar", "--compare"]) == 0
    out = capsys.readouterr().out
    assert "vgg16_bn_cifar" in out and "SE adds" in out and "14,144" in out


# -- parity with PyTorch ----------------------------------------------------------------------
@pytest.mark.parametrize("se", [None, SE, dict(SE, gate="tanh", squeeze="max", bias=False),
                                dict(SE, no_squeeze=True)],
                         ids=["plain", "se", "se-tanh-max", "se-no-squeeze"])
def test_small_vgg_equals_pytorch(se, device):
    from npsenet.torch_reference.vgg import build_torch_vgg
    compare_with_torch = _parity()
    compare_with_torch(small_vgg(se), (2, 3, 32, 32), device=device,
                       reference=build_torch_vgg(vgg16_layout(16), 5, 8, 7, 0.0, se))


@pytest.mark.parametrize("name", ["se_vgg16_bn_cifar", "vgg16_bn_cifar"])
def test_cifar_models_equal_pytorch(name, code_path):
    once(code_path)      # the registered widths on the fast path; the small nets run both
    compare_with_torch = _parity()
    compare_with_torch(ns.models.build_model(name), (2, 3, 32, 32))


# -- the adaptive pool ------------------------------------------------------------------------
@pytest.mark.parametrize("shape, size", [((2, 3, 14, 14), 7), ((2, 3, 1, 1), 7),
                                         ((2, 3, 7, 7), 7), ((1, 2, 14, 1), 7),
                                         ((2, 3, 4, 6), 1), ((1, 2, 21, 7), 7)])
def test_adaptive_pool_equals_pytorchs(shape, size, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal(shape)
    pool = AdaptiveAvgPool2d(size)
    y = pool(x)
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = torch.nn.functional.adaptive_avg_pool2d(xt, size)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-14)
    dy = rng.standard_normal(y.shape)
    dy_before = dy.copy()
    dx = pool.backward(dy)
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-14)
    assert np.array_equal(dy, dy_before) and dx is not dy and y is not x


def test_adaptive_pool_names_the_sizes_it_takes(rng):
    with pytest.raises(ValueError, match="multiple or a divisor of 7.*224 to 255"):
        AdaptiveAvgPool2d(7)(rng.standard_normal((1, 2, 10, 10)))
    with pytest.raises(ValueError, match="feature map is 3x3"):
        AdaptiveAvgPool2d(7)(rng.standard_normal((1, 2, 3, 3)))


def test_gate_values_name_every_se_block(zoo, code_path, rng):
    once(code_path)
    model = zoo("se_vgg16_bn_cifar")
    model.eval()
    model(rng.standard_normal((2, 3, 32, 32)).astype(np.float32))
    gates = ns.models.gate_values(model)
    assert list(gates) == [f"features.{i + 2}.se" for i in CONVS]
    assert gates["features.2.se"].shape == (2, 16)
