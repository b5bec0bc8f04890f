"""The mobile side of the SE family: MobileNet and SE-MobileNet (SE on every
depthwise-separable unit's output), ShuffleNet and SE-ShuffleNet (SE on every unit's
residual branch): exact parameter counts and MACs, the structure the papers describe,
forward and backward of the full ImageNet models at 32x32, float64 parity with the PyTorch
twins (reduced widths and depths, and the registered CIFAR models), and the errors.
"""
from __future__ import annotations

import json
from functools import partial

import numpy as np
import pytest

import npsenet as ns
from npsenet.cli import main
from npsenet.models.mobilenet import MobileNetV1
from npsenet.models.shufflenet import ShuffleNetV1, ShuffleUnit

from helpers import count, once

pytestmark = pytest.mark.usefixtures("code_path")   # on the fast and the plain path

SE = {"reduction": 4, "squeeze": "avg", "gate": "sigmoid", "bias": True, "no_squeeze": False,
      "divisor": 1}
COUNTS = {"mobilenet_v1": 4_231_976, "se_mobilenet_v1": 4_718_044,
          "mobilenet_v1_cifar": 823_722, "se_mobilenet_v1_cifar": 943_658,
          "shufflenet_v1": 1_865_728, "se_shufflenet_v1": 2_484_533,
          "shufflenet_v1_cifar": 111_358, "se_shufflenet_v1_cifar": 173_470}
# MACs of npsenet summary at each model's own input size (224, or 32 for *_cifar)
MACS = {"mobilenet_v1": 573_833_216, "se_mobilenet_v1": 579_731_968,
        "shufflenet_v1": 141_310_896, "se_shufflenet_v1": 145_129_440,
        "mobilenet_v1_cifar": 12_375_040, "se_mobilenet_v1_cifar": 12_716_160,
        "shufflenet_v1_cifar": 6_991_680, "se_shufflenet_v1_cifar": 7_294_944}
IMAGENET = ["mobilenet_v1", "se_mobilenet_v1", "shufflenet_v1", "se_shufflenet_v1"]
CIFAR = [name for name in COUNTS if name.endswith("_cifar")]
SMALL_UNITS = ((16, 1), (32, 2), (32, 1), (64, 2))                 # 4 MobileNet units
SMALL_SHUFFLE = {"groups": 3, "stem": 12, "widths": (24, 48), "repeats": (2, 2)}


# ShuffleNet's bn3 running means are zero in exact arithmetic (a 1x1 convolution of a
# zero-mean map): they are compared in absolute terms, below 1e-6 * 1e-9
ZERO_MEAN_FLOOR = 1e-6


def _parity():
    pytest.importorskip("torch")
    from parity import compare_with_torch
    return compare_with_torch


# -- counts, MACs, options ---------------------------------------------------------------------
@pytest.mark.parametrize("name", list(COUNTS))
def test_parameter_counts_are_exact(name, zoo, code_path):
    once(code_path)
    assert count(zoo(name)) == COUNTS[name]


@pytest.mark.parametrize("name", list(MACS))
def test_macs_at_the_models_input_size(name, zoo, code_path):
    once(code_path)
    size = ns.models.registry.model_info(name).input_size
    s = ns.summary(zoo(name), (1, 3, size, size))
    assert s.total_macs == MACS[name] and s.total_params == COUNTS[name]
    if name.startswith("se_"):
        assert s.se_params == COUNTS[name] - COUNTS[name[3:]]


@pytest.mark.parametrize("name", CIFAR)
def test_names_and_options_rebuild_the_model(name, zoo, code_path):
    once(code_path)
    model = zoo(name)
    assert model.name == name
    json.dumps(model.options)
    rebuilt = ns.models.build_model(name, **model.options)
    assert rebuilt.options == model.options and count(rebuilt) == count(model)
    info = ns.models.registry.model_info(name)
    assert info.input_size == 32 and info.num_classes == 10
    assert info.plain_twin == (name[3:] if name.startswith("se_") else None)


@pytest.mark.parametrize("name", ["se_mobilenet_v1_cifar", "se_shufflenet_v1_cifar"])
@pytest.mark.parametrize("bad, words", [({"placement": "pre"}, "unknown SE option"),
                                        ({"reduction": 0}, "reduction"),
                                        ({"squeeze": "median"}, "squeeze")])
def test_bad_se_options_raise_clear_errors(name, bad, words, code_path):
    once(code_path)
    with pytest.raises(ValueError, match=words):
        ns.models.build_model(name, **bad)


@pytest.mark.parametrize("model", ["se_mobilenet_v1_cifar", "se_shufflenet_v1_cifar"])
def test_summary_compare_on_the_command_line(model, capsys, code_path):
    once(code_path)
    assert main(["summary", "--model", model, "--compare"]) == 0
    out = capsys.readouterr().out
    assert model[3:] in out and "SE adds" in out and "scale" in out


# -- structure ---------------------------------------------------------------------------------
def test_mobilenet_follows_table_1(zoo, code_path):
    once(code_path)
    model = zoo("se_mobilenet_v1")
    assert model.stem[0].stride == 2 and model.stem[0].out_channels == 32
    assert [u.conv_pw.out_channels for u in model.features] == \
        [64, 128, 128, 256, 256] + [512] * 6 + [1024, 1024]
    assert [u.conv_dw.stride for u in model.features] == [1, 2, 1, 2, 1, 2] + [1] * 5 + [2, 1]
    for unit in model.features:
        assert unit.conv_dw.groups == unit.conv_dw.in_channels == unit.conv_dw.out_channels
        assert unit.se.channels == unit.conv_pw.out_channels      # SE on the unit's output
    assert model.fc.bias is not None
    assert all(u.se is None for u in zoo("mobilenet_v1").features)
    assert zoo("mobilenet_v1_cifar").stem[0].stride == 1


def test_shufflenet_follows_table_1(zoo, code_path):
    once(code_path)
    model = zoo("se_shufflenet_v1")
    assert model.maxpool is not None and model.conv1.out_channels == 24
    stages = [model.stage2, model.stage3, model.stage4]
    assert [len(s) for s in stages] == [4, 8, 4]
    for stage, width in zip(stages, (240, 480, 960)):
        first = stage[0]
        assert first.stride == 2 and first.shortcut is not None
        assert first.conv3.out_channels == width - first.in_channels    # concatenated
        assert first.se.channels == width - first.in_channels
        for unit in stage[1:]:
            assert unit.stride == 1 and unit.shortcut is None and unit.se.channels == width
        for unit in stage:
            assert unit.conv1.out_channels == width // 4
            assert unit.conv2.groups == width // 4 and unit.conv3.groups == 3
            assert unit.shuffle.groups == 3
    assert model.stage2[0].conv1.groups == 1        # 24 input channels: not grouped
    assert all(u.conv1.groups == 3 for s in stages for u in s if u is not model.stage2[0])
    cifar = zoo("shufflenet_v1_cifar")
    assert cifar.maxpool is None and cifar.conv1.stride == 1 and cifar.stage2[0].se is None


def test_shufflenet_keys(zoo, code_path):
    once(code_path)
    keys = zoo("se_shufflenet_v1").state_dict()
    for key in ["conv1.weight", "bn1.running_var", "stage2.0.conv1.weight",
                "stage2.0.bn3.running_mean", "stage2.0.se.fc1.weight", "stage3.7.se.fc2.bias",
                "stage4.3.conv3.weight", "fc.weight", "fc.bias"]:
        assert key in keys, key
    assert keys["stage2.0.se.fc1.weight"].shape == (216 // 16, 216)


@pytest.mark.parametrize("make, words", [
    (lambda: ShuffleUnit(24, 48, 3, stride=1), "must equal out_channels"),
    (lambda: ShuffleUnit(24, 40, 3, stride=2), "multiples of 3"),
    (lambda: ShuffleUnit(24, 48, 3, stride=3), "stride must be 1 or 2"),
    (lambda: ShuffleNetV1(widths=(24, 48), repeats=(1,)), "one entry per stage"),
    (lambda: MobileNetV1(width=0), "positive multiplier"),
])
def test_bad_architectures_raise_clear_errors(make, words, code_path):
    once(code_path)
    with pytest.raises(ValueError, match=words):
        make()


# -- forward and backward of the full ImageNet models -----------------------------------------
@pytest.mark.parametrize("name", IMAGENET)
def test_full_imagenet_models_run_forward_and_backward(name, zoo, code_path, rng):
    once(code_path)
    model = zoo(name)
    model.train()
    x = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)     # down to 1x1
    logits = model(x)
    assert logits.shape == (2, 1000) and logits.dtype == np.float32
    model.zero_grad()
    dx = model.backward(np.ones_like(logits))
    assert dx.shape == x.shape and np.isfinite(dx).all()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()


# -- parity with PyTorch ---------------------------------------------------------------------
@pytest.mark.parametrize("se", [None, SE, dict(SE, gate="tanh", squeeze="max", bias=False),
                                dict(SE, no_squeeze=True)],
                         ids=["plain", "se", "se-tanh-max", "se-no-squeeze"])
def test_small_mobilenet_equals_pytorch(se, device):
    from npsenet.torch_reference.mobilenet import build_torch_mobilenet
    compare_with_torch = _parity()
    model = MobileNetV1(5, 1.0, 2, SMALL_UNITS, partial(ns.nn.SEBlock, **se) if se else None)
    compare_with_torch(model, (2, 3, 16, 16), device=device,
                       reference=build_torch_mobilenet(5, 1.0, 2, SMALL_UNITS, se))


@pytest.mark.parametrize("se", [None, SE, dict(SE, gate="relu", bias=False)],
                         ids=["plain", "se", "se-relu"])
@pytest.mark.parametrize("imagenet_stem", [True, False])
def test_small_shufflenet_equals_pytorch(se, imagenet_stem, device):
    from npsenet.torch_reference.shufflenet import build_torch_shufflenet
    compare_with_torch = _parity()
    model = ShuffleNetV1(5, imagenet_stem=imagenet_stem,
                         se_layer=partial(ns.nn.SEBlock, **se) if se else None, **SMALL_SHUFFLE)
    size = 32 if imagenet_stem else 16
    compare_with_torch(model, (2, 3, size, size), device=device, reference=build_torch_shufflenet(
        5, imagenet_stem=imagenet_stem, se=se, **SMALL_SHUFFLE), floor=ZERO_MEAN_FLOOR)


@pytest.mark.parametrize("name", CIFAR)
def test_cifar_models_equal_pytorch(name, code_path):
    once(code_path)      # the registered widths on the fast path; the small nets run both
    # at 16x16 (PyTorch's float64 depthwise backward is slow); 4 images, so that the
    # batch norms of MobileNet's last 1x1 maps see more than the 2 values whose
    # normalisation is +-1 whatever they are (a zero gradient, round-off on both sides)
    compare_with_torch = _parity()
    compare_with_torch(ns.models.build_model(name), (4, 3, 16, 16), floor=ZERO_MEAN_FLOOR)


@pytest.mark.parametrize("name", IMAGENET)
def test_imagenet_twins_have_the_same_keys_and_shapes(name, zoo, code_path):
    once(code_path)
    pytest.importorskip("torch")
    from npsenet.torch_reference import build_torch_model
    twin = build_torch_model(name)
    shapes = {k: tuple(v.shape) for k, v in twin.state_dict().items()}
    assert shapes == {k: tuple(np.shape(v)) for k, v in zoo(name).state_dict().items()}


def test_full_se_shufflenet_equals_pytorch_in_eval_mode(zoo, code_path, rng):
    """The full registered SE-ShuffleNet against its twin: one float64 eval forward."""
    once(code_path)
    torch = pytest.importorskip("torch")
    from npsenet.torch_reference import build_torch_model, copy_weights
    model = ns.models.build_model("se_shufflenet_v1").to(dtype=np.float64)
    twin = copy_weights(model, build_torch_model("se_shufflenet_v1").double())
    model.eval()
    twin.eval()
    x = rng.standard_normal((1, 3, 64, 64))
    with torch.no_grad():
        expected = twin(torch.from_numpy(x)).numpy()
    got = model(x)
    assert np.abs(got - expected).max() < 1e-9 * np.abs(expected).max()


@pytest.mark.parametrize("name, first, blocks", [("se_mobilenet_v1_cifar", "features.0.se", 13),
                                                 ("se_shufflenet_v1_cifar", "stage2.0.se", 8)])
def test_gate_values_name_every_se_block(name, first, blocks, zoo, code_path, rng):
    once(code_path)
    model = zoo(name)
    model.eval()
    model(rng.standard_normal((2, 3, 32, 32)).astype(np.float32))
    gates = ns.models.gate_values(model)
    assert len(gates) == blocks and next(iter(gates)) == first
    assert all(s.shape[0] == 2 and ((s > 0) & (s < 1)).all() for s in gates.values())
