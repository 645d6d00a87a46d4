"""The scoring benchmark's shortlist table, on logits made in the test."""
import numpy as np

from alkit.strategies import PoolPrediction, margin_scores
from benchmarks.scoring import cheap_pass_rows


def _smallest_exact_prefix(cheap: np.ndarray, exact: np.ndarray, k: int) -> int:
    top = set(np.argsort(-exact, kind="stable")[:k].tolist())
    order = np.argsort(-cheap, kind="stable")
    return next(m for m in range(k, len(order) + 1) if top <= set(order[:m].tolist()))


def test_the_shortlists_hold_the_fp32_top_k_and_the_oracle_is_the_shortest_prefix_that_does() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(3000, 10)) * 3
    noisy = ref + rng.normal(scale=0.05, size=ref.shape)
    k = 200
    out = cheap_pass_rows({"noisy": (noisy, 2.0), "same": (ref.copy(), 1.0)}, ref, k, baseline_seconds=10.0,
                          fp32_seconds_per_image=0.001)
    margin = out["metrics"]["noisy"]["margin"]
    exact, cheap = margin_scores(PoolPrediction(ref).probs), margin_scores(PoolPrediction(noisy).probs)
    assert margin["shortlist_oracle"] == _smallest_exact_prefix(cheap, exact, k) > k
    assert margin["shortlist_rule"] >= margin["shortlist_oracle"]
    assert margin["shortlist_true_error"] >= margin["shortlist_oracle"]
    assert margin["max_error"] == np.abs(cheap - exact).max()
    assert margin["ceiling"] == 10.0 / (2.0 + margin["shortlist_oracle"] * 0.001)
    same = out["metrics"]["same"]["entropy"]
    assert same["shortlist_oracle"] == k and same["overlap"] == 1.0 and same["max_error"] == 0.0
    assert len(out["table"]) == 2 + 4
