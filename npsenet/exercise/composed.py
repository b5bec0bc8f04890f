"""The reference solutions of the course's composite exercises: the excitation, the whole SE
block and a residual block with SE, each a stateless pair built from the plain path's
pairs (``npsenet.nn.functional``), in the style of the pairs themselves.

They compute what the layers compute: ``excitation_*`` and ``se_block_*`` what
``ns.nn.SEBlock`` does (average squeeze, ReLU, sigmoid gate), ``residual_block_*`` what
``ns.models.blocks.BasicBlock`` does with its SE layer at each of the paper's placements
(TPAMI 2020, Sec. 6.5, Fig. 5); ``tests/test_exercise.py`` checks both.
``npsenet exercise new --solutions`` copies their source (``inspect.getsource``) into the
workspace, so this file is the one place where these solutions are written.
"""
from __future__ import annotations

from ..nn.functional import (batchnorm_backward, batchnorm_forward, channel_scale_backward,
                             channel_scale_forward, conv2d_backward, conv2d_forward,
                             global_avg_pool_backward, global_avg_pool_forward,
                             linear_backward, linear_forward, relu_backward, relu_forward,
                             sigmoid_backward, sigmoid_forward)

PLACEMENTS = ("standard", "pre", "post", "identity")


def excitation_forward(z, w1, b1, w2, b2):
    """s = σ(W2 δ(W1 z + b1) + b2), the excitation F_ex (Eq. 3).

    Args:
        z: (N, C), the squeezed descriptor.
        w1: W1 (C/r, C); b1: (C/r,) or None.
        w2: W2 (C, C/r); b2: (C,) or None.
    Returns:
        s (N, C), and the cache, a dict of the four layers' caches
        (``"fc1"``, ``"relu"``, ``"fc2"``, ``"gate"``) for :func:`excitation_backward`.
    """
    a, fc1 = linear_forward(z, w1, b1)            # (N, C/r)
    h, relu = relu_forward(a)
    b, fc2 = linear_forward(h, w2, b2)            # (N, C)
    s, gate = sigmoid_forward(b)
    return s, {"fc1": fc1, "relu": relu, "fc2": fc2, "gate": gate}


def excitation_backward(ds, cache):
    """ds (N, C) -> (dz (N, C), dW1 (C/r, C), db1 (C/r,) or None, dW2 (C, C/r),
    db2 (C,) or None): the four layers' backward passes in reverse order."""
    db_ = sigmoid_backward(ds, cache["gate"])
    dh, dw2, db2 = linear_backward(db_, cache["fc2"])
    da = relu_backward(dh, cache["relu"])
    dz, dw1, db1 = linear_backward(da, cache["fc1"])
    return dz, dw1, db1, dw2, db2


def se_block_forward(u, w1, b1, w2, b2):
    """The SE block: squeeze, excitation, scale (Sec. 3), (N, C, H, W) -> (N, C, H, W).

    Args:
        u: U (N, C, H, W).
        w1, b1, w2, b2: the excitation's weights, as in :func:`excitation_forward`.
    Returns:
        x̃ = s ⊙ U (N, C, H, W), and the cache, a dict with the caches of the
        ``"squeeze"``, the ``"excitation"`` and the ``"scale"`` for :func:`se_block_backward`.
    """
    z, squeeze = global_avg_pool_forward(u)                   # (N, C)
    s, excitation = excitation_forward(z, w1, b1, w2, b2)     # (N, C)
    y, scale = channel_scale_forward(u, s)
    return y, {"squeeze": squeeze, "excitation": excitation, "scale": scale}


def se_block_backward(dy, cache):
    """dy (N, C, H, W) -> (du (N, C, H, W), dW1, db1, dW2, db2).

    U reaches the output along two paths, through the scale directly and through the
    gate s computed from it, so du is the sum of both paths' gradients."""
    du_scale, ds = channel_scale_backward(dy, cache["scale"])           # path 1
    dz, dw1, db1, dw2, db2 = excitation_backward(ds, cache["excitation"])
    du_gate = global_avg_pool_backward(dz, cache["squeeze"])            # path 2
    return du_scale + du_gate, dw1, db1, dw2, db2


def residual_block_forward(x, params, stride=1, placement="standard", eps=1e-5):
    """A BasicBlock with an SE block at ``placement`` (training-mode batch norm).

        F(x)      = BN2(conv2(ReLU(BN1(conv1_s(x)))))          3x3 convolutions, padding 1
        shortcut  = x, or BN(conv1x1_s(x)) when "downsample.0.weight" is in params
        standard  y = ReLU(SE(F(x)) + shortcut(x))
        pre       y = ReLU(F(SE(x)) + shortcut(x))
        post      y = SE(ReLU(F(x) + shortcut(x)))
        identity  y = ReLU(F(x) + SE(shortcut(x)))

    Args:
        x: (N, C_in, H, W).
        params: arrays under torchvision's state_dict names: "conv1.weight"
            (C_out, C_in, 3, 3), "bn1.weight", "bn1.bias" (C_out,), "conv2.weight"
            (C_out, C_out, 3, 3), "bn2.weight", "bn2.bias", "se.fc1.weight" (C'/r, C'),
            "se.fc2.weight" (C', C'/r) with C' = C_in for "pre" and C_out otherwise
            (optional "se.fc1.bias", "se.fc2.bias"), and for a projection shortcut
            "downsample.0.weight" (C_out, C_in, 1, 1), "downsample.1.weight",
            "downsample.1.bias".
        stride: s of conv1 and of the projection shortcut.
        placement: one of ``PLACEMENTS``.
        eps: batch norm's eps.
    Returns:
        y (N, C_out, H/s, W/s), and the cache (a dict: the placement, the parameters'
        names, and each layer's cache under its name) for :func:`residual_block_backward`.
    """
    p = params
    cache = {"placement": placement, "names": list(params)}

    def se(v):
        out, cache["se"] = se_block_forward(v, p["se.fc1.weight"], p.get("se.fc1.bias"),
                                            p["se.fc2.weight"], p.get("se.fc2.bias"))
        return out

    out = se(x) if placement == "pre" else x
    out, cache["conv1"] = conv2d_forward(out, p["conv1.weight"], None, stride, 1)
    out, _, _, cache["bn1"] = batchnorm_forward(out, p["bn1.weight"], p["bn1.bias"], eps)
    out, cache["relu1"] = relu_forward(out)
    out, cache["conv2"] = conv2d_forward(out, p["conv2.weight"], None, 1, 1)
    out, _, _, cache["bn2"] = batchnorm_forward(out, p["bn2.weight"], p["bn2.bias"], eps)
    if placement == "standard":
        out = se(out)
    shortcut = x
    if "downsample.0.weight" in p:
        shortcut, cache["downsample.0"] = conv2d_forward(x, p["downsample.0.weight"], None,
                                                         stride, 0)
        shortcut, _, _, cache["downsample.1"] = batchnorm_forward(
            shortcut, p["downsample.1.weight"], p["downsample.1.bias"], eps)
    if placement == "identity":
        shortcut = se(shortcut)
    out, cache["relu_out"] = relu_forward(out + shortcut)
    if placement == "post":
        out = se(out)
    return out, cache


def residual_block_backward(dy, cache):
    """dy (N, C_out, H', W') -> (dx (N, C_in, H, W), grads), grads a dict with one
    gradient per parameter, under the names of ``params``.

    x reaches the output along two paths, the branch F and the shortcut, so dx is the
    sum of both; the SE block's backward runs where its forward ran, in reverse order."""
    placement, grads = cache["placement"], {}

    def se_backward(d):
        d, grads["se.fc1.weight"], db1, grads["se.fc2.weight"], db2 = se_block_backward(
            d, cache["se"])
        for name, g in (("se.fc1.bias", db1), ("se.fc2.bias", db2)):
            if name in cache["names"]:
                grads[name] = g
        return d

    d_sum = se_backward(dy) if placement == "post" else dy
    d_sum = relu_backward(d_sum, cache["relu_out"])        # dL/d(F(x) + shortcut(x))
    d_shortcut = se_backward(d_sum) if placement == "identity" else d_sum
    if "downsample.0" in cache:
        d_shortcut, grads["downsample.1.weight"], grads["downsample.1.bias"] = \
            batchnorm_backward(d_shortcut, cache["downsample.1"])
        d_shortcut, grads["downsample.0.weight"], _ = conv2d_backward(d_shortcut,
                                                                      cache["downsample.0"])
    d = se_backward(d_sum) if placement == "standard" else d_sum
    d, grads["bn2.weight"], grads["bn2.bias"] = batchnorm_backward(d, cache["bn2"])
    d, grads["conv2.weight"], _ = conv2d_backward(d, cache["conv2"])
    d = relu_backward(d, cache["relu1"])
    d, grads["bn1.weight"], grads["bn1.bias"] = batchnorm_backward(d, cache["bn1"])
    d, grads["conv1.weight"], _ = conv2d_backward(d, cache["conv1"])
    if placement == "pre":
        d = se_backward(d)
    return d + d_shortcut, grads
