"""Bayesian strategies on MC-dropout samples: BALD (Houlsby et al. 2011) and BatchBALD (Kirsch et al. 2019).

Both read the candidates' logits from T stochastic forward passes (``ctx.mc_logits(T)``,
N x C x T), which the loop draws once per round from the (seed, round, "mc") generator.
"""
from __future__ import annotations

import numpy as np
from scipy.special import softmax

from alkit.errors import StrategyError
from alkit.strategies.base import QueryStrategy, ScoreBasedStrategy, register_strategy
from alkit.strategies.context import MC_LOGITS, QueryContext
from alkit.strategies.scores import entropy_scores


def mc_probs(mc_logits: np.ndarray) -> np.ndarray:
    """Class probabilities per MC sample, N x C x T (float64)."""
    return softmax(np.asarray(mc_logits, dtype=np.float64), axis=1)


def bald_scores(probs: np.ndarray) -> np.ndarray:
    """Mutual information between the label and the weights: H[mean_t p_t] - mean_t H[p_t], from N x C x T."""
    return entropy_scores(probs.mean(axis=2)) - entropy_scores(probs, axis=1).mean(axis=1)


def batchbald_select(probs: np.ndarray, k: int, rng: np.random.Generator, num_configs: int = 256,
                     chunk: int = 512) -> np.ndarray:
    """Greedy BatchBALD: positions of ``k`` rows of ``probs`` (N x C x T), in the order chosen.

    Each step adds the candidate that maximises the joint mutual information of the batch. The joint
    entropy's dependence on earlier picks, H(y_new | y_batch), is estimated from ``num_configs`` label
    configurations of the batch drawn ancestrally from the model (the sampled estimator of the BatchBALD
    paper); each configuration carries its posterior weights over the T samples, so terms that are the
    same for every candidate cancel. The first pick is exact (it is BALD's). Time per pick is
    O(N * num_configs * C * T); memory O(N * C * T + chunk * num_configs * C).
    """
    n, c, t = probs.shape
    k = min(max(int(k), 0), n)
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    cond = entropy_scores(probs, axis=1).mean(axis=1)
    weights = np.full((t, 1), 1.0 / t)
    chosen: list[int] = []
    free = np.ones(n, dtype=bool)
    for _ in range(k):
        scores = np.full(n, -np.inf)
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            q = np.einsum("nct,tm->nmc", probs[start:stop], weights, optimize=True)
            scores[start:stop] = entropy_scores(q, axis=2).mean(axis=1) - cond[start:stop]
        scores[~free] = -np.inf
        best = np.flatnonzero(scores == scores.max())
        pick = int(best[rng.integers(len(best))]) if len(best) > 1 else int(best[0])
        chosen.append(pick)
        free[pick] = False
        if weights.shape[1] == 1:
            weights = np.repeat(weights, num_configs, axis=1)
        pred = np.einsum("ct,tm->mc", probs[pick], weights)
        pred /= pred.sum(axis=1, keepdims=True)
        ys = (pred.cumsum(axis=1) > rng.random((len(pred), 1))).argmax(axis=1)
        weights = weights * probs[pick][ys].T
        weights /= weights.sum(axis=0, keepdims=True)
    return np.asarray(chosen, dtype=np.int64)


def _check_samples(samples: object) -> int:
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 2:
        raise StrategyError(f"samples={samples!r}: MC-dropout strategies need an integer number of samples >= 2")
    return samples


@register_strategy
class BALD(ScoreBasedStrategy):
    """Bayesian active learning by disagreement: the candidates whose MC-dropout samples disagree most."""

    name = "bald"
    requires = frozenset({MC_LOGITS})

    def __init__(self, samples: int = 20) -> None:
        self.samples = samples

    def check(self) -> None:
        _check_samples(self.samples)

    def scores(self, ctx: QueryContext) -> np.ndarray:
        return bald_scores(mc_probs(ctx.mc_logits(self.samples)))


@register_strategy
class BatchBALD(QueryStrategy):
    """Greedy BatchBALD: a batch with high joint mutual information, so near-duplicates are not all taken."""

    name = "batchbald"
    requires = frozenset({MC_LOGITS})

    def __init__(self, samples: int = 20, num_configs: int = 256) -> None:
        self.samples = samples
        self.num_configs = num_configs

    def check(self) -> None:
        _check_samples(self.samples)
        if not isinstance(self.num_configs, int) or isinstance(self.num_configs, bool) or self.num_configs < 1:
            raise StrategyError(f"batchbald: num_configs={self.num_configs!r} must be an integer >= 1")

    def query(self, ctx: QueryContext, k: int) -> np.ndarray:
        self.check_query(ctx, k)
        probs = mc_probs(ctx.mc_logits(self.samples))
        return ctx.candidates[batchbald_select(probs, k, ctx.rng, self.num_configs)]
