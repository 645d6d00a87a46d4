"""Query strategies: a typed base class, the score-based template, and the registry.

A strategy is stateless: ``query(prediction, candidates, k, rng)`` returns dataset
indices chosen among ``candidates``. Score-based strategies only define ``score``;
the base class ranks and breaks ties through the generator.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy.special import log_softmax

from alkit.errors import StrategyError
from alkit.strategies.scores import top_k


@dataclass
class PoolPrediction:
    """The model's output on the candidate pool, computed once per round and shared."""

    logits: np.ndarray

    def __post_init__(self) -> None:
        self._log_probs: np.ndarray | None = None

    @property
    def log_probs(self) -> np.ndarray:
        if self._log_probs is None:
            self._log_probs = log_softmax(self.logits.astype(np.float64), axis=1)
        return self._log_probs

    @property
    def probs(self) -> np.ndarray:
        return np.exp(self.log_probs)


class QueryStrategy(ABC):
    """Chooses which unlabeled samples to label next."""

    name: ClassVar[str] = ""
    needs_model: ClassVar[bool] = True

    @abstractmethod
    def query(self, prediction: PoolPrediction | None, candidates: np.ndarray, k: int,
              rng: np.random.Generator) -> np.ndarray:
        """Return up to ``k`` entries of ``candidates`` (dataset indices), most informative first.

        ``prediction`` rows align with ``candidates``; it is None for strategies that
        do not need a model.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ScoreBasedStrategy(QueryStrategy):
    """Template: subclasses define ``score`` (higher = more informative); this class ranks."""

    @abstractmethod
    def score(self, prediction: PoolPrediction) -> np.ndarray:
        """One score per row of ``prediction``."""

    def query(self, prediction: PoolPrediction | None, candidates: np.ndarray, k: int,
              rng: np.random.Generator) -> np.ndarray:
        check_query_args(candidates, k)
        if prediction is None:
            raise StrategyError(f"strategy '{self.name}' needs the model's predictions on the candidates")
        if len(prediction.logits) != len(candidates):
            raise StrategyError(
                f"strategy '{self.name}': {len(prediction.logits)} predictions for {len(candidates)} candidates"
            )
        return candidates[top_k(self.score(prediction), k, rng)]


def check_query_args(candidates: np.ndarray, k: int) -> None:
    if k < 0:
        raise StrategyError(f"query size k={k} must be >= 0")
    if candidates.ndim != 1:
        raise StrategyError("candidates must be a 1-D array of dataset indices")


_REGISTRY: dict[str, type[QueryStrategy]] = {}


def register_strategy(cls: type[QueryStrategy]) -> type[QueryStrategy]:
    """Class decorator: make a strategy available by its ``name`` to the CLI and configs."""
    if not cls.name:
        raise StrategyError(f"{cls.__name__} must set a class attribute `name` to be registered")
    _REGISTRY[cls.name] = cls
    return cls


def strategy_names() -> list[str]:
    return list(_REGISTRY)


def get_strategy(name: str, **params: Any) -> QueryStrategy:
    """A strategy by registered name, or by import path ``package.module:ClassName``."""
    if name in _REGISTRY:
        return _REGISTRY[name](**params)
    if ":" in name:
        import importlib

        module_name, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise StrategyError(f"strategy '{name}': cannot import ({exc})") from exc
        if not (isinstance(cls, type) and issubclass(cls, QueryStrategy)):
            raise StrategyError(f"strategy '{name}' is not a QueryStrategy subclass")
        return cls(**params)
    raise StrategyError(f"strategy '{name}' is unknown; choose one of {', '.join(_REGISTRY)} or give module:Class")
