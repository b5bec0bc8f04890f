"""The ResNet side of the SE family: ResNet-18/34, ResNeXt-50/101 (32x4d), ResNeXt-CIFAR
and SENet-154, their SE versions, and the SE_3x3 placement (TPAMI 2019, Table 15):
exact parameter counts, forward and backward of every full-size model, float64 parity
with the PyTorch twins (at reduced depth and width where the full network is too slow),
gradient checks of SENet-154's block, and the command line's --placement 3x3 and --divisor.
"""
from __future__ import annotations

from functools import partial

import numpy as np
import pytest

import npsenet as ns
from npsenet.gradcheck import check_layer
from npsenet.models.resnet import resnet_from_spec
from npsenet.models.se_options import se_config
from npsenet.models.senet import SEBottleneck, SENet, senet_from_options
from npsenet.models.specs import ResNetSpec

from helpers import count

pytestmark = pytest.mark.usefixtures("code_path")   # on the fast and the plain path

COMPOSITE_TOL = 1e-6      # as tests/test_models.py: composite blocks in float64
KINK_MARGIN = 1e-3
SE_BLOCK_KEYS = ("reduction", "squeeze", "gate", "bias", "no_squeeze", "divisor", "placement")

# every full-size model of this family: its parameter count with the default classes
FULL_SIZE = {
    "resnet18": 11_689_512, "se_resnet18": 11_779_624,
    "resnet34": 21_797_672, "se_resnet34": 21_960_416,
    "resnext50_32x4d": 25_028_904, "se_resnext50_32x4d": 27_559_896,
    "resnext101_32x4d": 44_177_704, "se_resnext101_32x4d": 48_955_416,
    "senet154": 115_088_984,
    "resnext_cifar": 204_250, "se_resnext_cifar": 236_506,
}


@pytest.fixture
def once(code_path):
    """Skip the plain-path run of a test that only builds models (no path runs in it)."""
    if code_path == "plain":
        pytest.skip("builds models only; run once, on the fast path")


# -- every full-size model, built once: its parameter count, forward and backward -----------
@pytest.mark.parametrize("name", list(FULL_SIZE))
def test_full_size_model(name, once, rng):
    """The model with its default classes: the exact parameter count, then a float32
    training step on the fast path at the smallest input it takes (32x32): logits and dx
    of the right shapes, finite, a gradient for every parameter. SENet-154 also has its
    state_dict layout checked, and its PyTorch twin's keys and shapes."""
    model = ns.models.build_model(name)
    assert count(model) == FULL_SIZE[name] and model.name == name
    classes = 10 if name.endswith("_cifar") else 1000
    x = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    model.train()
    logits = model(x)
    assert logits.shape == (2, classes) and logits.dtype == np.float32
    dx = model.backward(rng.standard_normal(logits.shape).astype(np.float32))
    assert dx.shape == x.shape and np.all(np.isfinite(dx))
    assert not [n for n, p in model.named_parameters() if p.grad is None]
    model.zero_grad()
    if name == "senet154":
        check_senet154_layout(model)


def test_resnext101_count_by_hand():
    """ResNeXt-101 32x4d = ResNeXt-50 32x4d + 17 more identity blocks in stage 3 (width
    512 = 32 groups of 16, C = 1024): 1x1 1024 -> 512, grouped 3x3 (512 * 16 * 9),
    1x1 512 -> 1024 and their BNs."""
    block = 1024 * 512 + 2 * 512 + 512 * 16 * 9 + 2 * 512 + 512 * 1024 + 2 * 1024
    assert 25_028_904 + 17 * block == FULL_SIZE["resnext101_32x4d"]
    se = 2 * 1024 * 64 + 64 + 1024                      # r = 16, with biases
    assert FULL_SIZE["se_resnext101_32x4d"] - FULL_SIZE["resnext101_32x4d"] == (
        FULL_SIZE["se_resnext50_32x4d"] - FULL_SIZE["resnext50_32x4d"] + 17 * se)


def test_the_se_versions_add_what_the_se_blocks_hold(once):
    """timm's seresnet18/34: SE hidden widths rounded to multiples of 8 (8, 8, 16, 32),
    biases on; divisor=1 gives the paper's max(1, C // r) = 4, 8, 16, 32."""
    model = ns.models.se_resnet18()
    assert [model.layer1[0].se.hidden, model.layer2[0].se.hidden, model.layer3[0].se.hidden,
            model.layer4[0].se.hidden] == [8, 8, 16, 32]
    assert model.options["divisor"] == 8 and model.options["bias"] is True
    assert ns.models.se_resnet18(divisor=1).layer1[0].se.hidden == 4
    assert ns.models.se_resnext50_32x4d().layer1[0].conv2.groups == 32
    assert ns.models.se_resnext50_32x4d().options["divisor"] == 1


# -- the 3x3 placement -----------------------------------------------------------------------
def test_3x3_se_is_as_wide_as_the_inner_convolution(once):
    assert ns.models.se_resnet20(placement="3x3").layer2[0].se.channels == 32     # planes
    assert ns.models.se_resnet50(placement="3x3").layer1[0].se.channels == 64     # width
    assert ns.models.se_resnext_cifar(placement="3x3").layer3[0].se.channels == 64
    assert ns.models.se_resnext50_32x4d(placement="3x3").layer4[0].se.channels == 2048 // 2
    small = senet_from_options("senet154", 5, 0.0, 2, True, {"placement": "3x3"},
                               layers=(1, 1), widths=(4, 8), groups=2, stem_width=4)
    assert small.layer2[0].se.channels == 32                                     # 4 planes


def test_3x3_se_resnet50_has_fewer_se_parameters(once):
    """SE_3x3 on the bottleneck width (64 ... 512), not C_out (256 ... 2048): 1/16 of the
    standard block's weights (TPAMI 2019, Table 15)."""
    base = count(ns.models.resnet50())
    per_stage = [(3, 64), (4, 128), (6, 256), (3, 512)]
    extra = sum(n * (2 * c * (c // 16) + c // 16 + c) for n, c in per_stage)
    assert count(ns.models.se_resnet50(placement="3x3")) - base == extra == 161_196


# -- parity with the PyTorch twins (float64, tests/parity.py) -------------------------------
def _parity():
    """compare_with_torch of tests/parity.py, or a skip where PyTorch is missing."""
    pytest.importorskip("torch")
    from parity import compare_with_torch
    return compare_with_torch


@pytest.mark.parametrize("name, options, shape", [
    ("se_resnet20", {"placement": "3x3", "gate": "tanh", "divisor": 4}, (2, 3, 10, 10)),
    ("se_resnext_cifar", {"placement": "3x3"}, (2, 3, 12, 12)),
    ("se_resnext_cifar", {}, (2, 3, 12, 12)),
    ("resnext_cifar", {}, (2, 3, 10, 10)),
])
def test_cifar_models_match_pytorch(name, options, shape):
    compare = _parity()
    ns.manual_seed(0)
    compare(ns.models.build_model(name, num_classes=5, **options), shape)


@pytest.mark.parametrize("se, placement", [(True, "standard"), (True, "3x3"), (False, None)])
def test_reduced_basic_imagenet_net_matches_pytorch(se, placement):
    """SE-ResNet-18's layout (basic blocks, the 7x7/2 stem and max pool, SE with biases and
    divisor 8) at one block per stage and a quarter of the widths."""
    from npsenet.torch_reference import build_torch_resnet
    compare = _parity()
    spec = ResNetSpec("basic", (1, 1, 1, 1), (16, 32, 64, 128), imagenet_stem=True,
                      num_classes=6, se=se, se_bias=True, se_divisor=8)
    config = se_config("small", 4, 16, True, {"placement": placement, "divisor": 8}) if se \
        else None
    ns.manual_seed(1)
    model = resnet_from_spec(spec, 6, config)
    if se:
        assert model.layer1[0].se.hidden == 8 and model.layer1[0].se.channels == 16
    reference = build_torch_resnet(spec, 6, config and {k: config[k] for k in SE_BLOCK_KEYS})
    compare(model, (2, 3, 32, 32), reference=reference)


@pytest.mark.parametrize("placement", ["standard", "3x3"])
def test_reduced_se_resnext_matches_pytorch(placement):
    """SE-ResNeXt-50's layout (grouped bottlenecks, the ImageNet stem, SE with biases) at
    one block per stage and half the widths, 8 groups of width 4 in stage 1 ("8x8d")."""
    from npsenet.torch_reference import build_torch_resnet
    compare = _parity()
    spec = ResNetSpec("bottleneck", (1, 1, 1, 1), (32, 64, 128, 256), imagenet_stem=True,
                      num_classes=4, se=True, se_bias=True, groups=8, base_width=8)
    config = se_config("small", 4, 16, True, {"placement": placement})
    ns.manual_seed(2)
    model = resnet_from_spec(spec, 4, config)
    assert model.layer1[0].conv2.groups == 8 and model.layer1[0].conv2.in_channels == 32
    reference = build_torch_resnet(spec, 4, {k: config[k] for k in SE_BLOCK_KEYS})
    compare(model, (2, 3, 32, 32), reference=reference)


SMALL_SENET = {"layers": (1, 2, 1, 1), "widths": (4, 8, 8, 8), "groups": 2, "stem_width": 8}


@pytest.mark.parametrize("options", [{}, {"placement": "3x3"},
                                     {"placement": "identity", "se_stages": [2, 4]},
                                     {"placement": "post", "no_squeeze": True}])
def test_reduced_senet_matches_pytorch(options):
    """SENet-154's builder at (1, 2, 1, 1) blocks of planes 4, 8, 8, 8, 2 groups, stem 8:
    the three-convolution stem, the ceil-mode pool (an odd 17x17 map at a 33x33 input), the
    1x1 and 3x3 projection shortcuts."""
    from npsenet.torch_reference.senet import build_torch_senet
    compare = _parity()
    ns.manual_seed(3)
    model = senet_from_options("senet154", 5, 0.0, 2, True, options, **SMALL_SENET)
    reference = build_torch_senet(num_classes=5, drop_rate=0.0,
                                  se={k: model.options[k] for k in SE_BLOCK_KEYS},
                                  se_stages=model.options["se_stages"], **SMALL_SENET)
    compare(model, (2, 3, 33, 33), reference=reference)


def check_senet154_layout(model):
    """SENet-154's keys (npsenet's names, not timm's legacy ones), shapes and layout, and
    its PyTorch twin's keys and shapes (built on the meta device: no memory)."""
    keys = model.state_dict()
    for key in ["conv1.weight", "bn1.weight", "conv2.weight", "bn2.running_var",
                "conv3.weight", "bn3.bias", "layer1.0.conv1.weight", "layer1.0.bn1.weight",
                "layer1.0.conv2.weight", "layer1.0.conv3.weight", "layer1.0.bn3.running_mean",
                "layer1.0.se.fc1.weight", "layer1.0.se.fc1.bias", "layer1.0.se.fc2.bias",
                "layer1.0.downsample.0.weight", "layer1.0.downsample.1.weight",
                "layer4.2.se.fc2.weight", "layer3.35.conv2.weight", "fc.weight", "fc.bias"]:
        assert key in keys, key
    assert not any(k.startswith(("layer0", "last_linear")) or "se_module" in k for k in keys)
    assert keys["conv3.weight"].shape == (128, 64, 3, 3)
    assert keys["layer1.0.conv1.weight"].shape == (128, 128, 1, 1)
    assert keys["layer1.0.conv2.weight"].shape == (256, 2, 3, 3)        # 64 groups
    assert keys["layer1.0.downsample.0.weight"].shape == (256, 128, 1, 1)
    assert keys["layer2.0.downsample.0.weight"].shape == (512, 256, 3, 3)
    assert keys["layer4.0.se.fc1.weight"].shape == (128, 2048)
    assert keys["fc.weight"].shape == (1000, 2048)
    assert [len(getattr(model, f"layer{i}")) for i in (1, 2, 3, 4)] == [3, 8, 36, 3]
    assert model.maxpool.ceil_mode and model.dropout.p == 0.2
    assert ns.models.registry.model_info("senet154").plain_twin is None
    try:
        import torch
    except ImportError:
        return
    from npsenet.torch_reference import build_torch_model
    with torch.device("meta"):
        theirs = build_torch_model("senet154").state_dict()
    assert set(theirs) == set(keys)
    for key, value in keys.items():
        assert tuple(theirs[key].shape) == tuple(value.shape), key


def test_senet_pool_rounds_up(rng):
    """64x64 -> 32 after the stride-2 stem -> ceil((32 - 3) / 2) + 1 = 16 (floor gives 15)."""
    model = SENet(layers=(1,), widths=(2,), groups=1, stem_width=2, num_classes=3,
                  drop_rate=0.0)
    seen = {}
    forward = model.layer1.forward

    def spy(x):
        seen["shape"] = x.shape
        return forward(x)

    model.layer1.forward = spy
    model(rng.standard_normal((1, 3, 64, 64)).astype(np.float32))
    assert seen["shape"] == (1, 4, 16, 16)


def test_senet_dropout_is_off_in_eval_and_seeded(rng):
    x = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    ns.manual_seed(4)
    a = senet_from_options("senet154", 3, 0.5, 2, True, {}, **SMALL_SENET)
    ns.manual_seed(4)
    b = senet_from_options("senet154", 3, 0.5, 2, True, {}, **SMALL_SENET)
    np.testing.assert_array_equal(a(x), b(x))                  # same masks from the seed
    a.eval()
    np.testing.assert_array_equal(a(x), a(x))


@pytest.mark.parametrize("make, words", [
    (lambda: SEBottleneck(8, 3, groups=4), "SEBottleneck: groups must divide 2 \\* planes"),
    (lambda: SENet(layers=(1, 1), widths=(4,)), "one entry per stage"),
    (lambda: ns.models.senet154(placement="inside"), "placement must be one of"),
    (lambda: SENet(layers=(1,), widths=(2,), groups=1, stem_width=2, drop_rate=1.0),
     "Dropout: p must be"),
    (lambda: ns.models.se_resnet18(divisor=0), "divisor"),
])
def test_bad_arguments_raise_clear_errors(make, words):
    with pytest.raises(ValueError, match=words):
        make()


# -- gradient checks of SENet-154's block (float64, random upstream gradient) ---------------
@pytest.fixture
def relu_margin(monkeypatch):
    """A list collecting min |x| of every ReLU forward (how close a pass came to a kink)."""
    seen = []
    forward = ns.nn.ReLU.forward

    def recording_forward(self, x):
        seen.append(float(np.abs(x).min()))
        return forward(self, x)

    monkeypatch.setattr(ns.nn.ReLU, "forward", recording_forward)
    return seen


def kink_free_input(layer, shape, rng, relu_margin):
    for _ in range(100):
        x = rng.standard_normal(shape)
        relu_margin.clear()
        layer(x)
        if min(relu_margin, default=1.0) > KINK_MARGIN:
            return x
    raise AssertionError("no input kept the ReLUs off their kinks; lower KINK_MARGIN")


@pytest.mark.parametrize("placement, stride, downsample_kernel", [
    (p, 2, 3) for p in ns.models.PLACEMENTS] + [("standard", 1, 1)])
def test_se_bottleneck_gradients(placement, stride, downsample_kernel, rng, relu_margin):
    ns.manual_seed(5)
    se_layer = partial(ns.nn.SEBlock, reduction=2, bias=True)
    block = SEBottleneck(4, 2, stride, se_layer, placement, groups=2,
                         downsample_kernel=downsample_kernel).to(dtype=np.float64)
    assert block.downsample[0].kernel_size == downsample_kernel
    errors = check_layer(block, kink_free_input(block, (2, 4, 4, 4), rng, relu_margin))
    assert max(errors.values()) < COMPOSITE_TOL, errors


# -- the command line ------------------------------------------------------------------------
def test_cli_placement_3x3_and_divisor():
    import argparse

    from npsenet.cli.args import add_model_arguments, model_from_args
    parser = add_model_arguments(argparse.ArgumentParser(prog="test"))
    args = parser.parse_args(["--model", "se_resnet18", "--placement", "3x3", "--divisor", "4"])
    model = model_from_args(args, 10)
    assert model.options["placement"] == "3x3" and model.options["divisor"] == 4
    assert model.layer4[0].se.channels == 512 and model.layer4[0].se.hidden == 32
    with pytest.raises(SystemExit):
        parser.parse_args(["--divisor", "0"])
    with pytest.raises(ValueError, match="--divisor.*only to SE models"):
        model_from_args(parser.parse_args(["--model", "resnet18", "--divisor", "8"]), 10)


@pytest.mark.parametrize("name, twin, size", [
    ("se_resnet18", "resnet18", "32"), ("resnext50_32x4d", "se_resnext50_32x4d", "32"),
    ("se_resnext_cifar", "resnext_cifar", "16"),
])
def test_summary_compare(name, twin, size, capsys, once):
    from npsenet.cli import main
    assert main(["summary", "--model", name, "--compare", "--input-size", size]) == 0
    out = capsys.readouterr().out
    for model in (name, twin):
        assert f"{FULL_SIZE[model]:,}" in out
    assert "SE adds" in out


def test_summary_compare_of_senet154_sets_it_beside_itself_without_se(capsys, once):
    """SENet-154 has no registered twin without SE: --compare builds it with se_stages=[]."""
    from npsenet.cli import main
    assert main(["summary", "--model", "senet154", "--compare", "--input-size", "32"]) == 0
    out = capsys.readouterr().out
    assert "senet154 without SE (se_stages=[])" in out and f"{FULL_SIZE['senet154']:,}" in out
    se_row = next(line for line in out.splitlines() if line.startswith("SE adds"))
    assert "(+" in se_row
