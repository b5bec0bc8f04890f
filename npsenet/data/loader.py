"""Mini-batches for training and evaluation, reproducible and resumable.

    normalize = ns.data.Normalize(*ns.data.channel_stats(train.images))
    loader = ns.data.BatchLoader(train.images, train.labels, 128, shuffle=True,
                                 augment=True, normalize=normalize, seed=0, device="gpu")
    for x, y in loader:          # x float32 (B, 3, 32, 32), y int64 (B,), both on the device
        ...

Where the batches are made. On the CPU (``device="cpu"``) each batch is cut from the
uint8 dataset in host memory, cropped, flipped and normalised there. On the GPU the whole
uint8 dataset is copied to the device once (150 MB for CIFAR's 50,000 training images)
and each batch is cut, cropped, flipped and normalised there
(:func:`~npsenet.data.transforms.crop_and_flip`, :class:`~npsenet.data.Normalize`): per
batch only one small int64 array goes up, the batch's image indices and its random crop
offsets and flips, instead of the float32 batch (12 KiB per image). The random draws
always come from one NumPy generator on the host, whose state is easy to save, so a run
gets the same batches on the CPU and on the GPU and after a resume.

A custom ``augment`` callable or a ``normalize`` that is not :class:`~npsenet.data.Normalize`
runs on the host, on NumPy arrays, as does everything with ``keep_on_device=False``; the
finished float32 batch and its labels are then copied to the device
(``backend.to_device``).
"""
from __future__ import annotations

import math

import numpy as np

from ..backend import normalize_device, to_device
from .transforms import (STANDARD_PADDING, Normalize, crop_and_flip, standard_augment,
                         standard_draws)


class BatchLoader:
    """Iterate over (x, y) mini-batches of an in-memory dataset.

    Each pass (``for x, y in loader``) is one epoch. At the start of an epoch the loader's
    own generator (``np.random.default_rng(seed)``) draws the epoch's order (a permutation
    when ``shuffle``) and a seed for the epoch's augmentation; batch b is augmented with
    ``default_rng([that seed, b])``. So an epoch's batches depend only on the generator's
    state at its start, which :meth:`state_dict` saves with the epoch counter and the
    position inside the epoch: a loader restored with :meth:`load_state_dict` continues
    with the very batches the original would have produced, bit for bit, even from the
    middle of an epoch.

    Args:
        images: uint8 array (N, C, H, W) in host memory (kept by reference, not copied).
        labels: integer array (N,).
        batch_size: images per batch; the last batch is smaller unless ``drop_last``.
        shuffle: a new random order every epoch (training) or the stored order (evaluation).
        augment: ``True`` for the standard CIFAR augmentation (pad-4 random crop and
            horizontal flip, :func:`~npsenet.data.transforms.standard_augment`), ``False``
            for none, or a callable ``(uint8 images, rng) -> uint8 images``.
        normalize: a callable uint8 (B, C, H, W) -> float32, normally
            :class:`~npsenet.data.Normalize` with the training set's statistics; ``None``
            only scales to [0, 1].
        seed: seeds the loader's generator (independent of ``ns.manual_seed``).
        device: ``"cpu"`` or ``"gpu"``: where the batches are delivered.
        drop_last: skip a final batch smaller than ``batch_size``.
        keep_on_device: with ``device="gpu"``, keep a copy of the whole uint8 dataset on
            the GPU (made at the first batch) and make the batches there, as the module's
            description says; ``False`` makes them on the host and copies each one up.
            The copy is taken once: change ``images`` afterwards and the GPU keeps the old.

    Yields:
        batches ``(x, y)``, x float32 (B, C, H, W) and y int64 (B,), both on ``device``.

    Attributes:
        on_device: whether the batches are made on the GPU from a resident copy of the
            dataset (``device="gpu"``, ``keep_on_device``, the standard augmentation or
            none, and :class:`~npsenet.data.Normalize` or no normalisation).
    """

    def __init__(self, images, labels, batch_size: int, *, shuffle: bool, augment, normalize,
                 seed: int = 0, device: str = "cpu", drop_last: bool = False,
                 keep_on_device: bool = True):
        images, labels = np.asarray(images), np.asarray(labels)
        if images.ndim != 4:
            raise ValueError(f"BatchLoader: expected images (N, C, H, W), got shape "
                             f"{images.shape}.")
        if labels.ndim != 1 or len(labels) != len(images) or labels.dtype.kind not in "iu":
            raise ValueError(f"BatchLoader: expected integer labels (N,) with N = {len(images)} "
                             f"(one per image), got {labels.dtype} {labels.shape}.")
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"BatchLoader: batch_size must be a positive integer, got "
                             f"{batch_size!r}.")
        if augment is True:
            augment = standard_augment
        elif augment is False or augment is None:
            augment = None
        elif not callable(augment):
            raise ValueError(f"BatchLoader: augment must be True, False or a callable "
                             f"(images, rng) -> images, got {augment!r}.")
        if normalize is not None and not callable(normalize):
            raise ValueError(f"BatchLoader: normalize must be a callable such as "
                             f"ns.data.Normalize(mean, std), or None, got {normalize!r}.")
        self.images, self.labels = images, labels.astype(np.int64, copy=False)
        self.batch_size, self.shuffle, self.drop_last = int(batch_size), bool(shuffle), drop_last
        self.augment, self.normalize = augment, normalize
        self.device = normalize_device(device)
        self.on_device = (self.device != "cpu" and bool(keep_on_device)
                          and augment in (None, standard_augment)
                          and (normalize is None or isinstance(normalize, Normalize)))
        self._resident = None   # (images, labels) on the device, copied at the first batch
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self.epoch = 0          # the current epoch, counting from 0
        self._position = 0      # batches of the current epoch already delivered
        self._epoch_start = self._rng.bit_generator.state
        self._resuming = False

    def __len__(self) -> int:
        """The number of batches per epoch."""
        if self.drop_last:
            return len(self.images) // self.batch_size
        return math.ceil(len(self.images) / self.batch_size)

    def _draw_epoch(self):
        """The current epoch's order and augmentation seed, from the state at its start."""
        self._rng.bit_generator.state = self._epoch_start
        count = len(self.images)
        order = self._rng.permutation(count) if self.shuffle else np.arange(count)
        augment_seed = int(self._rng.integers(2 ** 63))
        return order, augment_seed

    def _next_epoch(self) -> None:
        self._draw_epoch()  # moves the generator past this epoch's draws
        self._epoch_start = self._rng.bit_generator.state
        self.epoch += 1
        self._position = 0

    def __iter__(self):
        """One epoch of batches (the rest of it, right after :meth:`load_state_dict`)."""
        for x, y, _ in self.batch_rows(None):
            yield x, y

    def batch_rows(self, rows):
        """One epoch, as ``for x, y in loader``, of only some rows of each batch: yields
        ``(x[lo:hi], y[lo:hi], count)`` for each batch of ``count`` images, where
        ``(lo, hi) = rows(count)``, or ``(None, None, count)`` where ``rows(count)`` is None.
        Only those rows are cut, augmented and normalised, with the random draws of the
        whole batch, so the rows are bit for bit those of the whole batch (a data-parallel
        rank makes only its shard: :class:`~npsenet.distributed.ShardedLoader`). A custom
        ``augment`` callable draws for the batch it gets, so with one the whole batch is
        augmented and then cut. ``rows=None``: every row."""
        if self._position >= len(self) or (self._position > 0 and not self._resuming):
            self._next_epoch()  # the previous epoch finished, or was abandoned part-way
        self._resuming = False
        order, augment_seed = self._draw_epoch()
        for index in range(self._position, len(self)):
            batch = order[index * self.batch_size:(index + 1) * self.batch_size]
            self._position = index + 1
            count = len(batch)
            span = (0, count) if rows is None else rows(count)
            if span is None:
                yield None, None, count
                continue
            x, y = self._make_batch(batch, np.random.default_rng([augment_seed, index]),
                                    slice(*span))
            yield x, y, count

    def _make_batch(self, indices, rng, rows=slice(None)):
        if self.on_device:
            return self._make_device_batch(indices, rng, rows)
        if self.augment is standard_augment:      # the whole batch's draws, for its rows
            offsets, flips = standard_draws(len(indices), rng)
            indices = indices[rows]
            images = crop_and_flip(self.images[indices], offsets[rows], flips[rows],
                                   STANDARD_PADDING)
        elif self.augment is not None:            # draws we cannot split: all, then cut
            images = self.augment(self.images[indices], rng)[rows]
            indices = indices[rows]
        else:
            indices = indices[rows]
            images = self.images[indices]
        if self.normalize is not None:
            x = self.normalize(images)
        else:
            x = images.astype(np.float32) / np.float32(255.0)
        x = np.ascontiguousarray(x, dtype=np.float32)
        return to_device(x, self.device), to_device(self.labels[indices], self.device)

    def _make_device_batch(self, indices, rng, rows=slice(None)):
        """The batch (its ``rows``) cut, augmented and normalised on the device from the
        resident copy; one host-to-device copy: the (4, B) int64 plan of indices, crop
        offsets and flips."""
        if self._resident is None:
            self._resident = (to_device(self.images, self.device),
                              to_device(self.labels, self.device))
        images, labels = self._resident
        count = len(indices)
        plan = np.zeros((4, count), dtype=np.int64)   # indices, dy, dx, flip
        plan[0] = indices
        if self.augment is not None:
            offsets, flips = standard_draws(count, rng)
            plan[1:3], plan[3] = offsets.T, flips
        plan = to_device(np.ascontiguousarray(plan[:, rows]), self.device)
        batch = images[plan[0]]
        if self.augment is not None:
            batch = crop_and_flip(batch, plan[1:3].T, plan[3] != 0, STANDARD_PADDING)
        if self.normalize is not None:
            x = self.normalize(batch)
        else:
            x = batch.astype(np.float32) / np.float32(255.0)
        return x, labels[plan[0]]

    def state_dict(self) -> dict:
        """What a resumed run needs: JSON-serialisable (plain ints and strings)."""
        return {"seed": self.seed, "epoch": self.epoch, "position": self._position,
                "rng_state": self._epoch_start}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s output; the next pass continues where it stopped."""
        missing = {"epoch", "position", "rng_state"} - set(state)
        if missing:
            raise ValueError(f"BatchLoader.load_state_dict: missing {sorted(missing)}; expected "
                             "the dict that BatchLoader.state_dict() returns.")
        self._rng.bit_generator.state = state["rng_state"]
        self._epoch_start = self._rng.bit_generator.state
        self.epoch = int(state["epoch"])
        self._position = int(state["position"])
        self._resuming = 0 < self._position < len(self)

    def __repr__(self) -> str:
        return (f"BatchLoader({len(self.images)} images, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, augment={self.augment is not None}, "
                f"device={self.device!r}, {len(self)} batches"
                f"{', made on the device' if self.on_device else ''})")
