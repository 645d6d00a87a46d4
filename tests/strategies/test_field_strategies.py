"""BALD, BatchBALD, core-set, BADGE and the wrappers, each against a reference computed from its definition."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.special import softmax

from alkit.errors import StrategyError
from alkit.strategies import (ModelOutputs, QueryContext, StrategySpec, badge_select, bald_scores, batchbald_select,
                              get_strategy, kcenter_greedy, typiclust_select)
from alkit.strategies.bayesian import mc_probs
from alkit.strategies.diversity import gradient_embedding_factors, gradient_sq_distances, min_sq_distances
from alkit.strategies.wrappers import balanced_pick, class_quotas


def _entropy(p: np.ndarray) -> float:
    return float(-sum(v * np.log(v) for v in p if v > 0))


def _context(n: int = 40, c: int = 4, d: int = 6, t: int = 8, n_labeled: int = 5, seed: int = 0,
             rng_seed: int = 0) -> QueryContext:
    """A pool of ``n`` images: the first ``n_labeled`` labeled, the rest candidates with random outputs."""
    g = np.random.default_rng(seed)
    idx = np.arange(n)
    outputs = ModelOutputs.from_arrays(idx, g.normal(size=(n, c)) * 2, g.normal(size=(n, d)),
                                       g.normal(size=(n, c, t)) * 2)
    labels = np.full(n, -1)
    labels[:n_labeled] = g.integers(0, c, n_labeled)
    return QueryContext(idx[n_labeled:], idx[:n_labeled], labels, c, 1, np.random.default_rng(rng_seed), outputs)


# -- BALD ---------------------------------------------------------------------------------------------------
def test_bald_equals_mutual_information_from_its_definition() -> None:
    logits = np.random.default_rng(1).normal(size=(7, 3, 5)) * 3
    probs = mc_probs(logits)
    expected = [_entropy(probs[i].mean(axis=1)) - np.mean([_entropy(probs[i, :, t]) for t in range(5)])
                for i in range(7)]
    np.testing.assert_allclose(bald_scores(probs), expected, atol=1e-12)
    agree = np.repeat(probs[:, :, :1], 5, axis=2)  # all samples equal: no disagreement
    np.testing.assert_allclose(bald_scores(agree), 0.0, atol=1e-12)


def test_bald_query_ranks_by_mutual_information() -> None:
    ctx = _context()
    scores = bald_scores(mc_probs(ctx.mc_logits(8)))
    chosen = get_strategy("bald", samples=8).query(ctx, 5)
    assert chosen.tolist() == ctx.candidates[np.argsort(-scores)[:5]].tolist()


def test_bald_needs_two_samples() -> None:
    with pytest.raises(StrategyError, match="samples=1"):
        get_strategy("bald", samples=1).query(_context(), 3)


# -- BatchBALD ----------------------------------------------------------------------------------------------
def _exact_joint_mi(probs: np.ndarray, batch: list[int]) -> float:
    c, t = probs.shape[1], probs.shape[2]
    joint = 0.0
    for ys in itertools.product(range(c), repeat=len(batch)):
        p = np.prod([probs[j, y] for j, y in zip(batch, ys)], axis=0).mean()
        joint -= p * np.log(p) if p > 0 else 0.0
    cond = sum(np.mean([_entropy(probs[j, :, s]) for s in range(t)]) for j in batch)
    return joint - cond


def test_batchbald_first_pick_is_bald_and_greedy_matches_exact_enumeration() -> None:
    probs = mc_probs(np.random.default_rng(3).normal(size=(9, 3, 6)) * 2.5)
    assert batchbald_select(probs, 1, np.random.default_rng(0))[0] == int(np.argmax(bald_scores(probs)))
    exact: list[int] = []
    for _ in range(3):
        rest = [i for i in range(9) if i not in exact]
        exact.append(max(rest, key=lambda i: _exact_joint_mi(probs, exact + [i])))
    sampled = batchbald_select(probs, 3, np.random.default_rng(0), num_configs=20_000)
    assert sampled.tolist() == exact


def test_batchbald_avoids_duplicates_that_bald_would_take_together() -> None:
    base = mc_probs(np.random.default_rng(4).normal(size=(6, 3, 10)) * 3)
    top = int(np.argmax(bald_scores(base)))
    probs = np.concatenate([base, base[[top, top]]])  # two exact copies of the most informative image
    picks = batchbald_select(probs, 2, np.random.default_rng(0), num_configs=4000)
    assert len({top, 6, 7} & set(picks.tolist())) == 1
    assert sorted(np.argsort(-bald_scores(probs))[:2].tolist()) != sorted(picks.tolist())


# -- core-set -----------------------------------------------------------------------------------------------
def _brute_kcenter(x: np.ndarray, centers: np.ndarray, k: int) -> list[int]:
    chosen: list[int] = []
    for _ in range(k):
        pts = np.concatenate([centers, x[chosen]])
        d = np.array([min(np.sum((xi - c) ** 2) for c in pts) for xi in x])
        d[chosen] = -1
        chosen.append(int(np.argmax(d)))
    return chosen


def test_kcenter_greedy_matches_brute_force_and_chunking_changes_nothing() -> None:
    g = np.random.default_rng(5)
    x, centers = g.normal(size=(60, 4)), g.normal(size=(7, 4))
    expected = _brute_kcenter(x, centers, 12)
    for chunk in (5, 4096):
        assert kcenter_greedy(x, centers, 12, np.random.default_rng(0), chunk).tolist() == expected
    full = ((x[:, None] - centers[None]) ** 2).sum(-1).min(1)
    np.testing.assert_allclose(min_sq_distances(x, centers, chunk=3), full, rtol=1e-10, atol=1e-10)


def test_coreset_starts_from_the_labeled_set() -> None:
    ctx = _context()
    chosen = get_strategy("coreset").query(ctx, 6)
    emb = ctx.outputs.embeddings(np.arange(40))
    positions = _brute_kcenter(emb[ctx.candidates], emb[ctx.labeled], 6)
    assert chosen.tolist() == ctx.candidates[positions].tolist()


# -- BADGE --------------------------------------------------------------------------------------------------
def test_badge_factorised_distances_equal_materialised_gradient_embeddings() -> None:
    g = np.random.default_rng(6)
    probs, z = softmax(g.normal(size=(30, 5)), axis=1), g.normal(size=(30, 8))
    a = gradient_embedding_factors(probs)
    onehot = np.eye(5)[probs.argmax(1)]
    full = np.stack([np.outer(p - o, zi).ravel() for p, o, zi in zip(probs, onehot, z)])  # N x C*D
    for j in (0, 17):
        np.testing.assert_allclose(gradient_sq_distances(a, z, j), ((full - full[j]) ** 2).sum(1), atol=1e-10)


def test_badge_is_kmeanspp_on_gradient_embeddings() -> None:
    g = np.random.default_rng(7)
    probs, z = softmax(g.normal(size=(50, 4)) * 2, axis=1), g.normal(size=(50, 6))
    picks = badge_select(probs, z, 10, np.random.default_rng(1))
    a = gradient_embedding_factors(probs)
    full = np.stack([np.outer(ai, zi).ravel() for ai, zi in zip(a, z)])
    assert picks[0] == int(np.argmax((full ** 2).sum(1)))
    assert len(set(picks.tolist())) == 10
    assert picks.tolist() == badge_select(probs, z, 10, np.random.default_rng(1)).tolist()
    # the reference k-means++ draw, step by step, with the same generator
    rng, chosen = np.random.default_rng(1), [int(picks[0])]
    for _ in range(9):
        d2 = np.min([((full - full[c]) ** 2).sum(1) for c in chosen], axis=0)
        d2[chosen] = 0
        chosen.append(int(rng.choice(50, p=d2 / d2.sum())))
    assert picks.tolist() == chosen


# -- TypiClust ----------------------------------------------------------------------------------------------
def _blobs() -> tuple[np.ndarray, list[int]]:
    """Four blobs of 30 points far apart, each around a known most typical point: its centre, with 5 points
    within 0.01 of it and the rest spread out. Returns the points and the centres' rows."""
    g = np.random.default_rng(11)
    points, centres = [], []
    for b, centre in enumerate([(0, 0), (50, 0), (0, 50), (50, 50)]):
        centres.append(b * 30)
        blob = [centre] + [np.add(centre, g.normal(scale=0.01, size=2)) for _ in range(5)]
        blob += [np.add(centre, g.normal(scale=3.0, size=2)) for _ in range(24)]
        points += blob
    return np.asarray(points, dtype=np.float64), centres


def test_typiclust_picks_the_typical_point_of_each_uncovered_cluster() -> None:
    z, centres = _blobs()
    labeled = z[[1, 2]]  # two labels near the first blob's centre: that blob is covered
    candidates = np.delete(np.arange(len(z)), [1, 2])
    for seed in range(3):
        picks = candidates[typiclust_select(labeled, z[candidates], 3, np.random.default_rng(seed), max_clusters=4)]
        core = {b: set(range(c, c + 6)) for b, c in enumerate(centres)}
        assert len(picks) == 3 and not core[0] & set(picks.tolist())
        assert sorted(next(b for b in core if p in core[b]) for p in picks) == [1, 2, 3]  # each blob's dense core


def test_typiclust_fills_the_least_covered_clusters_first_and_counts_its_own_picks() -> None:
    z, centres = _blobs()
    labeled = z[[0, 30, 60]]  # blobs 0 to 2 covered once, blob 3 never
    candidates = np.setdiff1d(np.arange(len(z)), [0, 30, 60])
    picks = candidates[typiclust_select(labeled, z[candidates], 5, np.random.default_rng(0), max_clusters=4)]
    blob_of = [p // 30 for p in picks.tolist()]
    # the uncovered blob first; then, its own pick counted, every blob is as covered as the others: two each
    assert blob_of[0] == 3 and np.bincount([0, 1, 2] + blob_of).tolist() == [2, 2, 2, 2]
    assert all(p % 30 < 6 for p in picks.tolist())  # always from a dense core


def test_typiclust_strategy_reads_the_model_embeddings_of_both_sets() -> None:
    z, _ = _blobs()
    n = len(z)
    outputs = ModelOutputs.from_arrays(np.arange(n), np.zeros((n, 2)), z)
    labels = np.full(n, -1)
    labels[[1, 2]] = 0
    candidates = np.delete(np.arange(n), [1, 2])
    ctx = QueryContext(candidates, np.array([1, 2]), labels, 2, 1, np.random.default_rng(0), outputs)
    picks = StrategySpec.parse("typiclust:max_clusters=4").build().query(ctx, 3)
    expected = candidates[typiclust_select(z[[1, 2]], z[candidates], 3, np.random.default_rng(0), max_clusters=4)]
    assert picks.tolist() == expected.tolist()
    with pytest.raises(StrategyError, match="typiclust: knn=0"):
        StrategySpec.parse("typiclust:knn=0").build().query(ctx, 3)


# -- every strategy: reproducible, candidates only, k edges -----------------------------------------------
ALL = ["random", "least-confidence", "margin", "entropy", "bald:samples=8", "batchbald:samples=8:num_configs=64",
       "coreset", "badge", "typiclust", "class-balanced:base=margin", "class-balanced:base=badge:mode=rarest",
       "subsample:base=entropy:size=10", "switch", "switch:first=badge:then=entropy:at=3"]


@pytest.mark.parametrize("spec", ALL)
def test_every_strategy_is_reproducible_and_returns_only_candidates(spec: str) -> None:
    strategy = StrategySpec.parse(spec).build()
    a = strategy.query(_context(rng_seed=3), 8)
    b = strategy.query(_context(rng_seed=3), 8)
    assert a.tolist() == b.tolist()
    assert len(set(a.tolist())) == 8 and set(a.tolist()) <= set(range(5, 40))  # never the labeled 0..4
    assert len(strategy.query(_context(), 0)) == 0
    everything = strategy.query(_context(), 1000)
    assert sorted(everything.tolist()) == (list(range(5, 40)) if not spec.startswith("subsample") else
                                           sorted(everything.tolist()))
    assert len(everything) == (10 if spec.startswith("subsample") else 35)


# -- wrappers -----------------------------------------------------------------------------------------------
def test_class_quotas_and_balanced_pick() -> None:
    assert class_quotas(10, np.ones(4)).tolist() == [3, 3, 2, 2]
    assert class_quotas(7, np.array([1.0, 0.0, 1.0])).tolist() == [4, 0, 3]
    # quota 2 per class takes the first two of classes 0 and 1; class 2 has one item, so the best leftover fills in
    assert balanced_pick(np.array([0, 0, 0, 1, 0, 1, 2]), np.array([2, 2, 2]), 6).tolist() == [0, 1, 2, 3, 5, 6]


def test_class_balanced_spreads_the_batch_over_predicted_classes() -> None:
    ctx = _context(n=400, c=4)
    predicted = ctx.logits().argmax(1)
    plain = get_strategy("margin").query(ctx, 20)
    balanced = get_strategy("class-balanced", base="margin").query(_context(n=400, c=4), 20)
    counts = np.bincount(predicted[np.searchsorted(ctx.candidates, balanced)], minlength=4)
    assert counts.tolist() == [5, 5, 5, 5]
    assert set(balanced.tolist()) != set(plain.tolist()) or np.ptp(np.bincount(
        predicted[np.searchsorted(ctx.candidates, plain)], minlength=4)) == 0


def test_class_balanced_rarest_favours_the_rarest_labeled_class() -> None:
    ctx = _context(n=400, c=4, n_labeled=0)
    ctx = QueryContext(ctx.candidates[40:], ctx.candidates[:40], np.where(np.arange(400) < 40, 0, -1), 4, 1,
                       np.random.default_rng(0), ctx.outputs)  # 40 labels, all class 0
    chosen = get_strategy("class-balanced", base="random", mode="rarest").query(ctx, 31)
    predicted = ctx.logits().argmax(1)[np.searchsorted(ctx.candidates, chosen)]
    assert np.bincount(predicted, minlength=4).tolist() == [1, 10, 10, 10]


def test_subsample_chooses_inside_a_reproducible_subsample() -> None:
    chosen = get_strategy("subsample", base="margin", size=10).query(_context(rng_seed=9), 4)
    again = get_strategy("subsample", base="margin", size=10).query(_context(rng_seed=9), 4)
    assert chosen.tolist() == again.tolist() and len(chosen) == 4


def test_switch_queries_with_first_below_its_label_count_then_with_then() -> None:
    switch = StrategySpec.parse("switch:first=typiclust:then=margin:at=6").build()
    ctx = _context(n_labeled=5)
    assert switch.requires == {"logits", "embeddings"} and switch.needs(ctx) == {"embeddings"}
    assert switch.query(_context(n_labeled=5), 7).tolist() == get_strategy("typiclust").query(ctx, 7).tolist()
    ctx = _context(n_labeled=6)
    assert switch.needs(ctx) == {"logits"}
    assert switch.query(_context(n_labeled=6), 7).tolist() == get_strategy("margin").query(ctx, 7).tolist()
    wrapped = StrategySpec.parse("class-balanced:base=switch").build()
    assert wrapped.needs(_context(n_labeled=5)) == {"embeddings", "logits"}
    assert StrategySpec.parse("subsample:base=switch").build().needs(_context(n_labeled=5)) == {"embeddings"}
    for bad, message in [("switch:at=-1", "at=-1 must be a number of labels"),
                         ("switch:then=nope", "strategy 'nope' is unknown"), ("switch:first=7", "first=7 must name")]:
        with pytest.raises(StrategyError, match=message):
            StrategySpec.parse(bad).build().check()


# -- specs --------------------------------------------------------------------------------------------------
def test_strategy_spec_round_trip_labels_and_errors() -> None:
    spec = StrategySpec.parse("bald:samples=20")
    assert spec.params == (("samples", 20),) and spec.label == "bald:samples=20"
    assert StrategySpec.parse(spec.canonical()) == spec
    labelled = StrategySpec.from_config({"name": "bald", "samples": 10, "label": "bald-10"})
    assert labelled.label == "bald-10" and StrategySpec.parse(labelled.canonical()) == labelled
    path = StrategySpec.parse("tests.strategies.test_strategies:SmallestMaxLogit")
    assert path.name == "tests.strategies.test_strategies:SmallestMaxLogit" and path.params == ()
    assert StrategySpec.parse("class-balanced:base=margin:mode=rarest").build().mode == "rarest"
    with pytest.raises(StrategyError, match="'x' is not key=value"):
        StrategySpec.parse("bald:samples=2:x")
    with pytest.raises(StrategyError, match="given twice"):
        StrategySpec.parse("bald:samples=2:samples=3")
    with pytest.raises(StrategyError, match="may not contain"):
        StrategySpec.from_config({"name": "bald", "label": "a:b"})
