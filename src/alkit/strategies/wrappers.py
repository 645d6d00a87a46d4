"""Wrappers that compose with any strategy: class-balanced selection, random candidate subsampling, and a
switch from one strategy to another at a number of labels.

``base`` is a strategy spec string (``margin``, or ``bald:samples=10`` in a config file).
"""
from __future__ import annotations

from functools import cached_property

import numpy as np

from alkit.errors import StrategyError
from alkit.strategies.base import QueryStrategy, register_strategy
from alkit.strategies.context import LOGITS, QueryContext
from alkit.strategies.spec import StrategySpec

BALANCE_MODES = ("predicted", "rarest")


def class_quotas(k: int, weights: np.ndarray) -> np.ndarray:
    """Split ``k`` slots over classes in proportion to ``weights`` (largest remainders; ties to lower classes)."""
    share = k * weights / weights.sum()
    quota = np.floor(share).astype(np.int64)
    order = np.argsort(-(share - quota), kind="stable")
    quota[order[:k - quota.sum()]] += 1
    return quota


def balanced_pick(ranked_classes: np.ndarray, quota: np.ndarray, k: int) -> np.ndarray:
    """Positions into a ranking: walk it best first, taking an item while its class has quota left; fill any
    slots left over (classes too rare in the ranking) with the best remaining items. Returned in ranking order."""
    left = quota.copy()
    take = np.zeros(len(ranked_classes), dtype=bool)
    for pos, c in enumerate(ranked_classes):
        if left[c] > 0:
            left[c] -= 1
            take[pos] = True
    short = k - int(take.sum())
    if short > 0:
        take[np.flatnonzero(~take)[:short]] = True
    return np.flatnonzero(take)[:k]


def _build(wrapper: str, param: str, spec: object) -> QueryStrategy:
    if not isinstance(spec, str) or not spec:
        raise StrategyError(f"{wrapper}: {param}={spec!r} must name a strategy, e.g. {param}=margin")
    return StrategySpec.parse(spec).build()


class _Wrapper(QueryStrategy):
    base: str

    @cached_property
    def inner(self) -> QueryStrategy:
        return _build(self.name, "base", self.base)

    @property
    def requires(self) -> frozenset[str]:  # type: ignore[override]
        return self.inner.requires

    def needs(self, ctx: QueryContext) -> frozenset[str]:
        return self.inner.needs(ctx)


@register_strategy
class ClassBalanced(_Wrapper):
    """Spreads the base strategy's batch over classes, by the model's predicted class of each candidate.

    ``mode=predicted``: an equal share of the batch per class. ``mode=rarest``: shares in proportion to
    1 / (labels of the class + 1), toward the rarest labeled classes. Within a class the base's order is
    kept. A ranking base (score-based, random) ranks every candidate; a batch base (core-set, BADGE) is asked
    for ``oversample`` x k candidates to balance among.
    """

    name = "class-balanced"

    def __init__(self, base: str = "margin", mode: str = "predicted", oversample: int = 4) -> None:
        self.base = base
        self.mode = mode
        self.oversample = oversample

    @property
    def requires(self) -> frozenset[str]:  # type: ignore[override]
        return self.inner.requires | {LOGITS}

    def needs(self, ctx: QueryContext) -> frozenset[str]:
        return self.inner.needs(ctx) | {LOGITS}

    def check(self) -> None:
        self.inner.check()
        if self.mode not in BALANCE_MODES:
            raise StrategyError(f"class-balanced: mode '{self.mode}' is unknown; choose {', '.join(BALANCE_MODES)}")
        if not isinstance(self.oversample, int) or isinstance(self.oversample, bool) or self.oversample < 1:
            raise StrategyError(f"class-balanced: oversample={self.oversample!r} must be an integer >= 1")

    def query(self, ctx: QueryContext, k: int) -> np.ndarray:
        self.check_query(ctx, k)
        n = len(ctx.candidates)
        k = min(k, n)
        if k == 0:
            return ctx.candidates[:0]
        ranked = self.inner.query(ctx, n if self.inner.ranks else min(n, self.oversample * k))
        predicted = ctx.logits().argmax(axis=1)
        order = np.argsort(ctx.candidates)
        position = order[np.searchsorted(ctx.candidates[order], ranked)]
        if self.mode == "predicted":
            weights = np.ones(ctx.num_classes)
        else:
            weights = 1.0 / (ctx.labeled_counts().astype(np.float64) + 1.0)
        return ranked[balanced_pick(predicted[position], class_quotas(k, weights), k)]


@register_strategy
class Subsample(_Wrapper):
    """Runs the base strategy on a uniform random subsample of ``size`` candidates: a speed trade-off for
    costly strategies (BatchBALD, core-set on huge pools). ``--candidates N`` does the same for every strategy."""

    name = "subsample"

    def __init__(self, base: str = "margin", size: int = 10_000) -> None:
        self.base = base
        self.size = size

    def check(self) -> None:
        self.inner.check()
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 1:
            raise StrategyError(f"subsample: size={self.size!r} must be a positive integer")

    def query(self, ctx: QueryContext, k: int) -> np.ndarray:
        self.check_query(ctx, k)
        n = len(ctx.candidates)
        if self.size >= n:
            return self.inner.query(ctx, k)
        return self.inner.query(ctx.subset(np.sort(ctx.rng.choice(n, size=self.size, replace=False))), k)


@register_strategy
class Switch(QueryStrategy):
    """Queries with ``first`` while fewer than ``at`` images are labeled, then with ``then``.

    At a few dozen labels the model's uncertainty is not informative yet, and typical, diverse picks do
    better; uncertainty takes over once the model is trained on enough labels. The default is TypiClust,
    then margin (TCM, Doucet et al. 2023). It declares what either phase reads, but each round computes
    only what its phase needs (:meth:`needs`). Not a ranking: the labeling app takes a batch of it.
    """

    name = "switch"

    def __init__(self, first: str = "typiclust", then: str = "margin", at: int = 200) -> None:
        self.first = first
        self.then = then
        self.at = at

    @cached_property
    def phases(self) -> tuple[QueryStrategy, QueryStrategy]:
        return _build(self.name, "first", self.first), _build(self.name, "then", self.then)

    @property
    def requires(self) -> frozenset[str]:  # type: ignore[override]
        return self.phases[0].requires | self.phases[1].requires

    def check(self) -> None:
        for phase in self.phases:
            phase.check()
        if not isinstance(self.at, int) or isinstance(self.at, bool) or self.at < 0:
            raise StrategyError(f"switch: at={self.at!r} must be a number of labels, an integer >= 0")

    def active(self, ctx: QueryContext) -> QueryStrategy:
        """The phase for this query: ``first`` below ``at`` labeled images, else ``then``."""
        return self.phases[0] if len(ctx.labeled) < self.at else self.phases[1]

    def needs(self, ctx: QueryContext) -> frozenset[str]:
        return self.active(ctx).needs(ctx)

    def query(self, ctx: QueryContext, k: int) -> np.ndarray:
        self.check_query(ctx, k)
        return self.active(ctx).query(ctx, k)
