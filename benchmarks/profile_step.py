"""Where does a training step spend its time? cProfile over a few SE-ResNet steps.

    python benchmarks/profile_step.py                       # se_resnet20, batch 128
    python benchmarks/profile_step.py --model resnet20 --steps 5 --top 20

Prints the functions with the most internal time (time spent in the function itself,
including the NumPy calls it makes, excluding the Python functions it calls), which
for npsenet reads as a per-layer breakdown of the fast path (npsenet/nn/fast/):
conv_strips.py:strip_products (the matrix products of stride-1 convolutions and of their
input gradients), conv_strips.py:conv2d_strips_backward (the weight-gradient products),
StripGrid.fill (the padded copies), elementwise.py:batchnorm_forward/batchnorm_backward,
and so on. With NPSENET_FAST=0 it profiles the plain path (npsenet/nn/functional/)
instead. docs/performance.md quotes the result.
"""
import argparse
import cProfile
import io
import pstats

from npsenet.bench import NpsenetStep


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="se_resnet20")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    step = NpsenetStep(args.model, args.batch_size, 32, "float32", "cpu", "train")
    step()  # warm-up
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(args.steps):
        step()
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    total = stats.total_tt
    print(f"{args.model}, batch {args.batch_size}: {total / args.steps * 1e3:.0f} ms per step "
          f"under the profiler ({args.steps} steps)\n")
    print(f"{'share':>6}  {'ms/step':>8}  function")
    rows = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)
    for (filename, line, name), (_, _, tottime, _, _) in rows[:args.top]:
        where = filename.split("npsenet/")[-1] if "npsenet/" in filename else filename
        print(f"{tottime / total:6.1%}  {tottime / args.steps * 1e3:8.1f}  {where}:{line}({name})")


if __name__ == "__main__":
    main()
