"""The built-in strategies: random (passive learning) and three uncertainty samplers."""
from __future__ import annotations

import numpy as np

from alkit.strategies.base import QueryStrategy, ScoreBasedStrategy, register_strategy
from alkit.strategies.context import PoolPrediction, QueryContext
from alkit.strategies.scores import entropy_scores, least_confidence_scores, margin_scores


@register_strategy
class RandomSampling(QueryStrategy):
    """Passive learning: a uniform sample of the candidates. Never runs the model."""

    name = "random"
    requires = frozenset()
    ranks = True

    def query(self, ctx: QueryContext, k: int) -> np.ndarray:
        self.check_query(ctx, k)
        k = min(k, len(ctx.candidates))
        return ctx.candidates[ctx.rng.choice(len(ctx.candidates), size=k, replace=False)] if k else ctx.candidates[:0]


@register_strategy
class LeastConfidence(ScoreBasedStrategy):
    """Query where the most probable class is least probable."""

    name = "least-confidence"

    def score(self, prediction: PoolPrediction) -> np.ndarray:
        return least_confidence_scores(prediction.probs)


@register_strategy
class MarginSampling(ScoreBasedStrategy):
    """Query where the two most probable classes are closest."""

    name = "margin"

    def score(self, prediction: PoolPrediction) -> np.ndarray:
        return margin_scores(prediction.probs)


@register_strategy
class EntropySampling(ScoreBasedStrategy):
    """Query where the predictive distribution has the highest entropy (from log-probabilities)."""

    name = "entropy"

    def score(self, prediction: PoolPrediction) -> np.ndarray:
        return entropy_scores(log_probs=prediction.log_probs)
