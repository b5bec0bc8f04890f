"""Analyses of trained SE networks that reproduce the paper's studies (TPAMI version).

- :mod:`npsenet.analysis.gates`: the role of excitation (TPAMI, Sec. 7.2): per-class
  excitations, how much of them the class explains, and how saturated they are, block by
  block (``npsenet gates`` writes its figures and CSVs).
- :mod:`npsenet.analysis.ablate`: the ablation grid of the paper's Sec. 6 (TPAMI, Tables
  10-16) on SE-ResNet-20, trained for several seeds, resumable cell by cell
  (``npsenet ablate``).

Import the submodules themselves (``from npsenet.analysis import gates``): this package
imports nothing, so each analysis costs only what it uses.
"""
