"""A small synthetic CIFAR-like dataset: generated, deterministic, offline and learnable.

Each of the 10 classes is a colour and an orientation. An image is a Gabor patch (an
oriented stripe pattern under a Gaussian window) in the class colour, on a random grey
background, with a random phase, centre, stripe frequency and brightness, plus pixel
noise:

    x(i, j) = background + a * g(i, j) * cos(2 pi f (u cos θ_k + v sin θ_k) + φ) * colour_k + noise

where (u, v) = (j - cx, i - cy) and g is a Gaussian window around the random centre
(cx, cy). Class k has orientation θ_k = k · 18° and colour ``PALETTE[k % 5]``, so every
colour is shared by two classes whose stripes are 90° apart: colour alone gets at most
half of the images right, and a model has to see orientation too. A small CNN learns it in
an epoch or two; it is not a replacement for CIFAR, only a quick, offline check that
training works.
"""
from __future__ import annotations

import numpy as np

from .base import ImageDataset

NUM_CLASSES = 10
IMAGE_SIZE = 32
DEFAULT_SIZES = {True: 2000, False: 500}

# RGB directions in which each class's stripes swing (five colours, two classes each).
PALETTE = np.array([[1.0, 0.25, 0.2],    # red
                    [0.2, 0.9, 0.3],     # green
                    [0.25, 0.35, 1.0],   # blue
                    [1.0, 0.85, 0.1],    # yellow
                    [0.8, 0.25, 0.95]],  # purple
                   dtype=np.float64)
COLOUR_NAMES = ("red", "green", "blue", "yellow", "purple")
CLASSES = [f"{COLOUR_NAMES[k % 5]} {round(k * 180 / NUM_CLASSES)}°" for k in range(NUM_CLASSES)]


def make_synthetic(num_samples: int, rng: np.random.Generator):
    """Generate ``num_samples`` images, classes balanced and shuffled.

    Returns:
        (images uint8 (N, 3, 32, 32), labels int64 (N,)).
    """
    n = num_samples
    labels = rng.permutation(np.arange(n) % NUM_CLASSES).astype(np.int64)
    theta = labels * np.pi / NUM_CLASSES + rng.normal(0.0, 0.05, n)   # orientation, radians
    frequency = rng.uniform(0.10, 0.16, n)                          # cycles per pixel
    phase = rng.uniform(0.0, 2 * np.pi, n)
    centre = IMAGE_SIZE / 2 - 0.5 + rng.uniform(-6.0, 6.0, (n, 2))  # (cy, cx): random shifts
    width = rng.uniform(6.0, 10.0, n)                               # Gaussian window's sigma
    amplitude = rng.uniform(60.0, 110.0, n)
    background = rng.uniform(70.0, 170.0, n)
    colour = PALETTE[labels % len(PALETTE)] + rng.normal(0.0, 0.1, (n, 3))

    coords = np.arange(IMAGE_SIZE, dtype=np.float64)
    v = coords[None, :, None] - centre[:, 0, None, None]            # (N, H, 1) rows
    u = coords[None, None, :] - centre[:, 1, None, None]            # (N, 1, W) columns
    along = u * np.cos(theta)[:, None, None] + v * np.sin(theta)[:, None, None]
    stripes = np.cos(2 * np.pi * frequency[:, None, None] * along + phase[:, None, None])
    window = np.exp(-(u ** 2 + v ** 2) / (2 * width[:, None, None] ** 2))
    pattern = (amplitude[:, None, None] * window * stripes)[:, None]  # (N, 1, H, W)
    images = (background[:, None, None, None] + pattern * colour[:, :, None, None]
              + rng.normal(0.0, 12.0, (n, 3, IMAGE_SIZE, IMAGE_SIZE)))
    return np.clip(np.rint(images), 0, 255).astype(np.uint8), labels


class SyntheticCIFAR(ImageDataset):
    """A generated 10-class dataset with the attributes of :class:`~npsenet.data.CIFAR10`.

    Args:
        train: the training split (2,000 images by default) or the test split (500).
        num_samples: how many images to generate instead of the default.
        seed: fixes the images; the train and test splits of one seed differ.

    Attributes:
        images: uint8 array (N, 3, 32, 32).
        labels: int64 array (N,).
        classes: the 10 class names, colour and stripe orientation, such as ``"red 0°"``.
    """

    def __init__(self, train: bool = True, num_samples: int | None = None, seed: int = 0):
        self.train = bool(train)
        count = DEFAULT_SIZES[self.train] if num_samples is None else int(num_samples)
        if count < 1:
            raise ValueError(f"SyntheticCIFAR: num_samples must be at least 1, got {num_samples}.")
        self.seed = int(seed)
        rng = np.random.default_rng([self.seed, 0 if self.train else 1])
        self.images, self.labels = make_synthetic(count, rng)
        self.classes = list(CLASSES)

    def __repr__(self) -> str:
        split = "train" if self.train else "test"
        return f"SyntheticCIFAR({split}, {len(self)} images, {len(self.classes)} classes)"
