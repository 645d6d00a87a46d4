"""Label-free initial sets: TypiClust (Hacohen et al. 2022) and ProbCover (Yehuda et al. 2022).

The initial labeled set is chosen before any label exists, so these work on embeddings of the
unlabeled images from an *embedder*: by default :func:`pca_embedder` (PCA of the standardised
pixels, each row scaled to unit length; label-free and seconds on a CPU), or any callable
``(images uint8 N x H x W x C) -> N x D`` a user passes (``--embedder module:function``), e.g. a
pretrained backbone they already have. alkit never downloads weights.
"""
from __future__ import annotations

import importlib
from typing import Callable

import numpy as np

from alkit.errors import ConfigError, StrategyError
from alkit.strategies.diversity import sq_distances

Embedder = Callable[[np.ndarray], np.ndarray]
COLD_START = ("typiclust", "probcover")
# The built-in embedders by the name a run's fingerprint records. ``pca`` names today's default, so a
# fingerprint stores ``pca-unit``: a folder made when ``pca`` meant the unscaled rows (``pca-raw``) then
# refuses to resume with other initial sets instead of mixing the two (:func:`embedder_key`).
DEFAULT_EMBEDDER = "pca-unit"
BUILTIN_EMBEDDERS = ("pca", "pca-unit", "pca-raw")


def pca_embedder(x: np.ndarray, dim: int = 50, seed: int = 0, normalise: bool = True) -> np.ndarray:
    """The first ``dim`` principal components of the per-pixel standardised images (randomised SVD), each row
    scaled to unit length when ``normalise``, as TypiClust and ProbCover normalise their self-supervised features:
    distances then compare what an image shows, not how much contrast it has (BENCHMARKS.md,
    ``label-efficiency-low-budget-fashion-mnist-window``, measures both)."""
    from sklearn.decomposition import PCA

    flat = x.reshape(len(x), -1).astype(np.float32) / 255.0
    flat -= flat.mean(axis=0)
    flat /= flat.std(axis=0) + 1e-6
    dim = max(1, min(dim, flat.shape[0] - 1, flat.shape[1]))
    z = PCA(n_components=dim, svd_solver="randomized", random_state=seed).fit_transform(flat).astype(np.float32)
    if normalise:
        z /= np.linalg.norm(z, axis=1, keepdims=True) + 1e-12
    return z


def module_embedder(module: object, batch_size: int = 256) -> Embedder:
    """A ``torch.nn.Module`` as an embedder: it gets float NCHW batches scaled to [0, 1], in eval mode."""
    import torch

    def embed(x: np.ndarray) -> np.ndarray:
        module.eval()  # type: ignore[attr-defined]
        out = []
        with torch.inference_mode():
            for i in range(0, len(x), batch_size):
                xb = torch.from_numpy(np.ascontiguousarray(x[i:i + batch_size])).permute(0, 3, 1, 2).float() / 255.0
                out.append(module(xb).float().flatten(1).numpy())  # type: ignore[operator]
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    return embed


def pca_raw_embedder(x: np.ndarray) -> np.ndarray:
    """:func:`pca_embedder` without scaling rows to unit length: the default embedder before unit rows."""
    return pca_embedder(x, normalise=False)


def embedder_key(spec: str | None) -> str | None:
    """The name a run's fingerprint records for the embedder ``spec``: the default resolved to its version."""
    return DEFAULT_EMBEDDER if spec in (None, "pca") else spec


def load_embedder(spec: object) -> Embedder:
    """``None``, ``pca`` or ``pca-unit``: :func:`pca_embedder`; ``pca-raw``: :func:`pca_raw_embedder`;
    ``module:function``: that function; a ``torch.nn.Module`` or any callable (from Python): used as it is."""
    if spec in (None, "pca", "pca-unit"):
        return pca_embedder
    if spec == "pca-raw":
        return pca_raw_embedder
    try:
        from torch import nn

        if isinstance(spec, nn.Module):
            return module_embedder(spec)
    except ImportError:
        pass
    if callable(spec):
        return spec  # type: ignore[return-value]
    module, sep, attr = str(spec).partition(":")
    if not sep:
        raise ConfigError(f"embedder '{spec}': give {', '.join(BUILTIN_EMBEDDERS)} or module:function")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"embedder '{spec}': cannot import ({exc})") from None
    if not callable(fn):
        raise ConfigError(f"embedder '{spec}' is not callable")
    return fn


def knn_mean_distance(z: np.ndarray, k: int, chunk: int = 2048) -> np.ndarray:
    """For each row, the mean Euclidean distance to its ``k`` nearest other rows (chunked, O(chunk * N))."""
    n = len(z)
    k = min(k, n - 1)
    if k < 1:
        return np.zeros(n)
    z = np.asarray(z, dtype=np.float64)
    zn = np.einsum("ij,ij->i", z, z)
    out = np.empty(n)
    for i in range(0, n, chunk):
        d2 = sq_distances(z[i:i + chunk], z, zn[i:i + chunk], zn)
        d2[np.arange(len(d2)), np.arange(i, i + len(d2))] = np.inf
        part = np.partition(d2, k - 1, axis=1)[:, :k]
        out[i:i + chunk] = np.sqrt(part).mean(axis=1)
    return out


def kmeans_labels(z: np.ndarray, n_clusters: int, rng: np.random.Generator, minibatch_n_init: int = 1,
                  dtype: type = np.float32) -> np.ndarray:
    """The k-means cluster of each row, as TypiClust clusters: full k-means (one init) up to 50 clusters,
    mini-batch k-means with ``minibatch_n_init`` inits above, on ``z`` as ``dtype``; seeded from ``rng``."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    seed = int(rng.integers(2**31))
    km = (KMeans(n_clusters, n_init=1, random_state=seed) if n_clusters <= 50 else
          MiniBatchKMeans(n_clusters, n_init=minibatch_n_init, random_state=seed,
                          batch_size=max(1024, 3 * n_clusters)))
    return km.fit_predict(np.asarray(z, dtype=dtype))


def typiclust(z: np.ndarray, budget: int, rng: np.random.Generator, knn: int = 20,
              min_cluster: int = 5) -> np.ndarray:
    """TypiClust: k-means into ``budget`` clusters; from each, largest first, its most typical point
    (typicality = 1 / mean distance to its ``knn`` nearest neighbours within the cluster). Clusters smaller
    than ``min_cluster`` are used only when the others run out. Positions into ``z``, sorted."""
    n = len(z)
    budget = min(int(budget), n)
    if budget <= 0:
        return np.zeros(0, dtype=np.int64)
    assign = kmeans_labels(z, budget, rng, minibatch_n_init=3, dtype=np.float64)
    sizes = np.bincount(assign, minlength=budget)
    order = sorted(range(budget), key=lambda c: (sizes[c] < min_cluster, -sizes[c], c))
    chosen: list[int] = []
    for c in order:
        members = np.flatnonzero(assign == c)
        if len(members) == 0:
            continue
        typicality = 1.0 / (knn_mean_distance(z[members], knn) + 1e-12)
        chosen.append(int(members[np.argmax(typicality)]))
        if len(chosen) == budget:
            break
    if len(chosen) < budget:  # empty clusters: fill with random others
        rest = np.setdiff1d(np.arange(n), chosen)
        chosen += rng.choice(rest, size=budget - len(chosen), replace=False).tolist()
    return np.sort(np.asarray(chosen, dtype=np.int64))


def ball_graph(z: np.ndarray, delta: float, chunk: int = 256) -> list[np.ndarray]:
    """For each row, the rows within distance ``delta`` (itself included); O(chunk * N) memory at a time."""
    z = np.asarray(z, dtype=np.float64)
    zn = np.einsum("ij,ij->i", z, z)
    out: list[np.ndarray] = []
    for i in range(0, len(z), chunk):
        out += [np.flatnonzero(row <= delta * delta) for row in sq_distances(z[i:i + chunk], z, zn[i:i + chunk], zn)]
    return out


def choose_delta(z: np.ndarray, n_classes: int, rng: np.random.Generator, purity: float = 0.95,
                 sample: int = 2000) -> float:
    """ProbCover's ball radius: the largest δ at which at least ``purity`` of the balls are pure, i.e. hold
    points of one k-means cluster only (k = the number of classes), on a sample of at most ``sample`` points."""
    from sklearn.cluster import KMeans

    idx = rng.choice(len(z), size=min(sample, len(z)), replace=False)
    zs = np.asarray(z[idx], dtype=np.float64)
    labels = KMeans(max(2, n_classes), n_init=3, random_state=int(rng.integers(2**31))).fit_predict(zs)
    d = np.sqrt(sq_distances(zs, zs))
    best = float(np.quantile(d[d > 0], 0.001)) if (d > 0).any() else 0.0
    for delta in np.quantile(d[d > 0], np.linspace(0.002, 0.3, 40)):
        pure = np.mean([len(set(labels[row <= delta])) == 1 for row in d])
        if pure < purity:
            break
        best = float(delta)
    return best


def probcover(z: np.ndarray, budget: int, rng: np.random.Generator, delta: float | None = None,
              n_classes: int = 10) -> np.ndarray:
    """ProbCover: greedy maximum coverage of δ-balls. Each pick is the point whose ball covers the most
    points not yet covered (ties broken by ``rng``); once everything is covered, the rest are drawn at random.
    ``delta`` None chooses it by :func:`choose_delta`. Positions into ``z``, sorted."""
    n = len(z)
    budget = min(int(budget), n)
    if budget <= 0:
        return np.zeros(0, dtype=np.int64)
    if delta is None:
        delta = choose_delta(z, n_classes, rng)
    balls = ball_graph(z, delta)
    covered = np.zeros(n, dtype=bool)
    gain = np.array([len(b) for b in balls], dtype=np.int64)  # uncovered points in each ball
    chosen: list[int] = []
    taken = np.zeros(n, dtype=bool)
    while len(chosen) < budget:
        g = np.where(taken, -1, gain)
        if g.max() <= 0:
            rest = np.flatnonzero(~taken)
            chosen += rng.choice(rest, size=budget - len(chosen), replace=False).tolist()
            break
        best = np.flatnonzero(g == g.max())
        pick = int(best[rng.integers(len(best))])
        chosen.append(pick)
        taken[pick] = True
        newly = balls[pick][~covered[balls[pick]]]
        covered[newly] = True
        # balls are symmetric (j is in i's ball iff i is in j's), so the balls holding a newly covered j are balls[j]
        if len(newly):
            np.subtract.at(gain, np.concatenate([balls[j] for j in newly]), 1)
    return np.sort(np.asarray(chosen, dtype=np.int64))


def cold_start_set(kind: str, x: np.ndarray, budget: int, rng: np.random.Generator, embedder: Embedder,
                   n_classes: int) -> np.ndarray:
    """The initial labeled set (dataset indices into ``x``) by a label-free method."""
    z = np.asarray(embedder(x), dtype=np.float32)
    if z.ndim != 2 or len(z) != len(x):
        raise StrategyError(f"embedder returned shape {z.shape} for {len(x)} images; it must return N x D")
    if kind == "typiclust":
        return typiclust(z, budget, rng)
    if kind == "probcover":
        return probcover(z, budget, rng, n_classes=n_classes)
    raise StrategyError(f"initial set '{kind}' is not label-free; choose {', '.join(COLD_START)}")
