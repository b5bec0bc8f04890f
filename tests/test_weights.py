"""Weights from the PyTorch world (npsenet.weights): .safetensors round trips, a file PyTorch
loads as it is, each source's key map on state_dicts faked from npsenet's own models, the
one-line errors, and, where timm is installed, logits equal to timm's on the same random
weights."""
from __future__ import annotations

import json
import os
import struct
import warnings

import numpy as np
import pytest

import npsenet as ns
from npsenet.nn import SEBlock

pytest.importorskip("safetensors")
from safetensors.numpy import save_file  # noqa: E402

TOL = 1e-9


def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def randomized(model, seed=0):
    """``model`` in float64 with every parameter and BN statistic drawn at random (so that a
    key sent to the wrong place shows in the logits) and num_batches_tracked = 7."""
    rng = np.random.default_rng(seed)
    model.to(dtype=np.float64)
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = np.array(7, dtype=np.int64)
        elif key.endswith("running_var") or (key.endswith("weight") and value.ndim == 1):
            state[key] = rng.uniform(0.5, 1.5, value.shape)
        elif key.endswith(("running_mean", "bias")):
            state[key] = 0.1 * rng.standard_normal(value.shape)
        else:
            state[key] = rng.standard_normal(value.shape) * np.sqrt(2.0 / max(value[0].size, 1))
    model.load_state_dict(state)
    return model


def copy_state(model):
    return {k: np.array(v) for k, v in model.state_dict().items()}


def assert_same_state(model, expected):
    state = model.state_dict()
    assert list(state) == list(expected)
    for key, value in expected.items():
        assert state[key].shape == value.shape, key
        assert state[key].dtype == value.dtype, key
        np.testing.assert_array_equal(state[key], value, err_msg=key)


def one_line(exc_info):
    message = str(exc_info.value)
    assert "\n" not in message, message
    return message


# -- .safetensors in and out ------------------------------------------------------------------

def test_save_then_load_is_the_same_state_with_its_dtypes_and_metadata(tmp_path):
    model = randomized(ns.models.se_resnet20(placement="pre"))
    path = tmp_path / "m.safetensors"
    ns.io.save_safetensors(path, model)
    arrays = ns.io.load_safetensors(path)
    assert set(arrays) == set(model.state_dict())
    for key, value in model.state_dict().items():
        assert arrays[key].dtype == value.dtype and arrays[key].shape == value.shape, key
        np.testing.assert_array_equal(arrays[key], value)
    assert arrays["bn1.num_batches_tracked"].shape == ()
    assert arrays["bn1.num_batches_tracked"].dtype == np.int64
    meta = ns.io.safetensors_metadata(path)
    assert meta["format"] == "pt" and meta["npsenet_model"] == "se_resnet20"
    assert json.loads(meta["npsenet_options"]) == model.options
    fresh = ns.models.build_model(meta["npsenet_model"], **json.loads(meta["npsenet_options"]))
    ns.io.load_pretrained(fresh.to(dtype=np.float64), path)
    assert_same_state(fresh, model.state_dict())
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_load_pretrained_casts_to_the_models_dtype(tmp_path):
    model = randomized(ns.models.se_resnet20())
    ns.io.save_safetensors(tmp_path / "m.safetensors", model)
    fresh = ns.io.load_pretrained(ns.models.se_resnet20(), tmp_path / "m.safetensors")
    assert fresh.conv1.weight.dtype == np.float32
    assert fresh.bn1.num_batches_tracked.dtype == np.int64
    assert int(fresh.bn1.num_batches_tracked) == 7
    np.testing.assert_allclose(fresh.conv1.weight.data, model.conv1.weight.data, rtol=1e-6)


def test_save_safetensors_of_a_model_without_name_leaves_the_name_empty(tmp_path):
    layer = SEBlock(8, reduction=4)
    ns.io.save_safetensors(tmp_path / "se.safetensors", layer)
    meta = ns.io.safetensors_metadata(tmp_path / "se.safetensors")
    assert meta == {"format": "pt", "npsenet_model": "", "npsenet_options": ""}
    assert set(ns.io.load_safetensors(tmp_path / "se.safetensors")) == {"fc1.weight",
                                                                       "fc2.weight"}


def test_the_saved_file_loads_into_the_pytorch_twin_as_it_is(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    from npsenet.torch_reference import build_torch_model

    model = randomized(ns.models.se_resnet20(bias=True))
    path = tmp_path / "m.safetensors"
    ns.io.save_safetensors(path, model)
    state = load_file(str(path))
    assert state["bn1.num_batches_tracked"].dtype == torch.int64
    assert tuple(state["bn1.num_batches_tracked"].shape) == ()
    twin = build_torch_model(model.name, **model.options).double()
    twin.load_state_dict(state, strict=True)
    x = np.random.default_rng(1).standard_normal((2, 3, 32, 32))
    with torch.no_grad():
        expected = twin.eval()(torch.from_numpy(x)).numpy()
    assert rel(model.eval()(x), expected) < TOL


# -- the key maps, on state_dicts faked from npsenet's models ----------------------------------

def small_senet():
    """SENet-154's network (npsenet.models.senet) at one block per stage and small widths,
    with the SE layers of senet154 (biases on): the keys and shapes timm_legacy maps onto."""
    from npsenet.models.senet import senet_from_options

    return senet_from_options("senet154", 5, 0.0, 4, True, {}, layers=(1, 1, 1, 1),
                              widths=(4, 8, 8, 8), groups=2, stem_width=8)


def as_timm(state):
    """npsenet keys -> timm's: the SE's Linear weights as 1x1 convolutions."""
    return {k: (v[:, :, None, None] if k.endswith(("se.fc1.weight", "se.fc2.weight")) else v)
            for k, v in state.items()}


def as_timm_legacy(state):
    """npsenet keys -> timm's legacy_senet154: layer0 stem, se_module (1x1 convs), last_linear."""
    out = {}
    for key, value in as_timm(state).items():
        if key.split(".")[0] in ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3"):
            key = "layer0." + key
        key = key.replace(".se.", ".se_module.")
        if key.startswith("fc."):
            key = "last_linear." + key[len("fc."):]
        out[key] = value
    return out


def as_senet_pytorch(state):
    """npsenet keys -> senet.pytorch's: the SE's nn.Sequential(Linear, ReLU, Linear, Sigmoid)."""
    return {k.replace(".se.fc1.", ".se.fc.0.").replace(".se.fc2.", ".se.fc.2."): v
            for k, v in state.items()}


SOURCE_CASES = {
    "timm": (lambda: ns.models.se_resnet20(bias=True), as_timm),
    "timm_legacy": (small_senet, as_timm_legacy),
    "senet.pytorch": (lambda: ns.models.se_resnet20(bias=False), as_senet_pytorch),
    "npsenet": (lambda: ns.models.se_resnet20(placement="identity"), dict),
}


@pytest.mark.parametrize("source", list(SOURCE_CASES))
def test_each_sources_keys_map_onto_the_models_own(source, tmp_path):
    build, fake = SOURCE_CASES[source]
    original = randomized(build())
    expected = copy_state(original)
    state = fake(expected)
    if source != "npsenet":              # the fake differs in some key or shape
        assert any(k not in expected or v.shape != expected[k].shape for k, v in state.items())
    assert ns.io.detect_source(state) == source
    converted = ns.io.convert_state_dict(state, source, build())
    assert list(converted) == list(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(converted[key], value, err_msg=key)
    loaded = ns.io.load_pretrained(build().to(dtype=np.float64), state)      # source "auto"
    assert_same_state(loaded, expected)
    save_file({k: np.ascontiguousarray(v) if v.ndim else v for k, v in state.items()},
              str(tmp_path / "w.safetensors"))
    from_file = ns.io.load_pretrained(build().to(dtype=np.float64), tmp_path / "w.safetensors",
                                      source=source)
    assert_same_state(from_file, expected)


def test_a_no_squeeze_model_keeps_its_1x1_convolution_weights():
    model = randomized(ns.models.se_resnet20(no_squeeze=True))
    expected = copy_state(model)
    assert expected["layer1.0.se.fc1.weight"].ndim == 4
    loaded = ns.io.load_pretrained(ns.models.se_resnet20(no_squeeze=True).to(dtype=np.float64),
                                   expected)
    assert_same_state(loaded, expected)


def test_torch_tensors_load_as_a_converted_dict():
    torch = pytest.importorskip("torch")
    model = randomized(ns.models.se_resnet20())
    expected = copy_state(model)
    state = {k: torch.from_numpy(v) for k, v in as_senet_pytorch(expected).items()}
    loaded = ns.io.load_pretrained(ns.models.se_resnet20().to(dtype=np.float64), state)
    assert_same_state(loaded, expected)


def test_senet_pytorchs_layout_gives_the_same_logits(tmp_path):
    """A PyTorch SE-ResNet-20 with senet.pytorch's SELayer (fc = Sequential(Linear, ReLU,
    Linear, Sigmoid), no biases) saved with safetensors.torch, loaded into npsenet."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file as torch_save_file

    from npsenet.torch_reference import build_torch_model, copy_weights

    nn = torch.nn

    class SELayer(nn.Module):                      # senet.pytorch's senet/se_module.py
        def __init__(self, channel, reduction=16):
            super().__init__()
            self.avg_pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Sequential(nn.Linear(channel, channel // reduction, bias=False),
                                    nn.ReLU(inplace=True),
                                    nn.Linear(channel // reduction, channel, bias=False),
                                    nn.Sigmoid())

        def forward(self, x):
            b, c, _, _ = x.size()
            y = self.avg_pool(x).view(b, c)
            return x * self.fc(y).view(b, c, 1, 1)

    source = randomized(ns.models.se_resnet20(reduction=4, bias=False), seed=3)
    twin = copy_weights(source, build_torch_model("se_resnet20", reduction=4).double())
    for module in list(twin.modules()):
        old = getattr(module, "se", None)
        if isinstance(old, nn.Module):
            new = SELayer(old.fc1.in_features, reduction=4).double()
            with torch.no_grad():
                new.fc[0].weight.copy_(old.fc1.weight)
                new.fc[2].weight.copy_(old.fc2.weight)
            module.se = new
    state = twin.state_dict()
    assert "layer1.0.se.fc.0.weight" in state and "layer1.0.se.fc1.weight" not in state
    path = tmp_path / "se_resnet20.safetensors"
    torch_save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    model = ns.io.load_pretrained(ns.models.se_resnet20(reduction=4).to(dtype=np.float64), path)
    x = np.random.default_rng(2).standard_normal((2, 3, 32, 32))
    with torch.no_grad():
        expected = twin.eval()(torch.from_numpy(x)).numpy()
    assert rel(model.eval()(x), expected) < TOL


# -- errors: one line, which file or key, what to do; the model unchanged ---------------------

def safetensors_bytes(tmp_path):
    path = tmp_path / "ok.safetensors"
    ns.io.save_safetensors(path, SEBlock(8, reduction=4))
    return path.read_bytes()


@pytest.mark.parametrize("damage", ["text", "truncated", "padded", "header_json", "empty",
                                    "header_too_long"])
def test_a_file_that_is_not_safetensors_is_refused_in_one_line(damage, tmp_path):
    good = safetensors_bytes(tmp_path)
    (length,) = struct.unpack("<Q", good[:8])
    data = {"text": b"this is a text file\n" * 4,
            "truncated": good[:-3],
            "padded": good + b"\0" * 16,
            "header_json": good[:8] + b"[" + good[9:],
            "empty": b"",
            "header_too_long": struct.pack("<Q", len(good) * 4) + good[8:]}[damage]
    path = tmp_path / "bad.safetensors"
    path.write_bytes(data)
    with pytest.raises(ValueError) as exc:
        ns.io.load_safetensors(path)
    assert str(path) in one_line(exc) and "not a readable .safetensors file" in str(exc.value)
    model = ns.models.se_resnet20()
    before = copy_state(model)
    with pytest.raises(ValueError):
        ns.io.load_pretrained(model, path)
    assert_same_state(model, before)


def test_a_missing_file_says_which(tmp_path):
    with pytest.raises(FileNotFoundError) as exc:
        ns.io.load_safetensors(tmp_path / "nowhere.safetensors")
    assert "nowhere.safetensors" in one_line(exc)
    with pytest.raises(FileNotFoundError):
        ns.io.load_pretrained(ns.models.se_resnet20(), tmp_path / "nowhere.safetensors")


def test_bfloat16_tensors_say_to_convert_them(tmp_path):
    header = json.dumps({"w": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}).encode()
    path = tmp_path / "bf16.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0\0\x80\x3f")
    with pytest.raises(ValueError) as exc:
        ns.io.load_safetensors(path)
    assert "float32" in one_line(exc) and str(path) in str(exc.value)


def test_senet_pytorch_weights_into_a_model_with_se_biases_say_bias_false():
    state = as_senet_pytorch(copy_state(ns.models.se_resnet20(bias=False)))
    model = ns.models.se_resnet20(bias=True)
    before = copy_state(model)
    with pytest.raises(ValueError) as exc:
        ns.io.load_pretrained(model, state)
    message = one_line(exc)
    assert "bias=False" in message and "layer1.0.se.fc1.bias" in message
    assert "senet.pytorch" in message
    assert_same_state(model, before)


def test_shapes_that_differ_are_listed_and_nothing_is_written():
    state = as_timm(copy_state(ns.models.se_resnet20(bias=True, num_classes=5)))
    model = ns.models.se_resnet20(bias=True)
    before = copy_state(model)
    with pytest.raises(ValueError) as exc:
        ns.io.load_pretrained(model, state, source="timm")
    message = one_line(exc)
    assert "fc.weight (5, 64) vs (10, 64)" in message and "num_classes" in message
    assert_same_state(model, before)


def test_missing_and_unexpected_keys_are_named():
    state = copy_state(ns.models.se_resnet20())
    del state["layer2.1.conv1.weight"]
    state["layer9.0.conv1.weight"] = np.zeros((4, 4, 1, 1), np.float32)
    with pytest.raises(ValueError) as exc:
        ns.io.convert_state_dict(state, "npsenet", ns.models.se_resnet20())
    message = one_line(exc)
    assert "1 keys missing" in message and "layer2.1.conv1.weight" in message
    assert "1 keys unexpected" in message and "layer9.0.conv1.weight" in message


def test_many_missing_keys_are_counted_not_all_listed():
    state = copy_state(ns.models.resnet20())
    with pytest.raises(ValueError) as exc:
        ns.io.convert_state_dict(state, "auto", ns.models.se_resnet20())
    message = one_line(exc)
    assert "18 keys missing" in message and "and 14 more" in message
    assert "source detected from its keys" in message


def test_an_unknown_source_is_refused():
    with pytest.raises(ValueError) as exc:
        ns.io.convert_state_dict({}, "keras", ns.models.se_resnet20())
    assert "timm_legacy" in one_line(exc)


def test_timms_legacy_se_resnets_are_refused_with_what_to_load_instead():
    state = as_timm_legacy(copy_state(ns.models.se_resnet20()))
    assert "layer0.conv1.weight" in state and "layer0.conv2.weight" not in state
    with pytest.raises(ValueError) as exc:
        ns.io.load_pretrained(ns.models.se_resnet20(), state)
    assert "seresnet50" in one_line(exc) and "timm_legacy" in str(exc.value)


def test_two_keys_mapping_to_one_are_refused():
    state = as_timm_legacy(copy_state(small_senet()))
    state["conv1.weight"] = state["layer0.conv1.weight"]
    with pytest.raises(ValueError) as exc:
        ns.io.convert_state_dict(state, "timm_legacy", small_senet())
    assert "'conv1.weight'" in one_line(exc) and "layer0.conv1.weight" in str(exc.value)


def test_empty_extras_are_dropped_with_a_warning_and_weights_never_are():
    expected = copy_state(ns.models.se_resnet20())
    state = dict(expected, **{"layer1.0.se.bn.weight": np.zeros((0,), np.float32)})
    with pytest.warns(UserWarning, match="dropped 1 empty entries"):
        converted = ns.io.convert_state_dict(state, "npsenet", ns.models.se_resnet20())
    assert list(converted) == list(expected)
    state["layer1.0.se.bn.weight"] = np.ones((1,), np.float32)
    with warnings.catch_warnings(), pytest.raises(ValueError, match="unexpected"):
        warnings.simplefilter("error")
        ns.io.convert_state_dict(state, "npsenet", ns.models.se_resnet20())


def test_load_pretrained_wants_a_path_or_a_mapping():
    with pytest.raises(ValueError) as exc:
        ns.io.load_pretrained(ns.models.se_resnet20(), [1, 2, 3])
    assert "state_dict" in one_line(exc)


# -- timm's own models, where timm is installed --------------------------------------------------

def import_timm():
    """timm, or a skip when it is not installed or cannot be imported (it needs torchvision)."""
    try:
        import timm
    except Exception as exc:  # noqa: BLE001 - an import of timm may fail in several ways
        pytest.skip(f"timm cannot be imported here ({type(exc).__name__}: {exc})")
    return timm


def randomize_torch_batchnorms(model, seed):
    """BN weights, biases and running statistics at random (timm zeroes each block's last BN
    weight, which would hide the residual branch and its SE)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(0.5 + torch.rand(n, generator=generator))
                module.bias.copy_(0.1 * torch.randn(n, generator=generator))
                module.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
                module.num_batches_tracked.fill_(7)
    return model


TIMM_MODELS = [("seresnet50", "se_resnet50", (2, 3, 64, 64)),
               ("seresnext50_32x4d", "se_resnext50_32x4d", (2, 3, 64, 64)),
               ("legacy_senet154", "senet154", (1, 3, 64, 64))]


@pytest.mark.slow
@pytest.mark.parametrize("timm_name, name, x_shape", TIMM_MODELS, ids=[t[0] for t in TIMM_MODELS])
def test_timms_weights_give_timms_logits(timm_name, name, x_shape, tmp_path):
    timm = import_timm()
    import torch
    from safetensors.torch import save_file as torch_save_file

    if name not in ns.models.model_names():
        pytest.skip(f"npsenet has no model {name!r} here")
    torch.manual_seed(0)
    reference = randomize_torch_batchnorms(timm.create_model(timm_name, pretrained=False), 0)
    path = tmp_path / f"{timm_name}.safetensors"
    torch_save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    reference = reference.double().eval()
    model = ns.io.load_pretrained(ns.models.build_model(name).to(dtype=np.float64), path)
    x = np.random.default_rng(0).standard_normal(x_shape)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    with ns.no_grad():
        logits = model.eval()(x)
    assert rel(logits, expected) < TOL
