"""The Inception side of the SE family: BN-Inception and SE-BN-Inception (the official SE
release's layout), Inception-ResNet-v2 and SE-Inception-ResNet-v2 (timm's), their CIFAR
versions, and the two layers they need beyond ns.nn (FactorizedConv2d for the 1x7 / 7x1 /
1x3 / 3x1 kernels, AvgPool2d(count_include_pad=False) for Mixed_5b's pool): exact parameter counts and
MACs, forward and backward of every full-size model, float64 parity with the PyTorch twins
(the full SE-BN-Inception at 64x64; Inception-ResNet-v2 at 1/16 of its widths and one block
per stage), gradient checks of the new layers and the errors they raise.
"""
from __future__ import annotations

from functools import partial

import numpy as np
import pytest

import npsenet as ns
from npsenet.gradcheck import check_layer
from npsenet.models.inception import BNInception, InceptionModule, BN_INCEPTION_MODULES
from npsenet.models.inception_resnet import InceptionResNetV2
from npsenet.nn.factorized_conv import FactorizedConv2d

from helpers import count, normwise_error, once

pytestmark = pytest.mark.usefixtures("code_path")   # on the fast and the plain path

GRAD_TOL = 1e-7
SE = {"reduction": 4, "squeeze": "avg", "gate": "sigmoid", "bias": True, "no_squeeze": False,
      "divisor": 1}

# every registered model of the two families: its parameter count with the default classes
FULL_SIZE = {
    "bn_inception": 11_285_224, "se_bn_inception": 11_931_622,
    "inception_resnet_v2": 55_843_464, "se_inception_resnet_v2": 64_387_444,
    "bn_inception_cifar": 120_090, "se_bn_inception_cifar": 127_674,
    "inception_resnet_v2_cifar": 232_406, "se_inception_resnet_v2_cifar": 245_238,
}
# the smallest square input each ImageNet network takes (32 for the CIFAR ones)
SMALLEST = {"bn_inception": 64, "se_bn_inception": 64, "inception_resnet_v2": 75,
            "se_inception_resnet_v2": 75}


@pytest.fixture(params=list(FULL_SIZE))
def full_model(request, zoo):
    """(name, the model with its default classes)."""
    return request.param, zoo(request.param)


def _parity():
    """compare_with_torch of tests/parity.py, or a skip where PyTorch is missing."""
    pytest.importorskip("torch")
    from parity import compare_with_torch
    return compare_with_torch


# -- counts, keys, forward and backward at full size ---------------------------------------
def test_full_size_parameter_counts_are_exact(full_model, code_path):
    once(code_path)
    name, model = full_model
    assert count(model) == FULL_SIZE[name]
    assert model.name == name and model.options["num_classes"] == (
        10 if name.endswith("_cifar") else 1000)


def test_full_size_forward_backward(full_model, code_path, rng):
    """Every registered model, float32 on the fast path, at the smallest input it takes:
    logits and dx of the right shapes, finite, a gradient for every parameter."""
    if code_path == "plain":
        pytest.skip("full-size models run on the fast path only (too slow on the plain one)")
    name, model = full_model
    size = SMALLEST.get(name, 32)
    x = rng.standard_normal((2, 3, size, size)).astype(np.float32)
    model.train()
    logits = model(x)
    classes = 10 if name.endswith("_cifar") else 1000
    assert logits.shape == (2, classes) and logits.dtype == np.float32
    dx = model.backward(rng.standard_normal(logits.shape).astype(np.float32))
    assert dx.shape == x.shape and np.all(np.isfinite(dx))
    assert not [n for n, p in model.named_parameters() if p.grad is None]
    model.zero_grad()


def test_counts_by_hand(zoo, code_path):
    """Cadene's bninception (11,295,240, "about 11.3M") is these layers plus a bias in each
    of the 69 convolutions; SE-BN-Inception adds 2 C (C // 16) + C // 16 + C per module."""
    once(code_path)
    model = zoo("bn_inception")
    convs = [m for m in model.modules() if isinstance(m, ns.nn.Conv2d)]
    assert len(convs) == 69
    assert FULL_SIZE["bn_inception"] + sum(c.out_channels for c in convs) == 11_295_240
    widths = [getattr(model, name).out_channels for name in model.module_names]
    assert widths == [256, 320, 576, 576, 576, 608, 608, 1056, 1024, 1024]
    se = sum(2 * c * (c // 16) + c // 16 + c for c in widths)
    assert FULL_SIZE["se_bn_inception"] - FULL_SIZE["bn_inception"] == se
    se_irv2 = sum(n * (2 * c * (c // 16) + c // 16 + c) for n, c in
                  [(10, 320), (20, 1088), (10, 2080)])
    assert FULL_SIZE["se_inception_resnet_v2"] - FULL_SIZE["inception_resnet_v2"] == se_irv2


def test_state_dict_keys_and_layers(zoo, code_path):
    once(code_path)
    keys = zoo("se_bn_inception").state_dict()
    for key in ["conv1.conv.weight", "conv1.bn.running_var", "conv2_reduce.conv.weight",
                "inception_3a.mixed.branch_1x1.conv.weight",
                "inception_3a.mixed.branch_double_3x3.2.bn.bias",
                "inception_3a.mixed.branch_pool.1.conv.weight", "inception_3a.se.fc1.bias",
                "inception_3c.mixed.branch_3x3.1.conv.weight", "inception_5b.se.fc2.weight",
                "fc.weight"]:
        assert key in keys, key
    assert "inception_3c.mixed.branch_1x1.conv.weight" not in keys
    assert "conv1.conv.bias" not in keys                       # no convolution biases
    assert keys["inception_3a.se.fc1.weight"].shape == (16, 256)   # the prototxt's 16
    assert keys["conv1.conv.weight"].shape == (64, 3, 7, 7)

    model = zoo("se_inception_resnet_v2")
    keys = model.state_dict()
    assert keys["repeat_1.0.branch.mixed.branch1.1.conv.weight"].shape == (160, 128, 1, 7)
    assert keys["repeat_1.0.branch.mixed.branch1.2.conv.weight"].shape == (192, 160, 7, 1)
    assert keys["repeat_2.0.branch.mixed.branch1.1.conv.weight"].shape == (224, 192, 1, 3)
    assert keys["repeat.9.branch.conv2d.bias"].shape == (320,)   # the up-projection's bias
    assert keys["block8.branch.se.fc1.weight"].shape == (130, 2080)
    assert keys["classif.weight"].shape == (1000, 1536)
    assert model.conv2d_1a.bn.eps == 1e-3
    assert [b.scale for b in model.repeat][:1] == [0.17] and model.repeat_1[0].scale == 0.10
    assert model.repeat_2[0].scale == 0.20 and model.repeat_2[0].activation
    assert model.block8.scale == 1.0 and not model.block8.activation
    assert len(model.repeat) == 10 and len(model.repeat_1) == 20 and len(model.repeat_2) == 9
    se_blocks = [n for n, m in model.named_modules() if isinstance(m, ns.nn.SEBlock)]
    assert len(se_blocks) == 40 and all(n.endswith("branch.se") for n in se_blocks)
    assert sum(isinstance(m, ns.nn.SEBlock) for m in zoo("se_bn_inception").modules()) == 10


def test_registry_knows_input_sizes_and_twins(code_path):
    once(code_path)
    info = ns.models.registry.model_info
    assert info("inception_resnet_v2").input_size == 299
    assert info("se_inception_resnet_v2").plain_twin == "inception_resnet_v2"
    assert info("se_bn_inception").input_size == 224
    assert info("se_bn_inception_cifar").plain_twin == "bn_inception_cifar"
    assert info("inception_resnet_v2_cifar").input_size == 32
    assert ns.models.se_bn_inception().options["bias"] is True
    assert ns.models.se_bn_inception_cifar().options["bias"] is False
    model = ns.models.inception_resnet_v2_cifar(drop_rate=0.2)
    assert model.drop.p == 0.2 and model.options["drop_rate"] == 0.2


def test_summary_macs(zoo, code_path):
    """The MACs bn_inception's docstring quotes at 224x224; SE adds the squeeze, FC
    layers and scale. Inception-ResNet-v2 at its smallest input: the 1x7, 7x1, 1x3 and 3x1
    convolutions counted as C_out H' W' C_in kh kw (at 299x299 the summary gives the
    docstring's 13,171,528,256, 2,264,227,840 of them in these kernels)."""
    once(code_path)
    bn = ns.summary(zoo("bn_inception"), (1, 3, 224, 224))
    assert bn.total_macs == 2_044_134_272
    assert sum(r.macs for r in bn.rows if r.kind == "Conv2d") == 2_031_576_064
    # SE per module: squeeze and scale one per element, W1 and W2 C (C // 16) each (at
    # 224x224 this is 3,000,768, the docstring's +0.15%)
    se = ns.summary(zoo("se_bn_inception"), (1, 3, 64, 64))
    widths = [256, 320, 576, 576, 576, 608, 608, 1056, 1024, 1024]
    sizes = [8, 8, 4, 4, 4, 4, 4, 2, 2, 2]
    assert se.se_macs == sum(2 * c * s * s + 2 * c * (c // 16) for c, s in zip(widths, sizes))
    assert se.se_params == FULL_SIZE["se_bn_inception"] - FULL_SIZE["bn_inception"]
    irv2 = ns.summary(zoo("inception_resnet_v2"), (1, 3, 75, 75))
    rows = [r for r in irv2.rows if r.kind == "FactorizedConv2d"]
    assert len(rows) == 2 * 20 + 2 * 10
    # at 75x75 Block17 runs at 3x3 and Block8 at 1x1
    per_block17 = 3 * 3 * (160 * 128 * 7 + 192 * 160 * 7)
    per_block8 = 1 * 1 * (224 * 192 * 3 + 256 * 224 * 3)
    assert sum(r.macs for r in rows) == 20 * per_block17 + 10 * per_block8


# -- parity with the PyTorch twins (float64, tests/parity.py) -------------------------------
def test_wide_se_bn_inception_matches_pytorch(code_path):
    """All ten SE-Inception modules at a quarter of the paper's widths, 64x64 (the modules at 8, 4
    and 2 pixels; the stem's ceil-mode pools see 32 and 16), on the fast path; the plain
    path runs the same builder at 1/8 width (test_reduced_bn_inception_matches_pytorch).
    (The full widths pass too, at 16 times the cost.)"""
    from npsenet.torch_reference.inception import build_torch_bn_inception
    if code_path == "plain":
        pytest.skip("the wide network in float64 on the fast path only")
    compare = _parity()
    ns.manual_seed(0)
    se = {"reduction": 16, "squeeze": "avg", "gate": "sigmoid", "bias": True,
          "no_squeeze": False, "divisor": 1}
    model = BNInception(7, partial(ns.nn.SEBlock, **se), width_divisor=4)
    compare(model, (2, 3, 64, 64), reference=build_torch_bn_inception(7, se, 4))


@pytest.mark.parametrize("name", ["se_bn_inception_cifar", "se_inception_resnet_v2_cifar"])
def test_cifar_models_match_pytorch(name):
    """The registered CIFAR networks at 16x16 (their stride-2 modules see 16 and 8, or
    Mixed_6a and 7a give 7 and 3 pixels)."""
    compare = _parity()
    ns.manual_seed(1)
    compare(ns.models.build_model(name, num_classes=5), (2, 3, 16, 16))


def test_reduced_bn_inception_matches_pytorch():
    """The plain network at 1/8 width, an odd 63x63 input (the stem's ceil-mode pools
    see 32 and 16), max squeeze and tanh gate in the SE variant's options."""
    from npsenet.torch_reference.inception import build_torch_bn_inception
    compare = _parity()
    ns.manual_seed(2)
    model = BNInception(6, None, width_divisor=8)
    compare(model, (2, 3, 63, 63), reference=build_torch_bn_inception(6, None, 8))
    options = dict(SE, squeeze="max", gate="tanh")
    model = BNInception(6, partial(ns.nn.SEBlock, **options), width_divisor=8,
                        modules=("3a", "3c", "5b"))
    compare(model, (2, 3, 64, 64), reference=build_torch_bn_inception(
        6, options, 8, modules=("3a", "3c", "5b")))


@pytest.mark.parametrize("se", [None, SE, dict(SE, no_squeeze=True, bias=False)])
def test_reduced_inception_resnet_v2_matches_pytorch(se):
    """The ImageNet stem (no padding, stride-2 pools) at its smallest input, 75x75, 1/16 of
    every width, one Block35, Block17 and Block8 before the final one."""
    from npsenet.torch_reference.inception_resnet import build_torch_inception_resnet_v2
    compare = _parity()
    ns.manual_seed(3)
    model = InceptionResNetV2(7, partial(ns.nn.SEBlock, **se) if se else None,
                              width_divisor=16, repeats=(1, 1, 1))
    reference = build_torch_inception_resnet_v2(7, se, width_divisor=16, repeats=(1, 1, 1))
    compare(model, (2, 3, 75, 75), reference=reference)


def test_full_size_twins_have_the_same_keys_and_shapes(zoo, code_path):
    once(code_path)
    torch = pytest.importorskip("torch")
    from npsenet.torch_reference import build_torch_model
    for name in ("se_inception_resnet_v2", "se_bn_inception"):
        with torch.device("meta"):                      # no memory for the weights
            twin = build_torch_model(name)
        ours = zoo(name).state_dict()
        theirs = twin.state_dict()
        assert set(theirs) == set(ours)
        assert all(tuple(theirs[k].shape) == tuple(v.shape) for k, v in ours.items())


def test_se_acts_before_the_residual_scaling(rng):
    """y = ReLU(x + λ SE(f(x))): the SE block sees the up-projection's output unscaled."""
    ns.manual_seed(4)
    model = InceptionResNetV2(3, partial(ns.nn.SEBlock, **SE), width_divisor=16,
                              repeats=(1, 0, 0), cifar_stem=True).to(dtype=np.float64)
    block = model.repeat[0]
    x = rng.standard_normal((2, 20, 6, 6))
    f = block.branch.conv2d(block.branch.mixed(x))
    expected = np.maximum(x + 0.17 * block.branch.se(f), 0)
    assert normwise_error(block(x), expected) < 1e-12


# -- the layers the family adds --------------------------------------------------------------
@pytest.mark.parametrize("kernel, padding, bias", [((1, 7), (0, 3), True), ((7, 1), (3, 0), False),
                                                   ((3, 1), (1, 0), True), ((1, 3), 0, True),
                                                   ((2, 3), (1, 0), False)])
def test_factorized_conv_matches_pytorch(kernel, padding, bias, rng):
    torch = pytest.importorskip("torch")
    layer = FactorizedConv2d(4, 5, kernel, padding, bias=bias).to(dtype=np.float64)
    x = rng.standard_normal((2, 4, 6, 7))
    y = layer(x)
    dy = rng.standard_normal(y.shape)
    dy_before = dy.copy()
    dx = layer.backward(dy)
    assert np.array_equal(dy, dy_before)                       # dout is not written into
    ref = torch.nn.Conv2d(4, 5, kernel, padding=padding, bias=bias).double()
    ref.weight.data = torch.from_numpy(layer.weight.data.copy())
    if bias:
        ref.bias.data = torch.from_numpy(layer.bias.data.copy())
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = ref(xt)
    (yt * torch.from_numpy(dy)).sum().backward()
    assert normwise_error(y, yt) < 1e-12
    assert normwise_error(dx, xt.grad) < 1e-12
    assert normwise_error(layer.weight.grad, ref.weight.grad) < 1e-12
    if bias:
        assert normwise_error(layer.bias.grad, ref.bias.grad) < 1e-12


def test_factorized_conv_gradients_are_numerical(rng):
    layer = FactorizedConv2d(3, 2, (1, 3), (0, 1)).to(dtype=np.float64)
    errors = check_layer(layer, rng.standard_normal((2, 3, 4, 5)))
    assert max(errors.values()) < GRAD_TOL, errors


def test_factorized_conv_errors():
    with pytest.raises(ValueError, match="kernel_size must be an int or a pair"):
        FactorizedConv2d(3, 4, (1, 3, 3))
    with pytest.raises(ValueError, match="must be an integer >= 1"):
        FactorizedConv2d(3, 4, (0, 3))
    layer = FactorizedConv2d(3, 4, (1, 7))
    with pytest.raises(ValueError, match="smaller than the 1x7 kernel"):
        layer(np.zeros((1, 3, 5, 5), np.float32))
    with pytest.raises(ValueError, match="expected 3 channels"):
        layer(np.zeros((1, 2, 9, 9), np.float32))
    y = layer(np.zeros((1, 3, 9, 9), np.float32))
    with pytest.raises(ValueError, match="expected dout of shape"):
        layer.backward(np.zeros((1, 4, 9, 9), np.float32))
    layer.backward(np.zeros_like(y))
    assert "kernel_size=(1, 7)" in repr(layer)
    with pytest.raises(ValueError, match="takes stride 1 only"):
        ns.models.inception.BasicConv2d(3, 4, (1, 7), stride=2, padding=(0, 3))


def test_avg_pool_exclude_pad_matches_pytorch(rng):
    torch = pytest.importorskip("torch")
    layer = ns.nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    x = rng.standard_normal((2, 3, 5, 6))
    y = layer(x)
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = torch.nn.AvgPool2d(3, 1, 1, count_include_pad=False)(xt)
    (yt * torch.from_numpy(dy)).sum().backward()
    assert normwise_error(y, yt) < 1e-12 and normwise_error(dx, xt.grad) < 1e-12
    errors = check_layer(ns.nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False),
                         rng.standard_normal((1, 2, 5, 5)))
    assert max(errors.values()) < GRAD_TOL, errors


# -- errors ----------------------------------------------------------------------------------
def test_errors_say_what_to_do():
    with pytest.raises(ValueError, match="not divisible by width_divisor"):
        BNInception(10, width_divisor=3)
    with pytest.raises(ValueError, match="not divisible by width_divisor"):
        InceptionResNetV2(10, width_divisor=32)
    with pytest.raises(ValueError, match="modules must be distinct names"):
        BNInception(10, modules=("3a", "6a"))
    with pytest.raises(ValueError, match="repeats must be three counts"):
        InceptionResNetV2(10, repeats=(1, 1))
    with pytest.raises(ValueError, match="unknown SE option"):
        ns.models.se_inception_resnet_v2_cifar(placement="pre")
    with pytest.raises(ValueError, match="even height"):
        module = InceptionModule(16, BN_INCEPTION_MODULES[2], width_divisor=8)   # 3c
        module(np.zeros((2, 16, 7, 7), np.float32))
    with pytest.raises(ValueError, match="SE options need an SE model"):
        ns.models.build_model("bn_inception", reduction=8)
