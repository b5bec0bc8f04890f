"""Sub-commands of ``npsenet``; see :mod:`npsenet.cli`. Shared here: the ``--device``
flag and the argparse types that turn a bad number into a one-line usage error."""
import argparse


def add_device_argument(parser):
    """``--device cpu|gpu``, shared by every command that computes."""
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu",
                        help="cpu (NumPy) or gpu (CuPy; needs the gpu extra). Default: cpu.")


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
