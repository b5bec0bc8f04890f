"""What every dataset here holds: ``images`` uint8 (N, 3, 32, 32), ``labels`` int64 (N,)
and ``classes``, the class names."""
from __future__ import annotations


class ImageDataset:
    """Indexing and length over the ``images`` and ``labels`` arrays a subclass sets."""

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        """(image uint8 (3, 32, 32), label int) of one example."""
        return self.images[index], int(self.labels[index])
