"""Batch-diverse strategies on embeddings: core-set (Sener & Savarese 2018) and BADGE (Ash et al. 2020).

Both read the penultimate-layer embeddings once per round and then only sample; neither
builds an N x N matrix. Memory is O(N * D) for the embeddings plus O(chunk * M) per
distance block.
"""
from __future__ import annotations

import numpy as np

from alkit.errors import StrategyError
from alkit.strategies.base import QueryStrategy, register_strategy
from alkit.strategies.context import EMBEDDINGS, LOGITS, QueryContext


def sq_distances(a: np.ndarray, b: np.ndarray, a_norms: np.ndarray | None = None,
                 b_norms: np.ndarray | None = None) -> np.ndarray:
    """Squared Euclidean distances, len(a) x len(b), as |a|^2 + |b|^2 - 2 a.b clipped at 0 (pass the row norms
    to reuse them across blocks)."""
    an = np.einsum("ij,ij->i", a, a) if a_norms is None else a_norms
    bn = np.einsum("ij,ij->i", b, b) if b_norms is None else b_norms
    return np.maximum(an[:, None] + bn[None] - 2.0 * (a @ b.T), 0.0)


def min_sq_distances(x: np.ndarray, centers: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """For each row of ``x``, the squared Euclidean distance to its nearest row of ``centers`` (inf if none).

    Blocks of ``chunk`` x ``chunk`` distances at a time: memory O(chunk^2), never len(x) x len(centers).
    """
    out = np.full(len(x), np.inf)
    if len(centers) == 0:
        return out
    x = np.asarray(x, dtype=np.float64)
    centers = np.asarray(centers, dtype=np.float64)
    cn = np.einsum("ij,ij->i", centers, centers)
    for i in range(0, len(x), chunk):
        xb = x[i:i + chunk]
        xn = np.einsum("ij,ij->i", xb, xb)
        best = out[i:i + chunk]
        for j in range(0, len(centers), chunk):
            np.minimum(best, sq_distances(xb, centers[j:j + chunk], xn, cn[j:j + chunk]).min(axis=1), out=best)
    return out


def kcenter_greedy(x: np.ndarray, centers: np.ndarray, k: int, rng: np.random.Generator,
                   chunk: int = 4096) -> np.ndarray:
    """Positions of ``k`` rows of ``x`` chosen by k-center greedy, starting from ``centers`` (e.g. the labeled
    set): each pick is the row farthest from every centre so far. With no centres the first pick is drawn
    by ``rng``. Time O(k * N * D) after the initial O(N * M * D) distances."""
    n = len(x)
    k = min(max(int(k), 0), n)
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    x = np.asarray(x, dtype=np.float64)
    d2 = min_sq_distances(x, centers, chunk)
    xn = np.einsum("ij,ij->i", x, x)
    chosen = np.empty(k, dtype=np.int64)
    for step in range(k):
        pick = int(rng.integers(n)) if np.isinf(d2).all() else int(np.argmax(d2))
        chosen[step] = pick
        np.minimum(d2, np.maximum(xn + xn[pick] - 2.0 * (x @ x[pick]), 0.0), out=d2)
        d2[pick] = -1.0  # never again
    return chosen


def gradient_embedding_factors(probs: np.ndarray) -> np.ndarray:
    """BADGE's per-class factor a = p - onehot(argmax p): the last layer's loss gradient at the predicted
    label is a (outer) z, for embedding z."""
    a = np.array(probs, dtype=np.float64)
    a[np.arange(len(a)), a.argmax(axis=1)] -= 1.0
    return a


def gradient_sq_distances(a: np.ndarray, z: np.ndarray, j: int, norms: np.ndarray | None = None) -> np.ndarray:
    """||g_i - g_j||^2 for every i, where g_i = a_i (outer) z_i, without forming any g:
    <g_i, g_j> = <a_i, a_j> * <z_i, z_j>. ``norms``: the |g_i|^2, to compute them once for many j."""
    if norms is None:
        norms = np.einsum("ij,ij->i", a, a) * np.einsum("ij,ij->i", z, z)
    return np.maximum(norms + norms[j] - 2.0 * (a @ a[j]) * (z @ z[j]), 0.0)


def badge_select(probs: np.ndarray, z: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Positions of ``k`` rows chosen by k-means++ seeding on gradient embeddings (p - onehot(argmax p)) x z.

    The first pick is the largest gradient norm (as the reference implementation); each next one is drawn
    with probability proportional to the squared distance to the nearest pick. Memory O(N * (C + D)).
    """
    n = len(probs)
    k = min(max(int(k), 0), n)
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    a = gradient_embedding_factors(probs)
    z = np.asarray(z, dtype=np.float64)
    norms = np.einsum("ij,ij->i", a, a) * np.einsum("ij,ij->i", z, z)
    chosen = [int(np.argmax(norms))]
    d2 = gradient_sq_distances(a, z, chosen[0], norms)
    free = np.ones(n, dtype=bool)
    free[chosen[0]] = False
    while len(chosen) < k:
        w = np.where(free, d2, 0.0)
        total = w.sum()
        pick = int(rng.choice(n, p=w / total)) if total > 0 else int(rng.choice(np.flatnonzero(free)))
        chosen.append(pick)
        free[pick] = False
        np.minimum(d2, gradient_sq_distances(a, z, pick, norms), out=d2)
    return np.asarray(chosen, dtype=np.int64)


@register_strategy
class CoreSet(QueryStrategy):
    """k-center greedy on embeddings with the labeled set as the initial centres: covers the pool."""

    name = "coreset"
    requires = frozenset({EMBEDDINGS})

    def __init__(self, chunk: int = 4096) -> None:
        self.chunk = chunk

    def check(self) -> None:
        if not isinstance(self.chunk, int) or isinstance(self.chunk, bool) or self.chunk < 1:
            raise StrategyError(f"coreset: chunk={self.chunk!r} must be a positive integer")

    def query(self, ctx: QueryContext, k: int) -> np.ndarray:
        self.check_query(ctx, k)
        chosen = kcenter_greedy(ctx.embeddings(), ctx.labeled_embeddings(), k, ctx.rng, self.chunk)
        return ctx.candidates[chosen]


@register_strategy
class BADGE(QueryStrategy):
    """Batch active learning by diverse gradient embeddings: uncertain and diverse at once."""

    name = "badge"
    requires = frozenset({LOGITS, EMBEDDINGS})

    def query(self, ctx: QueryContext, k: int) -> np.ndarray:
        self.check_query(ctx, k)
        return ctx.candidates[badge_select(ctx.prediction.probs, ctx.embeddings(), k, ctx.rng)]
