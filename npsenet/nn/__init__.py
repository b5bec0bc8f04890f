"""Layers with hand-written backward passes (``forward`` caches, ``backward`` returns dx
and accumulates parameter gradients). One file per family of layers."""
from .activation import ReLU, Sigmoid, Tanh
from .conv import Conv2d
from .linear import Linear
from .loss import SoftmaxCrossEntropy
from .module import Module, Parameter, Sequential, is_grad_enabled, no_grad
from .norm import BatchNorm2d
from .pooling import GlobalAvgPool2d, GlobalMaxPool2d, MaxPool2d
from .se import ChannelScale, SEBlock

__all__ = [
    "Module", "Parameter", "Sequential", "Conv2d", "Linear", "ReLU", "Sigmoid", "Tanh",
    "GlobalAvgPool2d", "GlobalMaxPool2d", "MaxPool2d", "BatchNorm2d", "ChannelScale",
    "SEBlock", "SoftmaxCrossEntropy", "no_grad", "is_grad_enabled",
]
