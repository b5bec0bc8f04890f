"""Normalisation and the standard CIFAR augmentation (pad-4 random crop, horizontal flip).

Augmentation works on uint8 batches (N, C, H, W), NumPy or CuPy, with its random draws
from an explicit host ``np.random.Generator``, so a seed fixes every crop and flip on
either backend. Crop and flip are one gather (:func:`crop_and_flip`): no Python loop over
images. :class:`~npsenet.data.BatchLoader` says where it runs (on the GPU when the
batches go there).
"""
from __future__ import annotations

import numpy as np

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
        self._on_backend = {}  # array module -> (mean, std) shaped (C, 1, 1)

    def __call__(self, images):
        _check_images(images, "Normalize")
        if images.shape[1] != self.mean.size:
            raise ValueError(f"Normalize: expected {self.mean.size} channels on axis 1, got shape "
                             f"{tuple(images.shape)}.")
        xp = get_array_module(images)
        mean, std = self._statistics(xp)
        return (images.astype(xp.float32) / xp.float32(255.0) - mean) / std

    def _statistics(self, xp):
        """mean and std as (C, 1, 1) arrays of ``xp``, copied to the device once, not per batch."""
        if xp not in self._on_backend:
            self._on_backend[xp] = (xp.asarray(self.mean)[:, None, None],
                                    xp.asarray(self.std)[:, None, None])
        return self._on_backend[xp]

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()})"


def crop_offsets(count: int, padding: int, rng: np.random.Generator):
    """The top-left corners (dy, dx) of ``count`` random crops, each drawn uniformly from
    {0, ..., 2p}^2: an int64 host array (count, 2)."""
    return rng.integers(0, 2 * padding + 1, size=(count, 2))


def flip_draws(count: int, rng: np.random.Generator):
    """``count`` fair coin flips (which images to mirror): a bool host array (count,)."""
    return rng.random(count) < 0.5


def crop_and_flip(images, offsets, flips, padding: int):
    """Cut each image's padded window at ``offsets`` and mirror the ones ``flips`` marks.

    With the batch zero-padded by p on every side (P = pad(images)), image n's output is

        out[n, c, i, j] = P[n, c, dy_n + i, dx_n + j']      j' = W - 1 - j if flips[n] else j

    i.e. the H x W window at (dy_n, dx_n), mirrored left-right when ``flips[n]``: one gather
    from the padded batch, on the images' own backend (NumPy or CuPy; the offsets and
    flips may be NumPy arrays or arrays of that backend). No Python loop over images and
    no boolean-mask indexing, which on a GPU would wait for the mask's count.

    Args:
        images: array (N, C, H, W), any dtype (uint8 in the loader).
        offsets: integers (N, 2), each in [0, 2p] (:func:`crop_offsets`).
        flips: booleans (N,) (:func:`flip_draws`).
        padding: p >= 0.
    Returns:
        a new array (N, C, H, W) of the same dtype and backend.
    """
    _check_images(images, "crop_and_flip")
    if padding < 0:
        raise ValueError(f"crop_and_flip: padding must be >= 0, got {padding}.")
    xp = get_array_module(images)
    n, c, height, width = images.shape
    offsets, flips = xp.asarray(offsets), xp.asarray(flips)
    if offsets.shape != (n, 2) or flips.shape != (n,):
        raise ValueError(f"crop_and_flip: expected offsets ({n}, 2) and flips ({n},) for {n} "
                         f"images, got {tuple(offsets.shape)} and {tuple(flips.shape)}.")
    padded = xp.pad(images, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    padded_h, padded_w = height + 2 * padding, width + 2 * padding
    columns = xp.arange(width)
    rows = offsets[:, 0, None] + xp.arange(height)                                # (N, H)
    cols = xp.where(flips[:, None], width - 1 - columns, columns) + offsets[:, 1, None]  # (N, W)
    planes = xp.arange(n)[:, None] * c + xp.arange(c)                             # (N, C)
    flat = ((planes[:, :, None, None] * padded_h + rows[:, None, :, None]) * padded_w
            + cols[:, None, None, :])                                             # (N, C, H, W)
    return padded.reshape(-1).take(flat)


def random_crop(images, padding: int, rng: np.random.Generator):
    """Zero-pad each image by ``padding`` pixels on every side and cut a random H x W window.

    With padding p the window's top-left corner (dy, dx) is drawn uniformly from
    {0, ..., 2p}^2 per image, so the content shifts by (p - dy, p - dx) and the uncovered
    border is zero (black), as in the ResNet/SENet CIFAR recipe (p = 4).

    Args:
        images: array (N, C, H, W), any dtype (uint8 in the loader), NumPy or CuPy.
        padding: p >= 0.
        rng: the (host) generator that draws the offsets (N pairs).
    Returns:
        a new array (N, C, H, W) of the same dtype and backend.
    """
    _check_images(images, "random_crop")
    if padding < 0:
        raise ValueError(f"random_crop: padding must be >= 0, got {padding}.")
    count = len(images)
    return crop_and_flip(images, crop_offsets(count, padding, rng),
                         np.zeros(count, dtype=bool), padding)


def random_flip(images, rng: np.random.Generator):
    """Mirror each image left-right (reverse the width axis) with probability 1/2.

    Args:
        images: array (N, C, H, W), NumPy or CuPy.
        rng: the (host) generator that draws the N coin flips.
    Returns:
        a new array (N, C, H, W).
    """
    _check_images(images, "random_flip")
    count = len(images)
    return crop_and_flip(images, np.zeros((count, 2), dtype=np.int64), flip_draws(count, rng), 0)


STANDARD_PADDING = 4
"""The random crop's padding in the CIFAR recipe (pad 4, crop 32 x 32)."""


def standard_draws(count: int, rng: np.random.Generator):
    """The random draws of :func:`standard_augment` for ``count`` images, in its order:
    the crop offsets (count, 2), then the flips (count,), both host arrays."""
    offsets = crop_offsets(count, STANDARD_PADDING, rng)
    return offsets, flip_draws(count, rng)


def standard_augment(images, rng: np.random.Generator):
    """The CIFAR training augmentation of the paper's recipe: pad-4 random crop, then flip.

    The same as ``random_flip(random_crop(images, 4, rng), rng)``, in one gather. The
    draws come from the host generator ``rng`` (:func:`standard_draws`), so a seed gives
    the same crops and flips whether ``images`` live on the CPU or the GPU."""
    _check_images(images, "standard_augment")
    offsets, flips = standard_draws(len(images), rng)
    return crop_and_flip(images, offsets, flips, STANDARD_PADDING)
