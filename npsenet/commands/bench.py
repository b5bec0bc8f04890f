"""``npsenet bench``: time a training step beside PyTorch (see :mod:`npsenet.bench`)."""
from __future__ import annotations

from . import add_device_argument


def add_parser(sub):
    p = sub.add_parser("bench", help="time a training step (beside PyTorch when installed)",
                       description="Median time of a training step (forward, loss, backward, "
                                   "SGD) or an eval forward pass, its throughput and peak "
                                   "memory; with PyTorch installed, the same step in PyTorch "
                                   "interleaved in the same process, and the ratio.")
    add_device_argument(p)
    from ..bench import add_arguments
    add_arguments(p)
    p.set_defaults(func=run)


def run(args):
    from ..bench import run_from_args
    run_from_args(args)
