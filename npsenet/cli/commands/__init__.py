"""Sub-commands of ``npsenet``, one module each (see :mod:`npsenet.cli`): every module
defines ``add_parser(subparsers)``, and the package finds them by listing this folder."""
