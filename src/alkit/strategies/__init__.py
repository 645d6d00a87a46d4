"""Query strategies and their registry."""
from alkit.strategies.base import (PoolPrediction, QueryStrategy, ScoreBasedStrategy, get_strategy,
                                   register_strategy, strategy_names)
from alkit.strategies.builtin import EntropySampling, LeastConfidence, MarginSampling, RandomSampling
from alkit.strategies.scores import entropy_scores, least_confidence_scores, margin_scores, top_k

__all__ = ["EntropySampling", "LeastConfidence", "MarginSampling", "PoolPrediction", "QueryStrategy",
           "RandomSampling", "ScoreBasedStrategy", "entropy_scores", "get_strategy", "least_confidence_scores",
           "margin_scores", "register_strategy", "strategy_names", "top_k"]
