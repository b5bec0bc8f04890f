"""Layers that only move numbers: Flatten (the step from feature maps to the classifier)
and ShuffleNet's channel shuffle (Zhang et al., CVPR 2018, Sec. 3.1). Their backward
passes apply the inverse rearrangement, so gradients land where their values came from.

    flatten          y[n, :] = x[n].ravel()              dx = dy.reshape(x's shape)
    channel shuffle  (N, g m, H, W) -> (N, g, m, H, W) -> (N, m, g, H, W) -> (N, g m, H, W)
                     y[n, j g + i] = x[n, i m + j]       dx[n, i m + j] = dy[n, j g + i]
"""
from __future__ import annotations


def flatten_forward(x):
    """x (N, d1, d2, ...) -> y (N, d1 d2 ...), each sample's values in row-major order;
    the cache is x's shape."""
    return x.reshape(x.shape[0], -1), x.shape


def flatten_backward(dy, x_shape):
    """dy (N, d1 d2 ...) -> dx (N, d1, d2, ...): the flattening is a bijection, so each
    gradient goes back to the position its value came from (a reshape)."""
    return dy.reshape(x_shape)


def channel_shuffle_forward(x, groups):
    """x (N, C, H, W), C = g m, -> y (N, C, H, W) with y[:, j g + i] = x[:, i m + j]
    (i < g, j < m): the channels of group i are dealt out to every group in turn.
    Reshape (N, g, m, H, W), swap the two channel axes, reshape back; the cache is g."""
    n, c, h, w = x.shape
    m = c // groups
    y = x.reshape(n, groups, m, h, w).transpose(0, 2, 1, 3, 4).reshape(n, c, h, w)
    return y, groups


def channel_shuffle_backward(dy, groups):
    """dy (N, C, H, W) -> dx (N, C, H, W), the inverse permutation dx[:, i m + j] =
    dy[:, j g + i]: reshape (N, m, g, H, W), swap the two channel axes, reshape back
    (a shuffle with m groups)."""
    n, c, h, w = dy.shape
    m = c // groups
    return dy.reshape(n, m, groups, h, w).transpose(0, 2, 1, 3, 4).reshape(n, c, h, w)
