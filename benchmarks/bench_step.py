"""Benchmark one SE-ResNet training step (or eval forward) against PyTorch.

    python benchmarks/bench_step.py                         # se_resnet20, batch 128, CPU
    python benchmarks/bench_step.py --mode eval --steps 20
    python benchmarks/bench_step.py --device gpu            # CuPy beside PyTorch CUDA

Same as ``npsenet bench``; the method is described in ``npsenet/bench.py``.
"""
import argparse

from npsenet.cli.args import add_device_argument
from npsenet.cli.commands.bench import add_arguments, run_from_args

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_device_argument(parser)
    add_arguments(parser)
    run_from_args(parser.parse_args())
