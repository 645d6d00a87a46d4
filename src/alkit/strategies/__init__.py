"""Query strategies, the query context they see, and the registry."""
# isort: skip_file  (registration order is the order --help lists them in)
from alkit.strategies.base import (QueryStrategy, ScoreBasedStrategy, get_strategy, register_strategy, strategy_class,
                                   strategy_names)
from alkit.strategies.builtin import EntropySampling, LeastConfidence, MarginSampling, RandomSampling
from alkit.strategies.bayesian import BALD, BatchBALD, bald_scores, batchbald_select
from alkit.strategies.context import EMBEDDINGS, LOGITS, MC_LOGITS, ModelOutputs, PoolPrediction, QueryContext
from alkit.strategies.diversity import BADGE, CoreSet, badge_select, kcenter_greedy
from alkit.strategies.typicality import TypiClust, typiclust_select
from alkit.strategies.scores import entropy_scores, least_confidence_scores, margin_scores, top_k
from alkit.strategies.spec import StrategySpec
from alkit.strategies.wrappers import ClassBalanced, Subsample

__all__ = ["BADGE", "BALD", "BatchBALD", "ClassBalanced", "CoreSet", "EMBEDDINGS", "EntropySampling", "LOGITS",
           "LeastConfidence", "MC_LOGITS", "MarginSampling", "ModelOutputs", "PoolPrediction", "QueryContext",
           "QueryStrategy", "RandomSampling", "ScoreBasedStrategy", "StrategySpec", "Subsample", "TypiClust",
           "badge_select", "bald_scores", "batchbald_select", "entropy_scores", "get_strategy", "kcenter_greedy",
           "least_confidence_scores", "margin_scores", "register_strategy", "strategy_class", "strategy_names",
           "top_k", "typiclust_select"]
