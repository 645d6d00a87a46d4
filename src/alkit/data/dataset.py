"""The in-memory dataset object every loader returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Dataset:
    """Images as uint8 arrays of shape N x H x W x C, labels as int64 vectors.

    ``provenance`` records where the data came from (source, files, checksums and
    any transformation such as an imbalance protocol) so a report can cite it.
    ``x_unlabeled`` holds images without labels (e.g. a folder's ``_unlabeled``).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]
    provenance: dict[str, Any] = field(default_factory=dict)
    x_unlabeled: np.ndarray | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        h, w, c = self.x_train.shape[1:]
        return int(h), int(w), int(c)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_counts(self, split: str = "train") -> dict[str, int]:
        y = self.y_train if split == "train" else self.y_test
        counts = np.bincount(y, minlength=self.num_classes)
        return {name: int(n) for name, n in zip(self.classes, counts)}

    def channel_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel mean and std of the training images, in [0, 1] units."""
        x = self.x_train.reshape(-1, self.x_train.shape[-1])
        step = max(1, x.shape[0] // 2_000_000)
        sample = x[::step].astype(np.float64) / 255.0
        return sample.mean(axis=0).astype(np.float32), sample.std(axis=0).astype(np.float32) + 1e-6

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, train={len(self.y_train)}, test={len(self.y_test)}, "
            f"shape={self.image_shape}, classes={self.num_classes})"
        )
