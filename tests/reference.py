"""Slow, obvious reference implementations used as test oracles.

Every function here is written as the textbook formula with one explicit Python loop
per index, so that it can be read against the equation and trusted. They are far too
slow for anything but tiny shapes; that is the point: no im2col, no strides, no
broadcasting tricks that could share a bug with the code under test.

All functions take and return NumPy float64 arrays.
"""
from __future__ import annotations

import math

import numpy as np


def output_size(size, kernel, stride, padding):
    """H' = floor((H + 2p - k) / s) + 1."""
    return (size + 2 * padding - kernel) // stride + 1


def conv2d_forward(x, weight, bias, stride, padding, groups):
    """y[n, o, h, w] = b[o] + sum_{c, i, j} W[o, c, i, j] x[n, g*Cg + c, s h + i - p, s w + j - p],

    where g = o // (C_out / groups) is the group of output channel o, Cg = C_in / groups,
    and x reads as zero outside the image.

    Shapes: x (N, C_in, H, W), weight (C_out, C_in/groups, k, k), bias (C_out,) or None
    -> y (N, C_out, H', W').
    """
    n_batch, c_in, height, width = x.shape
    c_out, c_per_group, k, _ = weight.shape
    out_per_group = c_out // groups
    ho = output_size(height, k, stride, padding)
    wo = output_size(width, k, stride, padding)
    y = np.zeros((n_batch, c_out, ho, wo))
    for n in range(n_batch):
        for o in range(c_out):
            group = o // out_per_group
            for h in range(ho):
                for w in range(wo):
                    total = 0.0 if bias is None else float(bias[o])
                    for c in range(c_per_group):
                        for i in range(k):
                            for j in range(k):
                                row = stride * h + i - padding
                                col = stride * w + j - padding
                                if 0 <= row < height and 0 <= col < width:
                                    total += weight[o, c, i, j] * x[n, group * c_per_group + c,
                                                                    row, col]
                    y[n, o, h, w] = total
    return y


def conv2d_backward(x, weight, dy, stride, padding, groups):
    """The derivatives of :func:`conv2d_forward`, one term of the sum at a time.

    Every term ``W[o, c, i, j] * x[n, c', row, col]`` of y[n, o, h, w] contributes
    ``dy[n, o, h, w] * x[...]`` to dW[o, c, i, j] and ``dy[n, o, h, w] * W[o, c, i, j]``
    to dx[n, c', row, col]; db[o] = sum_{n, h, w} dy[n, o, h, w].

    Returns ``(dx, dW, db)`` with the shapes of x, weight and (C_out,).
    """
    n_batch, c_in, height, width = x.shape
    c_out, c_per_group, k, _ = weight.shape
    out_per_group = c_out // groups
    _, _, ho, wo = dy.shape
    dx = np.zeros(x.shape)
    dw = np.zeros(weight.shape)
    db = np.zeros(c_out)
    for n in range(n_batch):
        for o in range(c_out):
            group = o // out_per_group
            for h in range(ho):
                for w in range(wo):
                    g = dy[n, o, h, w]
                    db[o] += g
                    for c in range(c_per_group):
                        for i in range(k):
                            for j in range(k):
                                row = stride * h + i - padding
                                col = stride * w + j - padding
                                if 0 <= row < height and 0 <= col < width:
                                    channel = group * c_per_group + c
                                    dw[o, c, i, j] += g * x[n, channel, row, col]
                                    dx[n, channel, row, col] += g * weight[o, c, i, j]
    return dx, dw, db


def maxpool2d_forward(x, kernel, stride, padding):
    """y[n, c, h, w] = max over the k x k window at (s h - p, s w - p), pixels inside the
    image only (padding never wins), and the (row, col) of the first maximum in
    row-major window order.

    Returns ``(y, argmax)`` with y (N, C, H', W') and argmax (N, C, H', W', 2).
    """
    n_batch, channels, height, width = x.shape
    ho = output_size(height, kernel, stride, padding)
    wo = output_size(width, kernel, stride, padding)
    y = np.zeros((n_batch, channels, ho, wo))
    argmax = np.zeros((n_batch, channels, ho, wo, 2), dtype=np.int64)
    for n in range(n_batch):
        for c in range(channels):
            for h in range(ho):
                for w in range(wo):
                    best, where = -math.inf, None
                    for i in range(kernel):
                        for j in range(kernel):
                            row = stride * h + i - padding
                            col = stride * w + j - padding
                            if 0 <= row < height and 0 <= col < width and x[n, c, row, col] > best:
                                best, where = x[n, c, row, col], (row, col)
                    y[n, c, h, w] = best
                    argmax[n, c, h, w] = where
    return y, argmax


def maxpool2d_backward(x_shape, argmax, dy):
    """dx[n, c, row, col] = sum of dy over the windows whose maximum sat at (row, col)."""
    dx = np.zeros(x_shape)
    n_batch, channels, ho, wo = dy.shape
    for n in range(n_batch):
        for c in range(channels):
            for h in range(ho):
                for w in range(wo):
                    row, col = argmax[n, c, h, w]
                    dx[n, c, row, col] += dy[n, c, h, w]
    return dx


def batchnorm2d_train_forward(x, gamma, beta, eps):
    """Per channel c over its m = N H W values: mu_c = mean, var_c = biased variance,
    y = gamma_c (x - mu_c) / sqrt(var_c + eps) + beta_c.

    Returns ``(y, mean, var)`` with var the biased (1/m) variance.
    """
    n_batch, channels, height, width = x.shape
    m = n_batch * height * width
    mean = np.zeros(channels)
    var = np.zeros(channels)
    y = np.zeros(x.shape)
    for c in range(channels):
        values = [x[n, c, h, w] for n in range(n_batch) for h in range(height)
                  for w in range(width)]
        mean[c] = sum(values) / m
        var[c] = sum((v - mean[c]) ** 2 for v in values) / m
        for n in range(n_batch):
            for h in range(height):
                for w in range(width):
                    xhat = (x[n, c, h, w] - mean[c]) / math.sqrt(var[c] + eps)
                    y[n, c, h, w] = gamma[c] * xhat + beta[c]
    return y, mean, var


def batchnorm2d_train_backward(x, gamma, dy, eps):
    """The batch-norm derivative written per channel from the chain rule through
    mu and var (CS231n's staged derivation):

        dxhat = dy gamma
        dvar  = sum dxhat (x - mu) (-1/2) (var + eps)^(-3/2)
        dmu   = sum dxhat (-1 / sqrt(var + eps)) + dvar * sum(-2 (x - mu)) / m
        dx    = dxhat / sqrt(var + eps) + dvar 2 (x - mu) / m + dmu / m

    Returns ``(dx, dgamma, dbeta)``.
    """
    n_batch, channels, height, width = x.shape
    m = n_batch * height * width
    dx = np.zeros(x.shape)
    dgamma = np.zeros(channels)
    dbeta = np.zeros(channels)
    idx = [(n, h, w) for n in range(n_batch) for h in range(height) for w in range(width)]
    for c in range(channels):
        mu = sum(x[n, c, h, w] for n, h, w in idx) / m
        var = sum((x[n, c, h, w] - mu) ** 2 for n, h, w in idx) / m
        std = math.sqrt(var + eps)
        dvar = sum(dy[n, c, h, w] * gamma[c] * (x[n, c, h, w] - mu) for n, h, w in idx) \
            * (-0.5) * (var + eps) ** -1.5
        dmu = sum(-dy[n, c, h, w] * gamma[c] / std for n, h, w in idx) \
            + dvar * sum(-2.0 * (x[n, c, h, w] - mu) for n, h, w in idx) / m
        for n, h, w in idx:
            dx[n, c, h, w] = (dy[n, c, h, w] * gamma[c] / std
                              + dvar * 2.0 * (x[n, c, h, w] - mu) / m + dmu / m)
            dgamma[c] += dy[n, c, h, w] * (x[n, c, h, w] - mu) / std
            dbeta[c] += dy[n, c, h, w]
    return dx, dgamma, dbeta


def se_block_forward(u, w1, b1, w2, b2, squeeze="avg", gate="sigmoid"):
    """The SE block of the paper, one sample and one channel at a time:

        z_c = 1/(H W) sum_{i,j} u_c(i, j)      (or the max, for squeeze="max")
        a = W1 z + b1,  b = W2 max(a, 0) + b2,  s = gate(b)
        x~_c = s_c u_c

    Shapes: u (N, C, H, W), w1 (C/r, C), w2 (C, C/r), biases (C/r,), (C,) or None.
    Returns ``(x~, s)`` with s of shape (N, C).
    """
    n_batch, channels, height, width = u.shape
    hidden = w1.shape[0]
    gates = {"sigmoid": lambda v: 1.0 / (1.0 + math.exp(-v)), "tanh": math.tanh,
             "relu": lambda v: max(v, 0.0)}
    out = np.zeros(u.shape)
    s = np.zeros((n_batch, channels))
    for n in range(n_batch):
        pixels = [[u[n, c, i, j] for i in range(height) for j in range(width)]
                  for c in range(channels)]
        z = [sum(p) / len(p) if squeeze == "avg" else max(p) for p in pixels]
        a = [sum(w1[k, c] * z[c] for c in range(channels)) + (0.0 if b1 is None else b1[k])
             for k in range(hidden)]
        for c in range(channels):
            b = sum(w2[c, k] * max(a[k], 0.0) for k in range(hidden)) \
                + (0.0 if b2 is None else b2[c])
            s[n, c] = gates[gate](b)
            for i in range(height):
                for j in range(width):
                    out[n, c, i, j] = s[n, c] * u[n, c, i, j]
    return out, s


def softmax_cross_entropy(logits, labels, label_smoothing=0.0):
    """L = -1/N sum_n sum_k q[n, k] log p[n, k] with q = (1 - eps) onehot + eps / K,
    and dL/dlogits = (p - q) / N. Returns ``(loss, dlogits)``."""
    n_batch, k = logits.shape
    loss = 0.0
    dlogits = np.zeros(logits.shape)
    for n in range(n_batch):
        top = max(logits[n])
        exps = [math.exp(v - top) for v in logits[n]]
        total = sum(exps)
        for c in range(k):
            p = exps[c] / total
            q = label_smoothing / k + (1.0 - label_smoothing) * (c == labels[n])
            loss -= q * math.log(p)
            dlogits[n, c] = (p - q) / n_batch
    return loss / n_batch, dlogits


def random_pool_cases(seed, count, kernels, heights, widths):
    """Random max-pooling settings ``(n, c, h, w, k, s, p)`` whose output is at least 1x1:
    stride 1 to 3 and padding at most k // 2 (PyTorch's limit), drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        k = int(rng.choice(kernels))
        s = int(rng.choice([1, 2, 3]))
        p = int(rng.integers(0, k // 2 + 1))
        h, w = int(rng.choice(heights)), int(rng.choice(widths))
        if (h + 2 * p - k) // s + 1 < 1 or (w + 2 * p - k) // s + 1 < 1:
            continue
        cases.append((int(rng.integers(1, 3)), int(rng.integers(1, 4)), h, w, k, s, p))
    return cases
