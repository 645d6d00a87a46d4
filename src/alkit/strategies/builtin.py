"""The built-in strategies: random (passive learning) and three uncertainty samplers."""
from __future__ import annotations

import numpy as np

from alkit.strategies.base import PoolPrediction, QueryStrategy, ScoreBasedStrategy, check_query_args, register_strategy
from alkit.strategies.scores import entropy_scores, least_confidence_scores, margin_scores


@register_strategy
class RandomSampling(QueryStrategy):
    """Passive learning: a uniform sample of the candidates. Never runs the model."""

    name = "random"
    needs_model = False

    def query(self, prediction: PoolPrediction | None, candidates: np.ndarray, k: int,
              rng: np.random.Generator) -> np.ndarray:
        check_query_args(candidates, k)
        k = min(k, len(candidates))
        return candidates[rng.choice(len(candidates), size=k, replace=False)] if k else candidates[:0]


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
