"""Test-set metrics recorded every round."""
from __future__ import annotations

from typing import Any

import warnings

import numpy as np
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, confusion_matrix,
                             precision_recall_fscore_support)

METRIC_COLUMNS = ["accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro",
                  "precision_weighted", "recall_weighted", "f1_weighted"]


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> dict[str, Any]:
    """Scalar metrics (``METRIC_COLUMNS``) plus ``per_class`` P/R/F1/support and ``confusion``."""
    labels = np.arange(num_classes)
    out: dict[str, Any] = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
    }
    with warnings.catch_warnings():  # a class predicted but absent from a small test set is expected
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        out["balanced_accuracy"] = float(balanced_accuracy_score(y_true, y_pred))
    for avg in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average=avg, zero_division=0)
        out.update({f"precision_{avg}": float(p), f"recall_{avg}": float(r), f"f1_{avg}": float(f)})
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, average=None, zero_division=0)
    out["per_class"] = {"precision": p.tolist(), "recall": r.tolist(), "f1": f.tolist(), "support": s.tolist()}
    out["confusion"] = confusion_matrix(y_true, y_pred, labels=labels).tolist()
    return out
