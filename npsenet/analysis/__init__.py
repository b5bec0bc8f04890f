"""Analyses of trained networks, after the paper's Sec. 7 (TPAMI version).

- :mod:`npsenet.analysis.gates`: the role of excitation (TPAMI, Sec. 7.2): per-class
  excitations, how much of them the class explains, and how saturated they are, block by
  block (``npsenet gates`` writes its figures and CSVs).

Import the submodules directly, e.g. ``from npsenet.analysis import gates``.
"""
