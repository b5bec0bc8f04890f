"""Layers with hand-written backward passes (``forward`` caches, ``backward`` returns dx
and accumulates parameter gradients). One file per family of layers.

Each layer holds its parameters, checks its input, keeps its cache and calls a
forward/backward pair of the active path: the plain one (``npsenet.nn.functional``,
what the notebooks derive) or the fast one (``npsenet.nn.fast``), switched with
:func:`use_fast`, the context manager ``ns.nn.fast(flag)`` or ``NPSENET_FAST=0``."""
from .activation import ReLU, Sigmoid, Tanh
from .containers import Concat, ScaledResidual
from .conv import Conv2d
from .dropout import Dropout
from .linear import Linear
from .loss import SoftmaxCrossEntropy
from .module import Module, Parameter, Sequential, is_grad_enabled, no_grad
from .norm import BatchNorm2d
from .pooling import AdaptiveAvgPool2d, AvgPool2d, GlobalAvgPool2d, GlobalMaxPool2d, MaxPool2d
from .reshape import ChannelShuffle, Flatten
from .se import ChannelScale, SEBlock
from .switch import is_fast, use_fast
from . import functional  # the plain path
from . import fast  # the fast path; ns.nn.fast(flag) is the context manager

__all__ = [
    "Module", "Parameter", "Sequential", "Conv2d", "Linear", "ReLU", "Sigmoid", "Tanh",
    "GlobalAvgPool2d", "GlobalMaxPool2d", "MaxPool2d", "BatchNorm2d", "ChannelScale",
    "SEBlock", "SoftmaxCrossEntropy", "AvgPool2d", "AdaptiveAvgPool2d", "Flatten", "Dropout", "ChannelShuffle",
    "Concat", "ScaledResidual", "no_grad", "is_grad_enabled", "use_fast", "is_fast",
    "fast", "functional",
]
