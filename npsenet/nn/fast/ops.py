"""The fast path's forward/backward pairs, under the plain path's names: what the layers
call when ``ns.nn.is_fast()``. Pairs that are fast enough in plain form (linear, sigmoid,
tanh, max, average and adaptive average pool, the loss, the max squeeze, flatten, channel
shuffle, dropout, the rectangular convolutions) are the plain ones."""
from ..functional import (adaptive_avg_pool2d_backward, adaptive_avg_pool2d_forward,  # noqa: F401
                          avg_pool2d_backward, avg_pool2d_forward,
                          channel_shuffle_backward, channel_shuffle_forward, dropout_backward,
                          dropout_forward, factorized_conv2d_backward,
                          factorized_conv2d_forward, flatten_backward, flatten_forward,
                          global_max_pool_backward, global_max_pool_forward,
                          linear_backward, linear_forward, max_pool2d_backward,
                          max_pool2d_forward, sigmoid_backward, sigmoid_forward,
                          softmax_cross_entropy_backward, softmax_cross_entropy_forward,
                          tanh_backward, tanh_forward)
from .conv import conv2d_backward, conv2d_forward  # noqa: F401
from .elementwise import (batchnorm_backward, batchnorm_eval_forward,  # noqa: F401
                          batchnorm_forward, channel_scale_backward, channel_scale_forward,
                          global_avg_pool_backward, global_avg_pool_forward, relu_backward,
                          relu_forward, sync_batchnorm_backward, sync_batchnorm_forward)
from .host_memory import keep_freed_memory

keep_freed_memory()      # freed activations stay with the process for the next step
