"""Which training samples are labeled. Everything here speaks in dataset indices.

"Dataset index" means a row of ``x_train``. Positions inside a candidate array are
never stored or returned: strategies map positions back to dataset indices before
anything reaches the pool.
"""
from __future__ import annotations

import numpy as np

from alkit.errors import StrategyError


class PoolState:
    def __init__(self, n_samples: int, labeled: np.ndarray | None = None) -> None:
        self.n_samples = int(n_samples)
        self._mask = np.zeros(self.n_samples, dtype=bool)
        if labeled is not None:
            self.add(labeled)

    @property
    def labeled(self) -> np.ndarray:
        return np.flatnonzero(self._mask)

    @property
    def unlabeled(self) -> np.ndarray:
        return np.flatnonzero(~self._mask)

    @property
    def n_labeled(self) -> int:
        return int(self._mask.sum())

    def is_labeled(self, indices: np.ndarray) -> np.ndarray:
        return self._mask[np.asarray(indices, dtype=np.int64)]

    def add(self, indices: np.ndarray) -> None:
        """Mark dataset indices as labeled; refuses duplicates and already-labeled samples."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_samples):
            raise StrategyError(f"index out of range 0..{self.n_samples - 1} in query")
        if len(np.unique(idx)) != len(idx):
            raise StrategyError("a query returned the same sample twice")
        if self._mask[idx].any():
            raise StrategyError(f"a query returned already-labeled samples {idx[self._mask[idx]][:5].tolist()}")
        self._mask[idx] = True

    def candidates(self, limit: int | None, rng: np.random.Generator) -> np.ndarray:
        """The unlabeled indices, or a uniform random subsample of ``limit`` of them (sorted)."""
        pool = self.unlabeled
        if limit is None or limit >= len(pool):
            return pool
        return np.sort(rng.choice(pool, size=limit, replace=False))


def initial_set(y: np.ndarray, size: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """The first labeled set: uniform (``random``) or equal per class (``balanced``), sorted."""
    n = len(y)
    size = min(size, n)
    if kind == "random":
        return np.sort(rng.choice(n, size=size, replace=False))
    if kind != "balanced":
        raise StrategyError(f"initial_set '{kind}' is unknown; choose random or balanced")
    classes = np.unique(y)
    per_class, extra = divmod(size, len(classes))
    chosen = []
    for i, c in enumerate(rng.permutation(classes)):
        idx = np.flatnonzero(y == c)
        take = min(len(idx), per_class + (1 if i < extra else 0))
        chosen.append(rng.choice(idx, size=take, replace=False))
    picked = np.concatenate(chosen)
    if len(picked) < size:  # small classes could not fill their share
        rest = np.setdiff1d(np.arange(n), picked)
        picked = np.concatenate([picked, rng.choice(rest, size=size - len(picked), replace=False)])
    return np.sort(picked)
