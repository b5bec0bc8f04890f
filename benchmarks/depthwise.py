"""Depthwise 3x3 convolutions of MobileNet-like shapes: the fast path's depthwise code
(``npsenet/nn/fast/conv_depthwise.py``) against the grouped code it replaces
(``conv_patches.py conv2d_grouped``, called directly) and PyTorch (when installed),
forward and backward, interleaved in one process.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 benchmarks/depthwise.py
    python3 benchmarks/depthwise.py --repeats 31 --torch-threads 1

Each repeat runs, for every shape, the three sides one after the other (each with one
untimed settle call first, as ``npsenet bench`` does after a switch of framework), so a
machine that gets busier slows all of them alike; each figure is the median over the
repeats. float32, inputs and upstream gradients channels-last for npsenet (the layout
the fast path hands from layer to layer), PyTorch in its default NCHW format; no bias
(the same per-channel sum on every side). Prints milliseconds and the ratios
grouped/depthwise (the gain) and depthwise/PyTorch.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # this checkout's npsenet
from npsenet.nn.fast.conv_depthwise import conv2d_depthwise, conv2d_depthwise_backward  # noqa: E402
from npsenet.nn.fast.conv_patches import conv2d_grouped, conv2d_grouped_backward  # noqa: E402
from npsenet.nn.fast.layout import channels_last  # noqa: E402
from npsenet.nn.fast.workspace import workspace  # noqa: E402

try:
    import torch
except ImportError:         # PyTorch is optional: its columns are left out
    torch = None

# (channels, image size, stride), 3x3 kernels with padding 1: MobileNet's depthwise layers
# at CIFAR scale, from 32 channels at 32x32 down to 256 at 8x8
SHAPES = [(32, 32, 1), (64, 32, 2), (64, 16, 1), (128, 16, 1), (128, 16, 2), (256, 8, 1)]


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def npsenet_sides(x, weight, dy, stride):
    """{side: (forward, backward)} for the depthwise and the grouped code."""
    c = x.shape[1]
    return {
        "depthwise": (lambda: conv2d_depthwise(x, weight, stride, 1, workspace),
                      lambda: conv2d_depthwise_backward(x, dy, weight, stride, 1, workspace)),
        "grouped": (lambda: conv2d_grouped(x, weight, stride, 1, c, workspace),
                    lambda: conv2d_grouped_backward(x, dy, weight, stride, 1, c, workspace)),
    }


def torch_side(x, weight, dy, stride):
    """(forward, backward) of torch.nn.functional.conv2d with groups = C, autograd on;
    backward runs on the graph of the forward just before it."""
    tx = torch.tensor(np.ascontiguousarray(x), requires_grad=True)
    tw = torch.tensor(weight, requires_grad=True)
    tdy = torch.tensor(np.ascontiguousarray(dy))
    graph = {}

    def forward():
        graph["y"] = torch.nn.functional.conv2d(tx, tw, None, stride=stride, padding=1,
                                                groups=tx.shape[1])

    def backward():
        tx.grad = tw.grad = None
        graph.pop("y").backward(tdy)
    return forward, backward


def check_agreement(sides, x, weight, stride):
    """The depthwise and grouped outputs and gradients agree (float32 round-off)."""
    results = {name: (fwd(), bwd()) for name, (fwd, bwd) in sides.items()}
    (y_new, (dw_new, dx_new)), (y_old, (dw_old, dx_old)) = results.values()
    for new, old in ((y_new, y_old), (dw_new, dw_old), (dx_new, dx_old)):
        assert np.abs(new - old).max() <= 1e-4 * np.abs(old).max(), "the paths disagree"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch.set_num_threads (default: PyTorch's own choice)")
    args = parser.parse_args(argv)
    if torch is not None and args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    rng = np.random.default_rng(0)
    cases = []
    for c, size, stride in SHAPES:
        x = channels_last(rng.standard_normal((args.batch_size, c, size, size), np.float32))
        weight = rng.standard_normal((c, 1, 3, 3), np.float32) / 3
        ho = (size + 2 - 3) // stride + 1
        dy = channels_last(rng.standard_normal((args.batch_size, c, ho, ho), np.float32))
        sides = npsenet_sides(x, weight, dy, stride)
        check_agreement(sides, x, weight, stride)
        if torch is not None:
            sides["torch"] = torch_side(x, weight, dy, stride)
        cases.append(((c, size, stride), sides))

    times = {(shape, name, part): [] for shape, sides in cases for name in sides
             for part in ("forward", "backward")}
    for _ in range(args.repeats):
        for shape, sides in cases:
            for name, (forward, backward) in sides.items():
                forward(), backward()                                   # settle
                times[shape, name, "forward"].append(timed(forward))
                times[shape, name, "backward"].append(timed(backward))

    ms = {key: 1e3 * statistics.median(values) for key, values in times.items()}
    threads = f", PyTorch threads: {torch.get_num_threads()}" if torch is not None else ""
    print(f"depthwise 3x3, padding 1, batch {args.batch_size}, float32: median ms of "
          f"{args.repeats} interleaved repeats{threads}")
    header = f"{'C':>4} {'size':>5} {'s':>2}  {'part':<8} {'depthwise':>9} {'grouped':>8}"
    header += f" {'torch':>7}" if torch is not None else ""
    header += f"  {'grouped/dw':>10}" + (f" {'dw/torch':>9}" if torch is not None else "")
    print(header)
    for shape, sides in cases:
        for part in ("forward", "backward"):
            new, old = ms[shape, "depthwise", part], ms[shape, "grouped", part]
            line = f"{shape[0]:>4} {shape[1]:>5} {shape[2]:>2}  {part:<8} {new:>9.2f} {old:>8.2f}"
            if torch is not None:
                line += f" {ms[shape, 'torch', part]:>7.2f}"
            line += f"  {old / new:>10.2f}"
            if torch is not None:
                line += f" {new / ms[shape, 'torch', part]:>9.2f}"
            print(line)


if __name__ == "__main__":
    main()
