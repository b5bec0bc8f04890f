"""Analyses of trained SE networks that reproduce the paper's studies.

* :mod:`npsenet.analysis.ablate`: the ablation grid of the paper's Sec. 6 (TPAMI, Tables
  10-16) on SE-ResNet-20, trained for several seeds, resumable cell by cell
  (``npsenet ablate``).

Import the submodules themselves (``from npsenet.analysis import ablate``): this package
imports nothing, so each analysis costs only what it uses.
"""
