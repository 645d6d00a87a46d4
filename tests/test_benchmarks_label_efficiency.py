"""The label-efficiency summary's per-class evidence, on rows made here."""
from __future__ import annotations

import pytest

from benchmarks import label_efficiency
from benchmarks.common import RESULTS
from benchmarks.label_efficiency import _per_class_table, per_class


def _row(strategy: str, seed: int, n: int, hist: list[int] | None, recall: list[float]) -> dict:
    return {"dataset": "d", "strategy": strategy, "seed": seed, "n_labeled": n, "query_hist": hist,
            "per_class": {"recall": recall}}


def test_per_class_counts_the_queries_up_to_the_budget_and_reads_the_recall_there() -> None:
    rows = [_row("margin", 0, 2, [2, 0], [0.5, 0.5]), _row("margin", 0, 4, [1, 1], [0.6, 0.4]),
            _row("margin", 0, 6, [0, 2], [0.8, 0.6]),
            _row("margin", 1, 2, [0, 2], [0.5, 0.5]), _row("margin", 1, 4, [2, 0], [0.7, 0.5]),
            _row("margin", 1, 6, [1, 1], [0.6, 0.8]),
            _row("random", 0, 2, None, [0.5, 0.5]), _row("random", 0, 4, [1, 1], [0.5, 0.5]),
            {**_row("margin", 0, 2, [9, 9], [0.0, 0.0]), "dataset": "other"}]
    got = per_class(rows, "d", 6)
    assert got == {"margin": {"queries_per_class": [2.5, 1.5], "recall_per_class": [0.7, 0.7]}}
    assert per_class(rows, "d", 4)["margin"] == {"queries_per_class": [1.0, 1.0], "recall_per_class": [0.65, 0.45]}
    block = _per_class_table(got, ["shirt", "coat"])
    assert block["columns"] == ["strategy", "per class", "shirt", "coat"]
    assert block["rows"] == [["margin", "queries", "2", "2"], ["margin", "recall", "0.700", "0.700"]]
    assert _per_class_table(got, None)["columns"][2:] == ["0", "1"]


def test_from_run_on_a_folder_without_a_run_store_stops_with_one_line_and_writes_nothing(tmp_path, monkeypatch) -> None:
    results = sorted(RESULTS.glob("*.json"))
    monkeypatch.setattr("sys.argv", ["label_efficiency", "--from-run", str(tmp_path / "typo")])
    with pytest.raises(SystemExit, match="has no runs.sqlite"):
        label_efficiency.main()
    assert not (tmp_path / "typo").exists()
    assert sorted(RESULTS.glob("*.json")) == results
