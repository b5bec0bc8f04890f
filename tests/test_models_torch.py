"""SE-ResNets against a PyTorch implementation of the same architecture (written here, from
the paper: torchvision is not needed), in float64: logits in train and eval mode, every
parameter gradient, the input gradient and the BN running statistics after a step."""
from __future__ import annotations

import numpy as np
import pytest

import npsenet as ns

torch = pytest.importorskip("torch")
F = torch.nn.functional
tnn = torch.nn

TOL = 1e-9


# -- the reference ------------------------------------------------------------------------
class TorchSE(tnn.Module):
    """x̃ = s ⊙ u with s = gate(W2 δ(W1 z)), z the squeezed u (or u itself for NoSqueeze)."""

    def __init__(self, channels, reduction, squeeze, gate, bias, no_squeeze):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.squeeze, self.gate, self.no_squeeze = squeeze, gate, no_squeeze
        if no_squeeze:
            self.fc1 = tnn.Conv2d(channels, hidden, 1, bias=bias)
            self.fc2 = tnn.Conv2d(hidden, channels, 1, bias=bias)
        else:
            self.fc1 = tnn.Linear(channels, hidden, bias=bias)
            self.fc2 = tnn.Linear(hidden, channels, bias=bias)

    def forward(self, u):
        gate = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}[self.gate]
        if self.no_squeeze:
            return u * gate(self.fc2(torch.relu(self.fc1(u))))
        z = u.mean(dim=(2, 3)) if self.squeeze == "avg" else u.amax(dim=(2, 3))
        s = gate(self.fc2(torch.relu(self.fc1(z))))
        return u * s[:, :, None, None]


class TorchBlock(tnn.Module):
    def __init__(self, bottleneck, in_channels, planes, stride, se):
        super().__init__()
        out_channels = planes * (4 if bottleneck else 1)
        self.bottleneck = bottleneck
        if bottleneck:
            self.conv1 = tnn.Conv2d(in_channels, planes, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(planes)
            self.conv2 = tnn.Conv2d(planes, planes, 3, stride, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(planes)
            self.conv3 = tnn.Conv2d(planes, out_channels, 1, bias=False)
            self.bn3 = tnn.BatchNorm2d(out_channels)
        else:
            self.conv1 = tnn.Conv2d(in_channels, planes, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(planes)
            self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(planes)
        self.placement = se["placement"] if se else None
        if se:
            channels = in_channels if self.placement == "pre" else out_channels
            self.se = TorchSE(channels, se["reduction"], se["squeeze"], se["gate"], se["bias"],
                              se["no_squeeze"])
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = tnn.Sequential(
                tnn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                tnn.BatchNorm2d(out_channels))

    def branch(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        if self.bottleneck:
            out = torch.relu(self.bn2(self.conv2(out)))
            return self.bn3(self.conv3(out))
        return self.bn2(self.conv2(out))

    def forward(self, x):
        out = self.branch(self.se(x) if self.placement == "pre" else x)
        if self.placement == "standard":
            out = self.se(out)
        shortcut = x if self.downsample is None else self.downsample(x)
        if self.placement == "identity":
            shortcut = self.se(shortcut)
        out = torch.relu(out + shortcut)
        return self.se(out) if self.placement == "post" else out


class TorchResNet(tnn.Module):
    def __init__(self, bottleneck, layers, widths, num_classes, se):
        super().__init__()
        self.imagenet = bottleneck
        if bottleneck:
            self.conv1 = tnn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
        else:
            self.conv1 = tnn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(widths[0])
        channels = widths[0]
        stages = se["se_stages"] if se else []
        for stage, (count, planes) in enumerate(zip(layers, widths), start=1):
            blocks = []
            for i in range(count):
                stride = 2 if stage > 1 and i == 0 else 1
                blocks.append(TorchBlock(bottleneck, channels, planes, stride,
                                         se if stage in stages else None))
                channels = planes * (4 if bottleneck else 1)
            setattr(self, f"layer{stage}", tnn.Sequential(*blocks))
        self.num_stages = len(layers)
        self.fc = tnn.Linear(channels, num_classes)

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        if self.imagenet:
            out = F.max_pool2d(out, 3, 2, 1)
        for stage in range(1, self.num_stages + 1):
            out = getattr(self, f"layer{stage}")(out)
        return self.fc(out.mean(dim=(2, 3)))


def torch_twin(model):
    """A float64 TorchResNet with the architecture of an npsenet model (no weights copied)."""
    bottleneck = isinstance(model.layer1[0], ns.models.Bottleneck)
    layers = tuple(len(getattr(model, name)) for name in model.stage_names)
    widths = (16, 32, 64) if not bottleneck else (64, 128, 256, 512)
    se = model.options if "placement" in model.options else None
    return TorchResNet(bottleneck, layers, widths, model.options["num_classes"], se).double()


def copy_weights(model, reference):
    reference.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in
                               model.state_dict().items()}, strict=True)


def rel(a, b):
    """max |a - b| / max |b|: the error relative to the array's scale."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def compare(model, x_shape, seed=0):
    """Train-mode step and eval forward of ``model`` (float64) and its PyTorch twin."""
    model = model.to(dtype=np.float64)
    reference = torch_twin(model)
    copy_weights(model, reference)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape)
    dlogits = rng.standard_normal((x_shape[0], model.options["num_classes"]))

    # train mode: batch statistics, gradients, running statistics
    model.train()
    reference.train()
    logits = model(x)
    model.zero_grad()
    dx = model.backward(dlogits)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    logits_t = reference(xt)
    (logits_t * torch.from_numpy(dlogits)).sum().backward()
    assert rel(logits, logits_t.detach().numpy()) < TOL
    assert rel(dx, xt.grad.numpy()) < TOL
    torch_params = dict(reference.named_parameters())
    assert set(torch_params) == {name for name, _ in model.named_parameters()}
    for name, p in model.named_parameters():
        assert rel(p.grad, torch_params[name].grad.numpy()) < TOL, name
    torch_state = reference.state_dict()
    for key, value in model.state_dict().items():
        if "running" in key:
            assert rel(value, torch_state[key].numpy()) < TOL, key
        elif key.endswith("num_batches_tracked"):
            assert int(value) == int(torch_state[key]) == 1, key

    # eval mode: running statistics
    model.eval()
    reference.eval()
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    assert rel(model(x), expected) < TOL


# -- the comparisons ----------------------------------------------------------------------
@pytest.mark.parametrize("options", [
    {"placement": "standard"}, {"placement": "pre"}, {"placement": "post"},
    {"placement": "identity"}, {"no_squeeze": True}, {"squeeze": "max"}, {"gate": "tanh"},
    {"gate": "relu", "bias": True, "reduction": 4, "se_stages": [1, 3]},
])
def test_se_resnet20_matches_pytorch(options):
    ns.manual_seed(0)
    compare(ns.models.se_resnet20(**options), (4, 3, 16, 16))


def test_resnet20_matches_pytorch():
    ns.manual_seed(1)
    compare(ns.models.resnet20(num_classes=7), (3, 3, 12, 12))


def test_se_resnet50_matches_pytorch():
    ns.manual_seed(2)
    compare(ns.models.se_resnet50(num_classes=10), (2, 3, 48, 48))


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
    back = torch_twin(model)
    copy_weights(model, back)
    for key, value in back.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), arrays[key])
