"""ns.summary and `npsenet summary`: totals, per-layer MACs, SE's share, the command."""
from __future__ import annotations

import numpy as np
import pytest

import npsenet as ns
from npsenet.cli import main


def count(model):
    return sum(p.size for p in model.parameters())


@pytest.mark.parametrize("name", ["se_resnet20", "resnet20", "se_resnet32"])
def test_total_params_equal_the_parameter_count(name):
    model = ns.models.build_model(name)
    s = ns.summary(model, (1, 3, 32, 32))
    assert s.total_params == count(model)
    assert s.total_macs == sum(r.macs for r in s.rows)


def test_imagenet_totals_and_rows():
    model = ns.models.se_resnet50(num_classes=10)
    s = ns.summary(model, (1, 3, 64, 64))
    assert s.total_params == count(model)
    rows = {r.name: r for r in s.rows}
    assert rows["conv1"].output_shape == (1, 64, 32, 32)
    assert rows["maxpool"].output_shape == (1, 64, 16, 16)
    assert rows["layer4.2.se"].output_shape == (1, 2048, 2, 2)
    assert rows["fc"].output_shape == (1, 10)


def test_conv_and_linear_macs():
    s = ns.summary(ns.models.se_resnet20(), (2, 3, 32, 32))
    rows = {r.name: r for r in s.rows}
    # layer2.0.conv1: 3x3, 16 -> 32, stride 2: 32 x 16 x 16 outputs, each 16*3*3 MACs, N = 2
    assert rows["layer2.0.conv1"].macs == 2 * 32 * 16 * 16 * 16 * 3 * 3
    assert rows["layer2.0.conv1"].params == 32 * 16 * 3 * 3
    assert rows["layer2.0.downsample.0"].macs == 2 * 32 * 16 * 16 * 16
    assert rows["layer3.1.se.fc1"].macs == 2 * 64 * 4
    assert rows["fc"].macs == 2 * 64 * 10
    assert rows["layer3.1.se"].kind == "scale" and rows["layer3.1.se"].macs == 2 * 64 * 8 * 8
    assert rows["layer1.0.relu1"].macs == 0


def test_macs_scale_with_batch_and_resolution():
    model = ns.models.resnet20()
    one = ns.summary(model, (1, 3, 32, 32)).total_macs
    assert ns.summary(model, (3, 3, 32, 32)).total_macs == 3 * one
    # every layer before the pooling scales with H * W; fc does not
    half = ns.summary(model, (1, 3, 16, 16)).total_macs
    assert half - 640 == (one - 640) // 4


def test_se_adds_a_small_fraction_of_macs_and_about_ten_percent_params():
    plain = ns.summary(ns.models.resnet50(), (1, 3, 224, 224))
    with_se = ns.summary(ns.models.se_resnet50(), (1, 3, 224, 224))
    assert 4.0e9 < plain.total_macs < 4.2e9                 # ResNet-50's ~4.1 G MACs
    extra_macs = with_se.total_macs - plain.total_macs
    assert extra_macs == with_se.se_macs
    assert 0.001 < extra_macs / plain.total_macs < 0.005    # the paper: +0.26%
    extra_params = with_se.total_params - plain.total_params
    assert extra_params == with_se.se_params
    assert 0.095 < extra_params / plain.total_params < 0.105


def test_summary_leaves_the_model_as_it_was(rng):
    model = ns.models.se_resnet20().train()
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    model(x)
    gates = ns.models.gate_values(model)
    state = {k: v.copy() for k, v in model.state_dict().items()}
    ns.summary(model, (1, 3, 32, 32))
    assert model.training and model.layer1[0].bn1.training
    assert "forward" not in model.layer1[0].conv1.__dict__
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, state[k])
    for name, s in ns.models.gate_values(model).items():
        np.testing.assert_array_equal(s, gates[name])


def test_table_text():
    text = str(ns.summary(ns.models.se_resnet20(), (1, 3, 32, 32)))
    assert "layer1.0.se.fc1" in text
    assert "274,490" in text
    assert "(1, 64, 8, 8)" in text


def test_bad_input_shape():
    with pytest.raises(ValueError, match="N, C, H, W"):
        ns.summary(ns.models.resnet20(), (3, 32, 32))


def test_cli_prints_the_table(capsys):
    assert main(["summary", "--model", "se_resnet20", "--reduction", "8"]) == 0
    out = capsys.readouterr().out
    assert "layer3.2.se" in out and "total parameters" in out
    assert f"{count(ns.models.se_resnet20(reduction=8)):,}" in out


def test_cli_compare(capsys):
    assert main(["summary", "--model", "resnet20", "--compare", "--input-size", "16"]) == 0
    out = capsys.readouterr().out
    assert "272,474" in out and "274,490" in out and "SE adds" in out
    assert "2,016 (+0.74%)" in out


def test_cli_rejects_se_options_for_a_plain_model(capsys):
    assert main(["summary", "--model", "resnet20", "--placement", "pre"]) == 2
    assert "apply only to SE models" in capsys.readouterr().err


def test_an_se_blocks_scale_is_one_row():
    """The scale of an SE block is the block's own row (kind "scale"), not also a row of
    its ChannelScale sub-module."""
    rows = ns.summary(ns.models.se_resnet20(), (1, 3, 32, 32)).rows
    assert [r.kind for r in rows].count("scale") == 9
    assert "ChannelScale" not in {r.kind for r in rows}
