"""Argparse helpers shared by the sub-commands: ``--device``, ``--plain``, number types
that turn a bad value into a one-line usage error, the data options, and the options that
choose a model and its SE ablation.

    npsenet train --model se_resnet20 --reduction 8 --placement pre --se-stages 1,2
"""
from __future__ import annotations

import argparse

from ..models import PLACEMENTS, build_model, model_names
from ..models.registry import model_info
from ..models.se_options import GATE_KINDS, SQUEEZE_KINDS

DEFAULT_MODEL = "se_resnet20"

# argparse destination -> the model option it sets
SE_ARGUMENTS = {"reduction": "--reduction", "squeeze": "--squeeze", "gate": "--gate",
                "se_bias": "--se-bias", "placement": "--placement",
                "se_stages": "--se-stages", "no_squeeze": "--no-squeeze",
                "divisor": "--divisor"}


# -- devices and numbers -------------------------------------------------------------------
def add_device_argument(parser):
    """``--device cpu|gpu``, shared by every command that computes."""
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu",
                        help="cpu (NumPy) or gpu (CuPy; needs the gpu extra). Default: cpu.")


def add_plain_argument(parser):
    """``--plain``: every layer on the plain path (``npsenet.nn.functional``, the code the
    notebooks derive), as ``NPSENET_FAST=0`` does; :func:`npsenet.cli.main` applies it."""
    parser.add_argument("--plain", action="store_true",
                        help="run every layer on the plain path (npsenet.nn.functional, the "
                             "code the notebooks derive): the same numbers, slower; as "
                             "NPSENET_FAST=0")


def _integer_at_least(minimum, expected):
    """An argparse type: an integer >= ``minimum``, or a usage error naming ``expected``."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value
    return parse


positive_int = _integer_at_least(1, "a positive integer")
non_negative_int = _integer_at_least(0, "an integer >= 0")


def non_negative_float(text):
    """argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


# -- data ----------------------------------------------------------------------------------
def add_data_arguments(group, datasets, dataset_default):
    """--dataset, --data-dir and --download/--no-download (``npsenet train`` and ``eval``)."""
    group.add_argument("--dataset", choices=datasets, default=dataset_default,
                       help="cifar10, cifar100, or synthetic (generated, offline)")
    group.add_argument("--data-dir", default=None, metavar="DIR",
                       help="the folder that holds cifar-10-batches-py/ or cifar-100-python/ "
                            "(default: the cache folder, $NPSENET_DATA or ~/.cache/npsenet)")
    group.add_argument("--download", action=argparse.BooleanOptionalAction, default=None,
                       help="download CIFAR when it is missing from the data folder "
                            "(default: yes; --no-download to fail instead)")


def add_checkpoint_input_arguments(parser, checkpoint_help):
    """--checkpoint (required), the data arguments with the checkpoint's dataset as the
    default, and --batch-size of the forward passes (``npsenet eval`` and ``gates``)."""
    from ..train import DATASETS

    parser.add_argument("--checkpoint", required=True, metavar="PATH", help=checkpoint_help)
    add_data_arguments(parser, DATASETS, None)
    parser.add_argument("--batch-size", type=positive_int, default=256,
                        help="images per forward pass (default 256)")


# -- the model and its SE options ----------------------------------------------------------
def parse_stages(text):
    """``"1,2"`` -> ``[1, 2]`` (the stages, from 1, that carry SE blocks)."""
    try:
        stages = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated stage numbers such as 1,2,3, got {text!r}") from None
    if not stages:
        raise argparse.ArgumentTypeError("expected at least one stage number, e.g. 1,2")
    return stages


def add_model_arguments(parser):
    """Add ``--model`` and the SE options. Unset SE options keep the model's defaults."""
    group = parser.add_argument_group("model")
    group.add_argument("--model", choices=model_names(), default=DEFAULT_MODEL, metavar="NAME",
                       help=f"architecture (default: {DEFAULT_MODEL}), one of: "
                            f"{', '.join(model_names())}; the *_cifar models and "
                            "(se_)resnet20/32/56/110 are for 32x32 images, the others for "
                            "ImageNet (docs/contract.md#models)")
    group.add_argument("--reduction", type=int, default=None,
                       help="SE reduction ratio r; hidden width max(1, C // r) (default 16)")
    group.add_argument("--squeeze", choices=SQUEEZE_KINDS, default=None,
                       help="SE squeeze: global average (default) or max pooling")
    group.add_argument("--gate", choices=GATE_KINDS, default=None,
                       help="SE gate nonlinearity (default sigmoid)")
    group.add_argument("--se-bias", action="store_true", default=None,
                       help="biases in the SE's fc1 and fc2 (default: off for CIFAR models, "
                            "on for ImageNet ones)")
    group.add_argument("--placement", choices=PLACEMENTS, default=None,
                       help="where the SE block sits in the residual block (default standard; "
                            "3x3: on the output of the bottleneck's 3x3 convolution)")
    group.add_argument("--se-stages", type=parse_stages, default=None, metavar="1,2,...",
                       help="stages that carry SE blocks (default: all)")
    group.add_argument("--no-squeeze", action="store_true", default=False,
                       help="the NoSqueeze ablation: 1x1 convolutions, no pooling")
    group.add_argument("--divisor", type=positive_int, default=None, metavar="D",
                       help="round the SE's hidden width C / r to a multiple of D (timm's "
                            "rd_divisor; default: the model's, 1 = max(1, C // r))")
    return parser


def model_options_from_args(args):
    """The SE options that were given on the command line, as model keyword arguments."""
    options = {}
    for dest in SE_ARGUMENTS:
        value = getattr(args, dest, None)
        if value is None or value is False:
            continue
        options["bias" if dest == "se_bias" else dest] = value
    return options


def model_from_args(args, num_classes):
    """Build ``args.model`` for ``num_classes`` outputs with the SE options given."""
    options = model_options_from_args(args)
    if options and not model_info(args.model).takes_se_options:
        flags = ", ".join(SE_ARGUMENTS["se_bias" if k == "bias" else k] for k in options)
        raise ValueError(f"the SE options ({flags}) apply only to SE models, but --model is "
                         f"{args.model}. "
                         f"Use --model se_{args.model}, or drop {flags}.")
    return build_model(args.model, num_classes=num_classes, **options)
