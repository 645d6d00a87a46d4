"""Two-stage pool scoring: a cheap pass over every candidate, then fp32 rescoring of a shortlist.

The cheap pass (bf16 where the device runs it natively) scores the whole pool. Its score error is
estimated on a calibration slice scored both ways, as ``SAFETY`` times the largest error seen. If
every candidate's cheap score is within that bound ``e`` of its fp32 score, the fp32 top-k lies
among the candidates whose cheap score is at least the cheap k-th score minus ``2 e``: at least k
candidates have cheap scores at or above the k-th, so the fp32 k-th score is at least that minus
``e``, and a candidate reaching it has a cheap score at least the k-th minus ``2 e``. That shortlist
is rescored in fp32 and the selection is made on fp32 scores, with the same tie-breaking as a full
fp32 pass. The bound is checked on every rescored candidate; where it fails, it is widened and the
shortlist grows, and if the shortlist passes half the pool, the whole pool is scored in fp32 (the
fallback). The bound is estimated, not proven: a candidate outside both
the calibration slice and the shortlist is never rescored, so an error there that the calibration
slice did not show would go unseen; the safety factor and the check on every rescored candidate
guard against it. Exactly tied fp32 scores at the k-th place may also be broken differently.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from alkit.strategies.context import ModelOutputs, PoolPrediction

SAFETY = 2.0
CALIBRATION = 512
MAX_SHORTLIST_FRACTION = 0.5

ScoreFn = Callable[[PoolPrediction], np.ndarray]


@dataclass(frozen=True)
class TwoStageRecord:
    """What one two-stage scoring did, recorded with the round."""

    n_candidates: int
    shortlist: int
    error_bound: float
    observed_error: float
    widenings: int
    fallback: bool

    def describe(self) -> str:
        if self.fallback:
            return (f"two-stage: the shortlist grew past {MAX_SHORTLIST_FRACTION:.0%} of the pool "
                    f"({self.shortlist:,}); all {self.n_candidates:,} rescored in fp32")
        widened = f", widened {self.widenings}x" if self.widenings else ""
        return (f"two-stage: {self.shortlist:,} of {self.n_candidates:,} rescored in fp32, bound held "
                f"({self.observed_error:.3g} <= {self.error_bound:.3g}{widened})")


def calibration_positions(n: int) -> np.ndarray:
    """The positions, spread evenly over ``n`` candidates, whose error calibrates the bound."""
    return np.unique(np.linspace(0, n - 1, CALIBRATION).astype(np.int64))


def shortlist(cheap: np.ndarray, k: int, bound: float) -> np.ndarray:
    """Positions whose cheap score could reach the fp32 top ``k`` if every cheap score is within ``bound``."""
    kth = float(np.partition(cheap, len(cheap) - k)[len(cheap) - k])
    return np.flatnonzero(cheap >= kth - 2.0 * bound)


def error_floor(cheap: np.ndarray) -> float:
    """The smallest bound used: rounding of the scores themselves."""
    return 1e-6 * (1.0 + float(np.max(np.abs(cheap))))


def two_stage_scores(score: ScoreFn, outputs: ModelOutputs, candidates: np.ndarray, k: int
                     ) -> tuple[np.ndarray, TwoStageRecord] | None:
    """fp32 scores for the candidates that can reach the top ``k`` (``-inf`` for the others), and the record;
    None when two-stage scoring does not pay (no cheap pass, a small pool, or k near the pool's size).

    The bound starts from the calibration slice; whenever a rescored candidate's error exceeds it, it is
    widened to ``SAFETY`` times the largest error seen and the shortlist recomputed, until the bound holds on
    every rescored candidate or the shortlist passes ``MAX_SHORTLIST_FRACTION`` of the pool (then all of the
    pool is scored in fp32).
    """
    n = len(candidates)
    if not outputs.has_cheap_pass or n < 4 * CALIBRATION or k >= n * MAX_SHORTLIST_FRACTION or k < 1:
        return None
    cheap = np.asarray(score(PoolPrediction(outputs.cheap_logits(candidates))), dtype=np.float64)
    exact = np.full(n, np.nan)
    have = np.zeros(n, dtype=bool)

    def rescore(positions: np.ndarray) -> None:
        todo = positions[~have[positions]]
        if len(todo):
            exact[todo] = score(PoolPrediction(outputs.logits(candidates[todo])))
            have[todo] = True

    rescore(calibration_positions(n))
    floor = error_floor(cheap)
    bound = SAFETY * float(np.max(np.abs(exact[have] - cheap[have]))) + floor
    widenings = 0
    while True:
        short = shortlist(cheap, k, bound)
        if len(short) > n * MAX_SHORTLIST_FRACTION:
            full = np.asarray(score(PoolPrediction(outputs.logits(candidates))), dtype=np.float64)
            return full, TwoStageRecord(n, len(short), bound, float("nan"), widenings, True)
        rescore(short)
        observed = float(np.max(np.abs(exact[have] - cheap[have])))
        if observed <= bound:
            out = np.full(n, -np.inf)
            out[short] = exact[short]
            return out, TwoStageRecord(n, int(have.sum()), bound, observed, widenings, False)
        bound = SAFETY * observed + floor
        widenings += 1
