"""The plain path: stateless forward/backward pairs, the code the notebooks derive.

In the manner of CS231n's ``layers.py``::

    y, cache = conv2d_forward(x, w, b, stride, padding, groups)
    dx, dw, db = conv2d_backward(dy, cache)

Each forward returns its output and an explicit cache; each backward takes dL/d(output)
and the cache and returns the gradients; nothing here holds state or updates a weight.
The layers of ``npsenet.nn`` call these pairs when the fast path is off
(``ns.nn.use_fast(False)``, ``NPSENET_FAST=0``), and the pairs of the same names in
``npsenet.nn.fast`` when it is on; both compute the same numbers.
"""
from .activation import (relu_backward, relu_forward, sigmoid, sigmoid_backward,
                         sigmoid_forward, tanh_backward, tanh_forward)
from .conv import (col2im, conv2d_backward, conv2d_forward, conv_output_size,
                   factorized_conv2d_backward, factorized_conv2d_forward, im2col, pad_images)
from .dropout import dropout_backward, dropout_forward
from .linear import linear_backward, linear_forward
from .loss import log_softmax, softmax_cross_entropy_backward, softmax_cross_entropy_forward
from .norm import batchnorm_backward, batchnorm_eval_forward, batchnorm_forward
from .pool import (adaptive_avg_pool2d_backward, adaptive_avg_pool2d_forward,
                   avg_pool2d_backward, avg_pool2d_forward, global_avg_pool_backward,
                   global_avg_pool_forward, global_max_pool_backward, global_max_pool_forward,
                   max_pool2d_backward, max_pool2d_forward)
from .reshape import (channel_shuffle_backward, channel_shuffle_forward, flatten_backward,
                      flatten_forward)
from .se import channel_scale_backward, channel_scale_forward
from .sync_batchnorm import sync_batchnorm_backward, sync_batchnorm_forward

__all__ = [
    "conv_output_size", "pad_images", "im2col", "col2im", "conv2d_forward", "conv2d_backward",
    "factorized_conv2d_forward", "factorized_conv2d_backward",
    "linear_forward", "linear_backward",
    "batchnorm_forward", "batchnorm_eval_forward", "batchnorm_backward",
    "sync_batchnorm_forward", "sync_batchnorm_backward",
    "relu_forward", "relu_backward", "sigmoid", "sigmoid_forward", "sigmoid_backward",
    "tanh_forward", "tanh_backward",
    "global_avg_pool_forward", "global_avg_pool_backward",
    "global_max_pool_forward", "global_max_pool_backward",
    "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
    "adaptive_avg_pool2d_forward", "adaptive_avg_pool2d_backward",
    "flatten_forward", "flatten_backward", "channel_shuffle_forward", "channel_shuffle_backward",
    "dropout_forward", "dropout_backward",
    "channel_scale_forward", "channel_scale_backward",
    "log_softmax", "softmax_cross_entropy_forward", "softmax_cross_entropy_backward",
]
