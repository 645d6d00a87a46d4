"""Pure, vectorised informativeness scores. Higher always means "query this first".

Each takes an N x C matrix of class probabilities (or log-probabilities / logits for
entropy) and returns N scores; none of them sees indices, labels or randomness.
"""
from __future__ import annotations

import numpy as np
from scipy.special import log_softmax


def least_confidence_scores(probs: np.ndarray) -> np.ndarray:
    """1 - max_c p(c|x)."""
    return 1.0 - probs.max(axis=1)


def margin_scores(probs: np.ndarray) -> np.ndarray:
    """Negative gap between the two most probable classes: -(p_top1 - p_top2)."""
    if probs.shape[1] < 2:
        return np.zeros(len(probs), dtype=probs.dtype)
    top2 = np.partition(probs, probs.shape[1] - 2, axis=1)[:, -2:]
    return -(top2[:, 1] - top2[:, 0])


def entropy_scores(probs: np.ndarray | None = None, *, log_probs: np.ndarray | None = None,
                   logits: np.ndarray | None = None, axis: int = 1) -> np.ndarray:
    """Shannon entropy -sum_c p log p over the class ``axis``, in nats, computed without log(0).

    Prefer ``logits`` or ``log_probs``: log-softmax is exact where probabilities
    underflow to 0. From ``probs``, 0 log 0 is taken as 0. ``axis`` other than 1 serves
    arrays with more dimensions, e.g. MC-dropout samples N x C x T.
    """
    if logits is not None:
        log_probs = log_softmax(np.asarray(logits, dtype=np.float64), axis=axis)
    if log_probs is not None:
        log_probs = np.asarray(log_probs, dtype=np.float64)
        p = np.exp(log_probs)
        return -np.sum(p * np.where(p > 0, log_probs, 0.0), axis=axis)
    if probs is None:
        raise ValueError("entropy_scores needs probs, log_probs or logits")
    p = np.asarray(probs, dtype=np.float64)
    safe = np.where(p > 0, p, 1.0)
    return -np.sum(p * np.log(safe), axis=axis)


def top_k(scores: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Positions of the ``k`` highest scores, best first; ties broken by ``rng``.

    O(N + k log k): argpartition over a random permutation, so which of several tied
    items wins is decided by the generator and is reproducible.
    """
    n = len(scores)
    k = min(max(int(k), 0), n)
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    perm = rng.permutation(n)
    shuffled = -np.asarray(scores)[perm]
    part = np.argpartition(shuffled, k - 1)[:k] if k < n else np.arange(n)
    best = part[np.argsort(shuffled[part], kind="stable")]
    return perm[best].astype(np.int64)
