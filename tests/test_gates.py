"""``npsenet gates`` and npsenet.analysis.gates: the role-of-excitation statistics (TPAMI,
Sec. 7.2) on hand-made gates of known class structure, and the command on a tiny synthetic
SE-ResNet-20 run: its CSVs, figures, terminal lines and one-line errors."""
import contextlib
import csv
import io

import numpy as np
import pytest

import npsenet as ns
from npsenet import cli
from npsenet import train as training
from npsenet.analysis import gates as analysis

BLOCKS = [f"layer{s}.{b}.se" for s in (1, 2, 3) for b in range(3)]
WIDTHS = [16] * 3 + [32] * 3 + [64] * 3


@pytest.fixture(scope="module")
def se_run(tmp_path_factory):
    """SE-ResNet-20 (r = 4) trained for one epoch on 32 synthetic images; 40 test images."""
    out = tmp_path_factory.mktemp("se_run")
    config = training.default_config(model="se_resnet20", model_options={"reduction": 4},
                                     dataset="synthetic", epochs=1, batch_size=16,
                                     limit_train=32, limit_test=40, seed=0)
    trainer = training.build_trainer(config, out, progress=False)
    trainer.fit()
    return out / training.CHECKPOINT_NAME, trainer


@pytest.fixture(scope="module")
def gates_out(se_run, tmp_path_factory):
    """The command run once on the tiny checkpoint: (exit code, stdout lines, out folder)."""
    out = tmp_path_factory.mktemp("gates")
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = cli.main(["gates", "--checkpoint", str(se_run[0]), "--out", str(out)])
    return code, buffer.getvalue().splitlines(), out


def _read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# -- the statistics on hand-made gates -------------------------------------------------------
def test_gates_that_only_the_class_sets_give_r2_one_and_the_known_spread():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2, 3], [5, 9, 3, 7])              # unequal classes
    offsets = rng.uniform(-0.3, 0.3, size=(4, 6))               # class k, channel c
    s = 0.5 + offsets[labels]                                   # no variation within a class
    stats = analysis.block_statistics(s, labels)
    assert stats["r2"] == pytest.approx(1.0)
    assert stats["within_class_std"] == pytest.approx(0.0, abs=1e-7)
    # the std over the 4 classes (each counted once) of the class means, mean over channels
    assert stats["between_class_std"] == pytest.approx(offsets.std(axis=0).mean())
    assert stats["class_range"] == pytest.approx((offsets.max(0) - offsets.min(0)).mean())
    assert stats["r2_chance"] == pytest.approx(3 / 23)
    assert (stats["images"], stats["classes"], stats["channels"]) == (24, 4, 6)
    classes, means, stds, counts = analysis.class_means(s, labels)
    assert classes.tolist() == [0, 1, 2, 3] and counts.tolist() == [5, 9, 3, 7]
    np.testing.assert_allclose(means, 0.5 + offsets)
    np.testing.assert_allclose(stds, 0.0, atol=1e-12)


def test_r2_and_spreads_match_a_direct_sum_of_squares():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 5, size=200)
    s = 1 / (1 + np.exp(-(rng.normal(size=(200, 8)) + 0.8 * (labels[:, None] == 2))))
    stats = analysis.block_statistics(s, labels)
    # R^2 = 1 - SS_within / SS_total, channel by channel
    ss_total = ((s - s.mean(0)) ** 2).sum(0)
    ss_within = sum(((s[labels == k] - s[labels == k].mean(0)) ** 2).sum(0) for k in range(5))
    assert stats["r2"] == pytest.approx(np.mean(1 - ss_within / ss_total))
    assert stats["within_class_std"] == pytest.approx(np.sqrt(ss_within / 200).mean())
    assert stats["total_std"] == pytest.approx(s.std(0).mean())
    assert 0.0 <= stats["r2"] <= 1.0


def test_gates_that_ignore_the_class_give_r2_near_chance():
    rng = np.random.default_rng(2)
    r2 = [analysis.block_statistics(rng.uniform(size=(300, 32)),
                                    rng.integers(0, 10, size=300))["r2"] for _ in range(5)]
    assert np.mean(r2) == pytest.approx(9 / 299, rel=0.3)


def test_saturation_shares_per_block_and_per_stage():
    labels = np.array([0, 1, 0, 1])
    high = np.full((4, 2), 0.95)
    mixed = np.array([[0.95, 0.05], [0.5, 0.5], [0.05, 0.99], [0.5, 0.5]])
    stats = analysis.block_statistics(mixed, labels)
    assert stats["frac_above_0.9"] == pytest.approx(2 / 8)
    assert stats["frac_below_0.1"] == pytest.approx(2 / 8)
    assert stats["mean_gate"] == pytest.approx(mixed.mean())
    assert analysis.block_statistics(high, labels)["r2"] == 0.0       # a gate that never varies
    rows = analysis.stage_statistics({"layer1.0.se": mixed, "layer1.1.se": high,
                                      "layer2.0.se": high})
    assert [r["stage"] for r in rows] == ["layer1", "layer2"]
    assert rows[0]["frac_above_0.9"] == pytest.approx(10 / 16)
    assert rows[0]["blocks"] == 2 and rows[0]["gates"] == 16 and rows[1]["frac_below_0.1"] == 0


def test_stage_names_and_the_blocks_drawn_by_default():
    assert analysis.stage_of("layer2.1.se") == "layer2"
    assert analysis.stage_of("features.3.se") == "features"
    assert analysis.default_blocks(BLOCKS) == ["layer1.2.se", "layer2.2.se", "layer3.0.se",
                                               "layer3.1.se", "layer3.2.se"]


def test_bad_shapes_are_refused_in_one_line():
    with pytest.raises(ValueError, match="one label per image"):
        analysis.block_statistics(np.zeros((4, 3)), np.zeros(5))
    with pytest.raises(ValueError, match="no SE blocks"):
        analysis.collect_gates(ns.models.build_model("resnet20"), np.zeros((2, 3, 32, 32)))


# -- gates from a model ----------------------------------------------------------------------
def test_collect_gates_in_batches_equals_one_pass_and_the_plain_path(se_run):
    model = se_run[1].model
    x = np.random.default_rng(3).normal(size=(10, 3, 32, 32)).astype(np.float32)
    in_batches = analysis.collect_gates(model, x, batch_size=4)
    assert list(in_batches) == BLOCKS
    assert [s.shape for s in in_batches.values()] == [(10, c) for c in WIDTHS]
    model.eval()
    with ns.no_grad():
        model(x)
    for block, s in ns.models.gate_values(model).items():
        np.testing.assert_allclose(in_batches[block], s, rtol=1e-5, atol=1e-6)
    with ns.nn.fast(False):
        plain = analysis.collect_gates(model, x)
    for block in BLOCKS:
        np.testing.assert_allclose(plain[block], in_batches[block], rtol=1e-4, atol=1e-5)


# -- the command -----------------------------------------------------------------------------
def test_the_command_writes_one_row_per_block_and_the_figures(gates_out):
    code, lines, out = gates_out
    assert code == 0
    rows = _read(out / "gates.csv")
    assert [r["block"] for r in rows] == BLOCKS
    assert list(rows[0]) == list(analysis.BLOCK_COLUMNS)
    assert [int(r["channels"]) for r in rows] == WIDTHS
    assert all(int(r["images"]) == 40 for r in rows)
    for r in rows:
        assert 0.0 <= float(r["r2"]) <= 1.0
        assert 0.0 <= float(r["between_class_std"]) <= 0.5
        assert 0.0 < float(r["mean_gate"]) < 1.0
    stages = _read(out / "stages.csv")
    assert [r["stage"] for r in stages] == ["layer1", "layer2", "layer3"]
    curves = _read(out / "class_means.csv")
    k = int(rows[0]["classes"])
    assert len(curves) == k * sum(WIDTHS)
    for name in ("per_class.png", "within_class.png", "by_depth.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summaries = [line for line in lines if line.startswith("layer")]
    assert [line.split()[0] for line in summaries] == BLOCKS
    assert all("R2" in line and "between-class std" in line for line in summaries)


def test_the_csv_agrees_with_the_statistics_of_the_collected_gates(se_run, gates_out):
    _, _, out = gates_out
    ckpt = ns.io.load_checkpoint(se_run[0])
    config = ckpt.meta["config"]
    images, labels, _ = training.load_split(config, train=False)
    gates = analysis.collect_gates(ckpt.model, images,
                                   ns.data.Normalize(config["mean"], config["std"]))
    expected = analysis.block_statistics(gates["layer3.2.se"], labels)
    row = _read(out / "gates.csv")[-1]
    for key in ("r2", "between_class_std", "within_class_std", "mean_gate"):
        assert float(row[key]) == pytest.approx(expected[key], abs=2e-6)


def _error(capsys, argv):
    code = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_one_line_errors(se_run, tmp_path, capsys):
    plain = tmp_path / "plain.npz"
    ns.io.save_model(plain, ns.models.build_model("resnet20"))
    assert "without SE blocks" in _error(capsys, ["gates", "--checkpoint", str(plain)])
    assert "no checkpoint" in _error(capsys, ["gates", "--checkpoint",
                                              str(tmp_path / "missing.npz")])
    assert "checkpoint.npz" in _error(capsys, ["gates", "--checkpoint", str(tmp_path)])
    checkpoint = str(se_run[0])
    assert "layer9.0.se" in _error(capsys, ["gates", "--checkpoint", checkpoint,
                                            "--blocks", "layer9.0.se", "--limit-test", "8"])
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert "could not write" in _error(capsys, ["gates", "--checkpoint", checkpoint,
                                                "--limit-test", "8", "--out", str(blocker)])
