"""Summary statistics over seeds: learning curves, AUBC, labels-to-target, paired tests."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats


@dataclass
class Curve:
    """One strategy's metric against labels, aggregated over seeds."""

    n_labeled: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    per_seed: dict[int, np.ndarray] = field(default_factory=dict)


def curves(rows: list[dict[str, Any]], dataset: str, metric: str = "f1_macro") -> dict[str, Curve]:
    """Per strategy, the metric's mean and std over seeds at each label count (seeds complete at that count)."""
    by: dict[str, dict[int, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        if r["dataset"] == dataset and r.get(metric) is not None:
            by[r["strategy"]][r["seed"]][r["n_labeled"]] = float(r[metric])
    out = {}
    for strategy, seeds in by.items():
        budgets = sorted(set.intersection(*(set(v) for v in seeds.values())))
        per_seed = {s: np.array([v[n] for n in budgets]) for s, v in seeds.items()}
        mat = np.array(list(per_seed.values()))
        out[strategy] = Curve(np.array(budgets), mat.mean(0), mat.std(0, ddof=1) if len(mat) > 1 else np.zeros(len(budgets)),
                              per_seed)
    return out


def queried_class_counts(rows: list[dict[str, Any]], dataset: str) -> dict[str, np.ndarray]:
    """Per strategy, the class counts of everything its rounds queried (their ``query_hist``s summed over rounds
    and seeds); rows without a histogram add nothing."""
    totals: dict[str, np.ndarray] = {}
    for r in rows:
        if r["dataset"] == dataset and r.get("query_hist"):
            hist = np.asarray(r["query_hist"])
            totals[r["strategy"]] = totals.get(r["strategy"], np.zeros_like(hist)) + hist
    return totals


def p_text(p: float | None, missing: str = "1 seed") -> str:
    """A p-value as the tables print it: ``p=0.018``, or ``p<0.001`` below that; ``missing`` where there is none."""
    if p is None or p != p:
        return missing
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def aubc(n_labeled: np.ndarray, values: np.ndarray) -> float:
    """Area under the budget curve, normalised by the budget range: the mean height of the curve."""
    if len(n_labeled) == 0:
        return float("nan")
    if len(n_labeled) == 1:
        return float(values[0])
    return float(np.trapezoid(values, n_labeled) / (n_labeled[-1] - n_labeled[0]))


def labels_to_target(n_labeled: np.ndarray, values: np.ndarray, target: float) -> int | None:
    """The smallest label count whose value reaches ``target``; None if the curve never does."""
    hit = np.flatnonzero(values >= target)
    return int(n_labeled[hit[0]]) if hit.size else None


@dataclass
class PairedComparison:
    n_labeled: int
    mean_diff: float
    std_diff: float
    n_seeds: int
    p_value: float


def paired_vs(curve: Curve, reference: Curve, at: int | None = None, use_aubc: bool = False) -> PairedComparison | None:
    """Seed-paired difference ``curve - reference`` at a label count (or in AUBC), with a paired t-test."""
    seeds = sorted(set(curve.per_seed) & set(reference.per_seed))
    if not seeds:
        return None
    if use_aubc:
        common = np.intersect1d(curve.n_labeled, reference.n_labeled)
        diffs = np.array([aubc(common, curve.per_seed[s][np.isin(curve.n_labeled, common)])
                          - aubc(common, reference.per_seed[s][np.isin(reference.n_labeled, common)]) for s in seeds])
        at_n = int(common[-1]) if len(common) else 0
    else:
        if at is None or at not in curve.n_labeled or at not in reference.n_labeled:
            return None
        i, j = int(np.flatnonzero(curve.n_labeled == at)[0]), int(np.flatnonzero(reference.n_labeled == at)[0])
        diffs = np.array([curve.per_seed[s][i] - reference.per_seed[s][j] for s in seeds])
        at_n = at
    p = float("nan")
    if len(diffs) > 1:
        p = 1.0 if np.allclose(diffs, diffs[0]) and diffs[0] == 0 else float(stats.ttest_rel(diffs, np.zeros_like(diffs)).pvalue)
    return PairedComparison(at_n, float(diffs.mean()), float(diffs.std(ddof=1)) if len(diffs) > 1 else 0.0,
                            len(diffs), p)


def summary_table(rows: list[dict[str, Any]], full: list[dict[str, Any]], dataset: str,
                  reference: str = "random") -> list[dict[str, Any]]:
    """The study's table per strategy at the final budget, plus AUBC, labels-to-target and paired tests."""
    f1 = curves(rows, dataset, "f1_macro")
    if not f1:
        return []
    by_metric = {m: curves(rows, dataset, m) for m in ("precision_macro", "recall_macro", "accuracy")}
    final_n = min(int(c.n_labeled[-1]) for c in f1.values())
    full_f1 = [r["f1_macro"] for r in full if r["dataset"] == dataset]
    ref = f1.get(reference)
    ref_final = float(ref.mean[ref.n_labeled == final_n][0]) if ref is not None and final_n in ref.n_labeled else None
    table = []
    for strategy, c in f1.items():
        i = int(np.flatnonzero(c.n_labeled == final_n)[0])
        row: dict[str, Any] = {"strategy": strategy, "n_labeled": final_n, "seeds": len(c.per_seed),
                               "f1_macro": c.mean[i], "f1_std": c.std[i], "aubc": aubc(c.n_labeled, c.mean)}
        for m, cs in by_metric.items():
            cm = cs[strategy]
            row[m] = float(cm.mean[cm.n_labeled == final_n][0])
        row["labels_to_random_final"] = labels_to_target(c.n_labeled, c.mean, ref_final) if ref_final is not None else None
        row["labels_to_99pct_full"] = (labels_to_target(c.n_labeled, c.mean, 0.99 * float(np.mean(full_f1)))
                                       if full_f1 else None)
        if ref is not None and strategy != reference:
            final = paired_vs(c, ref, at=final_n)
            area = paired_vs(c, ref, use_aubc=True)
            row.update(diff_vs_random=final.mean_diff if final else None, p_value=final.p_value if final else None,
                       aubc_diff_vs_random=area.mean_diff if area else None,
                       aubc_p_value=area.p_value if area else None)
        table.append(row)
    return table
