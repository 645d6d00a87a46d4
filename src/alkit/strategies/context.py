"""What a strategy sees when it queries: the candidates, the labeled set, and the model's outputs.

:class:`ModelOutputs` computes the trained model's outputs lazily and caches them for the
round, so strategies that share a trained model share its forward passes. Every output
depends only on the model, the indices asked for and the (seed, round) key, never on
which strategy asked first, so a resumed run gets the same numbers.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from scipy.special import log_softmax

from alkit.errors import StrategyError

LOGITS, EMBEDDINGS, MC_LOGITS = "logits", "embeddings", "mc_logits"
OUTPUT_KINDS = (LOGITS, EMBEDDINGS, MC_LOGITS)


@dataclass
class PoolPrediction:
    """Logits of the candidates, one row per candidate, with cached log-probabilities."""

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


# (indices, want_embeddings) -> (logits, embeddings | None); (indices, samples) -> N x C x T
ForwardFn = Callable[[np.ndarray, bool], tuple[np.ndarray, np.ndarray | None]]
MCFn = Callable[[np.ndarray, int], np.ndarray]


class ModelOutputs:
    """A trained model's outputs on dataset indices, computed on first use and cached for the round.

    ``forward(indices, embeddings)`` and ``mc(indices, samples)`` do the work (the loop and the
    labeling app bind them to their model and images). ``cheap(indices)``, where given, is a faster
    lower-precision logits pass for two-stage scoring (:mod:`alkit.strategies.two_stage`); what each
    two-stage scoring did is appended to ``scoring_log``. ``seconds`` accumulates the compute time,
    so the caller can charge it to whichever strategy caused it.
    """

    def __init__(self, forward: ForwardFn, mc: MCFn | None = None,
                 cheap: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self._forward, self._mc, self._cheap = forward, mc, cheap
        self._cache: dict[tuple[str, str], np.ndarray] = {}
        self.seconds = 0.0
        self.scoring_log: list[Any] = []

    @property
    def has_cheap_pass(self) -> bool:
        return self._cheap is not None

    def cheap_logits(self, indices: np.ndarray) -> np.ndarray:
        """Logits from the cheap pass (not fp32): only for choosing what to rescore in fp32."""
        if self._cheap is None:
            raise StrategyError("these model outputs have no cheap pass")
        key = ("cheap-logits", self._key(indices))
        if key not in self._cache:
            self._cache[key] = self._timed(lambda: self._cheap(indices))  # type: ignore[misc]
        return self._cache[key]

    @classmethod
    def from_arrays(cls, indices: np.ndarray, logits: np.ndarray, embeddings: np.ndarray | None = None,
                    mc_logits: np.ndarray | None = None) -> ModelOutputs:
        """Outputs given as arrays whose rows align with ``indices`` (dataset indices): for tests and
        for users who score with their own model."""
        pos = {int(i): p for p, i in enumerate(np.asarray(indices))}

        def rows(arr: np.ndarray | None, what: str, idx: np.ndarray) -> np.ndarray:
            if arr is None:
                raise StrategyError(f"no {what} were given to ModelOutputs.from_arrays")
            try:
                return arr[[pos[int(i)] for i in idx]]
            except KeyError as exc:
                raise StrategyError(f"index {exc.args[0]} has no row in the given {what}") from None

        def mc(idx: np.ndarray, samples: int) -> np.ndarray:
            out = rows(mc_logits, "MC-dropout logits", idx)
            if out.shape[2] < samples:
                raise StrategyError(f"{samples} MC samples asked for, {out.shape[2]} given")
            return out[:, :, :samples]

        return cls(lambda idx, emb: (rows(logits, "logits", idx), rows(embeddings, "embeddings", idx) if emb else None),
                   mc)

    @staticmethod
    def _key(indices: np.ndarray) -> str:
        return hashlib.sha1(np.ascontiguousarray(indices, dtype=np.int64).tobytes()).hexdigest()

    def _timed(self, fn: Callable[[], object]) -> object:
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            self.seconds += time.perf_counter() - t0

    def prefetch(self, indices: np.ndarray, kinds: set[str] | frozenset[str]) -> None:
        """Compute logits and embeddings in one forward pass when both will be needed (logits alone are
        computed when first read, which lets a score-based strategy score in two stages)."""
        if EMBEDDINGS in kinds:
            self.embeddings(indices)

    def logits(self, indices: np.ndarray) -> np.ndarray:
        key = (LOGITS, self._key(indices))
        if key not in self._cache:
            logits, _ = self._timed(lambda: self._forward(indices, False))  # type: ignore[misc]
            self._cache[key] = logits
        return self._cache[key]

    def embeddings(self, indices: np.ndarray) -> np.ndarray:
        """Penultimate-layer embeddings; their forward pass also fills the logits cache."""
        h = self._key(indices)
        if (EMBEDDINGS, h) not in self._cache:
            logits, emb = self._timed(lambda: self._forward(indices, True))  # type: ignore[misc]
            self._cache[(LOGITS, h)], self._cache[(EMBEDDINGS, h)] = logits, emb
        return self._cache[(EMBEDDINGS, h)]

    def mc_logits(self, indices: np.ndarray, samples: int) -> np.ndarray:
        """N x C x ``samples`` logits from MC-dropout passes."""
        if self._mc is None:
            raise StrategyError("this model's outputs have no MC-dropout samples")
        key = (f"{MC_LOGITS}/{samples}", self._key(indices))
        if key not in self._cache:
            self._cache[key] = self._timed(lambda: self._mc(indices, samples))  # type: ignore[misc]
        return self._cache[key]


@dataclass
class QueryContext:
    """Everything a strategy may use to choose among ``candidates``.

    ``candidates`` and ``labeled`` are dataset indices (rows of the training images);
    ``labels`` has one entry per training image, -1 where unlabeled. ``outputs`` is None
    for strategies that require no model outputs. ``rng`` is the round's generator for
    tie-breaks and sampling.
    """

    candidates: np.ndarray
    labeled: np.ndarray
    labels: np.ndarray
    num_classes: int
    round: int
    rng: np.random.Generator
    outputs: ModelOutputs | None = None
    _prediction: PoolPrediction | None = field(default=None, init=False, repr=False)

    def _need(self, what: str) -> ModelOutputs:
        if self.outputs is None:
            raise StrategyError(f"this strategy needs the model's {what}, but none were given; "
                                f"declare '{what}' in the strategy's `requires`")
        return self.outputs

    def logits(self) -> np.ndarray:
        """Candidates' logits, N x C."""
        return self._need(LOGITS).logits(self.candidates)

    @property
    def prediction(self) -> PoolPrediction:
        """Candidates' logits wrapped with cached log-probabilities."""
        if self._prediction is None:
            self._prediction = PoolPrediction(self.logits())
        return self._prediction

    def embeddings(self) -> np.ndarray:
        """Candidates' penultimate-layer embeddings, N x D."""
        return self._need(EMBEDDINGS).embeddings(self.candidates)

    def labeled_embeddings(self) -> np.ndarray:
        """The labeled set's embeddings, in the order of ``labeled``."""
        return self._need(EMBEDDINGS).embeddings(self.labeled)

    def mc_logits(self, samples: int) -> np.ndarray:
        """Candidates' MC-dropout logits, N x C x ``samples``."""
        return self._need(MC_LOGITS).mc_logits(self.candidates, samples)

    def labeled_counts(self) -> np.ndarray:
        """Labels per class in the labeled set."""
        return np.bincount(self.labels[self.labeled], minlength=self.num_classes)

    def subset(self, positions: np.ndarray) -> QueryContext:
        """The same context restricted to ``candidates[positions]`` (same outputs, same generator)."""
        return QueryContext(self.candidates[positions], self.labeled, self.labels, self.num_classes, self.round,
                            self.rng, self.outputs)
