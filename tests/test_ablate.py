"""``npsenet ablate`` on a tiny synthetic grid: the table and the CSVs have the right rows,
a second call skips finished runs, a stopped run continues from its checkpoint, and bad
input gets one line."""
from __future__ import annotations

import csv

import pytest

from npsenet.analysis import ablate
from npsenet.cli import main

TINY = ["--dataset", "synthetic", "--epochs", "1", "--limit-train", "32", "--limit-test", "16",
        "--batch-size", "16"]
SETTINGS = dict(dataset="synthetic", limit_train=32, limit_test=16, batch_size=16,
                download=False)


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """2 cells x 2 seeds, one epoch of two steps each; (folder, printed output)."""
    out = tmp_path_factory.mktemp("grid")
    capture = pytest.MonkeyPatch()
    import io
    import sys
    buffer = io.StringIO()
    capture.setattr(sys, "stdout", buffer)
    try:
        code = main(["ablate", *TINY, "--cells", "default,r32", "--seeds", "0,1",
                     "--out", str(out)])
    finally:
        capture.undo()
    assert code == 0
    return out, buffer.getvalue()


def test_table_and_csvs_have_the_grid_rows(grid):
    out, printed = grid
    runs = read(out / "runs.csv")
    assert sorted((r["cell"], int(r["seed"])) for r in runs) == [
        ("default", 0), ("default", 1), ("r32", 0), ("r32", 1)]
    assert list(runs[0]) == list(ablate.RESULT_COLUMNS)
    for r in runs:
        assert 0.0 <= float(r["test_error"]) <= 100.0
        assert int(r["params"]) == ablate.model_counts(r["cell"])[0]
    summary = read(out / "summary.csv")
    # only the reduction table has two of its rows in this grid: r = 16 (default), r = 32
    assert [(r["group"], r["label"], r["seeds"]) for r in summary] == [
        ("reduction", "r = 16", "2"), ("reduction", "r = 32", "2")]
    r32 = summary[1]
    errors = [float(r["test_error"]) for r in runs if r["cell"] == "r32"]
    mean, std = ablate.mean_std(errors)
    assert float(r32["mean_error"]) == pytest.approx(mean, abs=1e-4)
    assert float(r32["std_error"]) == pytest.approx(std, abs=1e-4)
    assert (float(r32["paper_top1"]), float(r32["paper_top5"])) == (22.72, 6.20)
    # the printed table: the paper's Table 10 beside ours, with the counts
    assert "TPAMI, Table 10" in printed and "22.72" in printed
    assert f"{ablate.model_counts('r32')[0]:,}" in printed
    assert "16 test images" in printed


def test_a_second_call_skips_the_finished_runs(grid):
    out, _ = grid
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/seed*/checkpoint.npz")}
    assert len(before) == 4
    trained = ablate.run_grid(out, ["default", "r32"], [0, 1], log=lambda line: None,
                              epochs=1, **SETTINGS)
    assert trained == 0
    assert {p: p.stat().st_mtime_ns for p in before} == before
    # a new seed trains only that seed's runs
    states = [state for *_, state in ablate.plan(out, ["default", "r32"], [0, 1, 2], epochs=1,
                                                 **SETTINGS)]
    assert states == ["finished", "finished", "finished", "finished", "new", "new"]


def test_a_stopped_run_continues_from_its_checkpoint(tmp_path):
    from npsenet.train import build_trainer, read_metrics

    settings = dict(SETTINGS, epochs=2, warmup_epochs=0)
    path = ablate.run_dir(tmp_path, "r32", 0)
    build_trainer(ablate.cell_config("r32", 0, **settings), path, progress=False).fit(1)
    assert ablate.run_state(path, ablate.cell_config("r32", 0, **settings)) == "partial"
    lines = []
    assert ablate.run_grid(tmp_path, ["r32"], [0], log=lines.append, **settings) == 1
    assert "continuing at epoch 2/2" in lines[0]
    rows = read_metrics(path / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2]
    # the same numbers as a run never stopped
    whole = tmp_path / "whole"
    build_trainer(ablate.cell_config("r32", 0, **settings), whole, progress=False).fit()
    assert read_metrics(whole / "metrics.csv")[-1]["test_loss"] == rows[-1]["test_loss"]


@pytest.mark.parametrize("args, words, choices", [
    (["--cells", "default,r64"], "unknown cell(s) 'r64'", "r32"),
    (["--group", "tables"], "unknown group 'tables'", "nosqueeze"),
])
def test_unknown_cells_and_groups_get_one_line(tmp_path, capsys, args, words, choices):
    assert main(["ablate", *TINY, *args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and choices in err and len(err.splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_a_run_made_with_other_settings_is_not_taken(grid, capsys):
    out, _ = grid
    assert main(["ablate", *TINY[:2], "--epochs", "2", *TINY[4:], "--cells", "r32",
                 "--seeds", "0", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "epochs=1" in err and "epochs=2" in err and len(err.splitlines()) == 1


def test_the_grid_covers_the_papers_tables():
    assert ablate.select_cells(group="stages") == ["resnet20", "default", "stage1", "stage2",
                                                   "stage3"]
    assert ablate.select_cells() == list(ablate.CELLS)
    options = {name: cell.options for name, cell in ablate.CELLS.items()}
    assert options["r32"] == {"reduction": 32} and options["3x3"] == {"placement": "3x3"}
    assert options["nosqueeze"] == {"no_squeeze": True}
    assert options["no_last"] == {"se_stages": [1, 2]}
    # the default model is the same row of every table: the same paper numbers
    defaults = {(row.paper_top1, row.paper_top5) for group in ablate.GROUPS
                for row in group.rows if row.cell == "default" and row.paper_top1}
    assert defaults == {(22.28, 6.03)}
    baselines = {(row.paper_top1, row.paper_top5) for group in ablate.GROUPS
                 for row in group.rows if row.cell == "resnet20"}
    assert baselines == {(23.30, 6.55)}
    # the plan goes seed by seed: every cell once before any cell twice
    jobs = ablate.plan("/nonexistent", ["default", "r32"], [0, 1], epochs=1, **SETTINGS)
    assert [(cell, seed) for cell, seed, *_ in jobs] == [
        ("default", 0), ("r32", 0), ("default", 1), ("r32", 1)]
