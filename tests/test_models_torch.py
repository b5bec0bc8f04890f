"""SE-ResNets against a PyTorch implementation of the same architecture
(``npsenet.torch_reference``, written from the paper: torchvision is not needed), in float64:
logits in train and eval mode, every parameter gradient, the input gradient and the BN
running statistics after a step. The same PyTorch models are the other side of
``npsenet bench``, so these tests vouch for the benchmark's comparison too."""
from __future__ import annotations

import numpy as np
import pytest

import npsenet as ns

torch = pytest.importorskip("torch")
tnn = torch.nn

from npsenet.models.resnet import resnet_from_spec  # noqa: E402
from npsenet.models.se_options import se_config  # noqa: E402
from npsenet.models.specs import ResNetSpec  # noqa: E402
from npsenet.torch_reference import build_torch_resnet, copy_weights  # noqa: E402

from parity import TOL, compare_with_torch, rel, torch_twin  # noqa: E402

pytestmark = pytest.mark.usefixtures("code_path")   # on the fast and the plain path



# -- the reference: npsenet.torch_reference, a PyTorch model built from the paper -----------
def compare(model, x_shape, seed=0, device="cpu", reference=None):
    """Train-mode step and eval forward against the twin (tests/parity.py)."""
    compare_with_torch(model, x_shape, seed, device, reference)


# -- the comparisons ----------------------------------------------------------------------
@pytest.mark.parametrize("options", [
    {"placement": "standard"}, {"placement": "pre"}, {"placement": "post"},
    {"placement": "identity"}, {"placement": "3x3"}, {"no_squeeze": True}, {"squeeze": "max"},
    {"gate": "tanh"},
    {"gate": "relu", "bias": True, "reduction": 4, "se_stages": [1, 3]},
])
def test_se_resnet20_matches_pytorch(options):
    ns.manual_seed(0)
    compare(ns.models.se_resnet20(**options), (4, 3, 16, 16))


def test_se_resnet20_matches_pytorch_on_each_device(device):
    """The same float64 parity with the model on the GPU (CuPy) where one is present."""
    ns.manual_seed(0)
    compare(ns.models.se_resnet20(placement="standard"), (4, 3, 16, 16), device=device)


def test_resnet20_matches_pytorch():
    ns.manual_seed(1)
    compare(ns.models.resnet20(num_classes=7), (3, 3, 12, 12))


def test_se_resnet50_matches_pytorch():
    ns.manual_seed(2)
    compare(ns.models.se_resnet50(num_classes=10), (2, 3, 48, 48))


@pytest.mark.parametrize("se", [False, True])
def test_grouped_bottleneck_network_matches_pytorch(se):
    """Two stages of grouped bottlenecks (groups 2, base_width 32: 3x3 convolutions of
    width planes), with and without SE, against the twin built from the same spec."""
    spec = ResNetSpec("bottleneck", (2, 1), (4, 8), imagenet_stem=False, num_classes=5,
                      se=se, se_bias=True, groups=2, base_width=32)
    config = se_config("grouped", 2, 2, True, {"placement": "identity"}) if se else None
    ns.manual_seed(4)
    model = resnet_from_spec(spec, 5, config)
    assert model.layer2[0].conv2.groups == 2 and model.layer2[0].conv2.in_channels == 8
    reference = build_torch_resnet(spec, 5, config and {k: v for k, v in config.items()
                                                       if k != "se_stages"})
    assert reference.layer2[0].conv2.groups == 2
    compare(model, (3, 3, 10, 10), reference=reference)


def test_torch_state_dict_loads_as_it_is_and_back():
    ns.manual_seed(3)
    model = ns.models.se_resnet20(bias=True, placement="identity").to(dtype=np.float64)
    torch.manual_seed(0)
    reference = torch_twin(model)          # PyTorch's own initialisation
    for m in reference.modules():          # non-trivial BN state to carry over
        if isinstance(m, tnn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    arrays = {k: v.numpy() for k, v in reference.state_dict().items()}
    model.load_state_dict(arrays)
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8))
    with torch.no_grad():
        expected = reference.eval()(torch.from_numpy(x)).numpy()
    assert rel(model.eval()(x), expected) < TOL

    # and back: npsenet's state loads into PyTorch, strictly, as the same values
    back = copy_weights(model, torch_twin(model))
    for key, value in back.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), arrays[key])
