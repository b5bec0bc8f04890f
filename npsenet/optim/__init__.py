"""Optimizers and learning-rate schedules: ``SGD``, ``MultiStepLR``, ``CosineLR``."""
from .lr_scheduler import CosineLR, MultiStepLR
from .sgd import SGD

__all__ = ["SGD", "MultiStepLR", "CosineLR"]
