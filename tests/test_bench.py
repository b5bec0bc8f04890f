"""`npsenet bench` on tiny settings: the figures it reports, the memory probe, the command;
and the split between the library and the command line (only npsenet/cli/ parses them)."""
import ast
from pathlib import Path

import pytest

import npsenet
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


def imported_modules(path, package_root):
    """The absolute names of the modules a file imports (relative imports resolved)."""
    package = path.relative_to(package_root).parts[:-1]       # a file's package, __init__ too
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else ()
            name = ".".join((*base, *([node.module] if node.module else [])))
            yield name
            yield from (f"{name}.{alias.name}" for alias in node.names)


def test_the_library_takes_keyword_arguments_and_no_command_line():
    assert not hasattr(bench, "add_arguments") and not hasattr(bench, "run_from_args")
    root = Path(npsenet.__file__).parent.parent
    offenders = []
    for path in sorted((root / "npsenet").rglob("*.py")):
        parts = path.relative_to(root).parts
        if parts[:2] == ("npsenet", "cli") or parts == ("npsenet", "__main__.py"):
            continue                                  # the command line and its entry point
        if any(n == "npsenet.cli" or n.startswith("npsenet.cli.")
               for n in imported_modules(path, root)):
            offenders.append(str(path.relative_to(root)))
    assert not offenders, f"library modules that import npsenet.cli: {offenders}"
