"""``npsenet summary``: a model's layers, output shapes, parameters and multiply-adds.

    npsenet summary                                  # SE-ResNet-20 on 32x32 inputs
    npsenet summary --model se_resnet50              # 224x224 by default for ImageNet models
    npsenet summary --model se_resnet50 --compare    # what SE adds over ResNet-50
    npsenet summary --model se_resnet56 --se-stages 1,2 --compare

How MACs are counted is documented in :mod:`npsenet.summary`.
"""
from __future__ import annotations

import argparse

from ...models import build_model
from ..args import (SE_ARGUMENTS, add_device_argument, add_model_arguments, model_from_args,
                    positive_int)



def add_parser(sub):
    p = sub.add_parser("summary", help="per-layer shapes, parameters and multiply-adds",
                       description="Run one forward pass on zeros and print, for every layer, "
                                   "its output shape, parameter count and multiply-adds "
                                   "(MACs), then the totals. --compare sets an SE model "
                                   "beside the plain ResNet of the same depth.")
    add_model_arguments(p)
    p.add_argument("--input-size", type=positive_int, default=None, metavar="H",
                   help="height and width of the input (default: the model's own, 32 for the "
                        "CIFAR models, 224 for most ImageNet ones)")
    p.add_argument("--batch-size", type=positive_int, default=1, metavar="N",
                   help="images in the input batch; MACs are for the whole batch (default: 1)")
    p.add_argument("--num-classes", type=positive_int, default=None, metavar="K",
                   help="outputs of fc (default: 10 for the CIFAR models, 1000 for the "
                        "ImageNet ones)")
    p.add_argument("--compare", action="store_true",
                   help="print only the totals of the SE model and of the plain ResNet of the "
                        "same depth, and what SE adds")
    add_device_argument(p)
    p.set_defaults(func=run)


def run(args):
    from ...models.registry import model_info, model_names
    from ...summary import summary

    info = model_info(args.model)
    size = args.input_size or info.input_size
    num_classes = args.num_classes or info.num_classes
    shape = (args.batch_size, 3, size, size)
    if not args.compare:
        model = model_from_args(args, num_classes).to(device=args.device)
        print(summary(model, shape))
        return 0

    se_name, plain_name = se_and_plain(info, model_names())
    se_args = argparse.Namespace(**dict(vars(args), model=se_name))
    with_se = summary(model_from_args(se_args, num_classes).to(device=args.device), shape)
    if plain_name is None:       # no registered twin: the same network with no SE stage
        try:
            plain_model = build_model(se_name, num_classes=num_classes, se_stages=[])
        except ValueError:
            raise ValueError(f"--compare: {se_name} has no registered twin without SE and "
                             "cannot be built without SE stages; drop --compare.") from None
        plain_model.name = f"{se_name} without SE (se_stages=[])"
    else:
        plain_args = argparse.Namespace(**dict(vars(args), model=plain_name,
                                               **dict.fromkeys(SE_ARGUMENTS)))   # no SE options
        plain_model = model_from_args(plain_args, num_classes)
    plain = summary(plain_model.to(device=args.device), shape)
    print(compare_table(plain, with_se))
    return 0


def se_and_plain(info, names):
    """(the SE model, its plain twin) for ``--compare`` of either one; the twin is None for
    an SE model without one (SENet-154), which is then compared with itself built with
    ``se_stages=[]``."""
    from ...models.registry import model_info

    if info.takes_se_options:
        if info.plain_twin is None:
            return info.name, None      # compared with itself built with se_stages=[]
        return info.name, info.plain_twin
    for name in names:
        if model_info(name).plain_twin == info.name:
            return name, info.name
    raise ValueError(f"--compare: {info.name} has no SE twin; use --model with an SE model "
                     "(e.g. se_resnet50) or drop --compare.")


def compare_table(plain, with_se):
    """The totals of a plain ResNet and its SE twin, and SE's share, as text."""
    extra_params = with_se.total_params - plain.total_params
    extra_macs = with_se.total_macs - plain.total_macs
    rows = [("", "parameters", "MACs"),
            (plain.title, f"{plain.total_params:,}", f"{plain.total_macs:,}"),
            (with_se.title, f"{with_se.total_params:,}", f"{with_se.total_macs:,}"),
            ("SE adds", f"{extra_params:,} (+{100 * extra_params / plain.total_params:.2f}%)",
             f"{extra_macs:,} (+{100 * extra_macs / plain.total_macs:.2f}%)")]
    by_kind = {}
    for row in with_se.rows:
        if "se" in row.name.split("."):
            by_kind[row.kind] = by_kind.get(row.kind, 0) + row.macs
    parts = {"Linear": "excitation FC layers", "Conv2d": "excitation 1x1 convolutions",
             "GlobalAvgPool2d": "squeeze (average pooling)", "scale": "scale"}
    for kind, label in parts.items():
        if by_kind.get(kind):
            rows.append((f"  {label}", "", f"{by_kind[kind]:,}"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"input {with_se.input_shape}"]
    lines += ["  ".join([r[0].ljust(widths[0]), r[1].rjust(widths[1]), r[2].rjust(widths[2])])
              for r in rows]
    return "\n".join(lines)
