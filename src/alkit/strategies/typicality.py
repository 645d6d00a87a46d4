"""TypiClust as a query strategy (Hacohen et al. 2022, TPC): typical images of uncovered clusters.

At low budgets the model's uncertainty is not yet informative, and the paper's answer is to label
what is typical of regions the labeled set does not cover yet. Each round the labeled images and the
candidates are clustered together into ``min(labeled + k, max_clusters)`` clusters; each pick comes from
the cluster holding the fewest labeled images (the largest such one first, clusters under
``min_cluster`` images skipped while others remain) and is its most typical unlabeled image:
typicality = 1 / mean distance to its nearest unlabeled neighbours in the cluster (in a very large
cluster, among a random sample of its images). The pick counts as labeled for the next one.
Cost: k-means of the N x D embeddings dominates (mini-batch k-means above 50 clusters). The label-free
initial set of the same name is :func:`alkit.strategies.cold_start.typiclust`.
"""
from __future__ import annotations

import numpy as np

from alkit.errors import StrategyError
from alkit.strategies.base import QueryStrategy, register_strategy
from alkit.strategies.cold_start import kmeans_labels, knn_mean_distance
from alkit.strategies.context import EMBEDDINGS, QueryContext


def typiclust_select(labeled_z: np.ndarray, candidate_z: np.ndarray, k: int, rng: np.random.Generator,
                     max_clusters: int = 500, knn: int = 20, min_cluster: int = 5, max_members: int = 2000
                     ) -> np.ndarray:
    """Positions of ``k`` rows of ``candidate_z`` chosen by TypiClust given the labeled rows ``labeled_z``.

    A cluster's typicality is computed once, when it is first picked from, and its later picks take the next
    most typical rows (the paper recomputes it without the picked row; one row moves the others' k-NN little).
    In a cluster of more than ``max_members`` unlabeled rows it is computed on a random sample of that many
    (drawn from ``rng``): the exact k-NN would cost O(size^2 * D)."""
    n, n_labeled = len(candidate_z), len(labeled_z)
    k = min(max(int(k), 0), n)
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    z = np.asarray(candidate_z, np.float32)
    if n_labeled:
        z = np.concatenate([np.asarray(labeled_z, np.float32), z])
    assign = kmeans_labels(z, min(n_labeled + k, max_clusters, len(z)), rng)  # float32, one init
    n_clusters = int(assign.max()) + 1
    sizes = np.bincount(assign, minlength=n_clusters)
    covered = np.bincount(assign[:n_labeled], minlength=n_clusters)
    free = np.ones(len(z), dtype=bool)
    free[:n_labeled] = False
    left = np.bincount(assign[n_labeled:], minlength=n_clusters)
    ranked: dict[int, list[int]] = {}  # a cluster's unlabeled rows, most typical last
    chosen: list[int] = []
    while len(chosen) < k:
        usable = left > 0
        if (usable & (sizes >= min_cluster)).any():
            usable &= sizes >= min_cluster
        cands = np.flatnonzero(usable)
        c = int(cands[np.lexsort((cands, -sizes[cands], covered[cands]))[0]])
        if c not in ranked:
            members = np.flatnonzero((assign == c) & free)
            if len(members) > max_members:
                members = np.sort(rng.choice(members, max_members, replace=False))
            typicality = 1.0 / (knn_mean_distance(z[members], min(knn, len(members) // 2)) + 1e-12)
            ranked[c] = members[np.argsort(typicality, kind="stable")].tolist()
        pick = ranked[c].pop()
        chosen.append(pick - n_labeled)
        free[pick] = False
        covered[c] += 1
        left[c] -= 1
        if not ranked[c]:  # a sampled cluster's sample used up: sample again from what is left
            del ranked[c]
    return np.asarray(chosen, dtype=np.int64)


@register_strategy
class TypiClust(QueryStrategy):
    """Typical images of the clusters the labeled set covers least, on the model's embeddings: a low-budget
    strategy that needs no calibrated uncertainty."""

    name = "typiclust"
    requires = frozenset({EMBEDDINGS})

    def __init__(self, max_clusters: int = 500, knn: int = 20, min_cluster: int = 5) -> None:
        self.max_clusters = max_clusters
        self.knn = knn
        self.min_cluster = min_cluster

    def check(self) -> None:
        for name in ("max_clusters", "knn", "min_cluster"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise StrategyError(f"typiclust: {name}={value!r} must be a positive integer")

    def query(self, ctx: QueryContext, k: int) -> np.ndarray:
        self.check_query(ctx, k)
        chosen = typiclust_select(ctx.labeled_embeddings(), ctx.embeddings(), k, ctx.rng, self.max_clusters,
                                  self.knn, self.min_cluster)
        return ctx.candidates[chosen]
