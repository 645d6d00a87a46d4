"""The summary a run prints when it ends: per dataset and strategy, what the labels bought."""
from __future__ import annotations

from typing import IO, Any

from rich.console import Console
from rich.table import Table

from alkit.reporting.summary import p_text, summary_table


def _diff(row: dict[str, Any]) -> str:
    if row.get("diff_vs_random") is None:
        return "–"
    p = row.get("p_value")
    tail = "1 seed" if row["seeds"] < 2 else p_text(p)
    return f"{row['diff_vs_random'] * 100:+.2f} pts ({tail})"


def summary_rows(rows: list[dict[str, Any]], full: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (dataset, strategy) at the final budget, from :func:`summary_table`."""
    out = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        out += [{"dataset": dataset, **r} for r in summary_table(rows, full, dataset)]
    return out


def print_summary(rows: list[dict[str, Any]], full: list[dict[str, Any]], file: IO[str] | None = None) -> None:
    """A table of F1 at the final budget, the seed-paired difference to random, AUBC and the labels each
    strategy needed to reach random's final F1."""
    table = Table(title="alkit: results at the final budget", title_justify="left")
    for name, justify in (("dataset", "left"), ("strategy", "left"), ("labels", "right"), ("seeds", "right"),
                          ("macro-F1", "right"), ("Δ vs random", "right"), ("AUBC", "right"),
                          ("labels to random's F1", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in summary_rows(rows, full):
        reach = r.get("labels_to_random_final")
        table.add_row(r["dataset"], r["strategy"], f"{r['n_labeled']:,}", str(r["seeds"]),
                      f"{r['f1_macro']:.4f}", _diff(r), f"{r['aubc']:.4f}",
                      f"{reach:,}" if reach is not None else "not reached")
    Console(file=file, soft_wrap=False, width=140).print(table)
