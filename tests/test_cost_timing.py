"""tools/cost_timing.py: the CSV it writes, on small CIFAR models standing in for ResNet-50."""
from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "cost_timing.py"


@pytest.fixture()
def cost_timing(monkeypatch):
    spec = importlib.util.spec_from_file_location("cost_timing", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # the same three roles, at CIFAR size, so that the test runs in a second
    monkeypatch.setattr(module, "MODELS", {
        "resnet50": ("resnet20", {}),
        "se_resnet50": ("se_resnet20", {}),
        "se_resnet50_no_last_stage": ("se_resnet20", {"se_stages": [1, 2]}),
    })
    return module


def test_writes_interleaved_rounds_with_se_and_update_times(cost_timing, tmp_path, capsys):
    out = tmp_path / "cost" / "timing.csv"
    assert cost_timing.main(["--batch-size", "2", "--image-size", "32", "--repeats", "2",
                             "--out", str(out), "--note", "a test"]) == 0
    lines = out.read_text().splitlines()
    comments = [line for line in lines if line.startswith("#")]
    assert any(c.startswith("# machine: ") for c in comments)
    assert any("--repeats 2" in c and "--note 'a test'" in c for c in comments)
    rows = list(csv.DictReader(line for line in lines if not line.startswith("#")))
    assert len(rows) == 2 * 2 * 3                      # rounds x steps x models
    # interleaved: within a round and step the models follow each other
    assert [r["model"] for r in rows[:3]] == list(cost_timing.MODELS)
    for r in rows:
        seconds, se_seconds, update = (float(r[k]) for k in ("seconds", "se_seconds",
                                                              "update_seconds"))
        assert seconds > 0 and 0 <= se_seconds < seconds and 0 <= update < seconds
        assert (se_seconds > 0) == (r["model"] != "resnet50")
        assert (update > 0) == (r["step"] == "step")
    printed = capsys.readouterr().out
    assert "median of the rounds' ratios" in printed and str(out) in printed


def test_bad_arguments_and_unwritable_output_are_one_line(cost_timing, tmp_path, capsys):
    assert cost_timing.main(["--image-size", "8"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cost_timing: expected") and "\n" not in err
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert cost_timing.main(["--image-size", "32", "--repeats", "1",
                             "--out", str(blocker / "timing.csv")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("cost_timing: could not write") and "\n" not in err
