"""Where labels come from. The simulated oracle reveals ground truth; the labeling app
answers the same interface with a person's labels."""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Oracle(Protocol):
    def label(self, indices: np.ndarray) -> np.ndarray:
        """Labels for the given dataset indices, in the same order."""
        ...


class SimulatedOracle:
    """Answers every query with the dataset's true labels."""

    def __init__(self, y: np.ndarray) -> None:
        self._y = np.asarray(y)

    def label(self, indices: np.ndarray) -> np.ndarray:
        return self._y[np.asarray(indices, dtype=np.int64)]
