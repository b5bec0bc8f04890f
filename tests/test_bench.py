"""`npsenet bench` on tiny settings: the figures it reports, the memory probe, the command."""
import pytest

from npsenet import bench, cli

TINY = dict(model="resnet20", batch_size=4, steps=2, warmup=1, settle=1)


def test_run_benchmark_reports_times_and_their_ratio():
    pytest.importorskip("torch")
    result = bench.run_benchmark(**TINY, memory=False)
    assert result["npsenet_s"] > 0 and result["torch_s"] > 0
    assert result["ratio"] == pytest.approx(result["npsenet_s"] / result["torch_s"])
    assert result["images_per_s"] == pytest.approx(4 / result["npsenet_s"])
    assert "ratio npsenet / PyTorch" in bench.format_result(result)


def test_eval_mode_without_torch():
    result = bench.run_benchmark(**TINY, mode="eval", compare_torch=False, memory=False)
    assert result["torch_s"] is None and result["ratio"] is None and result["npsenet_s"] > 0


def test_the_memory_probe_measures_a_step():
    peak = bench.measure_peak_memory("npsenet", model="resnet20", batch_size=4,
                                     image_size=32, dtype="float32", device="cpu", mode="train")
    assert peak > 0


def test_the_command(capsys):
    cli.main(["bench", "--model", "resnet20", "--batch-size", "4", "--steps", "1",
              "--warmup", "0", "--no-torch", "--no-memory"])
    assert "resnet20 train step, batch 4" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["bench", "--steps", "0"])
    assert "expected a positive integer" in capsys.readouterr().err
