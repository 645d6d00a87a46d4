import numpy as np
import pytest
from scipy.special import log_softmax

from alkit.errors import StrategyError
from alkit.strategies import (ModelOutputs, PoolPrediction, QueryContext, ScoreBasedStrategy, entropy_scores,
                              get_strategy, least_confidence_scores, margin_scores, register_strategy, strategy_names,
                              top_k)

PROBS = np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25], [1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])


def _ctx(candidates: np.ndarray, logits: np.ndarray | None = None, seed: int = 0) -> QueryContext:
    """A query context over ``candidates`` with the given logits (rows aligned), nothing labeled."""
    n = int(candidates.max()) + 1 if len(candidates) else 0
    outputs = None if logits is None else ModelOutputs.from_arrays(candidates, logits)
    return QueryContext(candidates, np.zeros(0, dtype=np.int64), np.full(n, -1), 3, 0, np.random.default_rng(seed),
                        outputs)


def _log(probs: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(probs)


def test_least_confidence_hand_computed() -> None:
    np.testing.assert_allclose(least_confidence_scores(PROBS), [0.3, 0.6, 0.0, 0.5])


def test_margin_hand_computed() -> None:
    np.testing.assert_allclose(margin_scores(PROBS), [-0.5, -0.05, -1.0, 0.0])


def test_entropy_hand_computed_and_no_log_zero() -> None:
    expected = [-(0.7 * np.log(0.7) + 0.2 * np.log(0.2) + 0.1 * np.log(0.1)),
                -(0.4 * np.log(0.4) + 0.35 * np.log(0.35) + 0.25 * np.log(0.25)), 0.0, np.log(2)]
    with np.errstate(all="raise"):
        np.testing.assert_allclose(entropy_scores(PROBS), expected, atol=1e-12)
    np.testing.assert_allclose(entropy_scores(logits=np.log(PROBS[:2])), expected[:2])
    extreme = np.array([[0.0, -2000.0, -3000.0]])  # probabilities underflow to exactly 0
    assert np.isfinite(entropy_scores(logits=extreme)).all()
    np.testing.assert_allclose(entropy_scores(log_probs=log_softmax(extreme, axis=1)), [0.0], atol=1e-300)


def test_top_k_orders_best_first_and_handles_k_edges() -> None:
    rng = np.random.default_rng(0)
    scores = np.array([0.1, 0.9, 0.5, 0.7])
    assert top_k(scores, 2, rng).tolist() == [1, 3]
    assert sorted(top_k(scores, 10, rng).tolist()) == [0, 1, 2, 3]
    assert top_k(scores, 10, rng).tolist() == [1, 3, 2, 0]
    assert top_k(scores, 0, rng).size == 0


def test_top_k_tie_break_is_reproducible_and_uses_generator() -> None:
    ties = np.zeros(100)
    a = top_k(ties, 10, np.random.default_rng(1))
    assert top_k(ties, 10, np.random.default_rng(1)).tolist() == a.tolist()
    assert top_k(ties, 10, np.random.default_rng(2)).tolist() != a.tolist()


@pytest.mark.parametrize("name", ["least-confidence", "margin", "entropy"])
def test_score_strategies_return_dataset_indices_of_candidates(name: str) -> None:
    candidates = np.array([10, 42, 7, 99])  # dataset indices, deliberately not 0..3
    chosen = get_strategy(name).query(_ctx(candidates, _log(PROBS)), 2)
    assert set(chosen) <= set(candidates.tolist())
    assert chosen[0] == {"least-confidence": 42, "margin": 99, "entropy": 42}[name]
    assert len(get_strategy(name).query(_ctx(candidates, _log(PROBS)), 9)) == 4
    assert len(get_strategy(name).query(_ctx(candidates, _log(PROBS)), 0)) == 0


def test_random_never_needs_the_model() -> None:
    s = get_strategy("random")
    assert s.requires == frozenset()
    out = s.query(_ctx(np.arange(100, 200)), 10)
    assert len(set(out)) == 10 and out.min() >= 100
    assert len(s.query(_ctx(np.arange(5)), 50)) == 5


def test_invalid_query_arguments() -> None:
    with pytest.raises(StrategyError, match="k=-1 must be >= 0"):
        get_strategy("margin").query(_ctx(np.arange(4), _log(PROBS)), -1)
    with pytest.raises(StrategyError, match="needs the model's logits"):
        get_strategy("entropy").query(_ctx(np.arange(3)), 1)
    with pytest.raises(StrategyError, match="strategy 'no-such' is unknown"):
        get_strategy("no-such")
    with pytest.raises(StrategyError, match="its parameters are: samples"):
        get_strategy("bald", sample=3)


@register_strategy
class SmallestMaxLogit(ScoreBasedStrategy):
    """A user strategy in a few lines: the base class ranks."""

    name = "test-smallest-max-logit"

    def score(self, prediction: PoolPrediction) -> np.ndarray:
        return -prediction.logits.max(axis=1)


def test_user_strategy_registry_and_import_path() -> None:
    assert "test-smallest-max-logit" in strategy_names()
    logits = np.array([[5.0, 0.0], [1.0, 0.5], [3.0, 2.0]])
    chosen = get_strategy("test-smallest-max-logit").query(_ctx(np.array([3, 4, 5]), logits), 1)
    assert chosen.tolist() == [4]
    assert isinstance(get_strategy("tests.strategies.test_strategies:SmallestMaxLogit"), SmallestMaxLogit)
    with pytest.raises(StrategyError, match="not a QueryStrategy subclass"):
        get_strategy("numpy:ndarray")
