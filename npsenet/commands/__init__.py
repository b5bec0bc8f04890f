"""Sub-commands of ``npsenet``; see :mod:`npsenet.cli`."""


def add_device_argument(parser):
    """``--device cpu|gpu``, shared by every command that computes."""
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu",
                        help="cpu (NumPy) or gpu (CuPy; needs the gpu extra). Default: cpu.")
