"""Learning-curve and query-histogram figures (matplotlib, no display needed)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from alkit.reporting.summary import curves, queried_class_counts  # noqa: E402

METRIC_LABELS = {"f1_macro": "macro F1", "accuracy": "accuracy", "balanced_accuracy": "balanced accuracy",
                 "precision_macro": "macro precision", "recall_macro": "macro recall"}


def _save(fig: plt.Figure, stem: Path) -> list[Path]:
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    for p in paths:
        fig.savefig(p, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return paths


def learning_curve(rows: list[dict[str, Any]], full: list[dict[str, Any]], dataset: str, metric: str,
                   stem: Path) -> list[Path]:
    """Mean line and +-1 std band over seeds per strategy, plus the full-data reference line."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for strategy, c in sorted(curves(rows, dataset, metric).items()):
        line, = ax.plot(c.n_labeled, c.mean, marker="o", ms=3, label=f"{strategy} (n={len(c.per_seed)})")
        ax.fill_between(c.n_labeled, c.mean - c.std, c.mean + c.std, color=line.get_color(), alpha=0.2)
    ref = [r[metric] for r in full if r["dataset"] == dataset and r.get(metric) is not None]
    if ref:
        ax.axhline(float(np.mean(ref)), color="black", ls="--", lw=1,
                   label=f"full data ({full[0]['n_labeled']:,} labels)")
    ax.set_xlabel("labeled training images")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.set_title(f"{dataset}: {METRIC_LABELS.get(metric, metric)} vs labels (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, stem)


def query_histogram(rows: list[dict[str, Any]], dataset: str, classes: list[str] | None, stem: Path) -> list[Path]:
    """Share of each class among all queried samples, per strategy (averaged over seeds)."""
    totals = queried_class_counts(rows, dataset)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if totals:
        n_classes = len(next(iter(totals.values())))
        names = classes or [str(i) for i in range(n_classes)]
        width = 0.8 / len(totals)
        for i, (strategy, h) in enumerate(sorted(totals.items())):
            share = h / h.sum() if h.sum() else h
            ax.bar(np.arange(n_classes) + i * width - 0.4 + width / 2, share, width, label=strategy)
        ax.axhline(1 / n_classes, color="black", ls=":", lw=1, label="uniform")
        ax.set_xticks(np.arange(n_classes), names, rotation=45, ha="right", fontsize=8)
        ax.legend(fontsize=8)
    ax.set_ylabel("share of queried samples")
    ax.set_title(f"{dataset}: class histogram of queried samples")
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, stem)
