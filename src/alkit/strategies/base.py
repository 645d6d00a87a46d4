"""Query strategies: the typed base class, the score-based template, and the registry.

A strategy's ``__init__`` only stores its parameters. ``query(ctx, k)`` returns up to ``k``
dataset indices chosen among ``ctx.candidates`` (a :class:`QueryContext`). A strategy
declares in ``requires`` which model outputs it reads (``logits``, ``embeddings``,
``mc_logits``); the loop computes those once per round and shares them. Score-based
strategies only define ``score(prediction)`` (or ``scores(ctx)``); the base class ranks
and breaks ties through the round's generator.
"""
from __future__ import annotations

import importlib
import inspect
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from alkit.errors import StrategyError
from alkit.strategies.context import LOGITS, OUTPUT_KINDS, PoolPrediction, QueryContext
from alkit.strategies.scores import top_k
from alkit.strategies.two_stage import two_stage_scores


class QueryStrategy(ABC):
    """Chooses which unlabeled samples to label next.

    ``requires``: the model outputs ``query`` reads; empty means the model is never run.
    ``ranks``: True when ``query(ctx, len(ctx.candidates))`` is a cheap full ranking (best first);
    batch strategies (core-set, BADGE, BatchBALD) choose a set jointly and say False.
    """

    name: ClassVar[str] = ""
    requires: ClassVar[frozenset[str]] = frozenset({LOGITS})
    ranks: ClassVar[bool] = False

    @abstractmethod
    def query(self, ctx: QueryContext, k: int) -> np.ndarray:
        """Up to ``k`` entries of ``ctx.candidates`` (dataset indices), most informative first."""

    def check(self) -> None:
        """Raise :class:`StrategyError` for bad parameters; called when a run is configured, before any work."""

    def needs(self, ctx: QueryContext) -> frozenset[str]:
        """The outputs this query will read: ``requires``, or less for a strategy whose needs change by round."""
        return self.requires

    def check_query(self, ctx: QueryContext, k: int) -> None:
        """Refuse a bad query size, candidates that are not a 1-D index array, or bad parameters (``check``,
        again here for strategies built directly rather than from a spec). Every ``query`` starts with it."""
        if k < 0:
            raise StrategyError(f"query size k={k} must be >= 0")
        if ctx.candidates.ndim != 1:
            raise StrategyError("candidates must be a 1-D array of dataset indices")
        self.check()

    def params(self) -> dict[str, Any]:
        """The constructor's parameters and their current values (part of a run's fingerprint)."""
        sig = inspect.signature(type(self).__init__)
        return {p: getattr(self, p) for p in list(sig.parameters)[1:]
                if sig.parameters[p].kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.params().items())})"


class ScoreBasedStrategy(QueryStrategy):
    """Template: subclasses define ``score(prediction)`` (higher = more informative), or ``scores(ctx)`` for
    scores from other outputs; this class ranks."""

    ranks = True

    def score(self, prediction: PoolPrediction) -> np.ndarray:
        """One score per row of ``prediction`` (the candidates' logits)."""
        raise StrategyError(f"{type(self).__name__} must define score(prediction) or scores(ctx)")

    def scores(self, ctx: QueryContext) -> np.ndarray:
        """One score per candidate; by default ``score`` of the candidates' logits."""
        return self.score(ctx.prediction)

    def query(self, ctx: QueryContext, k: int) -> np.ndarray:
        self.check_query(ctx, k)
        staged = None
        if type(self).scores is ScoreBasedStrategy.scores and ctx.outputs is not None:
            staged = two_stage_scores(self.score, ctx.outputs, ctx.candidates, k)
        if staged is not None:
            scores, record = staged
            ctx.outputs.scoring_log.append(record)
        else:
            scores = np.asarray(self.scores(ctx))
        if len(scores) != len(ctx.candidates):
            raise StrategyError(f"strategy '{self.name}': {len(scores)} scores for {len(ctx.candidates)} candidates")
        return ctx.candidates[top_k(scores, k, ctx.rng)]


_REGISTRY: dict[str, type[QueryStrategy]] = {}


def register_strategy(cls: type[QueryStrategy]) -> type[QueryStrategy]:
    """Class decorator: make a strategy available by its ``name`` to the CLI and configs."""
    if not cls.name:
        raise StrategyError(f"{cls.__name__} must set a class attribute `name` to be registered")
    unknown = set(cls.requires) - set(OUTPUT_KINDS) if isinstance(cls.requires, frozenset) else set()
    if unknown:
        raise StrategyError(f"{cls.__name__}.requires: unknown output(s) {sorted(unknown)}; "
                            f"choose from {', '.join(OUTPUT_KINDS)}")
    _REGISTRY[cls.name] = cls
    return cls


def strategy_names() -> list[str]:
    return list(_REGISTRY)


def strategy_class(name: str) -> type[QueryStrategy]:
    """The class registered as ``name``, or imported from ``package.module:ClassName``."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise StrategyError(f"strategy '{name}': cannot import ({exc})") from exc
        if not (isinstance(cls, type) and issubclass(cls, QueryStrategy)):
            raise StrategyError(f"strategy '{name}' is not a QueryStrategy subclass")
        return cls
    raise StrategyError(f"strategy '{name}' is unknown; choose one of {', '.join(_REGISTRY)} or give module:Class")


def get_strategy(name: str, **params: Any) -> QueryStrategy:
    """A strategy by registered name or import path, built with ``params``."""
    cls = strategy_class(name)
    try:
        inspect.signature(cls).bind(**params)
    except TypeError as exc:
        allowed = [p for p in inspect.signature(cls).parameters]
        raise StrategyError(f"strategy '{name}': {exc}; its parameters are: {', '.join(allowed) or 'none'}") from None
    return cls(**params)
