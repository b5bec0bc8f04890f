"""The ResNet / SE-ResNet family: parameter counts, state_dict keys, every SE option, the
registry and the spec table, grouped bottlenecks, and gradient checks of the blocks and of
a small network end to end."""
from __future__ import annotations

import inspect
from functools import partial

import numpy as np
import pytest

import npsenet as ns
from npsenet.gradcheck import check_layer, numerical_gradient
from npsenet.models import PLACEMENTS, BasicBlock, Bottleneck, ResNet, registry
from npsenet.models.specs import SPECS

from helpers import normwise_error

pytestmark = pytest.mark.usefixtures("code_path")   # on the fast and the plain path

GRAD_TOL = 1e-7
# Blocks and networks compose up to ~30 layers: central differences then carry a round-off
# of ~1e-16 |L| / h in each entry, which the elementwise relative error divides by the
# smallest gradient entries (~1e-5). A correct backward stays near 1e-8..1e-7; a wrong one
# is off by far more than 1e-6.
COMPOSITE_TOL = 1e-6
NORMWISE_TOL = 1e-8


def count(model):
    return sum(p.size for p in model.parameters())


def se_layer(**overrides):
    """The SE layer factory (channels -> SEBlock) that ResNet and the blocks take."""
    options = {"reduction": 2, "squeeze": "avg", "gate": "sigmoid", "bias": True,
               "no_squeeze": False}
    options.update(overrides)
    return partial(ns.nn.SEBlock, **options)


# -- parameter counts (docs/contract.md) ---------------------------------------------------
@pytest.mark.parametrize("build, expected", [
    (lambda: ns.models.se_resnet20(), 274_490),
    (lambda: ns.models.resnet20(), 272_474),
    (lambda: ns.models.se_resnet56(), 861_818),
    (lambda: ns.models.se_resnet50(), 28_088_024),
    (lambda: ns.models.se_resnet50(bias=False), 28_071_976),
    (lambda: ns.models.resnet50(), 25_557_032),
])
def test_parameter_counts_match_the_spec(build, expected):
    assert count(build()) == expected


def test_se_hidden_width_and_cifar_se_count():
    # SE adds 2 C (C // 16) weights per block, no biases on CIFAR: 3 blocks per stage
    expected = 3 * sum(2 * c * max(1, c // 16) for c in (16, 32, 64))
    assert count(ns.models.se_resnet20()) - count(ns.models.resnet20()) == expected
    model = ns.models.se_resnet20(reduction=4)
    assert model.layer1[0].se.fc1.weight.shape == (4, 16)
    assert model.layer3[2].se.fc2.weight.shape == (64, 16)


def test_deeper_models_grow_as_expected():
    # each extra block per stage adds the same number of parameters
    step = count(ns.models.resnet32()) - count(ns.models.resnet20())   # 2 blocks per stage
    assert count(ns.models.resnet56()) - count(ns.models.resnet32()) == 2 * step
    assert count(ns.models.resnet110()) - count(ns.models.resnet56()) == 9 * step / 2


# -- state_dict keys (torchvision's) -------------------------------------------------------
def test_state_dict_keys_are_torchvisions():
    keys = ns.models.se_resnet20().state_dict()
    for key in ["conv1.weight", "bn1.weight", "bn1.running_var", "bn1.num_batches_tracked",
                "layer1.0.conv1.weight", "layer1.0.bn2.bias", "layer1.0.se.fc1.weight",
                "layer1.0.se.fc2.weight", "layer2.0.downsample.0.weight",
                "layer2.0.downsample.1.running_mean", "layer3.2.conv2.weight",
                "fc.weight", "fc.bias"]:
        assert key in keys, key
    assert "layer1.0.se.fc1.bias" not in keys          # CIFAR SE has no biases by default
    assert "layer1.0.downsample.0.weight" not in keys  # no projection where shapes agree
    assert keys["layer1.0.se.fc1.weight"].shape == (1, 16)
    assert keys["bn1.num_batches_tracked"].dtype == np.int64

    keys50 = ns.models.se_resnet50().state_dict()
    for key in ["layer1.0.conv3.weight", "layer1.0.bn3.running_var", "layer1.0.downsample.0.weight",
                "layer4.2.se.fc1.bias", "layer4.2.se.fc2.weight", "fc.bias"]:
        assert key in keys50, key
    assert keys50["layer4.2.se.fc1.weight"].shape == (128, 2048)
    assert keys50["fc.weight"].shape == (1000, 2048)
    assert keys50["conv1.weight"].shape == (64, 3, 7, 7)


def test_initialisation_is_torchvisions():
    ns.manual_seed(0)
    model = ns.models.se_resnet56()
    w = model.layer3[0].conv2.weight.data                 # (64, 64, 3, 3): fan_out = 576
    assert abs(w.std() - np.sqrt(2 / 576)) < 0.05 * np.sqrt(2 / 576)
    bn = model.layer2[1].bn1
    assert np.all(bn.weight.data == 1) and np.all(bn.bias.data == 0)
    bound = 1 / np.sqrt(64)                               # fc: PyTorch's default
    assert np.abs(model.fc.weight.data).max() <= bound
    assert model.conv1.weight.dtype == np.float32


# -- names, options, rebuilding ----------------------------------------------------------
def test_every_model_name_builds_with_name_and_options(code_path):
    if code_path == "plain":   # building does not depend on the path (VGG-16: 138 M weights)
        pytest.skip("independent of the code path: checked on the fast path")
    import json
    for name in ns.models.MODEL_NAMES:
        if name.endswith(("101", "152", "101_32x4d")):
            continue  # large; the factories are the same code as for 50
        model = ns.models.build_model(name)
        assert model.name == name
        json.dumps(model.options)
        rebuilt = ns.models.build_model(name, **model.options)
        assert rebuilt.options == model.options
        assert count(rebuilt) == count(model)


def test_options_record_everything():
    model = ns.models.se_resnet20(num_classes=100, reduction=8, squeeze="max", gate="tanh",
                                  bias=True, placement="pre", se_stages=(3, 1), no_squeeze=True)
    assert model.options == {"num_classes": 100, "reduction": 8, "squeeze": "max",
                             "gate": "tanh", "bias": True, "placement": "pre",
                             "se_stages": [1, 3], "no_squeeze": True, "divisor": 1}
    assert ns.models.resnet20(num_classes=7).options == {"num_classes": 7}
    assert ns.models.se_resnet50().options["bias"] is True
    assert ns.models.se_resnet20().options["bias"] is False


@pytest.mark.parametrize("bad, words", [
    ({"placement": "inside"}, "placement"),
    ({"se_stages": [0]}, "se_stages"),
    ({"se_stages": [4]}, "se_stages"),
    ({"reduction": 0}, "reduction"),
    ({"squeeze": "median"}, "squeeze"),
    ({"gate": "softmax"}, "gate"),
    ({"dropout": 0.5}, "unknown"),
])
def test_bad_options_raise_clear_errors(bad, words):
    with pytest.raises(ValueError, match=words):
        ns.models.se_resnet20(**bad)


def test_unknown_model_name():
    with pytest.raises(ValueError, match="unknown model"):
        ns.models.build_model("se_resnet19")
    with pytest.raises(ValueError, match="SE options need an SE model"):
        ns.models.build_model("resnet20", reduction=8)


# -- the registry and the spec table -------------------------------------------------------
@pytest.fixture
def scratch_registry(monkeypatch):
    """The registry as it is, restored after the test (what a test registers goes away)."""
    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))


def test_a_registered_factory_builds_by_name(scratch_registry):
    @ns.models.register_model
    def tiny_resnet(num_classes=10):
        """One basic block per stage."""
        model = ResNet(BasicBlock, (1, 1, 1), (4, 8, 16), num_classes)
        model.name, model.options = "tiny_resnet", {"num_classes": num_classes}
        return model

    assert ns.models.model_names()[-1] == "tiny_resnet"
    assert ns.models.model_names()[:len(ns.models.MODEL_NAMES)] == ns.models.MODEL_NAMES
    model = ns.models.build_model("tiny_resnet", num_classes=3)
    assert model.fc.weight.shape == (3, 16)
    assert ns.models.build_model(model.name, **model.options).options == {"num_classes": 3}
    with pytest.raises(ValueError, match="tiny_resnet: .*unexpected keyword argument 'depth'"):
        ns.models.build_model("tiny_resnet", depth=8)


def test_register_model_takes_a_name_and_refuses_a_taken_one(scratch_registry):
    def factory(num_classes=10):
        return ns.models.resnet20(num_classes)

    assert ns.models.register_model(name="another_resnet20")(factory) is factory
    assert ns.models.build_model("another_resnet20", num_classes=4).fc.out_features == 4
    with pytest.raises(ValueError, match="'resnet20' is already registered .*another name"):
        ns.models.register_model(name="resnet20")(factory)


def test_unknown_model_names_list_the_registered_ones(scratch_registry):
    with pytest.raises(ValueError, match=r"unknown model 'tiny'; choose one of se_resnet20, "
                                         r"resnet20, .*, resnet152, .*\."):
        ns.models.build_model("tiny")


def test_model_names_keep_their_order():
    depths = [20, 32, 56, 110, 50, 101, 152]
    expected = tuple(name for d in depths for name in (f"se_resnet{d}", f"resnet{d}"))
    assert tuple(SPECS)[:len(expected)] == expected                # the spec table's first
    assert ns.models.MODEL_NAMES[:len(SPECS)] == tuple(SPECS)      # registered first


@pytest.mark.parametrize("name", list(SPECS))
def test_every_spec_has_a_factory_that_defaults_as_the_spec_says(name):
    spec = SPECS[name]
    factory = getattr(ns.models, name)
    defaults = {k: v.default for k, v in inspect.signature(factory).parameters.items()
                if v.default is not inspect.Parameter.empty}
    assert registry.model_factory(name) is factory and factory.__name__ == name
    assert defaults["num_classes"] == spec.num_classes
    assert ("bias" in defaults) == spec.se == name.startswith("se_")
    if spec.se:
        assert defaults["bias"] is spec.se_bias and defaults["reduction"] == 16
        assert defaults.get("divisor", 1) == spec.se_divisor
    digits = name.removeprefix("se_").lstrip("resnxt").split("_")[0]   # "50" of resnext50_32x4d
    depth = 29 if name.endswith("resnext_cifar") else int(digits)      # ResNeXt-29
    per_block = 2 if spec.block == "basic" else 3          # weighted layers in a block
    assert depth == per_block * sum(spec.layers) + 2
    assert len(factory.__doc__.splitlines()) > 2


def test_a_spec_lookup_of_an_unknown_name_is_a_clear_error():
    from npsenet.models.specs import spec_for
    with pytest.raises(ValueError, match="no architecture spec for model 'resnet19'"):
        spec_for("resnet19")


# -- every SE option runs forward and backward ------------------------------------------
@pytest.mark.parametrize("options", [
    {"placement": p} for p in PLACEMENTS] + [
    {"squeeze": "max"}, {"gate": "tanh"}, {"gate": "relu"}, {"bias": True},
    {"se_stages": [2]}, {"no_squeeze": True}, {"reduction": 64}])
def test_se_resnet20_forward_backward_shapes(options, rng):
    model = ns.models.se_resnet20(**options)
    x = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    logits = model(x)
    assert logits.shape == (2, 10) and logits.dtype == np.float32
    dx = model.backward(rng.standard_normal((2, 10)).astype(np.float32))
    assert dx.shape == x.shape
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, name
    gates = ns.models.gate_values(model)
    stages = options.get("se_stages", [1, 2, 3])
    assert sorted({k.split(".")[0] for k in gates}) == [f"layer{s}" for s in stages]


def test_se_channels_follow_the_placement():
    pre = ns.models.se_resnet20(placement="pre")
    assert pre.layer2[0].se.channels == 16        # the block's input
    assert pre.layer2[1].se.channels == 32
    for placement in ("standard", "post", "identity"):
        assert ns.models.se_resnet20(placement=placement).layer2[0].se.channels == 32


def test_gate_values_shapes_and_range(rng):
    model = ns.models.se_resnet20()
    with pytest.raises(ValueError, match="forward"):
        ns.models.gate_values(model)
    model(rng.standard_normal((3, 3, 8, 8)).astype(np.float32))
    gates = ns.models.gate_values(model)
    assert list(gates)[0] == "layer1.0.se" and len(gates) == 9
    assert gates["layer2.1.se"].shape == (3, 32)
    assert all(np.all((s > 0) & (s < 1)) for s in gates.values())
    with pytest.raises(ValueError, match="no SE"):
        ns.models.gate_values(ns.models.resnet20())


def test_placements_compute_different_functions(rng):
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    outputs = []
    for placement in PLACEMENTS:
        ns.manual_seed(3)
        outputs.append(ns.models.se_resnet20(placement=placement).eval()(x))
    for i in range(len(outputs)):
        for j in range(i):
            assert not np.allclose(outputs[i], outputs[j])


def test_plain_resnet_has_no_se():
    model = ns.models.resnet20()
    assert not any(isinstance(m, ns.nn.SEBlock) for m in model.modules())


# -- the "no SE in the last stage" ablation ----------------------------------------------
def test_dropping_se_from_the_last_stage_cuts_its_extra_parameters():
    base = count(ns.models.resnet50())
    extra_all = count(ns.models.se_resnet50()) - base
    extra_123 = count(ns.models.se_resnet50(se_stages=[1, 2, 3])) - base
    ratio_all, ratio_123 = extra_all / base, extra_123 / base
    # the paper (Sec. 7): ~10% more parameters, ~4% without SE in the last stage
    assert 0.095 < ratio_all < 0.105
    assert 0.035 < ratio_123 < 0.04
    assert extra_all - extra_123 == 3 * (2 * 2048 * 128 + 128 + 2048)


# -- gradient checks (float64, random upstream gradient) -------------------------------------
# In train mode batch norm re-centres every pre-activation, so no choice of input keeps the
# ReLUs' inputs away from their kink by construction. Instead the checks draw inputs until
# every ReLU input of the forward pass is at least KINK_MARGIN from 0: a finite-difference
# step (at most 2e-4 in one weight) then never crosses a kink.
KINK_MARGIN = 1e-3


@pytest.fixture
def relu_margin(monkeypatch):
    """A list that collects min |x| of every ReLU forward (how close a pass came to a kink)."""
    seen = []
    forward = ns.nn.ReLU.forward

    def recording_forward(self, x):
        seen.append(float(np.abs(x).min()))
        return forward(self, x)

    monkeypatch.setattr(ns.nn.ReLU, "forward", recording_forward)
    return seen


def kink_free_input(layer, shape, rng, relu_margin, *rest):
    """A float64 input of ``shape`` whose forward pass keeps every ReLU input off its kink."""
    for _ in range(100):
        x = rng.standard_normal(shape)
        relu_margin.clear()
        layer(x, *rest)
        if min(relu_margin, default=1.0) > KINK_MARGIN:
            return x
    raise AssertionError("no input kept the ReLUs off their kinks; lower KINK_MARGIN")


def test_se_block_gradients(rng):
    se = ns.nn.SEBlock(8, reduction=2, bias=True).to(dtype=np.float64)
    errors = check_layer(se, rng.standard_normal((2, 8, 4, 4)))
    assert max(errors.values()) < GRAD_TOL, errors


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("stride, in_channels", [(2, 4), (1, 6)])
def test_basic_block_gradients_in_train_mode(placement, stride, in_channels, rng, relu_margin):
    ns.manual_seed(1)
    block = BasicBlock(in_channels, 6, stride, se_layer(), placement).to(dtype=np.float64)
    assert (block.downsample is not None) == (stride == 2)
    x = kink_free_input(block, (2, in_channels, 5, 5), rng, relu_margin)
    errors = check_layer(block, x)
    assert max(errors.values()) < COMPOSITE_TOL, errors


def test_basic_block_gradients_in_eval_mode(rng, relu_margin):
    ns.manual_seed(2)
    block = BasicBlock(4, 6, 2, se_layer(gate="tanh")).to(dtype=np.float64)
    block(rng.standard_normal((4, 4, 5, 5)))            # running statistics move off 0 and 1
    block.eval()
    errors = check_layer(block, kink_free_input(block, (2, 4, 5, 5), rng, relu_margin))
    assert max(errors.values()) < GRAD_TOL, errors


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_bottleneck_gradients(placement, rng, relu_margin):
    ns.manual_seed(4)
    block = Bottleneck(8, 3, 2, se_layer(), placement).to(dtype=np.float64)
    errors = check_layer(block, kink_free_input(block, (2, 8, 6, 6), rng, relu_margin))
    assert max(errors.values()) < COMPOSITE_TOL, errors


# -- grouped bottlenecks (torchvision's groups and base_width) --------------------------------
def bottleneck_params(in_channels, planes, stride, groups, base_width):
    """torchvision's Bottleneck parameter count (no SE): 1x1, grouped 3x3, 1x1, BNs, projection."""
    width = int(planes * base_width / 64) * groups
    out = 4 * planes
    count = in_channels * width + 2 * width + width * (width // groups) * 9 + 2 * width
    count += width * out + 2 * out
    if stride != 1 or in_channels != out:
        count += in_channels * out + 2 * out
    return count


@pytest.mark.parametrize("in_channels, planes, stride, groups, base_width", [
    (16, 16, 2, 2, 16), (64, 64, 1, 1, 64), (256, 128, 2, 32, 4), (64, 16, 1, 4, 32),
])
def test_grouped_bottleneck_shapes_and_parameters(in_channels, planes, stride, groups,
                                                  base_width, rng):
    block = Bottleneck(in_channels, planes, stride, groups=groups, base_width=base_width)
    width = int(planes * base_width / 64) * groups
    assert block.conv1.weight.shape == (width, in_channels, 1, 1)
    assert block.conv2.weight.shape == (width, width // groups, 3, 3)
    assert block.conv2.groups == groups and block.conv2.stride == stride
    assert block.conv3.weight.shape == (4 * planes, width, 1, 1)
    assert count(block) == bottleneck_params(in_channels, planes, stride, groups, base_width)
    y = block(rng.standard_normal((2, in_channels, 6, 6)).astype(np.float32))
    assert y.shape == (2, 4 * planes, 6 // stride, 6 // stride)
    assert block.backward(np.ones_like(y)).shape == (2, in_channels, 6, 6)


def test_grouped_resnets_have_torchvisions_parameter_counts():
    stages = dict(block=Bottleneck, layers=(3, 4, 6, 3), widths=(64, 128, 256, 512),
                  num_classes=1000, imagenet_stem=True)
    assert count(ResNet(**stages, groups=32, base_width=4)) == 25_028_904   # resnext50_32x4d
    assert count(ResNet(**stages, base_width=128)) == 68_883_240            # wide_resnet50_2


def test_default_groups_keep_the_bottleneck_and_its_keys():
    ns.manual_seed(0)
    default = Bottleneck(8, 4, 2).state_dict()
    ns.manual_seed(0)
    explicit = Bottleneck(8, 4, 2, groups=1, base_width=64).state_dict()
    assert list(default) == list(explicit)
    for key in default:
        np.testing.assert_array_equal(default[key], explicit[key])


@pytest.mark.parametrize("placement", [None, "standard", "pre"])
def test_grouped_bottleneck_gradients(placement, rng, relu_margin):
    ns.manual_seed(7)
    layer = None if placement is None else se_layer()
    block = Bottleneck(8, 4, 2, layer, placement or "standard", groups=2,
                       base_width=32).to(dtype=np.float64)
    assert block.conv2.groups == 2 and block.conv2.weight.shape == (4, 2, 3, 3)
    errors = check_layer(block, kink_free_input(block, (2, 8, 6, 6), rng, relu_margin))
    assert max(errors.values()) < COMPOSITE_TOL, errors


@pytest.mark.parametrize("make, words", [
    (lambda: BasicBlock(4, 4, groups=2), "BasicBlock: groups and base_width must be 1 and 64"),
    (lambda: Bottleneck(4, 4, groups=0), "Bottleneck: groups must be an integer >= 1, got 0"),
    (lambda: Bottleneck(4, 1, base_width=8), "Bottleneck: the width .* at least 1"),
    (lambda: Bottleneck(4, 4, se_layer=16), "se_layer must be None or a callable"),
    (lambda: BasicBlock(4, 4, 1, se_layer(), "inside"), "BasicBlock: placement must be one of"),
])
def test_block_arguments_raise_clear_errors(make, words):
    with pytest.raises(ValueError, match=words):
        make()


def test_the_older_se_dict_builds_the_same_block():
    ns.manual_seed(8)
    old = BasicBlock(4, 8, 2, se={"placement": "pre", "block": {"reduction": 2}})
    ns.manual_seed(8)
    new = BasicBlock(4, 8, 2, partial(ns.nn.SEBlock, reduction=2), "pre")
    assert old.placement == new.placement == "pre" and old.se.channels == 4
    for (key, a), (key_new, b) in zip(old.state_dict().items(), new.state_dict().items()):
        assert key == key_new
        np.testing.assert_array_equal(a, b)

def test_no_squeeze_block_gradients(rng, relu_margin):
    ns.manual_seed(5)
    block = BasicBlock(4, 4, 1, se_layer(no_squeeze=True)).to(dtype=np.float64)
    errors = check_layer(block, kink_free_input(block, (2, 4, 4, 4), rng, relu_margin))
    assert max(errors.values()) < COMPOSITE_TOL, errors


class WithLoss(ns.nn.Module):
    """model followed by the cross-entropy loss: (x, labels) -> scalar."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.loss = ns.nn.SoftmaxCrossEntropy()

    def forward(self, x, labels):
        return self.loss(self.model(x), labels)

    def backward(self, dloss):
        return self.model.backward(self.loss.backward(dloss))


@pytest.mark.parametrize("imagenet_stem, size, checked", [
    (False, 8, ["conv1.weight", "bn1.bias", "layer1.0.se.fc1.weight",
                "layer2.0.downsample.0.weight", "layer3.0.bn2.weight", "layer3.0.se.fc2.weight",
                "fc.weight", "fc.bias"]),
    (True, 20, ["conv1.weight", "layer1.0.conv2.weight", "layer2.0.downsample.0.weight",
                "layer3.0.se.fc2.weight", "fc.weight"]),
])
def test_small_network_gradients_end_to_end(imagenet_stem, size, checked, rng, relu_margin):
    """A depth-8 network (one narrow block per stage) with the loss, BN in train mode.

    A few parameters from every part of the network are checked, and the input gradient
    of the CIFAR one (all of them would take minutes; the blocks are checked in full above).
    """
    ns.manual_seed(6)
    block, widths = (Bottleneck, (2, 3, 4)) if imagenet_stem else (BasicBlock, (4, 6, 8))
    model = ResNet(block, (1, 1, 1), widths, num_classes=5, imagenet_stem=imagenet_stem,
                   se_layer=se_layer(), se_stages=[1, 3]).to(dtype=np.float64)
    loss_fn = ns.nn.SoftmaxCrossEntropy()
    labels = np.array([1, 4])
    net = WithLoss(model)
    x = kink_free_input(net, (2, 3, size, size), rng, relu_margin, labels)
    dloss = np.array(rng.standard_normal())

    def loss():
        return loss_fn(model(x), labels)

    loss()
    model.zero_grad()
    dx = model.backward(loss_fn.backward(dloss))
    params = dict(model.named_parameters())
    errors = {}
    # Normwise errors: through 8 layers the central differences carry an absolute
    # round-off of ~1e-12, which an entry-by-entry ratio turns into ~1e-5 on entries
    # 1e-7 in size (layer3's SE gate sees a 2x2 map), whatever the backward computes.
    if not imagenet_stem:  # 2,400 input entries at 20x20: conv1.weight covers the stem
        errors["input"] = normwise_error(dx, numerical_gradient(loss, x, dloss))
    for name in checked:
        errors[name] = normwise_error(params[name].grad,
                                      numerical_gradient(loss, params[name].data, dloss))
    assert max(errors.values()) < NORMWISE_TOL, errors


def test_se_resnet50_forward_backward_runs(rng):
    model = ns.models.se_resnet50(num_classes=10)
    x = rng.standard_normal((2, 3, 64, 64)).astype(np.float32)
    logits = model(x)
    assert logits.shape == (2, 10)
    assert np.all(np.isfinite(logits))
    dx = model.backward(np.ones((2, 10), dtype=np.float32))
    assert dx.shape == x.shape and np.all(np.isfinite(dx))
    assert model.layer4[2].se.fc1.bias.grad.shape == (128,)


def test_gradients_accumulate_until_zero_grad(rng):
    model = ns.models.se_resnet20().to(dtype=np.float64)
    x = rng.standard_normal((2, 3, 8, 8))
    dout = rng.standard_normal((2, 10))
    model.eval()
    model(x)
    model.backward(dout)
    once = model.layer1[0].se.fc1.weight.grad.copy()
    model(x)
    model.backward(dout)
    np.testing.assert_allclose(model.layer1[0].se.fc1.weight.grad, 2 * once)
    model.zero_grad()
    assert model.fc.weight.grad is None


def test_backward_does_not_mutate_dout(rng):
    model = ns.models.se_resnet20(placement="identity")
    model(rng.standard_normal((2, 3, 8, 8)).astype(np.float32))
    dout = rng.standard_normal((2, 10)).astype(np.float32)
    before = dout.copy()
    model.backward(dout)
    np.testing.assert_array_equal(dout, before)


def test_wrong_input_raises_clear_error(rng):
    model = ns.models.se_resnet20()
    with pytest.raises(ValueError, match="channels"):
        model(rng.standard_normal((2, 1, 8, 8)).astype(np.float32))
    with pytest.raises(ValueError, match="float64"):
        model(rng.standard_normal((2, 3, 8, 8)))


def test_forward_backward_and_gates_on_each_device(device, rng):
    model = ns.models.se_resnet20(placement="post").to(device=device)
    x = ns.backend.to_device(rng.standard_normal((2, 3, 8, 8)).astype(np.float32), device)
    logits = model(x)
    assert ns.backend.device_of(logits) == device
    dx = model.backward(ns.backend.to_device(np.ones((2, 10), dtype=np.float32), device))
    assert ns.backend.device_of(dx) == device and dx.shape == x.shape
    assert isinstance(ns.models.gate_values(model)["layer3.2.se"], np.ndarray)


# -- command-line options ------------------------------------------------------------------
def model_parser():
    import argparse

    from npsenet.cli.args import add_model_arguments
    return add_model_arguments(argparse.ArgumentParser(prog="test"))


def test_model_arguments_build_the_model_they_describe():
    from npsenet.cli.args import model_from_args
    args = model_parser().parse_args(["--model", "se_resnet32", "--reduction", "8", "--squeeze",
                                      "max", "--gate", "tanh", "--se-bias", "--placement", "pre",
                                      "--se-stages", "3,1", "--no-squeeze"])
    model = model_from_args(args, num_classes=100)
    assert model.name == "se_resnet32"
    assert model.options == {"num_classes": 100, "reduction": 8, "squeeze": "max", "gate": "tanh",
                             "bias": True, "placement": "pre", "se_stages": [1, 3],
                             "no_squeeze": True, "divisor": 1}


def test_model_arguments_defaults_are_the_models():
    from npsenet.cli.args import model_from_args
    parser = model_parser()
    assert model_from_args(parser.parse_args([]), 10).options == ns.models.se_resnet20().options
    args = parser.parse_args(["--model", "se_resnet50"])
    assert model_from_args(args, 1000).options["bias"] is True      # ImageNet SE default
    assert model_from_args(parser.parse_args(["--model", "resnet20"]), 10).name == "resnet20"


def test_the_squeeze_and_gate_choices_are_the_se_blocks():
    from npsenet.models.se_options import GATE_KINDS, SQUEEZE_KINDS
    for squeeze in SQUEEZE_KINDS:
        assert ns.nn.SEBlock(4, squeeze=squeeze).squeeze_kind == squeeze
    for gate in GATE_KINDS:
        assert ns.nn.SEBlock(4, gate=gate).gate_kind == gate
    actions = {a.dest: a for a in model_parser()._actions}
    assert tuple(actions["squeeze"].choices) == SQUEEZE_KINDS
    assert tuple(actions["gate"].choices) == GATE_KINDS


def test_model_arguments_errors(capsys):
    from npsenet.cli.args import model_from_args
    parser = model_parser()
    with pytest.raises(ValueError, match="--placement.*only to SE models.*se_resnet20"):
        model_from_args(parser.parse_args(["--model", "resnet20", "--placement", "pre"]), 10)
    with pytest.raises(SystemExit):
        parser.parse_args(["--se-stages", "one"])
    assert "stage numbers" in capsys.readouterr().err
    with pytest.raises(ValueError, match="se_stages"):
        model_from_args(parser.parse_args(["--se-stages", "4"]), 10)
