import numpy as np
import pytest
from scipy import stats

from alkit.reporting.summary import (aubc, curves, labels_to_target, p_text, paired_vs, queried_class_counts,
                                     summary_table)


def _rows() -> list[dict]:
    rows = []
    f1 = {"random": {0: [0.5, 0.6, 0.7], 1: [0.52, 0.61, 0.69], 2: [0.48, 0.6, 0.72]},
          "margin": {0: [0.5, 0.65, 0.78], 1: [0.52, 0.66, 0.77], 2: [0.48, 0.64, 0.80]}}
    for strategy, seeds in f1.items():
        for seed, values in seeds.items():
            for r, v in enumerate(values):
                rows.append({"dataset": "d", "strategy": strategy, "seed": seed, "round": r, "n_labeled": 100 * (r + 1),
                             "f1_macro": v, "accuracy": v + 0.01, "precision_macro": v, "recall_macro": v})
    return rows


def test_aubc_is_the_mean_height_of_the_curve() -> None:
    assert aubc(np.array([0, 10]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert aubc(np.array([100, 200, 400]), np.array([0.2, 0.4, 0.4])) == pytest.approx((0.3 * 100 + 0.4 * 200) / 300)
    assert aubc(np.array([5]), np.array([0.7])) == 0.7


def test_labels_to_target() -> None:
    n = np.array([100, 200, 300])
    assert labels_to_target(n, np.array([0.5, 0.7, 0.9]), 0.7) == 200
    assert labels_to_target(n, np.array([0.5, 0.7, 0.9]), 0.95) is None


def test_curves_mean_and_std_over_seeds() -> None:
    c = curves(_rows(), "d")["random"]
    assert c.n_labeled.tolist() == [100, 200, 300]
    assert c.mean[2] == pytest.approx(np.mean([0.7, 0.69, 0.72]))
    assert c.std[2] == pytest.approx(np.std([0.7, 0.69, 0.72], ddof=1))


def test_paired_difference_uses_a_paired_t_test() -> None:
    cs = curves(_rows(), "d")
    comp = paired_vs(cs["margin"], cs["random"], at=300)
    diffs = np.array([0.78 - 0.7, 0.77 - 0.69, 0.80 - 0.72])
    assert comp.mean_diff == pytest.approx(diffs.mean())
    assert comp.p_value == pytest.approx(stats.ttest_rel([0.78, 0.77, 0.80], [0.7, 0.69, 0.72]).pvalue)
    assert paired_vs(cs["margin"], cs["random"], at=999) is None


def test_summary_table() -> None:
    table = {row["strategy"]: row for row in summary_table(_rows(), [{"dataset": "d", "f1_macro": 0.8}], "d")}
    assert table["margin"]["labels_to_random_final"] == 300 and table["random"]["labels_to_random_final"] == 300
    assert table["margin"]["labels_to_99pct_full"] is None
    assert table["margin"]["diff_vs_random"] == pytest.approx(np.mean([0.08, 0.08, 0.08]))
    assert "diff_vs_random" not in table["random"]
    assert table["margin"]["aubc"] > table["random"]["aubc"]


def test_queried_class_counts_sum_each_strategys_histograms_over_rounds_and_seeds() -> None:
    rows = [{"dataset": "d", "strategy": "margin", "seed": 0, "query_hist": [1, 2, 0]},
            {"dataset": "d", "strategy": "margin", "seed": 1, "query_hist": [0, 1, 4]},
            {"dataset": "d", "strategy": "margin", "seed": 1, "query_hist": None},  # the last round queries nothing
            {"dataset": "d", "strategy": "random", "seed": 0, "query_hist": [3, 0, 0]},
            {"dataset": "other", "strategy": "margin", "seed": 0, "query_hist": [9, 9, 9]}]
    counts = queried_class_counts(rows, "d")
    assert sorted(counts) == ["margin", "random"]
    np.testing.assert_array_equal(counts["margin"], [1, 3, 4])
    np.testing.assert_array_equal(counts["random"], [3, 0, 0])
    assert queried_class_counts(rows, "none") == {}


def test_p_values_below_a_thousandth_print_as_such_and_a_missing_one_says_why() -> None:
    assert p_text(0.0179) == "p=0.018"
    assert p_text(0.0004) == "p<0.001"
    assert p_text(0.001) == "p=0.001"
    assert p_text(None) == "1 seed" and p_text(float("nan"), "no p") == "no p"
