"""Normalisation and the standard CIFAR augmentation (pad-4 random crop, horizontal flip).

Augmentation works on uint8 NumPy batches (N, C, H, W) with an explicit
``np.random.Generator``, so a seed fixes every crop and flip; see
:class:`~npsenet.data.BatchLoader` for why it runs on the host.

Both augmentations are vectorised: no Python loop over images.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..backend import get_array_module

# Per-channel mean and standard deviation (RGB, in [0, 1] units) of the 50,000 CIFAR training
# images: the published values, which channel_stats(CIFAR10(train=True).images) reproduces.
CIFAR10_MEAN = np.array([0.4914, 0.4822, 0.4465], dtype=np.float32)
CIFAR10_STD = np.array([0.2470, 0.2435, 0.2616], dtype=np.float32)
CIFAR100_MEAN = np.array([0.5071, 0.4865, 0.4409], dtype=np.float32)
CIFAR100_STD = np.array([0.2673, 0.2564, 0.2762], dtype=np.float32)


def _check_images(images, name: str):
    if not hasattr(images, "ndim") or images.ndim != 4:
        shape = getattr(images, "shape", type(images).__name__)
        raise ValueError(f"{name}: expected a batch of images (N, C, H, W), got {shape}.")


def channel_stats(images, chunk: int = 5000):
    """Per-channel mean and (population) standard deviation of uint8 images, in [0, 1] units.

    mean_c = 1/(N H W) sum_{n,i,j} x_{n,c,i,j} / 255,  std_c = sqrt(E[(x/255)^2] - mean_c^2),
    accumulated in float64 over chunks of images to keep memory small.

    Args:
        images: uint8 array (N, C, H, W) (or floats in [0, 255]).
    Returns:
        the pair ``(mean, std)`` of float32 arrays (C,).
    """
    _check_images(images, "channel_stats")
    images = np.asarray(images)
    total = np.zeros(images.shape[1])
    total_sq = np.zeros(images.shape[1])
    for start in range(0, len(images), chunk):
        block = images[start:start + chunk].astype(np.float64) / 255.0
        total += block.sum(axis=(0, 2, 3))
        total_sq += (block ** 2).sum(axis=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 0.0))
    return mean.astype(np.float32), std.astype(np.float32)


class Normalize:
    """x -> (x / 255 - mean_c) / std_c per channel: the input transform of every model.

    Takes uint8 images (N, C, H, W) (or floats in [0, 255]), NumPy or CuPy, and returns
    float32 of the same shape and backend. ``mean`` and ``std`` are in [0, 1] units, as
    :func:`channel_stats` returns them and as PyTorch's ``transforms.Normalize`` expects
    them after ``ToTensor``.
    """

    def __init__(self, mean, std):
        self.mean = np.asarray(mean, dtype=np.float32).reshape(-1)
        self.std = np.asarray(std, dtype=np.float32).reshape(-1)
        if self.mean.shape != self.std.shape:
            raise ValueError(f"Normalize: mean and std need one value per channel each, got "
                             f"{self.mean.size} means and {self.std.size} stds.")
        if np.any(self.std <= 0):
            raise ValueError(f"Normalize: every std must be positive, got {self.std.tolist()}.")

    def __call__(self, images):
        _check_images(images, "Normalize")
        if images.shape[1] != self.mean.size:
            raise ValueError(f"Normalize: expected {self.mean.size} channels on axis 1, got shape "
                             f"{tuple(images.shape)}.")
        xp = get_array_module(images)
        mean = xp.asarray(self.mean)[:, None, None]
        std = xp.asarray(self.std)[:, None, None]
        return (images.astype(xp.float32) / xp.float32(255.0) - mean) / std

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()})"


def random_crop(images, padding: int, rng: np.random.Generator):
    """Zero-pad each image by ``padding`` pixels on every side and cut a random H x W window.

    With padding p the window's top-left corner (dy, dx) is drawn uniformly from
    {0, ..., 2p}^2 per image, so the content shifts by (p - dy, p - dx) and the uncovered
    border is zero (black), as in the ResNet/SENet CIFAR recipe (p = 4).

    Vectorised: ``sliding_window_view`` lists every window of the padded batch, and one
    fancy index picks each image's window.

    Args:
        images: array (N, C, H, W), any dtype (uint8 in the loader).
        padding: p >= 0.
        rng: the generator that draws the offsets (N pairs).
    Returns:
        a new array (N, C, H, W) of the same dtype.
    """
    _check_images(images, "random_crop")
    if padding < 0:
        raise ValueError(f"random_crop: padding must be >= 0, got {padding}.")
    n, _, height, width = images.shape
    offsets = rng.integers(0, 2 * padding + 1, size=(n, 2))
    if padding == 0:
        return images.copy()
    padded = np.pad(images, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    windows = sliding_window_view(padded, (height, width), axis=(2, 3))  # (N, C, 2p+1, 2p+1, H, W)
    return windows[np.arange(n), :, offsets[:, 0], offsets[:, 1]]


def random_flip(images, rng: np.random.Generator):
    """Mirror each image left-right (reverse the width axis) with probability 1/2.

    Args:
        images: array (N, C, H, W).
        rng: the generator that draws the N coin flips.
    Returns:
        a new array (N, C, H, W).
    """
    _check_images(images, "random_flip")
    flip = rng.random(len(images)) < 0.5
    out = images.copy()
    out[flip] = images[flip, :, :, ::-1]
    return out


def standard_augment(images, rng: np.random.Generator):
    """The CIFAR training augmentation of the paper's recipe: pad-4 random crop, then flip."""
    return random_flip(random_crop(images, 4, rng), rng)
